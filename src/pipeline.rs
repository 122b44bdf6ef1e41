//! From a loaded frame (or any camera-frame point cloud with objects) to a scene graph: K1 → K5 on the CPU.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backend::Backend;
use crate::color::dominant_color;
use crate::error::{Error, Result};
use crate::geometry::canonical::{CanonicalFrame, GroundSource};
use crate::geometry::outlier::{statistical_outlier_mask, OutlierParams};
use crate::geometry::ransac::{fit_ground_plane, score_sample_indices, PlaneFit, RansacParams};
use crate::geometry::relations::{closest_surface_matrix, relate_all};
use crate::geometry::rng::frame_key;
use crate::geometry::stats::{NoiseModel, ObjectSummary, StatsInput};
use crate::geometry::unproject::{estimate_normals, unproject_depth, unproject_objects, DepthImage, PointCloud};
use crate::geometry::{dot, normalize, Intrinsics, Point3};
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
    /// Box objects: drop points within the ground inlier band before clustering (boxes contain floor).
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

/// An object given as points in the camera frame (the output of K1 for one region).
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectInput {
    pub label: String,
    pub kind: crate::io::objects::ObjectKind,
    pub instance_id: Option<u32>,
    pub bbox_px: [f32; 4],
    pub points_in_camera: Vec<Point3>,
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
    let n = points.len().max(1) as f64;
    let accepted = fit.filter(|f| f.accepted);
    let up_prior = [f64::from(ransac.up_prior[0]), f64::from(ransac.up_prior[1]), f64::from(ransac.up_prior[2])];
    // The last fallback is only reachable with a zero up prior, which `SceneConfig::validate` (called by
    // `scene_from_points` and `run_scenes`) rejects.
    let canonical = accepted
        .and_then(|f| CanonicalFrame::from_ground_plane(&f.plane, GroundSource::Ransac))
        .or_else(|| CanonicalFrame::from_gravity_prior(up_prior, points, config.fallback_ground_quantile))
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

/// K3 for one object: the indices of the kept points (into `obj.points_in_camera`) and the DBSCAN radius, or why
/// the object is dropped.
fn denoise_object(
    backend: &Backend,
    obj: &ObjectInput,
    canonical: &CanonicalFrame,
    ground_found: bool,
    focal_px: f64,
    config: &SceneConfig,
) -> Result<std::result::Result<(Vec<usize>, f32), String>, String> {
    let band = config.ransac.inlier_threshold_m;
    let mut drop_ground = obj.kind.may_include_ground() && ground_found && config.remove_ground_from_boxes;
    if drop_ground && obj.kind == ObjectKind::DetectedMask && !obj.points_in_camera.is_empty() {
        let in_band = obj.points_in_camera.iter().filter(|p| canonical.apply_f32(**p)[2] <= band).count();
        if in_band as f32 > config.surface_object_fraction * obj.points_in_camera.len() as f32 {
            drop_ground = false;
        }
    }
    let keep: Vec<usize> = (0..obj.points_in_camera.len())
        .filter(|&i| !drop_ground || canonical.apply_f32(obj.points_in_camera[i])[2] > band)
        .collect();
    if keep.is_empty() {
        let why = if obj.points_in_camera.is_empty() {
            "no valid depth in its region"
        } else {
            "only ground points in its box"
        };
        return Ok(Err(why.into()));
    }
    let pts: Vec<Point3> = keep.iter().map(|&i| obj.points_in_camera[i]).collect();
    let mut depths: Vec<f32> = pts.iter().map(|p| p[2]).collect();
    let mid = depths.len() / 2;
    let median_depth = *depths.select_nth_unstable_by(mid, f32::total_cmp).1;
    let eps = config.object_eps_m.max((f64::from(config.object_eps_px) * f64::from(median_depth) / focal_px) as f32);
    let clustering = backend.dbscan(&pts, eps, config.object_min_points)?;
    let chosen = if obj.kind.is_box() && !obj.in_box_core.is_empty() {
        let sizes = clustering.sizes();
        let mut core = vec![0u32; clustering.clusters as usize];
        for (j, &l) in clustering.labels.iter().enumerate() {
            if l >= 0 && obj.in_box_core[keep[j]] {
                core[l as usize] += 1;
            }
        }
        (0..clustering.clusters as usize).max_by_key(|&c| (core[c], sizes[c], std::cmp::Reverse(c))).map(|c| c as u32)
    } else {
        clustering.largest()
    };
    let Some(chosen) = chosen else {
        return Ok(Err(format!("no DBSCAN cluster of {} points within {eps:.3} m", config.object_min_points)));
    };
    let mut kept: Vec<usize> =
        keep.iter().zip(&clustering.labels).filter(|(_, &l)| l == chosen as i32).map(|(&i, _)| i).collect();
    if let Some(sor) = &config.outlier_removal {
        let points: Vec<Point3> = kept.iter().map(|&i| obj.points_in_camera[i]).collect();
        let mask = statistical_outlier_mask(&points, sor);
        kept = kept.into_iter().zip(mask).filter(|(_, k)| *k).map(|(i, _)| i).collect();
    }
    if (kept.len() as u32) < config.min_object_points {
        return Ok(Err(format!(
            "{} points after denoising, fewer than min_object_points {}",
            kept.len(),
            config.min_object_points
        )));
    }
    Ok(Ok((kept, eps)))
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
    scene_from_ground(backend, frame, ground, canonical, objects, focal_px, config)
}

/// K3–K5 once the ground and the canonical frame are known.
fn scene_from_ground(
    backend: &Backend,
    frame: &str,
    ground: GroundInfo,
    canonical: CanonicalFrame,
    objects: &[ObjectInput],
    focal_px: f64,
    config: &SceneConfig,
) -> Result<SceneGeometry> {
    let denoised: Vec<_> = objects
        .par_iter()
        .map(|o| denoise_object(backend, o, &canonical, ground.found, focal_px, config))
        .collect::<std::result::Result<_, _>>()
        .map_err(|message| Error::Geometry { frame: frame.to_string(), message })?;

    let camera_position = canonical.camera_position();
    let mut scene_objects = Vec::new();
    let mut summaries = Vec::new();
    let mut dropped = Vec::new();
    // The kept points of each object that survived K3: (annotation index, kept indices, eps, camera, canonical).
    let mut survivors = Vec::new();
    for (index, (obj, result)) in objects.iter().zip(denoised).enumerate() {
        match result {
            Ok((kept_indices, eps)) => {
                let kept: Vec<Point3> = kept_indices.iter().map(|&i| obj.points_in_camera[i]).collect();
                let pts_c: Vec<Point3> = kept.iter().map(|p| canonical.apply_f32(*p)).collect();
                survivors.push((index, kept_indices, eps, kept, pts_c));
            }
            Err(reason) => dropped.push(DroppedObject {
                annotation_index: index as u32,
                label: obj.label.clone(),
                points_in_region: obj.points_in_camera.len() as u32,
                reason,
            }),
        }
    }
    // K4 for all of them in one batch.
    let inputs: Vec<StatsInput> = survivors
        .iter()
        .map(|(_, _, _, kept, pts_c)| StatsInput { canonical: pts_c, camera: kept, camera_position })
        .collect();
    let stats = backend.summarize_batch(&inputs, &config.noise)?;
    let mut canonical_points: Vec<&[Point3]> = Vec::new();
    for ((index, kept_indices, eps, _, pts_c), s) in survivors.iter().zip(stats) {
        let obj = &objects[*index];
        let Some(s) = s else { continue };
        let color = match obj.colors.len() == obj.points_in_camera.len() {
            true => dominant_color(kept_indices.iter().map(|&i| obj.colors[i])),
            false => None,
        };
        scene_objects.push(SceneObject {
            object_id: scene_objects.len() as u32,
            annotation_index: *index as u32,
            label: obj.label.clone(),
            kind: obj.kind,
            instance_id: obj.instance_id,
            score: obj.score,
            bbox_px: obj.bbox_px,
            points_in_region: obj.points_in_camera.len() as u32,
            points: s.points,
            dbscan_eps_m: *eps,
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
        });
        summaries.push(s);
        canonical_points.push(pts_c);
    }
    let refs = canonical_points;
    let gaps = closest_surface_matrix(&refs, config.gap_voxel_m);
    let n = summaries.len();
    let records = match backend {
        Backend::Cpu => relate_all(&summaries, |i, j| gaps[i * n + j]),
        #[cfg(any(feature = "wgpu", feature = "cuda"))]
        _ => {
            let mut records = backend.relate_batch(&[&summaries])?.pop().unwrap_or_default();
            for r in &mut records {
                let (i, j) = (r.a.min(r.b) as usize, r.a.max(r.b) as usize);
                r.gap_m = gaps[i * n + j];
            }
            records
        }
    };
    let relations = records.iter().map(SceneRelation::from).collect();
    Ok(SceneGeometry { ground, canonical, objects: scene_objects, summaries, dropped, relations })
}

/// The full CPU pipeline for one loaded frame: K1 (whole frame and per object), then [`scene_from_points`].
pub fn process_frame(frame: &LoadedFrame, config: &SceneConfig) -> Result<SceneGraph> {
    process_frame_on(&Backend::Cpu, frame, config)
}

/// [`process_frame`] with K1–K5 on `backend`.
pub fn process_frame_on(backend: &Backend, frame: &LoadedFrame, config: &SceneConfig) -> Result<SceneGraph> {
    let spec = &frame.spec;
    let k = &frame.intrinsics;
    let Some(depth) = &frame.depth else {
        return Err(Error::InvalidDepth {
            frame: spec.key.clone(),
            path: spec.color.clone().unwrap_or_else(|| spec.manifest.clone()),
            message: "the frame has no depth file and no depth model made one (give --depth-model)".into(),
        });
    };
    let regions: Vec<_> = frame.objects.iter().map(|o| o.region.clone()).collect();
    let labels = frame.instance_labels.as_deref();
    let normals_of =
        |cloud: &PointCloud| ground_sample_normals(depth, k, cloud, &config.ransac, config.normal_max_step_px);
    // On a GPU, K1 and K2 share the frame's cloud on the device; the ground comes back with it.
    config.validate().map_err(|message| Error::Config { message })?;
    let ransac = ransac_with_up(config, spec.up_in_camera);
    let device = backend.frame_geometry(depth, k, labels, &regions, frame_key(&spec.key), &ransac, &normals_of)?;
    let (cloud, grouped, device_ground) = match device {
        None => (unproject_depth(depth, k), unproject_objects(depth, k, labels, &regions), None),
        Some((cloud, grouped, fit)) => {
            let (ground, canonical, _) = ground_info(&cloud.points_in_camera, &ransac, fit, config);
            (cloud, grouped, Some((ground, canonical)))
        }
    };
    let width = k.width;
    let objects: Vec<ObjectInput> = frame
        .objects
        .iter()
        .enumerate()
        .map(|(i, def)| {
            let in_box_core = match def.kind.is_box() {
                true => {
                    let [x0, y0, x1, y1] = def.bbox_px;
                    let m = (1.0 - config.box_core_fraction.clamp(0.0, 1.0)) / 2.0;
                    let (cx0, cx1) = (x0 + m * (x1 - x0), x1 - m * (x1 - x0));
                    let (cy0, cy1) = (y0 + m * (y1 - y0), y1 - m * (y1 - y0));
                    grouped
                        .object_pixels(i)
                        .iter()
                        .map(|&p| {
                            let (u, v) = ((p % width) as f32 + 0.5, (p / width) as f32 + 0.5);
                            u >= cx0 && u < cx1 && v >= cy0 && v < cy1
                        })
                        .collect()
                }
                false => Vec::new(),
            };
            ObjectInput {
                label: def.label.clone(),
                kind: def.kind,
                instance_id: def.instance_id,
                bbox_px: def.bbox_px,
                points_in_camera: grouped.object_points(i).to_vec(),
                in_box_core,
                score: def.score,
                colors: match &frame.color {
                    Some(c) if c.width() == k.width && c.height() == k.height => {
                        grouped.object_pixels(i).iter().map(|&p| c.get_pixel(p % width, p / width).0).collect()
                    }
                    _ => Vec::new(),
                },
            }
        })
        .collect();
    let focal = (k.fx + k.fy) / 2.0;
    let geo = match device_ground {
        Some((ground, canonical)) => scene_from_ground(backend, &spec.key, ground, canonical, &objects, focal, config)?,
        None => scene_from_points_on(
            backend,
            &spec.key,
            &cloud.points_in_camera,
            Some(&normals_of(&cloud)),
            &objects,
            focal,
            spec.up_in_camera,
            config,
        )?,
    };
    Ok(SceneGraph {
        frame: spec.key.clone(),
        frame_id: spec.id.clone(),
        dataset: spec.dataset.clone(),
        color: spec.color.as_ref().map(|p| p.display().to_string()),
        depth: spec.depth.as_ref().map(|p| p.display().to_string()),
        depth_source: frame.depth_source.clone(),
        intrinsics: *k,
        intrinsics_assumed: frame.intrinsics_assumed,
        image_filter: frame.image_filter.clone(),
        valid_depth_points: cloud.len() as u32,
        ground: geo.ground,
        canonical_from_camera: geo.canonical.matrix(),
        objects: geo.objects,
        dropped_objects: geo.dropped,
        relations: geo.relations,
    })
}
