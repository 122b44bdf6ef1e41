//! K5: relations for every ordered pair of objects, each with a signed margin.
//!
//! Sign convention: a margin is positive when "A ⟨predicate⟩ B" holds, e.g. `left_m > 0` means A is left of B.
//! Swapping A and B negates every signed margin exactly (antisymmetry), and symmetric quantities (distances, gap)
//! are bit-identical for both orders. All quantities are in the canonical frame, so they do not change when the
//! camera pitches, rolls or moves up, down or sideways.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::radix::{bits_of, floor_i32, radix_sorted};
use super::stats::ObjectSummary;
use super::Point3;

/// One ordered pair's relations (A = `a`, B = `b`), canonical frame, metres unless named otherwise.
///
/// Keep in sync with `shaders/relations.wgsl` and `kernels/relations.cu`: `#[repr(C)]`, 80 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct RelationRecord {
    pub a: u32,
    pub b: u32,
    /// Clock position of B seen from A, 1..=12 (12 = straight away from the viewer, 3 = to the viewer's right).
    pub clock_hour: u32,
    pub _pad: u32,
    /// `x_B − x_A` of the centroids: A is left of B when positive (right of B when negative).
    pub left_m: f32,
    /// `min x_B − max x_A`: positive when A lies entirely to the left of B.
    pub left_gap_m: f32,
    /// `z_A − z_B` of the centroids: A is above B when positive.
    pub above_m: f32,
    /// `bottom_A − top_B`: positive when A lies entirely above B.
    pub above_gap_m: f32,
    /// `y_B − y_A` of the centroids: A is in front of B (nearer the viewer) when positive, behind when negative.
    pub front_m: f32,
    /// `min y_B − max y_A`: positive when A lies entirely in front of B.
    pub front_gap_m: f32,
    /// `height_A − height_B`: A is taller when positive.
    pub taller_m: f32,
    /// `width_A − width_B` (width = horizontal size across the line of sight): A is wider when positive.
    pub wider_m: f32,
    /// `ln(volume_A / volume_B)` of the oriented boxes: A is bigger when positive.
    pub bigger_log_ratio: f32,
    /// Distance between the centroids.
    pub distance_m: f32,
    /// Horizontal (ground-plane) distance between the centroids.
    pub horizontal_distance_m: f32,
    /// Vertical distance between the centroids, `|z_A − z_B|`.
    pub vertical_distance_m: f32,
    /// Closest-surface distance: the smallest distance between a point of A and a point of B.
    pub gap_m: f32,
    /// Direction of B from A on the ground, degrees in (−180, 180]: 0 = away from the viewer, 90 = right.
    pub bearing_deg: f32,
    /// How far the bearing is from the nearest boundary between clock hours (degrees, 0..=15).
    pub clock_margin_deg: f32,
    /// Combined measurement uncertainty `sqrt(σ_A² + σ_B²)` for judging whether a margin is meaningful.
    pub sigma_m: f32,
}

const _: () = assert!(std::mem::size_of::<RelationRecord>() == 80);

/// Volumes below this (m³) are clamped before taking logarithms (flat or degenerate boxes).
pub const MIN_VOLUME_M3: f32 = 1e-9;

