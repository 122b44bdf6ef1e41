//! One model: its card and its ONNX Runtime session, checked against each other when opened.

use std::path::Path;

use ort::environment::Environment;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef};

use super::card::{Decode, Layout, ModelCard};
use super::runtime::open_session;
use crate::error::{Error, Result};

/// A model ready to run.
#[derive(Debug)]
pub struct ModelSession {
    pub card: ModelCard,
    session: Session,
    /// "cpu" or "cuda".
    pub device: &'static str,
    /// The output's declared shape (−1: dynamic).
    pub output_shape: Vec<i64>,
}

fn dims(shape: &[i64]) -> String {
    let d: Vec<String> = shape.iter().map(|&v| if v < 0 { "?".into() } else { v.to_string() }).collect();
    format!("[{}]", d.join(", "))
}

/// Whether a model dimension (−1 = dynamic) admits `want`.
fn fits(model: i64, want: usize) -> bool {
    model < 0 || model as usize == want
}

impl ModelSession {
    /// Opens the card's model and checks that its input and output agree with the card (names, element type, rank,
    /// sizes, class count). Errors name the model file and say what disagrees.
    pub fn open(card: ModelCard, env: &Environment, device: &'static str, intra_threads: usize) -> Result<Self> {
        let session = open_session(env, &card.model_path, device, intra_threads)?;
        let output_shape = check_io(&card, &session)?;
        Ok(ModelSession { card, session, device, output_shape })
    }

    pub fn model_path(&self) -> &Path {
        &self.card.model_path
    }

    /// Runs the model on `batch` frames whose input tensor is `input` (laid out as the card says). Returns the
    /// output's shape and values, or what went wrong (the caller names the frames).
    pub fn run(&mut self, input: &[f32], batch: usize) -> std::result::Result<(Vec<usize>, Vec<f32>), String> {
        let shape = self.card.input_shape(batch);
        let tensor = TensorRef::from_array_view((shape, input)).map_err(|e| format!("input tensor: {e}"))?;
        let input_name = self.card.input.name.clone();
        let output_name = self.card.output.name.clone();
        let outputs =
            self.session.run(ort::inputs![input_name.as_str() => tensor]).map_err(|e| format!("inference: {e}"))?;
        let value = outputs.get(&output_name).ok_or_else(|| format!("no output named {output_name}"))?;
        let (shape, data) =
            value.try_extract_tensor::<f32>().map_err(|e| format!("output {output_name} is not f32: {e}"))?;
        let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        if shape.first() != Some(&batch) || shape.len() < 2 {
            return Err(format!("output shape {shape:?} does not hold the {batch} frames given"));
        }
        Ok((shape, data.to_vec()))
    }

    /// Whether non-finite output values are an error for this model (depth maps mark holes that way).
    pub fn rejects_non_finite(&self) -> bool {
        !matches!(self.card.output.decode, Decode::DepthMetric | Decode::DepthInverseRelative)
    }
}

fn check_io(card: &ModelCard, session: &Session) -> Result<Vec<i64>> {
    let bad = |message: String| Error::Model { path: card.model_path.clone(), message };
    let card_name = card.card_path.display();
    // The declared shape of the f32 tensor `name` among `outlets` ("input" or "output").
    let f32_shape = |kind: &str, name: &str, outlets: &[ort::value::Outlet]| -> Result<Vec<i64>> {
        let Some(outlet) = outlets.iter().find(|o| o.name() == name) else {
            let names: Vec<&str> = outlets.iter().map(|o| o.name()).collect();
            return Err(bad(format!("has no {kind} named `{name}` (card {card_name}); its {kind}s are {names:?}")));
        };
        let ty = outlet.dtype();
        if ty.tensor_type() != Some(TensorElementType::Float32) {
            return Err(bad(format!("{kind} `{name}` is {ty:?}; spatialsynth uses f32 tensors")));
        }
        Ok(ty.tensor_shape().map(|s| s.to_vec()).unwrap_or_default())
    };

    // Input.
    let shape = f32_shape("input", &card.input.name, session.inputs())?;
    let want = card.input_shape(card.input.frames_per_call());
    let mut ok = shape.len() == 4 && (1..4).all(|i| fits(shape[i], want[i]));
    // The batch: a fixed model batch must be the card's; a dynamic one needs `batch = 0` or any fixed card batch.
    if ok && shape[0] >= 0 && (card.input.batch == 0 || shape[0] as u32 != card.input.batch) {
        ok = false;
    }
    if !ok {
        let layout = match card.input.layout {
            Layout::Nchw => "NCHW",
            Layout::Nhwc => "NHWC",
        };
        return Err(bad(format!(
            "input `{}` has shape {} but the card {card_name} says {layout} {:?} (batch {}, {}x{})",
            card.input.name,
            dims(&shape),
            want,
            if card.input.batch == 0 { "dynamic".to_string() } else { card.input.batch.to_string() },
            card.input.width,
            card.input.height
        )));
    }

    // Output.
    let shape = f32_shape("output", &card.output.name, session.outputs())?;
    let o = &card.output;
    let problem = match o.decode {
        Decode::Yolox => {
            let (cells, width) = (card.yolox_cells(), 5 + o.classes.len());
            (!(shape.len() == 3 && fits(shape[1], cells) && fits(shape[2], width))).then(|| {
                format!(
                    "[batch, {cells}, {width}] (grid cells for strides {:?}, 5 + {} classes)",
                    o.strides,
                    o.classes.len()
                )
            })
        }
        Decode::SemanticArgmax => {
            let c = o.classes.len();
            let layout = o.layout.unwrap_or(card.input.layout);
            let ok = shape.len() == 4
                && match layout {
                    Layout::Nhwc => fits(shape[3], c),
                    Layout::Nchw => fits(shape[1], c),
                };
            (!ok).then(|| format!("a {layout:?} map of {c} class scores"))
        }
        Decode::DepthMetric | Decode::DepthInverseRelative => {
            let ok = shape.len() == 3 || (shape.len() == 4 && (fits(shape[1], 1) || fits(shape[3], 1)));
            (!ok).then(|| "[batch, 1, h, w], [batch, h, w, 1] or [batch, h, w]".to_string())
        }
        Decode::Embedding => (shape.len() != 2).then(|| "[batch, dims]".to_string()),
    };
    if let Some(expected) = problem {
        return Err(bad(format!(
            "output `{}` has shape {} but the card {card_name} ({:?}) expects {expected}",
            card.output.name,
            dims(&shape),
            o.decode
        )));
    }
    Ok(shape)
}
