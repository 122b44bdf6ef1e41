//! From a loaded frame (or any camera-frame point cloud with objects) to a scene graph: K1 → K5 on the CPU.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, FrameGeometry, FrameGeometryInput, IndexedJob, IndexedPoints, KeptInput};
use crate::color::dominant_color;
use crate::error::{Error, Result};
use crate::geometry::canonical::{CanonicalFrame, GroundSource};
use crate::geometry::dbscan::Clustering;
use crate::geometry::occlusion::{occlusion, ObjectExtent};
use crate::geometry::outlier::{statistical_outlier_mask, OutlierParams};
use crate::geometry::ransac::{fit_ground_plane, score_sample_indices, PlaneFit, RansacParams};
use crate::geometry::relations::{relate_all, RelationRecord};
use crate::geometry::rng::frame_key;
use crate::geometry::stats::{NoiseModel, ObjectSummary};
use crate::geometry::unproject::{estimate_normals, unproject_depth, DepthImage, PointCloud};
use crate::geometry::{dot, normalize, Intrinsics, Point3, SharedSlice};
use crate::io::objects::ObjectKind;
use crate::io::LoadedFrame;
use crate::scene::{DroppedObject, GroundInfo, SceneGraph, SceneObject, SceneRelation};

/// Every parameter of the scene stage. Written to `run.json` so a dataset says how it was made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SceneConfig {
    /// Ground-plane RANSAC (K2).
    pub ransac: RansacParams,
    /// Normals from the depth image look for valid neighbours up to this many pixels away (sparse depth such as
    /// LiDAR needs several).
    pub normal_max_step_px: u32,
    /// Without a ground plane, the ground is put at this quantile of the points' heights along the gravity prior.
    pub fallback_ground_quantile: f64,
    /// Object DBSCAN radius (K3): `max(object_eps_m, object_eps_px · median depth / focal length)`, so that
    /// sparse far-away objects (LiDAR rings, distant Kinect points) are not shattered.
    pub object_eps_m: f32,
    pub object_eps_px: f32,
    /// DBSCAN `min_points` for objects.
    pub object_min_points: u32,
    /// Objects left with fewer points than this after denoising are dropped (and listed as dropped).
    pub min_object_points: u32,
    /// Box objects: drop points within the ground inlier band, or below it, before clustering (boxes contain
    /// floor). Those more than [`BELOW_GROUND_SIGMAS`] times their depth noise below the ground are counted
    /// ([`SceneObject::points_below_ground`]).
    pub remove_ground_from_boxes: bool,
    /// Box objects: the kept cluster is the one with most points in the central part of the box (this share of
    /// its width and height), since the largest cluster of a box is often the wall behind the object.
    pub box_core_fraction: f32,
    /// Detected masks: when more than this share of a mask's points lie in the ground band, the object is the
    /// supporting surface itself (a table seen as the ground of a table-top frame) and its ground points are kept.
    pub surface_object_fraction: f32,
    /// Optional statistical outlier removal after DBSCAN.
    pub outlier_removal: Option<OutlierParams>,
    /// Voxel size of the exact closest-surface search (affects speed only, not the result).
    pub gap_voxel_m: f32,
    /// Depth-noise model behind each object's `sigma_m`.
    pub noise: NoiseModel,
}

impl Default for SceneConfig {
    fn default() -> Self {
        SceneConfig {
            ransac: RansacParams::default(),
            normal_max_step_px: 10,
            fallback_ground_quantile: 0.01,
            object_eps_m: 0.05,
            object_eps_px: 8.0,
            object_min_points: 10,
            min_object_points: 30,
            remove_ground_from_boxes: true,
            box_core_fraction: 0.5,
            surface_object_fraction: 0.5,
            outlier_removal: None,
            gap_voxel_m: 0.02,
            noise: NoiseModel::default(),
        }
    }
}

impl SceneConfig {
    /// Checks every parameter; the message names the offending one as written in `run.json`.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.ransac.validate()?;
        let positive = [
            ("object_eps_m", self.object_eps_m),
            ("gap_voxel_m", self.gap_voxel_m),
            ("noise.floor_m", self.noise.floor_m.max(f32::MIN_POSITIVE)),
            ("noise.per_m2", self.noise.per_m2.max(f32::MIN_POSITIVE)),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("{name} must be positive, got {v}"));
            }
        }
        if !(self.object_eps_px.is_finite() && self.object_eps_px >= 0.0) {
            return Err(format!("object_eps_px must be zero or positive, got {}", self.object_eps_px));
        }
        if !(0.0..=1.0).contains(&self.fallback_ground_quantile) {
            return Err(format!(
                "fallback_ground_quantile must be within 0..=1, got {}",
                self.fallback_ground_quantile
            ));
        }
        if !(0.0..=1.0).contains(&self.box_core_fraction) {
            return Err(format!("box_core_fraction must be within 0..=1, got {}", self.box_core_fraction));
        }
        if !(0.0..=1.0).contains(&self.surface_object_fraction) {
            return Err(format!("surface_object_fraction must be within 0..=1, got {}", self.surface_object_fraction));
        }
        Ok(())
    }
}

/// The steps of a batch's scene geometry, in the order they run. Four run on the backend (each once for the whole
/// batch); the others are host steps that every backend shares. [`GeometryClock`] times them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GeometryStep {
    /// K1 and K2 on the backend: unprojection, grouping each object's points, the ground search (with the host's
    /// normals and refinement); on a GPU, the depth upload and the read-backs.
    K1K2,
    /// Host: each frame's ground and canonical frame, its objects' points, box cores and colours.
    FrameInputs,
    /// Host: K3's ground band filter and radius per object.
    K3Before,
    /// K3 on the backend: every object's DBSCAN.
    K3,
    /// Host: each object's kept cluster (the indices of its kept points) and K4's inputs. (The kept points' copies
    /// in the canonical frame, where a backend needs them, are K4's.)
    K3After,
    /// K4 on the backend: every kept object's summary (with the host's copies of the kept points where the backend
    /// reads them: the CPU and wgpu, and CUDA when it cannot gather them on the device).
    K4,
    /// Host: the scene objects (colour names, boxes).
    Objects,
    /// The exact closest-surface gap of every pair of objects, on the backend (the CPU's voxel index, or the GPU
    /// kernels' chunked search: the same values).
    Gaps,
    /// K5 on the backend: every pair's relation record.
    K5,
    /// Host: the scene graphs.
    Graphs,
}

impl GeometryStep {
    pub const ALL: [GeometryStep; 10] = [
        GeometryStep::K1K2,
        GeometryStep::FrameInputs,
        GeometryStep::K3Before,
        GeometryStep::K3,
        GeometryStep::K3After,
        GeometryStep::K4,
        GeometryStep::Objects,
        GeometryStep::Gaps,
        GeometryStep::K5,
        GeometryStep::Graphs,
    ];

