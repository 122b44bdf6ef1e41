//! Frame manifests: `frames.json` (one file, many frames) and JSON Lines (one frame object per line).
//!
//! Format (documented in the README):
//! ```json
//! {"dataset": "name", "frames": [
//!   {"id": "000001", "color": "rgb.png", "depth": "depth.png", "depth_units_per_meter": 1000.0,
//!    "depth_invalid_value": 65535,
//!    "intrinsics": {"fx": 525.0, "fy": 525.0, "cx": 319.5, "cy": 239.5, "width": 640, "height": 480},
//!    "instances": "labels.png", "labels": "labels.json",
//!    "boxes": [{"label": "chair", "xyxy": [10, 20, 200, 300]}],
//!    "up_in_camera": [0.0, -1.0, 0.0]}]}
//! ```
//! Paths are relative to the manifest's folder. Unknown fields (poses, notes, ground truth) are ignored.
//!
//! A frame needs `color` or `depth`. Without `depth`, a metric depth model makes it from `color`. Without
//! `intrinsics`, a pinhole camera with a horizontal field of view of `hfov_deg` (or the run's default) centred on the
//! image is assumed, and the scene graph records `intrinsics_assumed: true`. Without `instances` or `boxes`, the
//! detector (and segmenter) find the objects.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::geometry::Intrinsics;

/// Where a frame's object annotations come from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum ObjectsSpec {
    /// No objects: the scene graph has the ground and no relations.
    None,
    /// An instance-label image (0 = no object) and the labels of its ids.
    Instances { png: PathBuf, labels: LabelsSpec },
    /// 2D boxes with labels.
    Boxes(BoxesSpec),
}

/// Instance labels: a JSON file `{"<id>": "<label>", ...}` or the same map inline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum LabelsSpec {
    File(PathBuf),
    Inline(Value),
}

/// Boxes: a JSON file holding an array of `{"label": ..., "xyxy": [x0, y0, x1, y1]}`, or the array inline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum BoxesSpec {
    File(PathBuf),
    Inline(Value),
}

/// One frame to process, with every path resolved. Its JSON form (`Serialize`) identifies the work in resumable
/// runs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FrameSpec {
    /// Run-wide name, `dataset/id`: names the frame in outputs and errors and seeds its random draws.
    pub key: String,
    pub id: String,
    pub dataset: String,
    /// The manifest it came from (and the line, for JSON Lines).
    pub manifest: PathBuf,
    pub line: Option<usize>,
    pub color: Option<PathBuf>,
    /// The depth file; `None` when a depth model makes depth from the colour image.
    pub depth: Option<PathBuf>,
    /// Required for integer depth (PNG, `.npy` u16); ignored for float depth, which is in metres.
    pub depth_units_per_meter: Option<f64>,
    /// An integer depth value meaning "no measurement" besides 0 (default 65535, the sensor saturation code;
    /// `null` in the manifest disables it).
    pub depth_invalid_value: Option<u16>,
    /// The camera; `None` when unknown (a field of view is then assumed, see [`FrameSpec::hfov_deg`]).
    pub intrinsics: Option<Intrinsics>,
    /// Horizontal field of view to assume when `intrinsics` is absent (the run's default when `None`).
    pub hfov_deg: Option<f64>,
    pub objects: ObjectsSpec,
    /// Optional gravity hint: the up direction in the camera frame (from an IMU, say). Default: −y.
    pub up_in_camera: Option<[f64; 3]>,
}

