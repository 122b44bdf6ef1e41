//! Detections + semantic map → objects: each detection is refined by the segmenter's pixels of the same class
//! inside its box (a mask), or kept as a box when the segmenter does not know its class or found too little of
//! it. The depth clustering of the geometry stage (K3) then isolates the object in 3D.

use serde::{Deserialize, Serialize};

use super::card::ModelCard;
use super::decode::{Detection, SemanticMap};
use crate::geometry::unproject::ObjectRegion;
use crate::io::objects::{box_pixels, ObjectDef, ObjectKind};

/// Parameters of the fusion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FuseParams {
    /// A detection becomes a mask when the segmenter labels at least this share of its box with its class.
    pub min_mask_fraction: f32,
    /// … and at least this many pixels.
    pub min_mask_pixels: u32,
}

impl Default for FuseParams {
    fn default() -> Self {
        FuseParams { min_mask_fraction: 0.15, min_mask_pixels: 50 }
    }
}

fn normalize_name(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// For each detector class, the segmenter class that means the same thing (through the segmenter card's
/// `aliases`, names compared without case, spaces or punctuation), if any.
pub fn class_map(detector: &ModelCard, segmenter: &ModelCard) -> Vec<Option<u16>> {
    let seg = &segmenter.output;
    let names: Vec<String> =
        seg.classes.iter().map(|c| normalize_name(seg.aliases.get(c).map_or(c.as_str(), String::as_str))).collect();
    detector
        .output
        .classes
        .iter()
        .map(|d| {
            let d = normalize_name(d);
            names
                .iter()
                .enumerate()
                .find(|(i, n)| **n == d && !seg.ignore_classes.contains(&seg.classes[*i]))
                .map(|(i, _)| i as u16)
        })
        .collect()
}

/// Objects from detections (in score order). Returns the instance-label image (when any detection became a mask)
/// and one object per detection with a non-empty box. Where masks of two detections overlap, the pixel goes to
/// the higher-scoring one.
pub fn objects_from_detections(
    detections: &[Detection],
    semantic: Option<(&SemanticMap, &[Option<u16>])>,
    width: u32,
    height: u32,
    params: &FuseParams,
) -> (Option<Vec<u32>>, Vec<ObjectDef>) {
    let mut labels: Option<Vec<u32>> = None;
    let mut objects = Vec::with_capacity(detections.len());
    for d in detections {
        let (x0, y0, x1, y1) = box_pixels(d.bbox_px.map(f64::from), width, height);
        if x1 <= x0 || y1 <= y0 {
            continue;
        }
        let seg_class =
            semantic.and_then(|(map, cmap)| cmap.get(d.class_id as usize).copied().flatten().map(|c| (map, c)));
        let mut mask_pixels = 0u32;
        if let Some((map, c)) = seg_class {
            let ids = labels.get_or_insert_with(|| vec![0; (width * height) as usize]);
            let id = objects.len() as u32 + 1;
            let mut painted = Vec::new();
            for v in y0..y1 {
                for u in x0..x1 {
                    let i = (v * width + u) as usize;
                    if map.classes[i] == c && ids[i] == 0 {
                        painted.push(i);
                    }
                }
            }
            let area = (x1 - x0) * (y1 - y0);
            let enough = painted.len() as u32 >= params.min_mask_pixels
                && painted.len() as f32 >= params.min_mask_fraction * area as f32;
            if enough {
                for &i in &painted {
                    ids[i] = id;
                }
                mask_pixels = painted.len() as u32;
            }
        }
        let id = objects.len() as u32 + 1;
        let (kind, region, instance_id) = if mask_pixels > 0 {
            (ObjectKind::DetectedMask, ObjectRegion::Instance { instance_id: id }, Some(id))
        } else {
            (ObjectKind::DetectedBox, ObjectRegion::Box { x0, y0, x1, y1 }, None)
        };
        objects.push(ObjectDef {
            label: d.label.clone(),
            kind,
            instance_id,
            bbox_px: d.bbox_px,
            region,
            score: Some(d.score),
        });
    }
    let any_mask = objects.iter().any(|o| o.kind == ObjectKind::DetectedMask);
    (labels.filter(|_| any_mask), objects)
}
