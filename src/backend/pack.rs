//! Host-side packing shared by the GPU backends (`wgpu` and `cuda`): how a batch of frames, objects or pairs is
//! laid out for the kernels, and how their results become the CPU reference's types again. One copy of this code
//! serves both backends, so what the `wgpu` parity tests check on lavapipe in CI holds for the CUDA backend's host
//! side too.

use rayon::prelude::*;

use crate::geometry::dbscan::{cell_side, Clustering, DbscanJob, NOISE};
use crate::geometry::radix::{bits_of, floor_i64, radix_sorted};
use crate::geometry::ransac::{plane_through, RansacParams, Support};
use crate::geometry::relations::RelationRecord;
use crate::geometry::relations::{bounding_box, GAP_CHUNK, GAP_SUPER};
use crate::geometry::stats::{assemble, NoiseModel, ObjectSummary, Reductions, StatsInput};
use crate::geometry::unproject::{ray_factors, DepthData, DepthImage, GroupedPoints, ObjectRegion, PointCloud};
use crate::geometry::{Intrinsics, Plane, Point3};

use super::layout::{
    DbscanJobParams, DbscanParams, FrameRange, GpuGapObject, GpuGapOrder, GpuHypothesis, GpuObjectStats, GpuRegion,
    GpuSupport, UnprojectFrame,
};

/// A batch of depth frames packed for K1: depth words (16-bit depth two pixels per word, low half first; each frame
/// starts on a word), ray factors, per-frame records and the frame of each tile of `tile` pixels (tiles never
/// straddle frames).
#[derive(Debug, Default)]
pub struct DepthBatch {
    pub frames: Vec<UnprojectFrame>,
    /// The depth words (empty from [`DepthBatch::layout`]).
    pub words: Vec<u32>,
    pub ray_x: Vec<f32>,
    pub ray_y: Vec<f32>,
    pub tile_frame: Vec<u32>,
    pub pixels: u64,
    /// How many depth words the frames take ([`DepthBatch::write_words`]).
    pub word_count: u64,
}

impl DepthBatch {
    /// Packs `frames` in tiles of `tile` pixels. `Err` when a depth image and its intrinsics disagree in size or
    /// the batch outgrows 32-bit offsets.
    pub fn pack(frames: &[(&DepthImage, &Intrinsics)], tile: u32) -> Result<DepthBatch, String> {
        let mut b = DepthBatch::layout(frames, tile)?;
        b.words = vec![0; b.word_count as usize];
        DepthBatch::write_words(frames, &mut b.words);
        Ok(b)
    }

    /// [`DepthBatch::pack`] without the depth words (`words` stays empty): for a caller that writes them where they
    /// go ([`DepthBatch::write_words`]), such as a pinned staging buffer.
    pub fn layout(frames: &[(&DepthImage, &Intrinsics)], tile: u32) -> Result<DepthBatch, String> {
        let mut b = DepthBatch::default();
        for (f, (depth, k)) in frames.iter().enumerate() {
            if (depth.width, depth.height) != (k.width, k.height) {
                return Err(format!(
                    "depth is {}x{} but the intrinsics say {}x{}",
                    depth.width, depth.height, k.width, k.height
                ));
            }
            let pixels = depth.len() as u64;
            b.pixels += pixels;
            let word_offset = u32::try_from(b.word_count).map_err(|_| "a K1 batch of over 2^32 depth words")?;
            b.word_count += depth_words(depth) as u64;
            let (is_u16, units_per_meter, invalid_value) = match &depth.data {
                DepthData::U16 { units_per_meter, invalid_value, .. } => {
                    (1, *units_per_meter, invalid_value.map_or(u32::MAX, u32::from))
                }
                DepthData::F32 { .. } => (0, 1.0, u32::MAX),
            };
            let (rx, ry) = ray_factors(k);
            let tiles = pixels.div_ceil(u64::from(tile));
            b.frames.push(UnprojectFrame {
                width: depth.width,
                pixels: pixels as u32,
                is_u16,
                invalid_value,
                units_per_meter,
                word_offset,
                ray_x_offset: b.ray_x.len() as u32,
                ray_y_offset: b.ray_y.len() as u32,
                block_offset: b.tile_frame.len() as u32,
                _pad: [0; 3],
            });
            b.ray_x.extend(rx);
            b.ray_y.extend(ry);
            b.tile_frame.extend(std::iter::repeat_n(f as u32, tiles as usize));
        }
        if b.pixels > u64::from(u32::MAX) {
            return Err(format!("a K1 batch of {} pixels outgrows 32-bit point offsets", b.pixels));
        }
        Ok(b)
    }

    /// Every frame's depth words into `dst`, one frame after another as [`DepthBatch::layout`] places them: u16 depth
    /// two pixels a word (the first in the low half), f32 depth one pixel a word (its bits). `dst` holds
    /// `word_count` words; what does not fit is left out.
    /// The frames are written in parallel (a batch's frames are its host's to fill while the device waits).
    pub fn write_words(frames: &[(&DepthImage, &Intrinsics)], dst: &mut [u32]) {
        let parts = split_parts(dst, frames.iter().map(|(depth, _)| depth_words(depth)));
        frames.par_iter().zip(parts).for_each(|((depth, _), out)| match &depth.data {
            DepthData::U16 { values, .. } => {
                // Whole pairs in a loop the compiler vectorises; an odd last pixel alone, its high half zero.
                let (pairs, last) = values.as_chunks::<2>();
                for (w, [a, b]) in out.iter_mut().zip(pairs) {
                    *w = u32::from(*a) | (u32::from(*b) << 16);
                }
                if let ([v], Some(w)) = (last, out.get_mut(pairs.len())) {
                    *w = u32::from(*v);
                }
            }
            DepthData::F32 { values } => {
                for (w, v) in out.iter_mut().zip(values) {
                    *w = v.to_bits();
                }
            }
        });
    }

    /// Where each frame's points start, then the total, from the tiles' exclusive offsets (`tiles + 1` entries). A
    /// frame without pixels has no tiles: its start is the next frame's (its `block_offset` points there).
    pub fn frame_offsets(&self, tile_offsets: &[u32]) -> Result<Vec<u64>, String> {
        let at = |i: usize| tile_offsets.get(i).map(|&v| u64::from(v)).ok_or("tile offsets came back short");
        let mut out: Vec<u64> = self.frames.iter().map(|f| at(f.block_offset as usize)).collect::<Result<_, _>>()?;
        out.push(at(self.tile_frame.len())?);
        Ok(out)
    }
}

/// How many words a depth image takes in a K1 batch (u16: two pixels a word).
fn depth_words(depth: &DepthImage) -> usize {
    match &depth.data {
        DepthData::U16 { values, .. } => values.len().div_ceil(2),
        DepthData::F32 { values } => values.len(),
    }
}

/// Each frame's cloud from a batch's points (x, y, z per point) and pixels, split at `offsets` (per frame, then the
/// total).
pub fn split_clouds(offsets: &[u64], floats: &[f32], pixels: &[u32]) -> Vec<PointCloud> {
    offsets
        .windows(2)
        .map(|w| {
            let (a, b) = (w[0] as usize, w[1] as usize);
            PointCloud {
                points_in_camera: floats[3 * a..3 * b].chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect(),
                pixels: pixels[a..b].to_vec(),
            }
        })
        .collect()
}

/// K1: the frames of a batch in chunks of at most `max_pixels` pixels (at least one frame per chunk), as
/// `(start, end)` ranges.
pub fn frame_chunks(frames: &[(&DepthImage, &Intrinsics)], max_pixels: u64) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < frames.len() {
        let mut end = start;
        let mut pixels = 0u64;
        while end < frames.len() && (end == start || pixels + frames[end].0.len() as u64 <= max_pixels) {
            pixels += frames[end].0.len() as u64;
            end += 1;
        }
        out.push((start, end));
        start = end;
    }
    out
}

/// K1 grouping before any launch: `Ok(Some(..))` when there is nothing to group (no regions, or a cloud of
/// `n_points` = 0), `Err` when the instance labels do not cover the depth image, `Ok(None)` to go on.
pub fn grouping_without_launch(
    n_points: u64,
    depth: &DepthImage,
    instance_labels: Option<&[u32]>,
    regions: &[ObjectRegion],
) -> Result<Option<GroupedPoints>, String> {
    if regions.is_empty() {
        return Ok(Some(GroupedPoints { offsets: vec![0], ..GroupedPoints::default() }));
    }
    if n_points == 0 {
        return Ok(Some(GroupedPoints { offsets: vec![0; regions.len() + 1], ..GroupedPoints::default() }));
    }
    match instance_labels {
        Some(l) if l.len() != depth.len() => Err(format!("{} instance labels for {} pixels", l.len(), depth.len())),
        _ => Ok(None),
    }
}

/// The regions of K1's grouping as the kernels test them.
pub fn gpu_regions(regions: &[ObjectRegion]) -> Vec<GpuRegion> {
    regions
        .iter()
        .map(|r| match *r {
            ObjectRegion::Instance { instance_id } => GpuRegion { kind: 0, id: instance_id, ..GpuRegion::default() },
            ObjectRegion::Box { x0, y0, x1, y1 } => GpuRegion { kind: 1, id: 0, x0, y0, x1, y1, _pad: [0; 2] },
        })
        .collect()
}

/// K2: the plane through each hypothesis' drawn points (f64 on the host, the CPU reference's `plane_through`) and
/// the hypotheses as the scoring kernels test them (inadmissible ones score 0).
pub fn hypotheses_from_draws(
    triples: &[u32],
    corners: &[f32],
    params: &RansacParams,
) -> (Vec<Option<Plane>>, Vec<GpuHypothesis>) {
    let planes: Vec<Option<Plane>> = triples
        .chunks_exact(3)
        .zip(corners.chunks_exact(9))
        .map(|(t, c)| {
            let p = |k: usize| [c[3 * k], c[3 * k + 1], c[3 * k + 2]];
            plane_through([t[0], t[1], t[2]], [p(0), p(1), p(2)], params)
        })
        .collect();
    let hypotheses = planes
        .iter()
        .map(|p| match p {
            Some(p) => {
                let s = Support::band(p, params.inlier_threshold_m);
                GpuHypothesis { plane: [s.n[0], s.n[1], s.n[2], s.d], admissible: 1, _pad: [0; 3] }
            }
            None => GpuHypothesis::default(),
        })
        .collect();
    (planes, hypotheses)
}

/// K2: one plane's support test as the kernels apply it (normals only when the test and the frame have them).
pub fn support_test(test: &Support, frame_has_normals: bool) -> GpuSupport {
    GpuSupport {
        plane: [test.n[0], test.n[1], test.n[2], test.d],
        threshold: test.threshold,
        min_cos: test.min_cos.unwrap_or(0.0),
        use_normals: u32::from(test.min_cos.is_some() && frame_has_normals),
        _pad: 0,
    }
}

/// K3's grid for a batch of jobs (each with its own points, radius and `min_points`), all in one set of launches,
/// binned on the host for the `wgpu` backend (CUDA builds its grid on the device from a [`DbscanBatch`]).
///
/// Each job's points are binned into its own cells, the CPU reference's ([`inverse_cell_side`]: any two points of a
/// cell are within eps, and every neighbour lies in the 5 x 5 x 5 block around a point's cell), with coordinates
/// relative to the job's lowest cell plus 2. The jobs are stacked along z with two empty layers of cells between two
/// jobs, so a block of cells never reaches another job's points. A point's *batch index* is its job's first batch
/// index plus its index in the job. Points are sorted by cell in (z, y, x) order, then by batch index, which keeps
/// every job's points together and the jobs in order.
#[derive(Debug)]
pub struct DbscanGrid {
    /// The sorted points, x, y, z each.
    pub sorted: Vec<f32>,
    /// (x, y, z, job) of each sorted point, then the cell coordinates (x, y, z) of each occupied cell.
    pub cell_xyz: Vec<u32>,
    /// Occupied cell -> its first sorted point; cells + 1 entries.
    pub cell_start: Vec<u32>,
    /// Sorted position -> batch index.
    pub original: Vec<u32>,
    /// Batch index -> sorted position.
    pub position: Vec<u32>,
    /// Each job's squared radius and `min_points`.
    pub jobs: Vec<DbscanJobParams>,
    /// Each job's first batch index; jobs + 1 entries.
    pub job_start: Vec<u32>,
    pub params: DbscanParams,
}

