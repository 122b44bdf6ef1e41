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

/// Sizes of the kernel benchmark (`spatialsynth bench --kernels`): the CUDA issue's workloads by default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelBenchOptions {
    /// K1: frames per batch (the sample frames, cycled).
    pub k1_frames: usize,
    /// K2: points scored by every hypothesis (the sample clouds, concatenated and cycled).
    pub k2_points: usize,
    pub k2_hypotheses: u32,
    /// K5: frames per batch and objects per frame (every ordered pair of each frame).
    pub k5_frames: usize,
    pub k5_objects: usize,
    /// End to end: frames through the whole geometry (K1–K5, upload included; decoding not timed).
    pub e2e_frames: usize,
    /// End to end: objects per frame. A frame with fewer annotated objects gets grid boxes (see
    /// [`with_grid_boxes`]) up to this many; one with more keeps all of its own.
    #[serde(default = "default_e2e_objects")]
    pub e2e_objects: usize,
    /// Timed runs per figure; the median is reported.
    pub repeats: usize,
    /// End to end: batches the backend works on at once (0: its default, [`crate::backend::Backend::batches_in_flight`];
    /// the CPU reference always takes one at a time).
    #[serde(default)]
    pub in_flight: usize,
}

impl Default for KernelBenchOptions {
    fn default() -> Self {
        KernelBenchOptions {
            k1_frames: 256,
            k2_points: 1 << 20,
            k2_hypotheses: 1024,
            k5_frames: 4096,
            k5_objects: 40,
            e2e_frames: 512,
            e2e_objects: 10,
            repeats: 5,
            in_flight: 0,
        }
    }
}

fn default_e2e_objects() -> usize {
    10
}

/// Each object region's valid depth points of `frame` (K1 per object on the CPU, before any denoising), one `Vec` per
/// object; `None` without depth. The workloads of the gap and K4 benchmarks and of `examples/gap_work.rs`.
pub fn object_points(frame: &crate::io::LoadedFrame) -> Option<Vec<Vec<crate::geometry::Point3>>> {
    let depth = frame.depth.as_ref()?;
    let regions: Vec<_> = frame.objects.iter().map(|o| o.region.clone()).collect();
    let grouped = crate::geometry::unproject::unproject_objects(
        depth,
        &frame.intrinsics,
        frame.instance_labels.as_deref(),
        &regions,
    );
    Some((0..grouped.objects()).map(|i| grouped.object_points(i).to_vec()).collect())
}

/// `frame` with boxes added until it has `objects` objects (none added when it has that many). The boxes are the
/// cells of a 4 x 3 grid over the image, each shrunk by a tenth of the cell on every side, taken in a fixed order
/// that spreads them (centre row first), labelled `grid box <k>`: real depth regions (surfaces, furniture, floor
/// and wall) that go through every step an annotated box does (ground removal, DBSCAN, statistics, relations), so
/// the benchmark's frames carry the object count the end-to-end target names. More than 12 missing objects
/// reuse the cells (shifted by a quarter cell, so no two boxes are the same).
pub fn with_grid_boxes(frame: &crate::io::LoadedFrame, objects: usize) -> crate::io::LoadedFrame {
    use crate::geometry::unproject::ObjectRegion;
    use crate::io::{objects::ObjectKind, ObjectDef};
    const ORDER: [(u32, u32); 12] =
        [(1, 1), (2, 1), (0, 1), (3, 1), (1, 0), (2, 2), (0, 2), (3, 0), (1, 2), (2, 0), (0, 0), (3, 2)];
    let mut out = frame.clone();
    let (w, h) = (frame.intrinsics.width, frame.intrinsics.height);
    let (cw, ch) = (w / 4, h / 3);
    if cw < 5 || ch < 5 {
        return out;
    }
    let missing = objects.saturating_sub(frame.objects.len());
    for k in 0..missing {
        let (col, row) = ORDER[k % ORDER.len()];
        let shift = (k / ORDER.len()) as u32;
        let dx = (shift * cw / 4) % cw;
        let dy = (shift * ch / 4) % ch;
        let x0 = (col * cw + cw / 10 + dx).min(w - 1);
        let y0 = (row * ch + ch / 10 + dy).min(h - 1);
        let x1 = (x0 + cw - cw / 5).min(w);
        let y1 = (y0 + ch - ch / 5).min(h);
        out.objects.push(ObjectDef {
            label: format!("grid box {k}"),
            kind: ObjectKind::Box,
            instance_id: None,
            bbox_px: [x0 as f32, y0 as f32, x1 as f32, y1 as f32],
            region: ObjectRegion::Box { x0, y0, x1, y1 },
            score: None,
        });
    }
    out
}

