//! Model cards, pre-processing, YOLOX decoding, NMS and detection/mask fusion, on synthetic tensors (no ONNX
//! Runtime needed).

mod common;

use std::path::Path;

use proptest::prelude::*;
use spatialsynth::geometry::unproject::ObjectRegion;
use spatialsynth::io::objects::ObjectKind;
use spatialsynth::models::card::{builtin_detector, builtin_segmenter, load_card, parse_card, ModelCard};
use spatialsynth::models::decode::{decode_depth_map, decode_semantic, decode_yolox, iou, Detection, SemanticMap};
use spatialsynth::models::fuse::{class_map, objects_from_detections, FuseParams};
use spatialsynth::models::parse_prompts;
use spatialsynth::models::preprocess::{write_input, InputTransform};

fn detector() -> ModelCard {
    load_card(&builtin_detector()).unwrap()
}

fn segmenter() -> ModelCard {
    load_card(&builtin_segmenter()).unwrap()
}

/// An all-background YOLOX output for the built-in card, with `cells` set: (stride index, gx, gy, box offsets
/// and log sizes, objectness, class, class score).
/// (stride index, gx, gy, [ox, oy, log w, log h], objectness, class, class score)
type Cell = (usize, usize, usize, [f32; 4], f32, usize, f32);

fn yolox_output(card: &ModelCard, cells: &[Cell]) -> Vec<f32> {
    let width = 5 + card.output.classes.len();
    let mut out = vec![0f32; card.yolox_cells() * width];
    for &(si, gx, gy, o, obj, class, score) in cells {
        let mut row = 0;
        for (k, &s) in card.output.strides.iter().enumerate() {
            let g = (card.input.width / s) as usize;
            if k == si {
                row += gy * g + gx;
                break;
            }
            row += g * g;
        }
        let r = &mut out[row * width..(row + 1) * width];
        r[..4].copy_from_slice(&o);
        r[4] = obj;
        r[5 + class] = score;
    }
    out
}

#[test]
fn builtin_cards_parse_and_map_voc_names_to_coco() {
    let (d, s) = (detector(), segmenter());
    assert_eq!(d.output.classes.len(), 80);
    assert_eq!(d.yolox_cells(), 3549);
    assert_eq!(s.output.classes.len(), 21);
    let map = class_map(&d, &s);
    let seg = |coco: &str| {
        let i = d.output.classes.iter().position(|c| c == coco).unwrap();
        map[i].map(|c| s.output.classes[c as usize].clone())
    };
    assert_eq!(seg("dining table").as_deref(), Some("diningtable"));
    assert_eq!(seg("couch").as_deref(), Some("sofa"));
    assert_eq!(seg("tv").as_deref(), Some("tvmonitor"));
    assert_eq!(seg("person").as_deref(), Some("person"));
    assert_eq!(seg("cup"), None);
    // "background" is ignored even if a detector had such a class.
    assert!(map.iter().flatten().all(|&c| c != 0));
}

#[test]
fn cards_reject_inconsistent_or_unknown_settings() {
    let base = std::fs::read_to_string(builtin_detector()).unwrap();
    let path = Path::new("/x/card.toml");
    let bad = |text: String, says: &str| {
        let e = parse_card(&text, path).unwrap_err();
        assert_eq!(e.kind(), "invalid_model");
        assert!(e.to_string().contains(says), "{e} should say {says}");
    };
    bad(base.replace("decode = \"yolox\"", "decode = \"yolo\""), "unknown variant");
    bad(base.replace("layout = \"nchw\"", "layout = \"chw\""), "unknown variant");
    bad(base.replace("width = 416", "width = 0"), "input size");
    bad(base.replace("score_threshold = 0.3", "score_threshold = 1.5"), "score_threshold");
    bad(base.replace("[output]", "[output]\nextra = 1"), "extra");
    bad(base.replace("scale = 1.0 ", "scale = 0.0 "), "scale");
    let depth = |extra: &str| {
        format!(
            "[model]\nname = \"d\"\nfile = \"d.onnx\"\n[input]\nname = \"x\"\nlayout = \"nchw\"\nwidth = 8\nheight = 8\n\
             resize = \"stretch\"\nchannel_order = \"rgb\"\n[output]\nname = \"y\"\n{extra}"
        )
    };
    bad(depth("decode = \"depth_inverse_relative\""), "needs output.inverse");
    bad(depth("decode = \"depth_metric\"\ninverse = { rule = \"median\", median_depth_m = 2.0 }"), "only for");
    bad(
        depth("decode = \"depth_inverse_relative\"\ninverse = { rule = \"affine\", scale = 0.0, shift = 1.0 }"),
        "scale",
    );
    bad(depth("decode = \"semantic_argmax\"\nclasses = [\"a\", \"b\"]\naliases = { c = \"d\" }"), "not a class");
    let ok = parse_card(&depth("decode = \"depth_metric\"\nmax_depth_m = 10.0"), path).unwrap();
    assert_eq!(ok.model_path, Path::new("/x/d.onnx"));
}