/// One job's part of a [`DbscanGrid`], binned on its own: its points in (z, y, x, index) order and what follows
/// from that order, local to the job (indices from 0, z without the job's base).
struct JobBins {
    /// Sorted position -> index in the job.
    order: Vec<u32>,
    /// The sorted points, x, y, z each.
    sorted: Vec<f32>,
    /// Each sorted point's cell.
    cells: Vec<[u32; 3]>,
    /// Each occupied cell's first sorted position.
    cell_first: Vec<u32>,
    /// The highest z of the job's cells (0 for no points).
    span_z: u64,
}

impl DbscanGrid {
    /// The grid of the jobs `chunk` (indices into `all`, the batch), one of [`dbscan_chunks`]'s chunks: that function
    /// has refused non-finite points (not scanned again here). `Err` (naming the job by its index in `all`) for a bad
    /// radius or a span beyond 32-bit cell coordinates.
    pub fn new(all: &[DbscanJob<'_>], chunk: &[usize]) -> Result<DbscanGrid, String> {
        let ChunkJobs { jobs, params: job_params, points: n } = ChunkJobs::new(all, chunk)?;
        let (total, jobs_n) = (n as usize, job_params.len() as u32);
        let mut job_start = Vec::with_capacity(jobs.len() + 1);
        // Each job's cells relative to its lowest, plus 2 (so that the block around a cell never goes below 0 or
        // into the previous job's cells), and its points in (z, y, x, index) order: every job on its own, in
        // parallel (a radix sort of one integer key where the job's cell extent fits 64 bits).
        let binned: Vec<JobBins> = jobs
            .par_iter()
            .map(|(j, job)| {
                let (j, eps, input) = (*j, job.eps, all[*j].points);
                let inv = inverse_cell_side(eps);
                let cells: Vec<[i64; 3]> = input.iter().map(|p| p.map(|v| floor_i64(f64::from(v) * inv))).collect();
                let lo = cells.iter().fold([i64::MAX; 3], |a, c| [a[0].min(c[0]), a[1].min(c[1]), a[2].min(c[2])]);
                let too_far = || format!("job {j}: the points span more than 2^32 cells of {} m", cell_side(eps));
                let mut rel = Vec::with_capacity(cells.len());
                let mut span = [0u64; 3];
                for c in &cells {
                    // Checked: cells of extreme coordinates (saturated casts) must be refused, not wrapped.
                    let mut r = [0u32; 3];
                    for k in 0..3 {
                        let d = c[k].checked_sub(lo[k]).and_then(|d| d.checked_add(2)).ok_or_else(too_far)?;
                        let d = u64::try_from(d).map_err(|_| too_far())?;
                        if d >= u64::from(u32::MAX) - 2 {
                            return Err(too_far());
                        }
                        span[k] = span[k].max(d + 1);
                        r[k] = d as u32;
                    }
                    rel.push(r);
                }
                let dense = span[2].checked_mul(span[1]).and_then(|v| v.checked_mul(span[0]));
                let order: Vec<u32> = match dense {
                    Some(cells) => {
                        let key =
                            |r: &[u32; 3]| (u64::from(r[2]) * span[1] + u64::from(r[1])) * span[0] + u64::from(r[0]);
                        let keys: Vec<u64> = rel.iter().map(key).collect();
                        radix_sorted(&keys, bits_of(cells - 1)).into_iter().map(|(_, i)| i).collect()
                    }
                    None => {
                        let mut order: Vec<u32> = (0..rel.len() as u32).collect();
                        order.sort_unstable_by_key(|&i| {
                            let r = rel[i as usize];
                            (r[2], r[1], r[0], i)
                        });
                        order
                    }
                };
                // The job's sorted points, their cells and its occupied cells' first points, local to the job (z
                // without the job's base).
                let mut bins = JobBins {
                    sorted: Vec::with_capacity(3 * order.len()),
                    cells: Vec::with_capacity(order.len()),
                    cell_first: Vec::new(),
                    span_z: span[2].saturating_sub(1),
                    order,
                };
                for (s, &i) in bins.order.iter().enumerate() {
                    let r = rel[i as usize];
                    bins.sorted.extend_from_slice(&input[i as usize]);
                    bins.cells.push(r);
                    if s == 0 || bins.cells[s - 1] != r {
                        bins.cell_first.push(s as u32);
                    }
                }
                Ok(bins)
            })
            .collect::<Vec<Result<_, String>>>()
            .into_iter()
            .collect::<Result<_, String>>()?;
        // The jobs stacked along z: the cells of job j lie at z in [z_base + 2, z_base + span]; the next job's start 3
        // layers above, so two empty layers part them. As the jobs' z ranges are disjoint and increasing, the jobs'
        // orders one after the other are the batch's (z, y, x, batch index) order.
        let mut sorted: Vec<f32> = Vec::with_capacity(3 * total);
        let mut cell_xyz: Vec<u32> = Vec::with_capacity(4 * total);
        let mut cell_start: Vec<u32> = Vec::new();
        let mut cell_keys: Vec<u32> = Vec::new();
        let mut original: Vec<u32> = Vec::with_capacity(total);
        let mut position: Vec<u32> = vec![0; total];
        let mut z_base: u64 = 0;
        for (slot, ((j, job), bins)) in jobs.iter().zip(&binned).enumerate() {
            let first = original.len() as u32;
            job_start.push(first);
            if z_base + bins.span_z >= u64::from(u32::MAX) - 2 {
                return Err(format!("job {j}: the points span more than 2^32 cells of {} m", cell_side(job.eps)));
            }
            let z = |r: &[u32; 3]| (u64::from(r[2]) + z_base) as u32;
            sorted.extend_from_slice(&bins.sorted);
            cell_xyz.extend(bins.cells.iter().flat_map(|r| [r[0], r[1], z(r), slot as u32]));
            cell_start.extend(bins.cell_first.iter().map(|&s| first + s));
            cell_keys.extend(bins.cell_first.iter().flat_map(|&s| {
                let r = &bins.cells[s as usize];
                [r[0], r[1], z(r)]
            }));
            for (s, &i) in bins.order.iter().enumerate() {
                original.push(first + i);
                position[(first + i) as usize] = first + s as u32;
            }
            if !bins.order.is_empty() {
                z_base += bins.span_z + 1;
            }
        }
        drop(binned);
        job_start.push(n);
        let cells = cell_start.len() as u32;
        cell_start.push(n);
        cell_xyz.extend(cell_keys);
        let params = DbscanParams { points: n, cells, jobs: jobs_n, _pad: [0; 5] };
        Ok(DbscanGrid { sorted, cell_xyz, cell_start, original, position, jobs: job_params, job_start, params })
    }

    /// Each job's clustering (in `chunk`'s order) in its input order, from the device's labels and core flags in
    /// sorted order (see [`clusterings_in_batch_order`]).
    pub fn clusterings(&self, labels: &[u32], core: &[u32]) -> Result<Vec<Clustering>, String> {
        let n = self.original.len();
        if labels.len() < n || core.len() < n {
            return Err("DBSCAN labels came back short".into());
        }
        // The device's labels are sorted positions (each cluster's point of smallest batch index): renamed to batch
        // indices here.
        let labels: Vec<u32> = self
            .position
            .iter()
            .map(|&s| match labels[s as usize] {
                u32::MAX => Ok(u32::MAX),
                l => self.original.get(l as usize).copied().ok_or_else(|| "a DBSCAN label is out of range".to_string()),
            })
            .collect::<Result<_, _>>()?;
        let core: Vec<u32> = self.position.iter().map(|&s| core[s as usize]).collect();
        clusterings_in_batch_order(&self.job_start, &labels, &core)
    }
}

/// 1 / the side of K3's cells for radius `eps`, on both GPU backends: the CPU reference's side
/// ([`cell_side`], eps/√3 a little shrunk), so any two points of a cell are within eps and
/// every neighbour lies in the 5 x 5 x 5 block of cells around a point. Cells are `floor(coordinate * this)` in double
/// precision, as the reference bins, on the host (wgpu's grid) and on the device (CUDA's `cell_of`) alike.
pub fn inverse_cell_side(eps: f32) -> f64 {
    1.0 / f64::from(cell_side(eps))
}

/// Each job's clustering in its input order (jobs as `job_start` delimits them: each job's first batch index, jobs + 1
/// entries), from the device's labels (the batch index of each point's cluster's root, the smallest batch index of its
/// core points, whose own label is itself; `u32::MAX` for noise) and core flags, both in batch order; clusters
/// numbered by increasing smallest core index, as [`crate::geometry::dbscan::dbscan`] numbers them.
pub fn clusterings_in_batch_order(job_start: &[u32], labels: &[u32], core: &[u32]) -> Result<Vec<Clustering>, String> {
    let n = job_start.last().map_or(0, |&n| n as usize);
    if labels.len() < n || core.len() < n {
        return Err("DBSCAN labels came back short".into());
    }
    clusterings_by_job(job_start, |i| (labels[i], core[i] == 1))
}

/// [`clusterings_in_batch_order`] from one word per point: the label with the core flag in its top bit
/// (`label | core << 31`), `u32::MAX` for noise, as CUDA's `unsort` writes them (labels are batch indices, below
/// `MAX_DBSCAN_POINTS` = 2^26).
pub fn clusterings_in_batch_order_packed(job_start: &[u32], words: &[u32]) -> Result<Vec<Clustering>, String> {
    let n = job_start.last().map_or(0, |&n| n as usize);
    if words.len() < n {
        return Err("DBSCAN labels came back short".into());
    }
    clusterings_by_job(job_start, |i| match words[i] {
        u32::MAX => (u32::MAX, false),
        w => (w & !(1 << 31), w >> 31 == 1),
    })
}

/// Each job's clustering from each point's (label, core flag) by batch index (`i < job_start.last()`).
///
/// A label is the batch index of its cluster's root, the cluster's core point of smallest batch index, whose own
/// label is itself (as both GPU backends' union-finds leave them). So the clusters, numbered by increasing root, are
/// numbered in one pass in index order: a point labelled itself opens the next cluster, a point labelled by an
/// earlier point takes that root's number, and the few (border) points whose root comes after them are numbered once
/// the pass is over. A label that names another job's point or a point of its job that is not labelled itself, and a
/// point labelled itself that is not a core point, are refused. The jobs in parallel.
fn clusterings_by_job(
    job_start: &[u32],
    point: impl Fn(usize) -> (u32, bool) + Sync,
) -> Result<Vec<Clustering>, String> {
    const UNUSED: i32 = -2;
    const NOT_ROOT: &str = "a DBSCAN label names a point that is not labelled itself, or a border point labels itself \
                            (no cluster's root)";
    // Starts that go back would name points past the last one the callers checked (every job runs, in parallel).
    if job_start.windows(2).any(|w| w[0] > w[1]) {
        return Err("DBSCAN job starts go back".into());
    }
    job_start
        .par_windows(2)
        .map(|range| {
            let (first, end) = (range[0], range[1]);
            let len = (end - first) as usize;
            // Each root's cluster number, by the root's index in the job.
            let mut number = vec![UNUSED; len];
            let (mut labels, mut core) = (Vec::with_capacity(len), Vec::with_capacity(len));
            // Points (in the job) whose root comes after them.
            let mut ahead = Vec::new();
            let mut clusters = 0u32;
            for (k, i) in (first..end).enumerate() {
                let (l, c) = point(i as usize);
                let label = match l {
                    u32::MAX => NOISE,
                    // A root is a core point (a point labelled itself that is not is no root the devices make).
                    l if l == i && !c => return Err(NOT_ROOT.into()),
                    l if l == i => {
                        let n = clusters as i32;
                        number[k] = n;
                        clusters += 1;
                        n
                    }
                    l if l < first || l >= end => return Err("a DBSCAN label names a point of another job".into()),
                    l if l < i => match number[(l - first) as usize] {
                        UNUSED => return Err(NOT_ROOT.into()),
                        n => n,
                    },
                    _ => {
                        ahead.push(k);
                        UNUSED
                    }
                };
                labels.push(label);
                core.push(c);
            }
            for k in ahead {
                // In the job: checked in the pass.
                let l = point(first as usize + k).0;
                labels[k] = match number[(l - first) as usize] {
                    UNUSED => return Err(NOT_ROOT.into()),
                    n => n,
                };
            }
            Ok(Clustering { labels, core, clusters })
        })
        .collect()
}

/// A chunk of K3 jobs as both GPU grids take them: each job with its index in the batch, each job's parameters (its
/// radius checked), and the chunk's points, counted in 32 bits.
struct ChunkJobs {
    jobs: Vec<(usize, JobShape)>,
    params: Vec<DbscanJobParams>,
    points: u32,
}

impl ChunkJobs {
    fn new(all: &[DbscanJob<'_>], chunk: &[usize]) -> Result<Self, String> {
        Self::of(chunk.iter().map(|&i| (i, all.get(i).map(JobShape::from))))
    }

    /// From each job's index in the batch and its shape (`None`: no such job).
    fn of(jobs: impl Iterator<Item = (usize, Option<JobShape>)>) -> Result<Self, String> {
        let jobs: Vec<(usize, JobShape)> = jobs
            .map(|(i, j)| j.map(|j| (i, j)).ok_or_else(|| format!("no DBSCAN job {i}")))
            .collect::<Result<_, _>>()?;
        let total: usize = jobs.iter().map(|(_, j)| j.points).sum();
        let points = u32::try_from(total).map_err(|_| format!("{total} points are too many for one DBSCAN batch"))?;
        u32::try_from(jobs.len()).map_err(|_| "too many DBSCAN jobs in one batch".to_string())?;
        let params = jobs
            .iter()
            .map(|(j, job)| match job.eps.is_finite() && job.eps > 0.0 {
                true => Ok(DbscanJobParams {
                    eps2: job.eps * job.eps,
                    min_points: job.min_points.max(1),
                    inv_side: inverse_cell_side(job.eps),
                }),
                false => Err(bad_radius(*j, job.eps)),
            })
            .collect::<Result<_, _>>()?;
        Ok(ChunkJobs { jobs, params, points })
    }
}

/// K3's input for a grid built on the device (CUDA's `cell_of`, `claim_cells`, `scatter_points`): the points of a
/// chunk of jobs in batch order (each job's points after the previous job's), each job's first batch index, each
/// job's parameters, and the size of the cells' hash table.
#[derive(Debug)]
pub struct DbscanBatch {
    /// The points, x, y, z each, in batch order.
    pub points: Vec<f32>,
    /// Each job's first batch index; jobs + 1 entries.
    pub job_start: Vec<u32>,
    pub jobs: Vec<DbscanJobParams>,
    pub params: DbscanParams,
}

impl DbscanBatch {
    /// The jobs `chunk` (indices into `all`, one of [`dbscan_chunks_of_shapes`]'s chunks: no empty job), with their
    /// points. `Err` (naming the job by its index in `all`) for a bad radius. The points are not checked: the device
    /// checks them (CUDA's `cell_of`), and [`dbscan_refusal`] names a job it refuses. (A device that gathers the
    /// points itself takes [`DbscanBatch::shaped`].)
    pub fn new(all: &[DbscanJob<'_>], chunk: &[usize]) -> Result<DbscanBatch, String> {
        let mut batch = Self::of(chunk.iter().map(|&i| (i, all.get(i).map(JobShape::from))))?;
        batch.pack_points(chunk.iter().map(|&i| all[i].points));
        Ok(batch)
    }

    /// Packs the points of the batch's jobs (each job's, in the batch's order) into `points`.
    pub fn pack_points<'p>(&mut self, jobs: impl Iterator<Item = &'p [Point3]>) {
        self.points = Vec::with_capacity(3 * self.params.points as usize);
        for points in jobs {
            self.points.extend(points.iter().flatten());
        }
    }

