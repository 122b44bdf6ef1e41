//! Fuzz bodies: plain functions over arbitrary bytes, called by the `fuzz/` targets and replayed over the
//! committed corpus (`fuzz/corpus/<target>/`) by an ordinary test. They must never panic; errors are fine.

use std::path::Path;

/// Manifests: the bytes as a `frames.json` document and as JSON Lines (both from text, and streamed from raw bytes
/// as a run reads them, invalid UTF-8 included); and as the records a resumed or merged run reads back (a part
/// record, a shard manifest).
pub fn manifest(data: &[u8]) {
    use std::io::BufRead;
    let text = String::from_utf8_lossy(data);
    let path = Path::new("fuzz/frames.json");
    let _ = super::manifest::parse_frames_json(&text, path);
    let _ = super::manifest::parse_frames_jsonl(&text, Path::new("fuzz/frames.jsonl"));
    let lines = std::io::Cursor::new(data).lines();
    for frame in super::manifest::JsonLines::new(lines, Path::new("fuzz/stream.jsonl")) {
        // Every error names the manifest and its line.
        if let Err(e) = frame {
            assert!(e.path().is_some(), "{e}");
        }
    }
    let _ = serde_json::from_slice::<crate::run::PartRecord>(data);
    let _ = serde_json::from_slice::<crate::run::ShardManifest>(data);
}

/// Depth and label images: the bytes as a PNG (8/16-bit gray) and as a `.npy`, through the depth decoder.
pub fn depth(data: &[u8]) {
    use super::depth::{decode_depth, decode_gray_png, DepthFormat};
    let _ = decode_gray_png(data);
    for format in [DepthFormat::Png, DepthFormat::Npy] {
        if let Ok(d) = decode_depth(data, format, Some(1000.0), Some(u16::MAX)) {
            // Every pixel of a decoded image must be addressable, and its depth frame found without a panic.
            let _ = d.count_valid();
            let _ = crate::geometry::occlusion::depth_frame(&d);
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

/// Model inputs: the bytes as a model card (TOML), as an image-filter prompts file (JSON), and through the ONNX
/// pre-check that runs before ONNX Runtime sees a model file.
pub fn model(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(card) = crate::models::card::parse_card(&text, Path::new("fuzz/card.toml")) {
        // A card that validates must give sane sizes.
        let _ = card.input_shape(card.input.frames_per_call());
        if card.output.decode == crate::models::card::Decode::Yolox {
            let _ = card.yolox_cells();
        }
    }
    let _ = crate::models::parse_prompts(&text, Path::new("fuzz/prompts.json"));
    let _ = crate::models::card::sniff_onnx(data);
}

/// Templating inputs: the bytes as a template bank (TOML; a bank that loads renders every phrasing) and as a
/// scene-graph line for the `qa` command (one that parses is templated with the built-in bank and margins).
pub fn qa(data: &[u8]) {
    use crate::qa::templates::{TemplateBank, SLOTS};
    let text = String::from_utf8_lossy(data);
    if let Ok(bank) = TemplateBank::parse(&text, Path::new("fuzz/templates.toml")) {
        let values = ["x"; SLOTS];
        let mut out = String::new();
        for &t in crate::qa::QuestionType::ALL {
            let tt = bank.get(t);
            for template in tt.questions.iter().chain(&tt.yes).chain(&tt.no).chain(&tt.no_at_most).chain(&tt.answers) {
                template.render_into(&mut out, &values);
            }
        }
    }
    if let Ok(graph) = serde_json::from_str::<crate::scene::SceneGraph>(&text) {
        if let Ok(bank) = TemplateBank::builtin() {
            let options = crate::qa::QaOptions { qa_per_image: 8, ..Default::default() };
            let _ = crate::qa::generate_frame(&graph, bank, &options);
        }
    }
}
