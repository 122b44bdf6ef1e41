//! Dataset output: scene graphs to question-answer files.
//!
//! - `llava.jsonl`: one line per image, LLaVA conversation format (`id`, `image`, `conversations` with
//!   `from`/`value`, the first human turn prefixed with `<image>\n`), plus `qa`: every pair's provenance;
//! - `openai.jsonl`: one line per image, OpenAI/HF chat format (`messages` with `role` and typed `content`),
//!   plus `qa`;
//! - `qa.parquet`: one row per pair (see [`parquet`]), for pyarrow and Hugging Face `datasets`;
//! - `README.md`: the dataset card (counts per question type, options, schema, licences of the sources);
//! - `dataset.json`: the same counts and options, machine-readable.
//!
//! Every file is written under a temporary name and renamed into place when complete.

pub mod parquet;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::qa::{generate_frame_into, Category, QaOptions, QaRecord, QuestionType, TemplateBank};
use crate::run::AtomicFile;
use crate::scene::SceneGraph;

/// Frames templated together (parsed and generated in parallel, written in order): four per thread, at least 16.
/// A chunk's graphs and lines are in memory at once (about 60 kB per frame).
fn frames_per_chunk() -> usize {
    (4 * rayon::current_num_threads()).max(16)
}

/// Options of a dataset run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetOptions {
    pub qa: QaOptions,
    /// A template bank file (default: the built-in `templates/en.toml`).
    pub templates: Option<PathBuf>,
    /// Image paths under this folder are written relative to it (LLaVA's `image_folder`); others stay as the
    /// scene graphs name them.
    #[serde(default)]
    pub image_root: Option<PathBuf>,
}

impl DatasetOptions {
    /// Checks the options and loads the template bank, so that a run can refuse bad options before its scene
    /// stage.
    pub fn check(&self) -> Result<()> {
        self.qa.validate()?;
        if let Some(path) = &self.templates {
            TemplateBank::load(path)?;
        }
        Ok(())
    }
}

/// A scene graph that could not be read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SceneGraphFailure {
    pub line: usize,
    pub message: String,
}

/// The counts of a dataset, or of one part of it: they add up when parts are merged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QaCounts {
    pub frames: usize,
    pub frames_with_qa: usize,
    /// Frames without a colour image: no questions (they would be about a picture nobody has).
    pub frames_without_image: usize,
    pub qa: usize,
    pub per_category: BTreeMap<Category, usize>,
    /// Pairs per question type (every type listed, zeros included).
    pub per_type: BTreeMap<String, usize>,
    /// Yes/no questions answered yes and no.
    pub answers_yes: usize,
    pub answers_no: usize,
    /// Frames per source dataset (the `dataset/` prefix of frame names).
    pub per_dataset: BTreeMap<String, usize>,
}

impl Default for QaCounts {
    fn default() -> Self {
        QaCounts {
            frames: 0,
            frames_with_qa: 0,
            frames_without_image: 0,
            qa: 0,
            per_category: Category::ALL.iter().map(|c| (*c, 0)).collect(),
            per_type: QuestionType::ALL.iter().map(|t| (t.name().to_string(), 0)).collect(),
            answers_yes: 0,
            answers_no: 0,
            per_dataset: BTreeMap::new(),
        }
    }
}

impl QaCounts {
    /// Adds another part's counts.
    pub fn add(&mut self, o: &QaCounts) {
        self.frames += o.frames;
        self.frames_with_qa += o.frames_with_qa;
        self.frames_without_image += o.frames_without_image;
        self.qa += o.qa;
        for (k, v) in &o.per_category {
            *self.per_category.entry(*k).or_default() += v;
        }
        for (k, v) in &o.per_type {
            *self.per_type.entry(k.clone()).or_default() += v;
        }
        self.answers_yes += o.answers_yes;
        self.answers_no += o.answers_no;
        for (k, v) in &o.per_dataset {
            *self.per_dataset.entry(k.clone()).or_default() += v;
        }
    }
}

