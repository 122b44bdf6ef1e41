//! K3: exact DBSCAN on a uniform grid, and "keep the largest cluster".
//!
//! Definitions (the specification every backend matches):
//! - `q` is a neighbour of `p` when `|p − q|² ≤ eps²`; every point is its own neighbour.
//! - `p` is a *core* point when it has at least `min_points` neighbours (itself included, as in Open3D and
//!   scikit-learn).
//! - Core points within `eps` of each other are in the same cluster (transitively). This partition of the core
//!   points is what DBSCAN defines uniquely; it is what parity tests compare.
//! - A non-core point within `eps` of some core point is a *border* point and joins the cluster of its nearest
//!   core point (ties: the lower original index) — a deterministic rule, where textbook DBSCAN leaves the choice
//!   to the visiting order. Other points are noise (label −1).
//! - Clusters are numbered 0, 1, … in increasing order of their smallest core-point index.
//!
//! Algorithm: points are binned into cubic cells of side `eps / √3` (slightly less), so any two points of a cell
//! are neighbours: a cell with `min_points` points or more is all core, without any distance test. Other points
//! count neighbours in the 5×5×5 block of cells around them, stopping at `min_points`. Core cells are joined by a
//! union-find whenever some pair of their core points is within `eps` (checked only while the two cells are not
//! already joined). Cells are sorted by key; a row is a run of cells sharing (x, y), so the cells of a neighbour
//! row within ±2 in z form a contiguous range found by a merge sweep.

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use super::radix::floor_i64;
use super::union_find::UnionFind;
use super::Point3;

/// Label of a point that belongs to no cluster.
pub const NOISE: i32 = -1;

/// The outcome of a DBSCAN run, in the input's point order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Clustering {
    /// Cluster id per point, or [`NOISE`].
    pub labels: Vec<i32>,
    /// Whether each point is a core point.
    pub core: Vec<bool>,
    /// Number of clusters.
    pub clusters: u32,
}

impl Clustering {
    /// Points per cluster (core and border).
    pub fn sizes(&self) -> Vec<u32> {
        // Four counts a cluster, a point's by its position mod 4: the points of one cluster (most of an object's)
        // do not each wait for the last one's increment to be stored.
        let mut parts = vec![[0u32; 4]; self.clusters as usize];
        let mut count = |l: i32, k: usize| {
            if l >= 0 {
                parts[l as usize][k] += 1;
            }
        };
        let mut quads = self.labels.chunks_exact(4);
        for q in &mut quads {
            (0..4).for_each(|k| count(q[k], k));
        }
        quads.remainder().iter().enumerate().for_each(|(k, &l)| count(l, k));
        parts.iter().map(|p| p.iter().sum()).collect()
    }

    /// The cluster with the most points (ties: the lower id), or `None` when there are no clusters (in DBSCAN's
    /// clusterings: when everything is noise).
    pub fn largest(&self) -> Option<u32> {
        Self::largest_of(&self.sizes())
    }

    /// [`Clustering::largest`] from the clusters' sizes ([`Clustering::sizes`]).
    pub fn largest_of(sizes: &[u32]) -> Option<u32> {
        let mut best: Option<(u32, u32)> = None;
        for (id, &s) in sizes.iter().enumerate() {
            if best.is_none_or(|(_, bs)| s > bs) {
                best = Some((id as u32, s));
            }
        }
        best.map(|(id, _)| id)
    }
}

/// Why DBSCAN refused an input.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DbscanError {
    #[error("eps must be positive and finite, got {0}")]
    BadEps(f32),
    #[error("point {0} is not finite")]
    NonFinite(usize),
    #[error("the cloud spans {0:?} cells of {1} m: more than the grid's 2^21 x 2^21 x 2^22 cells")]
    TooLarge([i64; 3], f32),
}

const Z_BITS: u32 = 22;
const Y_BITS: u32 = 21;
const X_BITS: u32 = 21;
const Z_MASK: u64 = (1 << Z_BITS) - 1;
const Y_MASK: u64 = (1 << Y_BITS) - 1;

/// The sorted grid of a point cloud.
struct Grid {
    /// Points in cell order.
    points: Vec<Point3>,
    /// Original index of each sorted point.
    original: Vec<u32>,
    /// Cell `c` holds sorted points `cell_start[c]..cell_start[c + 1]`.
    cell_start: Vec<u32>,
    /// Key of each cell (`x << 43 | y << 22 | z`, coordinates shifted to start at 0).
    cell_key: Vec<u64>,
    /// Row `r` holds cells `row_start[r]..row_start[r + 1]`.
    row_start: Vec<u32>,
    /// Row key (`x << 21 | y`) to row index.
    row_index: FxHashMap<u64, u32>,
    eps2: f32,
}