    /// The step's name in `run.json` and the benchmark's output.
    pub fn name(self) -> &'static str {
        match self {
            GeometryStep::K1K2 => "k1_k2",
            GeometryStep::FrameInputs => "frame_inputs",
            GeometryStep::K3Before => "k3_before",
            GeometryStep::K3 => "k3",
            GeometryStep::K3After => "k3_after",
            GeometryStep::K4 => "k4",
            GeometryStep::Objects => "objects",
            GeometryStep::Gaps => "gaps",
            GeometryStep::K5 => "k5",
            GeometryStep::Graphs => "graphs",
        }
    }

    /// Whether the step is a backend call (the others run on the host whatever the backend).
    pub fn on_backend(self) -> bool {
        matches!(self, GeometryStep::K1K2 | GeometryStep::K3 | GeometryStep::K4 | GeometryStep::Gaps | GeometryStep::K5)
    }
}

/// Wall time of each [`GeometryStep`], summed over every batch timed with the clock, and the frames those batches
/// held. Threads share one clock. Batches that run at once (GPU backends take two) each add their own time, so the
/// sums are busy times: they can exceed the wall time of the run.
#[derive(Debug, Default)]
pub struct GeometryClock {
    nanos: [std::sync::atomic::AtomicU64; GeometryStep::ALL.len()],
    frames: std::sync::atomic::AtomicU64,
}

/// One step's share of the time a [`GeometryClock`] measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepTime {
    pub step: String,
    /// Whether the step is a backend call (see [`GeometryStep::on_backend`]).
    pub on_backend: bool,
    /// Wall seconds summed over the batches.
    pub busy_s: f64,
    /// `busy_s` per frame, in milliseconds.
    pub ms_per_frame: f64,
    /// `busy_s` over the sum of every step's.
    pub share: f64,
}

