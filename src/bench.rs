//! The geometry workload of `../shared/bench/WORKLOAD.md` (W1 unproject, W2 plane, W3 DBSCAN), timed per stage
//! and per frame, so the same frames can be timed against the Open3D baseline side by side.
//!
//! - W1: every valid depth pixel to a camera-frame point (decoding the file is not timed, as in the baseline).
//! - W2: depth-image normals, then the ground-plane RANSAC with `hypotheses` hypotheses and a 0.02 m band,
//!   refined; the inlier count is over all points.
//! - W3: exact DBSCAN (eps 0.05 m, min_points 10) over the W1 points that are not W2 inliers.

use std::time::Instant;

use crate::models::{ModelSet, ModelsInfo};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::geometry::dbscan::dbscan;
use crate::geometry::ransac::{fit_ground_plane, inlier_mask, RansacParams};
use crate::geometry::rng::frame_key;
use crate::geometry::unproject::unproject_depth;
use crate::io::{load_frame, FrameSpec};
use crate::pipeline::ground_sample_normals;

/// Workload parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadParams {
    pub ransac: RansacParams,
    /// Reach of the depth-image normal estimate (part of W2: normals make the ground search reject slicing planes).
    pub normal_max_step_px: u32,
    pub dbscan_eps_m: f32,
    pub dbscan_min_points: u32,
    /// Each frame is run this many times; the per-stage figure is the median run.
    pub repeats: usize,
}

impl Default for WorkloadParams {
    fn default() -> Self {
        WorkloadParams {
            ransac: RansacParams { hypotheses: 1000, inlier_threshold_m: 0.02, ..RansacParams::default() },
            normal_max_step_px: 10,
            dbscan_eps_m: 0.05,
            dbscan_min_points: 10,
            repeats: 1,
        }
    }
}

/// One frame's results and stage times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameTiming {
    pub frame: String,
    pub points: usize,
    /// The plane `[a, b, c, d]` (camera frame), `null` when no admissible hypothesis.
    pub plane: Option<[f64; 4]>,
    pub plane_inliers: u32,
    pub ground_found: bool,
    pub dbscan_points: usize,
    pub clusters: u32,
    pub ms_unproject: f64,
    pub ms_ransac: f64,
    pub ms_dbscan: f64,
}

impl FrameTiming {
    pub fn ms_total(&self) -> f64 {
        self.ms_unproject + self.ms_ransac + self.ms_dbscan
    }
}

/// Median of a list (mean of the two middle values for even lengths); 0 for an empty list.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs W1–W3 on one frame (`repeats` times; the median time of each stage is kept).
pub fn run_frame(spec: &FrameSpec, params: &WorkloadParams) -> Result<FrameTiming> {
    let frame = load_frame(spec)?;
    let Some(depth) = frame.depth.as_ref() else {
        return Err(crate::error::Error::InvalidDepth {
            frame: spec.key.clone(),
            path: spec.manifest.clone(),
            message: "the geometry benchmark needs frames with a depth file".into(),
        });
    };
    let k = &frame.intrinsics;
    let key = frame_key(&spec.key);
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    let mut last = None;
    for _ in 0..params.repeats.max(1) {
        let t0 = Instant::now();
        let cloud = unproject_depth(depth, k);
        let t1 = Instant::now();
        let normals = ground_sample_normals(depth, k, &cloud, &params.ransac, params.normal_max_step_px);
        let fit = fit_ground_plane(&cloud.points_in_camera, Some(&normals), key, &params.ransac);
        let t2 = Instant::now();
        let rest: Vec<_> = match &fit {
            Some(f) => {
                let mask = inlier_mask(&cloud.points_in_camera, &f.plane, params.ransac.inlier_threshold_m);
                cloud.points_in_camera.iter().zip(mask).filter(|(_, inl)| !inl).map(|(p, _)| *p).collect()
            }
            None => cloud.points_in_camera.clone(),
        };
        let clustering = dbscan(&rest, params.dbscan_eps_m, params.dbscan_min_points)
            .map_err(|e| crate::error::Error::Geometry { frame: spec.key.clone(), message: e.to_string() })?;
        let t3 = Instant::now();
        times[0].push((t1 - t0).as_secs_f64() * 1e3);
        times[1].push((t2 - t1).as_secs_f64() * 1e3);
        times[2].push((t3 - t2).as_secs_f64() * 1e3);
        last = Some((cloud.len(), fit, rest.len(), clustering.clusters));
    }
    let (points, fit, dbscan_points, clusters) = last.unwrap_or((0, None, 0, 0));
    Ok(FrameTiming {
        frame: spec.key.clone(),
        points,
        plane: fit.map(|f| [f.plane.normal[0], f.plane.normal[1], f.plane.normal[2], f.plane.offset]),
        plane_inliers: fit.map_or(0, |f| f.inliers),
        ground_found: fit.is_some_and(|f| f.accepted),
        dbscan_points,
        clusters,
        ms_unproject: median(&times[0]),
        ms_ransac: median(&times[1]),
        ms_dbscan: median(&times[2]),
    })
}