/// The side of the cells for radius `eps`: eps/√3, so that any two points of a cell are within eps, shrunk a little
/// so that float rounding of the cell assignment can never break that. Points are binned by
/// `floor(coordinate as f64 / side as f64)`; both GPU backends bin with the same side (`backend::pack::inverse_cell_side`).
pub fn cell_side(eps: f32) -> f32 {
    eps / 3f32.sqrt() * (1.0 - 1e-4)
}

#[inline]
fn dist2(a: &Point3, b: &Point3) -> f32 {
    let dx = a[0] - b[0];
    let dy = a[1] - b[1];
    let dz = a[2] - b[2];
    dx * dx + dy * dy + dz * dz
}

impl Grid {
    fn new(input: &[Point3], eps: f32) -> Result<Self, DbscanError> {
        let side = cell_side(eps);
        let inv = 1.0 / f64::from(side);
        let cell_of = |p: &Point3| p.map(|v| floor_i64(f64::from(v) * inv));
        if let Some(i) = input.iter().position(|p| !p.iter().all(|v| v.is_finite())) {
            return Err(DbscanError::NonFinite(i));
        }
        let (lo, hi) = input
            .par_iter()
            .with_min_len(1 << 14)
            .fold(
                || ([i64::MAX; 3], [i64::MIN; 3]),
                |(mut lo, mut hi), p| {
                    let c = cell_of(p);
                    for k in 0..3 {
                        lo[k] = lo[k].min(c[k]);
                        hi[k] = hi[k].max(c[k]);
                    }
                    (lo, hi)
                },
            )
            .reduce(
                || ([i64::MAX; 3], [i64::MIN; 3]),
                |(a, b), (c, d)| {
                    ([a[0].min(c[0]), a[1].min(c[1]), a[2].min(c[2])], [b[0].max(d[0]), b[1].max(d[1]), b[2].max(d[2])])
                },
            );
        let span = [hi[0] - lo[0] + 1, hi[1] - lo[1] + 1, hi[2] - lo[2] + 1];
        if span[0] > 1 << X_BITS || span[1] > 1 << Y_BITS || span[2] > 1 << Z_BITS {
            return Err(DbscanError::TooLarge(span, side));
        }
        let mut keyed: Vec<(u64, u32)> = input
            .par_iter()
            .enumerate()
            .with_min_len(1 << 14)
            .map(|(i, p)| {
                let c = cell_of(p);
                let x = (c[0] - lo[0]) as u64;
                let y = (c[1] - lo[1]) as u64;
                let z = (c[2] - lo[2]) as u64;
                ((x << (Y_BITS + Z_BITS)) | (y << Z_BITS) | z, i as u32)
            })
            .collect();
        keyed.par_sort_unstable();

        let points: Vec<Point3> = keyed.par_iter().with_min_len(1 << 14).map(|&(_, i)| input[i as usize]).collect();
        let original: Vec<u32> = keyed.iter().map(|&(_, i)| i).collect();
        let mut cell_start = Vec::new();
        let mut cell_key = Vec::new();
        let mut row_start = Vec::new();
        let mut row_index = FxHashMap::default();
        for (i, &(key, _)) in keyed.iter().enumerate() {
            if cell_key.last() != Some(&key) {
                let row = key >> Z_BITS;
                if cell_key.last().map(|k| k >> Z_BITS) != Some(row) {
                    row_index.insert(row, row_start.len() as u32);
                    row_start.push(cell_key.len() as u32);
                }
                cell_key.push(key);
                cell_start.push(i as u32);
            }
        }
        cell_start.push(input.len() as u32);
        row_start.push(cell_key.len() as u32);
        Ok(Grid { points, original, cell_start, cell_key, row_start, row_index, eps2: eps * eps })
    }

    fn rows(&self) -> usize {
        self.row_start.len() - 1
    }

    #[inline]
    fn cell_points(&self, c: usize) -> std::ops::Range<usize> {
        self.cell_start[c] as usize..self.cell_start[c + 1] as usize
    }

