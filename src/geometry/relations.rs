//! K5: relations for every ordered pair of objects, each with a signed margin.
//!
//! Sign convention: a margin is positive when "A ⟨predicate⟩ B" holds, e.g. `left_m > 0` means A is left of B.
//! Swapping A and B negates every signed margin exactly (antisymmetry), and symmetric quantities (distances, gap)
//! are bit-identical for both orders. All quantities are in the canonical frame, so they do not change when the
//! camera pitches, rolls or moves up, down or sideways.

use bytemuck::{Pod, Zeroable};
use kiddo::{ImmutableKdTree, SquaredEuclidean};
use rayon::prelude::*;
use rustc_hash::FxHashMap;

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

/// An object's points prepared for exact closest-surface queries: points binned in voxels, one representative
/// point per voxel in a k-d tree.
pub struct SurfaceIndex {
    points: Vec<Point3>,
    /// Voxel `v` holds `points[voxel_start[v]..voxel_start[v + 1]]` (points are stored voxel by voxel).
    voxel_start: Vec<u32>,
    reps: Vec<Point3>,
    /// `None` only if kiddo refuses the input; queries then scan `reps`.
    rep_tree: Option<ImmutableKdTree<f32, 3>>,
    /// Largest distance from a point to its voxel's representative.
    radius: f32,
}

impl SurfaceIndex {
    /// Indexes `points` with voxels of `voxel_m` metres.
    pub fn new(points: &[Point3], voxel_m: f32) -> Self {
        let inv = 1.0 / voxel_m.max(1e-6);
        let mut slot: FxHashMap<[i32; 3], u32> = FxHashMap::default();
        let mut voxel_of = Vec::with_capacity(points.len());
        for p in points {
            let key = p.map(|v| (v * inv).floor() as i32);
            let next = slot.len() as u32;
            voxel_of.push(*slot.entry(key).or_insert(next));
        }
        let nv = slot.len();
        let mut voxel_start = vec![0u32; nv + 1];
        for &v in &voxel_of {
            voxel_start[v as usize + 1] += 1;
        }
        for v in 0..nv {
            voxel_start[v + 1] += voxel_start[v];
        }
        let mut fill = voxel_start.clone();
        let mut sorted = vec![[0f32; 3]; points.len()];
        for (p, &v) in points.iter().zip(&voxel_of) {
            sorted[fill[v as usize] as usize] = *p;
            fill[v as usize] += 1;
        }
        // The representative of a voxel is its first point in input order.
        let reps: Vec<Point3> = (0..nv).map(|v| sorted[voxel_start[v] as usize]).collect();
        let mut radius = 0f32;
        for v in 0..nv {
            let r = reps[v];
            for p in &sorted[voxel_start[v] as usize..voxel_start[v + 1] as usize] {
                radius = radius.max(dist2(p, &r).sqrt());
            }
        }
        let rep_tree = ImmutableKdTree::new_from_slice(&reps).ok();
        SurfaceIndex { points: sorted, voxel_start, reps, rep_tree, radius }
    }

    fn voxel_points(&self, v: usize) -> &[Point3] {
        &self.points[self.voxel_start[v] as usize..self.voxel_start[v + 1] as usize]
    }

    fn nearest_rep_dist2(&self, p: &Point3) -> f32 {
        match &self.rep_tree {
            Some(tree) => tree.query(p).nearest_one::<SquaredEuclidean<f32>>().execute().distance,
            None => self.reps.iter().map(|q| dist2(p, q)).fold(f32::INFINITY, f32::min),
        }
    }

    /// The exact smallest distance between a point of `self` and a point of `other` (`NaN` if either is empty).
    ///
    /// Representatives are real points, so their closest pair bounds the answer from above by `U`; the true
    /// closest pair's representatives are within `U + r_a + r_b` of the other cloud's representatives, so only
    /// voxels passing that test are searched point by point.
    pub fn closest_distance(&self, other: &SurfaceIndex) -> f32 {
        if self.reps.is_empty() || other.reps.is_empty() {
            return f32::NAN;
        }
        let da: Vec<f32> = self.reps.iter().map(|p| other.nearest_rep_dist2(p).sqrt()).collect();
        let upper = da.iter().copied().fold(f32::INFINITY, f32::min);
        // A small relative slack covers float rounding in the bound.
        let limit = (upper + self.radius + other.radius) * (1.0 + 1e-5) + 1e-6;
        let cand_a: Vec<usize> = (0..da.len()).filter(|&v| da[v] <= limit).collect();
        let cand_b: Vec<Point3> = (0..other.reps.len())
            .filter(|&v| self.nearest_rep_dist2(&other.reps[v]).sqrt() <= limit)
            .flat_map(|v| other.voxel_points(v).iter().copied())
            .collect();
        let tree = if cand_b.len() > 32 { ImmutableKdTree::<f32, 3>::new_from_slice(&cand_b).ok() } else { None };
        let nearest2 = |p: &Point3| match &tree {
            Some(t) => t.query(p).nearest_one::<SquaredEuclidean<f32>>().execute().distance,
            None => cand_b.iter().map(|q| dist2(p, q)).fold(f32::INFINITY, f32::min),
        };
        let best2 =
            cand_a.iter().flat_map(|&v| self.voxel_points(v)).map(nearest2).fold(f32::INFINITY, f32::min);
        best2.sqrt().min(upper)
    }
}

#[inline]
fn dist2(a: &Point3, b: &Point3) -> f32 {
    let d = [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
    d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
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