/// K5 for one ordered pair; `gap_m` is filled by the caller (see [`SurfaceIndex`]), here it is `NaN`.
pub fn relate(a_index: u32, a: &ObjectSummary, b_index: u32, b: &ObjectSummary) -> RelationRecord {
    let d = [b.centroid_m[0] - a.centroid_m[0], b.centroid_m[1] - a.centroid_m[1], b.centroid_m[2] - a.centroid_m[2]];
    // Squares of differences are identical for both orders, so symmetric quantities match bit for bit.
    let h2 = d[0] * d[0] + d[1] * d[1];
    let bearing = d[0].atan2(d[1]).to_degrees();
    let bearing = if bearing <= -180.0 { bearing + 360.0 } else { bearing };
    let hour_f = (bearing / 30.0).round();
    let clock_margin = 15.0 - (bearing - 30.0 * hour_f).abs();
    let hour = (hour_f as i32).rem_euclid(12);
    let clock_hour = if hour == 0 { 12 } else { hour as u32 };
    let ln_v = |s: &ObjectSummary| s.volume_m3.max(MIN_VOLUME_M3).ln();
    RelationRecord {
        a: a_index,
        b: b_index,
        clock_hour,
        _pad: 0,
        left_m: d[0],
        left_gap_m: b.aabb_min_m[0] - a.aabb_max_m[0],
        above_m: a.centroid_m[2] - b.centroid_m[2],
        above_gap_m: a.aabb_min_m[2] - b.aabb_max_m[2],
        front_m: d[1],
        front_gap_m: b.aabb_min_m[1] - a.aabb_max_m[1],
        taller_m: a.size_m[2] - b.size_m[2],
        wider_m: a.size_m[0] - b.size_m[0],
        bigger_log_ratio: ln_v(a) - ln_v(b),
        distance_m: (h2 + d[2] * d[2]).sqrt(),
        horizontal_distance_m: h2.sqrt(),
        vertical_distance_m: d[2].abs(),
        gap_m: f32::NAN,
        bearing_deg: bearing,
        clock_margin_deg: clock_margin,
        sigma_m: (a.sigma_m * a.sigma_m + b.sigma_m * b.sigma_m).sqrt(),
    }
}

/// K5 for every ordered pair `(a, b)`, `a ≠ b`, in row-major order (a, then b). Gaps are taken from `gaps`, a
/// function of the unordered pair `(min, max)`.
pub fn relate_all(objects: &[ObjectSummary], gaps: impl Fn(usize, usize) -> f32 + Sync) -> Vec<RelationRecord> {
    let n = objects.len();
    (0..n * n)
        .into_par_iter()
        .with_min_len(256)
        .filter(|k| k / n != k % n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            let mut r = relate(i as u32, &objects[i], j as u32, &objects[j]);
            r.gap_m = gaps(i.min(j), i.max(j));
            r
        })
        .collect()
}

/// An object's points prepared for exact closest-surface queries: a two-level grid (cells of 8 × 8 × 8 voxels),
/// every cell and voxel with the tight bounding box of its points, points stored voxel by voxel.
pub struct SurfaceIndex {
    points: Vec<Point3>,
    /// Voxel `v` holds `points[voxel_start[v]..voxel_start[v + 1]]`.
    voxel_start: Vec<u32>,
    voxel_box: Vec<(Point3, Point3)>,
    /// Cell `c` holds voxels `cell_start[c]..cell_start[c + 1]`.
    cell_start: Vec<u32>,
    cell_box: Vec<(Point3, Point3)>,
}

/// Voxels per cell edge.
const CELL_VOXELS: i32 = 8;

/// Each voxel's sort key, dense over the object's cells: the cell's offset from the object's lowest cell, numbered
/// x-major over the object's cell extent, then the voxel's place in its cell (3 bits a coordinate, x first).
/// Integer order is the order of (cell, voxel) tuples. With the number of bits the keys span; `None` when the
/// object's cell extent does not fit 55 bits (cells beyond 2^18 on every axis).
fn dense_keys(voxels: &[[i32; 3]]) -> Option<(Vec<u64>, u32)> {
    if voxels.is_empty() {
        return Some((Vec::new(), 0));
    }
    let cell_of = |k: [i32; 3]| k.map(|v| i64::from(v.div_euclid(CELL_VOXELS)));
    let (lo, hi) = voxels.iter().fold(([i64::MAX; 3], [i64::MIN; 3]), |(lo, hi), &v| {
        let c = cell_of(v);
        ([lo[0].min(c[0]), lo[1].min(c[1]), lo[2].min(c[2])], [hi[0].max(c[0]), hi[1].max(c[1]), hi[2].max(c[2])])
    });
    let span = [0, 1, 2].map(|k| (hi[k] - lo[k] + 1).max(1) as u64);
    let cells = span[0].checked_mul(span[1])?.checked_mul(span[2])?;
    if cells > 1 << 55 {
        return None;
    }
    let keys = voxels
        .iter()
        .map(|&v| {
            let c = cell_of(v);
            let cell = ((c[0] - lo[0]) as u64 * span[1] + (c[1] - lo[1]) as u64) * span[2] + (c[2] - lo[2]) as u64;
            v.iter().fold(cell, |key, x| key << 3 | x.rem_euclid(CELL_VOXELS) as u64)
        })
        .collect();
    Some((keys, bits_of((cells - 1) << 9 | 511)))
}

