//! Output decoding: YOLOX detections (grids, scores, NMS), semantic argmax maps, depth maps, embeddings.

use serde::{Deserialize, Serialize};

use super::card::{InverseRule, Layout, ModelCard};
use super::preprocess::InputTransform;

/// A detected object in frame pixels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub class_id: u32,
    pub label: String,
    /// Objectness × class score.
    pub score: f32,
    /// `[x0, y0, x1, y1]` in frame pixels (pixel-edge coordinates), clipped to the frame.
    pub bbox_px: [f32; 4],
}

/// Intersection over union of two `[x0, y0, x1, y1]` boxes.
pub fn iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let iw = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let ih = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = iw * ih;
    let area = |r: [f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Decodes one frame's YOLOX output rows (`cells × (5 + classes)`, sigmoid already applied by the export).
///
/// Row `r` of stride `s` is grid cell `(gx, gy)` in row-major order; centre `(o0 + gx, o1 + gy) · s`, size
/// `exp(o2, o3) · s`, score `o4 · max(o5..)` with that best class. Candidates at or above the card's threshold go
/// through per-class greedy NMS (highest score first, ties by row), keeping at most `max_detections`, sorted by
/// score (ties: row order). Boxes are mapped back to the frame through `t`.
///
/// `shape` is the output's shape for one frame (`[1, cells, 5 + classes]`); a shape that disagrees with the card
/// is an error, not a guess.
pub fn decode_yolox(
    rows: &[f32],
    shape: &[usize],
    card: &ModelCard,
    t: &InputTransform,
) -> std::result::Result<Vec<Detection>, String> {
    let o = &card.output;
    let nc = o.classes.len();
    let width = 5 + nc;
    let cells = card.yolox_cells();
    if shape.len() != 3 || shape[1] != cells || shape[2] != width || rows.len() != cells * width {
        return Err(format!("YOLOX output shape {shape:?}, expected [1, {cells}, {width}] from the card"));
    }
    let mut candidates: Vec<(f32, usize, u32, [f32; 4])> = Vec::new();
    let mut row = 0usize;
    for &s in &o.strides {
        let (gw, gh) = ((card.input.width / s) as usize, (card.input.height / s) as usize);
        for gy in 0..gh {
            for gx in 0..gw {
                let v = &rows[row * width..(row + 1) * width];
                let (mut best, mut best_c) = (f32::MIN, 0usize);
                for (c, &p) in v[5..].iter().enumerate() {
                    if p > best {
                        best = p;
                        best_c = c;
                    }
                }
                let score = v[4] * best;
                if score >= o.score_threshold && score.is_finite() {
                    let sf = s as f32;
                    let cx = (v[0] + gx as f32) * sf;
                    let cy = (v[1] + gy as f32) * sf;
                    let w = v[2].exp() * sf;
                    let h = v[3].exp() * sf;
                    let b = [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0];
                    if b.iter().all(|x| x.is_finite()) {
                        candidates.push((score, row, best_c as u32, b));
                    }
                }
                row += 1;
            }
        }
    }
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut kept: Vec<(f32, usize, u32, [f32; 4])> = Vec::new();
    for c in candidates {
        if kept.len() >= o.max_detections as usize {
            break;
        }
        let suppressed = |k: &(f32, usize, u32, [f32; 4])| {
            let overlap = iou(k.3, c.3);
            (k.2 == c.2 && overlap > o.nms_iou) || overlap > o.same_object_iou
        };
        if kept.iter().any(suppressed) {
            continue;
        }
        kept.push(c);
    }
    Ok(kept
        .into_iter()
        .filter_map(|(score, _, class, b)| {
            let bb = t.box_to_frame(b);
            (bb[2] > bb[0] && bb[3] > bb[1]).then(|| Detection {
                class_id: class,
                label: o.classes[class as usize].clone(),
                score,
                bbox_px: bb,
            })
        })
        .collect())
}

/// A per-pixel class map at frame resolution.
#[derive(Clone, Debug, PartialEq)]
pub struct SemanticMap {
    pub width: u32,
    pub height: u32,
    /// Class index per frame pixel, row-major.
    pub classes: Vec<u16>,
}

/// One frame's semantic output (`oh × ow × classes` or `classes × oh × ow`) → argmax per output pixel → the class
/// of each frame pixel (nearest output pixel through the input transform; ties go to the lower class).
pub fn decode_semantic(
    scores: &[f32],
    shape: &[usize],
    card: &ModelCard,
    t: &InputTransform,
) -> std::result::Result<SemanticMap, String> {
    let layout = card.output.layout.unwrap_or(card.input.layout);
    if shape.len() != 4 {
        return Err(format!("segmentation output shape {shape:?} is not 4-D"));
    }
    let (oh, ow, nc) = match layout {
        Layout::Nhwc => (shape[1], shape[2], shape[3]),
        Layout::Nchw => (shape[2], shape[3], shape[1]),
    };
    if oh == 0 || ow == 0 || nc != card.output.classes.len() || scores.len() != oh * ow * nc {
        return Err(format!(
            "segmentation output shape {shape:?} ({layout:?}) does not hold {} classes",
            card.output.classes.len()
        ));
    }
    let mut argmax = vec![0u16; oh * ow];
    for (p, slot) in argmax.iter_mut().enumerate() {
        let (mut best, mut best_c) = (f32::NEG_INFINITY, 0usize);
        for c in 0..nc {
            let v = match layout {
                Layout::Nhwc => scores[p * nc + c],
                Layout::Nchw => scores[c * oh * ow + p],
            };
            if v > best {
                best = v;
                best_c = c;
            }
        }
        *slot = best_c as u16;
    }
    // Frame pixel centre → input pixel → output pixel.
    let (fw, fh) = (t.frame_w as usize, t.frame_h as usize);
    let kx = t.scale_x * ow as f32 / card.input.width as f32;
    let ky = t.scale_y * oh as f32 / card.input.height as f32;
    let xs: Vec<usize> = (0..fw).map(|u| (((u as f32 + 0.5) * kx) as usize).min(ow - 1)).collect();
    let mut classes = Vec::with_capacity(fw * fh);
    for v in 0..fh {
        let oy = (((v as f32 + 0.5) * ky) as usize).min(oh - 1);
        classes.extend(xs.iter().map(|&ox| argmax[oy * ow + ox]));
    }
    Ok(SemanticMap { width: t.frame_w, height: t.frame_h, classes })
}

/// One frame's depth output → metres per frame pixel (bilinear in the output map, sampled at each frame pixel's
/// centre); values outside the card's range, or non-finite, become 0 (invalid).
pub fn decode_depth_map(
    values: &[f32],
    shape: &[usize],
    card: &ModelCard,
    t: &InputTransform,
) -> std::result::Result<Vec<f32>, String> {
    let (oh, ow) = match shape.len() {
        3 => (shape[1], shape[2]),
        4 if shape[1] == 1 => (shape[2], shape[3]),
        4 if shape[3] == 1 => (shape[1], shape[2]),
        _ => return Err(format!("depth output shape {shape:?} is not [1, 1, h, w], [1, h, w, 1] or [1, h, w]")),
    };
    if oh == 0 || ow == 0 || values.len() != oh * ow {
        return Err(format!("depth output shape {shape:?} holds no depth map"));
    }
    let o = &card.output;
    let mut map: Vec<f32> = values[..oh * ow].to_vec();
    // Inverse relative depth: make metres with the card's rule.
    if let Some(rule) = &o.inverse {
        match *rule {
            InverseRule::Affine { scale, shift } => {
                for v in &mut map {
                    *v = 1.0 / (scale * *v + shift);
                }
            }
            InverseRule::Median { median_depth_m } => {
                let mut pos: Vec<f32> = map.iter().copied().filter(|v| v.is_finite() && *v > 0.0).collect();
                let med = if pos.is_empty() {
                    f32::NAN
                } else {
                    let mid = pos.len() / 2;
                    *pos.select_nth_unstable_by(mid, f32::total_cmp).1
                };
                for v in &mut map {
                    *v = median_depth_m * med / *v;
                }
            }
        }
    }
    let (fw, fh) = (t.frame_w as usize, t.frame_h as usize);
    let kx = t.scale_x * ow as f32 / card.input.width as f32;
    let ky = t.scale_y * oh as f32 / card.input.height as f32;
    let mut out = Vec::with_capacity(fw * fh);
    let sample = |x: f32, y: f32| {
        let x = x.clamp(0.0, (ow - 1) as f32);
        let y = y.clamp(0.0, (oh - 1) as f32);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(ow - 1), (y0 + 1).min(oh - 1));
        let (ax, ay) = (x - x0 as f32, y - y0 as f32);
        let top = map[y0 * ow + x0] * (1.0 - ax) + map[y0 * ow + x1] * ax;
        let bottom = map[y1 * ow + x0] * (1.0 - ax) + map[y1 * ow + x1] * ax;
        top * (1.0 - ay) + bottom * ay
    };
    for v in 0..fh {
        let y = (v as f32 + 0.5) * ky - 0.5;
        for u in 0..fw {
            let x = (u as f32 + 0.5) * kx - 0.5;
            let d = sample(x, y) * o.depth_scale;
            out.push(if d.is_finite() && d >= o.min_depth_m && d <= o.max_depth_m { d } else { 0.0 });
        }
    }
    Ok(out)
}

/// L2-normalised copy of an embedding (unchanged when its norm is 0 or not finite).
pub fn normalized(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n.is_finite() && n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        v.to_vec()
    }
}
