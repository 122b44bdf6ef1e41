//! Model cards: a small TOML file per model that says how to feed it and how to read its output, so that a new
//! model of a known family needs a card, not code. The format is documented in `models/README.md`.
//!
//! ```toml
//! [model]
//! name = "yolox_nano"
//! file = "yolox_nano.onnx"          # relative to the card
//! source = "…"
//! license = "Apache-2.0"
//!
//! [input]
//! name = "images"
//! layout = "nchw"                   # nchw | nhwc
//! width = 416
//! height = 416
//! resize = "letterbox"              # letterbox (top-left, pad_value) | stretch
//! pad_value = 114.0
//! channel_order = "bgr"             # rgb | bgr
//! scale = 1.0                       # value = (pixel_0_255 * scale - mean[c]) / std[c]
//! mean = [0.0, 0.0, 0.0]
//! std = [1.0, 1.0, 1.0]
//! batch = 1                         # the model's batch size; 0 = dynamic (frames are batched up to max_batch)
//!
//! [output]
//! name = "output"
//! decode = "yolox"                  # yolox | semantic_argmax | depth_metric | depth_inverse_relative | embedding
//! classes = ["person", …]
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Memory layout of an image tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    Nchw,
    Nhwc,
}

/// How a frame is brought to the model's input size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resize {
    /// Keep the aspect ratio, scale to fit, place at the top-left, fill the rest with `pad_value`.
    Letterbox,
    /// Scale each axis to the input size.
    Stretch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// How the output tensor is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decode {
    /// YOLOX head: `[batch, cells, 5 + classes]`, grids of `strides`, sigmoid objectness and class scores.
    Yolox,
    /// Per-pixel class logits (DeepLab style); argmax, resized back to the frame.
    SemanticArgmax,
    /// Depth in metres (times `depth_scale`), `[batch, 1, h, w]` or `[batch, h, w]`.
    DepthMetric,
    /// Relative inverse depth (disparity, MiDaS / Depth Anything relative), turned into metres by `inverse`.
    DepthInverseRelative,
    /// An image embedding `[batch, dims]`, compared with text-prompt embeddings by cosine similarity.
    Embedding,
}

impl Decode {
    pub fn task(self) -> &'static str {
        match self {
            Decode::Yolox => "detector",
            Decode::SemanticArgmax => "segmenter",
            Decode::DepthMetric | Decode::DepthInverseRelative => "depth",
            Decode::Embedding => "embedding",
        }
    }
}

