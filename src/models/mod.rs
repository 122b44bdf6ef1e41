//! The model runner: detection, segmentation, metric depth and image filtering through ONNX Runtime (`ort`), so
//! that frames without annotations, or without depth, become scenes.
//!
//! Each model is described by a card ([`card`]); the built-in detector (YOLOX-nano, COCO) and segmenter
//! (DeepLabv3, PASCAL VOC) ship in `models/`. [`ModelSet::open`] loads every card and model and checks them
//! against each other before any frame is processed; [`ModelSet::process_batch`] runs the models a batch of
//! frames needs, in batches as large as each model allows.

pub mod card;
pub mod decode;
pub mod fuse;
pub mod preprocess;
pub mod runtime;
pub mod session;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::geometry::unproject::{DepthData, DepthImage};
use crate::io::{DepthSource, LoadedFrame};
use card::{load_card, ModelCard};
use decode::{decode_depth_map, decode_semantic, decode_yolox, normalized, Detection, SemanticMap};
use fuse::{class_map, objects_from_detections, FuseParams};
use preprocess::{write_input, InputTransform};
use runtime::{environment, resolve_device, RuntimeOptions};
use session::ModelSession;

/// Where a frame's objects come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ObjectsMode {
    /// The manifest's annotations where a frame has them; the detector for frames without.
    #[default]
    Auto,
    /// Only the manifest's annotations; never run the detector.
    Given,
    /// The detector for every frame (annotations ignored).
    Detect,
}

impl ObjectsMode {
    /// Whether a frame with (or without) annotations gets its objects from the detector.
    pub fn detects(self, has_annotations: bool) -> bool {
        match self {
            ObjectsMode::Given => false,
            ObjectsMode::Auto => !has_annotations,
            ObjectsMode::Detect => true,
        }
    }
}

/// Which models a run uses. Cards are paths to TOML files; `None` leaves a model out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelOptions {
    pub detector: Option<PathBuf>,
    pub segmenter: Option<PathBuf>,
    /// A metric depth model, for frames without a depth file.
    pub depth: Option<PathBuf>,
    /// An image-embedding model and the file of text-prompt embeddings it is compared with.
    pub filter: Option<PathBuf>,
    pub filter_prompts: Option<PathBuf>,
    pub runtime: RuntimeOptions,
    pub fuse: FuseParams,
}

impl Default for ModelOptions {
    /// The built-in detector and segmenter; no depth model, no filter.
    fn default() -> Self {
        ModelOptions {
            detector: Some(card::builtin_detector()),
            segmenter: Some(card::builtin_segmenter()),
            depth: None,
            filter: None,
            filter_prompts: None,
            runtime: RuntimeOptions::default(),
            fuse: FuseParams::default(),
        }
    }
}

/// One text prompt of the image filter, with its embedding (from the text tower of the same model).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    pub text: String,
    /// Whether an image whose best-scoring prompt is this one is kept.
    pub keep: bool,
    pub embedding: Vec<f32>,
}

/// The image filter's prompts file: `{"prompts": [{"text": …, "keep": true, "embedding": [...]}, …]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSet {
    #[serde(default)]
    pub description: Option<String>,
    pub prompts: Vec<Prompt>,
}

/// Parses and checks a prompts file's text: at least one prompt, one keep prompt, equal non-zero finite
/// embeddings.
pub fn parse_prompts(text: &str, path: &Path) -> Result<PromptSet> {
    let bad = |message: String| Error::Model { path: path.to_path_buf(), message };
    let mut set: PromptSet = serde_json::from_str(text).map_err(|e| bad(format!("malformed prompts file: {e}")))?;
    let Some(first) = set.prompts.first() else { return Err(bad("the prompts file has no prompt".into())) };
    let dims = first.embedding.len();
    if dims == 0 {
        return Err(bad("prompt embeddings must not be empty".into()));
    }
    if !set.prompts.iter().any(|p| p.keep) {
        return Err(bad("no prompt has keep = true: every image would be rejected".into()));
    }
    for p in &mut set.prompts {
        if p.embedding.len() != dims {
            return Err(bad(format!("prompt {:?} has {} dims, the first has {dims}", p.text, p.embedding.len())));
        }
        if !p.embedding.iter().all(|v| v.is_finite()) || p.embedding.iter().all(|&v| v == 0.0) {
            return Err(bad(format!("prompt {:?}: embedding must be finite and non-zero", p.text)));
        }
        p.embedding = normalized(&p.embedding);
    }
    Ok(set)
}