/// Per-stage figures over many frames.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageSummary {
    pub median_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

impl StageSummary {
    pub fn of(values: &[f64]) -> Self {
        let n = values.len().max(1) as f64;
        StageSummary {
            median_ms: median(values),
            mean_ms: values.iter().sum::<f64>() / n,
            min_ms: if values.is_empty() { 0.0 } else { values.iter().copied().fold(f64::INFINITY, f64::min) },
            max_ms: values.iter().copied().fold(0.0, f64::max),
        }
    }
}

/// The summary line of `spatialsynth bench`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchSummary {
    pub summary: bool,
    pub frames: usize,
    pub failed: usize,
    pub threads: usize,
    pub median_points: f64,
    pub unproject: StageSummary,
    pub ransac: StageSummary,
    pub dbscan: StageSummary,
    pub total: StageSummary,
    /// Mean ms per frame per stage, in the shape the Open3D baseline prints.
    pub ms_per_frame: std::collections::BTreeMap<String, f64>,
    pub ms_per_frame_total: f64,
    pub params: WorkloadParams,
}

/// Summarises frame timings.
pub fn summarize(timings: &[FrameTiming], failed: usize, params: &WorkloadParams) -> BenchSummary {
    let col = |f: fn(&FrameTiming) -> f64| timings.iter().map(f).collect::<Vec<_>>();
    let (u, r, d, t) =
        (col(|t| t.ms_unproject), col(|t| t.ms_ransac), col(|t| t.ms_dbscan), col(FrameTiming::ms_total));
    let pts: Vec<f64> = timings.iter().map(|t| t.points as f64).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let ms_per_frame = [("unproject", mean(&u)), ("ransac", mean(&r)), ("dbscan", mean(&d))]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    BenchSummary {
        summary: true,
        frames: timings.len(),
        failed,
        threads: rayon::current_num_threads(),
        median_points: median(&pts),
        unproject: StageSummary::of(&u),
        ransac: StageSummary::of(&r),
        dbscan: StageSummary::of(&d),
        total: StageSummary::of(&t),
        ms_per_frame,
        ms_per_frame_total: mean(&t),
        params: params.clone(),
    }
}

/// Model timings of one frame (milliseconds; medians over the repeats).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelFrameTiming {
    pub frame: String,
    pub detections: usize,
    /// Decoding the colour file (once).
    pub ms_decode_image: f64,
    /// Detector: letterbox, inference, YOLOX decoding and NMS.
    pub ms_detect: f64,
    /// Segmenter: resize, inference, argmax and mapping back to the frame (0 without a segmenter).
    pub ms_segment: f64,
}

