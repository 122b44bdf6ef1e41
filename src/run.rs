//! Runs of many frames: collect frames from manifests, process them in parallel batches, write the scene graphs
//! in input order, record failures and carry on.
//!
//! Outputs in the output folder, each written to a temporary file and renamed into place only when complete:
//! - `scene_graphs.jsonl`: one [`SceneGraph`](crate::scene::SceneGraph) per successful frame, in input order;
//! - `failures.jsonl`: one [`FailureRecord`] per failed frame or manifest (empty when none failed);
//! - `filtered.jsonl` (runs with an image filter): the frames it rejected, with the prompt that won;
//! - `run.json`: counts, timings and every parameter used.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendKind};
use crate::error::{Error, Result};
use crate::io::{find_manifests, load_frame_with, read_manifest, FrameSpec, LoadOptions, LoadedFrame};
use crate::models::{FilterDecision, ModelOptions, ModelSet, ModelTimes, ModelsInfo, ObjectsMode};
use crate::pipeline::{process_frame_on, SceneConfig};

/// A frame or manifest that failed, as written to `failures.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    /// The frame (`dataset/id`), or `-` for a manifest-level failure.
    pub frame: String,
    /// Stable kind, e.g. `missing_file`, `corrupt_image`, `image_format`, `invalid_depth`, `malformed_manifest`.
    pub kind: String,
    /// The file at fault.
    pub file: Option<String>,
    pub manifest: Option<String>,
    pub line: Option<usize>,
    pub message: String,
}

impl FailureRecord {
    pub fn new(err: &Error, spec: Option<&FrameSpec>) -> Self {
        let line = match err {
            Error::Manifest { line, .. } => *line,
            _ => spec.and_then(|s| s.line),
        };
        FailureRecord {
            frame: spec.map_or_else(|| err.frame().to_string(), |s| s.key.clone()),
            kind: err.kind().to_string(),
            file: err.path().map(|p| p.display().to_string()),
            manifest: spec.map(|s| s.manifest.display().to_string()),
            line,
            message: err.to_string(),
        }
    }
}

/// Collects the frames of every input (manifest file or folder), in order. Per-frame and per-manifest parse
/// errors come back as failures; the other frames are still returned.
pub fn collect_frames(inputs: &[PathBuf]) -> (Vec<FrameSpec>, Vec<FailureRecord>) {
    let mut frames = Vec::new();
    let mut failures = Vec::new();
    for input in inputs {
        let manifests = match find_manifests(input) {
            Ok(m) if m.is_empty() => {
                failures.push(FailureRecord {
                    frame: "-".into(),
                    kind: "malformed_manifest".into(),
                    file: Some(input.display().to_string()),
                    manifest: None,
                    line: None,
                    message: format!("{}: no frames.json or *.jsonl manifest found", input.display()),
                });
                continue;
            }
            Ok(m) => m,
            Err(e) => {
                failures.push(FailureRecord::new(&e, None));
                continue;
            }
        };
        for m in manifests {
            match read_manifest(&m) {
                Ok(entries) => {
                    for entry in entries {
                        match entry {
                            Ok(spec) => frames.push(spec),
                            Err(e) => failures.push(FailureRecord::new(&e, None)),
                        }
                    }
                }
                Err(e) => failures.push(FailureRecord::new(&e, None)),
            }
        }
    }
    // Frame names must be unique: they name outputs and seed random draws.
    let mut seen = std::collections::HashSet::new();
    let mut unique = Vec::with_capacity(frames.len());
    for f in frames {
        if seen.insert(f.key.clone()) {
            unique.push(f);
        } else {
            failures.push(FailureRecord {
                frame: f.key.clone(),
                kind: "malformed_manifest".into(),
                file: Some(f.manifest.display().to_string()),
                manifest: Some(f.manifest.display().to_string()),
                line: f.line,
                message: format!("duplicate frame {} (dataset/id must be unique in a run)", f.key),
            });
        }
    }
    (unique, failures)
}

/// A file written under a temporary name in its final folder and renamed over the final name on `commit`;
/// dropped without commit, it leaves nothing behind.
pub struct AtomicFile {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
    writer: Option<std::io::BufWriter<std::fs::File>>,
}