/// The image filter's verdict on a frame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilterDecision {
    pub kept: bool,
    /// The best-scoring prompt and its cosine similarity.
    pub prompt: String,
    pub score: f32,
}

/// What was used, for `run.json` and the scene graphs' provenance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelsInfo {
    pub library: PathBuf,
    pub device: String,
    pub detector: Option<ModelCard>,
    pub segmenter: Option<ModelCard>,
    pub depth: Option<ModelCard>,
    pub filter: Option<ModelCard>,
    pub filter_prompts: Option<PathBuf>,
}

/// Seconds spent in each model stage (inference with its pre- and post-processing).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelTimes {
    pub filter_s: f64,
    pub depth_s: f64,
    pub detect_s: f64,
    pub segment_s: f64,
    pub detected_frames: usize,
    pub detections: usize,
}

/// Opened models, ready to run on batches of frames.
#[derive(Debug)]
pub struct ModelSet {
    pub detector: Option<ModelSession>,
    pub segmenter: Option<ModelSession>,
    pub depth: Option<ModelSession>,
    pub filter: Option<(ModelSession, PromptSet)>,
    class_map: Vec<Option<u16>>,
    fuse: FuseParams,
    library: PathBuf,
    device: &'static str,
    filter_prompts: Option<PathBuf>,
}