    /// [`DbscanBatch::new`] without points (`points` stays empty), from the jobs' shapes only (`shapes[i]` for job `i` of the batch; `chunk`
    /// one of [`dbscan_chunks_of_shapes`]'s chunks): for a device that gathers the points itself.
    pub fn shaped(shapes: &[JobShape], chunk: &[usize]) -> Result<DbscanBatch, String> {
        Self::of(chunk.iter().map(|&i| (i, shapes.get(i).copied())))
    }

    /// The batch of the jobs `(index in the batch, shape)`, in order, without points.
    fn of(jobs: impl Iterator<Item = (usize, Option<JobShape>)>) -> Result<DbscanBatch, String> {
        let ChunkJobs { jobs, params: job_params, points: n } = ChunkJobs::of(jobs)?;
        let slots = u32::try_from(u64::from(n).max(1).next_power_of_two() * 2)
            .map_err(|_| format!("{n} points are too many for one DBSCAN batch"))?;
        let mut job_start = Vec::with_capacity(jobs.len() + 1);
        let mut next = 0u32;
        for (_, job) in &jobs {
            job_start.push(next);
            next += job.points as u32;
        }
        job_start.push(n);
        let params = DbscanParams { points: n, cells: slots, jobs: job_params.len() as u32, _pad: [0; 5] };
        Ok(DbscanBatch { points: Vec::new(), job_start, jobs: job_params, params })
    }
}

/// A K3 job's point count and parameters, without its points: what a device that gathers the points itself needs
/// of it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JobShape {
    pub points: usize,
    pub eps: f32,
    pub min_points: u32,
}

impl From<&DbscanJob<'_>> for JobShape {
    fn from(j: &DbscanJob<'_>) -> JobShape {
        JobShape { points: j.points.len(), eps: j.eps, min_points: j.min_points }
    }
}