    /// Calls `f(cell, neighbour_cell_ranges)` for every cell of `row`, in z order; the ranges (at most 25, one
    /// per neighbour row) cover every cell within ±2 in x, y and z, the cell itself included.
    fn for_each_cell_neighbourhood(&self, row: usize, mut f: impl FnMut(usize, &[(u32, u32)])) {
        let (c0, c1) = (self.row_start[row] as usize, self.row_start[row + 1] as usize);
        let row_key = self.cell_key[c0] >> Z_BITS;
        let (x, y) = ((row_key >> Y_BITS) as i64, (row_key & Y_MASK) as i64);
        // (begin, end, lo, hi) per neighbour row.
        let mut nbr: [(u32, u32, u32, u32); 25] = [(0, 0, 0, 0); 25];
        let mut count = 0;
        for a in -2..=2i64 {
            for b in -2..=2i64 {
                let (nx, ny) = (x + a, y + b);
                if nx < 0 || ny < 0 || ny > Y_MASK as i64 {
                    continue;
                }
                if let Some(&r) = self.row_index.get(&(((nx as u64) << Y_BITS) | ny as u64)) {
                    let (b0, b1) = (self.row_start[r as usize], self.row_start[r as usize + 1]);
                    nbr[count] = (b0, b1, b0, b0);
                    count += 1;
                }
            }
        }
        let mut ranges = [(0u32, 0u32); 25];
        for c in c0..c1 {
            let z = (self.cell_key[c] & Z_MASK) as i64;
            let mut m = 0;
            for (b0, b1, lo, hi) in nbr[..count].iter_mut() {
                let _ = b0;
                while *lo < *b1 && ((self.cell_key[*lo as usize] & Z_MASK) as i64) < z - 2 {
                    *lo += 1;
                }
                if *hi < *lo {
                    *hi = *lo;
                }
                while *hi < *b1 && ((self.cell_key[*hi as usize] & Z_MASK) as i64) <= z + 2 {
                    *hi += 1;
                }
                if lo < hi {
                    ranges[m] = (*lo, *hi);
                    m += 1;
                }
            }
            f(c, &ranges[..m]);
        }
    }

    /// Core flag of every sorted point.
    fn core_flags(&self, min_points: u32) -> Vec<bool> {
        let min_points = min_points as usize;
        (0..self.rows())
            .into_par_iter()
            .flat_map_iter(|row| {
                let mut flags = Vec::new();
                self.for_each_cell_neighbourhood(row, |c, ranges| {
                    let own = self.cell_points(c);
                    if own.len() >= min_points {
                        flags.extend(std::iter::repeat_n(true, own.len()));
                        return;
                    }
                    for p in &self.points[own.clone()] {
                        let mut n = own.len();
                        'count: for &(lo, hi) in ranges {
                            for d in lo as usize..hi as usize {
                                if d == c {
                                    continue;
                                }
                                for q in &self.points[self.cell_points(d)] {
                                    if dist2(p, q) <= self.eps2 {
                                        n += 1;
                                        if n >= min_points {
                                            break 'count;
                                        }
                                    }
                                }
                            }
                        }
                        flags.push(n >= min_points);
                    }
                });
                flags
            })
            .collect()
    }
}

/// One DBSCAN problem of a batch: a cloud (one object's points, say) with its own radius and `min_points`.
#[derive(Clone, Copy, Debug)]
pub struct DbscanJob<'a> {
    pub points: &'a [Point3],
    pub eps: f32,
    pub min_points: u32,
}

/// Why a batch of DBSCAN problems was refused: a refused job (its index in the batch) and why.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("DBSCAN job {job}: {error}")]
pub struct DbscanBatchError {
    pub job: usize,
    pub error: DbscanError,
}