impl GeometryClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f`, adding its wall time to `step`.
    pub fn time<T>(&self, step: GeometryStep, f: impl FnOnce() -> T) -> T {
        let t = std::time::Instant::now();
        let out = f();
        let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos[step as usize].fetch_add(ns, std::sync::atomic::Ordering::Relaxed);
        out
    }

    fn add_frames(&self, n: usize) {
        self.frames.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Frames of the batches timed so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every step's time, in [`GeometryStep::ALL`]'s order.
    pub fn report(&self) -> Vec<StepTime> {
        let busy: Vec<f64> =
            self.nanos.iter().map(|n| n.load(std::sync::atomic::Ordering::Relaxed) as f64 * 1e-9).collect();
        let total: f64 = busy.iter().sum();
        let frames = self.frames().max(1) as f64;
        GeometryStep::ALL
            .iter()
            .zip(busy)
            .map(|(step, busy_s)| StepTime {
                step: step.name().into(),
                on_backend: step.on_backend(),
                busy_s,
                ms_per_frame: busy_s * 1e3 / frames,
                share: if total > 0.0 { busy_s / total } else { 0.0 },
            })
            .collect()
    }
}

/// An object given as points in the camera frame (the output of K1 for one region).
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectInput {
    pub label: String,
    pub kind: crate::io::objects::ObjectKind,
    pub instance_id: Option<u32>,
    pub bbox_px: [f32; 4],
    /// The points (`Vec::into` makes them; a frame's objects share the buffer of its K1 grouping).
    pub points_in_camera: SharedSlice<Point3>,
    /// For boxes: whether each point's pixel lies in the central part of the box (see
    /// [`SceneConfig::box_core_fraction`]). Empty for masks.
    pub in_box_core: Vec<bool>,
    /// The detector's score, for detected objects.
    pub score: Option<f32>,
    /// The colour (RGB) of each point's pixel, when the colour image was decoded; empty otherwise.
    pub colors: Vec<[u8; 3]>,
}

/// The geometric content of a scene graph.
#[derive(Clone, Debug, PartialEq)]
pub struct SceneGeometry {
    pub ground: GroundInfo,
    pub canonical: CanonicalFrame,
    pub objects: Vec<SceneObject>,
    pub summaries: Vec<ObjectSummary>,
    pub dropped: Vec<DroppedObject>,
    pub relations: Vec<SceneRelation>,
}

/// Normals (from the organized depth image) of the points of the ground search's scoring subsample: what
/// [`ground_and_frame`] and [`fit_ground_plane`] take.
pub fn ground_sample_normals(
    depth: &DepthImage,
    k: &Intrinsics,
    cloud: &PointCloud,
    ransac: &RansacParams,
    max_step_px: u32,
) -> Vec<Point3> {
    let indices = score_sample_indices(cloud.len(), ransac);
    estimate_normals(depth, k, cloud, Some(&indices), max_step_px)
}

/// K2 plus the canonical frame: the ground plane if RANSAC finds one with enough support, else the gravity prior.
pub fn ground_and_frame(
    points: &[Point3],
    sample_normals: Option<&[Point3]>,
    key: u32,
    config: &SceneConfig,
    up_in_camera: Option<[f64; 3]>,
) -> (GroundInfo, CanonicalFrame, Option<PlaneFit>) {
    let ransac = ransac_with_up(config, up_in_camera);
    let fit = fit_ground_plane(points, sample_normals, key, &ransac);
    ground_info(points, &ransac, fit, config)
}

/// [`ground_and_frame`] with K2 on `backend`.
pub fn ground_and_frame_on(
    backend: &Backend,
    points: &[Point3],
    sample_normals: Option<&[Point3]>,
    key: u32,
    config: &SceneConfig,
    up_in_camera: Option<[f64; 3]>,
) -> Result<(GroundInfo, CanonicalFrame, Option<PlaneFit>)> {
    let ransac = ransac_with_up(config, up_in_camera);
    let fit = backend.fit_ground_plane(points, sample_normals, key, &ransac)?;
    Ok(ground_info(points, &ransac, fit, config))
}

/// The RANSAC parameters with the frame's up hint as the prior.
fn ransac_with_up(config: &SceneConfig, up_in_camera: Option<[f64; 3]>) -> RansacParams {
    let mut ransac = config.ransac.clone();
    if let Some(up) = up_in_camera.and_then(normalize) {
        ransac.up_prior = up.map(|v| v as f32);
    }
    ransac
}

fn ground_info(
    points: &[Point3],
    ransac: &RansacParams,
    fit: Option<PlaneFit>,
    config: &SceneConfig,
) -> (GroundInfo, CanonicalFrame, Option<PlaneFit>) {
    ground_info_of(points.len(), || std::borrow::Cow::Borrowed(points), ransac, fit, config)
}

/// [`ground_info`] from the frame's point count, with its points asked for only when the ground was not found (the
/// gravity prior's fallback needs them; a GPU batch keeps them on the device).
fn ground_info_of<'a>(
    n_points: usize,
    points: impl FnOnce() -> std::borrow::Cow<'a, [Point3]>,
    ransac: &RansacParams,
    fit: Option<PlaneFit>,
    config: &SceneConfig,
) -> (GroundInfo, CanonicalFrame, Option<PlaneFit>) {
    let n = n_points.max(1) as f64;
    let accepted = fit.filter(|f| f.accepted);
    let up_prior = [f64::from(ransac.up_prior[0]), f64::from(ransac.up_prior[1]), f64::from(ransac.up_prior[2])];
    // The last fallback is only reachable with a zero up prior, which `SceneConfig::validate` (called by
    // `scene_from_points` and `run_scenes`) rejects.
    let canonical = accepted
        .and_then(|f| CanonicalFrame::from_ground_plane(&f.plane, GroundSource::Ransac))
        .or_else(|| CanonicalFrame::from_gravity_prior(up_prior, &points(), config.fallback_ground_quantile))
        .unwrap_or_else(CanonicalFrame::level_camera);
    let up = canonical.rotation[2];
    let plane = [up[0], up[1], up[2], canonical.camera_height_m];
    let ground = GroundInfo {
        found: accepted.is_some(),
        source: canonical.source,
        plane_in_camera: plane,
        ransac_plane_in_camera: fit.map(|f| [f.plane.normal[0], f.plane.normal[1], f.plane.normal[2], f.plane.offset]),
        hypothesis: fit.map(|f| f.hypothesis),
        inliers: fit.map_or(0, |f| f.inliers),
        inlier_fraction: fit.map_or(0.0, |f| f64::from(f.inliers) / n),
        camera_height_m: canonical.camera_height_m,
        camera_tilt_deg: dot(up, [0.0, -1.0, 0.0]).clamp(-1.0, 1.0).acos().to_degrees(),
        tilt_uncertainty_deg: accepted.map_or(90.0, |f| f.tilt_uncertainty_deg()),
    };
    (ground, canonical, fit)
}

/// An object ready for K3: the indices (into its points) of the points DBSCAN sees, how many there are and the
/// radius.
struct DenoiseInput {
    /// The indices of the points DBSCAN sees, into the object's points; `None`: all of them. The points are not
    /// copied here: K3 takes them by index ([`crate::backend::IndexedJob`]; the device gathers them where it can).
    keep: Option<Vec<u32>>,
    /// How many points DBSCAN sees.
    len: usize,
    eps: f32,
    /// How many of the points left out were well below the ground ([`SceneObject::points_below_ground`]).
    below_ground: u32,
}

impl DenoiseInput {
    /// Calls `f(index, label)` for each point DBSCAN saw, in order: its index into the object's points and its
    /// label (`labels[k]` for the k-th point; DBSCAN gives one a point, and if it gave fewer or more the walk would
    /// stop at the shorter). A loop for each case, not one over a chained iterator (a frame's object points, some
    /// 150,000, go through it once or twice).
    fn for_each_labelled(&self, labels: &[i32], mut f: impl FnMut(usize, i32)) {
        debug_assert_eq!(labels.len(), self.len);
        match &self.keep {
            Some(keep) => keep.iter().zip(labels).for_each(|(&i, &l)| f(i as usize, l)),
            None => labels.iter().take(self.len).enumerate().for_each(|(i, &l)| f(i, l)),
        }
    }
}

/// How many standard deviations of a point's depth noise ([`NoiseModel::sigma_at`]), at least the ground band
/// (`ransac.inlier_threshold_m`), a point must lie below the ground to count in
/// [`SceneObject::points_below_ground`]: depth noise scatters the floor's own points about as far on both sides of
/// its plane.
pub const BELOW_GROUND_SIGMAS: f32 = 3.0;

/// Whether a point at height `h` above the ground (canonical frame) and depth `z` (camera frame) lies below the
/// ground by more than its depth noise allows (see [`BELOW_GROUND_SIGMAS`]).
fn below_ground(h: f32, z: f32, band: f32, noise: &NoiseModel) -> bool {
    // The noise only for points below the band (most of a box's ground points lie in it).
    h < -band && h < -BELOW_GROUND_SIGMAS * noise.sigma_at(z)
}

/// K3's host steps before DBSCAN: boxes lose their ground points (and count those well below it), and the radius
/// grows with the object's median depth. `Err` says why the object is dropped.
fn denoise_input(
    obj: &ObjectInput,
    canonical: &CanonicalFrame,
    ground_found: bool,
    focal_px: f64,
    config: &SceneConfig,
) -> std::result::Result<DenoiseInput, String> {
    let (band, noise) = (config.ransac.inlier_threshold_m, &config.noise);
    let all = &obj.points_in_camera;
    let mut drop_ground = obj.kind.may_include_ground() && ground_found && config.remove_ground_from_boxes;
    if drop_ground && obj.kind == ObjectKind::DetectedMask && !all.is_empty() {
        let in_band = all.iter().filter(|p| canonical.height_f32(**p) <= band).count();
        if in_band as f32 > config.surface_object_fraction * all.len() as f32 {
            drop_ground = false;
        }
    }
    if u32::try_from(all.len()).is_err() {
        return Err(format!("{} points, more than K3 takes in one object (2^32 - 1)", all.len()));
    }
    // The kept points' indices and their depths (for the median), in one pass (all of them: no indices).
    let mut below_ground_points = 0u32;
    let (keep, mut depths) = match drop_ground {
        true => {
            let n = all.len();
            let (mut keep, mut depths) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for (i, p) in all.iter().enumerate() {
                let h = canonical.height_f32(*p);
                if h > band {
                    keep.push(i as u32);
                    depths.push(p[2]);
                } else {
                    below_ground_points += u32::from(below_ground(h, p[2], band, noise));
                }
            }
            (Some(keep), depths)
        }
        false => (None, all.iter().map(|p| p[2]).collect::<Vec<f32>>()),
    };
    if depths.is_empty() {
        let why = if all.is_empty() { "no valid depth in its region" } else { "only ground points in its box" };
        return Err(why.into());
    }
    let mid = depths.len() / 2;
    let median_depth = *depths.select_nth_unstable_by(mid, f32::total_cmp).1;
    let eps = config.object_eps_m.max((f64::from(config.object_eps_px) * f64::from(median_depth) / focal_px) as f32);
    Ok(DenoiseInput { keep, len: depths.len(), eps, below_ground: below_ground_points })
}

/// K3's host steps after DBSCAN: the kept cluster (the largest; for boxes, the one with most points in the box's
/// core), the optional statistical outlier removal and the size check. The kept indices (into
/// `obj.points_in_camera`), or why the object is dropped.
fn denoise_output(
    obj: &ObjectInput,
    input: &DenoiseInput,
    clustering: &Clustering,
    config: &SceneConfig,
) -> std::result::Result<Vec<u32>, String> {
    let labels = &clustering.labels;
    let sizes = clustering.sizes();
    let chosen = if obj.kind.is_box() && !obj.in_box_core.is_empty() {
        let mut core = vec![0u32; clustering.clusters as usize];
        let in_core = &obj.in_box_core;
        input.for_each_labelled(labels, |i, l| {
            if l >= 0 && in_core[i] {
                core[l as usize] += 1;
            }
        });
        (0..clustering.clusters as usize).max_by_key(|&c| (core[c], sizes[c], std::cmp::Reverse(c))).map(|c| c as u32)
    } else {
        Clustering::largest_of(&sizes)
    };
    let Some(chosen) = chosen else {
        return Err(format!("no DBSCAN cluster of {} points within {:.3} m", config.object_min_points, input.eps));
    };
    // As many as the chosen cluster has points (a collect from a filter would grow the vector by doubling). Indices
    // fit 32 bits: `denoise_input` refused larger objects.
    let mut kept: Vec<u32> = Vec::with_capacity(sizes[chosen as usize] as usize);
    input.for_each_labelled(labels, |i, l| {
        if l == chosen as i32 {
            kept.push(i as u32);
        }
    });
    if let Some(sor) = &config.outlier_removal {
        let all: &[Point3] = &obj.points_in_camera;
        let points: Vec<Point3> = kept.iter().map(|&i| all[i as usize]).collect();
        let mask = statistical_outlier_mask(&points, sor);
        kept = kept.into_iter().zip(mask).filter(|(_, k)| *k).map(|(i, _)| i).collect();
    }
    if (kept.len() as u32) < config.min_object_points {
        return Err(format!(
            "{} points after denoising, fewer than min_object_points {}",
            kept.len(),
            config.min_object_points
        ));
    }
    Ok(kept)
}

/// K2–K5 from camera-frame points: the whole frame's valid points (for the ground) and each object's points.
///
/// `frame` names the frame in errors and seeds RANSAC (via [`frame_key`]); `sample_normals` (optional, see
/// [`ground_sample_normals`]) make the ground search reject planes that only slice through other surfaces; `focal_px` scales the object
/// DBSCAN radius with distance.
#[allow(clippy::too_many_arguments)]
pub fn scene_from_points(
    frame: &str,
    points_in_camera: &[Point3],
    sample_normals: Option<&[Point3]>,
    objects: &[ObjectInput],
    focal_px: f64,
    up_in_camera: Option<[f64; 3]>,
    config: &SceneConfig,
) -> Result<SceneGeometry> {
    scene_from_points_on(
        &Backend::Cpu,
        frame,
        points_in_camera,
        sample_normals,
        objects,
        focal_px,
        up_in_camera,
        config,
    )
}

/// [`scene_from_points`] with K2–K5 on `backend` (each kernel's small serial steps on the host, as every backend does).
#[allow(clippy::too_many_arguments)]
pub fn scene_from_points_on(
    backend: &Backend,
    frame: &str,
    points_in_camera: &[Point3],
    sample_normals: Option<&[Point3]>,
    objects: &[ObjectInput],
    focal_px: f64,
    up_in_camera: Option<[f64; 3]>,
    config: &SceneConfig,
) -> Result<SceneGeometry> {
    config.validate().map_err(|message| Error::Config { message })?;
    let (ground, canonical, _) =
        ground_and_frame_on(backend, points_in_camera, sample_normals, frame_key(frame), config, up_in_camera)?;
    let objects = ObjectsOf::Shared(objects);
    let grounded = Grounded { frame, ground, canonical, objects, focal_px, resident: None };
    scenes_from_ground(backend, vec![grounded], config, &GeometryClock::new()).pop().unwrap_or_else(|| {
        Err(Error::Geometry { frame: frame.to_string(), message: "the scene stage returned no scene".into() })
    })
}

/// One frame's input to K3–K5, once its ground and canonical frame are known.
struct Grounded<'a> {
    frame: &'a str,
    ground: GroundInfo,
    canonical: CanonicalFrame,
    objects: ObjectsOf<'a>,
    focal_px: f64,
    /// Where the objects' points also lie on the device, and each object's first point there (K1's offsets). Given
    /// up after K4, its last reader (the device buffer is freed with its last clone).
    resident: Option<(crate::backend::ResidentGroup, &'a [u32])>,
}

/// A frame's objects as K3–K5 take them: borrowed, or borrowed mutably so that their points can be let go once no
/// step reads them ([`ObjectsOf::release_points`]).
enum ObjectsOf<'a> {
    Shared(&'a [ObjectInput]),
    Releasable(&'a mut [ObjectInput]),
}

impl std::ops::Deref for ObjectsOf<'_> {
    type Target = [ObjectInput];
    fn deref(&self) -> &[ObjectInput] {
        match self {
            ObjectsOf::Shared(o) => o,
            ObjectsOf::Releasable(o) => o,
        }
    }
}

impl ObjectsOf<'_> {
    /// Lets the objects' points go (a batch's views of K1's read-back: on CUDA the page-locked buffer goes back to
    /// the pool with the last of them, for the next batch), where they are borrowed mutably.
    fn release_points(&mut self) {
        if let ObjectsOf::Releasable(objects) = self {
            for o in objects.iter_mut() {
                o.points_in_camera = SharedSlice::default();
            }
        }
    }
}

impl Grounded<'_> {
    /// Where object `object`'s points lie on the device, if they do: the frame's group and the object's first point
    /// there.
    fn resident_object(&self, object: usize) -> Option<(&crate::backend::ResidentGroup, u32)> {
        let (group, offsets) = self.resident.as_ref()?;
        Some((group, *offsets.get(object)?))
    }
}

/// Runs `run` once over the items of every frame (`ranges[f]` = frame f's items, consecutive); when that fails and
/// there are several frames, runs it frame by frame, so that an error is charged to its own frame only. The results
/// are split by frame.
fn by_frame<T, E>(
    ranges: &[std::ops::Range<usize>],
    run: impl Fn(std::ops::Range<usize>) -> std::result::Result<Vec<T>, E>,
) -> Vec<std::result::Result<Vec<T>, E>> {
    let total = ranges.last().map_or(0, |r| r.end);
    if total == 0 {
        return ranges.iter().map(|_| Ok(Vec::new())).collect();
    }
    match run(0..total) {
        Ok(all) => {
            let mut all = all.into_iter();
            ranges.iter().map(|r| Ok(all.by_ref().take(r.len()).collect())).collect()
        }
        Err(e) if ranges.len() == 1 => vec![Err(e)],
        Err(_) => ranges.iter().map(|r| if r.is_empty() { Ok(Vec::new()) } else { run(r.clone()) }).collect(),
    }
}

/// Like [`by_frame`], but keeps each call's whole result, with the frames it covers: one call for every frame, or
/// when that fails and there are several frames, one call per frame (so a failed call covers one frame).
fn calls_by_frame<T, E>(
    ranges: &[std::ops::Range<usize>],
    run: impl Fn(std::ops::Range<usize>) -> std::result::Result<T, E>,
) -> Vec<(std::ops::Range<usize>, std::result::Result<T, E>)> {
    let total = ranges.last().map_or(0, |r| r.end);
    match run(0..total) {
        Err(_) if ranges.len() > 1 => ranges.iter().enumerate().map(|(f, r)| (f..f + 1, run(r.clone()))).collect(),
        all => vec![(0..ranges.len(), all)],
    }
}

/// A frame's kept objects, their summaries, its dropped objects and the closest-surface gaps (n x n).
type FrameObjects = (Vec<SceneObject>, Vec<ObjectSummary>, Vec<DroppedObject>, Vec<f32>);

/// An object kept by K3: its annotation index, the kept indices (into its points), the radius and how many of its
/// points lay well below the ground.
struct Survivor {
    index: usize,
    kept_indices: Vec<u32>,
    eps: f32,
    below_ground: u32,
}

/// K3–K5 for a batch of frames whose ground is known. Each kernel runs once for the whole batch: K3 on every object
/// of every frame (one DBSCAN batch), K4 on every kept object, K5 on every pair of every frame. One scene (or the
/// frame's error) per frame, in order; a frame's failure does not fail the others.
fn scenes_from_ground(
    backend: &Backend,
    mut frames: Vec<Grounded<'_>>,
    config: &SceneConfig,
    clock: &GeometryClock,
) -> Vec<Result<SceneGeometry>> {
    let frame_error = |f: &Grounded<'_>, message: String| Error::Geometry { frame: f.frame.to_string(), message };
    // K3's host steps before DBSCAN, every object of every frame in parallel.
    type Inputs = Vec<std::result::Result<DenoiseInput, String>>;
    let inputs: Vec<Inputs> = clock.time(GeometryStep::K3Before, || {
        frames
            .par_iter()
            .map(|f| {
                f.objects
                    .par_iter()
                    .map(|o| denoise_input(o, &f.canonical, f.ground.found, f.focal_px, config))
                    .collect()
            })
            .collect()
    });
    // The jobs (the objects not dropped already), each naming its points by index into the object's points, with
    // where those lie on the device too (K1's buffer, on CUDA), in order.
    let (jobs, job_ranges) = clock.time(GeometryStep::K3Before, || {
        let mut jobs = Vec::new();
        let mut job_ranges = Vec::with_capacity(frames.len());
        for (f, objects) in frames.iter().zip(&inputs) {
            let start = jobs.len();
            for (i, (o, d)) in f.objects.iter().zip(objects).enumerate() {
                let Ok(d) = d else { continue };
                let points =
                    IndexedPoints { all: &o.points_in_camera, keep: d.keep.as_deref(), resident: f.resident_object(i) };
                jobs.push(IndexedJob { points, eps: d.eps, min_points: config.object_min_points });
            }
            job_ranges.push(start..jobs.len());
        }
        (jobs, job_ranges)
    });
    // K3: one DBSCAN batch for the objects of every frame.
    let clusterings =
        clock.time(GeometryStep::K3, || by_frame(&job_ranges, |r| backend.dbscan_batch_indexed(&jobs[r])));
    drop(jobs);
    // K3's host steps after DBSCAN: each frame's survivors and dropped objects.
    let denoised: Vec<Result<(Vec<Survivor>, Vec<DroppedObject>)>> = clock.time(GeometryStep::K3After, || {
        frames
            .par_iter()
            .zip(inputs)
            .zip(clusterings)
            .map(|((f, inputs), clusterings)| {
                let mut clusterings = clusterings.map_err(|m| frame_error(f, m))?.into_iter();
                let mut survivors = Vec::new();
                let mut dropped = Vec::new();
                for (index, (obj, input)) in f.objects.iter().zip(inputs).enumerate() {
                    let outcome = match input {
                        Err(reason) => Err(reason),
                        Ok(input) => {
                            let clustering = clusterings
                                .next()
                                .ok_or_else(|| frame_error(f, "DBSCAN returned too few clusterings".into()))?;
                            denoise_output(obj, &input, &clustering, config)
                                .map(|kept| (kept, input.eps, input.below_ground))
                        }
                    };
                    match outcome {
                        Ok((kept_indices, eps, below_ground)) => {
                            survivors.push(Survivor { index, kept_indices, eps, below_ground })
                        }
                        Err(reason) => dropped.push(DroppedObject {
                            annotation_index: index as u32,
                            label: obj.label.clone(),
                            points_in_region: obj.points_in_camera.len() as u32,
                            reason,
                        }),
                    }
                }
                Ok((survivors, dropped))
            })
            .collect()
    });
    // The survivors stay where they are until the scene objects (K4's inputs borrow their kept indices, which then
    // name the colours); the dropped objects (or the frame's error) go on with each frame.
    let (survivors, dropped): (Vec<Vec<Survivor>>, Vec<Result<Vec<DroppedObject>>>) = denoised
        .into_iter()
        .map(|d| match d {
            Ok((survivors, dropped)) => (survivors, Ok(dropped)),
            Err(e) => (Vec::new(), Err(e)),
        })
        .unzip();
    // K4: one batch for the kept objects of every frame (each frame alone if the batch fails), kept for the gaps. Each
    // object names its kept points by index into its points, with where those lie on the device too (K1's buffer, on
    // CUDA): the backend copies them on the host only where it must.
    let (stats_inputs, stats_ranges) = clock.time(GeometryStep::K3After, || {
        let mut stats_inputs = Vec::new();
        let mut stats_ranges = Vec::with_capacity(frames.len());
        for (f, survivors) in frames.iter().zip(&survivors) {
            let start = stats_inputs.len();
            for s in survivors {
                let points = IndexedPoints {
                    all: &f.objects[s.index].points_in_camera,
                    keep: Some(&s.kept_indices),
                    resident: f.resident_object(s.index),
                };
                stats_inputs.push(KeptInput { points, canonical: &f.canonical });
            }
            stats_ranges.push(start..stats_inputs.len());
        }
        (stats_inputs, stats_ranges)
    });
    let k4 = clock.time(GeometryStep::K4, || {
        calls_by_frame(&stats_ranges, |r| backend.summarize_kept_indexed(&stats_inputs[r], &config.noise))
    });
    drop(stats_inputs);
    // K1's grouped points are not read after K4 (its kept batches borrow nothing): the device buffer goes (with the
    // last frame's clone).
    for f in &mut frames {
        f.resident = None;
    }
    // Each frame's summaries; each call's kept batch with the frames it covers.
    let mut stats: Vec<Result<Vec<Option<ObjectSummary>>>> = Vec::with_capacity(frames.len());
    let mut kept = Vec::with_capacity(k4.len());
    for (covered, result) in k4 {
        match result {
            Ok((summaries, batch)) => {
                let mut summaries = summaries.into_iter();
                stats.extend(covered.clone().map(|f| Ok(summaries.by_ref().take(stats_ranges[f].len()).collect())));
                kept.push((covered, Some(batch)));
            }
            // A failed call covers one frame (calls_by_frame).
            Err(e) => {
                stats.extend(std::iter::once(Err(e)).chain(
                    covered.clone().skip(1).map(|f| Err(frame_error(&frames[f], "K4 failed for its batch".into()))),
                ));
                kept.push((covered, None));
            }
        }
    }
    // Each frame's objects (those with a summary), and which of its survivors they are.
    type WithKept = (Vec<SceneObject>, Vec<ObjectSummary>, Vec<DroppedObject>, Vec<usize>);
    let objects: Vec<Result<WithKept>> = clock.time(GeometryStep::Objects, || {
        frames
            .par_iter()
            .zip(&survivors)
            .zip(stats)
            .zip(dropped)
            .map(|(((f, survivors), stats), dropped)| {
                let dropped = dropped?;
                let stats = stats?;
                let mut scene_objects = Vec::new();
                let mut summaries = Vec::new();
                let mut with_summary = Vec::new();
                for (k, (survivor, s)) in survivors.iter().zip(stats).enumerate() {
                    let Some(s) = s else { continue };
                    scene_objects.push(scene_object(&f.objects[survivor.index], survivor, &s, scene_objects.len()));
                    summaries.push(s);
                    with_summary.push(k);
                }
                Ok((scene_objects, summaries, dropped, with_summary))
            })
            .collect()
    });
    // No step reads the objects' points after this (the gaps read K4's kept points): they go now, not with the
    // batch (on CUDA the read-back they are views of goes back to the pool for the next batch).
    for f in &mut frames {
        f.objects.release_points();
    }
    // The exact closest-surface gaps between each frame's objects: one batch for every pair of every frame of each K4
    // call, from the points that call kept (on CUDA, still on the device).
    let partial: Vec<Result<FrameObjects>> = clock.time(GeometryStep::Gaps, || {
        let mut gaps: Vec<Result<Vec<f32>>> = Vec::with_capacity(frames.len());
        for (covered, batch) in &kept {
            let Some(batch) = batch else {
                gaps.extend(covered.clone().map(|_| Ok(Vec::new())));
                continue;
            };
            let first = stats_ranges.get(covered.start).map_or(0, |r| r.start);
            let lists: Vec<Vec<usize>> = covered
                .clone()
                .map(|f| match &objects[f] {
                    Ok((_, _, _, with_summary)) => {
                        with_summary.iter().map(|k| stats_ranges[f].start - first + k).collect()
                    }
                    Err(_) => Vec::new(),
                })
                .collect();
            let lists: Vec<&[usize]> = lists.iter().map(Vec::as_slice).collect();
            let ranges: Vec<_> = (0..lists.len()).map(|f| f..f + 1).collect();
            gaps.extend(
                by_frame(&ranges, |r| backend.closest_gaps_kept(batch, &lists[r], config.gap_voxel_m))
                    .into_iter()
                    .map(|g| g.map(|mut g| g.pop().unwrap_or_default())),
            );
        }
        objects
            .into_iter()
            .zip(gaps)
            .map(|(o, gaps)| {
                let (scene_objects, summaries, dropped, _) = o?;
                Ok((scene_objects, summaries, dropped, gaps?))
            })
            .collect()
    });
    drop(kept);
    drop(survivors);
    // K5: every pair of every frame in one batch (the gaps from the exact search on the host).
    let records: Vec<Result<Vec<RelationRecord>>> = clock.time(GeometryStep::K5, || match backend {
        Backend::Cpu => partial
            .par_iter()
            .map(|p| match p {
                Ok((_, summaries, _, gaps)) => {
                    let n = summaries.len();
                    Ok(relate_all(summaries, |i, j| gaps[i * n + j]))
                }
                Err(_) => Ok(Vec::new()),
            })
            .collect(),
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        _ => {
            let per_frame: Vec<&[ObjectSummary]> =
                partial.iter().map(|p| p.as_ref().map_or(&[][..], |(_, s, _, _)| s.as_slice())).collect();
            let ranges: Vec<_> = (0..per_frame.len()).map(|f| f..f + 1).collect();
            by_frame(&ranges, |r| backend.relate_batch(&per_frame[r]))
                .into_iter()
                .zip(&partial)
                .map(|(records, p)| {
                    let mut records = records?.pop().unwrap_or_default();
                    if let Ok((_, summaries, _, gaps)) = p {
                        let n = summaries.len();
                        for r in &mut records {
                            let (i, j) = (r.a.min(r.b) as usize, r.a.max(r.b) as usize);
                            r.gap_m = gaps[i * n + j];
                        }
                    }
                    Ok(records)
                })
                .collect()
        }
    });
    clock.time(GeometryStep::Graphs, || {
        frames
            .into_iter()
            .zip(partial)
            .zip(records)
            .map(|((f, partial), records)| {
                let (objects, summaries, dropped, _) = partial?;
                let relations = records?.iter().map(SceneRelation::from).collect();
                Ok(SceneGeometry { ground: f.ground, canonical: f.canonical, objects, summaries, dropped, relations })
            })
            .collect()
    })
}

/// A kept object's scene record from its K4 summary.
fn scene_object(obj: &ObjectInput, survivor: &Survivor, s: &ObjectSummary, object_id: usize) -> SceneObject {
    let color = match obj.colors.len() == obj.points_in_camera.len() {
        true => dominant_color(survivor.kept_indices.iter().map(|&i| obj.colors[i as usize])),
        false => None,
    };
    SceneObject {
        object_id: object_id as u32,
        annotation_index: survivor.index as u32,
        label: obj.label.clone(),
        kind: obj.kind,
        instance_id: obj.instance_id,
        score: obj.score,
        bbox_px: obj.bbox_px,
        points_in_region: obj.points_in_camera.len() as u32,
        points: s.points,
        dbscan_eps_m: survivor.eps,
        points_below_ground: survivor.below_ground,
        centroid_m: s.centroid_m,
        aabb_min_m: s.aabb_min_m,
        aabb_max_m: s.aabb_max_m,
        obb_center_m: s.obb_center_m,
        obb_size_m: s.size_m,
        obb_yaw_deg: s.yaw_rad.to_degrees(),
        width_m: s.width_m(),
        depth_m: s.depth_m(),
        height_m: s.height_m(),
        bottom_m: s.bottom_m(),
        top_m: s.top_m(),
        volume_m3: s.volume_m3,
        distance_to_camera_m: s.distance_to_camera_m,
        median_depth_m: s.median_depth_m,
        sigma_m: s.sigma_m,
        color,
        occlusion: None,
    }
}

/// The full CPU pipeline for one loaded frame: K1 (whole frame and per object), then [`scene_from_points`].
pub fn process_frame(frame: &LoadedFrame, config: &SceneConfig) -> Result<SceneGraph> {
    process_frame_on(&Backend::Cpu, frame, config)
}

/// [`process_frame`] with K1–K5 on `backend`.
pub fn process_frame_on(backend: &Backend, frame: &LoadedFrame, config: &SceneConfig) -> Result<SceneGraph> {
    process_frames_on(backend, &[frame], config).pop().unwrap_or_else(|| {
        Err(Error::Geometry { frame: frame.spec.key.clone(), message: "the scene stage returned no scene".into() })
    })
}

/// A frame after K1 and K2: its valid points, its objects' inputs to K3, its ground and canonical frame.
struct FrameStart {
    valid_depth_points: usize,
    objects: Vec<ObjectInput>,
    ground: GroundInfo,
    canonical: CanonicalFrame,
    focal_px: f64,
    /// Where K1 left the objects' points on the device, and each object's first point there.
    resident: crate::backend::ResidentGroup,
    object_offsets: Vec<u32>,
}

/// [`process_frame_on`] for a batch of frames: K1 and K2 per frame (in parallel; on a GPU the frame's cloud stays on
/// the device between them), then K3, K4 and K5 each once for the whole batch. One scene graph (or that frame's
/// error) per frame, in order; a frame's failure does not fail the others.
pub fn process_frames_on(backend: &Backend, frames: &[&LoadedFrame], config: &SceneConfig) -> Vec<Result<SceneGraph>> {
    process_frames_timed(backend, frames, config, &GeometryClock::new())
}

/// [`process_frames_on`], adding the wall time of each [`GeometryStep`] (and the batch's frames) to `clock`.
pub fn process_frames_timed(
    backend: &Backend,
    frames: &[&LoadedFrame],
    config: &SceneConfig,
    clock: &GeometryClock,
) -> Vec<Result<SceneGraph>> {
    if let Err(message) = config.validate() {
        return frames.iter().map(|_| Err(Error::Config { message: message.clone() })).collect();
    }
    clock.add_frames(frames.len());
    let mut starts = frame_starts(backend, frames, config, clock);
    let grounded: Vec<Grounded<'_>> = frames
        .iter()
        .zip(&mut starts)
        .filter_map(|(f, s)| s.as_mut().ok().map(|s| (f, s)))
        .map(|(f, s)| Grounded {
            frame: &f.spec.key,
            ground: s.ground.clone(),
            canonical: s.canonical,
            objects: ObjectsOf::Releasable(&mut s.objects),
            focal_px: s.focal_px,
            resident: match s.resident.on_device() {
                true => Some((std::mem::take(&mut s.resident), s.object_offsets.as_slice())),
                false => None,
            },
        })
        .collect();
    let mut geometries = scenes_from_ground(backend, grounded, config, clock).into_iter();
    clock.time(GeometryStep::Graphs, || {
        frames
            .iter()
            .zip(starts)
            .map(|(frame, start)| {
                let start = start?;
                let geo = geometries.next().unwrap_or_else(|| {
                    Err(Error::Geometry { frame: frame.spec.key.clone(), message: "no scene for the frame".into() })
                })?;
                Ok(scene_graph(frame, start.valid_depth_points, geo))
            })
            .collect()
    })
}

/// K1 and K2 of every frame (one [`Backend::frames_geometry`] batch), and their objects' inputs to K3.
fn frame_starts(
    backend: &Backend,
    frames: &[&LoadedFrame],
    config: &SceneConfig,
    clock: &GeometryClock,
) -> Vec<Result<FrameStart>> {
    struct Prepared<'a> {
        frame: &'a LoadedFrame,
        depth: &'a DepthImage,
        regions: Vec<crate::geometry::unproject::ObjectRegion>,
        ransac: RansacParams,
        key: u32,
    }
    let prepared: Vec<Result<Prepared<'_>>> = frames
        .iter()
        .map(|&frame| {
            let spec = &frame.spec;
            let Some(depth) = &frame.depth else {
                return Err(Error::InvalidDepth {
                    frame: spec.key.clone(),
                    path: spec.color.clone().unwrap_or_else(|| spec.manifest.clone()),
                    message: "the frame has no depth file and no depth model made one (give --depth-model)".into(),
                });
            };
            Ok(Prepared {
                frame,
                depth,
                regions: frame.objects.iter().map(|o| o.region.clone()).collect(),
                ransac: ransac_with_up(config, spec.up_in_camera),
                key: frame_key(&spec.key),
            })
        })
        .collect();
    let inputs: Vec<FrameGeometryInput<'_>> = prepared
        .iter()
        .flatten()
        .map(|p| FrameGeometryInput {
            depth: p.depth,
            k: &p.frame.intrinsics,
            instance_labels: p.frame.instance_labels.as_deref(),
            regions: &p.regions,
            frame_key: p.key,
            params: &p.ransac,
        })
        .collect();
    let mut geometries =
        clock.time(GeometryStep::K1K2, || backend.frames_geometry(&inputs, config.normal_max_step_px)).into_iter();
    let paired: Vec<Result<(Prepared<'_>, FrameGeometry)>> = prepared
        .into_iter()
        .map(|p| {
            let p = p?;
            let geometry = geometries.next().unwrap_or_else(|| {
                Err(Error::Geometry { frame: p.frame.spec.key.clone(), message: "no K1/K2 result".into() })
            })?;
            Ok((p, geometry))
        })
        .collect();
    clock.time(GeometryStep::FrameInputs, || {
        paired
            .into_par_iter()
            .map(|r| r.and_then(|(p, g)| frame_start(p.frame, p.depth, &p.ransac, g, config)))
            .collect()
    })
}

/// Whether each pixel (an index into a row-major image `width` pixels wide) has its centre in the central
/// `core_fraction` of the box `bbox_px` (see [`SceneConfig::box_core_fraction`]).
///
/// The columns' answers come from a table and each row's once per run of pixels in the same row, so that pixels in
/// row-major order (K1's order) cost no division each.
fn box_core_flags(pixels: &[u32], width: u32, bbox_px: [f32; 4], core_fraction: f32) -> Vec<bool> {
    let [x0, y0, x1, y1] = bbox_px;
    let m = (1.0 - core_fraction.clamp(0.0, 1.0)) / 2.0;
    let (cx0, cx1) = (x0 + m * (x1 - x0), x1 - m * (x1 - x0));
    let (cy0, cy1) = (y0 + m * (y1 - y0), y1 - m * (y1 - y0));
    let columns: Vec<bool> = (0..width)
        .map(|u| {
            let u = u as f32 + 0.5;
            u >= cx0 && u < cx1
        })
        .collect();
    let row_inside = |v: u32| {
        let v = v as f32 + 0.5;
        v >= cy0 && v < cy1
    };
    // The current row's first pixel and whether the row is inside (row 0 to begin with).
    let (mut row_start, mut inside) = (0, row_inside(0));
    pixels
        .iter()
        .map(|&p| {
            if p.wrapping_sub(row_start) >= width {
                let v = p / width.max(1);
                (row_start, inside) = (v * width, row_inside(v));
            }
            inside && columns.get((p - row_start) as usize).copied().unwrap_or(false)
        })
        .collect()
}

/// A frame's ground and canonical frame and its objects' inputs to K3, from its K1 and K2.
fn frame_start(
    frame: &LoadedFrame,
    depth: &DepthImage,
    ransac: &RansacParams,
    geometry: FrameGeometry,
    config: &SceneConfig,
) -> Result<FrameStart> {
    let k = &frame.intrinsics;
    let FrameGeometry { valid_points, cloud, grouped, fit, resident } = geometry;
    // A backend's grouping that does not fit the frame's objects is its error, not an object without points.
    let image_pixels = k.width as usize * k.height as usize;
    grouped
        .check(frame.objects.len(), image_pixels)
        .map_err(|message| Error::Geometry { frame: frame.spec.key.clone(), message })?;
    let (ground, canonical, _) = ground_info_of(
        valid_points,
        || match cloud {
            Some(c) => std::borrow::Cow::Owned(c.points_in_camera),
            // Only a GPU batch's frame without a ground plane gets here: the CPU reference's cloud, the same points.
            None => std::borrow::Cow::Owned(unproject_depth(depth, k).points_in_camera),
        },
        ransac,
        fit,
        config,
    );
    let width = k.width;
    // The colour image's pixels in row-major order (the pixel indices' order), when it matches the depth.
    let colors: Option<&[[u8; 3]]> = match &frame.color {
        Some(c) if c.width() == k.width && c.height() == k.height => {
            let pixels = k.width as usize * k.height as usize;
            c.as_raw().get(..3 * pixels).and_then(|raw| bytemuck::try_cast_slice(raw).ok())
        }
        _ => None,
    };
    let objects: Vec<ObjectInput> = frame
        .objects
        .iter()
        .enumerate()
        .map(|(i, def)| {
            let in_box_core = match def.kind.is_box() {
                true => box_core_flags(grouped.object_pixels(i), width, def.bbox_px, config.box_core_fraction),
                false => Vec::new(),
            };
            ObjectInput {
                label: def.label.clone(),
                kind: def.kind,
                instance_id: def.instance_id,
                bbox_px: def.bbox_px,
                // (The grouping was checked above.)
                points_in_camera: grouped.object_points_shared(i).unwrap_or_default(),
                in_box_core,
                score: def.score,
                colors: match colors {
                    Some(c) => grouped.object_pixels(i).iter().map(|&p| c[p as usize]).collect(),
                    None => Vec::new(),
                },
            }
        })
        .collect();
    let object_offsets = match resident.on_device() {
        true => grouped.offsets.clone(),
        false => Vec::new(),
    };
    Ok(FrameStart {
        valid_depth_points: valid_points,
        objects,
        ground,
        canonical,
        focal_px: (k.fx + k.fy) / 2.0,
        resident,
        object_offsets,
    })
}

/// The scene graph of a frame from its geometry.
fn scene_graph(frame: &LoadedFrame, valid_depth_points: usize, mut geo: SceneGeometry) -> SceneGraph {
    let spec = &frame.spec;
    // Only a depth file's margins are empty of depth: a model's depth is blanked beyond its range (far rows of sky),
    // where a narrow object may be the only thing with depth.
    let depth_frame_px = match frame.depth_source {
        crate::io::DepthSource::File => frame.depth.as_ref().and_then(crate::geometry::occlusion::depth_frame),
        _ => None,
    };
    if let Some(depth) = &frame.depth {
        let canonical = &geo.canonical;
        geo.objects.par_iter_mut().for_each(|o| {
            o.occlusion = Some(occlusion(depth, &frame.intrinsics, canonical, &ObjectExtent::from(&*o)));
        });
    }
    SceneGraph {
        frame: spec.key.clone(),
        frame_id: spec.id.clone(),
        dataset: spec.dataset.clone(),
        color: spec.color.as_ref().map(|p| p.display().to_string()),
        depth: spec.depth.as_ref().map(|p| p.display().to_string()),
        depth_source: frame.depth_source.clone(),
        intrinsics: frame.intrinsics,
        intrinsics_assumed: frame.intrinsics_assumed,
        image_filter: frame.image_filter.clone(),
        valid_depth_points: valid_depth_points as u32,
        depth_frame_px,
        ground: geo.ground,
        canonical_from_camera: geo.canonical.matrix(),
        objects: geo.objects,
        dropped_objects: geo.dropped,
        relations: geo.relations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_core_flags_follow_each_pixel_centre() {
        // The flags as the formula states them, one division per pixel.
        fn plain(pixels: &[u32], width: u32, [x0, y0, x1, y1]: [f32; 4], fraction: f32) -> Vec<bool> {
            let m = (1.0 - fraction.clamp(0.0, 1.0)) / 2.0;
            let (cx0, cx1) = (x0 + m * (x1 - x0), x1 - m * (x1 - x0));
            let (cy0, cy1) = (y0 + m * (y1 - y0), y1 - m * (y1 - y0));
            pixels
                .iter()
                .map(|&p| {
                    let (u, v) = ((p % width) as f32 + 0.5, (p / width) as f32 + 0.5);
                    u >= cx0 && u < cx1 && v >= cy0 && v < cy1
                })
                .collect()
        }
        let (width, height) = (37u32, 23u32);
        let mut rng = crate::test_rng::XorShift(0x9e37_79b9_7f4a_7c15u64);
        let mut next = |n: u32| rng.below(n);
        for case in 0..200 {
            let (a, b) = (next(width * 4) as f32 / 4.0, next(height * 4) as f32 / 4.0);
            let bbox = [a, b, a + next(width * 4) as f32 / 4.0, b + next(height * 4) as f32 / 4.0];
            let fraction = [0.0, 0.5, 0.6, 1.0, 1.5][case % 5];
            // Row-major runs with gaps (K1's order), then the same pixels shuffled, and a run from pixel 0.
            let mut pixels: Vec<u32> = (0..width * height).filter(|_| next(3) > 0).collect();
            assert_eq!(box_core_flags(&pixels, width, bbox, fraction), plain(&pixels, width, bbox, fraction));
            for i in (1..pixels.len()).rev() {
                pixels.swap(i, next(i as u32 + 1) as usize);
            }
            assert_eq!(box_core_flags(&pixels, width, bbox, fraction), plain(&pixels, width, bbox, fraction));
            let first_row: Vec<u32> = (0..width).collect();
            assert_eq!(box_core_flags(&first_row, width, bbox, fraction), plain(&first_row, width, bbox, fraction));
        }
    }

    #[test]
    fn a_batch_without_grounded_frames_gives_no_scenes() {
        // Every frame of a batch can fail before K3 (or the batch can be empty): K3–K5 then run on nothing.
        let clock = GeometryClock::new();
        assert!(process_frames_timed(&Backend::Cpu, &[], &SceneConfig::default(), &clock).is_empty());
        assert!(scenes_from_ground(&Backend::Cpu, Vec::new(), &SceneConfig::default(), &clock).is_empty());
    }
}