#[test]
fn prompts_files_are_checked() {
    let p = Path::new("p.json");
    assert!(parse_prompts(r#"{"prompts": []}"#, p).is_err());
    assert!(parse_prompts(r#"{"prompts": [{"text": "a", "keep": false, "embedding": [1]}]}"#, p)
        .unwrap_err()
        .to_string()
        .contains("every image would be rejected"));
    assert!(parse_prompts(
        r#"{"prompts": [{"text": "a", "keep": true, "embedding": [1, 0]}, {"text": "b", "keep": false, "embedding": [1]}]}"#,
        p
    )
    .is_err());
    let set = parse_prompts(r#"{"prompts": [{"text": "a", "keep": true, "embedding": [3, 4]}]}"#, p).unwrap();
    assert_eq!(set.prompts[0].embedding, [0.6, 0.8]);
}

#[test]
fn letterbox_preprocessing_pads_orders_channels_and_maps_back() {
    let card = detector();
    // A 640x480 frame: scale 0.65, content 416x312 at the top-left.
    let img = image::RgbImage::from_fn(640, 480, |_, _| image::Rgb([10, 20, 30]));
    let mut input = vec![0f32; 3 * 416 * 416];
    let t = write_input(&img, &card.input, &mut input);
    assert_eq!((t.content_w, t.content_h), (416, 312));
    assert!((t.scale_x - 0.65).abs() < 1e-6);
    let at = |c: usize, y: usize, x: usize| input[c * 416 * 416 + y * 416 + x];
    // BGR, 0..255, unnormalised.
    assert_eq!((at(0, 100, 100), at(1, 100, 100), at(2, 100, 100)), (30.0, 20.0, 10.0));
    // Below the content: the pad value.
    assert_eq!((at(0, 320, 5), at(2, 415, 415)), (114.0, 114.0));
    assert_eq!(t.box_to_frame([65.0, 65.0, 130.0, 400.0]), [100.0, 100.0, 200.0, 480.0]);
    // DeepLab: stretch, RGB, pixel / 127.5 - 1, NHWC.
    let seg = segmenter();
    let mut input = vec![0f32; 3 * 257 * 257];
    let t = write_input(&img, &seg.input, &mut input);
    assert_eq!((t.content_w, t.content_h), (257, 257));
    let px = &input[(100 * 257 + 100) * 3..][..3];
    for (v, raw) in px.iter().zip([10.0f32, 20.0, 30.0]) {
        assert!((v - (raw / 127.5 - 1.0)).abs() < 1e-5, "{px:?}");
    }
}

#[test]
fn yolox_decoding_places_boxes_and_suppresses_duplicates() {
    let card = detector();
    let t = InputTransform::new(640, 480, &card.input);
    // Stride 16 cell (10, 5), offsets (0.5, 0.5), size exp(ln 4) * 16 = 64: centre (168, 88) in the input.
    let ln4 = 4f32.ln();
    let person = 0;
    let chair = 56;
    let wine_glass = 40;
    assert_eq!(card.output.classes[wine_glass], "wine glass");
    let out = yolox_output(
        &card,
        &[
            (1, 10, 5, [0.5, 0.5, ln4, ln4], 0.9, person, 0.9),
            // The same person seen by the neighbouring cell, slightly shifted: suppressed (IoU > 0.45).
            (1, 11, 5, [0.0, 0.5, ln4, ln4], 0.8, person, 0.9),
            // A chair overlapping it (8 px lower: IoU 56/72, above nms_iou): another class, kept.
            (1, 10, 5 + 1, [0.5, 0.0, ln4, ln4], 0.7, chair, 0.9),
            // A wine glass on the very same box: one object named twice (IoU 1 > same_object_iou), dropped.
            (1, 10, 5 + 2, [0.5, -1.5, ln4, ln4], 0.6, wine_glass, 0.9),
            // Below the score threshold: 0.5 * 0.5.
            (0, 3, 3, [0.5, 0.5, 0.0, 0.0], 0.5, person, 0.5),
        ],
    );
    let dets = decode_yolox(&out, &[1, 3549, 85], &card, &t).unwrap();
    assert_eq!(dets.len(), 2, "{dets:#?}");
    assert_eq!((dets[0].label.as_str(), dets[1].label.as_str()), ("person", "chair"));
    assert!((dets[0].score - 0.81).abs() < 1e-6);
    let expect = [136.0 / 0.65, 56.0 / 0.65, 200.0 / 0.65, 120.0 / 0.65];
    for (a, b) in dets[0].bbox_px.iter().zip(expect) {
        assert!((a - b).abs() < 1e-3, "{:?} vs {expect:?}", dets[0].bbox_px);
    }
    // Boxes leaving the frame are clipped to it.
    let out = yolox_output(&card, &[(2, 0, 0, [0.0, 0.0, 3.0, 3.0], 0.9, person, 0.9)]);
    let d = &decode_yolox(&out, &[1, 3549, 85], &card, &t).unwrap()[0];
    // Rows of another width (a model with other classes than its card) are refused.
    assert!(decode_yolox(&out[..3549 * 84], &[1, 3549, 84], &card, &t).is_err());
    assert_eq!((d.bbox_px[0], d.bbox_px[1]), (0.0, 0.0));
    assert!(d.bbox_px[2] <= 640.0 && d.bbox_px[3] <= 480.0);
}

#[test]
fn semantic_and_depth_maps_are_sampled_back_at_frame_resolution() {
    let seg = segmenter();
    let t = InputTransform::new(640, 480, &seg.input);
    // 257x257 logits: class 15 (person) on the right half, background elsewhere.
    let (h, w, c) = (257usize, 257usize, 21usize);
    let mut logits = vec![0f32; h * w * c];
    for y in 0..h {
        for x in 0..w {
            logits[(y * w + x) * c + if x >= 129 { 15 } else { 0 }] = 5.0;
        }
    }
    let map = decode_semantic(&logits, &[1, h, w, c], &seg, &t).unwrap();
    // A shape that disagrees with the card is an error, not a panic.
    assert!(decode_semantic(&logits, &[1, h, w], &seg, &t).is_err());
    assert!(decode_semantic(&logits[..h * w * 20], &[1, h, w, 20], &seg, &t).is_err());
    assert_eq!((map.width, map.height, map.classes.len()), (640, 480, 640 * 480));
    assert_eq!(map.classes[100 * 640 + 100], 0);
    assert_eq!(map.classes[100 * 640 + 500], 15);
    // The edge lands where the model's column 129 maps: 129 / 257 * 640 = 321.2.
    let first_person = (0..640).find(|&u| map.classes[u] == 15).unwrap();
    assert!((320..=322).contains(&first_person), "{first_person}");

    let text =
        "[model]\nname = \"d\"\nfile = \"d.onnx\"\n[input]\nname = \"x\"\nlayout = \"nchw\"\nwidth = 4\nheight = 4\n\
                resize = \"stretch\"\nchannel_order = \"rgb\"\n[output]\nname = \"y\"\ndecode = \"depth_metric\"\n\
                max_depth_m = 5.0";
    let card = parse_card(text, Path::new("d.toml")).unwrap();
    let t = InputTransform::new(8, 8, &card.input);
    // A constant 2 m map, with one pixel out of range.
    let mut d = vec![2.0f32; 16];
    d[15] = 50.0;
    let m = decode_depth_map(&d, &[1, 1, 4, 4], &card, &t).unwrap();
    assert!(decode_depth_map(&d, &[1, 2, 4, 4], &card, &t).is_err());
    assert!(decode_depth_map(&[], &[1, 0, 0], &card, &t).is_err());
    assert_eq!(m.len(), 64);
    assert_eq!(m[0], 2.0);
    assert_eq!(m[63], 0.0, "beyond max_depth_m is invalid");
}

fn det(label: &str, class_id: u32, score: f32, b: [f32; 4]) -> Detection {
    Detection { class_id, label: label.into(), score, bbox_px: b }
}

#[test]
fn detections_become_masks_where_the_segmenter_agrees_and_boxes_elsewhere() {
    let (d, s) = (detector(), segmenter());
    let cmap = class_map(&d, &s);
    let (w, h) = (100u32, 80u32);
    // Person pixels (VOC 15) in columns 10..40; nothing else.
    let classes: Vec<u16> = (0..w * h).map(|i| if (10..40).contains(&(i % w)) { 15 } else { 0 }).collect();
    let map = SemanticMap { width: w, height: h, classes };
    let dets = [
        det("person", 0, 0.9, [5.0, 0.0, 45.0, 80.0]),
        // A second, lower-scoring person overlapping the first: gets only what is left (columns 40..45 hold none).
        det("person", 0, 0.6, [30.0, 0.0, 45.0, 80.0]),
        // A cup: the segmenter has no such class.
        det("cup", 41, 0.8, [60.0, 10.0, 70.0, 30.0]),
    ];
    let (labels, objs) = objects_from_detections(&dets, Some((&map, &cmap)), w, h, &FuseParams::default());
    let labels = labels.unwrap();
    assert_eq!(objs.len(), 3);
    assert_eq!(objs[0].kind, ObjectKind::DetectedMask);
    assert_eq!(objs[0].region, ObjectRegion::Instance { instance_id: 1 });
    assert_eq!(labels.iter().filter(|&&l| l == 1).count(), 30 * 80);
    assert_eq!(objs[1].kind, ObjectKind::DetectedBox, "its class pixels all belong to the first person");
    assert_eq!(objs[2].kind, ObjectKind::DetectedBox);
    assert_eq!(objs[2].region, ObjectRegion::Box { x0: 60, y0: 10, x1: 70, y1: 30 });
    assert_eq!(objs[2].score, Some(0.8));
    // Without a segmenter everything is a box, and there is no label image.
    let (labels, objs) = objects_from_detections(&dets, None, w, h, &FuseParams::default());
    assert!(labels.is_none() && objs.iter().all(|o| o.kind == ObjectKind::DetectedBox));
}

proptest! {
    /// NMS output: sorted by score, no two same-class boxes overlapping beyond the threshold, no two boxes of any
    /// classes beyond `same_object_iou`, at most max_detections, every box inside the frame.
    #[test]
    fn nms_invariants(cells in proptest::collection::vec((0usize..3, 0usize..13, 0usize..13, -1.0f32..1.0, -1.0f32..1.0,
                                                         0.0f32..2.5, 0.0f32..2.5, 0.3f32..1.0, 0usize..3, 0.3f32..1.0), 1..60)) {
        let card = detector();
        let t = InputTransform::new(640, 480, &card.input);
        let cells: Vec<_> = cells.into_iter().map(|(s, x, y, ox, oy, lw, lh, obj, c, sc)| (s, x, y, [ox, oy, lw, lh], obj, c, sc)).collect();
        let dets = decode_yolox(&yolox_output(&card, &cells), &[1, 3549, 85], &card, &t).unwrap();
        prop_assert!(dets.len() <= card.output.max_detections as usize);
        for w in dets.windows(2) {
            prop_assert!(w[0].score >= w[1].score);
        }
        for (i, a) in dets.iter().enumerate() {
            prop_assert!(a.score >= card.output.score_threshold);
            prop_assert!(a.bbox_px[0] >= 0.0 && a.bbox_px[2] <= 640.0 && a.bbox_px[1] >= 0.0 && a.bbox_px[3] <= 480.0);
            for b in &dets[i + 1..] {
                let inside = |d: &Detection| d.bbox_px[0] > 0.0 && d.bbox_px[1] > 0.0 && d.bbox_px[2] < 640.0 && d.bbox_px[3] < 480.0;
                if a.class_id == b.class_id && inside(a) && inside(b) {
                    // NMS runs on the unclipped model-input boxes; the frame mapping is a uniform scale, so the IoU of
                    // boxes not clipped by the frame is the same.
                    prop_assert!(iou(a.bbox_px, b.bbox_px) <= card.output.nms_iou + 1e-3);
                }
                if inside(a) && inside(b) {
                    prop_assert!(iou(a.bbox_px, b.bbox_px) <= card.output.same_object_iou + 1e-3);
                }
            }
        }
    }
}

#[test]
fn example_cards_for_bring_your_own_models_are_valid() {
    let dir = common::repo().join("models/examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let card = parse_card(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert!(["depth", "embedding"].contains(&card.output.decode.task()), "{}", path.display());
        n += 1;
    }
    assert_eq!(n, 3);
}