/// Turning relative inverse depth `x` into metres.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case", deny_unknown_fields)]
pub enum InverseRule {
    /// `depth = 1 / (scale * x + shift)` (a fitted affine disparity model).
    Affine { scale: f32, shift: f32 },
    /// `depth = median_depth_m * median(x) / x`: the frame's median depth is assumed (a weak prior, recorded).
    Median { median_depth_m: f32 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    pub name: String,
    /// The ONNX file, relative to the card.
    pub file: String,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub license: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

fn one() -> f32 {
    1.0
}
fn ones() -> [f32; 3] {
    [1.0; 3]
}
fn default_batch() -> u32 {
    1
}
fn default_max_batch() -> u32 {
    16
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    pub name: String,
    pub layout: Layout,
    pub width: u32,
    pub height: u32,
    pub resize: Resize,
    #[serde(default)]
    pub pad_value: f32,
    pub channel_order: ChannelOrder,
    #[serde(default = "one")]
    pub scale: f32,
    #[serde(default)]
    pub mean: [f32; 3],
    #[serde(default = "ones")]
    pub std: [f32; 3],
    /// The model's fixed batch size, or 0 when its batch dimension is dynamic.
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// With a dynamic batch: at most this many frames per inference call.
    #[serde(default = "default_max_batch")]
    pub max_batch: u32,
}

impl InputSpec {
    /// Frames per inference call.
    pub fn frames_per_call(&self) -> usize {
        if self.batch == 0 {
            self.max_batch.max(1) as usize
        } else {
            self.batch as usize
        }
    }
}

fn default_strides() -> Vec<u32> {
    vec![8, 16, 32]
}
fn default_score() -> f32 {
    0.3
}
fn default_nms() -> f32 {
    0.45
}
fn default_same_object() -> f32 {
    0.85
}
fn default_max_det() -> u32 {
    100
}
fn default_min_depth() -> f32 {
    0.05
}
fn default_max_depth() -> f32 {
    80.0
}
fn yes() -> bool {
    true
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    pub decode: Decode,
    /// Layout of a semantic or depth map output (default: the input's layout for semantic maps).
    #[serde(default)]
    pub layout: Option<Layout>,
    /// Class names, in the model's order (detector and segmenter).
    #[serde(default)]
    pub classes: Vec<String>,
    /// Segmenter: its class names mapped to the detector's vocabulary (`diningtable = "dining table"`).
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    /// Segmenter: classes never used to refine a detection (e.g. `background`).
    #[serde(default)]
    pub ignore_classes: Vec<String>,
    /// YOLOX grid strides, in the order of the output rows.
    #[serde(default = "default_strides")]
    pub strides: Vec<u32>,
    /// Detections scoring below this (objectness × class score) are dropped.
    #[serde(default = "default_score")]
    pub score_threshold: f32,
    /// Per-class non-maximum suppression IoU.
    #[serde(default = "default_nms")]
    pub nms_iou: f32,
    /// Two detections of different classes whose boxes overlap more than this are one object the detector named
    /// twice (a chair's back also scored as a wine glass): the lower-scoring one is dropped. 1 keeps both.
    #[serde(default = "default_same_object")]
    pub same_object_iou: f32,
    #[serde(default = "default_max_det")]
    pub max_detections: u32,
    /// Depth outputs: metres per output unit.
    #[serde(default = "one")]
    pub depth_scale: f32,
    /// Depth outputs: values outside this range are marked invalid.
    #[serde(default = "default_min_depth")]
    pub min_depth_m: f32,
    #[serde(default = "default_max_depth")]
    pub max_depth_m: f32,
    /// `depth_inverse_relative`: the rule that makes metres of it.
    #[serde(default)]
    pub inverse: Option<InverseRule>,
    /// Embeddings: L2-normalise before comparing (cosine similarity).
    #[serde(default = "yes")]
    pub normalize: bool,
}

/// A parsed, validated model card with its model file resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelCard {
    pub model: ModelInfo,
    pub input: InputSpec,
    pub output: OutputSpec,
    /// Where the card was read from, and the model file it names.
    #[serde(skip)]
    pub card_path: PathBuf,
    #[serde(skip)]
    pub model_path: PathBuf,
}

/// Parses and checks a card's text. `path` is the card's location (for messages and to resolve `file`).
pub fn parse_card(text: &str, path: &Path) -> Result<ModelCard> {
    let bad = |message: String| Error::Model { path: path.to_path_buf(), message };
    let mut card: ModelCard = toml::from_str(text).map_err(|e| bad(format!("malformed model card: {e}")))?;
    card.validate().map_err(|m| bad(format!("model card: {m}")))?;
    let base = path.parent().unwrap_or(Path::new("."));
    card.card_path = path.to_path_buf();
    card.model_path = base.join(&card.model.file);
    Ok(card)
}

impl ModelCard {
    /// Checks the card on its own (not against the model: see `ModelSession::open`).
    pub fn validate(&self) -> std::result::Result<(), String> {
        let (i, o) = (&self.input, &self.output);
        if self.model.name.trim().is_empty() || self.model.file.trim().is_empty() {
            return Err("model.name and model.file must not be empty".into());
        }
        if i.name.is_empty() || o.name.is_empty() {
            return Err("input.name and output.name must not be empty".into());
        }
        if !(1..=8192).contains(&i.width) || !(1..=8192).contains(&i.height) {
            return Err(format!("input size {}x{} must be within 1..=8192", i.width, i.height));
        }
        let finite = |v: f32| v.is_finite();
        if !finite(i.pad_value) || !finite(i.scale) || i.scale == 0.0 || !i.mean.iter().all(|&m| finite(m)) {
            return Err("input.pad_value, scale and mean must be finite, scale non-zero".into());
        }
        if !i.std.iter().all(|&s| finite(s) && s != 0.0) {
            return Err("input.std must be finite and non-zero".into());
        }
        if i.batch > 4096 || i.max_batch == 0 || i.max_batch > 4096 {
            return Err("input.batch must be 0..=4096 and input.max_batch 1..=4096".into());
        }
        // One inference call's input tensor must stay reasonable (2^28 values = 1 GiB of f32).
        let values = 3 * u64::from(i.width) * u64::from(i.height) * i.frames_per_call() as u64;
        if values > 1 << 28 {
            return Err(format!(
                "one call's input would hold {values} values ({}x{}x3 x {} frames); lower the batch",
                i.width,
                i.height,
                i.frames_per_call()
            ));
        }
        match o.decode {
            Decode::Yolox => {
                if o.classes.is_empty() {
                    return Err("a yolox card needs output.classes".into());
                }
                if o.strides.is_empty() || o.strides.iter().any(|&s| s == 0 || i.width % s != 0 || i.height % s != 0) {
                    return Err(format!("output.strides {:?} must divide the input size", o.strides));
                }
                let unit = |v: f32| (0.0..=1.0).contains(&v);
                if !unit(o.score_threshold) || !unit(o.nms_iou) || !unit(o.same_object_iou) {
                    return Err("score_threshold, nms_iou and same_object_iou must be within 0..=1".into());
                }
            }
            Decode::SemanticArgmax => {
                if o.classes.len() < 2 {
                    return Err("a semantic_argmax card needs output.classes (at least 2)".into());
                }
                if o.classes.len() > u16::MAX as usize {
                    return Err("too many classes".into());
                }
                for c in o.aliases.keys().chain(&o.ignore_classes) {
                    if !o.classes.contains(c) {
                        return Err(format!("output.aliases / ignore_classes name `{c}`, which is not a class"));
                    }
                }
            }
            Decode::DepthMetric | Decode::DepthInverseRelative => {
                if !(finite(o.depth_scale) && o.depth_scale > 0.0) {
                    return Err("output.depth_scale must be positive".into());
                }
                if !(finite(o.min_depth_m)
                    && finite(o.max_depth_m)
                    && o.min_depth_m >= 0.0
                    && o.max_depth_m > o.min_depth_m)
                {
                    return Err("output.min_depth_m / max_depth_m must satisfy 0 <= min < max".into());
                }
                match (&o.decode, &o.inverse) {
                    (Decode::DepthInverseRelative, None) => {
                        return Err(
                            "depth_inverse_relative needs output.inverse (rule = \"affine\" or \"median\")".into()
                        )
                    }
                    (Decode::DepthInverseRelative, Some(InverseRule::Affine { scale, shift }))
                        if !(finite(*scale) && finite(*shift) && *scale != 0.0) =>
                    {
                        return Err("output.inverse: scale must be finite and non-zero, shift finite".into());
                    }
                    (Decode::DepthInverseRelative, Some(InverseRule::Median { median_depth_m }))
                        if !(finite(*median_depth_m) && *median_depth_m > 0.0) =>
                    {
                        return Err("output.inverse: median_depth_m must be positive".into());
                    }
                    (Decode::DepthMetric, Some(_)) => {
                        return Err("output.inverse is only for depth_inverse_relative".into())
                    }
                    _ => {}
                }
            }
            Decode::Embedding => {}
        }
        Ok(())
    }