/// What a dataset run wrote, as in `dataset.json`. Deterministic: the same scene graphs and options give the
/// same file (the timing is printed, not written).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// The scene graphs the questions were made from (as given to `qa`; `scene_graphs.jsonl` beside the dataset
    /// for `generate`).
    pub scene_graphs: PathBuf,
    #[serde(flatten)]
    pub counts: QaCounts,
    pub failures: Vec<SceneGraphFailure>,
    pub templates: String,
    #[serde(skip)]
    pub seconds: f64,
    /// The files of the dataset, relative to its folder.
    pub files: Vec<PathBuf>,
    pub options: DatasetOptions,
}

impl DatasetSummary {
    pub fn all_ok(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The template bank of a run: loaded once from its file, or the built-in one.
pub(crate) struct Bank(Option<TemplateBank>);

impl Bank {
    pub(crate) fn load(options: &DatasetOptions) -> Result<Self> {
        Ok(Bank(match &options.templates {
            Some(path) => Some(TemplateBank::load(path)?),
            None => None,
        }))
    }

    pub(crate) fn get(&self) -> Result<&TemplateBank> {
        match &self.0 {
            Some(b) => Ok(b),
            None => TemplateBank::builtin(),
        }
    }
}

/// One line of `llava.jsonl`.
#[derive(Serialize)]
struct LlavaRecord<'a> {
    id: &'a str,
    image: Option<&'a str>,
    conversations: Vec<LlavaTurn<'a>>,
    qa: &'a [QaRecord],
}

#[derive(Serialize)]
struct LlavaTurn<'a> {
    from: &'static str,
    value: std::borrow::Cow<'a, str>,
}

/// One line of `openai.jsonl`.
#[derive(Serialize)]
struct ChatRecord<'a> {
    id: &'a str,
    image: Option<&'a str>,
    messages: Vec<ChatMessage<'a>>,
    qa: &'a [QaRecord],
}

#[derive(Serialize)]
struct ChatMessage<'a> {
    role: &'static str,
    content: Vec<ChatContent<'a>>,
}

#[derive(Serialize)]
struct ChatContent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
}

/// The JSON lines of one frame's pairs: (LLaVA, OpenAI chat).
fn frame_lines(frame: &str, image: Option<&str>, qa: &[QaRecord]) -> serde_json::Result<(Vec<u8>, Vec<u8>)> {
    let mut conversations = Vec::with_capacity(2 * qa.len());
    let mut messages = Vec::with_capacity(2 * qa.len());
    for (i, r) in qa.iter().enumerate() {
        let question = match i {
            0 => std::borrow::Cow::Owned(format!("<image>\n{}", r.question)),
            _ => std::borrow::Cow::Borrowed(r.question.as_str()),
        };
        conversations.push(LlavaTurn { from: "human", value: question });
        conversations.push(LlavaTurn { from: "gpt", value: std::borrow::Cow::Borrowed(r.answer.as_str()) });
        let mut content = Vec::with_capacity(2);
        if i == 0 {
            content.push(ChatContent { kind: "image", text: None });
        }
        content.push(ChatContent { kind: "text", text: Some(&r.question) });
        messages.push(ChatMessage { role: "user", content });
        messages.push(ChatMessage {
            role: "assistant",
            content: vec![ChatContent { kind: "text", text: Some(&r.answer) }],
        });
    }
    let mut llava = serde_json::to_vec(&LlavaRecord { id: frame, image, conversations, qa })?;
    llava.push(b'\n');
    let mut chat = serde_json::to_vec(&ChatRecord { id: frame, image, messages, qa })?;
    chat.push(b'\n');
    Ok((llava, chat))
}

struct FrameOutput {
    frame: String,
    has_image: bool,
    qa: Vec<QaRecord>,
    llava: Vec<u8>,
    chat: Vec<u8>,
}