/// The f32 operations one K2 point test must do: the plane's distance `a x + b y + c z + d`, three multiplies and
/// three adds, unfused as on the CPU (kernels/ransac.cu's `supports`; the compare and the count aside). K2's share
/// of the device's peak f32 rate counts these. The sm_90 code of `score` takes about 10.6 instructions a test
/// (85 a point and 8 hypotheses, `scripts/kernel-sass.sh OUT ransac.cu score`), and an H100 issues one
/// instruction a lane and clock, as many as it has f32 lanes: a run bound by issue reaches a share of about
/// 6 / 10.6 = 0.57, not 1.
pub const K2_F32_OPS_PER_TEST: f64 = 6.0;

/// One workload's figures, the backend against the CPU reference in the same run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelFigure {
    pub kernel: String,
    pub workload: String,
    /// Median wall time of the backend's call (upload, launches and read-back included).
    pub backend_ms: f64,
    /// Median wall time of the CPU reference on the same input.
    pub cpu_ms: f64,
    /// `cpu_ms / backend_ms`.
    pub speedup_vs_cpu: f64,
    /// Median device time of the kernels alone (CUDA events; CUDA only).
    pub device_ms: Option<f64>,
    /// Work per second of the device time where there is one, else of the wall time, in `unit`.
    pub throughput: f64,
    pub unit: String,
    /// The device time against the hardware's limit (K1 and K5: the fraction of peak memory bandwidth that the bytes
    /// they must move take), CUDA only.
    pub fraction_of_peak_bandwidth: Option<f64>,
    /// K2 on CUDA, whose limit is arithmetic: its f32 operations ([`K2_F32_OPS_PER_TEST`] a point test) over its
    /// device time against the device's peak f32 rate ([`crate::backend::cuda::CudaBackend::peak_f32_ops`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction_of_peak_f32: Option<f64>,
    /// The target, and whether this run meets it (`None` where it does not apply to this backend).
    pub target: String,
    pub meets_target: Option<bool>,
    /// End to end only: where the time went, step by step, on the backend and on the CPU reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<StepBreakdown>,
    /// K1 on CUDA: each of its kernels timed on its own (in runs of their own, an event between each two), so that
    /// a figure short of its target says which kernel is (the tiles' scan moves a small table: a tiny share).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_kernels: Option<Vec<KernelTime>>,
}

/// One kernel of a figure timed on its own (CUDA events).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelTime {
    pub kernel: String,
    /// Median device time (ms).
    pub device_ms: f64,
    /// The bytes one run reads and writes: each of its main buffers once (the small tables and rays left out).
    pub bytes: u64,
    /// `bytes` over `device_ms` against the device's peak bandwidth, where the driver reports one.
    pub fraction_of_peak_bandwidth: Option<f64>,
}

/// The end-to-end figure's time per [`crate::pipeline::GeometryStep`], summed over its batches and repeats (batches
/// that run at once each count their own time, so `busy_s` can exceed the wall time). The host steps are the same
/// code on every backend; on a GPU they are what is left for the CPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepBreakdown {
    pub backend: Vec<crate::pipeline::StepTime>,
    pub cpu: Vec<crate::pipeline::StepTime>,
    /// The process's CPU time (user + system, every thread) a frame while the backend ran the timed end-to-end runs:
    /// on a GPU, what the host's cores supply a frame (host steps, packing, driver calls and any spinning while
    /// the host waits for the device). A host of `c` cores runs at most `1000 c / this` frames a second.
    #[serde(default)]
    pub backend_process_cpu_ms_per_frame: Option<f64>,
    /// The same for the CPU reference's runs.
    #[serde(default)]
    pub cpu_process_cpu_ms_per_frame: Option<f64>,
}