impl FrameSpec {
    /// Whether the manifest gives objects (instances or boxes) for this frame.
    pub fn has_annotations(&self) -> bool {
        !matches!(self.objects, ObjectsSpec::None)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntrinsics {
    fx: f64,
    fy: f64,
    cx: f64,
    cy: f64,
    width: u32,
    height: u32,
}

#[derive(Deserialize)]
struct RawFrame {
    id: Value,
    #[serde(default)]
    dataset: Option<String>,
    #[serde(default)]
    color: Option<String>,
    #[serde(default)]
    depth: Option<String>,
    #[serde(default)]
    depth_units_per_meter: Option<f64>,
    #[serde(default = "default_invalid")]
    depth_invalid_value: Option<u16>,
    #[serde(default)]
    intrinsics: Option<RawIntrinsics>,
    #[serde(default)]
    hfov_deg: Option<f64>,
    #[serde(default)]
    instances: Option<String>,
    #[serde(default)]
    labels: Option<Value>,
    #[serde(default)]
    boxes: Option<Value>,
    #[serde(default)]
    up_in_camera: Option<[f64; 3]>,
}

fn default_invalid() -> Option<u16> {
    Some(u16::MAX)
}

/// Turns a frame's JSON object into a [`FrameSpec`]. `base` is the folder paths are relative to.
fn frame_from_value(
    value: Value,
    base: &Path,
    default_dataset: &str,
    manifest: &Path,
    line: Option<usize>,
) -> Result<FrameSpec> {
    let bad = |message: String| Error::Manifest { path: manifest.to_path_buf(), line, message };
    // Name the frame in errors even when other fields are broken.
    let id_hint = value.get("id").map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    let raw: RawFrame = serde_json::from_value(value).map_err(|e| bad(format!("frame {id_hint}: {e}")))?;
    let id = match raw.id {
        Value::String(s) if !s.is_empty() => s,
        Value::Number(n) => n.to_string(),
        other => return Err(bad(format!("frame id must be a non-empty string or a number, got {other}"))),
    };
    let dataset = raw.dataset.unwrap_or_else(|| default_dataset.to_string());
    let resolve = |p: &str| base.join(p);
    let key = format!("{dataset}/{id}");
    let intrinsics = match raw.intrinsics {
        Some(r) => {
            let k = Intrinsics { fx: r.fx, fy: r.fy, cx: r.cx, cy: r.cy, width: r.width, height: r.height };
            k.validate().map_err(|message| Error::Intrinsics {
                frame: key.clone(),
                path: manifest.to_path_buf(),
                message,
            })?;
            Some(k)
        }
        None => None,
    };
    if let Some(f) = raw.hfov_deg {
        if !(f.is_finite() && f > 1.0 && f < 179.0) {
            return Err(bad(format!("frame {id}: hfov_deg must be within (1, 179) degrees, got {f}")));
        }
    }
    if raw.color.is_none() && raw.depth.is_none() {
        return Err(bad(format!("frame {id}: needs \"color\" or \"depth\"")));
    }
    if let Some(u) = raw.depth_units_per_meter {
        if !(u.is_finite() && u > 0.0) {
            return Err(bad(format!("frame {id}: depth_units_per_meter must be positive, got {u}")));
        }
    }
    let objects = match (raw.instances, raw.labels, raw.boxes) {
        (None, None, None) => ObjectsSpec::None,
        (Some(png), labels, None) => {
            let labels = match labels {
                Some(Value::String(p)) => LabelsSpec::File(resolve(&p)),
                Some(v @ Value::Object(_)) => LabelsSpec::Inline(v),
                Some(other) => {
                    return Err(bad(format!("frame {id}: labels must be a file name or an object, got {other}")))
                }
                None => return Err(bad(format!("frame {id}: an instance image needs labels"))),
            };
            ObjectsSpec::Instances { png: resolve(&png), labels }
        }
        (None, None, Some(boxes)) => ObjectsSpec::Boxes(match boxes {
            Value::String(p) => BoxesSpec::File(resolve(&p)),
            v @ Value::Array(_) => BoxesSpec::Inline(v),
            other => return Err(bad(format!("frame {id}: boxes must be a file name or an array, got {other}"))),
        }),
        (None, Some(_), _) => return Err(bad(format!("frame {id}: labels given without an instance image"))),
        (Some(_), _, Some(_)) => return Err(bad(format!("frame {id}: give instances or boxes, not both"))),
    };
    if let Some(up) = raw.up_in_camera {
        let n = (up[0] * up[0] + up[1] * up[1] + up[2] * up[2]).sqrt();
        if !(n.is_finite() && n > 0.0) {
            return Err(bad(format!("frame {id}: up_in_camera must be a non-zero vector")));
        }
    }
    Ok(FrameSpec {
        key,
        id,
        dataset,
        manifest: manifest.to_path_buf(),
        line,
        color: raw.color.map(|c| resolve(&c)),
        depth: raw.depth.as_deref().map(resolve),
        depth_units_per_meter: raw.depth_units_per_meter,
        depth_invalid_value: raw.depth_invalid_value,
        intrinsics,
        hfov_deg: raw.hfov_deg,
        objects,
        up_in_camera: raw.up_in_camera,
    })
}

/// The outcome of reading one manifest: a spec or an error per frame. A manifest that cannot be read or parsed
/// at all is one error.
pub type ManifestFrames = Vec<Result<FrameSpec>>;

fn folder_name(path: &Path) -> String {
    path.parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "frames".into())
}

/// Parses a `frames.json` document. `path` names it in errors and anchors relative paths.
pub fn parse_frames_json(text: &str, path: &Path) -> Result<ManifestFrames> {
    let bad = |message: String| Error::Manifest { path: path.to_path_buf(), line: None, message };
    let doc: Value = serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let Value::Object(mut obj) = doc else {
        return Err(bad("expected a JSON object with a \"frames\" array".into()));
    };
    let dataset = match obj.get("dataset") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None | Some(Value::Null) => folder_name(path),
        Some(other) => return Err(bad(format!("\"dataset\" must be a string, got {other}"))),
    };
    let Some(Value::Array(frames)) = obj.remove("frames") else {
        return Err(bad("missing \"frames\" array".into()));
    };
    let base = path.parent().unwrap_or(Path::new("."));
    Ok(frames.into_iter().map(|f| frame_from_value(f, base, &dataset, path, None)).collect())
}