/// The question files of a dataset (or of one part): LLaVA and chat JSON Lines and the Parquet table, each
/// renamed into place on [`QaSink::finish`].
pub(crate) struct QaSink {
    llava: AtomicFile,
    chat: AtomicFile,
    table: parquet::ParquetQaWriter,
    pub(crate) counts: QaCounts,
    pub(crate) failures: Vec<SceneGraphFailure>,
}

impl QaSink {
    /// Creates `<prefix>llava.jsonl`, `<prefix>openai.jsonl` and `<prefix>qa.parquet` in `dir`.
    pub(crate) fn create(dir: &Path, prefix: &str) -> Result<Self> {
        Ok(QaSink {
            llava: AtomicFile::create(&dir.join(format!("{prefix}llava.jsonl")))?,
            chat: AtomicFile::create(&dir.join(format!("{prefix}openai.jsonl")))?,
            table: parquet::ParquetQaWriter::create(&dir.join(format!("{prefix}qa.parquet")))?,
            counts: QaCounts::default(),
            failures: Vec::new(),
        })
    }

    /// Templates every scene graph of `input` (JSON Lines; `source` names it in errors), a chunk of frames at a
    /// time: parsed and generated in parallel, written in order.
    pub(crate) fn template(
        &mut self,
        input: impl BufRead,
        source: &Path,
        bank: &TemplateBank,
        options: &DatasetOptions,
    ) -> Result<()> {
        let mut lines = input.lines().enumerate();
        loop {
            let mut chunk: Vec<(usize, String)> = Vec::with_capacity(frames_per_chunk());
            for (i, line) in lines.by_ref() {
                let line = line.map_err(|e| Error::SceneGraph {
                    path: source.to_path_buf(),
                    line: Some(i + 1),
                    message: format!("cannot read: {e}"),
                })?;
                if !line.trim().is_empty() {
                    chunk.push((i + 1, line));
                }
                if chunk.len() == frames_per_chunk() {
                    break;
                }
            }
            if chunk.is_empty() {
                return Ok(());
            }
            let outputs: Vec<std::result::Result<FrameOutput, SceneGraphFailure>> =
                chunk.par_iter().map(|(line_no, line)| frame_output(*line_no, line, bank, options)).collect();
            for out in outputs {
                match out {
                    Ok(f) => self.push(f)?,
                    Err(failure) => self.failures.push(failure),
                }
            }
        }
    }

    fn push(&mut self, f: FrameOutput) -> Result<()> {
        let c = &mut self.counts;
        c.frames += 1;
        c.frames_without_image += usize::from(!f.has_image);
        let dataset = f.frame.split_once('/').map_or("-", |(d, _)| d).to_string();
        *c.per_dataset.entry(dataset).or_default() += 1;
        if f.qa.is_empty() {
            return Ok(());
        }
        c.frames_with_qa += 1;
        c.qa += f.qa.len();
        for r in &f.qa {
            *c.per_category.entry(r.category).or_default() += 1;
            *c.per_type.entry(r.question_type.name().to_string()).or_default() += 1;
            match r.answer_bool {
                Some(true) => c.answers_yes += 1,
                Some(false) => c.answers_no += 1,
                None => {}
            }
        }
        self.llava.write_all(&f.llava)?;
        self.chat.write_all(&f.chat)?;
        self.table.push(&f.qa)
    }

    /// Renames the three files into place; returns their paths.
    pub(crate) fn finish(self) -> Result<(Vec<PathBuf>, QaCounts, Vec<SceneGraphFailure>)> {
        let files = vec![self.llava.commit()?, self.chat.commit()?, self.table.finish()?];
        Ok((files, self.counts, self.failures))
    }
}

