//! Resumable, shardable runs: the frames of a run are cut into numbered parts of `part_frames` frames (in input
//! order); each part's output is written under `parts/` and completed by a small record written last; the final
//! files are the parts concatenated in order.
//!
//! - `parts/part-000012.scenes.jsonl`, `.failures.jsonl` (and `.filtered.jsonl` with an image filter; and with
//!   questions, `.llava.jsonl`, `.openai.jsonl`, `.qa.parquet`): the part's output, each renamed into place when
//!   complete;
//! - `parts/part-000012.json`: the [`PartRecord`], renamed into place after every file of the part: a part
//!   without it is not done. It holds a fingerprint of everything the part's output depends on (the program
//!   version, the options, the part's manifest entries), so `--resume` only skips a part whose inputs are the same;
//! - `shard.json` ([`ShardManifest`]) in the folder of a shard run (`--shard i/N`), written when the shard is done.
//!
//! Part `k` belongs to shard `k mod N`. Because parts, not frames, are dealt out and every output line depends
//! only on its frame, merging the shards gives the same bytes as one machine running everything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{AtomicFile, RunCounts, RunOptions};
use crate::dataset::parquet::ParquetQaWriter;
use crate::dataset::{finish_dataset, DatasetOptions, DatasetSummary, QaCounts, SceneGraphFailure};
use crate::error::{Error, Result};
use crate::models::ModelsInfo;

/// The folder of part files inside an output folder.
pub const PARTS_DIR: &str = "parts";
/// The manifest of a finished shard.
pub const SHARD_FILE: &str = "shard.json";
/// Temporary files (of [`AtomicFile`]) start with this; a killed run leaves them behind and the next run in the
/// folder removes them.
pub const PARTIAL_PREFIX: &str = ".partial-";

/// Which of N shards a run is: it processes the parts `k` with `k mod count == index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole run on one machine.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    pub fn owns(&self, part: usize) -> bool {
        part % self.count == self.index
    }
}

impl std::str::FromStr for Shard {
    type Err = String;

    /// `i/N`, with `0 <= i < N` (Slurm's `$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT` with `--array=0-(N-1)`,
    /// Kubernetes' `$JOB_COMPLETION_INDEX/<completions>`).
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("shard {s:?}: expected i/N, e.g. 0/8"))?;
        let index: usize = i.trim().parse().map_err(|_| format!("shard {s:?}: {i:?} is not a number"))?;
        let count: usize = n.trim().parse().map_err(|_| format!("shard {s:?}: {n:?} is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {s:?}: needs 0 <= i < N"));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The file of one part: `parts/part-000012.<suffix>`.
pub fn part_file(parts_dir: &Path, part: usize, suffix: &str) -> PathBuf {
    parts_dir.join(format!("part-{part:06}.{suffix}"))
}

/// The question files of a part (when the run makes questions), in the order they are concatenated.
pub const QA_SUFFIXES: [&str; 3] = ["llava.jsonl", "openai.jsonl", "qa.parquet"];

/// What one part holds, written as `parts/part-000012.json` once every file of the part is complete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartRecord {
    pub part: usize,
    /// Digest of the program version, the options and the part's manifest entries.
    pub fingerprint: String,
    pub counts: RunCounts,
    /// The question counts, when the run makes questions.
    pub qa: Option<QaCounts>,
    /// Scene-graph lines the templating could not read (line numbers within the part).
    #[serde(default)]
    pub qa_failures: Vec<SceneGraphFailure>,
    /// The template bank's name (`builtin:en` or a path), when the run makes questions.
    pub templates: Option<String>,
    /// Each file of the part (by suffix) and its size in bytes.
    pub files: BTreeMap<String, u64>,
}

impl PartRecord {
    /// Reads the record of `part` when it exists, has this fingerprint and every file it lists is there with its
    /// size; `None` otherwise (the part is to be done again).
    pub fn read_valid(parts_dir: &Path, part: usize, fingerprint: &str) -> Option<PartRecord> {
        Self::read_complete(parts_dir, part).ok().filter(|r| r.fingerprint == fingerprint)
    }