impl AtomicFile {
    pub fn create(path: &Path) -> Result<Self> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let out = |source| Error::Output { path: path.to_path_buf(), source };
        let tmp = tempfile::Builder::new().prefix(".partial-").tempfile_in(dir).map_err(out)?;
        let file = tmp.reopen().map_err(out)?;
        Ok(AtomicFile { path: path.to_path_buf(), tmp, writer: Some(std::io::BufWriter::new(file)) })
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let path = &self.path;
        match self.writer.as_mut() {
            Some(w) => w.write_all(bytes).map_err(|source| Error::Output { path: path.clone(), source }),
            None => Ok(()),
        }
    }

    pub fn commit(mut self) -> Result<PathBuf> {
        let out = |source| Error::Output { path: self.path.clone(), source };
        if let Some(w) = self.writer.take() {
            let file = w.into_inner().map_err(|e| out(e.into_error()))?;
            file.sync_all().map_err(out)?;
        }
        self.tmp.persist(&self.path).map_err(|e| Error::Output { path: self.path.clone(), source: e.error })?;
        Ok(self.path)
    }
}

impl std::io::Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.writer.as_mut() {
            Some(w) => w.write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.writer.as_mut() {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

struct FrameCounts {
    objects: usize,
    dropped: usize,
    relations: usize,
    ground_found: bool,
}

/// What became of a frame that did not fail.
enum Outcome {
    /// Its scene graph, serialised as one JSON line.
    Scene(FrameCounts, Vec<u8>),
    /// The image filter rejected it.
    Filtered(FilterDecision),
}

/// Options of a scene run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    /// Frames decoded and processed together (in parallel); also bounds memory.
    pub batch_frames: usize,
    pub config: SceneConfig,
    /// Where objects come from: annotations, the detector, or each where available (`auto`).
    pub objects: ObjectsMode,
    /// The models, used when a frame needs them (no objects under `auto`, `detect`, no depth file) or when a depth
    /// model or image filter is configured.
    pub models: ModelOptions,
    /// Open (and check) every configured model even when no frame needs one, e.g. because the user named it.
    pub open_models_always: bool,
    /// Horizontal field of view assumed for frames without intrinsics.
    pub default_hfov_deg: f64,
    /// Decode every frame's colour image and name each object's dominant colour (`SceneObject::color`), which
    /// question templates use to tell objects of one class apart.
    pub object_colors: bool,
    /// Where the geometry kernels run (see [`crate::backend`]).
    #[serde(default = "default_backend")]
    pub backend: BackendKind,
}

fn default_backend() -> BackendKind {
    BackendKind::Cpu
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            batch_frames: 16,
            config: SceneConfig::default(),
            objects: ObjectsMode::Auto,
            models: ModelOptions::default(),
            open_models_always: false,
            default_hfov_deg: 60.0,
            object_colors: true,
            backend: BackendKind::Cpu,
        }
    }
}

/// Busy seconds of each stage of the run's pipeline. The stages overlap (decode of batch n+1, models on batch n,
/// geometry of batch n−1), so the sum exceeds the wall time when the overlap works.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageTimes {
    /// Reading and decoding depth, colour and annotations.
    pub load_s: f64,
    #[serde(flatten)]
    pub models: ModelTimes,
    /// K1–K5 and serialising the scene graphs.
    pub geometry_s: f64,
    /// Writing the output in order.
    pub write_s: f64,
}

/// What a run did, as written to `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub frames: usize,
    pub frames_ok: usize,
    pub frames_failed: usize,
    /// Frames the image filter rejected (listed in `filtered.jsonl`, written when a filter ran).
    pub frames_filtered: usize,
    /// Failures that are not tied to one frame (unreadable manifests).
    pub other_failures: usize,
    pub objects: usize,
    pub dropped_objects: usize,
    pub relations: usize,
    pub ground_found: usize,
    pub seconds: f64,
    pub stages: StageTimes,
    pub threads: usize,
    pub scene_graphs: PathBuf,
    pub failures: PathBuf,
    pub filtered: Option<PathBuf>,
    /// The models used (`null` when none was needed).
    pub models: Option<ModelsInfo>,
    /// The geometry backend that ran, with its adapter (e.g. `wgpu: llvmpipe (...) (Vulkan, Cpu)`).
    pub backend: String,
    pub options: RunOptions,
}

impl RunSummary {
    /// True when every frame and manifest was processed.
    pub fn all_ok(&self) -> bool {
        self.frames_failed == 0 && self.other_failures == 0
    }
}

/// Whether the frames of a run need the models under `options`.
pub fn needs_models(frames: &[FrameSpec], options: &RunOptions) -> bool {
    let m = &options.models;
    let detect = frames.iter().any(|f| options.objects.detects(f.has_annotations()));
    options.open_models_always || (detect && m.detector.is_some()) || m.depth.is_some() || m.filter.is_some()
}