/// `(key, index)` of every voxel in the order of (cell, voxel, index) tuples, by a comparison sort of the tuples.
/// The keys are as [`dense_keys`] lays them out, with the cell's rank in place of its dense number.
fn tuple_sorted(voxels: &[[i32; 3]]) -> Vec<(u64, u32)> {
    let cell_of = |k: [i32; 3]| k.map(|v| v.div_euclid(CELL_VOXELS));
    let mut order: Vec<([i32; 3], [i32; 3], u32)> = voxels.iter().zip(0..).map(|(&v, i)| (cell_of(v), v, i)).collect();
    order.sort_unstable();
    let mut rank = 0u64;
    order
        .iter()
        .enumerate()
        .map(|(n, &(cell, voxel, i))| {
            rank += u64::from(n > 0 && order[n - 1].0 != cell);
            (voxel.iter().fold(rank, |key, x| key << 3 | x.rem_euclid(CELL_VOXELS) as u64), i)
        })
        .collect()
}

/// The axis-aligned bounding box of `points` (lo, hi; +inf and -inf when empty). Plain comparisons, which the
/// compiler vectorises: a NaN coordinate is skipped, as `f32::min` skips it.
pub fn bounding_box(points: &[Point3]) -> (Point3, Point3) {
    let (mut lo, mut hi) = ([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]);
    for p in points {
        for k in 0..3 {
            if p[k] < lo[k] {
                lo[k] = p[k];
            }
            if p[k] > hi[k] {
                hi[k] = p[k];
            }
        }
    }
    (lo, hi)
}

fn merge_boxes(a: (Point3, Point3), b: &(Point3, Point3)) -> (Point3, Point3) {
    (
        [a.0[0].min(b.0[0]), a.0[1].min(b.0[1]), a.0[2].min(b.0[2])],
        [a.1[0].max(b.1[0]), a.1[1].max(b.1[1]), a.1[2].max(b.1[2])],
    )
}

impl SurfaceIndex {
    /// Indexes `points` with voxels of `voxel_m` metres.
    pub fn new(points: &[Point3], voxel_m: f32) -> Self {
        let inv = 1.0 / voxel_m.max(1e-6);
        let voxels: Vec<[i32; 3]> = points.iter().map(|p| p.map(|v| floor_i32(v * inv))).collect();
        // Points in the order of (cell, voxel, index): a radix sort of dense integer keys (any object whose cells
        // span less than 2^18 on some axis), else a comparison sort of the key tuples.
        let sorted = match dense_keys(&voxels) {
            Some((keys, bits)) => radix_sorted(&keys, bits),
            None => tuple_sorted(&voxels),
        };
        Self::from_sorted(points, &sorted)
    }

