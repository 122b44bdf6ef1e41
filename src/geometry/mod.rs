//! Geometry: shared types and the CPU reference of the five kernels.
//!
//! | stage | CPU reference (here) | later: WGSL | later: CUDA |
//! |---|---|---|---|
//! | K1 unproject + per-object grouping | [`unproject`] | `shaders/unproject.wgsl` | `kernels/unproject.cu` |
//! | K2 ground-plane RANSAC + canonical frame | [`ransac`], [`canonical`] | `shaders/ransac.wgsl` | `kernels/ransac.cu` |
//! | K3 exact DBSCAN, largest cluster; statistical outlier removal | [`dbscan`], [`outlier`] | `shaders/dbscan.wgsl` | `kernels/dbscan.cu` |
//! | K4 per-object stats (centroid, AABB, gravity-aligned OBB) | [`stats`], [`obb`] | `shaders/stats.wgsl` | `kernels/stats.cu` |
//! | K5 pairwise relations | [`relations`] | `shaders/relations.wgsl` | `kernels/relations.cu` |
//!
//! Conventions (see the README): the camera frame is OpenCV's (x right, y down, z forward, metres); the canonical
//! frame has z up (ground normal), y forward (the viewing direction projected on the ground), x = y × z (right),
//! origin on the ground below the camera. Points are `[f32; 3]`; reductions accumulate in `f64`.

pub mod canonical;
pub mod dbscan;
pub mod obb;
pub mod occlusion;
pub mod outlier;
pub mod radix;
pub mod ransac;
pub mod relations;
pub mod rng;
pub mod shared;
pub mod stats;
pub mod union_find;
pub mod unproject;

use serde::{Deserialize, Serialize};
pub use shared::SharedSlice;

/// A point in metres, `[x, y, z]`, in whatever frame its name says.
pub type Point3 = [f32; 3];

/// Pinhole camera intrinsics in pixels (OpenCV convention, no distortion).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Intrinsics {
    pub fx: f64,
    pub fy: f64,
    pub cx: f64,
    pub cy: f64,
    pub width: u32,
    pub height: u32,
}

impl Intrinsics {
    /// Checks that the intrinsics describe a usable camera. Returns a human-readable reason when not.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let finite = [self.fx, self.fy, self.cx, self.cy].iter().all(|v| v.is_finite());
        if !finite {
            return Err(format!("non-finite value in {self:?}"));
        }
        if self.width == 0 || self.height == 0 || self.width > 1 << 15 || self.height > 1 << 15 {
            return Err(format!("image size {}x{} out of range (1..=32768)", self.width, self.height));
        }
        if !(self.fx > 0.0 && self.fy > 0.0) {
            return Err(format!("focal lengths must be positive, got fx={} fy={}", self.fx, self.fy));
        }
        // A focal length of 1e6 px on a 640 px image is a 0.04 degree field of view: certainly a unit mistake.
        let max_f = 1000.0 * f64::from(self.width.max(self.height));
        let min_f = 0.01 * f64::from(self.width.max(self.height));
        if self.fx > max_f || self.fy > max_f || self.fx < min_f || self.fy < min_f {
            return Err(format!(
                "focal lengths fx={} fy={} are absurd for a {}x{} image",
                self.fx, self.fy, self.width, self.height
            ));
        }
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        if self.cx < -w || self.cx > 2.0 * w || self.cy < -h || self.cy > 2.0 * h {
            return Err(format!("principal point ({}, {}) far outside the {}x{} image", self.cx, self.cy, w, h));
        }
        Ok(())
    }

    /// Back-projects pixel `(u_px, v_px)` at depth `z_m` to a point in the camera frame.
    #[inline]
    pub fn unproject(&self, u_px: f64, v_px: f64, z_m: f64) -> [f64; 3] {
        [(u_px - self.cx) * z_m / self.fx, (v_px - self.cy) * z_m / self.fy, z_m]
    }

    /// Projects a camera-frame point to pixel coordinates; `None` behind the camera.
    #[inline]
    pub fn project(&self, point_in_camera: [f64; 3]) -> Option<[f64; 2]> {
        let [x, y, z] = point_in_camera;
        (z > 0.0).then(|| [self.fx * x / z + self.cx, self.fy * y / z + self.cy])
    }
}

/// A plane `normal · p + offset = 0` with a unit normal, in the camera frame.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plane {
    pub normal: [f64; 3],
    pub offset: f64,
}

impl Plane {
    /// Signed distance of `p` from the plane (positive on the normal's side).
    #[inline]
    pub fn signed_distance(&self, p: [f64; 3]) -> f64 {
        dot(self.normal, p) + self.offset
    }
}

#[inline]
pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

#[inline]
pub(crate) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

#[inline]
pub(crate) fn norm(a: [f64; 3]) -> f64 {
    dot(a, a).sqrt()
}

#[inline]
pub(crate) fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

#[inline]
pub(crate) fn scale(a: [f64; 3], s: f64) -> [f64; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

/// Returns `a / |a|`, or `None` when `|a|` is zero or not finite.
#[inline]
pub(crate) fn normalize(a: [f64; 3]) -> Option<[f64; 3]> {
    let n = norm(a);
    (n.is_finite() && n > 0.0).then(|| scale(a, 1.0 / n))
}

#[inline]
pub(crate) fn to_f64(p: Point3) -> [f64; 3] {
    [f64::from(p[0]), f64::from(p[1]), f64::from(p[2])]
}
