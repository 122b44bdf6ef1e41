//! The canonical frame: z up (the ground normal, on the camera's side), y forward (the camera's viewing direction
//! projected on the ground), x = y × z (to the viewer's right), origin on the ground directly below the camera.
//!
//! Choosing y from the optical axis (rather than x from the camera's right axis) makes the frame invariant to the
//! camera rolling about its optical axis and to pitching up or down: "left of" and "behind" then mean the same
//! whatever the camera's tilt. When the camera looks within ~6° of straight down, the optical axis has no usable
//! horizontal part and the image's up direction (−y) projected on the ground is used instead.

use serde::{Deserialize, Serialize};

use super::{cross, dot, normalize, scale, sub, Plane, Point3};

/// Where the canonical frame's up direction and ground height came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroundSource {
    /// The ground-plane RANSAC found a floor or table.
    Ransac,
    /// No ground was found: up is the camera's gravity guess and the ground is put at the lowest points.
    GravityPrior,
}

/// A rigid transform `p_canonical = rotation * p_camera + translation` (rotation rows are the canonical axes
/// expressed in the camera frame).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CanonicalFrame {
    pub rotation: [[f64; 3]; 3],
    pub translation: [f64; 3],
    /// Height of the camera above the ground in metres.
    pub camera_height_m: f64,
    pub source: GroundSource,
}

impl CanonicalFrame {
    /// The frame defined by a ground plane (normal pointing to the camera side, camera at signed distance
    /// `plane.offset` above it).
    pub fn from_ground_plane(plane: &Plane, source: GroundSource) -> Option<Self> {
        let z_axis = normalize(plane.normal)?;
        let horizontal = |v: [f64; 3]| sub(v, scale(z_axis, dot(v, z_axis)));
        let optical = horizontal([0.0, 0.0, 1.0]);
        let forward = if dot(optical, optical) > 0.01 { optical } else { horizontal([0.0, -1.0, 0.0]) };
        let y_axis = normalize(forward)?;
        let x_axis = cross(y_axis, z_axis);
        // Origin: the foot of the camera centre on the plane, `-offset * normal`.
        let origin = scale(z_axis, -plane.offset);
        let rotation = [x_axis, y_axis, z_axis];
        let translation = [-dot(x_axis, origin), -dot(y_axis, origin), -dot(z_axis, origin)];
        Some(CanonicalFrame { rotation, translation, camera_height_m: plane.offset, source })
    }

    /// The frame of a level camera (up = camera −y) standing on the ground: the last resort when no up direction
    /// is usable.
    pub fn level_camera() -> Self {
        CanonicalFrame {
            rotation: [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]],
            translation: [0.0, 0.0, 0.0],
            camera_height_m: 0.0,
            source: GroundSource::GravityPrior,
        }
    }

    /// Transforms a camera-frame point to the canonical frame.
    #[inline]
    pub fn apply(&self, p: [f64; 3]) -> [f64; 3] {
        let r = &self.rotation;
        [dot(r[0], p) + self.translation[0], dot(r[1], p) + self.translation[1], dot(r[2], p) + self.translation[2]]
    }

    /// Transforms a camera-frame `f32` point to the canonical frame.
    #[inline]
    pub fn apply_f32(&self, p: Point3) -> Point3 {
        self.apply(super::to_f64(p)).map(|v| v as f32)
    }

    /// The height (canonical z) of a camera-frame `f32` point: `apply_f32(p)[2]`, without the other two coordinates.
    #[inline]
    pub fn height_f32(&self, p: Point3) -> f32 {
        (dot(self.rotation[2], super::to_f64(p)) + self.translation[2]) as f32
    }

    /// The camera centre in the canonical frame (`[0, 0, camera_height_m]`).
    pub fn camera_position(&self) -> [f64; 3] {
        self.translation
    }

    /// The 4×4 homogeneous matrix `canonical_from_camera`, row-major.
    pub fn matrix(&self) -> [[f64; 4]; 4] {
        let r = &self.rotation;
        let t = &self.translation;
        [
            [r[0][0], r[0][1], r[0][2], t[0]],
            [r[1][0], r[1][1], r[1][2], t[1]],
            [r[2][0], r[2][1], r[2][2], t[2]],
            [0.0, 0.0, 0.0, 1.0],
        ]
    }

    /// The fallback when no ground is found: `up_in_camera` is the gravity guess; the ground is put at the
    /// `percentile` (0..1) lowest height of `points` along it (so heights stay meaningful), or 1.5 m below the
    /// camera when there are no points.
    pub fn from_gravity_prior(up_in_camera: [f64; 3], points: &[Point3], percentile: f64) -> Option<Self> {
        let up = normalize(up_in_camera)?;
        let mut heights: Vec<f32> = points
            .iter()
            .map(|p| (up[0] * f64::from(p[0]) + up[1] * f64::from(p[1]) + up[2] * f64::from(p[2])) as f32)
            .collect();
        let ground_height = if heights.is_empty() {
            -1.5
        } else {
            let k = ((heights.len() - 1) as f64 * percentile.clamp(0.0, 1.0)).round() as usize;
            let (_, v, _) = heights.select_nth_unstable_by(k, f32::total_cmp);
            f64::from(*v)
        };
        // Plane up·p - ground_height = 0, with the camera above it when ground_height < 0.
        let plane = Plane { normal: up, offset: -ground_height };
        Self::from_ground_plane(&plane, GroundSource::GravityPrior)
    }
}
