//! Runs of many frames: stream the frames of the manifests, process them in parallel batches, write the scene
//! graphs (and the question-answer dataset) in input order, record failures and carry on.
//!
//! A run works in numbered parts of [`RunOptions::part_frames`] frames (see [`parts`]): each part's files are
//! written under `parts/` and completed by a record written last, so a run that is killed loses at most the parts
//! in flight, `--resume` skips the parts already done, and `--shard i/N` runs every N-th part on one machine.
//! When every part is done, the parts are concatenated into the final files of the output folder, each written
//! to a temporary file and renamed into place only when complete:
//! - `scene_graphs.jsonl`: one [`SceneGraph`](crate::scene::SceneGraph) per successful frame, in input order;
//! - `failures.jsonl`: one [`FailureRecord`] per failed frame or manifest (empty when none failed);
//! - `filtered.jsonl` (runs with an image filter): the frames it rejected, with the prompt that won;
//! - with questions (`generate`): `llava.jsonl`, `openai.jsonl`, `qa.parquet`, `README.md`, `dataset.json`
//!   (see [`crate::dataset`]);
//! - `run.json`: counts, timings and every parameter used, written last. It is the run's log: the only output
//!   file that differs between two runs of the same inputs (timings).

pub mod frames;
pub mod ordered;
pub mod parts;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

pub use frames::{collect_frames, FrameStream, InputItem};
use parts::{assemble, part_file, remove_partials, run_fingerprint, PartHasher, PARTS_DIR, SHARD_FILE};
pub use parts::{merge_shards, Merged, PartRecord, Shard, ShardManifest};

use crate::backend::{Backend, BackendKind};
use crate::dataset::{Bank, DatasetOptions, DatasetSummary, QaSink};
use crate::error::{Error, Result};
use crate::io::{load_frame_with, FrameSpec, LoadOptions, LoadedFrame};
use crate::models::{FilterDecision, ModelOptions, ModelSet, ModelTimes, ModelsInfo, ObjectsMode};
use crate::pipeline::{process_frames_timed, SceneConfig};

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
        let mut builder = tempfile::Builder::new();
        builder.prefix(parts::PARTIAL_PREFIX);
        // Output is for others to read too: the usual 0o666 less the umask, not tempfile's private 0o600.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
        let tmp = builder.tempfile_in(dir).map_err(out)?;
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
        // The rename itself is durable once the folder is synced (records are written after their files).
        #[cfg(unix)]
        if let Some(dir) = self.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
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
    /// Frames decoded and processed together (in parallel); with the geometry's batches in flight (`in_flight`) and up
    /// to three more (being loaded, at the models' stage, waiting for the geometry) alive at once, it bounds memory
    /// (about 2 MB per VGA frame). 0: four per worker thread.
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
    /// Frames per part: the unit of work that is written, resumed and dealt out to shards (see [`parts`]).
    #[serde(default = "default_part_frames")]
    pub part_frames: usize,
    /// Batches the geometry works on at once (see [`Backend::in_flight`]); 0: the backend's default
    /// ([`Backend::batches_in_flight`]: 1 on the CPU, 2 on a GPU). Each one holds its frames. (Written only when
    /// not 0, so that the options of a run with the default read as before it existed: the same fingerprint.)
    #[serde(default, skip_serializing_if = "is_zero")]
    pub in_flight: usize,
    /// At most this many bytes of page-locked host memory for the CUDA backend's staging and read-back buffers
    /// (`None`: no limit); beyond it, it copies through pageable memory: slower, the same results (see
    /// [`Backend::set_pinned_limit`]). The other backends ignore it. (Written only when set, as `in_flight`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_limit_bytes: Option<u64>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn default_part_frames() -> usize {
    1024
}

fn default_backend() -> BackendKind {
    BackendKind::Cpu
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            batch_frames: 0,
            config: SceneConfig::default(),
            objects: ObjectsMode::Auto,
            models: ModelOptions::default(),
            open_models_always: false,
            default_hfov_deg: 60.0,
            object_colors: true,
            backend: BackendKind::Cpu,
            part_frames: default_part_frames(),
            in_flight: 0,
            pinned_limit_bytes: None,
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
    /// The geometry's wall time step by step (see [`crate::pipeline::GeometryStep`]), without serialising.
    #[serde(default)]
    pub geometry_steps: Vec<crate::pipeline::StepTime>,
    /// Writing the output in order.
    pub write_s: f64,
}

/// The frame counts of a run, or of one part of it: they add up over parts and shards.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Frames read from the manifests (and not refused there).
    pub frames: usize,
    pub frames_ok: usize,
    pub frames_failed: usize,
    /// Frames the image filter rejected (listed in `filtered.jsonl`, written when a filter ran).
    pub frames_filtered: usize,
    /// Failures that are not a frame that was processed: unreadable manifests, malformed lines, repeated names.
    pub other_failures: usize,
    pub objects: usize,
    pub dropped_objects: usize,
    pub relations: usize,
    pub ground_found: usize,
}