    /// Reads the record of a part that must be complete (merging), checking its files.
    pub fn read_complete(parts_dir: &Path, part: usize) -> Result<PartRecord> {
        let path = part_file(parts_dir, part, "json");
        let bad = |message: String| Error::Parts { path: path.clone(), message };
        let text = std::fs::read(&path).map_err(|e| bad(format!("part {part} is not done ({e})")))?;
        let record: PartRecord = serde_json::from_slice(&text).map_err(|e| bad(format!("not a part record: {e}")))?;
        if record.part != part {
            return Err(bad(format!("holds part {} instead of {part}", record.part)));
        }
        for (suffix, &bytes) in &record.files {
            let file = part_file(parts_dir, part, suffix);
            match std::fs::metadata(&file) {
                Ok(m) if m.len() == bytes => {}
                Ok(m) => return Err(bad(format!("{} has {} bytes, the record says {bytes}", file.display(), m.len()))),
                Err(e) => return Err(bad(format!("{}: {e}", file.display()))),
            }
        }
        Ok(record)
    }

    /// Writes the record (last of the part's files).
    pub fn write(&self, parts_dir: &Path) -> Result<()> {
        let mut f = AtomicFile::create(&part_file(parts_dir, self.part, "json"))?;
        f.write_all(&serde_json::to_vec_pretty(self).unwrap_or_default())?;
        f.commit()?;
        Ok(())
    }
}

/// What a finished shard wrote, as `shard.json`. `spatialsynth merge` checks that the shards it is given are the
/// shards of one run and that every part is there exactly once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardManifest {
    pub spatialsynth: String,
    pub shard: Shard,
    /// Digest of the program version and every option that changes the output.
    pub fingerprint: String,
    pub part_frames: usize,
    pub parts_total: usize,
    /// Frames in the whole run (all shards).
    pub frames_total: usize,
    /// Digest of the run's manifest entries, in order: the shards of one run read the same inputs.
    pub inputs: String,
    /// The parts this shard did.
    pub parts: Vec<usize>,
    pub counts: RunCounts,
    pub backend: String,
    pub models: Option<ModelsInfo>,
    pub options: RunOptions,
    pub dataset: Option<DatasetOptions>,
}

impl ShardManifest {
    pub fn read(dir: &Path) -> Result<ShardManifest> {
        let path = dir.join(SHARD_FILE);
        let text = std::fs::read(&path).map_err(|e| Error::Parts {
            path: path.clone(),
            message: format!("not a finished shard ({e}); run it (again) with --resume"),
        })?;
        serde_json::from_slice(&text).map_err(|e| Error::Parts { path, message: format!("not a shard manifest: {e}") })
    }
}

/// The digest of everything besides the frames that a run's output depends on: the program version, the options,
/// and the contents of the template bank, the model cards, the model files and the image-filter prompts. Settings
/// that change only the speed (`batch_frames`, `in_flight`, the page-locked memory limit, model threads, the ONNX Runtime
/// library's path) are left out.
pub fn run_fingerprint(
    options: &RunOptions,
    dataset: Option<&DatasetOptions>,
    models: Option<&ModelsInfo>,
) -> Result<String> {
    let mut o = options.clone();
    o.batch_frames = 0;
    o.in_flight = 0;
    o.pinned_limit_bytes = None;
    o.open_models_always = false;
    o.models.runtime.intra_threads = 0;
    o.models.runtime.library = None;
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(t) = dataset.and_then(|d| d.templates.as_ref()) {
        files.push(t.clone());
    }
    if let Some(m) = models {
        for card in [&m.detector, &m.segmenter, &m.depth, &m.filter].into_iter().flatten() {
            files.push(card.card_path.clone());
            files.push(card.model_path.clone());
        }
        files.extend(m.filter_prompts.clone());
    }
    let contents =
        files.iter().map(|f| file_digest(f).map(|d| (f.display().to_string(), d))).collect::<Result<Vec<_>>>()?;
    let doc = serde_json::json!({
        "spatialsynth": env!("CARGO_PKG_VERSION"),
        "options": o,
        "dataset": dataset,
        "files": contents,
    });
    Ok(hex(&Sha256::digest(serde_json::to_vec(&doc).unwrap_or_default())))
}