    /// The index of `points` taken in the order of `sorted` (`(key, index)` by cell, then voxel: equal keys are one
    /// voxel, equal keys above the low 9 bits one cell).
    fn from_sorted(points: &[Point3], sorted: &[(u64, u32)]) -> Self {
        let (mut voxel_start, mut cell_start) = (Vec::new(), Vec::new());
        for (i, &(key, _)) in sorted.iter().enumerate() {
            if i == 0 || sorted[i - 1].0 != key {
                if i == 0 || sorted[i - 1].0 >> 9 != key >> 9 {
                    cell_start.push(voxel_start.len() as u32);
                }
                voxel_start.push(i as u32);
            }
        }
        let sorted: Vec<Point3> = sorted.iter().map(|&(_, i)| points[i as usize]).collect();
        voxel_start.push(points.len() as u32);
        cell_start.push((voxel_start.len() - 1) as u32);
        let voxel_box: Vec<(Point3, Point3)> =
            voxel_start.windows(2).map(|w| bounding_box(&sorted[w[0] as usize..w[1] as usize])).collect();
        let cell_box = cell_start
            .windows(2)
            .map(|w| voxel_box[w[0] as usize..w[1] as usize].iter().fold(bounding_box(&[]), merge_boxes))
            .collect();
        SurfaceIndex { points: sorted, voxel_start, voxel_box, cell_start, cell_box }
    }

    fn voxel_points(&self, v: usize) -> &[Point3] {
        &self.points[self.voxel_start[v] as usize..self.voxel_start[v + 1] as usize]
    }

    fn cell_voxels(&self, c: usize) -> std::ops::Range<usize> {
        self.cell_start[c] as usize..self.cell_start[c + 1] as usize
    }

    /// The exact smallest distance between a point of `self` and a point of `other` (`NaN` if either is empty).
    ///
    /// Dual branch and bound, best first: pairs of cells in increasing order of the distance between their boxes,
    /// within each the pairs of voxels likewise, until the box distance reaches the best distance found; in a voxel
    /// pair, each point whose distance to the other voxel's box is below the best is compared with all of that
    /// voxel's points. Squared distances throughout: float rounding is monotone, so a distance computed from a
    /// box's extreme coordinates (summed in the order `dist2` sums) never exceeds the distance of any point pair
    /// it bounds, and the pruning is exact. (A k-d tree is a poor fit here: for objects a few decimetres apart,
    /// every query ball covers most of the other object.)
    pub fn closest_distance(&self, other: &SurfaceIndex) -> f32 {
        if self.points.is_empty() || other.points.is_empty() {
            return f32::NAN;
        }
        // Pairs of boxes nearer than `below`, as a min-heap on the distance. Distances are not negative, so their
        // bits order as their values; pairs at the same distance are taken in index order (any order gives the
        // same minimum).
        let pairs_below = |a: &[(Point3, Point3)],
                           ar: std::ops::Range<usize>,
                           b: &[(Point3, Point3)],
                           br: std::ops::Range<usize>,
                           below: f32,
                           mut into: Vec<Reverse<(u32, u32, u32)>>| {
            into.clear();
            for i in ar {
                for j in br.clone() {
                    let lb2 = box_dist2(&a[i], &b[j]);
                    if lb2 < below {
                        into.push(Reverse((lb2.to_bits(), i as u32, j as u32)));
                    }
                }
            }
            BinaryHeap::from(into)
        };
        let mut best2 = f32::INFINITY;
        let mut cells = pairs_below(
            &self.cell_box,
            0..self.cell_box.len(),
            &other.cell_box,
            0..other.cell_box.len(),
            best2,
            Vec::new(),
        );
        let mut spare = Vec::new();
        while let Some(Reverse((lb2, ca, cb))) = cells.pop() {
            if f32::from_bits(lb2) >= best2 {
                break;
            }
            let mut voxels = pairs_below(
                &self.voxel_box,
                self.cell_voxels(ca as usize),
                &other.voxel_box,
                other.cell_voxels(cb as usize),
                best2,
                spare,
            );
            while let Some(Reverse((lb2, v, w))) = voxels.pop() {
                if f32::from_bits(lb2) >= best2 {
                    break;
                }
                let (theirs, their_box) = (other.voxel_points(w as usize), &other.voxel_box[w as usize]);
                for p in self.voxel_points(v as usize) {
                    if point_box_dist2(p, their_box) < best2 {
                        for q in theirs {
                            best2 = best2.min(dist2(p, q));
                        }
                    }
                }
            }
            spare = voxels.into_vec();
        }
        best2.sqrt()
    }
}