/// One scene-graph line to its question-answer pairs and their JSON lines.
fn frame_output(
    line_no: usize,
    line: &str,
    bank: &TemplateBank,
    options: &DatasetOptions,
) -> std::result::Result<FrameOutput, SceneGraphFailure> {
    let fail = |message: String| SceneGraphFailure { line: line_no, message };
    let mut graph: SceneGraph = serde_json::from_str(line).map_err(|e| fail(format!("not a scene graph: {e}")))?;
    if let (Some(root), Some(color)) = (&options.image_root, &graph.color) {
        if let Ok(rel) = Path::new(color).strip_prefix(root) {
            graph.color = Some(rel.display().to_string());
        }
    }
    let mut qa = Vec::new();
    // Questions about a picture need the picture: frames without a colour image get none.
    if graph.color.is_some() {
        generate_frame_into(&graph, bank, &options.qa, &mut qa);
    }
    let (l, c) = match qa.is_empty() {
        true => (Vec::new(), Vec::new()),
        false => frame_lines(&graph.frame, graph.color.as_deref(), &qa)
            .map_err(|e| fail(format!("frame {}: cannot serialise: {e}", graph.frame)))?,
    };
    Ok(FrameOutput { frame: graph.frame, has_image: graph.color.is_some(), qa, llava: l, chat: c })
}

/// Templates every scene graph of `scene_graphs` (JSON Lines, as `spatialsynth scene` writes) into `out_dir`.
///
/// Malformed lines are listed in the summary's `failures` and skipped; the rest is written. Output is
/// deterministic in (scene graphs, options) and independent of the thread count.
pub fn write_dataset(scene_graphs: &Path, out_dir: &Path, options: &DatasetOptions) -> Result<DatasetSummary> {
    let start = Instant::now();
    options.qa.validate()?;
    let bank = Bank::load(options)?;
    let bank = bank.get()?;
    let input = std::fs::File::open(scene_graphs).map_err(|e| Error::SceneGraph {
        path: scene_graphs.to_path_buf(),
        line: None,
        message: format!("cannot open: {e}"),
    })?;
    std::fs::create_dir_all(out_dir).map_err(|source| Error::Output { path: out_dir.to_path_buf(), source })?;
    let mut sink = QaSink::create(out_dir, "")?;
    sink.template(BufReader::new(input), scene_graphs, bank, options)?;
    let (_, counts, failures) = sink.finish()?;
    let mut summary = DatasetSummary {
        scene_graphs: scene_graphs.to_path_buf(),
        counts,
        failures,
        templates: bank.source.clone(),
        seconds: 0.0,
        files: Vec::new(),
        options: options.clone(),
    };
    finish_dataset(out_dir, &mut summary)?;
    summary.seconds = start.elapsed().as_secs_f64();
    Ok(summary)
}

/// Writes the dataset card (`README.md`) and `dataset.json` beside the question files, `dataset.json` last.
pub(crate) fn finish_dataset(out_dir: &Path, summary: &mut DatasetSummary) -> Result<()> {
    summary.files =
        ["llava.jsonl", "openai.jsonl", "qa.parquet", "README.md", "dataset.json"].iter().map(PathBuf::from).collect();
    let mut card = AtomicFile::create(&out_dir.join("README.md"))?;
    card.write_all(dataset_card(summary).as_bytes())?;
    card.commit()?;
    let mut json = AtomicFile::create(&out_dir.join("dataset.json"))?;
    json.write_all(&serde_json::to_vec_pretty(summary).unwrap_or_default())?;
    json.commit()?;
    Ok(())
}