impl RunCounts {
    pub fn add(&mut self, o: &RunCounts) {
        self.frames += o.frames;
        self.frames_ok += o.frames_ok;
        self.frames_failed += o.frames_failed;
        self.frames_filtered += o.frames_filtered;
        self.other_failures += o.other_failures;
        self.objects += o.objects;
        self.dropped_objects += o.dropped_objects;
        self.relations += o.relations;
        self.ground_found += o.ground_found;
    }
}

/// What a run did, as written to `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    #[serde(flatten)]
    pub counts: RunCounts,
    /// Wall seconds of this invocation.
    pub seconds: f64,
    /// Busy seconds per stage, for the parts this invocation processed.
    pub stages: StageTimes,
    pub threads: usize,
    /// The shard this run was (`None`: the whole run, assembled).
    pub shard: Option<Shard>,
    pub part_frames: usize,
    /// Parts of the whole run, of this shard, done by this invocation, and skipped as already done (`--resume`).
    pub parts_total: usize,
    pub parts_in_shard: usize,
    pub parts_processed: usize,
    pub parts_resumed: usize,
    /// Digest of the options (and program version) the output depends on; equal for the shards of one run.
    pub fingerprint: String,
    /// Digest of the run's manifest entries, in order.
    pub inputs: String,
    /// The final files, once the parts are assembled (`None` for a shard of several: `merge` writes them).
    pub scene_graphs: Option<PathBuf>,
    pub failures: Option<PathBuf>,
    pub filtered: Option<PathBuf>,
    /// The dataset, for runs that make questions, once assembled.
    pub dataset: Option<DatasetSummary>,
    /// The first failures (at most 20) of the parts this invocation processed, for a quick look.
    pub failure_examples: Vec<FailureRecord>,
    /// The models used (`null` when none was needed).
    pub models: Option<ModelsInfo>,
    /// The geometry backend that ran, with its adapter (e.g. `wgpu: llvmpipe (...) (Vulkan, Cpu)`).
    pub backend: String,
    /// The CUDA backend's page-locked host memory: its peak, its limit, and the copies that went through pageable
    /// memory instead (`None` on the other backends, and when resuming a finished run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_memory: Option<crate::backend::PinnedMemory>,
    pub options: RunOptions,
}

impl RunSummary {
    /// True when every frame and manifest was processed (and every scene graph templated).
    pub fn all_ok(&self) -> bool {
        self.counts.frames_failed == 0
            && self.counts.other_failures == 0
            && self.dataset.as_ref().is_none_or(|d| d.all_ok())
    }
}

/// What to run: the inputs, where the output goes, whether to make questions, and which part of the work.
#[derive(Clone, Debug)]
pub struct Job {
    /// Manifests (frames.json or JSON Lines) or folders searched for them.
    pub inputs: Vec<PathBuf>,
    pub out_dir: PathBuf,
    /// Make the question-answer dataset too (`generate`); `None` stops at the scene graphs (`scene`).
    pub dataset: Option<DatasetOptions>,
    /// This machine's share of the parts: `None` runs them all and assembles the final files; `Some` (even `0/1`)
    /// writes the shard's parts and `shard.json` for `merge`.
    pub shard: Option<Shard>,
    /// Skip the parts that a previous run in `out_dir` finished with the same inputs and options.
    pub resume: bool,
}

impl Job {
    pub fn new(inputs: &[PathBuf], out_dir: &Path) -> Self {
        Job { inputs: inputs.to_vec(), out_dir: out_dir.to_path_buf(), dataset: None, shard: None, resume: false }
    }
}

/// Whether the frames of a run need the models under `options`.
pub fn needs_models(frames: &[FrameSpec], options: &RunOptions) -> bool {
    models_needed(frames.iter().any(|f| options.objects.detects(f.has_annotations())), options)
}

fn models_needed(any_frame_detects: bool, options: &RunOptions) -> bool {
    let m = &options.models;
    options.open_models_always || (any_frame_detects && m.detector.is_some()) || m.depth.is_some() || m.filter.is_some()
}

fn serialize_line<T: Serialize>(value: &T, frame: &str) -> Result<Vec<u8>> {
    let mut line = serde_json::to_vec(value).map_err(|e| Error::Geometry {
        frame: frame.to_string(),
        message: format!("cannot serialise the output: {e}"),
    })?;
    line.push(b'\n');
    Ok(line)
}