/// Squared distance from a point to an axis-aligned box (0 inside), summed in the order [`dist2`] sums.
fn point_box_dist2(p: &Point3, b: &(Point3, Point3)) -> f32 {
    let g = [0, 1, 2].map(|k| (b.0[k] - p[k]).max(p[k] - b.1[k]).max(0.0));
    g[0] * g[0] + g[1] * g[1] + g[2] * g[2]
}

/// Squared distance between two axis-aligned boxes (0 when they overlap).
fn box_dist2(a: &(Point3, Point3), b: &(Point3, Point3)) -> f32 {
    let mut d = 0.0f32;
    for k in 0..3 {
        let gap = (b.0[k] - a.1[k]).max(a.0[k] - b.1[k]).max(0.0);
        d += gap * gap;
    }
    d
}

#[inline]
fn dist2(a: &Point3, b: &Point3) -> f32 {
    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
}

/// Points per chunk of the device's closest-surface search (`kernels/gaps.cu`, `shaders/gaps.wgsl`).
pub const GAP_CHUNK: usize = 32;

/// Chunks per super-chunk of the device's closest-surface search.
pub const GAP_SUPER: usize = 8;

/// The bounding box of each run of [`GAP_CHUNK`] consecutive points (the last run may be shorter), in the points'
/// own order: the device's chunk boxes.
pub fn chunk_boxes(points: &[Point3]) -> Vec<(Point3, Point3)> {
    points.chunks(GAP_CHUNK).map(bounding_box).collect()
}

/// What the device computes for one pair of objects: the exact smallest squared distance between a point of `a`
/// and a point of `b` (`NaN` if either is empty), by the device's algorithm run serially. The points are taken in
/// the order given (the device sorts each object's points by cell first, which changes only how much is pruned), in
/// chunks of [`GAP_CHUNK`] and super-chunks of [`GAP_SUPER`] chunks (no index to build): an upper bound from the
/// first point of every super-chunk of `a` against the first point of every super-chunk of `b`; the super pairs
/// whose boxes are nearer than that bound lower it with the first points of their chunk pairs; then, in every super
/// pair whose boxes are nearer than the best distance so far, every chunk pair whose boxes are too is searched point
/// by point (a point farther from the other chunk's box than the best is skipped). The pruning is exact for the
/// reason given in [`SurfaceIndex::closest_distance`], so this is the same `f32` as the reference's square, bit for
/// bit, whatever the order of the points. (The device's threads each keep their own best: the pruning differs, the
/// minimum does not.)
pub fn chunked_closest_distance2(
    a: &[Point3],
    a_boxes: &[(Point3, Point3)],
    b: &[Point3],
    b_boxes: &[(Point3, Point3)],
) -> f32 {
    if a.is_empty() || b.is_empty() {
        return f32::NAN;
    }
    let supers = |points: &[Point3]| -> Vec<(Point3, Point3)> {
        points.chunks(GAP_CHUNK * GAP_SUPER).map(bounding_box).collect()
    };
    let (a_supers, b_supers) = (supers(a), supers(b));
    let super_pairs = |below: f32| {
        let (a_supers, b_supers) = (&a_supers, &b_supers);
        (0..a_supers.len()).flat_map(move |i| {
            (0..b_supers.len()).filter(move |&j| box_dist2(&a_supers[i], &b_supers[j]) < below).map(move |j| (i, j))
        })
    };
    // The chunk pairs of super pair (i, j).
    let chunk_pairs = |(i, j): (usize, usize)| {
        let (na, nb) = (a_boxes.len(), b_boxes.len());
        (i * GAP_SUPER..((i + 1) * GAP_SUPER).min(na))
            .flat_map(move |ci| (j * GAP_SUPER..((j + 1) * GAP_SUPER).min(nb)).map(move |cj| (ci, cj)))
    };
    let mut best2 = f32::INFINITY;
    for p in a.iter().step_by(GAP_CHUNK * GAP_SUPER) {
        for q in b.iter().step_by(GAP_CHUNK * GAP_SUPER) {
            best2 = best2.min(dist2(p, q));
        }
    }
    let near: Vec<(usize, usize)> = super_pairs(best2).collect();
    for (ci, cj) in near.into_iter().flat_map(chunk_pairs) {
        best2 = best2.min(dist2(&a[ci * GAP_CHUNK], &b[cj * GAP_CHUNK]));
    }
    let near: Vec<(usize, usize)> = super_pairs(best2).collect();
    for (ci, cj) in near.into_iter().flat_map(chunk_pairs) {
        let box_b = &b_boxes[cj];
        if box_dist2(&a_boxes[ci], box_b) < best2 {
            for p in &a[ci * GAP_CHUNK..((ci + 1) * GAP_CHUNK).min(a.len())] {
                if point_box_dist2(p, box_b) < best2 {
                    for q in &b[cj * GAP_CHUNK..((cj + 1) * GAP_CHUNK).min(b.len())] {
                        best2 = best2.min(dist2(p, q));
                    }
                }
            }
        }
    }
    best2
}