fn serialize_line<T: Serialize>(value: &T, frame: &str) -> Result<Vec<u8>> {
    let mut line = serde_json::to_vec(value).map_err(|e| Error::Geometry {
        frame: frame.to_string(),
        message: format!("cannot serialise the output: {e}"),
    })?;
    line.push(b'\n');
    Ok(line)
}

type Batch<T> = (usize, Vec<Result<T>>);

/// Processes every frame of `inputs` into `out_dir`. `progress(done, total)` is called after each batch.
///
/// The models (see [`needs_models`]) are opened and checked before any frame is processed: a bad card or model
/// file, or a missing ONNX Runtime, is an error here. Then a bounded pipeline runs: one thread decodes batch
/// n+1 while another runs the models on batch n and a third computes the geometry of batch n−1 (both decoding and
/// geometry parallel over the batch's frames); the calling thread writes results in input order. At most one
/// batch waits between stages, so memory stays bounded and the slowest stage sets the pace.
pub fn run_scenes(
    inputs: &[PathBuf],
    out_dir: &Path,
    options: &RunOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<RunSummary> {
    let start = Instant::now();
    options.config.validate().map_err(|message| Error::Config { message })?;
    if !(options.default_hfov_deg.is_finite() && options.default_hfov_deg > 1.0 && options.default_hfov_deg < 179.0) {
        return Err(Error::Config {
            message: format!("default_hfov_deg {} must be within (1, 179)", options.default_hfov_deg),
        });
    }
    let backend = Backend::open(options.backend)?;
    let (frames, mut failures) = collect_frames(inputs);
    let other_failures = failures.len();
    let mut models = if needs_models(&frames, options) { Some(ModelSet::open(&options.models)?) } else { None };
    let models_info = models.as_ref().map(|m| m.info());
    // Decode colour only for frames a model will look at.
    let filter_on = models.as_ref().is_some_and(|m| m.filter.is_some());
    let detect_on = models.as_ref().is_some_and(|m| m.detector.is_some());
    let depth_on = models.as_ref().is_some_and(|m| m.depth.is_some());
    let mode = options.objects;
    let object_colors = options.object_colors;
    let needs_color = move |spec: &FrameSpec| {
        object_colors
            || filter_on
            || (detect_on && mode.detects(spec.has_annotations()))
            || (depth_on && spec.depth.is_none())
    };
    let hfov = options.default_hfov_deg;

    std::fs::create_dir_all(out_dir).map_err(|source| Error::Output { path: out_dir.to_path_buf(), source })?;
    let scene_path = out_dir.join("scene_graphs.jsonl");
    let failures_path = out_dir.join("failures.jsonl");
    let filtered_path = out_dir.join("filtered.jsonl");
    let mut scenes = AtomicFile::create(&scene_path)?;
    // Only runs with an image filter list rejected frames.
    let mut filtered = match models.as_ref().is_some_and(|m| m.filter.is_some()) {
        true => Some(AtomicFile::create(&filtered_path)?),
        false => None,
    };
    let (mut ok, mut objects, mut dropped, mut relations, mut ground, mut n_filtered) = (0, 0, 0, 0, 0, 0);
    let batch = options.batch_frames.max(1);
    let config = &options.config;
    let backend_ref = &backend;
    let mut stages = StageTimes::default();
    progress(0, frames.len());

    let (tx_loaded, rx_loaded) = sync_channel::<Batch<LoadedFrame>>(1);
    let (tx_ready, rx_ready) = sync_channel::<Batch<LoadedFrame>>(1);
    let (tx_done, rx_done) = sync_channel::<Batch<Outcome>>(1);
    let frames_ref = &frames;
    let write_result: Result<()> = std::thread::scope(|s| {
        let loader = s.spawn(move || {
            let mut busy = 0.0;
            for (b, chunk) in frames_ref.chunks(batch).enumerate() {
                let t = Instant::now();
                let loaded: Vec<Result<LoadedFrame>> = chunk
                    .par_iter()
                    .map(|spec| {
                        let load = LoadOptions { decode_color: needs_color(spec), default_hfov_deg: hfov };
                        load_frame_with(spec, &load)
                    })
                    .collect();
                busy += t.elapsed().as_secs_f64();
                if tx_loaded.send((b, loaded)).is_err() {
                    break;
                }
            }
            busy
        });
        let runner = s.spawn(move || {
            let mut times = ModelTimes::default();
            for (b, mut batch) in rx_loaded {
                if let Some(m) = models.as_mut() {
                    m.process_batch(&mut batch, mode, &mut times);
                }
                // The pixels are not needed past the models, unless objects are to be named by colour.
                if !object_colors {
                    for f in batch.iter_mut().flatten() {
                        f.color = None;
                    }
                }
                if tx_ready.send((b, batch)).is_err() {
                    break;
                }
            }
            times
        });
        let geometry = s.spawn(move || {
            let mut busy = 0.0;
            for (b, batch) in rx_ready {
                let t = Instant::now();
                let out: Vec<Result<Outcome>> = batch
                    .into_par_iter()
                    .map(|loaded| {
                        let frame = loaded?;
                        if let Some(d) = frame.image_filter.as_ref().filter(|d| !d.kept) {
                            return Ok(Outcome::Filtered(d.clone()));
                        }
                        let graph = process_frame_on(backend_ref, &frame, config)?;
                        let line = serialize_line(&graph, &graph.frame)?;
                        let counts = FrameCounts {
                            objects: graph.objects.len(),
                            dropped: graph.dropped_objects.len(),
                            relations: graph.relations.len(),
                            ground_found: graph.ground.found,
                        };
                        Ok(Outcome::Scene(counts, line))
                    })
                    .collect();
                busy += t.elapsed().as_secs_f64();
                if tx_done.send((b, out)).is_err() {
                    break;
                }
            }
            busy
        });
        let mut result = Ok(());
        let mut written = 0usize;
        for (b, results) in rx_done {
            let t = Instant::now();
            let chunk = &frames_ref[b * batch..((b + 1) * batch).min(frames_ref.len())];
            written += chunk.len();
            for (spec, r) in chunk.iter().zip(results) {
                match r {
                    Ok(Outcome::Scene(c, line)) => {
                        if let Err(e) = scenes.write_all(&line) {
                            result = Err(e);
                            break;
                        }
                        ok += 1;
                        objects += c.objects;
                        dropped += c.dropped;
                        relations += c.relations;
                        ground += usize::from(c.ground_found);
                    }
                    Ok(Outcome::Filtered(d)) => {
                        n_filtered += 1;
                        let record = serde_json::json!({"frame": spec.key, "prompt": d.prompt, "score": d.score});
                        let line = serialize_line(&record, &spec.key).and_then(|l| match filtered.as_mut() {
                            Some(f) => f.write_all(&l),
                            None => Ok(()),
                        });
                        if let Err(e) = line {
                            result = Err(e);
                            break;
                        }
                    }
                    Err(e) => failures.push(FailureRecord::new(&e, Some(spec))),
                }
            }
            stages.write_s += t.elapsed().as_secs_f64();
            if result.is_err() {
                break;
            }
            progress(((b + 1) * batch).min(frames_ref.len()), frames_ref.len());
        }
        // A stage that panicked is a bug: say so instead of returning with frames silently missing.
        let panicked = |stage: &str| Error::Geometry {
            frame: "-".into(),
            message: format!("the {stage} stage of the run stopped unexpectedly (a bug: please report it)"),
        };
        match loader.join() {
            Ok(t) => stages.load_s = t,
            Err(_) => result = result.and(Err(panicked("load"))),
        }
        match runner.join() {
            Ok(t) => stages.models = t,
            Err(_) => result = result.and(Err(panicked("model"))),
        }
        match geometry.join() {
            Ok(t) => stages.geometry_s = t,
            Err(_) => result = result.and(Err(panicked("geometry"))),
        }
        if result.is_ok() && written < frames_ref.len() {
            result = Err(panicked("pipeline"));
        }
        result
    });
    write_result?;
    let scene_graphs = scenes.commit()?;
    let filtered_file = filtered.map(AtomicFile::commit).transpose()?;
    let mut fail_file = AtomicFile::create(&failures_path)?;
    for f in &failures {
        let mut line = serde_json::to_vec(f).unwrap_or_default();
        line.push(b'\n');
        fail_file.write_all(&line)?;
    }
    let failures_file = fail_file.commit()?;
    let summary = RunSummary {
        frames: frames.len(),
        frames_ok: ok,
        frames_failed: failures.len() - other_failures,
        frames_filtered: n_filtered,
        other_failures,
        objects,
        dropped_objects: dropped,
        relations,
        ground_found: ground,
        seconds: start.elapsed().as_secs_f64(),
        stages,
        threads: rayon::current_num_threads(),
        scene_graphs,
        failures: failures_file,
        filtered: filtered_file,
        models: models_info,
        backend: backend.describe(),
        options: options.clone(),
    };
    let mut run_file = AtomicFile::create(&out_dir.join("run.json"))?;
    let text = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    run_file.write_all(&text)?;
    run_file.commit()?;
    Ok(summary)
}