/// Parses a JSON Lines manifest: one frame object per non-empty line. The dataset name defaults to the file's
/// stem. A malformed line fails that frame only.
pub fn parse_frames_jsonl(text: &str, path: &Path) -> ManifestFrames {
    let lines = text.lines().map(|l| Ok::<_, std::io::Error>(l.to_string()));
    JsonLines::new(lines, path).collect()
}

/// The frames of a JSON Lines manifest, parsed one line at a time as they are read, so that a manifest of
/// millions of lines is never held in memory.
pub struct JsonLines<L> {
    lines: std::iter::Enumerate<L>,
    path: PathBuf,
    dataset: String,
    base: PathBuf,
    done: bool,
}

impl<L: Iterator<Item = std::io::Result<String>>> JsonLines<L> {
    pub fn new(lines: L, path: &Path) -> Self {
        let dataset = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| folder_name(path));
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        JsonLines { lines: lines.enumerate(), path: path.to_path_buf(), dataset, base, done: false }
    }
}

impl<L: Iterator<Item = std::io::Result<String>>> Iterator for JsonLines<L> {
    type Item = Result<FrameSpec>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let (i, l) = self.lines.next()?;
            let line = Some(i + 1);
            let l = match l {
                Ok(l) => l,
                Err(e) => {
                    // A line that is not UTF-8 fails alone (its bytes are consumed); any other read error ends the
                    // file, naming the line it stopped at.
                    self.done = e.kind() != std::io::ErrorKind::InvalidData;
                    return Some(Err(Error::Manifest {
                        path: self.path.clone(),
                        line,
                        message: format!("cannot read: {e}"),
                    }));
                }
            };
            if l.trim().is_empty() {
                continue;
            }
            let value: Value = match serde_json::from_str(&l) {
                Ok(v) => v,
                Err(e) => {
                    let message = format!("not valid JSON: {e}");
                    return Some(Err(Error::Manifest { path: self.path.clone(), line, message }));
                }
            };
            return Some(frame_from_value(value, &self.base, &self.dataset, &self.path, line));
        }
        None
    }
}

/// Reads a manifest file (`.jsonl` → JSON Lines, anything else → frames.json).
pub fn read_manifest(path: &Path) -> Result<ManifestFrames> {
    Ok(stream_manifest(path)?.collect())
}

/// The frames of a manifest file as an iterator: JSON Lines are read and parsed a line at a time (memory does not
/// grow with the file); a `frames.json` document is parsed whole, then handed out frame by frame.
pub fn stream_manifest(path: &Path) -> Result<Box<dyn Iterator<Item = Result<FrameSpec>> + Send>> {
    use std::io::BufRead;
    let io = |source| Error::Io { frame: "-".into(), path: path.to_path_buf(), source };
    if path.extension().is_some_and(|e| e == "jsonl") {
        let file = std::fs::File::open(path).map_err(io)?;
        let lines = std::io::BufReader::with_capacity(1 << 16, file).lines();
        Ok(Box::new(JsonLines::new(lines, path)))
    } else {
        let text = std::fs::read_to_string(path).map_err(io)?;
        Ok(Box::new(parse_frames_json(&text, path)?.into_iter()))
    }
}

/// The manifests an input names: the file itself, or every `frames.json` and `*.jsonl` under a folder (sorted,
/// recursively; hidden folders skipped).
pub fn find_manifests(input: &Path) -> Result<Vec<PathBuf>> {
    find_manifests_except(input, None)
}

/// [`find_manifests`], not descending into `exclude` (a canonical path: a run's output folder).
pub fn find_manifests_except(input: &Path, exclude: Option<&Path>) -> Result<Vec<PathBuf>> {
    let io = |source, path: &Path| Error::Io { frame: "-".into(), path: path.to_path_buf(), source };
    let meta = std::fs::metadata(input).map_err(|e| io(e, input))?;
    if !meta.is_dir() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut found = Vec::new();
    let mut stack = vec![input.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| io(e, &dir))? {
            let entry = entry.map_err(|e| io(e, &dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let ft = entry.file_type().map_err(|e| io(e, &path))?;
            if ft.is_dir() {
                if exclude.is_some_and(|x| std::fs::canonicalize(&path).is_ok_and(|p| p == x)) {
                    continue;
                }
                stack.push(path);
            } else if name == "frames.json" || name.ends_with(".jsonl") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}