/// Closest-surface distances of all unordered pairs, as a dense symmetric `n × n` matrix (diagonal 0).
pub fn closest_surface_matrix(objects: &[&[Point3]], voxel_m: f32) -> Vec<f32> {
    let n = objects.len();
    let index: Vec<SurfaceIndex> = objects.par_iter().map(|p| SurfaceIndex::new(p, voxel_m)).collect();
    let pairs: Vec<(usize, usize)> = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).collect();
    let gaps: Vec<f32> = pairs
        .par_iter()
        .map(|&(i, j)| {
            // Search from the smaller object: fewer candidate queries.
            if index[i].points.len() <= index[j].points.len() {
                index[i].closest_distance(&index[j])
            } else {
                index[j].closest_distance(&index[i])
            }
        })
        .collect();
    let mut m = vec![0f32; n * n];
    for (&(i, j), &g) in pairs.iter().zip(&gaps) {
        m[i * n + j] = g;
        m[j * n + i] = g;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn dense_keys_sort_as_the_key_tuples() {
        // Voxels of one object around the origin, of one far from it, spread over 2^20 cells on one axis, and with
        // repeats: the radix order of the dense keys is the order of the (cell, voxel, index) tuples.
        let mut counter = 0;
        let mut next = |span: i32| {
            counter += 1;
            (crate::geometry::rng::draw_u32(3, 0, counter, 0) >> 8) as i32 % span - span / 2
        };
        let near: Vec<[i32; 3]> = (0..3000).map(|_| [next(40), next(40), next(40)]).collect();
        let far: Vec<[i32; 3]> = (0..2000).map(|_| [next(90) - (1 << 24), next(70), next(90) + (1 << 20)]).collect();
        let wide: Vec<[i32; 3]> = (0..2000).map(|_| [next(1 << 23), next(30), next(8)]).collect();
        let mut repeated = near[..500].to_vec();
        repeated.extend_from_slice(&near[..500]);
        for voxels in [near, far, wide, repeated, vec![[5, -3, 2]], vec![]] {
            let (keys, bits) = dense_keys(&voxels).unwrap();
            assert!(keys.iter().all(|k| bits == 64 || k >> bits == 0), "{bits}");
            let radix = radix_sorted(&keys, bits);
            let tuples = tuple_sorted(&voxels);
            assert_eq!(radix.iter().map(|k| k.1).collect::<Vec<_>>(), tuples.iter().map(|k| k.1).collect::<Vec<_>>());
            // Both keys tell the same voxels and cells apart.
            for w in 0..radix.len().saturating_sub(1) {
                assert_eq!(radix[w].0 == radix[w + 1].0, tuples[w].0 == tuples[w + 1].0);
                assert_eq!(radix[w].0 >> 9 == radix[w + 1].0 >> 9, tuples[w].0 >> 9 == tuples[w + 1].0 >> 9);
            }
        }
        // Cells beyond 2^18 on every axis: no dense keys.
        assert!(dense_keys(&[[0, 0, 0], [1 << 22, 1 << 22, 1 << 22]]).is_none());
        assert!(dense_keys(&[[i32::MIN, i32::MIN, i32::MIN], [i32::MAX, i32::MAX, i32::MAX]]).is_none());
    }

    #[test]
    fn the_devices_chunked_search_is_the_reference_bit_for_bit() {
        // Pairs of random clouds (blobs of every size, near, touching, overlapping, far), in a random order and in
        // a sorted one: the device's algorithm run serially against the voxel index and against brute force.
        let mut rng = crate::test_rng::XorShift(0x2545_f491_4f6c_dd1d);
        let mut next = move || rng.unit_f32();
        for case in 0..60 {
            let mut cloud = |n: usize, centre: [f32; 3], side: f32| -> Vec<Point3> {
                (0..n).map(|_| centre.map(|c| c + (next() - 0.5) * side)).collect()
            };
            let side = [0.01, 0.3, 2.0][case % 3];
            // Every fifth case has thousands of points: many super-chunks, most of them pruned.
            let scale = if case % 5 == 4 { 10 } else { 1 };
            let a = cloud((1 + case * 7 % 300) * scale, [0.0, 0.0, 0.0], side);
            let shift = [0.0, 0.1, 0.5, 3.0][case % 4];
            let mut b = cloud((1 + case * 13 % 250) * scale, [shift, 0.2 * shift, 0.0], side * 1.5);
            if case % 2 == 1 {
                b.sort_by(|p, q| p[0].total_cmp(&q[0]));
            }
            let got = chunked_closest_distance2(&a, &chunk_boxes(&a), &b, &chunk_boxes(&b));
            let brute = a.iter().flat_map(|p| b.iter().map(move |q| dist2(p, q))).fold(f32::INFINITY, f32::min);
            assert_eq!(got.to_bits(), brute.to_bits(), "case {case}");
            assert_eq!(got.sqrt().to_bits(), closest_surface_matrix(&[&a, &b], 0.02)[1].to_bits(), "case {case}");
            assert_eq!(got.to_bits(), chunked_closest_distance2(&b, &chunk_boxes(&b), &a, &chunk_boxes(&a)).to_bits());
        }
        assert!(chunked_closest_distance2(&[], &[], &[[0.0; 3]], &chunk_boxes(&[[0.0; 3]])).is_nan());
    }

    #[test]
    fn huge_objects_are_indexed_through_the_key_tuples() {
        // Objects 20 km across on every axis at 1 mm voxels: no dense keys; the distance is still exact.
        let line = |offset: f32| -> Vec<Point3> {
            (0..60)
                .map(|i| [-1e4 + 345.0 * i as f32 + offset, -1e4 + 339.0 * i as f32, -1e4 + 341.0 * i as f32])
                .collect()
        };
        let (a, b) = (line(0.0), line(0.5));
        let voxels: Vec<[i32; 3]> = a.iter().map(|p| p.map(|v| floor_i32(v * 1000.0))).collect();
        assert!(dense_keys(&voxels).is_none(), "the test must take the tuple sort");
        let brute = a.iter().flat_map(|p| b.iter().map(move |q| dist2(p, q))).fold(f32::INFINITY, f32::min).sqrt();
        let m = closest_surface_matrix(&[&a, &b], 0.001);
        assert_eq!(m[1], brute);
        assert!((brute - 0.5).abs() < 0.01, "{brute}");
    }

    #[test]
    fn relation_record_layout_matches_the_gpu_contract() {
        assert_eq!(std::mem::size_of::<RelationRecord>(), 80);
        assert_eq!(offset_of!(RelationRecord, clock_hour), 8);
        assert_eq!(offset_of!(RelationRecord, left_m), 16);
        assert_eq!(offset_of!(RelationRecord, gap_m), 64);
        assert_eq!(offset_of!(RelationRecord, sigma_m), 76);
    }
}
