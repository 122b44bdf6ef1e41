//! Runs of many frames: collect frames from manifests, process them in parallel batches, write the scene graphs
//! in input order, record failures and carry on.
//!
//! Outputs in the output folder, each written to a temporary file and renamed into place only when complete:
//! - `scene_graphs.jsonl`: one [`SceneGraph`](crate::scene::SceneGraph) per successful frame, in input order;
//! - `failures.jsonl`: one [`FailureRecord`] per failed frame or manifest (empty when none failed);
//! - `run.json`: counts, timings and every parameter used.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::io::{find_manifests, load_frame, read_manifest, FrameSpec};
use crate::pipeline::{process_frame, SceneConfig};

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

struct FrameCounts {
    objects: usize,
    dropped: usize,
    relations: usize,
    ground_found: bool,
}

/// Options of a scene run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    /// Frames decoded and processed together (in parallel); also bounds memory.
    pub batch_frames: usize,
    pub config: SceneConfig,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions { batch_frames: 16, config: SceneConfig::default() }
    }
}

/// What a run did, as written to `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub frames: usize,
    pub frames_ok: usize,
    pub frames_failed: usize,
    /// Failures that are not tied to one frame (unreadable manifests).
    pub other_failures: usize,
    pub objects: usize,
    pub dropped_objects: usize,
    pub relations: usize,
    pub ground_found: usize,
    pub seconds: f64,
    pub threads: usize,
    pub scene_graphs: PathBuf,
    pub failures: PathBuf,
    pub options: RunOptions,
}

impl RunSummary {
    /// True when every frame and manifest was processed.
    pub fn all_ok(&self) -> bool {
        self.frames_failed == 0 && self.other_failures == 0
    }
}

/// Processes every frame of `inputs` into `out_dir`. `progress(done, total)` is called after each batch.
pub fn run_scenes(
    inputs: &[PathBuf],
    out_dir: &Path,
    options: &RunOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<RunSummary> {
    let start = Instant::now();
    options.config.validate().map_err(|message| Error::Config { message })?;
    std::fs::create_dir_all(out_dir).map_err(|source| Error::Output { path: out_dir.to_path_buf(), source })?;
    let (frames, mut failures) = collect_frames(inputs);
    let other_failures = failures.len();
    let scene_path = out_dir.join("scene_graphs.jsonl");
    let failures_path = out_dir.join("failures.jsonl");
    let mut scenes = AtomicFile::create(&scene_path)?;
    let (mut ok, mut objects, mut dropped, mut relations, mut ground) = (0, 0, 0, 0, 0);
    let batch = options.batch_frames.max(1);
    progress(0, frames.len());
    for (b, chunk) in frames.chunks(batch).enumerate() {
        let results: Vec<Result<(FrameCounts, Vec<u8>)>> = chunk
            .par_iter()
            .map(|spec| {
                let loaded = load_frame(spec)?;
                let graph = process_frame(&loaded, &options.config)?;
                let mut line = serde_json::to_vec(&graph).map_err(|e| Error::Geometry {
                    frame: spec.key.clone(),
                    message: format!("cannot serialise the scene graph: {e}"),
                })?;
                line.push(b'\n');
                let counts = FrameCounts {
                    objects: graph.objects.len(),
                    dropped: graph.dropped_objects.len(),
                    relations: graph.relations.len(),
                    ground_found: graph.ground.found,
                };
                Ok((counts, line))
            })
            .collect();
        for (spec, result) in chunk.iter().zip(results) {
            match result {
                Ok((c, line)) => {
                    scenes.write_all(&line)?;
                    ok += 1;
                    objects += c.objects;
                    dropped += c.dropped;
                    relations += c.relations;
                    ground += usize::from(c.ground_found);
                }
                Err(e) => failures.push(FailureRecord::new(&e, Some(spec))),
            }
        }
        progress(((b + 1) * batch).min(frames.len()), frames.len());
    }
    let scene_graphs = scenes.commit()?;
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
        other_failures,
        objects,
        dropped_objects: dropped,
        relations,
        ground_found: ground,
        seconds: start.elapsed().as_secs_f64(),
        threads: rayon::current_num_threads(),
        scene_graphs,
        failures: failures_file,
        options: options.clone(),
    };
    let mut run_file = AtomicFile::create(&out_dir.join("run.json"))?;
    let text = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    run_file.write_all(&text)?;
    run_file.commit()?;
    Ok(summary)
}