    /// The expected shape of the input tensor for `batch` frames.
    pub fn input_shape(&self, batch: usize) -> [usize; 4] {
        let (w, h) = (self.input.width as usize, self.input.height as usize);
        match self.input.layout {
            Layout::Nchw => [batch, 3, h, w],
            Layout::Nhwc => [batch, h, w, 3],
        }
    }

    /// YOLOX: the number of grid cells (output rows) for the input size.
    pub fn yolox_cells(&self) -> usize {
        self.output.strides.iter().map(|&s| (self.input.width / s) as usize * (self.input.height / s) as usize).sum()
    }
}

/// Reads a card file. A missing or unreadable card or model file is an [`Error::Model`] naming it; the model file
/// must at least look like an ONNX protobuf (see [`sniff_onnx`]).
pub fn load_card(path: &Path) -> Result<ModelCard> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Model { path: path.to_path_buf(), message: format!("cannot read the model card: {e}") })?;
    let card = parse_card(&text, path)?;
    let bytes = std::fs::read(&card.model_path).map_err(|e| Error::Model {
        path: card.model_path.clone(),
        message: format!("cannot read the model file named by {}: {e}", path.display()),
    })?;
    sniff_onnx(&bytes).map_err(|m| Error::Model { path: card.model_path.clone(), message: m })?;
    Ok(card)
}

/// A cheap check that `bytes` start like a serialised ONNX `ModelProto`: a protobuf whose first fields are valid
/// and that includes a graph (field 7). Catches empty files, text, images and most other wrong files before ONNX
/// Runtime sees them; ONNX Runtime's own load catches the rest (truncation inside the graph).
pub fn sniff_onnx(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < 16 {
        return Err(format!("not an ONNX model: {} bytes", bytes.len()));
    }
    let mut pos = 0usize;
    let mut saw_graph = false;
    let mut fields = 0;
    while pos < bytes.len() && fields < 64 {
        let (key, n) = read_varint(&bytes[pos..]).ok_or("not an ONNX model: bad protobuf field header")?;
        pos += n;
        let (field, wire) = (key >> 3, key & 7);
        if field == 0 || field > 64 {
            return Err(format!("not an ONNX model: protobuf field {field} at byte {pos}"));
        }
        match wire {
            0 => {
                let (_, n) = read_varint(&bytes[pos..]).ok_or("not an ONNX model: truncated varint")?;
                pos += n;
            }
            2 => {
                let (len, n) = read_varint(&bytes[pos..]).ok_or("not an ONNX model: truncated length")?;
                pos += n;
                let len = usize::try_from(len).map_err(|_| "not an ONNX model: field too long")?;
                if len > bytes.len() - pos {
                    return Err(format!(
                        "truncated ONNX model: field {field} needs {len} bytes at byte {pos}, file has {}",
                        bytes.len()
                    ));
                }
                if field == 7 {
                    saw_graph = true;
                }
                pos += len;
            }
            _ => return Err(format!("not an ONNX model: protobuf wire type {wire} at byte {pos}")),
        }
        fields += 1;
    }
    if saw_graph {
        Ok(())
    } else {
        Err("not an ONNX model: no graph".into())
    }
}

fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The folder of the built-in models: `SPATIALSYNTH_MODELS_DIR`, else `models/` of the source tree this binary was
/// built from.
pub fn builtin_models_dir() -> PathBuf {
    std::env::var_os("SPATIALSYNTH_MODELS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("models"))
}

/// The built-in detector card (YOLOX-nano, COCO).
pub fn builtin_detector() -> PathBuf {
    builtin_models_dir().join("yolox_nano.toml")
}

/// The built-in segmenter card (DeepLabv3 MobileNetV2, PASCAL VOC).
pub fn builtin_segmenter() -> PathBuf {
    builtin_models_dir().join("deeplab_v3.toml")
}
