//! Object annotations: instance-label PNG + labels map, or 2D boxes.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::depth::decode_gray_png;
use super::manifest::{BoxesSpec, FrameSpec, LabelsSpec, ObjectsSpec};
use super::read_file;
use crate::error::{Error, Result};
use crate::geometry::unproject::ObjectRegion;

/// How an object was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// Pixels of an instance id in an instance-label image (a mask).
    Instance,
    /// Pixels inside a 2D box (background included until denoising).
    Box,
    /// A detector's box refined by the segmenter's mask of the same class (pixels of the class inside the box).
    DetectedMask,
    /// A detector's box with no usable mask (the segmenter does not know the class or found too little of it).
    DetectedBox,
}

impl ObjectKind {
    /// Boxes contain background: the kept depth cluster is the one at the box centre.
    pub fn is_box(self) -> bool {
        matches!(self, ObjectKind::Box | ObjectKind::DetectedBox)
    }

    /// Regions that may include floor pixels: ground points are removed before clustering.
    pub fn may_include_ground(self) -> bool {
        !matches!(self, ObjectKind::Instance)
    }

    /// Found by the models rather than given.
    pub fn is_detected(self) -> bool {
        matches!(self, ObjectKind::DetectedMask | ObjectKind::DetectedBox)
    }
}

/// One annotated object of a frame.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectDef {
    pub label: String,
    pub kind: ObjectKind,
    /// The instance id for masks.
    pub instance_id: Option<u32>,
    /// Pixel box `[x0, y0, x1, y1]`: the given box, or the mask's bounding box.
    pub bbox_px: [f32; 4],
    pub region: ObjectRegion,
    /// The detector's score for detected objects.
    pub score: Option<f32>,
}

/// Parses a labels map `{"<id>": "<label>"}` (ids are positive integers). Sorted by id.
pub fn parse_labels(value: &Value) -> std::result::Result<Vec<(u32, String)>, String> {
    let Value::Object(map) = value else { return Err("labels must be a JSON object {\"<id>\": \"<label>\"}".into()) };
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let id: u32 = k.trim().parse().map_err(|_| format!("label key {k:?} is not an instance id"))?;
        if id == 0 {
            return Err("instance id 0 means \"no object\" and cannot have a label".into());
        }
        let Value::String(label) = v else { return Err(format!("label of id {id} must be a string, got {v}")) };
        if label.trim().is_empty() {
            return Err(format!("label of id {id} is empty"));
        }
        out.push((id, label.clone()));
    }
    out.sort_by_key(|(id, _)| *id);
    Ok(out)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBox {
    label: String,
    xyxy: [f64; 4],
}

/// The pixels whose centres lie inside the box `[x0, y0, x1, y1)` (pixel `u` is inside when `x0 <= u + 0.5 < x1`),
/// clipped to a `width × height` image, as `(x0, y0, x1, y1)`; empty when `x1 <= x0` or `y1 <= y0`.
pub fn box_pixels(b: [f64; 4], width: u32, height: u32) -> (u32, u32, u32, u32) {
    let clip = |v: f64, hi: u32| (v - 0.5).ceil().clamp(0.0, f64::from(hi)) as u32;
    (clip(b[0], width), clip(b[1], height), clip(b[2], width), clip(b[3], height))
}

/// Parses a box list `[{"label": ..., "xyxy": [x0, y0, x1, y1]}]` and converts each box to the pixels whose
/// centres lie inside it, clipped to a `width × height` image.
pub fn parse_boxes(value: &Value, width: u32, height: u32) -> std::result::Result<Vec<ObjectDef>, String> {
    let raw: Vec<RawBox> = serde_json::from_value(value.clone()).map_err(|e| format!("malformed boxes: {e}"))?;
    raw.into_iter()
        .enumerate()
        .map(|(i, b)| {
            let [x0, y0, x1, y1] = b.xyxy;
            if !b.xyxy.iter().all(|v| v.is_finite()) || x0 >= x1 || y0 >= y1 {
                return Err(format!("box {i} ({}): need finite x0 < x1 and y0 < y1, got {:?}", b.label, b.xyxy));
            }
            if b.label.trim().is_empty() {
                return Err(format!("box {i} has an empty label"));
            }
            let (px0, py0, px1, py1) = box_pixels(b.xyxy, width, height);
            if px0 >= px1 || py0 >= py1 {
                return Err(format!(
                    "box {i} ({}) {:?} covers no pixel of the {width}x{height} image",
                    b.label, b.xyxy
                ));
            }
            Ok(ObjectDef {
                label: b.label,
                kind: ObjectKind::Box,
                instance_id: None,
                bbox_px: b.xyxy.map(|v| v as f32),
                region: ObjectRegion::Box { x0: px0, y0: py0, x1: px1, y1: py1 },
                score: None,
            })
        })
        .collect()
}

