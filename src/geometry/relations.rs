//! K5: relations for every ordered pair of objects, each with a signed margin.
//!
//! Sign convention: a margin is positive when "A ⟨predicate⟩ B" holds, e.g. `left_m > 0` means A is left of B.
//! Swapping A and B negates every signed margin exactly (antisymmetry), and symmetric quantities (distances, gap)
//! are bit-identical for both orders. All quantities are in the canonical frame, so they do not change when the
//! camera pitches, rolls or moves up, down or sideways.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

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

fn bounding_box(points: &[Point3]) -> (Point3, Point3) {
    points.iter().fold(([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]), |(lo, hi), p| {
        ([lo[0].min(p[0]), lo[1].min(p[1]), lo[2].min(p[2])], [hi[0].max(p[0]), hi[1].max(p[1]), hi[2].max(p[2])])
    })
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
        let voxel_key = |p: &Point3| p.map(|v| (v * inv).floor() as i32);
        let cell_of = |k: [i32; 3]| k.map(|v| v.div_euclid(CELL_VOXELS));
        let mut order: Vec<([i32; 3], [i32; 3], u32)> =
            points.iter().enumerate().map(|(i, p)| (cell_of(voxel_key(p)), voxel_key(p), i as u32)).collect();
        order.sort_unstable();
        let sorted: Vec<Point3> = order.iter().map(|o| points[o.2 as usize]).collect();
        let (mut voxel_start, mut cell_start) = (Vec::new(), Vec::new());
        for (i, o) in order.iter().enumerate() {
            let new_voxel = i == 0 || order[i - 1].1 != o.1;
            if new_voxel {
                if i == 0 || order[i - 1].0 != o.0 {
                    cell_start.push(voxel_start.len() as u32);
                }
                voxel_start.push(i as u32);
            }
        }
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
    /// Dual branch and bound: pairs of cells in increasing order of the distance between their boxes, within
    /// each the pairs of voxels likewise, all point pairs of a voxel pair compared, until the box distance reaches
    /// the best distance found. Squared distances throughout: float rounding is monotone, so a box distance
    /// computed from the boxes' extreme coordinates never exceeds the distance of any pair of points inside them,
    /// and the pruning is exact. (A k-d tree is a poor fit here: for objects a few decimetres apart, every query
    /// ball covers most of the other object.)
    pub fn closest_distance(&self, other: &SurfaceIndex) -> f32 {
        if self.points.is_empty() || other.points.is_empty() {
            return f32::NAN;
        }
        let sorted_pairs = |a: &[(Point3, Point3)],
                            ar: std::ops::Range<usize>,
                            b: &[(Point3, Point3)],
                            br: std::ops::Range<usize>,
                            below: f32| {
            let mut pairs: Vec<(f32, u32, u32)> = Vec::new();
            for i in ar {
                for j in br.clone() {
                    let lb2 = box_dist2(&a[i], &b[j]);
                    if lb2 < below {
                        pairs.push((lb2, i as u32, j as u32));
                    }
                }
            }
            pairs.sort_unstable_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
            pairs
        };
        let mut best2 = f32::INFINITY;
        let cells =
            sorted_pairs(&self.cell_box, 0..self.cell_box.len(), &other.cell_box, 0..other.cell_box.len(), best2);
        for &(lb2, ca, cb) in &cells {
            if lb2 >= best2 {
                break;
            }
            let voxels = sorted_pairs(
                &self.voxel_box,
                self.cell_voxels(ca as usize),
                &other.voxel_box,
                other.cell_voxels(cb as usize),
                best2,
            );
            for &(lb2, v, w) in &voxels {
                if lb2 >= best2 {
                    break;
                }
                let theirs = other.voxel_points(w as usize);
                for p in self.voxel_points(v as usize) {
                    for q in theirs {
                        best2 = best2.min(dist2(p, q));
                    }
                }
            }
        }
        best2.sqrt()
    }
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
    fn relation_record_layout_matches_the_gpu_contract() {
        assert_eq!(std::mem::size_of::<RelationRecord>(), 80);
        assert_eq!(offset_of!(RelationRecord, clock_hour), 8);
        assert_eq!(offset_of!(RelationRecord, left_m), 16);
        assert_eq!(offset_of!(RelationRecord, gap_m), 64);
        assert_eq!(offset_of!(RelationRecord, sigma_m), 76);
    }
}