/// The dataset card's sentence on partly hidden objects, for the rules that are on.
fn hidden_rule(m: &crate::qa::Margins) -> String {
    let mut when = Vec::new();
    if let Some(px) = m.cut_off_px {
        when.push(format!("its box comes within {px} px of the image's border"));
    }
    if let Some(f) = m.occluded_fraction {
        when.push(format!("something is in front of it along {:.0}% or more of one side of its box", 100.0 * f));
    }
    if !m.floor_standing.is_empty() {
        let classes: Vec<&str> = m.floor_standing.iter().take(3).map(String::as_str).collect();
        let more = if m.floor_standing.len() > 3 { ", ..." } else { "" };
        when.push(format!(
            "it stands on the floor by its class ({}{more}) but its lowest visible point is more than {} m above the \
             ground found",
            classes.join(", "),
            m.ground_contact_m
        ));
    }
    let Some(last) = when.pop() else { return String::new() };
    let joined = if when.is_empty() { last } else { format!("{} or {last}", when.join(", ")) };
    let placed = match (m.cut_off_px, m.cut_off_positions) {
        (Some(_), false) => {
            " The position of an object at the image's border is not asked either (where it is, how far, which \
             way): its part out of view may lie anywhere beyond that edge."
        }
        _ => "",
    };
    format!(
        " An object is partly hidden when {joined}: its sizes and gaps are not asked, it is compared in size only \
         when it is the larger one, whether a robot can pass beside it is asked only when it cannot (the gap then \
         given as \"at most\", `value_at_most`), and called above, below, left or right of another only where its \
         hidden part cannot turn the answer.{placed}"
    )
}

/// The dataset card written as `README.md` beside the data.
pub fn dataset_card(s: &DatasetSummary) -> String {
    use std::fmt::Write;
    let mut c = String::new();
    let o = &s.options.qa;
    let _ = writeln!(c, "# Spatial question-answer dataset\n");
    let _ = writeln!(
        c,
        "Generated by spatialsynth {} from `{}`: {} frames, {} with questions, **{} question-answer pairs**.\n",
        env!("CARGO_PKG_VERSION"),
        s.scene_graphs.file_name().map_or(s.scene_graphs.display(), |n| std::path::Path::new(n).display()),
        s.counts.frames,
        s.counts.frames_with_qa,
        s.counts.qa
    );
    let _ = writeln!(
        c,
        "Every answer is computed from the frame's metric 3D scene graph (ground-aligned, objects denoised). \
         Yes/no and comparison questions are only asked when the measured margin clears the measurement's \
         uncertainty (k_sigma = {}, at least {} m; sizes at least {:.0}% apart; volumes a ratio of {}), so \
         near-ties are never labelled.{} Objects are named so that a reader can tell them apart; objects that \
         cannot be told apart are left out, and no object is compared on the relation its name comes from (\"the \
         leftmost chair\" is not compared left/right with another chair).\n",
        o.margins.k_sigma,
        o.margins.min_margin_m,
        100.0 * o.margins.min_size_ratio,
        o.margins.min_volume_ratio,
        hidden_rule(&o.margins)
    );
    let _ = writeln!(c, "## Files\n");
    let _ = writeln!(c, "- `llava.jsonl`: one line per image in LLaVA conversation format, with `qa` provenance.");
    let _ = writeln!(c, "- `openai.jsonl`: one line per image in OpenAI/HF chat `messages` format, with `qa`.");
    let _ = writeln!(c, "- `qa.parquet`: one row per question-answer pair (pyarrow, Hugging Face `datasets`).");
    let _ = writeln!(c, "- `dataset.json`: these counts and the options, machine-readable.\n");
    let _ = writeln!(c, "## Counts\n");
    let _ = writeln!(c, "| category | pairs |\n|---|---|");
    for (cat, n) in &s.counts.per_category {
        let _ = writeln!(c, "| {} | {n} |", cat.name());
    }
    let binary = s.counts.answers_yes + s.counts.answers_no;
    let _ = writeln!(
        c,
        "\nYes/no answers: {} yes, {} no ({:.1}% yes).\n",
        s.counts.answers_yes,
        s.counts.answers_no,
        if binary > 0 { 100.0 * s.counts.answers_yes as f64 / binary as f64 } else { 0.0 }
    );
    let _ = writeln!(c, "| question type | category | pairs |\n|---|---|---|");
    for &t in QuestionType::ALL {
        let _ = writeln!(
            c,
            "| `{}` | {} | {} |",
            t.name(),
            t.category().name(),
            s.counts.per_type.get(t.name()).unwrap_or(&0)
        );
    }
    let _ = writeln!(c, "\n## Sources\n");
    let _ = writeln!(c, "| dataset | frames |\n|---|---|");
    for (d, n) in &s.counts.per_dataset {
        let _ = writeln!(c, "| {d} | {n} |");
    }
    let _ = writeln!(
        c,
        "\nThe questions inherit the licences of their source images; see each source's manifest and licence \
         notes. Images are referenced by path (`image`), not copied.\n"
    );
    let _ = writeln!(c, "## Generation options\n");
    let _ = writeln!(
        c,
        "Seed {}, up to {} questions per image, units {:?}, templates `{}`. Same scene graphs + same options = \
         byte-identical files (timings in `dataset.json` aside).\n",
        o.seed, o.qa_per_image, o.units, s.templates
    );
    let _ = writeln!(c, "```json\n{}\n```\n", serde_json::to_string_pretty(&s.options).unwrap_or_default());
    let _ = writeln!(c, "## Loading\n");
    let _ = writeln!(
        c,
        "```python\nimport pyarrow.parquet as pq\nrows = pq.read_table(\"qa.parquet\").to_pylist()\n\n\
         from datasets import load_dataset\nds = load_dataset(\"parquet\", data_files=\"qa.parquet\")[\"train\"]\n```\n"
    );
    let _ = writeln!(
        c,
        "Parquet columns: `id`, `image` {{bytes, path}}, `messages` [{{role, content: [{{type, text}}]}}], `frame`, \
         `question`, `answer`, `question_type`, `category`, `objects`, `labels`, `references`, `answer_bool`, \
         `answer_object`, `value` (metres, or the clock hour), `unit`, `margin`, `threshold`, `robot_width_m`, \
         `value_at_most` (true when `value` is only an upper bound), `unit_system`, `question_template`, \
         `answer_template`."
    );
    if !s.failures.is_empty() {
        let _ =
            writeln!(c, "\n## Failures\n\n{} scene graphs could not be read (see `dataset.json`).", s.failures.len());
    }
    c
}