/// [`dbscan`] for each job of a batch (in parallel); one clustering per job, in order. GPU backends run a whole
/// batch in one set of launches (every job's points in one grid), with the same results.
pub fn dbscan_batch(jobs: &[DbscanJob<'_>]) -> Result<Vec<Clustering>, DbscanBatchError> {
    jobs.par_iter()
        .enumerate()
        .map(|(job, j)| dbscan(j.points, j.eps, j.min_points).map_err(|error| DbscanBatchError { job, error }))
        .collect()
}

/// Exact DBSCAN (see the module docs for the precise definition).
pub fn dbscan(points: &[Point3], eps: f32, min_points: u32) -> Result<Clustering, DbscanError> {
    if !(eps.is_finite() && eps > 0.0) {
        return Err(DbscanError::BadEps(eps));
    }
    if points.is_empty() {
        return Ok(Clustering::default());
    }
    let grid = Grid::new(points, eps)?;
    let n_cells = grid.cell_key.len();
    let core = grid.core_flags(min_points.max(1));

    // Per cell: range of its core points (core points first would need a reorder; keep a compact list instead)
    // and the bounding box of its core points, used to prune pair checks.
    let mut core_cell = vec![false; n_cells];
    let mut core_lists: Vec<u32> = Vec::with_capacity(points.len());
    let mut core_start: Vec<u32> = Vec::with_capacity(n_cells + 1);
    let mut core_box: Vec<(Point3, Point3)> = Vec::with_capacity(n_cells);
    for c in 0..n_cells {
        core_start.push(core_lists.len() as u32);
        let mut lo = [f32::INFINITY; 3];
        let mut hi = [f32::NEG_INFINITY; 3];
        for i in grid.cell_points(c) {
            if core[i] {
                core_lists.push(i as u32);
                let p = grid.points[i];
                for k in 0..3 {
                    lo[k] = lo[k].min(p[k]);
                    hi[k] = hi[k].max(p[k]);
                }
            }
        }
        core_cell[c] = core_lists.len() as u32 > core_start[c];
        core_box.push((lo, hi));
    }
    core_start.push(core_lists.len() as u32);
    let core_of = |c: usize| &core_lists[core_start[c] as usize..core_start[c + 1] as usize];
    let box_dist2 = |p: &Point3, (lo, hi): &(Point3, Point3)| {
        let mut d = 0.0f32;
        for k in 0..3 {
            let e = (lo[k] - p[k]).max(p[k] - hi[k]).max(0.0);
            d += e * e;
        }
        d
    };
    let connected = |a: usize, b: usize| {
        let (qa, qb) = (core_of(a), core_of(b));
        // Scan the smaller cell's points against the larger cell.
        let (qa, qb, bbox) = if qa.len() <= qb.len() { (qa, qb, &core_box[b]) } else { (qb, qa, &core_box[a]) };
        qa.iter().any(|&i| {
            let p = &grid.points[i as usize];
            box_dist2(p, bbox) <= grid.eps2 && qb.iter().any(|&j| dist2(p, &grid.points[j as usize]) <= grid.eps2)
        })
    };

    let mut uf = UnionFind::new(n_cells);
    for row in 0..grid.rows() {
        grid.for_each_cell_neighbourhood(row, |c, ranges| {
            if !core_cell[c] {
                return;
            }
            for &(lo, hi) in ranges {
                for d in (lo as usize..hi as usize).filter(|&d| d > c && core_cell[d]) {
                    if uf.find(c as u32) != uf.find(d as u32) && connected(c, d) {
                        uf.union(c as u32, d as u32);
                    }
                }
            }
        });
    }

    // Number the clusters by their smallest original core-point index.
    let mut first_core = vec![u32::MAX; n_cells];
    let mut root_of_cell = vec![u32::MAX; n_cells];
    for c in (0..n_cells).filter(|&c| core_cell[c]) {
        let r = uf.find(c as u32);
        root_of_cell[c] = r;
        for &i in core_of(c) {
            let o = grid.original[i as usize];
            first_core[r as usize] = first_core[r as usize].min(o);
        }
    }
    let mut roots: Vec<(u32, u32)> = (0..n_cells)
        .filter(|&c| core_cell[c] && root_of_cell[c] == c as u32)
        .map(|c| (first_core[c], c as u32))
        .collect();
    roots.sort_unstable();
    let mut cluster_of_root = vec![NOISE; n_cells];
    for (id, &(_, r)) in roots.iter().enumerate() {
        cluster_of_root[r as usize] = id as i32;
    }
    let cell_cluster: Vec<i32> =
        (0..n_cells).map(|c| if core_cell[c] { cluster_of_root[root_of_cell[c] as usize] } else { NOISE }).collect();

    // Labels in sorted order: core points take their cell's cluster; the others the nearest core point's.
    let sorted_labels: Vec<i32> = (0..grid.rows())
        .into_par_iter()
        .flat_map_iter(|row| {
            let mut out = Vec::new();
            grid.for_each_cell_neighbourhood(row, |c, ranges| {
                for i in grid.cell_points(c) {
                    if core[i] {
                        out.push(cell_cluster[c]);
                        continue;
                    }
                    let p = &grid.points[i];
                    // (distance², original index, cluster) of the nearest core point.
                    let mut best: Option<(f32, u32, i32)> = None;
                    for &(lo, hi) in ranges {
                        for d in (lo as usize..hi as usize).filter(|&d| core_cell[d]) {
                            if box_dist2(p, &core_box[d]) > grid.eps2 {
                                continue;
                            }
                            for &j in core_of(d) {
                                let d2 = dist2(p, &grid.points[j as usize]);
                                if d2 <= grid.eps2 {
                                    let cand = (d2, grid.original[j as usize], cell_cluster[d]);
                                    if best.is_none_or(|b| (cand.0, cand.1) < (b.0, b.1)) {
                                        best = Some(cand);
                                    }
                                }
                            }
                        }
                    }
                    out.push(best.map_or(NOISE, |b| b.2));
                }
            });
            out
        })
        .collect();

    let mut labels = vec![NOISE; points.len()];
    let mut core_out = vec![false; points.len()];
    for (i, &o) in grid.original.iter().enumerate() {
        labels[o as usize] = sorted_labels[i];
        core_out[o as usize] = core[i];
    }
    Ok(Clustering { labels, core: core_out, clusters: roots.len() as u32 })
}
