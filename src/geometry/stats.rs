//! K4: per-object statistics in the canonical frame.
//!
//! [`ObjectSummary`] is the record K5 consumes; it is part of the data contract shared with the GPU backends.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use super::obb::min_area_rect;
use super::Point3;

/// Per-object statistics, canonical frame, metres.
///
/// Keep in sync with `shaders/relations.wgsl` and `kernels/relations.cu`: `#[repr(C)]`, 96 bytes, every
/// `[f32; 3]` followed by an `f32` so that the layout equals WGSL's `vec3<f32>` + `f32` (16-byte rows).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct ObjectSummary {
    /// Mean of the object's points.
    pub centroid_m: [f32; 3],
    /// Measurement uncertainty of this object's position (depth noise model at its median depth).
    pub sigma_m: f32,
    pub aabb_min_m: [f32; 3],
    /// Yaw of the oriented box's width axis from canonical x, radians, in (−π/4, π/4].
    pub yaw_rad: f32,
    pub aabb_max_m: [f32; 3],
    /// Oriented-box volume, m³.
    pub volume_m3: f32,
    /// Centre of the oriented box.
    pub obb_center_m: [f32; 3],
    /// Distance from the camera centre to the centroid.
    pub distance_to_camera_m: f32,
    /// Oriented-box size: width (along the axis nearer canonical x, i.e. left–right as seen), depth (the other
    /// horizontal axis), height (z extent).
    pub size_m: [f32; 3],
    /// Median camera-frame depth (z) of the object's points.
    pub median_depth_m: f32,
    /// Number of points the statistics come from.
    pub points: u32,
    pub _pad: [u32; 3],
}

const _: () = assert!(std::mem::size_of::<ObjectSummary>() == 96);

impl ObjectSummary {
    pub fn width_m(&self) -> f32 {
        self.size_m[0]
    }
    pub fn depth_m(&self) -> f32 {
        self.size_m[1]
    }
    pub fn height_m(&self) -> f32 {
        self.size_m[2]
    }
    /// Height of the lowest point above the ground.
    pub fn bottom_m(&self) -> f32 {
        self.aabb_min_m[2]
    }
    /// Height of the highest point above the ground.
    pub fn top_m(&self) -> f32 {
        self.aabb_max_m[2]
    }
}

/// Depth-noise model: the standard deviation of a position measured at camera depth `z` is
/// `floor_m + per_m2 · z²` (structured-light and stereo depth error grows with the square of the distance).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoiseModel {
    pub floor_m: f32,
    pub per_m2: f32,
}

impl Default for NoiseModel {
    fn default() -> Self {
        // Kinect v1's random error is about 1.4 mm·z² (Khoshelham & Elberink 2012); doubled for calibration and
        // registration errors, plus a 1 cm floor for segmentation.
        NoiseModel { floor_m: 0.01, per_m2: 0.003 }
    }
}

impl NoiseModel {
    pub fn sigma_at(&self, depth_m: f32) -> f32 {
        self.floor_m + self.per_m2 * depth_m * depth_m
    }
}

/// One object's input to K4: its points in the canonical frame and in the camera frame (the same points, for the
/// depth), and the camera centre in the canonical frame.
#[derive(Clone, Copy, Debug)]
pub struct StatsInput<'a> {
    pub canonical: &'a [Point3],
    pub camera: &'a [Point3],
    pub camera_position: [f64; 3],
}

/// The reductions K4 takes from an object's points; [`assemble`] builds the summary from them and the footprint's
/// hull candidates. A GPU backend computes them on its device.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reductions {
    /// Mean of the canonical points (f64).
    pub centroid: [f64; 3],
    /// Axis-aligned box of the canonical points.
    pub lo: [f32; 3],
    pub hi: [f32; 3],
    /// The `(n / 2)`-th smallest camera depth in `f32::total_cmp` order (0 without camera points).
    pub median_depth: f32,
    pub points: u32,
}