/// The result of `spatialsynth bench --kernels`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelBench {
    pub kernel_bench: bool,
    pub backend: String,
    pub cpu: String,
    /// The device's peak memory bandwidth (GB/s) from the driver, CUDA only.
    pub peak_bandwidth_gb_s: Option<f64>,
    /// The device's peak f32 rate (Tera-operations/s, no fused multiply-add) from the driver's clock and
    /// multiprocessors, CUDA only.
    #[serde(default)]
    pub peak_f32_tops: Option<f64>,
    /// CUDA only: every kernel's registers, spills and block as the driver compiled it for the device.
    #[serde(default)]
    pub cuda_kernels: Option<Vec<crate::backend::KernelResources>>,
    /// CUDA only: the page-locked host memory the backend held at the end and at its peak, its limit
    /// (`--pinned-limit-mib`), and the copies that went through pageable memory instead.
    #[serde(default)]
    pub cuda_pinned_memory: Option<crate::backend::PinnedMemory>,
    pub options: KernelBenchOptions,
    pub figures: Vec<KernelFigure>,
}

fn time_ms<T>(repeats: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        last = Some(f()?);
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    match last {
        Some(v) => Ok((median(&times), v)),
        None => Err(crate::error::Error::Config { message: "no timed run".into() }),
    }
}

/// The process's CPU time so far (user + system, every thread), in seconds; `None` where the system does not say.
#[cfg(unix)]
pub fn process_cpu_s() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage through a valid pointer; read only when it says it did.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let s = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    Some(s(usage.ru_utime) + s(usage.ru_stime))
}

/// The process's CPU time so far: not read on this system.
#[cfg(not(unix))]
pub fn process_cpu_s() -> Option<f64> {
    None
}

/// The process's CPU time since `before` ([`process_cpu_s`]), in ms a frame of `frames`.
fn cpu_ms_per_frame(before: Option<f64>, frames: usize) -> Option<f64> {
    Some((process_cpu_s()? - before?) * 1e3 / frames.max(1) as f64)
}

/// Synthetic object summaries of a K5 batch (`frames` x `objects`), spread over a room.
pub fn bench_objects(frames: usize, objects: usize) -> Vec<Vec<crate::geometry::stats::ObjectSummary>> {
    (0..frames)
        .map(|f| {
            (0..objects)
                .map(|i| {
                    let t = (f * objects + i) as f32;
                    let c = [(t * 0.37).sin() * 4.0, 2.0 + (t * 0.11).cos() * 3.0, (t * 0.05).sin().abs()];
                    let s = [0.3 + 0.01 * (i % 7) as f32, 0.4, 0.5 + 0.01 * (i % 5) as f32];
                    crate::geometry::stats::ObjectSummary {
                        centroid_m: c,
                        sigma_m: 0.02,
                        aabb_min_m: [c[0] - s[0] / 2.0, c[1] - s[1] / 2.0, c[2] - s[2] / 2.0],
                        aabb_max_m: [c[0] + s[0] / 2.0, c[1] + s[1] / 2.0, c[2] + s[2] / 2.0],
                        volume_m3: s[0] * s[1] * s[2],
                        obb_center_m: c,
                        distance_to_camera_m: 3.0,
                        size_m: s,
                        median_depth_m: 3.0,
                        points: 100,
                        ..Default::default()
                    }
                })
                .collect()
        })
        .collect()
}

/// The CUDA issue's kernel workloads on `backend` and on the CPU reference in the same run (ratios are what this
/// reports; absolute GPU figures only mean something from a real GPU, named in `backend`). `frames` are loaded
/// frames with depth (the sample), cycled to the sizes of `options`.
pub fn run_kernel_bench(
    backend: &crate::backend::Backend,
    frames: &[crate::io::LoadedFrame],
    options: &KernelBenchOptions,
) -> Result<KernelBench> {
    if is_emulator(backend) {
        return Err(crate::error::Error::Backend {
            backend: backend.describe(),
            message: "the CUDA emulator of kernels/emu checks correctness only; it gives no figures (run the \
                      benchmark on a GPU)"
                .into(),
        });
    }
    kernel_bench(backend, frames, options)
}