/// SHA-256 of a file's contents, streamed.
fn file_digest(path: &Path) -> Result<String> {
    let io = |source| Error::Io { frame: "-".into(), path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut file, &mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Builds the fingerprint of one part from the run's and the part's manifest entries, in order.
pub struct PartHasher(Sha256);

impl PartHasher {
    pub fn new(run_fingerprint: &str, part: usize) -> Self {
        let mut h = Sha256::new();
        h.update(run_fingerprint.as_bytes());
        h.update((part as u64).to_le_bytes());
        PartHasher(h)
    }

    pub fn add<T: Serialize>(&mut self, tag: u8, item: &T) {
        self.0.update([tag]);
        self.0.update(serde_json::to_vec(item).unwrap_or_default());
        self.0.update([0xff]);
    }

    /// Adds one manifest entry: a frame or a failure found while reading the manifests.
    pub fn add_input(&mut self, item: &super::InputItem) {
        match item {
            super::InputItem::Frame(f) => self.add(0, f),
            super::InputItem::Failure(f) => self.add(1, f),
        }
    }

    pub fn finish(self) -> String {
        hex(&self.0.finalize())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Removes the temporary files a killed run left in `dir` (not recursive).
pub fn remove_partials(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(PARTIAL_PREFIX) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// What [`assemble`] wrote.
pub struct Assembled {
    pub counts: RunCounts,
    pub scene_graphs: PathBuf,
    pub failures: PathBuf,
    pub filtered: Option<PathBuf>,
    pub dataset: Option<DatasetSummary>,
}

/// Concatenates parts, in the order given, into the final files of `out_dir`: `scene_graphs.jsonl`,
/// `failures.jsonl`, `filtered.jsonl` (runs with an image filter) and, for runs that make questions, the dataset
/// (`llava.jsonl`, `openai.jsonl`, `qa.parquet`, `README.md`, `dataset.json`). Streams: memory does not grow with
/// the number of parts. Each file is renamed into place when complete, `dataset.json` last.
pub fn assemble(
    parts: &[(PathBuf, PartRecord)],
    out_dir: &Path,
    filtered: bool,
    dataset: Option<&DatasetOptions>,
) -> Result<Assembled> {
    let copy = |to: &mut AtomicFile, dir: &Path, part: usize, suffix: &str| -> Result<()> {
        let path = part_file(dir, part, suffix);
        let mut from = std::fs::File::open(&path)
            .map_err(|e| Error::Parts { path: path.clone(), message: format!("cannot open: {e}") })?;
        std::io::copy(&mut from, to).map_err(|source| Error::Output { path: path.clone(), source })?;
        Ok(())
    };
    let mut scenes = AtomicFile::create(&out_dir.join("scene_graphs.jsonl"))?;
    let mut fails = AtomicFile::create(&out_dir.join("failures.jsonl"))?;
    let mut filt = match filtered {
        true => Some(AtomicFile::create(&out_dir.join("filtered.jsonl"))?),
        false => None,
    };
    let mut qa_files = match dataset {
        Some(_) => Some((
            AtomicFile::create(&out_dir.join("llava.jsonl"))?,
            AtomicFile::create(&out_dir.join("openai.jsonl"))?,
            ParquetQaWriter::create(&out_dir.join("qa.parquet"))?,
        )),
        None => None,
    };
    let mut counts = RunCounts::default();
    let mut qa_counts = QaCounts::default();
    let mut qa_failures = Vec::new();
    let mut templates = None;
    let mut lines_before = 0usize;
    for (dir, record) in parts {
        let k = record.part;
        counts.add(&record.counts);
        copy(&mut scenes, dir, k, "scenes.jsonl")?;
        copy(&mut fails, dir, k, "failures.jsonl")?;
        if let Some(f) = filt.as_mut() {
            copy(f, dir, k, "filtered.jsonl")?;
        }
        if let Some((llava, chat, table)) = qa_files.as_mut() {
            let missing = || Error::Parts {
                path: part_file(dir, k, "json"),
                message: "this part has no questions, but the run makes them".into(),
            };
            let qa = record.qa.as_ref().ok_or_else(missing)?;
            copy(llava, dir, k, QA_SUFFIXES[0])?;
            copy(chat, dir, k, QA_SUFFIXES[1])?;
            table.append_file(&part_file(dir, k, QA_SUFFIXES[2]))?;
            qa_counts.add(qa);
            qa_failures.extend(
                record.qa_failures.iter().map(|f| SceneGraphFailure { line: f.line + lines_before, ..f.clone() }),
            );
            if templates.is_none() {
                templates = record.templates.clone();
            }
        }
        lines_before += record.counts.frames_ok;
    }
    let scene_graphs = scenes.commit()?;
    let failures = fails.commit()?;
    let filtered = filt.map(AtomicFile::commit).transpose()?;
    let dataset = match (qa_files, dataset) {
        (Some((llava, chat, table)), Some(options)) => {
            llava.commit()?;
            chat.commit()?;
            table.finish()?;
            let mut summary = DatasetSummary {
                scene_graphs: PathBuf::from("scene_graphs.jsonl"),
                counts: qa_counts,
                failures: qa_failures,
                templates: templates.unwrap_or_default(),
                seconds: 0.0,
                files: Vec::new(),
                options: options.clone(),
            };
            finish_dataset(out_dir, &mut summary)?;
            Some(summary)
        }
        _ => None,
    };
    Ok(Assembled { counts, scene_graphs, failures, filtered, dataset })
}

/// What `merge` found in the shards and wrote.
pub struct Merged {
    pub manifest: ShardManifest,
    pub assembled: Assembled,
    pub shards: usize,
}

/// Merges the folders of the N shards of one run into the final files of `out_dir`, as one machine running the
/// whole run would have written them. Refuses shards of different runs (options, program version, part size),
/// a shard given twice, a missing shard or part, and a part whose files do not match its record.
pub fn merge_shards(shard_dirs: &[PathBuf], out_dir: &Path) -> Result<Merged> {
    let Some(first_dir) = shard_dirs.first() else {
        return Err(Error::Config { message: "merge needs at least one shard folder".into() });
    };
    let manifests: Vec<ShardManifest> = shard_dirs.iter().map(|d| ShardManifest::read(d)).collect::<Result<_>>()?;
    for (m, dir) in manifests.iter().zip(shard_dirs) {
        let consistent = m.shard.count > 0
            && m.shard.index < m.shard.count
            && m.part_frames > 0
            && m.parts_total == m.frames_total.div_ceil(m.part_frames).max(1)
            && m.parts.len() <= m.parts_total;
        if !consistent {
            return Err(Error::Parts {
                path: dir.join(SHARD_FILE),
                message: format!(
                    "inconsistent shard manifest (shard {}, {} frames in parts of {}, {} parts)",
                    m.shard, m.frames_total, m.part_frames, m.parts_total
                ),
            });
        }
    }
    let first = &manifests[0];
    let mut owner: Vec<Option<usize>> = vec![None; first.parts_total];
    let mut shards_seen = vec![false; first.shard.count];
    for (i, (m, dir)) in manifests.iter().zip(shard_dirs).enumerate() {
        let bad = |message: String| Error::Parts { path: dir.join(SHARD_FILE), message };
        if m.fingerprint != first.fingerprint
            || m.inputs != first.inputs
            || m.frames_total != first.frames_total
            || m.parts_total != first.parts_total
            || m.part_frames != first.part_frames
            || m.shard.count != first.shard.count
        {
            return Err(bad(format!(
                "not a shard of the same run as {} (other options, program version, inputs or shard count)",
                first_dir.display()
            )));
        }
        if std::mem::replace(&mut shards_seen[m.shard.index], true) {
            return Err(bad(format!("shard {} is given twice", m.shard)));
        }
        for &p in &m.parts {
            match owner.get_mut(p) {
                Some(slot @ None) if m.shard.owns(p) => *slot = Some(i),
                _ => return Err(bad(format!("lists part {p}, which is not its own or is out of range"))),
            }
        }
    }
    if let Some(missing) = shards_seen.iter().position(|s| !s) {
        return Err(Error::Parts {
            path: first_dir.clone(),
            message: format!("shard {missing}/{} is missing: merge needs all {}", first.shard.count, first.shard.count),
        });
    }
    let mut parts = Vec::with_capacity(owner.len());
    for (p, o) in owner.iter().enumerate() {
        let Some(i) = *o else {
            return Err(Error::Parts {
                path: first_dir.clone(),
                message: format!("part {p} is in no shard; rerun its shard with --resume"),
            });
        };
        let dir = shard_dirs[i].join(PARTS_DIR);
        let record = PartRecord::read_complete(&dir, p)?;
        parts.push((dir, record));
    }
    std::fs::create_dir_all(out_dir).map_err(|source| Error::Output { path: out_dir.to_path_buf(), source })?;
    remove_partials(out_dir);
    let filtered = first.options.models.filter.is_some();
    let assembled = assemble(&parts, out_dir, filtered, first.dataset.as_ref())?;
    Ok(Merged { manifest: first.clone(), assembled, shards: manifests.len() })
}