/// K4: the summary of one object from its points in the canonical frame and in the camera frame (for depth).
/// `camera_position` is the camera centre in the canonical frame. Returns `None` for an empty object.
pub fn summarize(
    points_canonical: &[Point3],
    points_camera: &[Point3],
    camera_position: [f64; 3],
    noise: &NoiseModel,
) -> Option<ObjectSummary> {
    if points_canonical.is_empty() {
        return None;
    }
    // Fixed chunks combined in order: the same bits whatever the thread count.
    let (sum, lo, hi) = points_canonical
        .par_chunks(super::ransac::REDUCE_CHUNK)
        .map(|chunk| {
            let (mut s, mut lo, mut hi) = ([0f64; 3], [f32::INFINITY; 3], [f32::NEG_INFINITY; 3]);
            for p in chunk {
                for k in 0..3 {
                    s[k] += f64::from(p[k]);
                    lo[k] = lo[k].min(p[k]);
                    hi[k] = hi[k].max(p[k]);
                }
            }
            (s, lo, hi)
        })
        .collect::<Vec<_>>()
        .into_iter()
        .fold(([0f64; 3], [f32::INFINITY; 3], [f32::NEG_INFINITY; 3]), |(s1, l1, h1), (s2, l2, h2)| {
            (
                [s1[0] + s2[0], s1[1] + s2[1], s1[2] + s2[2]],
                [l1[0].min(l2[0]), l1[1].min(l2[1]), l1[2].min(l2[2])],
                [h1[0].max(h2[0]), h1[1].max(h2[1]), h1[2].max(h2[2])],
            )
        });
    let n = points_canonical.len() as f64;
    let mut depths: Vec<f32> = points_camera.iter().map(|p| p[2]).collect();
    let median_depth = if depths.is_empty() {
        0.0
    } else {
        let k = depths.len() / 2;
        *depths.select_nth_unstable_by(k, f32::total_cmp).1
    };
    let reductions = Reductions {
        centroid: [sum[0] / n, sum[1] / n, sum[2] / n],
        lo,
        hi,
        median_depth,
        points: points_canonical.len() as u32,
    };
    let footprint: Vec<[f64; 2]> = points_canonical.iter().map(|p| [f64::from(p[0]), f64::from(p[1])]).collect();
    Some(assemble(&reductions, &footprint, camera_position, noise))
}

/// The summary from an object's [`Reductions`] and its horizontal footprint: all its `(x, y)` points, or any subset
/// holding every vertex of their convex hull (the oriented box depends on the hull only).
pub fn assemble(
    r: &Reductions,
    footprint: &[[f64; 2]],
    camera_position: [f64; 3],
    noise: &NoiseModel,
) -> ObjectSummary {
    let Reductions { centroid, lo, hi, median_depth, points } = *r;
    let rect = min_area_rect(footprint);
    let height = f64::from(hi[2] - lo[2]);
    let d = [centroid[0] - camera_position[0], centroid[1] - camera_position[1], centroid[2] - camera_position[2]];
    ObjectSummary {
        centroid_m: centroid.map(|v| v as f32),
        sigma_m: noise.sigma_at(median_depth),
        aabb_min_m: lo,
        yaw_rad: rect.yaw_rad as f32,
        aabb_max_m: hi,
        volume_m3: (rect.extent[0] * rect.extent[1] * height) as f32,
        obb_center_m: [rect.center[0] as f32, rect.center[1] as f32, (f64::from(lo[2]) + height / 2.0) as f32],
        distance_to_camera_m: (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt() as f32,
        size_m: [rect.extent[0] as f32, rect.extent[1] as f32, height as f32],
        median_depth_m: median_depth,
        points,
        _pad: [0; 3],
    }
}

/// K4 for a batch of objects (of any frames) on the CPU: [`summarize`] of each, `None` for empty ones.
pub fn summarize_batch(objects: &[StatsInput], noise: &NoiseModel) -> Vec<Option<ObjectSummary>> {
    objects.par_iter().map(|o| summarize(o.canonical, o.camera, o.camera_position, noise)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn object_summary_layout_matches_the_gpu_contract() {
        // WGSL: each vec3<f32> is 16-byte aligned and followed by one f32 in the same 16 bytes.
        assert_eq!(std::mem::size_of::<ObjectSummary>(), 96);
        assert_eq!(std::mem::align_of::<ObjectSummary>(), 4);
        let offsets = [
            offset_of!(ObjectSummary, centroid_m),
            offset_of!(ObjectSummary, sigma_m),
            offset_of!(ObjectSummary, aabb_min_m),
            offset_of!(ObjectSummary, yaw_rad),
            offset_of!(ObjectSummary, aabb_max_m),
            offset_of!(ObjectSummary, volume_m3),
            offset_of!(ObjectSummary, obb_center_m),
            offset_of!(ObjectSummary, distance_to_camera_m),
            offset_of!(ObjectSummary, size_m),
            offset_of!(ObjectSummary, median_depth_m),
            offset_of!(ObjectSummary, points),
            offset_of!(ObjectSummary, _pad),
        ];
        assert_eq!(offsets, [0, 12, 16, 28, 32, 44, 48, 60, 64, 76, 80, 84]);
    }
}