/// Times the detector and segmenter on every frame with a colour image (`repeats` runs, medians kept). Frames that
/// fail are printed to stderr and counted.
pub fn run_model_bench(
    models: &mut ModelSet,
    frames: &[FrameSpec],
    repeats: usize,
    quiet: bool,
) -> Result<(Vec<ModelFrameTiming>, usize)> {
    let mut out = Vec::new();
    let mut failed = 0;
    for spec in frames {
        let Some(color) = &spec.color else { continue };
        let t0 = Instant::now();
        let img = match image::open(color) {
            Ok(i) => i.into_rgb8(),
            Err(e) => {
                eprintln!("failed: frame {}: {}: {e}", spec.key, color.display());
                failed += 1;
                continue;
            }
        };
        let ms_decode_image = t0.elapsed().as_secs_f64() * 1e3;
        let (mut det, mut seg) = (Vec::new(), Vec::new());
        let mut detections = 0;
        for _ in 0..repeats.max(1) {
            let t = Instant::now();
            detections = models.detect(&spec.key, &img)?.len();
            det.push(t.elapsed().as_secs_f64() * 1e3);
            if models.segmenter.is_some() {
                let t = Instant::now();
                models.segment(&spec.key, &img)?;
                seg.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        let timing = ModelFrameTiming {
            frame: spec.key.clone(),
            detections,
            ms_decode_image,
            ms_detect: median(&det),
            ms_segment: median(&seg),
        };
        if !quiet {
            println!("{}", serde_json::to_string(&timing).unwrap_or_default());
        }
        out.push(timing);
    }
    Ok((out, failed))
}

/// Summary of [`run_model_bench`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelBenchSummary {
    pub summary: bool,
    pub frames: usize,
    pub failed: usize,
    pub device: String,
    pub detector: Option<String>,
    pub segmenter: Option<String>,
    pub detect: StageSummary,
    pub segment: StageSummary,
    /// Frames per second from the mean per-frame time (one frame at a time, ONNX Runtime's own threads).
    pub detector_fps: f64,
    pub segmenter_fps: f64,
    pub detector_and_segmenter_fps: f64,
}

pub fn summarize_models(timings: &[ModelFrameTiming], failed: usize, info: &ModelsInfo) -> ModelBenchSummary {
    let d: Vec<f64> = timings.iter().map(|t| t.ms_detect).collect();
    let s: Vec<f64> = timings.iter().map(|t| t.ms_segment).collect();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let fps = |ms: f64| if ms > 0.0 { 1e3 / ms } else { 0.0 };
    ModelBenchSummary {
        summary: true,
        frames: timings.len(),
        failed,
        device: info.device.clone(),
        detector: info.detector.as_ref().map(|c| c.model.name.clone()),
        segmenter: info.segmenter.as_ref().map(|c| c.model.name.clone()),
        detect: StageSummary::of(&d),
        segment: StageSummary::of(&s),
        detector_fps: fps(mean(&d)),
        segmenter_fps: fps(mean(&s)),
        detector_and_segmenter_fps: fps(mean(&d) + mean(&s)),
    }
}

/// Templating throughput on the calling thread (one core): scene graphs to question-answer pairs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QaBenchSummary {
    pub workload: &'static str,
    pub frames: usize,
    pub objects: usize,
    /// Pairs generated per pass over the frames.
    pub pairs: usize,
    pub repeats: usize,
    /// Median seconds per pass, and pairs per second at that median.
    pub median_s: f64,
    pub pairs_per_s: f64,
    pub qa_per_image: usize,
}

/// Times [`crate::qa::generate_frame_into`] over `graphs`, `repeats` passes, on the calling thread.
pub fn run_qa_bench(
    graphs: &[crate::scene::SceneGraph],
    options: &crate::qa::QaOptions,
    repeats: usize,
) -> Result<QaBenchSummary> {
    let bank = crate::qa::TemplateBank::builtin()?;
    let mut out = Vec::new();
    let mut times = Vec::new();
    for _ in 0..repeats.max(1) {
        out.clear();
        let t = Instant::now();
        for g in graphs {
            crate::qa::generate_frame_into(g, bank, options, &mut out);
        }
        times.push(t.elapsed().as_secs_f64());
    }
    let median_s = median(&times);
    Ok(QaBenchSummary {
        workload: "qa/generate/cpu1",
        frames: graphs.len(),
        objects: graphs.iter().map(|g| g.objects.len()).sum(),
        pairs: out.len(),
        repeats: times.len(),
        median_s,
        pairs_per_s: if median_s > 0.0 { out.len() as f64 / median_s } else { 0.0 },
        qa_per_image: options.qa_per_image,
    })
}