/// The first job of `chunk` (indices into `all`; in the chunk's order) whose cells do not fit the device grid's 32-bit
/// coordinates, named by its index in `all`: every cell coordinate (and its neighbours', up to two more or less) must
/// lie within 2^31 - 3 of 0, the test CUDA's `cell_of` makes on each point. Also a bad radius (see
/// [`DbscanBatch::new`]). `None` when the chunk fits. The points must be finite ([`dbscan_chunks`] checks them).
pub fn dbscan_range_refusal(all: &[DbscanJob<'_>], chunk: &[usize]) -> Option<String> {
    let ChunkJobs { jobs, params, .. } = match ChunkJobs::new(all, chunk) {
        Ok(c) => c,
        Err(e) => return Some(e),
    };
    // The jobs in parallel; the first refused in the chunk's order is named.
    jobs.par_iter().zip(&params).find_map_first(|((j, job), params)| {
        let inv = params.inv_side;
        let points = all[*j].points;
        // floor is monotone: the cells of the lowest and highest coordinates bound every cell.
        let (lo, hi) = points.iter().fold(([f32::MAX; 3], [f32::MIN; 3]), |(lo, hi), p| {
            ([lo[0].min(p[0]), lo[1].min(p[1]), lo[2].min(p[2])], [hi[0].max(p[0]), hi[1].max(p[1]), hi[2].max(p[2])])
        });
        let limit = f64::from(i32::MAX - 3);
        let fits = |v: f32| (f64::from(v) * inv).floor().abs() <= limit;
        (!points.is_empty() && !lo.iter().chain(&hi).all(|&v| fits(v))).then(|| {
            let side = cell_side(job.eps);
            format!("job {j}: the points lie more than 2^31 cells of {side} m from the origin")
        })
    })
}

/// `dst` cut into consecutive parts of `lens` elements each, the last ones shorter (or empty) where `dst` runs out:
/// one part for each item of a batch, to be filled in parallel.
pub fn split_parts<T>(dst: &mut [T], lens: impl IntoIterator<Item = usize>) -> Vec<&mut [T]> {
    let mut rest = dst;
    lens.into_iter()
        .map(|n| {
            let n = n.min(rest.len());
            let (part, after) = std::mem::take(&mut rest).split_at_mut(n);
            rest = after;
            part
        })
        .collect()
}

/// The concatenation of every item's values, written in parallel: item `i` gives exactly `len(&items[i])` values
/// from `values(&items[i])` (an iterator of `Option`s). `None` when any value is `None` or an item gives another
/// number of values. Made for a batch's frame-sized host steps, which run on one thread otherwise while the rest of
/// the host waits: each item writes its own part of one allocation, sized up front. (`T: Copy`: on a refusal the
/// values already written are not dropped.)
pub fn par_concat<I, T, It>(items: &[I], len: impl Fn(&I) -> usize, values: impl Fn(&I) -> It + Sync) -> Option<Vec<T>>
where
    I: Sync,
    T: Send + Copy,
    It: Iterator<Item = Option<T>>,
{
    let lens: Vec<usize> = items.iter().map(len).collect();
    let total = lens.iter().try_fold(0usize, |a, &n| a.checked_add(n))?;
    let mut out: Vec<T> = Vec::with_capacity(total);
    let parts = split_parts(&mut out.spare_capacity_mut()[..total], lens);
    let complete = items.par_iter().zip(parts).all(|(item, part)| {
        fill_part(values(item), part.iter_mut(), |slot, value| {
            slot.write(value);
        })
    });
    if !complete {
        // (`out` is dropped with length 0; the values written need no drop: `T: Copy`.)
        return None;
    }
    // SAFETY: the parts tile the first `total` slots of the capacity (their lengths sum to `total`, so none is cut
    // short), and every part was written whole (`complete`).
    unsafe { out.set_len(total) };
    Some(out)
}

/// [`par_concat`] into `dst`, which the items' values must fill exactly (a pinned staging buffer, say): `false`,
/// with `dst` written in part, when any value is `None`, an item gives another number of values, or the items'
/// lengths do not add up to `dst`'s.
pub fn par_fill<I, T, It>(
    items: &[I],
    len: impl Fn(&I) -> usize,
    values: impl Fn(&I) -> It + Sync,
    dst: &mut [T],
) -> bool
where
    I: Sync,
    T: Send,
    It: Iterator<Item = Option<T>>,
{
    let lens: Vec<usize> = items.iter().map(len).collect();
    if lens.iter().try_fold(0usize, |a, &n| a.checked_add(n)) != Some(dst.len()) {
        return false;
    }
    let parts = split_parts(dst, lens);
    items
        .par_iter()
        .zip(parts)
        .all(|(item, part)| fill_part(values(item), part.iter_mut(), |slot, value| *slot = value))
}

/// Writes `values` into `slots`, one each: `false` when a value is `None` or there are more or fewer values than
/// slots.
fn fill_part<S, T>(
    mut values: impl Iterator<Item = Option<T>>,
    slots: impl Iterator<Item = S>,
    mut write: impl FnMut(S, T),
) -> bool {
    for slot in slots {
        let Some(Some(value)) = values.next() else { return false };
        write(slot, value);
    }
    values.next().is_none()
}

/// The items of a batch in chunks of at most `max_points` points (each item whole, in order; items without points are
/// in no chunk), from each item's point count. `Err` from `too_large(item, points)` when one item alone exceeds the
/// limit.
fn chunks_by_points(
    points: impl Iterator<Item = u64>,
    max_points: u64,
    too_large: impl Fn(usize, u64) -> String,
) -> Result<Vec<Vec<usize>>, String> {
    let mut chunks = Vec::new();
    let mut chunk: Vec<usize> = Vec::new();
    let mut chunk_points = 0u64;
    for (i, n) in points.enumerate() {
        if n == 0 {
            continue;
        }
        if n > max_points {
            return Err(too_large(i, n));
        }
        if chunk_points + n > max_points {
            chunks.push(std::mem::take(&mut chunk));
            chunk_points = 0;
        }
        chunk.push(i);
        chunk_points += n;
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    Ok(chunks)
}

/// K3: the jobs of a batch in chunks of at most `max_points` points (each job whole; empty jobs are in no chunk).
/// `Err` when a job's radius is bad (empty jobs included, as on the CPU), a point is not finite, or one job alone
/// exceeds the limit.
pub fn dbscan_chunks(jobs: &[DbscanJob<'_>], max_points: u64) -> Result<Vec<Vec<usize>>, String> {
    // The jobs in parallel; the first bad one in order is named.
    let bad = jobs.par_iter().enumerate().find_map_first(|(i, j)| {
        if !(j.eps.is_finite() && j.eps > 0.0) {
            return Some(bad_radius(i, j.eps));
        }
        let p = j.points.iter().position(|p| !p.iter().all(|v| v.is_finite()))?;
        Some(format!("job {i}: point {p} is not finite"))
    });
    if let Some(e) = bad {
        return Err(e);
    }
    chunks_by_points(jobs.iter().map(|j| j.points.len() as u64), max_points, |i, n| too_many_points(i, n, max_points))
}

/// [`dbscan_chunks`] from the jobs' shapes (`shapes[i]` for job `i`), without reading a point: the radii checked, the
/// jobs chunked, for a device that checks every point itself (CUDA's `cell_of`: finite, and its cell within
/// [`dbscan_range_refusal`]'s range), with [`dbscan_refusal`] naming the job when it refuses one. On any error the
/// host names [`dbscan_chunks`]'s on the jobs' points (the same first error, points included).
pub fn dbscan_chunks_of_shapes(shapes: &[JobShape], max_points: u64) -> Result<Vec<Vec<usize>>, String> {
    if let Some((i, j)) = shapes.iter().enumerate().find(|(_, j)| !(j.eps.is_finite() && j.eps > 0.0)) {
        return Err(bad_radius(i, j.eps));
    }
    chunks_by_points(shapes.iter().map(|j| j.points as u64), max_points, |i, n| too_many_points(i, n, max_points))
}

fn bad_radius(job: usize, eps: f32) -> String {
    format!("job {job}: DBSCAN radius must be positive and finite, got {eps}")
}

fn too_many_points(job: usize, n: u64, max_points: u64) -> String {
    format!("DBSCAN job {job} has {n} points, more than one launch takes ({max_points})")
}

/// The error the host's checks give for `chunk` (one of [`dbscan_chunks_of_shapes`]'s chunks, the earlier ones
/// accepted), for a device that refused a point of it: a point of some job that is not finite ([`dbscan_chunks`]
/// reads every job's before any chunk runs), else the chunk's first job whose cells overflow
/// ([`dbscan_range_refusal`]). A device that refuses what neither check refuses is a bug, and says so.
pub fn dbscan_refusal(jobs: &[DbscanJob<'_>], chunk: &[usize], max_points: u64) -> String {
    dbscan_chunks(jobs, max_points)
        .err()
        .or_else(|| dbscan_range_refusal(jobs, chunk))
        .unwrap_or_else(|| "the device refused a point that the host's checks accept (a bug: please report it)".into())
}

/// K4: the objects of a batch in chunks of at most `max_points` points (each object whole; empty objects are in no
/// chunk). `Err` when an object alone exceeds the limit or its camera and canonical points disagree in number.
pub fn stats_chunks(objects: &[StatsInput], max_points: u64) -> Result<Vec<Vec<usize>>, String> {
    if let Some((i, o)) = objects.iter().enumerate().find(|(_, o)| o.camera.len() != o.canonical.len()) {
        return Err(format!("object {i} has {} canonical and {} camera points", o.canonical.len(), o.camera.len()));
    }
    stats_chunks_of_counts(objects, max_points)
}

/// K4: [`stats_chunks`] from the objects' point counts alone.
pub fn stats_chunks_of_counts<O: StatsObject>(objects: &[O], max_points: u64) -> Result<Vec<Vec<usize>>, String> {
    chunks_by_points(objects.iter().map(|o| o.count() as u64), max_points, |i, n| {
        format!("object {i} has {n} points, more than one device buffer holds")
    })
}

/// A chunk of K4 packed for the device: canonical points, camera depths (bits), and each object's `[offset, count]`.
pub struct StatsPack {
    pub points: Vec<f32>,
    pub depth_bits: Vec<u32>,
    pub ranges: Vec<[u32; 2]>,
    /// The number of points of the chunk.
    pub total: usize,
}

/// An object of a K4 batch as the host's part of K4 reads it ([`StatsPack::ranges_only`],
/// [`StatsPack::summaries`]): how many points it has, its canonical points by index (only the first one and the
/// device's hull candidates are read), and the camera centre in the canonical frame.
pub trait StatsObject: PointCount {
    /// Its canonical point `k` (`None` past the last).
    fn canonical_point(&self, k: usize) -> Option<Point3>;
    /// The camera centre in the canonical frame.
    fn camera_position(&self) -> [f64; 3];
}

impl PointCount for StatsInput<'_> {
    fn count(&self) -> usize {
        self.canonical.len()
    }
}

impl StatsObject for StatsInput<'_> {
    fn canonical_point(&self, k: usize) -> Option<Point3> {
        self.canonical.get(k).copied()
    }

    fn camera_position(&self) -> [f64; 3] {
        self.camera_position
    }
}

impl StatsPack {
    pub fn new(objects: &[StatsInput], chunk: &[usize]) -> StatsPack {
        let mut pack = Self::ranges_only(objects, chunk);
        pack.points.reserve_exact(3 * pack.total);
        pack.depth_bits.reserve_exact(pack.total);
        for &i in chunk {
            let o = &objects[i];
            pack.points.extend(o.canonical.iter().flatten());
            pack.depth_bits.extend(o.camera.iter().map(|p| p[2].to_bits()));
        }
        pack
    }

    /// [`StatsPack::new`] without the points and depths (`points` and `depth_bits` stay empty): for a device that
    /// computes them itself.
    pub fn ranges_only<O: StatsObject>(objects: &[O], chunk: &[usize]) -> StatsPack {
        let total: usize = chunk.iter().map(|&i| objects[i].count()).sum();
        let mut ranges = Vec::with_capacity(chunk.len());
        let mut offset = 0u32;
        for &i in chunk {
            let n = objects[i].count() as u32;
            ranges.push([offset, n]);
            offset += n;
        }
        StatsPack { points: Vec::new(), depth_bits: Vec::new(), ranges, total }
    }

    /// How many hull candidates the device listed for the objects of `stats` (each object's at its
    /// `candidate_offset` of one compact list): the words of the list to read back.
    pub fn listed_candidates(&self, stats: &[GpuObjectStats]) -> Result<usize, String> {
        let listed: u64 = stats.iter().map(|s| u64::from(s.candidates)).sum();
        if listed > self.total as u64 {
            return Err(format!("K4 listed {listed} hull candidates for {} points", self.total));
        }
        Ok(listed as usize)
    }

    /// Each object's summary from the device's reductions and hull candidates (`candidates`: the compact list):
    /// the hull and oriented box are built with the CPU reference's f64 code, the objects in parallel. An error names
    /// the first bad object in the chunk's order.
    pub fn summaries<O: StatsObject>(
        &self,
        objects: &[O],
        chunk: &[usize],
        stats: &[GpuObjectStats],
        candidates: &[u32],
        noise: &NoiseModel,
        out: &mut [Option<ObjectSummary>],
    ) -> Result<(), String> {
        if stats.len() < chunk.len() {
            return Err("object statistics came back short".into());
        }
        let summaries: Vec<Result<ObjectSummary, String>> = chunk
            .par_iter()
            .zip(&stats[..chunk.len()])
            .zip(&self.ranges)
            .map(|((&i, st), [_, count])| {
                let o = &objects[i];
                if st.points != *count || st.candidates > *count {
                    return Err(format!("object {i}: the device summarised {} of {count} points", st.points));
                }
                let n = f64::from(*count);
                let first = o.canonical_point(0).ok_or_else(|| format!("object {i}: no first point"))?;
                let reductions = Reductions {
                    centroid: [0, 1, 2].map(|k| f64::from(first[k]) + f64::from(st.sum[k]) / n),
                    lo: st.lo,
                    hi: st.hi,
                    median_depth: f32::from_bits(st.median_bits),
                    points: *count,
                };
                let start = st.candidate_offset as usize;
                let listed = candidates
                    .get(start..start + st.candidates as usize)
                    .ok_or_else(|| format!("object {i}: hull candidates out of range"))?;
                let footprint: Vec<[f64; 2]> = listed
                    .iter()
                    .map(|&j| {
                        let p = o
                            .canonical_point(j as usize)
                            .ok_or_else(|| format!("object {i}: candidate {j} out of range"))?;
                        Ok([f64::from(p[0]), f64::from(p[1])])
                    })
                    .collect::<Result<_, String>>()?;
                Ok(assemble(&reductions, &footprint, o.camera_position(), noise))
            })
            .collect();
        for (&i, s) in chunk.iter().zip(summaries) {
            out[i] = Some(s?);
        }
        Ok(())
    }
}

/// An axis-aligned box: its lowest and highest corner.
pub type Aabb = ([f32; 3], [f32; 3]);

/// Super-chunk pairs (64 chunk pairs each) per tile of the gap kernels: 256 threads, 8 super pairs each.
pub const GAP_TILE: u64 = 2048;

/// Closest-surface gaps: each frame's `n × n` matrix before the device's results (0 on the diagonal and for every
/// pair the device will fill, `NaN` for a pair with an object without points, as on the CPU).
pub fn gap_matrices<P: PointCount>(frames: &[&[P]]) -> Vec<Vec<f32>> {
    frames
        .iter()
        .map(|objects| {
            let n = objects.len();
            let mut m = vec![0f32; n * n];
            for i in 0..n {
                for j in 0..n {
                    if i != j && (objects[i].count() == 0 || objects[j].count() == 0) {
                        m[i * n + j] = f32::NAN;
                    }
                }
            }
            m
        })
        .collect()
}

/// An object as the packing reads its size: its points, or only how many there are (the gaps' objects on the device,
/// [`GapPack::resident`]; K4's, [`StatsObject`]).
pub trait PointCount: Sync {
    /// How many points the object has.
    fn count(&self) -> usize;
}

impl PointCount for &[Point3] {
    fn count(&self) -> usize {
        self.len()
    }
}

impl PointCount for usize {
    fn count(&self) -> usize {
        *self
    }
}

/// The pairs of a frame the device searches: both objects with points, `i < j`.
fn gap_pairs<P: PointCount>(objects: &[P]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let n = objects.len();
    (0..n)
        .flat_map(move |i| (i + 1..n).map(move |j| (i, j)))
        .filter(|&(i, j)| objects[i].count() != 0 && objects[j].count() != 0)
}

/// The super-chunks ([`GAP_SUPER`] chunks of [`GAP_CHUNK`] points) of an object of `points` points.
fn gap_supers(points: usize) -> u64 {
    points.div_ceil(GAP_CHUNK).div_ceil(GAP_SUPER) as u64
}

/// The tiles of [`GAP_TILE`] super-chunk pairs of a pair of objects of `a` and `b` points (`None` beyond 2^31 super
/// pairs: the kernels index a pair's super pairs in 32 bits, with room for a tile beyond; that covers objects of
/// eleven million points each).
fn gap_tiles(a: usize, b: usize) -> Option<u64> {
    let super_pairs = gap_supers(a) * gap_supers(b);
    (super_pairs <= 1 << 31).then(|| super_pairs.div_ceil(GAP_TILE))
}

/// The side of the grid (in cells, `2^bits`) that orders an object of `points` points for the gap kernels: the
/// finest grid of at most 64 cells a side with at most four cells per point. An object's points are surface points,
/// so most cells are empty and a full cell holds a few dozen points: about a chunk.
pub fn gap_grid_bits(points: usize) -> u32 {
    let mut bits = 0;
    while bits < 6 && 8u64 << (3 * bits) <= 4 * points as u64 {
        bits += 1;
    }
    bits
}

/// The buckets of an object of `points` points (one per cell of its grid, [`gap_grid_bits`]).
fn gap_buckets(points: usize) -> u64 {
    1 << (3 * gap_grid_bits(points))
}

/// Closest-surface gaps: the frames of a batch in chunks of at most `max_points` points, `max_pairs` pairs,
/// `max_tiles` tiles (the blocks of one launch) and `max_buckets` buckets of the spatial order (each frame whole;
/// frames without a pair to search are in no chunk). `Err`, naming the frame, when one frame alone exceeds a limit or
/// a pair of objects has more super-chunk pairs than the kernels index.
pub fn gap_chunks<P: PointCount>(
    frames: &[&[P]],
    max_points: u64,
    max_pairs: u64,
    max_tiles: u64,
    max_buckets: u64,
) -> Result<Vec<Vec<usize>>, String> {
    let mut chunks = Vec::new();
    let mut chunk: Vec<usize> = Vec::new();
    let (mut chunk_points, mut chunk_pairs, mut chunk_tiles, mut chunk_buckets) = (0u64, 0u64, 0u64, 0u64);
    for (f, objects) in frames.iter().enumerate() {
        let (mut pairs, mut tiles) = (0u64, 0u64);
        for (i, j) in gap_pairs(objects) {
            let t = gap_tiles(objects[i].count(), objects[j].count()).ok_or_else(|| {
                format!(
                    "frame {f} of the batch: objects {i} and {j} ({} and {} points) have more pairs of super-chunks \
                     than the gap kernels index (2^31)",
                    objects[i].count(),
                    objects[j].count()
                )
            })?;
            pairs += 1;
            tiles += t;
        }
        if pairs == 0 {
            continue;
        }
        let points: u64 = objects.iter().map(|o| o.count() as u64).sum();
        let buckets: u64 = objects.iter().map(P::count).filter(|&n| n != 0).map(gap_buckets).sum();
        if points > max_points || pairs > max_pairs || tiles > max_tiles || buckets > max_buckets {
            return Err(format!(
                "frame {f} of the batch has {points} object points, {pairs} pairs, {tiles} tiles and {buckets} \
                 buckets, more than one launch holds ({max_points} points, {max_pairs} pairs, {max_tiles} tiles, \
                 {max_buckets} buckets)"
            ));
        }
        if chunk_points + points > max_points
            || chunk_pairs + pairs > max_pairs
            || chunk_tiles + tiles > max_tiles
            || chunk_buckets + buckets > max_buckets
        {
            chunks.push(std::mem::take(&mut chunk));
            (chunk_points, chunk_pairs, chunk_tiles, chunk_buckets) = (0, 0, 0, 0);
        }
        chunk.push(f);
        chunk_points += points;
        chunk_pairs += pairs;
        chunk_tiles += tiles;
        chunk_buckets += buckets;
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    Ok(chunks)
}

/// A chunk of frames packed for the gap kernels (`kernels/gaps.cu`, `shaders/gaps.wgsl`): every object with points
/// (its points, then its chunks of [`GAP_CHUNK`] points), how the device orders each object's points before it
/// chunks them, and every pair to search.
pub struct GapPack {
    /// x, y, z of every point, object after object (empty for points already on the device).
    pub points: Vec<f32>,
    /// Each object's place among the ordered points (object after object, as in `points`) and its chunks.
    pub objects: Vec<GpuGapObject>,
    /// Each object's place in the buffer the points are read from, and its grid and buckets.
    pub orders: Vec<GpuGapOrder>,
    /// The number of points of all objects.
    pub point_count: u32,
    /// The number of buckets of all objects.
    pub buckets: u32,
    /// The number of chunks of all objects.
    pub chunks: u32,
    /// Per pair: the indices in `objects` of its two objects.
    pub pairs: Vec<[u32; 2]>,
    /// The number of super-chunks of all objects.
    pub supers: u32,
    /// Per pair: its first tile of [`GAP_TILE`] super-chunk pairs (the kernels' blocks); then the number of tiles.
    pub tile_start: Vec<u32>,
    /// Per pair: its frame (index in the batch), the frame's object count `n` and its objects `(i, j)` there.
    places: Vec<(usize, usize, usize, usize)>,
}

impl GapPack {
    /// Packs the frames `chunk` of `frames` (a chunk of [`gap_chunks`], whose limits keep every index in 32 bits;
    /// `Err` if they do not).
    pub fn new(frames: &[&[&[Point3]]], chunk: &[usize]) -> Result<GapPack, String> {
        // Every object's bounding box (a pass over its points), the objects in parallel.
        let mut boxes = vec![Vec::new(); frames.len()];
        let computed: Vec<Vec<Aabb>> =
            chunk.par_iter().map(|&f| frames[f].par_iter().map(|o| bounding_box(o)).collect()).collect();
        for (&f, b) in chunk.iter().zip(computed) {
            boxes[f] = b;
        }
        let total: usize = chunk.iter().map(|&f| frames[f].iter().map(|o| o.len()).sum::<usize>()).sum();
        let mut points = Vec::with_capacity(3 * total);
        let mut pack = Self::build(frames, chunk, None, &boxes, |f, i| points.extend(frames[f][i].iter().flatten()))?;
        pack.points = points;
        Ok(pack)
    }

    /// Packs the frames `chunk` of `frames` for points already on the device: object `i` of frame `f` starts at
    /// point `offsets[f][i]` of that buffer (which holds its `frames[f][i].count()` points in the same order), and
    /// `points` stays empty. `boxes[f][i]` is that object's bounding box, as [`bounding_box`] gives it (on CUDA,
    /// K4's reductions of the same points), so that the points are not read on the host: `frames` may give only
    /// their counts.
    pub fn resident<P: PointCount>(
        frames: &[&[P]],
        chunk: &[usize],
        offsets: &[Vec<u32>],
        boxes: &[Vec<Aabb>],
    ) -> Result<GapPack, String> {
        let per_object = |v: Option<usize>, f: usize| v.is_some_and(|n| n == frames[f].len());
        if let Some(f) = chunk.iter().find(|&&f| !per_object(offsets.get(f).map(Vec::len), f)) {
            return Err(format!("frame {f} of the batch: no device offset for each of its objects"));
        }
        if let Some(f) = chunk.iter().find(|&&f| !per_object(boxes.get(f).map(Vec::len), f)) {
            return Err(format!("frame {f} of the batch: no bounding box for each of its objects"));
        }
        Self::build(frames, chunk, Some(offsets), boxes, |_, _| {})
    }

    /// The pack, with `boxes[f]` the boxes of frame `f`'s objects (for every frame of `chunk`); without `offsets`,
    /// `copy(f, i)` is called for each object with points of each frame, in the pack's order (the caller copies its
    /// points).
    fn build<P: PointCount>(
        frames: &[&[P]],
        chunk: &[usize],
        offsets: Option<&[Vec<u32>]>,
        boxes: &[Vec<Aabb>],
        mut copy: impl FnMut(usize, usize),
    ) -> Result<GapPack, String> {
        let mut pack = GapPack {
            points: Vec::new(),
            objects: vec![],
            orders: vec![],
            point_count: 0,
            buckets: 0,
            chunks: 0,
            supers: 0,
            pairs: vec![],
            tile_start: vec![0],
            places: vec![],
        };
        for &f in chunk {
            let (objects, boxes) = (frames[f], &boxes[f]);
            // Each object's index in `pack.objects` (objects without points have none).
            let mut slot = vec![u32::MAX; objects.len()];
            for (i, o) in objects.iter().enumerate() {
                let n = o.count();
                if n == 0 {
                    continue;
                }
                slot[i] = pack.objects.len() as u32;
                let offset = pack.point_count;
                let source = match offsets {
                    Some(offsets) => offsets[f][i],
                    None => offset,
                };
                let too_many = || format!("frame {f}: the gap batch's points or buckets exceed 32 bits");
                let count = u32::try_from(n).map_err(|_| too_many())?;
                let point_count = pack.point_count.checked_add(count).ok_or_else(too_many)?;
                let buckets = u32::try_from(gap_buckets(n))
                    .ok()
                    .and_then(|b| pack.buckets.checked_add(b))
                    .ok_or_else(too_many)?;
                pack.objects.push(GpuGapObject { offset, count, chunk_offset: pack.chunks, super_offset: pack.supers });
                pack.orders.push(gap_order(boxes[i], source, pack.buckets, gap_grid_bits(n)));
                (pack.point_count, pack.buckets) = (point_count, buckets);
                pack.chunks += n.div_ceil(GAP_CHUNK) as u32;
                pack.supers += gap_supers(n) as u32;
                if offsets.is_none() {
                    copy(f, i);
                }
            }
            for (i, j) in gap_pairs(objects) {
                let tiles = gap_tiles(objects[i].count(), objects[j].count());
                let last = pack.tile_start.last().copied().unwrap_or(0);
                let next = tiles
                    .and_then(|t| u32::try_from(u64::from(last) + t).ok())
                    .ok_or_else(|| format!("frame {f}: the gap tiles of objects {i} and {j} exceed 32 bits"))?;
                pack.pairs.push([slot[i], slot[j]]);
                pack.tile_start.push(next);
                pack.places.push((f, objects.len(), i, j));
            }
        }
        Ok(pack)
    }

    /// The number of tiles (blocks of each gap pass).
    pub fn tiles(&self) -> u32 {
        self.tile_start.last().copied().unwrap_or(0)
    }

    /// Writes the device's squared gaps (one per pair, in `pairs` order) into the frames' matrices, as distances
    /// (the square root on the host, as the CPU reference takes it).
    pub fn fill(&self, best2: &[f32], matrices: &mut [Vec<f32>]) -> Result<(), String> {
        if best2.len() < self.places.len() {
            return Err(format!("{} gaps came back for {} pairs", best2.len(), self.places.len()));
        }
        for (&(f, n, i, j), d2) in self.places.iter().zip(best2) {
            let m = matrices
                .get_mut(f)
                .filter(|m| m.len() == n * n)
                .ok_or_else(|| format!("no gap matrix for frame {f}"))?;
            let g = d2.sqrt();
            m[i * n + j] = g;
            m[j * n + i] = g;
        }
        Ok(())
    }
}

/// The spatial order of an object's points (see [`GpuGapOrder`]): a grid of `2^bits` cells a side over the points'
/// bounding box `(lo, hi)` ([`bounding_box`]). Any order gives the same gaps, bit for bit (the minimum is exact); a
/// grid of cells of 0 metres (a single point, or points that are not finite) puts every point in one bucket.
fn gap_order((lo, hi): ([f32; 3], [f32; 3]), source: u32, buckets: u32, bits: u32) -> GpuGapOrder {
    let extent = (0..3).map(|k| hi[k] - lo[k]).fold(0.0f32, f32::max);
    let inv_cell = (1u32 << bits) as f32 / extent;
    match inv_cell.is_finite() && lo.iter().all(|v| v.is_finite()) {
        true => GpuGapOrder { source, buckets, bits, inv_cell, lo, _pad: 0 },
        false => GpuGapOrder { source, buckets, bits, inv_cell: 0.0, lo: [0.0; 3], _pad: 0 },
    }
}

/// K5: the frames of a batch in chunks of at most `max_pairs` ordered pairs (at least one frame per chunk): each
/// chunk's frame range and pair count. `Err` when one frame alone has more pairs than the limit.
pub fn relation_chunks(frames: &[&[ObjectSummary]], max_pairs: u64) -> Result<Vec<(usize, usize, u64)>, String> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < frames.len() {
        let mut end = start;
        let mut pairs = 0u64;
        while end < frames.len() {
            let n = frames[end].len() as u64;
            let p = n * n.saturating_sub(1);
            if p > max_pairs {
                return Err(format!("a frame with {n} objects has more pairs than one device buffer holds"));
            }
            if end > start && pairs + p > max_pairs {
                break;
            }
            pairs += p;
            end += 1;
        }
        out.push((start, end, pairs));
        start = end;
    }
    Ok(out)
}

/// K5: a chunk's objects, frame after frame, and each frame's ranges; pair offsets are the exclusive prefix sum of
/// n (n − 1), so records are compact and in a fixed order.
pub fn pack_relations(frames: &[&[ObjectSummary]]) -> (Vec<ObjectSummary>, Vec<FrameRange>) {
    let mut objects: Vec<ObjectSummary> = Vec::new();
    let mut ranges = Vec::with_capacity(frames.len());
    let mut pair_offset = 0u32;
    for f in frames {
        let n = f.len() as u32;
        ranges.push(FrameRange { object_offset: objects.len() as u32, object_count: n, pair_offset, _pad: 0 });
        objects.extend_from_slice(f);
        pair_offset += n * n.saturating_sub(1);
    }
    (objects, ranges)
}

/// K5: each frame's records from a chunk's records.
pub fn split_relations(ranges: &[FrameRange], records: &[RelationRecord]) -> Result<Vec<Vec<RelationRecord>>, String> {
    ranges
        .iter()
        .map(|r| {
            let n = r.object_count as usize;
            let start = r.pair_offset as usize;
            records
                .get(start..start + n * n.saturating_sub(1))
                .map(<[RelationRecord]>::to_vec)
                .ok_or_else(|| "relation records came back short".to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Point3;

    #[test]
    fn depth_words_are_laid_out_frame_after_frame() {
        // u16 two pixels a word (an odd count ends with a half word), f32 one pixel a word; each frame's
        // word_offset where its words start; `layout` counts what `pack` writes, and a short buffer is no panic.
        let k = |w, h| Intrinsics { fx: 1.0, fy: 1.0, cx: 0.0, cy: 0.0, width: w, height: h };
        let u16_depth = |w: u32, h: u32, first: u16| DepthImage {
            width: w,
            height: h,
            data: DepthData::U16 {
                values: (0..(w * h) as u16).map(|i| first + i).collect(),
                units_per_meter: 1000.0,
                invalid_value: None,
            },
        };
        let a = u16_depth(3, 3, 100);
        let b = DepthImage { width: 2, height: 1, data: DepthData::F32 { values: vec![1.5, -0.0] } };
        let c = u16_depth(2, 1, 7);
        let (ka, kb, kc) = (k(3, 3), k(2, 1), k(2, 1));
        let frames = [(&a, &ka), (&b, &kb), (&c, &kc)];
        let packed = DepthBatch::pack(&frames, 4).unwrap();
        let mut want: Vec<u32> = (0..4).map(|i| (100 + 2 * i) | ((101 + 2 * i) << 16)).collect();
        want.push(108);
        want.extend([1.5f32.to_bits(), (-0.0f32).to_bits(), 7 | (8 << 16)]);
        assert_eq!(packed.words, want);
        assert_eq!(packed.frames.iter().map(|f| f.word_offset).collect::<Vec<_>>(), vec![0, 5, 7]);
        let laid = DepthBatch::layout(&frames, 4).unwrap();
        assert!(laid.words.is_empty());
        assert_eq!(laid.word_count, want.len() as u64);
        assert_eq!(laid.frames, packed.frames);
        let mut short = vec![0u32; 6];
        DepthBatch::write_words(&frames, &mut short);
        assert_eq!(short, want[..6]);
    }

    #[test]
    fn clusterings_number_clusters_by_smallest_label_within_each_job() {
        // The numbering by sorted labels, written plainly.
        fn plain(job_start: &[u32], labels: &[u32], core: &[u32]) -> Vec<Clustering> {
            job_start
                .windows(2)
                .map(|r| {
                    let points = r[0] as usize..r[1] as usize;
                    let mut names: Vec<u32> =
                        labels[points.clone()].iter().copied().filter(|&l| l != u32::MAX).collect();
                    names.sort_unstable();
                    names.dedup();
                    Clustering {
                        labels: points
                            .clone()
                            .map(|i| match labels[i] {
                                u32::MAX => NOISE,
                                l => names.binary_search(&l).unwrap() as i32,
                            })
                            .collect(),
                        core: points.map(|i| core[i] == 1).collect(),
                        clusters: names.len() as u32,
                    }
                })
                .collect()
        }
        let mut rng = crate::test_rng::XorShift(0x2545_f491_4f6c_dd1du64);
        let mut next = |n: u32| rng.below(n);
        for _ in 0..50 {
            // Jobs of 0 to 40 points: up to four roots (core points labelled themselves), each other point noise or
            // labelled by a root of its job, before or after it.
            let mut job_start = vec![0u32];
            for _ in 0..next(6) {
                let last = *job_start.last().unwrap();
                job_start.push(last + next(41));
            }
            let n = *job_start.last().unwrap() as usize;
            let (mut labels, mut core) = (vec![u32::MAX; n], vec![0u32; n]);
            for r in job_start.windows(2).filter(|r| r[1] > r[0]) {
                let mut roots: Vec<u32> = (0..1 + next(4)).map(|_| r[0] + next(r[1] - r[0])).collect();
                roots.sort_unstable();
                roots.dedup();
                for i in r[0]..r[1] {
                    if next(4) > 0 {
                        labels[i as usize] = roots[next(roots.len() as u32) as usize];
                        core[i as usize] = next(2);
                    }
                }
                for &root in &roots {
                    (labels[root as usize], core[root as usize]) = (root, 1);
                }
            }
            let expected = plain(&job_start, &labels, &core);
            assert_eq!(clusterings_in_batch_order(&job_start, &labels, &core).unwrap(), expected);
            let words: Vec<u32> =
                labels.iter().zip(&core).map(|(&l, &c)| if l == u32::MAX { l } else { l | c << 31 }).collect();
            assert_eq!(clusterings_in_batch_order_packed(&job_start, &words).unwrap(), expected);
        }
        // A label outside its job, on either side, is refused.
        for label in [1, 5] {
            let labels = [u32::MAX, 1, 2, label, 2];
            let err = clusterings_in_batch_order(&[0, 2, 5], &labels, &[0, 1, 1, 0, 0]).unwrap_err();
            assert!(err.contains("another job"), "{err}");
        }
        // A label naming a point of its job that is not labelled itself, before or after it, is refused.
        for labels in [[u32::MAX, 0, 1], [2, 2, u32::MAX], [1, 2, 0], [2, 1, 1]] {
            let err = clusterings_in_batch_order(&[0, 3], &labels, &[1; 3]).unwrap_err();
            assert!(err.contains("not labelled itself"), "{labels:?}: {err}");
        }
        // So is a point labelled itself that is not a core point (no root).
        let err = clusterings_in_batch_order(&[0, 3], &[1, 1, u32::MAX], &[1, 0, 0]).unwrap_err();
        assert!(err.contains("not labelled itself"), "{err}");
    }

    #[test]
    fn gap_packs_hold_every_pair_of_objects_with_points() {
        let (a, b, c) = (vec![[0.0f32; 3]; 70], vec![[1.0f32, 0.0, 0.0]; 33], vec![[0.0f32, 2.0, 0.0]; 1]);
        let empty: Vec<Point3> = Vec::new();
        let f0: Vec<&[Point3]> = vec![&a, &empty, &b, &c];
        let f1: Vec<&[Point3]> = vec![&a];
        let f2: Vec<&[Point3]> = vec![&c, &b];
        let frames: Vec<&[&[Point3]]> = vec![&f0, &f1, &f2];
        // Frame 1 has no pair; the limits split the other two.
        let big = 1 << 20;
        assert_eq!(gap_chunks(&frames, big, big, big, big).unwrap(), vec![vec![0, 2]]);
        assert_eq!(gap_chunks(&frames, 110, big, big, big).unwrap(), vec![vec![0], vec![2]]);
        assert_eq!(gap_chunks(&frames, big, 3, big, big).unwrap(), vec![vec![0], vec![2]]);
        assert!(gap_chunks(&frames, 50, big, big, big).unwrap_err().contains("frame 0"));
        assert!(gap_chunks(&frames, big, 2, big, big).unwrap_err().contains("frame 0"));
        // Buckets: 4^3 for 70 and for 33 points (at most four per point), one for a single point; frame 0 has
        // 129, frame 2 has 65.
        assert_eq!((gap_grid_bits(70), gap_grid_bits(33), gap_grid_bits(1), gap_grid_bits(1 << 20)), (2, 2, 0, 6));
        assert_eq!(gap_chunks(&frames, big, big, big, 194).unwrap(), vec![vec![0, 2]]);
        assert_eq!(gap_chunks(&frames, big, big, big, 193).unwrap(), vec![vec![0], vec![2]]);
        assert!(gap_chunks(&frames, big, big, big, 128).unwrap_err().contains("129 buckets"));
        // Objects of twelve million points each: more super pairs than 32-bit indices reach.
        assert_eq!(gap_tiles(12_000_000, 12_000_000), None);
        assert_eq!(gap_tiles(11_000_000, 11_000_000), Some(901_531));
        assert_eq!(gap_tiles(70, 33), Some(1));
        // 257 points: two chunks more than a super-chunk; 256 x 256 super pairs of 65,536 points each are 32 tiles.
        assert_eq!((gap_supers(256), gap_supers(257), gap_tiles(65_536, 65_536)), (1, 2, Some(32)));
        let pack = GapPack::new(&frames, &[0, 2]).unwrap();
        let offsets: Vec<[u32; 4]> =
            pack.objects.iter().map(|o| [o.offset, o.count, o.chunk_offset, o.super_offset]).collect();
        assert_eq!(offsets, [[0, 70, 0, 0], [70, 33, 3, 1], [103, 1, 5, 2], [104, 1, 6, 3], [105, 33, 7, 4]]);
        assert_eq!((pack.chunks, pack.supers, pack.points.len()), (9, 5, 3 * 138));
        assert_eq!((pack.point_count, pack.buckets), (138, 194));
        let orders: Vec<[u32; 3]> = pack.orders.iter().map(|o| [o.source, o.buckets, o.bits]).collect();
        assert_eq!(orders, [[0, 0, 2], [70, 64, 2], [103, 128, 0], [104, 129, 0], [105, 130, 2]]);
        // Points all at one place have a grid of cells of 0 metres: one bucket for all.
        assert!(pack.orders.iter().all(|o| o.inv_cell == 0.0 && o.lo == [0.0; 3]));
        let spread = gap_order(bounding_box(&[[1.0, -1.0, 0.0], [3.0, 0.0, 0.5], [2.0, 0.5, 0.25]]), 7, 9, 3);
        assert_eq!(
            spread,
            GpuGapOrder { source: 7, buckets: 9, bits: 3, inv_cell: 4.0, lo: [1.0, -1.0, 0.0], _pad: 0 }
        );
        // Points already on the device keep their offsets there as their sources; the ordered points are packed.
        // The objects' boxes given (on CUDA, K4's): with the points' own boxes, the orders of the copied pack but for
        // their sources; another box gives another order (the pack takes it as given); a missing one is refused.
        let offsets = [vec![], vec![], vec![500, 900]];
        let boxes: Vec<Vec<Aabb>> = frames.iter().map(|f| f.iter().map(|o| bounding_box(o)).collect()).collect();
        let resident = GapPack::resident(&frames, &[2], &offsets, &boxes).unwrap();
        let places: Vec<[u32; 3]> =
            resident.objects.iter().zip(&resident.orders).map(|(o, r)| [o.offset, o.count, r.source]).collect();
        assert_eq!((places, resident.points.len()), (vec![[0, 1, 500], [1, 33, 900]], 0));
        // The counts alone pack the same (what CUDA's gaps from K4's kept batch give).
        let counts: Vec<Vec<usize>> = frames.iter().map(|f| f.iter().map(|o| o.len()).collect()).collect();
        let counts: Vec<&[usize]> = counts.iter().map(Vec::as_slice).collect();
        let by_count = GapPack::resident(&counts, &[2], &offsets, &boxes).unwrap();
        assert_eq!(
            (&by_count.objects, &by_count.orders, &by_count.pairs),
            (&resident.objects, &resident.orders, &resident.pairs)
        );
        assert_eq!((by_count.tile_start, by_count.places), (resident.tile_start.clone(), resident.places.clone()));
        assert_eq!(gap_chunks(&counts, 110, big, big, big).unwrap(), vec![vec![0], vec![2]]);
        let bits =
            |m: Vec<Vec<f32>>| m.iter().map(|f| f.iter().map(|x| x.to_bits()).collect()).collect::<Vec<Vec<u32>>>();
        assert_eq!(bits(gap_matrices(&counts)), bits(gap_matrices(&frames)));
        let copied = GapPack::new(&frames, &[2]).unwrap();
        let without_source = |p: &GapPack| p.orders.iter().map(|o| GpuGapOrder { source: 0, ..*o }).collect::<Vec<_>>();
        assert_eq!(without_source(&resident), without_source(&copied));
        let mut wide = boxes.clone();
        wide[2][1].1[0] += 100.0;
        let other = GapPack::resident(&frames, &[2], &offsets, &wide).unwrap();
        assert_ne!(other.orders, resident.orders);
        let short = [vec![], vec![], vec![boxes[2][0]]];
        let refused = GapPack::resident(&frames, &[2], &offsets, &short).err();
        assert!(refused.is_some_and(|e| e.contains("frame 2")));
        assert_eq!(pack.pairs, [[0, 1], [0, 2], [1, 2], [3, 4]]);
        assert_eq!((pack.tile_start.as_slice(), pack.tiles()), (&[0, 1, 2, 3, 4][..], 4));
        let mut m = gap_matrices(&frames);
        pack.fill(&[1.0, 4.0, 9.0, 16.0], &mut m).unwrap();
        let nan = f32::NAN;
        let want0 = [0.0, nan, 1.0, 2.0, nan, 0.0, nan, nan, 1.0, nan, 0.0, 3.0, 2.0, nan, 3.0, 0.0];
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&m[0]), bits(&want0));
        assert_eq!(m[1], [0.0]);
        assert_eq!(m[2], [0.0, 4.0, 4.0, 0.0]);
        assert!(pack.fill(&[1.0], &mut m).is_err());
    }

    /// The grid's binning as one comparison sort of the whole batch (what `DbscanGrid::new` computes job by job):
    /// each point's (x, y, z, job) and the batch indices in (z, y, x, index) order.
    fn reference_binning(jobs: &[DbscanJob<'_>]) -> (Vec<[u32; 4]>, Vec<u32>) {
        let mut keys = Vec::new();
        let mut z_base = 0i64;
        for (slot, job) in jobs.iter().enumerate() {
            let inv = 1.0 / f64::from(cell_side(job.eps));
            let cells: Vec<[i64; 3]> =
                job.points.iter().map(|p| p.map(|v| (f64::from(v) * inv).floor() as i64)).collect();
            let lo = cells.iter().fold([i64::MAX; 3], |a, c| [a[0].min(c[0]), a[1].min(c[1]), a[2].min(c[2])]);
            let top = cells.iter().map(|c| c[2] - lo[2] + 2).max();
            keys.extend(cells.iter().map(|c| {
                [(c[0] - lo[0] + 2) as u32, (c[1] - lo[1] + 2) as u32, (c[2] - lo[2] + 2 + z_base) as u32, slot as u32]
            }));
            if let Some(top) = top {
                z_base += top + 1;
            }
        }
        let mut order: Vec<u32> = (0..keys.len() as u32).collect();
        order.sort_by_key(|&i| {
            let k = keys[i as usize];
            (k[2], k[1], k[0], i)
        });
        (keys, order)
    }

    #[test]
    fn the_dbscan_grid_bins_jobs_as_one_sort_of_the_batch() {
        let mut counter = 0;
        let mut next = || {
            counter += 1;
            crate::geometry::rng::draw_u32(5, 0, counter, 0) as f32 / u32::MAX as f32
        };
        let blob = |next: &mut dyn FnMut() -> f32, n: usize, c: [f32; 3], r: f32| -> Vec<Point3> {
            (0..n).map(|_| [0, 1, 2].map(|k| c[k] + r * (next() - 0.5))).collect()
        };
        let objects: Vec<Vec<Point3>> = vec![
            blob(&mut next, 3000, [0.2, -0.4, 1.5], 0.6),
            Vec::new(),
            vec![[1.0, 2.0, 3.0]],
            blob(&mut next, 500, [-3.0, 1.0, 6.0], 0.05),
            // Spans 2^22 cells on every axis: beyond one 64-bit key (checked below), sorted by comparison.
            vec![[0.0, 0.0, 0.0], [42_000.0, 42_000.0, 42_000.0], [21_000.0, 1.0, 42_000.0], [0.0, 0.0, 0.005]],
            blob(&mut next, 2000, [0.0, 0.0, 2.0], 2.0),
        ];
        let eps = [0.02f32, 0.05, 0.05, 0.003, 0.01, 0.1];
        assert!((42_000.0f64 / 0.01).powi(3) > u64::MAX as f64);
        let jobs: Vec<DbscanJob<'_>> =
            objects.iter().zip(eps).map(|(p, eps)| DbscanJob { points: p, eps, min_points: 5 }).collect();
        let chunk: Vec<usize> = (0..jobs.len()).collect();
        let grid = DbscanGrid::new(&jobs, &chunk).unwrap();
        let (keys, order) = reference_binning(&jobs);
        assert_eq!(grid.original, order);
        let n = order.len();
        for (s, &i) in order.iter().enumerate() {
            assert_eq!(grid.cell_xyz[4 * s..4 * s + 4], keys[i as usize], "sorted point {s}");
            assert_eq!(grid.position[i as usize] as usize, s);
        }
        let flat: Vec<Point3> = objects.concat();
        assert_eq!(grid.sorted, order.iter().flat_map(|&i| flat[i as usize]).collect::<Vec<f32>>());
        let cells = grid.params.cells as usize;
        assert_eq!(grid.cell_start.len(), cells + 1);
        for c in 0..cells {
            let first = grid.cell_start[c] as usize;
            assert_eq!(grid.cell_xyz[4 * n + 3 * c..4 * n + 3 * c + 3], grid.cell_xyz[4 * first..4 * first + 3]);
        }
        assert_eq!(grid.job_start, [0, 3000, 3000, 3001, 3501, 3505, 5505]);
        // The jobs' z ranges do not touch: two empty layers between two jobs (a block reaches 2 cells).
        let z_range = |j: usize| {
            let zs = (grid.job_start[j]..grid.job_start[j + 1]).map(|i| keys[i as usize][2]);
            (zs.clone().min().unwrap(), zs.max().unwrap())
        };
        for (a, b) in [(0, 2), (2, 3), (3, 4), (4, 5)] {
            assert!(z_range(a).1 + 2 < z_range(b).0);
        }
    }

    #[test]
    fn the_dbscan_grid_refuses_what_32_bit_cells_cannot_hold() {
        let far = [[0.0f32, 0.0, 0.0], [0.0, 0.0, 1e6]];
        let jobs = [DbscanJob { points: &far, eps: 1e-4, min_points: 1 }];
        let err = DbscanGrid::new(&jobs, &[0]).unwrap_err();
        assert!(err.contains("job 0") && err.contains("2^32 cells"), "{err}");
        let bad =
            [DbscanJob { points: &far, eps: 1e-4, min_points: 1 }, DbscanJob { points: &far, eps: 0.0, min_points: 1 }];
        let err = DbscanGrid::new(&bad, &[0, 1]).unwrap_err();
        assert!(err.contains("job 1") && err.contains("radius"), "{err}");
    }

    #[test]
    fn unread_dbscan_chunks_leave_the_points_to_the_device_and_name_its_refusals_as_the_host_does() {
        let good = [[0.0f32, 0.0, 0.0], [0.01, 0.0, 0.0]];
        let nan = [[0.0f32, 0.0, 0.0], [f32::NAN, 0.0, 0.0]];
        let far = [[0.0f32, 0.0, 0.0], [0.0, 0.0, -3.0e7]];
        let job = |points, eps| DbscanJob { points, eps, min_points: 1 };
        let shapes = |jobs: &[DbscanJob<'_>]| jobs.iter().map(JobShape::from).collect::<Vec<_>>();
        // The points are not read: the chunks of a batch with a NaN are those of the batch without it.
        let with_nan = [job(&good, 0.1), job(&nan, 0.1), job(&far, 1e-2), job(&[], 0.1)];
        let clean = [job(&good, 0.1), job(&good, 0.1), job(&far, 1e-2), job(&[], 0.1)];
        assert_eq!(dbscan_chunks_of_shapes(&shapes(&with_nan), 3).unwrap(), dbscan_chunks(&clean, 3).unwrap());
        assert_eq!(dbscan_chunks_of_shapes(&shapes(&with_nan), 3).unwrap(), [vec![0], vec![1], vec![2]]);
        // The errors that need no point are dbscan_chunks' (a bad radius, a job too large); dbscan_chunks names a
        // NaN of an earlier job first (what the host says when the shapes are refused).
        let radius_only = [job(&good, 0.1), job(&[], f32::INFINITY)];
        assert_eq!(dbscan_chunks_of_shapes(&shapes(&radius_only), 8), dbscan_chunks(&radius_only, 8));
        assert!(dbscan_chunks(&radius_only, 8).unwrap_err().starts_with("job 1: DBSCAN radius"));
        assert_eq!(dbscan_chunks_of_shapes(&shapes(&clean), 1).unwrap_err(), dbscan_chunks(&clean, 1).unwrap_err());
        let bad_radius = [job(&nan, 0.1), job(&good, 0.0)];
        assert!(dbscan_chunks_of_shapes(&shapes(&bad_radius), 8).unwrap_err().starts_with("job 1: DBSCAN radius"));
        assert_eq!(dbscan_chunks(&bad_radius, 8).unwrap_err(), "job 0: point 1 is not finite");
        // A refusal: a NaN anywhere (job 1, while the chunk is job 2's), else the chunk's first overflowing job.
        assert_eq!(dbscan_refusal(&with_nan, &[2], 8), "job 1: point 1 is not finite");
        let overflows = [job(&good, 0.1), job(&far, 1e-2), job(&far, 1e-2)];
        let err = dbscan_refusal(&overflows, &[0, 1, 2], 8);
        assert_eq!(Some(err.clone()), dbscan_range_refusal(&overflows, &[0, 1, 2]));
        assert!(err.starts_with("job 1: the points lie more than 2^31 cells"), "{err}");
        // A refusal neither check makes is a bug, said so.
        assert!(dbscan_refusal(&clean[..2], &[0, 1], 8).contains("a bug"));
        // The batch packs what the device refuses: the range is the device's to check.
        let batch = DbscanBatch::new(&overflows, &[0, 1, 2]).unwrap();
        assert_eq!(batch.points, overflows.iter().flat_map(|j| j.points.iter().flatten().copied()).collect::<Vec<_>>());
        assert_eq!((&batch.job_start, batch.params.points), (&vec![0, 2, 4, 6], 6));
        // From the shapes alone: the same batch without its points.
        let shapes: Vec<JobShape> = overflows.iter().map(JobShape::from).collect();
        let shaped = DbscanBatch::shaped(&shapes, &[0, 1, 2]).unwrap();
        assert!(shaped.points.is_empty());
        assert_eq!((shaped.job_start, shaped.params, shaped.jobs), (batch.job_start, batch.params, batch.jobs));
    }

    #[test]
    fn the_dbscan_grid_renames_the_devices_sorted_positions_to_batch_indices() {
        // Two clusters: {0, 3} at x = 5 and {1, 2} at x = 0, so the second comes first in sorted order.
        let a = [[5.0f32, 0.0, 0.0], [0.0, 0.0, 0.0], [0.01, 0.0, 0.0], [5.01, 0.0, 0.0]];
        let jobs = [DbscanJob { points: &a, eps: 0.05, min_points: 2 }];
        let grid = DbscanGrid::new(&jobs, &[0]).unwrap();
        let pos = |b: usize| grid.position[b];
        assert!(pos(1) < pos(0));
        // The device's labels (sorted order): each core point's root is the sorted position of its cluster's point
        // of smallest batch index.
        let (mut labels, core) = (vec![0u32; 4], vec![1u32; 4]);
        for (b, root) in [(0, 0), (1, 1), (2, 1), (3, 0)] {
            labels[pos(b) as usize] = pos(root);
        }
        // Clusters numbered by smallest batch index: {0, 3} is cluster 0.
        let got = grid.clusterings(&labels, &core).unwrap();
        assert_eq!(got, [Clustering { labels: vec![0, 1, 1, 0], core: vec![true; 4], clusters: 2 }]);
        labels[pos(3) as usize] = 4;
        assert!(grid.clusterings(&labels, &core).unwrap_err().contains("out of range"));
    }

    #[test]
    fn the_device_grid_batch_concatenates_the_jobs_and_refuses_cells_beyond_31_bits() {
        let a = [[0.0f32, 1.0, 2.0], [3.0, 4.0, 5.0]];
        let b = [[6.0f32, 7.0, 8.0]];
        let c = [[-1.0f32, -2.0, -3.0], [0.5, 0.5, 0.5], [9.0, 9.0, 9.0]];
        let jobs = [
            DbscanJob { points: &a, eps: 0.1, min_points: 3 },
            DbscanJob { points: &b, eps: 0.2, min_points: 0 },
            DbscanJob { points: &c, eps: 0.3, min_points: 2 },
        ];
        // A chunk in any order of the batch's jobs: batch indices follow the chunk.
        let batch = DbscanBatch::new(&jobs, &[2, 0, 1]).unwrap();
        assert_eq!(batch.job_start, [0, 3, 5, 6]);
        let want: Vec<f32> = c.iter().chain(&a).chain(&b).flatten().copied().collect();
        assert_eq!(batch.points, want);
        assert_eq!((batch.params.points, batch.params.jobs), (6, 3));
        // Slots: a power of two, at least twice the points (probe sequences always reach an empty slot).
        assert_eq!(batch.params.cells, 16);
        assert_eq!(batch.jobs[0].min_points, 2);
        assert_eq!(batch.jobs[2].min_points, 1, "min_points 0 counts as 1, as on the CPU");
        assert_eq!(batch.jobs[1].eps2, 0.1f32 * 0.1);
        // The cells are the CPU reference's (eps/√3, a little shrunk).
        assert_eq!(batch.jobs[1].inv_side, 1.0 / f64::from(cell_side(0.1)));
        assert!((batch.jobs[1].inv_side * 0.1 / 3f64.sqrt() - 1.0).abs() < 2e-4);
        // The host's grid bins with the same side: a point's cells differ only by the grid's offset.
        let grid = DbscanGrid::new(&jobs, &[0]).unwrap();
        let cell = |p: &[f32; 3]| p.map(|v| floor_i64(f64::from(v) * inverse_cell_side(0.1)));
        let (c0, c1) = (cell(&a[0]), cell(&a[1]));
        let s0 = grid.position[0] as usize;
        let s1 = grid.position[1] as usize;
        for k in 0..3 {
            assert_eq!(i64::from(grid.cell_xyz[4 * s1 + k]) - i64::from(grid.cell_xyz[4 * s0 + k]), c1[k] - c0[k]);
        }
        // Cells (and their neighbours) must stay within 2^31 - 3 of 0; the refusal names the job.
        let inside = [[0.0f32, 0.0, 0.0], [0.0, 2.0e8 * 1e-2, 0.0]];
        let outside = [[0.0f32, 0.0, 0.0], [0.0, 0.0, -3.0e9 * 1e-2]];
        let jobs = [
            DbscanJob { points: &inside, eps: 1e-2, min_points: 1 },
            DbscanJob { points: &outside, eps: 1e-2, min_points: 1 },
        ];
        assert_eq!(dbscan_range_refusal(&jobs, &[0]), None);
        let err = dbscan_range_refusal(&jobs, &[0, 1]).unwrap();
        assert!(err.contains("job 1") && err.contains("2^31 cells"), "{err}");
        // The first refused in the chunk's order is named.
        let twice = [jobs[1], jobs[0], jobs[1]];
        assert!(dbscan_range_refusal(&twice, &[2, 1, 0]).unwrap().starts_with("job 2:"));
        let bad = [jobs[0], DbscanJob { points: &[], eps: f32::NAN, min_points: 1 }];
        let err = DbscanBatch::new(&bad, &[0, 1]).unwrap_err();
        assert!(err.contains("job 1") && err.contains("radius"), "{err}");
        assert_eq!(dbscan_range_refusal(&bad, &[0, 1]), Some(err));
    }

    #[test]
    fn clusterings_in_batch_order_number_clusters_by_their_smallest_index_per_job() {
        // Two jobs: [0, 3) and [3, 6). Labels name the smallest batch index of a cluster's core points (its root,
        // labelled itself), a border point's before or after it; u32::MAX is noise.
        let job_start = [0, 3, 6];
        let labels = [1, 1, u32::MAX, 5, 4, 5];
        let core = [0, 1, 0, 0, 1, 1];
        let got = clusterings_in_batch_order(&job_start, &labels, &core).unwrap();
        assert_eq!(got[0], Clustering { labels: vec![0, 0, NOISE], core: vec![false, true, false], clusters: 1 });
        assert_eq!(got[1], Clustering { labels: vec![1, 0, 1], core: vec![false, true, true], clusters: 2 });
        // A label naming another job's point, or too few labels, is an error, not a wrong clustering.
        assert!(clusterings_in_batch_order(&job_start, &[1, 1, 1, 0, 3, 3], &core)
            .unwrap_err()
            .contains("another job"));
        assert!(clusterings_in_batch_order(&job_start, &labels[..5], &core).unwrap_err().contains("short"));
        // The same from one word per point (CUDA's unsort: the core flag in the top bit).
        let words: Vec<u32> =
            labels.iter().zip(&core).map(|(&l, &c)| if l == u32::MAX { l } else { l | c << 31 }).collect();
        assert_eq!(clusterings_in_batch_order_packed(&job_start, &words).unwrap(), got);
        assert!(clusterings_in_batch_order_packed(&job_start, &[1, 1 | 1 << 31, 1, 0, 3, 3])
            .unwrap_err()
            .contains("another job"));
        assert!(clusterings_in_batch_order_packed(&job_start, &words[..5]).unwrap_err().contains("short"));
        // Starts that go back are refused, not read past the words (the jobs run in parallel).
        assert!(clusterings_in_batch_order_packed(&[0, 2, 10, 5], &[u32::MAX; 5]).unwrap_err().contains("go back"));
    }

    #[test]
    fn clusterings_come_back_in_job_order_from_many_jobs() {
        // Enough jobs (of different sizes) for the parallel numbering to split them: job j has j + 1 points, its
        // first point a cluster of the even ones, the odd ones noise.
        let mut job_start = vec![0u32];
        let mut words = Vec::new();
        for j in 0..200u32 {
            let first = *job_start.last().unwrap();
            words.extend((0..=j).map(|k| if k % 2 == 0 { first | 1 << 31 } else { u32::MAX }));
            job_start.push(first + j + 1);
        }
        let got = clusterings_in_batch_order_packed(&job_start, &words).unwrap();
        assert_eq!(got.len(), 200);
        for (j, c) in got.iter().enumerate() {
            let want: Vec<i32> = (0..=j).map(|k| if k % 2 == 0 { 0 } else { NOISE }).collect();
            assert_eq!((c.labels.clone(), c.clusters), (want, 1), "job {j}");
            assert_eq!(c.core, (0..=j).map(|k| k % 2 == 0).collect::<Vec<_>>(), "job {j}");
        }
    }

    #[test]
    fn par_fill_writes_the_items_in_order_or_refuses() {
        let items: Vec<u32> = (0..300).collect();
        let len = |&i: &u32| (i % 7) as usize;
        let want: Vec<u32> = items.iter().flat_map(|&i| (0..i % 7).map(move |k| 1000 * i + k)).collect();
        let mut dst = vec![0u32; want.len()];
        assert!(par_fill(&items, len, |&i| (0..i % 7).map(move |k| Some(1000 * i + k)), &mut dst));
        assert_eq!(dst, want);
        // A `None`, an item giving fewer or more values than its length, or a destination of another size: refused.
        assert!(!par_fill(&items, len, |&i| (0..i % 7).map(move |k| (i != 150 || k != 2).then_some(k)), &mut dst));
        assert!(!par_fill(&items, len, |&i| (0..i % 7 + u32::from(i == 9)).map(Some), &mut dst));
        assert!(!par_fill(&items, len, |&i| (0..(i % 7).saturating_sub(u32::from(i == 9))).map(Some), &mut dst));
        assert!(!par_fill(&items, len, |&i| (0..i % 7).map(Some), &mut dst[1..]));
        let mut longer = vec![0u32; want.len() + 1];
        assert!(!par_fill(&items, len, |&i| (0..i % 7).map(Some), &mut longer));
    }

    #[test]
    fn par_concat_joins_the_items_in_order_or_refuses() {
        let items: Vec<u32> = (0..300).collect();
        let len = |&i: &u32| (i % 7) as usize;
        let got = par_concat(&items, len, |&i| (0..i % 7).map(move |k| Some(1000 * i + k))).unwrap();
        let want: Vec<u32> = items.iter().flat_map(|&i| (0..i % 7).map(move |k| 1000 * i + k)).collect();
        assert_eq!(got, want);
        // A `None` anywhere, or an item giving fewer or more values than its length: no vector.
        assert_eq!(par_concat(&items, len, |&i| (0..i % 7).map(move |k| (i != 150 || k != 2).then_some(k))), None);
        assert_eq!(par_concat(&items, len, |&i| (0..(i % 7).saturating_sub(u32::from(i == 299))).map(Some)), None);
        assert_eq!(par_concat(&items, len, |&i| (0..i % 7 + u32::from(i == 3)).map(Some)), None);
        assert_eq!(par_concat::<u32, u32, _>(&[], |_| 0, |_| std::iter::empty()), Some(vec![]));
        // The parts of a buffer, cut short where it runs out.
        let mut buffer = [0u8; 5];
        let parts: Vec<usize> = split_parts(&mut buffer, [2, 0, 2, 4, 1]).iter().map(|p| p.len()).collect();
        assert_eq!(parts, [2, 0, 2, 1, 0]);
    }
}