fn read_json(frame: &str, path: &Path) -> Result<Value> {
    let bytes = read_file(frame, path)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Objects {
        frame: frame.to_string(),
        path: path.to_path_buf(),
        message: format!("not valid JSON: {e}"),
    })
}

/// Resolves a frame's objects. Returns the instance-id image (when objects come from one) and the objects in
/// their given order (instances: ascending id; boxes: file order).
pub fn load_objects(spec: &FrameSpec, w: u32, h: u32) -> Result<(Option<Vec<u32>>, Vec<ObjectDef>)> {
    let frame = spec.key.as_str();
    let obj_err =
        |path: &Path, message: String| Error::Objects { frame: frame.to_string(), path: path.to_path_buf(), message };
    match &spec.objects {
        ObjectsSpec::None => Ok((None, Vec::new())),
        ObjectsSpec::Boxes(b) => {
            let (value, path): (Value, PathBuf) = match b {
                BoxesSpec::File(p) => (read_json(frame, p)?, p.clone()),
                BoxesSpec::Inline(v) => (v.clone(), spec.manifest.clone()),
            };
            let objects = parse_boxes(&value, w, h).map_err(|m| obj_err(&path, m))?;
            Ok((None, objects))
        }
        ObjectsSpec::Instances { png, labels } => {
            let bytes = read_file(frame, png)?;
            let img = decode_gray_png(&bytes).map_err(|message| Error::Decode {
                frame: frame.to_string(),
                path: png.clone(),
                message,
            })?;
            if (img.width, img.height) != (w, h) {
                return Err(Error::ImageFormat {
                    frame: frame.to_string(),
                    path: png.clone(),
                    message: format!("the instance image is {}x{} but the frame is {w}x{h}", img.width, img.height),
                });
            }
            let (value, labels_path) = match labels {
                LabelsSpec::File(p) => (read_json(frame, p)?, p.clone()),
                LabelsSpec::Inline(v) => (v.clone(), spec.manifest.clone()),
            };
            let labels = parse_labels(&value).map_err(|m| obj_err(&labels_path, m))?;
            let ids: Vec<u32> = img.values.iter().map(|&v| u32::from(v)).collect();
            // Bounding box per id in one pass; a labelled id with no pixel is an inconsistency worth failing on.
            let mut boxes: rustc_hash::FxHashMap<u32, [u32; 4]> = rustc_hash::FxHashMap::default();
            for (i, &id) in ids.iter().enumerate().filter(|(_, &id)| id != 0) {
                let (u, v) = (i as u32 % w, i as u32 / w);
                let bb = boxes.entry(id).or_insert([u, v, u + 1, v + 1]);
                *bb = [bb[0].min(u), bb[1].min(v), bb[2].max(u + 1), bb[3].max(v + 1)];
            }
            let mut objects = Vec::with_capacity(labels.len());
            for (id, label) in labels {
                let Some(bb) = boxes.get(&id) else {
                    return Err(obj_err(
                        &labels_path,
                        format!("label {label:?} refers to instance id {id}, which has no pixel in {}", png.display()),
                    ));
                };
                objects.push(ObjectDef {
                    label,
                    kind: ObjectKind::Instance,
                    instance_id: Some(id),
                    bbox_px: bb.map(|v| v as f32),
                    region: ObjectRegion::Instance { instance_id: id },
                    score: None,
                });
            }
            Ok((Some(ids), objects))
        }
    }
}
