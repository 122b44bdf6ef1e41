//! The scene graph: one per frame, one JSON object per line of `scene_graphs.jsonl`.

use serde::{Deserialize, Serialize};

use crate::geometry::canonical::GroundSource;
use crate::geometry::occlusion::Occlusion;
use crate::geometry::Intrinsics;
use crate::io::objects::ObjectKind;
use crate::io::DepthSource;

/// The ground estimate of a frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroundInfo {
    /// True when RANSAC found a floor or table with enough support; false means the canonical frame comes from
    /// the gravity prior (`source`).
    pub found: bool,
    pub source: GroundSource,
    /// `[a, b, c, d]` with `a x + b y + c z + d = 0` in the camera frame, unit normal pointing to the camera side
    /// (the ground used for the canonical frame).
    pub plane_in_camera: [f64; 4],
    /// RANSAC's best plane even when it was not accepted (`null` when no hypothesis was admissible).
    pub ransac_plane_in_camera: Option<[f64; 4]>,
    /// Winning hypothesis index (reproducible from the seed and the frame name).
    pub hypothesis: Option<u32>,
    /// Inliers of the RANSAC plane among all valid points.
    pub inliers: u32,
    pub inlier_fraction: f64,
    /// Camera height above the ground plane.
    pub camera_height_m: f64,
    /// Angle between the ground normal and the camera's −y axis, degrees (the camera's tilt from level).
    pub camera_tilt_deg: f64,
    /// How well the supporting points pin the ground normal down, degrees (`atan(thickness / minor extent)`):
    /// large for a narrow strip of table, small for a floor seen over metres. 90 without a RANSAC plane.
    pub tilt_uncertainty_deg: f64,
}

/// An object of the scene, canonical frame, metres.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SceneObject {
    /// Index of the object in this frame's `objects` (relations refer to it).
    pub object_id: u32,
    /// Index among the frame's annotated objects (stable even when some are dropped).
    pub annotation_index: u32,
    pub label: String,
    pub kind: ObjectKind,
    pub instance_id: Option<u32>,
    /// The detector's score (objectness × class) for detected objects; `null` for given ones.
    pub score: Option<f32>,
    pub bbox_px: [f32; 4],
    /// Valid depth points in the object's region, and those kept after denoising.
    pub points_in_region: u32,
    pub points: u32,
    /// Points of the region more than their depth noise below the ground (see
    /// [`crate::pipeline::BELOW_GROUND_SIGMAS`]), left out with the ground's points before clustering: the object
    /// reaches below the ground plane, which is then not the floor it stands on (a table top taken as the ground of
    /// a table-top frame, a chair under it), and its part down there is missing from its measure. Counted for the
    /// objects that lose their ground points (not given instance masks, whose points are all kept); 0 without a
    /// ground found.
    #[serde(default)]
    pub points_below_ground: u32,
    /// DBSCAN radius used for this object (grows with distance for sparse depth).
    pub dbscan_eps_m: f32,
    pub centroid_m: [f32; 3],
    pub aabb_min_m: [f32; 3],
    pub aabb_max_m: [f32; 3],
    pub obb_center_m: [f32; 3],
    /// Oriented box size `[width, depth, height]` (width: the horizontal axis nearer the viewer's left–right).
    pub obb_size_m: [f32; 3],
    /// Yaw of the oriented box's width axis from canonical x, degrees in (−45, 45].
    pub obb_yaw_deg: f32,
    pub width_m: f32,
    pub depth_m: f32,
    pub height_m: f32,
    /// Lowest and highest point above the ground.
    pub bottom_m: f32,
    pub top_m: f32,
    pub volume_m3: f32,
    pub distance_to_camera_m: f32,
    pub median_depth_m: f32,
    /// Position uncertainty from the depth-noise model.
    pub sigma_m: f32,
    /// The colour most of the object's kept pixels share (see [`crate::color`]); `null` when the colour image was
    /// not decoded or no colour dominates.
    #[serde(default)]
    pub color: Option<String>,
    /// For each side of `bbox_px`, the share of the depth pixels just outside it that are in front of the object
    /// (see [`crate::geometry::occlusion`]): the object may go on behind them. `null` when the frame's depth image
    /// was not at hand (a scene made from points).
    #[serde(default)]
    pub occlusion: Option<Occlusion>,
}

