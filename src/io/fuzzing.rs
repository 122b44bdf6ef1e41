//! Fuzz bodies: plain functions over arbitrary bytes, called by the `fuzz/` targets and replayed over the
//! committed corpus (`fuzz/corpus/<target>/`) by an ordinary test. They must never panic; errors are fine.

use std::path::Path;

/// Manifests: the bytes as a `frames.json` document and as JSON Lines.
pub fn manifest(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz/frames.json");
    let _ = super::manifest::parse_frames_json(&text, path);
    let _ = super::manifest::parse_frames_jsonl(&text, Path::new("fuzz/frames.jsonl"));
}

/// Depth and label images: the bytes as a PNG (8/16-bit gray) and as a `.npy`, through the depth decoder.
pub fn depth(data: &[u8]) {
    use super::depth::{decode_depth, decode_gray_png, DepthFormat};
    let _ = decode_gray_png(data);
    for format in [DepthFormat::Png, DepthFormat::Npy] {
        if let Ok(d) = decode_depth(data, format, Some(1000.0), Some(u16::MAX)) {
            // Every pixel of a decoded image must be addressable.
            let _ = d.count_valid();
        }
    }
}

/// Object annotations: the bytes as a labels map and as a box list for a 64 × 48 image.
pub fn objects(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = super::objects::parse_labels(&value);
        let _ = super::objects::parse_boxes(&value, 64, 48);
    }
}