/// What flows down the run's pipeline, in input order.
enum Msg<T> {
    /// A batch of one part's frames (at most `batch_frames`), with the failures found while reading the manifests
    /// just before each frame (by its index in the batch), so that failures are listed in input order.
    Batch { part: usize, specs: Vec<FrameSpec>, before: Vec<(usize, FailureRecord)>, items: Vec<Result<T>> },
    /// The end of a part: its fingerprint and the failures found after its last frame.
    End { part: usize, fingerprint: String, trailing: Vec<FailureRecord> },
    /// A part finished by an earlier run (`--resume`).
    Resumed(Box<PartRecord>),
}

impl<T> Msg<T> {
    /// Passes the non-batch messages on, changing the batch type.
    fn map<U>(self, f: impl FnOnce(Vec<Result<T>>) -> Vec<Result<U>>) -> Msg<U> {
        match self {
            Msg::Batch { part, specs, before, items } => Msg::Batch { part, specs, before, items: f(items) },
            Msg::End { part, fingerprint, trailing } => Msg::End { part, fingerprint, trailing },
            Msg::Resumed(r) => Msg::Resumed(r),
        }
    }
}

/// Processes every frame of `inputs` into scene graphs in `out_dir` (no questions, no sharding, no resume): a
/// shorthand for [`run`] with [`Job::new`]. `progress(done, total)` is called after each batch.
pub fn run_scenes(
    inputs: &[PathBuf],
    out_dir: &Path,
    options: &RunOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<RunSummary> {
    run(&Job::new(inputs, out_dir), options, progress)
}

/// The options a run refuses before it reads a frame.
fn check_options(job: &Job, options: &RunOptions) -> Result<()> {
    options.config.validate().map_err(|message| Error::Config { message })?;
    if !(options.default_hfov_deg.is_finite() && options.default_hfov_deg > 1.0 && options.default_hfov_deg < 179.0) {
        return Err(Error::Config {
            message: format!("default_hfov_deg {} must be within (1, 179)", options.default_hfov_deg),
        });
    }
    if options.part_frames == 0 {
        return Err(Error::Config { message: "part_frames must be at least 1".into() });
    }
    crate::backend::check_in_flight(options.in_flight).map_err(|message| Error::Config { message })?;
    if let Some(shard) = job.shard.filter(|s| s.count == 0 || s.index >= s.count) {
        return Err(Error::Config { message: format!("shard {shard} needs 0 <= i < N") });
    }
    if let Some(d) = &job.dataset {
        d.check()?;
    }
    Ok(())
}

/// The first pass over the inputs: how many frames there are, whether any needs the detector, and a digest of
/// every manifest entry (frames and failures) in order.
fn survey(inputs: &[PathBuf], out_dir: &Path, options: &RunOptions) -> (usize, bool, String) {
    let mut frames = 0usize;
    let mut detects = false;
    let mut digest = PartHasher::new("inputs", 0);
    for item in FrameStream::new(inputs).excluding(out_dir) {
        digest.add_input(&item);
        if let InputItem::Frame(f) = &item {
            frames += 1;
            detects |= options.objects.detects(f.has_annotations());
        }
    }
    (frames, detects, digest.finish())
}

/// Runs a [`Job`]: every part of the job's shard is processed (or skipped, when resuming and already done) and
/// written under `out_dir/parts/`; then a whole run (shard `0/1`) assembles the parts into the final files and
/// removes them, while one shard of several writes `shard.json` for `merge`. `progress(done, total)` counts this
/// shard's frames.
///
/// The models (see [`needs_models`]) are opened and checked before any frame is processed: a bad card or model
/// file, or a missing ONNX Runtime, is an error here. Then a bounded pipeline runs: one thread reads the manifests
/// and decodes batch n+1 while another runs the models on batch n and a third computes the geometry of batch n−1
/// (both decoding and geometry parallel over the batch's frames); the calling thread writes results in input
/// order. At most one batch waits between stages, so memory stays bounded (it does not grow with the number of
/// frames) and the slowest stage sets the pace.
pub fn run(job: &Job, options: &RunOptions, progress: &(dyn Fn(usize, usize) + Sync)) -> Result<RunSummary> {
    let start = Instant::now();
    check_options(job, options)?;
    let out_dir = job.out_dir.as_path();
    let parts_dir = out_dir.join(PARTS_DIR);
    let output = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Output { path, source }
    };
    let (frames_total, any_detect, inputs_digest) = survey(&job.inputs, out_dir, options);
    let part_frames = options.part_frames;
    let parts_total = frames_total.div_ceil(part_frames).max(1);
    let shard = job.shard.unwrap_or(Shard::ALL);
    let whole = job.shard.is_none();
    let part_len = |k: usize| match k + 1 == parts_total {
        true => frames_total - k * part_frames,
        false => part_frames,
    };
    let shard_parts: Vec<usize> = (0..parts_total).filter(|&k| shard.owns(k)).collect();
    let shard_frames: usize = shard_parts.iter().map(|&k| part_len(k)).sum();

    let backend = Backend::open(options.backend)?;
    backend.set_pinned_limit(options.pinned_limit_bytes)?;
    let in_flight = backend.in_flight(options.in_flight)?;
    let mut models = if models_needed(any_detect, options) { Some(ModelSet::open(&options.models)?) } else { None };
    let models_info = models.as_ref().map(|m| m.info());
    let bank = job.dataset.as_ref().map(Bank::load).transpose()?;
    let qa = match (&bank, &job.dataset) {
        (Some(b), Some(d)) => Some((b.get()?, d)),
        _ => None,
    };
    let fingerprint = run_fingerprint(options, job.dataset.as_ref(), models_info.as_ref())?;
    let run_json = out_dir.join("run.json");
    if job.resume && whole {
        // A finished run of the same inputs and options: nothing to do. (`run.json` is removed when a run starts
        // and written once its final files are all in place.)
        let previous = std::fs::read(&run_json).ok().and_then(|t| serde_json::from_slice::<RunSummary>(&t).ok());
        if let Some(p) = previous.filter(|p| p.fingerprint == fingerprint && p.inputs == inputs_digest) {
            if p.scene_graphs.as_ref().is_some_and(|f| f.exists()) && p.shard.is_none() {
                progress(p.counts.frames, p.counts.frames);
                let summary = RunSummary {
                    parts_processed: 0,
                    parts_resumed: p.parts_total,
                    seconds: start.elapsed().as_secs_f64(),
                    stages: StageTimes::default(),
                    pinned_memory: None,
                    ..p
                };
                write_run_json(&run_json, &summary)?;
                return Ok(summary);
            }
        }
    }
    // Only now, with the models and templates checked, does the run touch the output folder.
    std::fs::create_dir_all(&parts_dir).map_err(output(&parts_dir))?;
    remove_partials(out_dir);
    remove_partials(&parts_dir);
    if !job.resume {
        // A fresh run: earlier parts in this folder are not reused.
        if let Ok(entries) = std::fs::read_dir(&parts_dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("part-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    for stale in [SHARD_FILE, "run.json"] {
        let _ = std::fs::remove_file(out_dir.join(stale));
    }
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
    let batch = match options.batch_frames {
        0 => 4 * rayon::current_num_threads().max(1),
        n => n,
    };
    let config = &options.config;
    let backend_ref = &backend;
    let geometry_clock = crate::pipeline::GeometryClock::new();
    let clock_ref = &geometry_clock;
    let mut stages = StageTimes::default();
    let mut writer = PartsWriter {
        parts_dir: &parts_dir,
        filter: filter_on,
        qa,
        totals: RunCounts::default(),
        open: None,
        examples: Vec::new(),
        processed: 0,
        resumed: 0,
        done_frames: 0,
    };
    progress(0, shard_frames);

    let (tx_loaded, rx_loaded) = sync_channel::<Msg<LoadedFrame>>(0);
    let (tx_ready, rx_ready) = sync_channel::<Msg<LoadedFrame>>(0);
    // Without models the loader hands its batches straight to the geometry: one batch fewer in flight.
    let tx_loaded = match models.is_none() {
        true => {
            // The runner then sees a closed channel at once and ends, handing its end of `tx_ready` back.
            drop(tx_loaded);
            tx_ready.clone()
        }
        false => tx_loaded,
    };
    let (tx_done, rx_done) = sync_channel::<Msg<Outcome>>(1);
    let (inputs, resume, parts_dir_ref, fp) = (&job.inputs, job.resume, parts_dir.as_path(), fingerprint.as_str());
    let mut inputs_seen = String::new();
    let write_result: Result<()> = std::thread::scope(|s| {
        let loader = s.spawn(move || {
            let mut busy = 0.0;
            // Sends one part down the pipeline (or its record, when an earlier run finished it).
            // `failures` holds each failure with the index (in the part) of the frame that follows it.
            let mut send_part = |k: usize, specs: Vec<FrameSpec>, failures: Vec<(usize, FailureRecord)>| -> bool {
                let mut hasher = PartHasher::new(fp, k);
                specs.iter().for_each(|f| hasher.add(0, f));
                failures.iter().for_each(|f| hasher.add(1, f));
                let fingerprint = hasher.finish();
                if resume {
                    if let Some(record) = PartRecord::read_valid(parts_dir_ref, k, &fingerprint) {
                        return tx_loaded.send(Msg::Resumed(Box::new(record))).is_ok();
                    }
                }
                let n = specs.len();
                let mut failures = failures.into_iter().peekable();
                let mut specs = specs.into_iter().peekable();
                let mut first = 0;
                while specs.peek().is_some() {
                    let chunk: Vec<FrameSpec> = specs.by_ref().take(batch).collect();
                    let mut before = Vec::new();
                    while let Some((i, f)) = failures.next_if(|(i, _)| *i < first + chunk.len()) {
                        before.push((i - first, f));
                    }
                    first += chunk.len();
                    let t = Instant::now();
                    let items: Vec<Result<LoadedFrame>> = chunk
                        .par_iter()
                        .map(|spec| {
                            let load = LoadOptions { decode_color: needs_color(spec), default_hfov_deg: hfov };
                            load_frame_with(spec, &load)
                        })
                        .collect();
                    busy += t.elapsed().as_secs_f64();
                    if tx_loaded.send(Msg::Batch { part: k, specs: chunk, before, items }).is_err() {
                        return false;
                    }
                }
                debug_assert!(failures.peek().is_none_or(|(i, _)| *i == n));
                let trailing = failures.map(|(_, f)| f).collect();
                tx_loaded.send(Msg::End { part: k, fingerprint, trailing }).is_ok()
            };
            // Frames and failures are dealt to parts in input order; a failure goes with the part of the frame
            // that follows it (the last part for trailing ones).
            let part_of = |seen: usize| (seen / part_frames).min(parts_total - 1);
            let (mut current, mut specs, mut failures) = (0usize, Vec::new(), Vec::new());
            let mut seen = 0usize;
            // The same digest as the survey's: the manifests must not change between the two passes.
            let mut digest = PartHasher::new("inputs", 0);
            for item in FrameStream::new(inputs).excluding(out_dir) {
                digest.add_input(&item);
                let k = part_of(seen);
                if k != current {
                    if shard.owns(current)
                        && !send_part(current, std::mem::take(&mut specs), std::mem::take(&mut failures))
                    {
                        return (busy, String::new());
                    }
                    current = k;
                }
                match item {
                    InputItem::Frame(f) => {
                        seen += 1;
                        if shard.owns(k) {
                            specs.push(f);
                        }
                    }
                    InputItem::Failure(f) => {
                        if shard.owns(k) {
                            failures.push((specs.len(), f));
                        }
                    }
                }
            }
            if shard.owns(current) && !send_part(current, specs, failures) {
                return (busy, String::new());
            }
            (busy, digest.finish())
        });
        let runner = s.spawn(move || {
            let mut times = ModelTimes::default();
            for msg in rx_loaded {
                let msg = msg.map(|mut items| {
                    if let Some(m) = models.as_mut() {
                        m.process_batch(&mut items, mode, &mut times);
                    }
                    // The pixels are not needed past the models, unless objects are to be named by colour.
                    if !object_colors {
                        for f in items.iter_mut().flatten() {
                            f.color = None;
                        }
                    }
                    items
                });
                if tx_ready.send(msg).is_err() {
                    break;
                }
            }
            times
        });
        let geometry = s.spawn(move || {
            let mut busy = 0.0;
            // GPU backends take two batches at once by default (`in_flight`): the host steps of one overlap the device
            // work of the other. Results go on in input order.
            let one_batch = |msg: Msg<LoadedFrame>| {
                let t = Instant::now();
                let msg = msg.map(|items| {
                    // The batch's scene geometry in one go (each kernel once for the whole batch), then each
                    // frame's outcome in input order.
                    fn kept(l: &Result<LoadedFrame>) -> Option<&LoadedFrame> {
                        l.as_ref().ok().filter(|f| f.image_filter.as_ref().is_none_or(|d| d.kept))
                    }
                    let frames: Vec<&LoadedFrame> = items.iter().filter_map(kept).collect();
                    let mut graphs = process_frames_timed(backend_ref, &frames, config, clock_ref).into_iter();
                    let slots: Vec<Option<Result<crate::scene::SceneGraph>>> =
                        items.iter().map(|l| kept(l).and_then(|_| graphs.next())).collect();
                    let items: Vec<Result<Outcome>> = items
                        .into_par_iter()
                        .zip(slots)
                        .map(|(loaded, graph)| {
                            let frame = loaded?;
                            if let Some(d) = frame.image_filter.as_ref().filter(|d| !d.kept) {
                                return Ok(Outcome::Filtered(d.clone()));
                            }
                            let graph = graph.unwrap_or_else(|| {
                                Err(Error::Geometry { frame: frame.spec.key.clone(), message: "no scene".into() })
                            })?;
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
                    items
                });
                (msg, t.elapsed().as_secs_f64())
            };
            let ok = ordered::ordered_map(rx_ready, in_flight, one_batch, |(msg, t)| {
                busy += t;
                tx_done.send(msg).is_ok()
            });
            // A batch that panicked is a bug: the stage reports it as a panic of its own.
            assert!(ok, "a geometry worker panicked");
            busy
        });
        let mut result = Ok(());
        let mut trim = Trim::default();
        for msg in rx_done {
            let t = Instant::now();
            let r = writer.handle(msg);
            trim.after_batch();
            stages.write_s += t.elapsed().as_secs_f64();
            if let Err(e) = r {
                result = Err(e);
                break;
            }
            progress(writer.done_frames, shard_frames);
        }
        // A stage that panicked is a bug: say so instead of returning with frames silently missing.
        let panicked = |stage: &str| Error::Geometry {
            frame: "-".into(),
            message: format!("the {stage} stage of the run stopped unexpectedly (a bug: please report it)"),
        };
        match loader.join() {
            Ok((t, digest)) => {
                stages.load_s = t;
                inputs_seen = digest;
            }
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
        if result.is_ok() && inputs_seen != inputs_digest {
            result = Err(Error::Parts {
                path: inputs.first().cloned().unwrap_or_default(),
                message: "the manifests changed while the run was reading them; run again".into(),
            });
        }
        if result.is_ok() && writer.processed + writer.resumed < shard_parts.len() {
            result = Err(panicked("pipeline"));
        }
        result
    });
    write_result?;
    if geometry_clock.frames() > 0 {
        stages.geometry_steps = geometry_clock.report();
    }
    let (counts, processed, resumed, examples) = (writer.totals, writer.processed, writer.resumed, writer.examples);
    let mut summary = RunSummary {
        counts,
        seconds: 0.0,
        stages,
        threads: rayon::current_num_threads(),
        shard: job.shard,
        part_frames,
        parts_total,
        parts_in_shard: shard_parts.len(),
        parts_processed: processed,
        parts_resumed: resumed,
        fingerprint: fingerprint.clone(),
        inputs: inputs_digest,
        scene_graphs: None,
        failures: None,
        filtered: None,
        dataset: None,
        failure_examples: examples,
        models: models_info,
        backend: backend.describe(),
        pinned_memory: backend.pinned_memory(),
        options: options.clone(),
    };
    if whole {
        let records = (0..parts_total)
            .map(|k| PartRecord::read_complete(&parts_dir, k).map(|r| (parts_dir.clone(), r)))
            .collect::<Result<Vec<_>>>()?;
        let assembled = assemble(&records, out_dir, filter_on, job.dataset.as_ref())?;
        summary.counts = assembled.counts;
        summary.scene_graphs = Some(assembled.scene_graphs);
        summary.failures = Some(assembled.failures);
        summary.filtered = assembled.filtered;
        summary.dataset = assembled.dataset;
        remove_stale_outputs(out_dir, filter_on, job.dataset.is_some());
        summary.seconds = start.elapsed().as_secs_f64();
        write_run_json(&run_json, &summary)?;
        // The parts are in the final files now.
        let _ = std::fs::remove_dir_all(&parts_dir);
        return Ok(summary);
    }
    let manifest = ShardManifest {
        spatialsynth: env!("CARGO_PKG_VERSION").to_string(),
        shard,
        fingerprint,
        part_frames,
        parts_total,
        frames_total,
        inputs: summary.inputs.clone(),
        parts: shard_parts,
        counts: summary.counts.clone(),
        backend: summary.backend.clone(),
        models: summary.models.clone(),
        options: options.clone(),
        dataset: job.dataset.clone(),
    };
    let mut f = AtomicFile::create(&out_dir.join(SHARD_FILE))?;
    f.write_all(&serde_json::to_vec_pretty(&manifest).unwrap_or_default())?;
    f.commit()?;
    summary.seconds = start.elapsed().as_secs_f64();
    write_run_json(&run_json, &summary)?;
    Ok(summary)
}

/// Removes the final files of an earlier run in the same folder that this run does not write (a `scene` run after
/// a `generate` run, a run without an image filter after one with it), so the folder holds one run's output. The
/// dataset files are only removed when the earlier dataset's `dataset.json` says they are a spatialsynth dataset.
fn remove_stale_outputs(out_dir: &Path, filtered: bool, dataset: bool) {
    if !filtered {
        let _ = std::fs::remove_file(out_dir.join("filtered.jsonl"));
    }
    if !dataset && out_dir.join("dataset.json").is_file() {
        for f in ["llava.jsonl", "openai.jsonl", "qa.parquet", "README.md", "dataset.json"] {
            let _ = std::fs::remove_file(out_dir.join(f));
        }
    }
}

fn write_run_json(path: &Path, summary: &RunSummary) -> Result<()> {
    let mut run_file = AtomicFile::create(path)?;
    run_file.write_all(&serde_json::to_vec_pretty(summary).unwrap_or_default())?;
    run_file.commit()?;
    Ok(())
}

/// The open files of the part being written.
struct OpenPart {
    part: usize,
    scenes: AtomicFile,
    failures: AtomicFile,
    filtered: Option<AtomicFile>,
    counts: RunCounts,
}

/// The writing end of a run: writes each part's files in input order and completes each part with its record.
struct PartsWriter<'a> {
    parts_dir: &'a Path,
    filter: bool,
    qa: Option<(&'a crate::qa::TemplateBank, &'a DatasetOptions)>,
    totals: RunCounts,
    open: Option<OpenPart>,
    examples: Vec<FailureRecord>,
    processed: usize,
    resumed: usize,
    done_frames: usize,
}

const FAILURE_EXAMPLES: usize = 20;

/// Hands the allocator's free pages back to the system when the process has grown. glibc's malloc keeps memory that
/// threads freed in their arenas, and over thousands of frames decoded on one thread and freed on another the
/// process would keep growing; trimming keeps a long run's memory flat. (Other platforms' allocators need no help.)
///
/// Not after every batch: a trim gives back the pages of every free block, which the next batch's allocations of the
/// same sizes fault in and clear again (about half of a CPU run's page faults were those). After a batch, it trims
/// when the process's resident memory is more than [`Trim::allowance`] over what it was right after the last trim (the
/// first batch always trims): an eighth, at least 16 MiB and at most 128 MiB. The floor is measured again at every
/// trim, so memory stays within that much of where trimming after every batch keeps it.
#[derive(Default)]
struct Trim {
    /// Resident bytes right after the last trim (`None`: no trim yet).
    floor: Option<u64>,
}

impl Trim {
    /// How far resident memory may grow over `floor` before the next trim: an eighth, at least 16 MiB (small runs)
    /// and at most 128 MiB (a process holding a GPU driver's or models' memory, where an eighth would be a lot of free
    /// heap).
    fn allowance(floor: u64) -> u64 {
        (floor / 8).clamp(16 << 20, 128 << 20)
    }

    fn after_batch(&mut self) {
        let Some(rss) = resident_bytes() else {
            // Resident memory unknown: trim every batch, as before.
            release_free_memory();
            return;
        };
        if self.due(rss) {
            release_free_memory();
            self.floor = resident_bytes();
        }
    }

    /// Whether a process of `rss` resident bytes has grown enough since the last trim to trim again.
    fn due(&self, rss: u64) -> bool {
        self.floor.is_none_or(|floor| rss > floor + Self::allowance(floor))
    }
}

/// The process's resident memory in bytes (`/proc/self/statm`), where the platform says.
fn resident_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf only reads a system setting.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(page).ok().filter(|&p| p > 0).map(|p| pages * p)
    }
    #[cfg(not(target_os = "linux"))]
    None
}

/// Hands the allocator's free pages back to the system (glibc: `malloc_trim`).
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl PartsWriter<'_> {
    fn part(&mut self, part: usize) -> Result<&mut OpenPart> {
        if self.open.as_ref().is_some_and(|o| o.part != part) {
            return Err(Error::Geometry {
                frame: "-".into(),
                message: format!("part {part} began before the last one ended (a bug: please report it)"),
            });
        }
        if self.open.is_none() {
            let dir = self.parts_dir;
            // An earlier record of this part (other options, or not resumed) must not vouch for the new files.
            let record = part_file(dir, part, "json");
            match std::fs::remove_file(&record) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::Output { path: record, source: e });
                }
                _ => {}
            }
            self.open = Some(OpenPart {
                part,
                scenes: AtomicFile::create(&part_file(dir, part, "scenes.jsonl"))?,
                failures: AtomicFile::create(&part_file(dir, part, "failures.jsonl"))?,
                filtered: match self.filter {
                    true => Some(AtomicFile::create(&part_file(dir, part, "filtered.jsonl"))?),
                    false => None,
                },
                counts: RunCounts::default(),
            });
        }
        self.open.as_mut().ok_or_else(|| Error::Geometry { frame: "-".into(), message: "no open part".into() })
    }

    fn fail(&mut self, record: FailureRecord) -> Result<()> {
        let line = serialize_line(&record, &record.frame)?;
        if self.examples.len() < FAILURE_EXAMPLES {
            self.examples.push(record);
        }
        self.part_open()?.failures.write_all(&line)
    }

    /// A failure found while reading the manifests.
    fn input_failure(&mut self, record: FailureRecord) -> Result<()> {
        self.part_open()?.counts.other_failures += 1;
        self.fail(record)
    }

    fn part_open(&mut self) -> Result<&mut OpenPart> {
        self.open.as_mut().ok_or_else(|| Error::Geometry { frame: "-".into(), message: "no open part".into() })
    }

    fn handle(&mut self, msg: Msg<Outcome>) -> Result<()> {
        match msg {
            Msg::Batch { part, specs, before, items } => {
                self.part(part)?;
                self.done_frames += specs.len();
                let mut before = before.into_iter().peekable();
                for (j, (spec, r)) in specs.iter().zip(items).enumerate() {
                    while let Some((_, f)) = before.next_if(|(i, _)| *i <= j) {
                        self.input_failure(f)?;
                    }
                    let p = self.part_open()?;
                    p.counts.frames += 1;
                    match r {
                        Ok(Outcome::Scene(c, line)) => {
                            p.scenes.write_all(&line)?;
                            p.counts.frames_ok += 1;
                            p.counts.objects += c.objects;
                            p.counts.dropped_objects += c.dropped;
                            p.counts.relations += c.relations;
                            p.counts.ground_found += usize::from(c.ground_found);
                        }
                        Ok(Outcome::Filtered(d)) => {
                            p.counts.frames_filtered += 1;
                            let record = serde_json::json!({"frame": spec.key, "prompt": d.prompt, "score": d.score});
                            let line = serialize_line(&record, &spec.key)?;
                            if let Some(f) = p.filtered.as_mut() {
                                f.write_all(&line)?;
                            }
                        }
                        Err(e) => {
                            p.counts.frames_failed += 1;
                            self.fail(FailureRecord::new(&e, Some(spec)))?;
                        }
                    }
                }
                Ok(())
            }
            Msg::End { part, fingerprint, trailing } => {
                self.part(part)?;
                for f in trailing {
                    self.input_failure(f)?;
                }
                let p = self
                    .open
                    .take()
                    .ok_or_else(|| Error::Geometry { frame: "-".into(), message: "no open part".into() })?;
                let mut files = std::collections::BTreeMap::new();
                let mut commit = |f: AtomicFile, suffix: &str| -> Result<PathBuf> {
                    let path = f.commit()?;
                    let len =
                        std::fs::metadata(&path).map_err(|source| Error::Output { path: path.clone(), source })?.len();
                    files.insert(suffix.to_string(), len);
                    Ok(path)
                };
                let scenes = commit(p.scenes, "scenes.jsonl")?;
                commit(p.failures, "failures.jsonl")?;
                if let Some(f) = p.filtered {
                    commit(f, "filtered.jsonl")?;
                }
                let (mut qa, mut qa_failures, mut templates) = (None, Vec::new(), None);
                if let Some((bank, options)) = self.qa {
                    let mut sink = QaSink::create(self.parts_dir, &format!("part-{part:06}."))?;
                    let input = std::fs::File::open(&scenes)
                        .map_err(|source| Error::Output { path: scenes.clone(), source })?;
                    sink.template(std::io::BufReader::new(input), &scenes, bank, options)?;
                    let (paths, counts, failures) = sink.finish()?;
                    for (path, suffix) in paths.iter().zip(parts::QA_SUFFIXES) {
                        let len = std::fs::metadata(path)
                            .map_err(|source| Error::Output { path: path.clone(), source })?
                            .len();
                        files.insert(suffix.to_string(), len);
                    }
                    (qa, qa_failures, templates) = (Some(counts), failures, Some(bank.source.clone()));
                }
                let record = PartRecord { part, fingerprint, counts: p.counts, qa, qa_failures, templates, files };
                record.write(self.parts_dir)?;
                self.totals.add(&record.counts);
                self.processed += 1;
                Ok(())
            }
            Msg::Resumed(record) => {
                self.totals.add(&record.counts);
                self.done_frames += record.counts.frames;
                self.resumed += 1;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_trimmed_first_and_then_only_when_the_process_has_grown() {
        let mib = 1u64 << 20;
        let mut trim = Trim::default();
        assert!(trim.due(1), "the first batch trims");
        // Small: 16 MiB of growth; larger: an eighth.
        trim.floor = Some(64 * mib);
        assert!(!trim.due(64 * mib + 16 * mib));
        assert!(trim.due(64 * mib + 16 * mib + 1));
        trim.floor = Some(800 * mib);
        assert!(!trim.due(900 * mib));
        assert!(trim.due(900 * mib + 1));
        assert!(!trim.due(100 * mib), "less than the floor");
        // Large: at most 128 MiB.
        trim.floor = Some(4096 * mib);
        assert!(!trim.due(4096 * mib + 128 * mib));
        assert!(trim.due(4096 * mib + 128 * mib + 1));
        #[cfg(target_os = "linux")]
        assert!(resident_bytes().is_some_and(|b| b > mib), "{:?}", resident_bytes());
    }

    #[test]
    fn a_run_refuses_more_batches_in_flight_than_it_may_keep() {
        let dir = tempfile::tempdir().unwrap();
        let job = Job::new(&[], dir.path());
        let options = |in_flight| RunOptions { in_flight, ..RunOptions::default() };
        assert!(check_options(&job, &options(16)).is_ok());
        let err = check_options(&job, &options(17)).unwrap_err().to_string();
        assert!(err.contains("17 batches in flight: at most 16"), "{err}");
    }
}