#[cfg(test)]
mod tests {
    use super::hidden_rule;
    use crate::qa::Margins;

    #[test]
    fn the_card_states_the_hidden_object_rules_that_are_on() {
        let card = |cut_off_px, occluded_fraction, floor: bool| {
            let floor_standing = if floor { Margins::default().floor_standing } else { Vec::new() };
            hidden_rule(&Margins { cut_off_px, occluded_fraction, floor_standing, ..Margins::default() })
        };
        assert_eq!(card(None, None, false), "");
        let border = card(Some(2.0), None, false);
        assert!(border.contains("when its box comes within 2 px of the image's border:"), "{border}");
        let front = card(None, Some(0.5), false);
        assert!(front.contains("along 50% or more of one side") && !front.contains("border"), "{front}");
        let floor = card(None, None, true);
        assert!(
            floor.contains("(person, chair, armchair, ...)") && floor.contains("more than 0.15 m above"),
            "{floor}"
        );
        let all = card(Some(3.0), Some(0.25), true);
        assert!(all.contains("within 3 px of the image's border, something is in front"), "{all}");
        assert!(all.contains("along 25% or more of one side of its box or it stands on the floor"), "{all}");
        // The position of an object at the border is not asked, unless `cut_off_positions`.
        let border_placed = hidden_rule(&Margins { cut_off_positions: true, ..Margins::default() });
        let unplaced = " The position of an object at the image's border is not asked either (where it is, how far, \
                        which way): its part out of view may lie anywhere beyond that edge.";
        for text in [&border, &front, &floor, &all, &border_placed] {
            assert!(text.starts_with(" An object is partly hidden when "), "{text}");
            let at_border = text.contains("border:") || text.contains("border,");
            let tail = if at_border && !std::ptr::eq(text, &border_placed) { unplaced } else { "" };
            assert!(text.ends_with(&format!("turn the answer.{tail}")), "{text}");
        }
    }
}