impl ModelSet {
    /// Loads every card, then ONNX Runtime, then every model, checking each against its card. All of this happens
    /// before any frame is processed: a bad card or model is an error naming it.
    pub fn open(options: &ModelOptions) -> Result<Self> {
        let load = |p: &Option<PathBuf>, want: &str| -> Result<Option<ModelCard>> {
            let Some(p) = p else { return Ok(None) };
            let card = load_card(p)?;
            if card.output.decode.task() != want {
                return Err(Error::Model {
                    path: p.clone(),
                    message: format!(
                        "this card decodes `{:?}` ({}), but it was given as the {want} model",
                        card.output.decode,
                        card.output.decode.task()
                    ),
                });
            }
            Ok(Some(card))
        };
        let detector = load(&options.detector, "detector")?;
        let segmenter = load(&options.segmenter, "segmenter")?;
        let depth = load(&options.depth, "depth")?;
        let filter = load(&options.filter, "embedding")?;
        let prompts = match (&filter, &options.filter_prompts) {
            (Some(_), Some(p)) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::Model {
                    path: p.clone(),
                    message: format!("cannot read the prompts file: {e}"),
                })?;
                Some(parse_prompts(&text, p)?)
            }
            (Some(c), None) => {
                return Err(Error::Model {
                    path: c.card_path.clone(),
                    message: "an image filter needs a prompts file (--filter-prompts)".into(),
                })
            }
            (None, Some(p)) => {
                return Err(Error::Model { path: p.clone(), message: "a prompts file needs a filter model".into() })
            }
            (None, None) => None,
        };
        if segmenter.is_some() && detector.is_none() {
            return Err(Error::Model {
                path: options.segmenter.clone().unwrap_or_default(),
                message: "the segmenter refines detections: it needs a detector".into(),
            });
        }
        let (env, library) = environment(options.runtime.library.as_deref())?;
        let device = resolve_device(options.runtime.device)?;
        let threads = options.runtime.intra_threads;
        let open = |c: Option<ModelCard>| c.map(|c| ModelSession::open(c, env, device, threads)).transpose();
        let detector = open(detector)?;
        let segmenter = open(segmenter)?;
        let depth = open(depth)?;
        let filter = match (open(filter)?, prompts) {
            (Some(s), Some(p)) => {
                let dims = p.prompts[0].embedding.len();
                if s.output_shape.get(1).is_some_and(|&d| d >= 0 && d as usize != dims) {
                    return Err(Error::Model {
                        path: s.model_path().to_path_buf(),
                        message: format!(
                            "its embedding has {} dims but the prompts in {} have {dims}",
                            s.output_shape[1],
                            options.filter_prompts.as_deref().unwrap_or(Path::new("?")).display()
                        ),
                    });
                }
                Some((s, p))
            }
            _ => None,
        };
        let class_map = match (&detector, &segmenter) {
            (Some(d), Some(s)) => class_map(&d.card, &s.card),
            _ => Vec::new(),
        };
        Ok(ModelSet {
            detector,
            segmenter,
            depth,
            filter,
            class_map,
            fuse: options.fuse.clone(),
            library: library.to_path_buf(),
            device,
            filter_prompts: options.filter_prompts.clone(),
        })
    }

    /// What is loaded: library, device and each model's card.
    pub fn info(&self) -> ModelsInfo {
        ModelsInfo {
            library: self.library.clone(),
            device: self.device.to_string(),
            detector: self.detector.as_ref().map(|s| s.card.clone()),
            segmenter: self.segmenter.as_ref().map(|s| s.card.clone()),
            depth: self.depth.as_ref().map(|s| s.card.clone()),
            filter: self.filter.as_ref().map(|(s, _)| s.card.clone()),
            filter_prompts: self.filter_prompts.clone(),
        }
    }

    /// Detector classes that the segmenter can refine (detector class name → segmenter class name).
    pub fn refinable_classes(&self) -> Vec<(String, String)> {
        match (&self.detector, &self.segmenter) {
            (Some(d), Some(s)) => self
                .class_map
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    c.map(|c| (d.card.output.classes[i].clone(), s.card.output.classes[c as usize].clone()))
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Runs what each frame of the batch needs, in place: the image filter (when configured), the depth model
    /// (frames without depth), the detector and segmenter (frames without objects under `mode`). A frame that a
    /// model fails on becomes an error; the others go on.
    pub fn process_batch(&mut self, frames: &mut [Result<LoadedFrame>], mode: ObjectsMode, times: &mut ModelTimes) {
        // 1. Image filter.
        if let Some((session, prompts)) = &mut self.filter {
            let t = Instant::now();
            // Frames without a colour image cannot be judged: they pass.
            let todo: Vec<usize> = ok_indices(frames, |f| f.color.is_some());
            run_batched(session, frames, &todo, |f, shape, out| {
                let dims = shape.get(1).copied().unwrap_or(0);
                if dims != prompts.prompts[0].embedding.len() {
                    return Err(format!(
                        "the model's embedding has {dims} dims, the prompts have {}",
                        prompts.prompts[0].embedding.len()
                    ));
                }
                let e = if f.0.output.normalize { normalized(out) } else { out.to_vec() };
                let (best, score) = prompts
                    .prompts
                    .iter()
                    .map(|p| (p, p.embedding.iter().zip(&e).map(|(a, b)| a * b).sum::<f32>()))
                    .fold((None, f32::NEG_INFINITY), |acc, (p, s)| if s > acc.1 { (Some(p), s) } else { acc });
                let best = best.ok_or("no prompt scored")?;
                f.1.image_filter = Some(FilterDecision { kept: best.keep, prompt: best.text.clone(), score });
                Ok(())
            });
            times.filter_s += t.elapsed().as_secs_f64();
        }
        let rejected = |f: &LoadedFrame| f.image_filter.as_ref().is_some_and(|d| !d.kept);

        // 2. Depth model for frames without depth.
        if let Some(session) = &mut self.depth {
            let t = Instant::now();
            let todo = ok_indices(frames, |f| f.depth.is_none() && !rejected(f));
            let name = session.card.model.name.clone();
            run_batched(session, frames, &todo, |f, shape, out| {
                let (card, t) = (&f.0, f.2);
                let metres = decode_depth_map(out, shape, card, &t)?;
                let frame = &mut *f.1;
                let depth = DepthImage { width: t.frame_w, height: t.frame_h, data: DepthData::F32 { values: metres } };
                if !depth.any_valid() {
                    return Err("the depth model gave no valid depth (all outside the card's range)".into());
                }
                frame.depth = Some(depth);
                frame.depth_source = DepthSource::Model { model: name.clone() };
                Ok(())
            });
            times.depth_s += t.elapsed().as_secs_f64();
        }

        // 3. Detector (and segmenter) for frames whose objects are not given.
        // Frames without a colour image keep their annotations (or have no objects).
        let wants_detection =
            |f: &LoadedFrame| f.color.is_some() && !rejected(f) && mode.detects(f.spec.has_annotations());
        let Some(detector) = &mut self.detector else { return };
        let todo = ok_indices(frames, wants_detection);
        if todo.is_empty() {
            return;
        }
        let t = Instant::now();
        let mut detections: Vec<Option<Vec<Detection>>> = vec![None; frames.len()];
        run_batched(detector, frames, &todo, |f, shape, out| {
            detections[f.3] = Some(decode_yolox(out, shape, f.0, &f.2)?);
            Ok(())
        });
        times.detect_s += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut semantic: Vec<Option<SemanticMap>> = vec![None; frames.len()];
        if let Some(segmenter) = &mut self.segmenter {
            // Only frames with a detection the segmenter can refine.
            let cmap = &self.class_map;
            let seg_todo: Vec<usize> = todo
                .iter()
                .copied()
                .filter(|&i| {
                    detections[i].as_ref().is_some_and(|d| {
                        d.iter().any(|det| cmap.get(det.class_id as usize).copied().flatten().is_some())
                    })
                })
                .filter(|&i| frames[i].is_ok())
                .collect();
            run_batched(segmenter, frames, &seg_todo, |f, shape, out| {
                semantic[f.3] = Some(decode_semantic(out, shape, f.0, &f.2)?);
                Ok(())
            });
        }
        times.segment_s += t.elapsed().as_secs_f64();
        for &i in &todo {
            let (Ok(frame), Some(dets)) = (&mut frames[i], detections[i].take()) else { continue };
            let sem = semantic[i].as_ref().map(|m| (m, self.class_map.as_slice()));
            let (w, h) = (frame.intrinsics.width, frame.intrinsics.height);
            if let Some((m, _)) = sem {
                if (m.width, m.height) != (w, h) {
                    let path = self.segmenter.as_ref().map(|m| m.model_path().to_path_buf()).unwrap_or_default();
                    let frame = frame.spec.key.clone();
                    let message = format!("segmentation is {}x{} but the frame is {w}x{h}", m.width, m.height);
                    frames[i] = Err(Error::Inference { frame, path, message });
                    continue;
                }
            }
            let (labels, objects) = objects_from_detections(&dets, sem, w, h, &self.fuse);
            times.detected_frames += 1;
            times.detections += objects.len();
            frame.instance_labels = labels;
            frame.objects = objects;
        }
    }
}

fn ok_indices(frames: &[Result<LoadedFrame>], pred: impl Fn(&LoadedFrame) -> bool) -> Vec<usize> {
    frames.iter().enumerate().filter_map(|(i, f)| f.as_ref().ok().filter(|f| pred(f)).map(|_| i)).collect()
}

/// Runs `session` on the frames `todo` (indices into `frames`; each must have its colour image), as many per
/// call as the model takes, and hands each frame's output to `each((card, frame, transform, index),
/// output_shape_of_one, output)`. A failed call fails its frames; a failed decode (or a non-finite output where
/// that is an error) fails that frame only. Errors name each frame and the model.
fn run_batched(
    session: &mut ModelSession,
    frames: &mut [Result<LoadedFrame>],
    todo: &[usize],
    mut each: impl FnMut(
        (&ModelCard, &mut LoadedFrame, InputTransform, usize),
        &[usize],
        &[f32],
    ) -> std::result::Result<(), String>,
) {
    let per_call = session.card.input.frames_per_call();
    let slot = 3 * session.card.input.width as usize * session.card.input.height as usize;
    let model_path = session.model_path().to_path_buf();
    let fail = |frames: &mut [Result<LoadedFrame>], i: usize, message: String| {
        if let Ok(f) = &frames[i] {
            let frame = f.spec.key.clone();
            frames[i] = Err(Error::Inference { frame, path: model_path.clone(), message });
        }
    };
    let ready: Vec<usize> =
        todo.iter().copied().filter(|&i| frames[i].as_ref().is_ok_and(|f| f.color.is_some())).collect();
    let mut input = vec![0f32; slot * per_call];
    for call in ready.chunks(per_call) {
        let n = call.len();
        // A fixed-batch model gets exactly its batch (unused slots zeroed); a dynamic one the frames of this call.
        let batch = if session.card.input.batch == 0 { n } else { per_call };
        let mut fed: Vec<(usize, InputTransform)> = Vec::with_capacity(n);
        for &i in call {
            if let Ok(LoadedFrame { color: Some(img), .. }) = &frames[i] {
                let k = fed.len();
                fed.push((i, write_input(img, &session.card.input, &mut input[k * slot..(k + 1) * slot])));
            }
        }
        input[fed.len() * slot..batch * slot].fill(0.0);
        match session.run(&input[..batch * slot], batch) {
            Ok((shape, out)) => {
                let per_frame: usize = shape[1..].iter().product();
                let mut one_shape = shape.clone();
                one_shape[0] = 1;
                for (k, &(i, t)) in fed.iter().enumerate() {
                    let values = &out[k * per_frame..(k + 1) * per_frame];
                    if session.rejects_non_finite() {
                        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
                            fail(frames, i, format!("non-finite value in the output at index {bad}"));
                            continue;
                        }
                    }
                    let Ok(f) = &mut frames[i] else { continue };
                    if let Err(message) = each((&session.card, f, t, i), &one_shape, values) {
                        fail(frames, i, message);
                    }
                }
            }
            Err(message) => {
                for &(i, _) in &fed {
                    fail(frames, i, message.clone());
                }
            }
        }
    }
}