/// [`run_kernel_bench`] on the CPU emulator of the CUDA driver (`kernels/emu`), which `run_kernel_bench` refuses: for
/// the tests only, so that the benchmark's CUDA paths (the device timings of each kernel, the kernels' resources)
/// run before a GPU runs them. Its times are the emulator's, not figures; `Err` on any other backend.
#[doc(hidden)]
pub fn run_kernel_bench_on_emulator(
    backend: &crate::backend::Backend,
    frames: &[crate::io::LoadedFrame],
    options: &KernelBenchOptions,
) -> Result<KernelBench> {
    if !is_emulator(backend) {
        return Err(crate::error::Error::Backend {
            backend: backend.describe(),
            message: "not the CUDA emulator of kernels/emu".into(),
        });
    }
    kernel_bench(backend, frames, options)
}

/// Whether `backend` is the CUDA emulator of `kernels/emu`.
fn is_emulator(backend: &crate::backend::Backend) -> bool {
    match backend {
        #[cfg(feature = "cuda")]
        crate::backend::Backend::Cuda(b) => b.is_emulator(),
        _ => false,
    }
}

fn kernel_bench(
    backend: &crate::backend::Backend,
    frames: &[crate::io::LoadedFrame],
    options: &KernelBenchOptions,
) -> Result<KernelBench> {
    use crate::backend::Backend;
    use crate::geometry::ransac::score_hypotheses;
    let cpu = Backend::Cpu;
    let with_depth: Vec<&crate::io::LoadedFrame> = frames.iter().filter(|f| f.depth.is_some()).collect();
    if with_depth.is_empty() {
        return Err(crate::error::Error::Config { message: "the kernel benchmark needs frames with depth".into() });
    }
    let reps = options.repeats.max(1);
    let in_flight = backend.in_flight(options.in_flight)?;
    #[cfg(feature = "cuda")]
    let backend_error = |message: String| crate::error::Error::Backend { backend: backend.describe(), message };
    let mut figures = Vec::new();
    // The device's resources and peaks, read once (CUDA only; a peak is None where the driver reports no figure for
    // it, as the emulator does): the shares of the figures below are against them.
    #[allow(unused_mut)]
    let (mut cuda_kernels, mut bandwidth, mut f32_ops) = (None, None::<f64>, None::<f64>);
    #[cfg(feature = "cuda")]
    if let Backend::Cuda(b) = backend {
        cuda_kernels = Some(b.kernel_resources().to_vec());
        bandwidth = b.peak_bandwidth().map_err(backend_error)?;
        f32_ops = b.peak_f32_ops().map_err(backend_error)?;
    }
    // `bytes` moved (or operations done) in `ms` against a peak rate.
    #[cfg(feature = "cuda")]
    let share = |peak: Option<f64>, amount: f64, ms: f64| peak.map(|per_s| amount / (ms * 1e-3) / per_s);

    // K1: a batch of depth frames.
    let batch: Vec<(&crate::geometry::unproject::DepthImage, &crate::geometry::Intrinsics)> = (0..options.k1_frames)
        .filter_map(|i| {
            let f = with_depth[i % with_depth.len()];
            f.depth.as_ref().map(|d| (d, &f.intrinsics))
        })
        .collect();
    let pixels: u64 = batch.iter().map(|(d, _)| d.len() as u64).sum();
    let (backend_ms, clouds) = time_ms(reps, || backend.unproject_batch(&batch))?;
    let (cpu_ms, _) = time_ms(reps, || cpu.unproject_batch(&batch))?;
    let points: u64 = clouds.iter().map(|c| c.len() as u64).sum();
    #[allow(unused_mut)]
    let mut k1 = KernelFigure {
        kernel: "K1 unproject".into(),
        workload: format!("{} frames, {pixels} pixels, {points} points", batch.len()),
        backend_ms,
        cpu_ms,
        speedup_vs_cpu: cpu_ms / backend_ms,
        device_ms: None,
        throughput: pixels as f64 / (backend_ms * 1e-3),
        unit: "pixels/s".into(),
        fraction_of_peak_bandwidth: None,
        fraction_of_peak_f32: None,
        target: ">= 70% of peak memory bandwidth (256 frames of 640x480, device time)".into(),
        meets_target: None,
        steps: None,
        device_kernels: None,
    };
    #[cfg(feature = "cuda")]
    if let Backend::Cuda(b) = backend {
        let timed = b.time_unproject(&batch, reps).map_err(backend_error)?;
        let device_ms = median(&timed.times);
        k1.device_ms = Some(device_ms);
        k1.throughput = pixels as f64 / (device_ms * 1e-3);
        // No fraction (and no verdict) where the driver reports no memory clock or bus width (the emulator).
        let fraction = |bytes: u64, ms: f64| share(bandwidth, bytes as f64, ms);
        if let Some(f) = fraction(timed.bytes, device_ms) {
            k1.fraction_of_peak_bandwidth = Some(f);
            // Judged only on the target's batch or a larger one: the bytes count the depth words read twice from
            // memory, which a batch small enough to stay in the device's cache (50 MB on an H100) does not do.
            k1.meets_target = (pixels >= 256 * 640 * 480).then_some(f >= 0.7);
        }
        k1.device_kernels = Some(
            timed
                .kernels
                .into_iter()
                .map(|(kernel, times, bytes)| {
                    let device_ms = median(&times);
                    KernelTime {
                        kernel: kernel.into(),
                        device_ms,
                        bytes,
                        fraction_of_peak_bandwidth: fraction(bytes, device_ms),
                    }
                })
                .collect(),
        );
    }
    figures.push(k1);

    // K2: every hypothesis scored against every point (no subsample).
    let mut cloud: Vec<crate::geometry::Point3> = Vec::with_capacity(options.k2_points);
    let sources: Vec<_> = clouds.iter().take(with_depth.len()).filter(|c| !c.is_empty()).collect();
    while cloud.len() < options.k2_points && !sources.is_empty() {
        for c in &sources {
            let need = options.k2_points - cloud.len();
            cloud.extend(c.points_in_camera.iter().take(need));
        }
    }
    let params = RansacParams { hypotheses: options.k2_hypotheses, score_samples: 0, ..RansacParams::default() };
    let key = 0x5eed;
    let (backend_ms, _) = time_ms(reps, || backend.score_hypotheses(&cloud, None, key, &params))?;
    let (cpu_ms, _) = time_ms(reps, || Ok(score_hypotheses(&cloud, None, key, &params)))?;
    let tests = cloud.len() as f64 * f64::from(params.hypotheses);
    #[allow(unused_mut)]
    let mut k2 = KernelFigure {
        kernel: "K2 RANSAC scoring".into(),
        workload: format!("{} hypotheses x {} points", params.hypotheses, cloud.len()),
        backend_ms,
        cpu_ms,
        speedup_vs_cpu: cpu_ms / backend_ms,
        device_ms: None,
        throughput: tests / (backend_ms * 1e-3),
        unit: "point tests/s".into(),
        fraction_of_peak_bandwidth: None,
        fraction_of_peak_f32: None,
        target: "< 1 ms for 1024 hypotheses x 1M points (device time)".into(),
        meets_target: None,
        steps: None,
        device_kernels: None,
    };
    #[cfg(feature = "cuda")]
    if let Backend::Cuda(b) = backend {
        let device_ms = median(&b.time_score(&cloud, key, &params, reps).map_err(backend_error)?);
        k2.device_ms = Some(device_ms);
        k2.throughput = tests / (device_ms * 1e-3);
        k2.meets_target = Some(device_ms < 1.0);
        k2.fraction_of_peak_f32 = share(f32_ops, tests * K2_F32_OPS_PER_TEST, device_ms);
    }
    figures.push(k2);

    // K5: every ordered pair of every frame of a batch.
    let objects = bench_objects(options.k5_frames, options.k5_objects);
    let refs: Vec<&[crate::geometry::stats::ObjectSummary]> = objects.iter().map(Vec::as_slice).collect();
    let (backend_ms, records) = time_ms(reps, || backend.relate_batch(&refs))?;
    let (cpu_ms, _) = time_ms(reps, || cpu.relate_batch(&refs))?;
    let pairs: usize = records.iter().map(Vec::len).sum();
    #[allow(unused_mut)]
    let mut k5 = KernelFigure {
        kernel: "K5 pairwise relations".into(),
        workload: format!("{} frames x {} objects, {pairs} ordered pairs", options.k5_frames, options.k5_objects),
        backend_ms,
        cpu_ms,
        speedup_vs_cpu: cpu_ms / backend_ms,
        device_ms: None,
        throughput: pairs as f64 / (backend_ms * 1e-3),
        unit: "pairs/s".into(),
        fraction_of_peak_bandwidth: None,
        fraction_of_peak_f32: None,
        target: ">= 1e9 pairs/s (device time)".into(),
        meets_target: None,
        steps: None,
        device_kernels: None,
    };
    #[cfg(feature = "cuda")]
    if let Backend::Cuda(b) = backend {
        let (times, pairs, bytes) = b.time_relate(&refs, reps).map_err(backend_error)?;
        let device_ms = median(&times);
        k5.device_ms = Some(device_ms);
        k5.throughput = pairs as f64 / (device_ms * 1e-3);
        k5.meets_target = Some(k5.throughput >= 1e9);
        // Its limit is the memory's: 80 bytes of record a pair written, plus the summaries and frame ranges read once.
        k5.fraction_of_peak_bandwidth = share(bandwidth, bytes as f64, device_ms);
    }
    figures.push(k5);

    // The closest-surface gaps of every pair of objects of the end-to-end frames (their object regions before
    // denoising; the same point sets repeated, not copied).
    let annotated: f64 = with_depth.iter().map(|f| f.objects.len()).sum::<usize>() as f64 / with_depth.len() as f64;
    let topped: Vec<crate::io::LoadedFrame> =
        with_depth.iter().map(|f| with_grid_boxes(f, options.e2e_objects)).collect();
    let config = crate::pipeline::SceneConfig::default();
    let gaps = {
        let regions: Vec<Vec<Vec<crate::geometry::Point3>>> = topped.iter().filter_map(object_points).collect();
        let region_refs: Vec<Vec<&[crate::geometry::Point3]>> =
            regions.iter().map(|f| f.iter().map(Vec::as_slice).collect()).collect();
        let gap_frames: Vec<&[&[crate::geometry::Point3]]> =
            (0..options.e2e_frames).map(|i| region_refs[i % region_refs.len()].as_slice()).collect();
        let (backend_ms, _) = time_ms(reps, || backend.closest_gaps_batch(&gap_frames, config.gap_voxel_m))?;
        let (cpu_ms, _) = time_ms(reps, || cpu.closest_gaps_batch(&gap_frames, config.gap_voxel_m))?;
        let gap_pairs: usize = gap_frames.iter().map(|f| f.len() * f.len().saturating_sub(1) / 2).sum();
        let gap_points: usize = gap_frames.iter().map(|f| f.iter().map(|o| o.len()).sum::<usize>()).sum();
        #[allow(unused_mut)]
        let mut gaps = KernelFigure {
            kernel: "closest-surface gaps".into(),
            workload: format!(
                "{} frames, {gap_pairs} pairs of objects, {gap_points} points (the end-to-end frames' object regions)",
                gap_frames.len()
            ),
            backend_ms,
            cpu_ms,
            speedup_vs_cpu: cpu_ms / backend_ms,
            device_ms: None,
            throughput: gap_frames.len() as f64 / (backend_ms * 1e-3),
            unit: "frames/s".into(),
            fraction_of_peak_bandwidth: None,
            fraction_of_peak_f32: None,
            target: "none of its own (part of the end-to-end figure)".into(),
            meets_target: None,
            steps: None,
            device_kernels: None,
        };
        #[cfg(feature = "cuda")]
        if let Backend::Cuda(b) = backend {
            let (times, _) = b.time_gaps(&gap_frames, reps).map_err(backend_error)?;
            let device_ms = median(&times);
            gaps.device_ms = Some(device_ms);
            gaps.throughput = gap_frames.len() as f64 / (device_ms * 1e-3);
        }
        gaps
    };
    figures.push(gaps);

    // End to end: the scene geometry of whole frames, all threads, as a run does it.
    let e2e: Vec<&crate::io::LoadedFrame> = (0..options.e2e_frames).map(|i| &topped[i % topped.len()]).collect();
    let objects_per_frame = e2e.iter().map(|f| f.objects.len()).sum::<usize>() as f64 / e2e.len().max(1) as f64;
    // A run names each object's colour where the colour image was decoded (unless --no-colors): so does this.
    let with_color = e2e.iter().filter(|f| f.color.is_some()).count();
    // In batches as a run processes them (each kernel once per batch, as many batches at once as a run gives the
    // backend).
    let batch = 4 * rayon::current_num_threads().max(1);
    let run_all = |b: &Backend, in_flight: usize, clock: &crate::pipeline::GeometryClock| -> Result<usize> {
        let (mut n, mut failed) = (0, None);
        let ok = crate::run::ordered::ordered_map(
            e2e.chunks(batch),
            in_flight,
            |frames| crate::pipeline::process_frames_timed(b, frames, &config, clock),
            |graphs| {
                for graph in graphs {
                    match graph {
                        Ok(_) => n += 1,
                        Err(e) => {
                            failed = Some(e);
                            return false;
                        }
                    }
                }
                true
            },
        );
        match failed {
            Some(e) => Err(e),
            None if !ok => Err(crate::error::Error::Geometry {
                frame: "-".into(),
                message: "a batch of the end-to-end benchmark panicked (a bug: please report it)".into(),
            }),
            None => Ok(n),
        }
    };
    let (backend_clock, cpu_clock) = (crate::pipeline::GeometryClock::new(), crate::pipeline::GeometryClock::new());
    let before = process_cpu_s();
    let (backend_ms, n) = time_ms(reps, || run_all(backend, in_flight, &backend_clock))?;
    let backend_cpu = cpu_ms_per_frame(before, n * reps);
    let before = process_cpu_s();
    let (cpu_ms, _) = time_ms(reps, || run_all(&cpu, cpu.batches_in_flight(), &cpu_clock))?;
    let cpu_cpu = cpu_ms_per_frame(before, n * reps);
    let fps = n as f64 / (backend_ms * 1e-3);
    figures.push(KernelFigure {
        kernel: "K1-K5 end to end".into(),
        workload: format!(
            "{n} frames of {}x{}, {objects_per_frame:.1} objects per frame ({annotated:.1} annotated, the rest grid \
             boxes), object colours named on {with_color} of {} frames, {} threads, batches of {batch} frames, {} at \
             once (the CPU reference: 1)",
            e2e[0].intrinsics.width,
            e2e[0].intrinsics.height,
            e2e.len(),
            rayon::current_num_threads(),
            in_flight
        ),
        backend_ms,
        cpu_ms,
        speedup_vs_cpu: cpu_ms / backend_ms,
        device_ms: None,
        throughput: fps,
        unit: "frames/s".into(),
        fraction_of_peak_bandwidth: None,
        fraction_of_peak_f32: None,
        target: ">= 2000 frames/s of 640x480 with 10 objects (upload included)".into(),
        // Judged only on CUDA with at least 10 objects per frame, the workload the target names.
        meets_target: (backend.kind() == crate::backend::BackendKind::Cuda && objects_per_frame >= 10.0)
            .then_some(fps >= 2000.0),
        steps: Some(StepBreakdown {
            backend: backend_clock.report(),
            cpu: cpu_clock.report(),
            backend_process_cpu_ms_per_frame: backend_cpu,
            cpu_process_cpu_ms_per_frame: cpu_cpu,
        }),
        device_kernels: None,
    });
    Ok(KernelBench {
        kernel_bench: true,
        backend: backend.describe(),
        cpu: cpu.describe(),
        peak_bandwidth_gb_s: bandwidth.map(|bytes_per_s| bytes_per_s / 1e9),
        peak_f32_tops: f32_ops.map(|ops_per_s| ops_per_s / 1e12),
        cuda_kernels,
        cuda_pinned_memory: backend.pinned_memory(),
        options: options.clone(),
        figures,
    })
}