impl From<&SceneObject> for crate::geometry::occlusion::ObjectExtent {
    fn from(o: &SceneObject) -> Self {
        crate::geometry::occlusion::ObjectExtent {
            bbox_px: o.bbox_px,
            median_depth_m: o.median_depth_m,
            bottom_m: o.bottom_m,
            sigma_m: o.sigma_m,
        }
    }
}

/// An annotated object that did not make it into the scene, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DroppedObject {
    pub annotation_index: u32,
    pub label: String,
    pub points_in_region: u32,
    pub reason: String,
}

/// Relations of an ordered pair; see [`crate::geometry::relations::RelationRecord`] for each field's meaning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SceneRelation {
    pub a: u32,
    pub b: u32,
    pub left_m: f32,
    pub left_gap_m: f32,
    pub above_m: f32,
    pub above_gap_m: f32,
    pub front_m: f32,
    pub front_gap_m: f32,
    pub taller_m: f32,
    pub wider_m: f32,
    pub bigger_log_ratio: f32,
    pub distance_m: f32,
    pub horizontal_distance_m: f32,
    pub vertical_distance_m: f32,
    pub gap_m: f32,
    pub bearing_deg: f32,
    pub clock_hour: u32,
    pub clock_margin_deg: f32,
    pub sigma_m: f32,
}

impl From<&crate::geometry::relations::RelationRecord> for SceneRelation {
    fn from(r: &crate::geometry::relations::RelationRecord) -> Self {
        SceneRelation {
            a: r.a,
            b: r.b,
            left_m: r.left_m,
            left_gap_m: r.left_gap_m,
            above_m: r.above_m,
            above_gap_m: r.above_gap_m,
            front_m: r.front_m,
            front_gap_m: r.front_gap_m,
            taller_m: r.taller_m,
            wider_m: r.wider_m,
            bigger_log_ratio: r.bigger_log_ratio,
            distance_m: r.distance_m,
            horizontal_distance_m: r.horizontal_distance_m,
            vertical_distance_m: r.vertical_distance_m,
            gap_m: r.gap_m,
            bearing_deg: r.bearing_deg,
            clock_hour: r.clock_hour,
            clock_margin_deg: r.clock_margin_deg,
            sigma_m: r.sigma_m,
        }
    }
}

/// One frame's scene graph.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SceneGraph {
    /// Run-wide frame name, `dataset/id`.
    pub frame: String,
    pub frame_id: String,
    pub dataset: String,
    pub color: Option<String>,
    /// The depth file (`null` when a depth model made the depth; see `depth_source`).
    pub depth: Option<String>,
    pub depth_source: DepthSource,
    pub intrinsics: Intrinsics,
    /// True when the manifest gave no intrinsics and a field of view was assumed.
    pub intrinsics_assumed: bool,
    /// The image filter's verdict (`null` without a filter).
    pub image_filter: Option<crate::models::FilterDecision>,
    pub valid_depth_points: u32,
    /// The rectangle of the depth image that holds depth, `[x0, y0, x1, y1]` (pixels, `x1`/`y1` exclusive; see
    /// [`crate::geometry::occlusion::depth_frame`]): a registered depth sensor may leave margins without depth,
    /// which cut objects off as the image's border does. `null` without a depth image.
    #[serde(default)]
    pub depth_frame_px: Option<[u32; 4]>,
    pub ground: GroundInfo,
    /// 4×4 row-major rigid transform taking camera-frame points to the canonical frame.
    pub canonical_from_camera: [[f64; 4]; 4],
    pub objects: Vec<SceneObject>,
    pub dropped_objects: Vec<DroppedObject>,
    /// Every ordered pair `(a, b)`, `a ≠ b`, a-major.
    pub relations: Vec<SceneRelation>,
}