impl ModelSet {
    /// Runs only the detector on one colour image (pre-processing, inference, decoding): for tests, benchmarks and
    /// library users who want detections without the geometry.
    pub fn detect(&mut self, frame: &str, image: &image::RgbImage) -> Result<Vec<Detection>> {
        let detector = self.detector.as_mut().ok_or_else(|| Error::Runtime { message: "no detector loaded".into() })?;
        run_single(detector, frame, image, |card, shape, out, t| decode_yolox(out, shape, card, t))
    }

    /// Runs only the segmenter on one colour image; the class map has the image's size.
    pub fn segment(&mut self, frame: &str, image: &image::RgbImage) -> Result<SemanticMap> {
        let seg = self.segmenter.as_mut().ok_or_else(|| Error::Runtime { message: "no segmenter loaded".into() })?;
        run_single(seg, frame, image, |card, shape, out, t| decode_semantic(out, shape, card, t))
    }
}

fn run_single<T>(
    session: &mut ModelSession,
    frame: &str,
    image: &image::RgbImage,
    decode: impl FnOnce(&ModelCard, &[usize], &[f32], &InputTransform) -> std::result::Result<T, String>,
) -> Result<T> {
    let path = session.model_path().to_path_buf();
    let fail = |message: String| Error::Inference { frame: frame.to_string(), path: path.clone(), message };
    let batch = if session.card.input.batch == 0 { 1 } else { session.card.input.batch as usize };
    let slot = 3 * session.card.input.width as usize * session.card.input.height as usize;
    let mut input = vec![0f32; slot * batch];
    let t = write_input(image, &session.card.input, &mut input[..slot]);
    let (mut shape, out) = session.run(&input, batch).map_err(fail)?;
    let per_frame: usize = shape[1..].iter().product();
    shape[0] = 1;
    let values = &out[..per_frame];
    if session.rejects_non_finite() {
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            return Err(fail(format!("non-finite value in the output at index {bad}")));
        }
    }
    decode(&session.card, &shape, values, &t).map_err(fail)
}
