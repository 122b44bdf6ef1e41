//! Templating: every answer agrees with the scene graph it came from, swapping A and B flips binary answers,
//! near-ties get no binary question, yes/no is balanced, references are unambiguous, output is deterministic.

mod common;

use proptest::prelude::*;
use spatialsynth::geometry::occlusion::Occlusion;
use spatialsynth::geometry::Point3;
use spatialsynth::io::objects::ObjectKind;
use spatialsynth::io::DepthSource;
use spatialsynth::pipeline::{scene_from_points, ObjectInput, SceneConfig};
use spatialsynth::qa::facts::{cut_off, partly_hidden};
use spatialsynth::qa::numbers::parse_length;
use spatialsynth::qa::templates::TemplateBank;
use spatialsynth::qa::{
    evaluate, generate_frame, generate_frame_counting_draws, references, Form, QaOptions, QaRecord, QuestionType,
    Relation, TypeMix, Units,
};
use spatialsynth::qa::{FrameFacts, Margins};
use spatialsynth::scene::{GroundInfo, SceneGraph};

/// A box standing in a level camera's view: centre `x` (right) and `z` (forward) in metres, size `[w, h, d]`,
/// bottom `lift` above the floor. The camera is 1.4 m above the floor.
#[derive(Clone, Debug)]
struct Block {
    label: &'static str,
    x: f32,
    z: f32,
    size: [f32; 3],
    lift: f32,
    color: Option<&'static str>,
}

const CAMERA_HEIGHT: f32 = 1.4;

fn grid(origin: Point3, a: Point3, b: Point3, step: f32) -> Vec<Point3> {
    let la = (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt();
    let lb = (b[0] * b[0] + b[1] * b[1] + b[2] * b[2]).sqrt();
    let (na, nb) = ((la / step).ceil().max(1.0) as usize, (lb / step).ceil().max(1.0) as usize);
    let mut out = Vec::new();
    for i in 0..=na {
        for j in 0..=nb {
            let (s, t) = (i as f32 / na as f32, j as f32 / nb as f32);
            out.push([0, 1, 2].map(|k| origin[k] + s * a[k] + t * b[k]));
        }
    }
    out
}

/// The visible front and top faces of a block, camera frame (y down).
fn block_points(b: &Block) -> Vec<Point3> {
    let [w, h, d] = b.size;
    let (bottom, top) = (CAMERA_HEIGHT - b.lift, CAMERA_HEIGHT - b.lift - h);
    let step = 0.02;
    let mut pts = grid([b.x - w / 2.0, top, b.z - d / 2.0], [w, 0.0, 0.0], [0.0, bottom - top, 0.0], step);
    pts.extend(grid([b.x - w / 2.0, top, b.z - d / 2.0], [w, 0.0, 0.0], [0.0, 0.0, d], step));
    pts
}

/// A scene graph computed by the real pipeline from a floor and blocks.
fn scene(name: &str, blocks: &[Block]) -> SceneGraph {
    let mut all = grid([-4.0, CAMERA_HEIGHT, 0.5], [8.0, 0.0, 0.0], [0.0, 0.0, 7.5], 0.05);
    let objects: Vec<ObjectInput> = blocks
        .iter()
        .map(|b| ObjectInput {
            label: b.label.into(),
            kind: ObjectKind::Instance,
            instance_id: None,
            bbox_px: [0.0; 4],
            points_in_camera: block_points(b).into(),
            in_box_core: Vec::new(),
            score: None,
            colors: Vec::new(),
        })
        .collect();
    for o in &objects {
        all.extend(&o.points_in_camera);
    }
    let geo = scene_from_points(name, &all, None, &objects, 1e9, None, &SceneConfig::default()).unwrap();
    assert!(geo.ground.found, "{name}");
    let mut objects = geo.objects;
    for o in &mut objects {
        o.color = blocks[o.annotation_index as usize].color.map(String::from);
    }
    let k = spatialsynth::geometry::Intrinsics { fx: 500.0, fy: 500.0, cx: 320.0, cy: 240.0, width: 640, height: 480 };
    SceneGraph {
        frame: name.into(),
        frame_id: name.into(),
        dataset: "synthetic".into(),
        color: Some(format!("{name}.png")),
        depth: None,
        depth_source: DepthSource::File,
        intrinsics: k,
        intrinsics_assumed: false,
        image_filter: None,
        valid_depth_points: all.len() as u32,
        depth_frame_px: None,
        ground: GroundInfo { ..geo.ground },
        canonical_from_camera: geo.canonical.matrix(),
        objects,
        dropped_objects: Vec::new(),
        relations: geo.relations,
    }
}

fn block(label: &'static str, x: f32, z: f32, size: [f32; 3]) -> Block {
    Block { label, x, z, size, lift: 0.0, color: None }
}

fn living_room() -> SceneGraph {
    scene(
        "synthetic/living_room",
        &[
            block("sofa", -1.5, 4.0, [1.8, 0.8, 0.9]),
            block("table", 0.3, 3.0, [1.0, 0.45, 0.6]),
            block("lamp", 1.8, 4.5, [0.3, 1.6, 0.3]),
            Block { label: "vase", x: 0.3, z: 3.0, size: [0.15, 0.3, 0.15], lift: 0.5, color: None },
            block("chair", -0.6, 2.2, [0.5, 0.9, 0.5]),
        ],
    )
}

fn relation_value(graph: &SceneGraph, rel: Relation, a: u32, b: u32) -> f64 {
    let r = graph.relations.iter().find(|r| r.a == a && r.b == b).unwrap();
    f64::from(match rel {
        Relation::Left => r.left_m,
        Relation::Right => -r.left_m,
        Relation::Above => r.above_m,
        Relation::Below => -r.above_m,
        Relation::Front => r.front_m,
        Relation::Behind => -r.front_m,
        Relation::Taller => r.taller_m,
        Relation::Shorter => -r.taller_m,
        Relation::Wider => r.wider_m,
        Relation::Thinner => -r.wider_m,
        Relation::Bigger => r.bigger_log_ratio,
        Relation::Smaller => -r.bigger_log_ratio,
    })
}

/// Every length written in `text`, in metres.
fn lengths_in(text: &str) -> Vec<f64> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let clean = |w: &str| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '.').trim_end_matches('.').to_string();
    words.windows(2).filter_map(|w| parse_length(&format!("{} {}", clean(w[0]), clean(w[1])))).collect()
}

/// Whether `text` is `template` with its placeholders filled: every literal piece appears, in order.
fn follows(template: &str, text: &str) -> bool {
    let text = text.to_lowercase();
    let mut at = 0;
    for (i, piece) in template.to_lowercase().split(['{', '}']).enumerate() {
        // Even pieces are literal text, odd ones placeholder names.
        if i % 2 == 1 || piece.is_empty() {
            continue;
        }
        match text[at..].find(piece) {
            Some(k) => at += k + piece.len(),
            None => return false,
        }
    }
    true
}

/// Checks one record against its graph with code independent of the generator's.
fn check_record(graph: &SceneGraph, bank: &TemplateBank, r: &QaRecord) {
    let o = &r.objects;
    let obj = |i: u32| &graph.objects[i as usize];
    let rel = |a: u32, b: u32| graph.relations.iter().find(|x| x.a == a && x.b == b).unwrap();
    let close = |written: f64, exact: f64| (written - exact).abs() <= (0.08 * exact).max(0.013);
    let tt = bank.get(r.question_type);
    let what = format!("{r:?}");
    assert_eq!(r.labels.len(), o.len(), "{what}");
    for (i, &id) in o.iter().enumerate() {
        assert_eq!(r.labels[i], obj(id).label, "{what}");
    }
    match r.question_type.form() {
        Form::Predicate(relation) => {
            let v = relation_value(graph, relation, o[0], o[1]);
            assert_eq!(r.answer_bool, Some(v > 0.0), "{what}");
            assert!(v.abs() > r.threshold.unwrap(), "near-tie answered: {what}");
            // The answer is a phrasing of the right list (yes when the relation holds), filled in.
            let list = if v > 0.0 { &tt.yes } else { &tt.no };
            assert!(follows(list[r.answer_template as usize].source(), &r.answer), "{what}");
        }
        Form::Choice(relation) => {
            let v = relation_value(graph, relation, o[0], o[1]);
            assert!(v.abs() > r.threshold.unwrap(), "near-tie answered: {what}");
            let winner = if v > 0.0 { o[0] } else { o[1] };
            assert_eq!(r.answer_object, Some(winner), "{what}");
            let name = &r.references[if v > 0.0 { 0 } else { 1 }];
            assert!(r.answer.to_lowercase().contains(&name.to_lowercase()), "{what}");
        }
        Form::PairValue => {
            let x = rel(o[0], o[1]);
            let exact = f64::from(match r.question_type {
                QuestionType::Distance => x.distance_m,
                QuestionType::HorizontalDistance => x.horizontal_distance_m,
                QuestionType::VerticalDistance => x.vertical_distance_m,
                _ => x.gap_m,
            });
            assert_eq!(r.value, Some(exact), "{what}");
            assert!(
                exact > r.threshold.unwrap() && r.threshold.unwrap() >= f64::from(2.0 * x.sigma_m) - 1e-6,
                "{what}"
            );
            assert!(lengths_in(&r.answer).iter().any(|&w| close(w, exact)), "{what}");
        }
        Form::ObjectValue => {
            let x = obj(o[0]);
            let exact = f64::from(match r.question_type {
                QuestionType::Width => x.width_m,
                QuestionType::Height => x.height_m,
                QuestionType::Depth => x.depth_m,
                _ => x.distance_to_camera_m,
            });
            assert_eq!(r.value, Some(exact), "{what}");
            assert!(lengths_in(&r.answer).iter().any(|&w| close(w, exact)), "{what}");
        }
        Form::Direction => {
            let hour = rel(o[0], o[1]).clock_hour;
            assert_eq!(r.value, Some(f64::from(hour)), "{what}");
            assert!(r.answer.contains(&format!("{hour} o'clock")), "{what}");
        }
        Form::HeightDifference => {
            let d = f64::from(obj(o[0]).height_m) - f64::from(obj(o[1]).height_m);
            assert_eq!(r.answer_object, Some(if d > 0.0 { o[0] } else { o[1] }), "{what}");
            assert!(lengths_in(&r.answer).iter().any(|&w| close(w, d.abs())), "{what}");
        }
        Form::CloserTo => {
            let (db, dc) = (f64::from(rel(o[0], o[1]).distance_m), f64::from(rel(o[0], o[2]).distance_m));
            assert_eq!(r.answer_object, Some(if db < dc { o[1] } else { o[2] }), "{what}");
            assert!(lengths_in(&r.answer).iter().any(|&w| close(w, (db - dc).abs())), "{what}");
        }
        Form::PassBetween => {
            let gap = f64::from(rel(o[0], o[1]).gap_m);
            let robot = r.robot_width_m.unwrap();
            assert_eq!(r.answer_bool, Some(gap > robot), "{what}");
            assert!((gap - robot).abs() > r.threshold.unwrap(), "{what}");
            assert!(obj(o[0]).bottom_m.abs() < 0.2 && obj(o[1]).bottom_m.abs() < 0.2, "{what}");
        }
    }
    assert!(follows(tt.questions[r.question_template as usize].source(), &r.question), "{what}");
    // A question about a person does not call the objects things.
    if r.labels.iter().any(|l| spatialsynth::qa::PEOPLE.contains(&l.as_str())) {
        assert!(!tt.questions[r.question_template as usize].calls_things(), "{what}");
    }
    // A gap that is only an upper bound is a pass-between "no", said with "at most".
    assert!(
        !r.value_at_most || (r.question_type == QuestionType::PassBetween && r.answer_bool == Some(false)),
        "{what}"
    );
    let answers = match r.answer_bool {
        Some(true) => &tt.yes,
        Some(false) if r.value_at_most => &tt.no_at_most,
        Some(false) => &tt.no,
        None => &tt.answers,
    };
    assert!(follows(answers[r.answer_template as usize].source(), &r.answer), "{what}");
    // The question names every object by its reference.
    for name in &r.references {
        assert!(r.question.to_lowercase().contains(&name.to_lowercase()), "{what}");
    }
}

fn arb_block() -> impl Strategy<Value = Block> {
    let labels = prop::sample::select(vec!["chair", "table", "lamp", "box", "bottle", "plant", "person"]);
    (labels, -2.0f32..2.0, 2.0f32..6.0, 0.15f32..1.2, 0.15f32..1.6, 0.15f32..1.0, prop::bool::weighted(0.2)).prop_map(
        |(label, x, z, w, h, d, lifted)| Block {
            label,
            x,
            z,
            size: [w, h, d],
            lift: if lifted { 0.4 } else { 0.0 },
            color: None,
        },
    )
}

fn non_overlapping(blocks: Vec<Block>) -> Vec<Block> {
    let mut kept: Vec<Block> = Vec::new();
    for b in blocks {
        let apart = kept.iter().all(|k| {
            (k.x - b.x).abs() > (k.size[0] + b.size[0]) / 2.0 + 0.1
                || (k.z - b.z).abs() > (k.size[2] + b.size[2]) / 2.0 + 0.1
        });
        if apart {
            kept.push(b);
        }
    }
    kept
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_answer_agrees_with_its_scene_graph(blocks in prop::collection::vec(arb_block(), 2..7), seed in 0u64..1000) {
        let blocks = non_overlapping(blocks);
        prop_assume!(blocks.len() >= 2);
        let mut graph = scene("synthetic/random", &blocks);
        // Some objects have something in front of one side (a share from the seed), some of them past the rule.
        for (i, o) in graph.objects.iter_mut().enumerate() {
            let tenths = (seed as usize * 7 + i * 13) % 12;
            o.occlusion = (tenths <= 10).then(|| Occlusion { right: Some(tenths as f32 / 10.0), ..Occlusion::default() });
            // Some reach the image's left edge, the others lie inside it.
            o.bbox_px = if (seed as usize + i).is_multiple_of(3) { [0.0, 100.0, 60.0, 200.0] } else { [100.0, 100.0, 160.0, 200.0] };
        }
        let bank = TemplateBank::builtin().unwrap();
        let margins = Margins::default();
        for units in [Units::Metric, Units::Imperial] {
            let options = QaOptions { seed, qa_per_image: 64, units, ..QaOptions::default() };
            for r in generate_frame(&graph, bank, &options).unwrap() {
                check_record(&graph, bank, &r);
                // No size of a partly hidden object, nor a gap or height difference with it.
                let hidden = r.objects.iter().any(|&o| partly_hidden(&graph, &graph.objects[o as usize], &margins));
                let measures = matches!(
                    r.question_type,
                    QuestionType::Width | QuestionType::Height | QuestionType::Depth | QuestionType::Gap
                        | QuestionType::HeightDifference
                );
                prop_assert!(!(hidden && measures), "{:?} of a hidden object", r.question);
                // A pass-between gap to a partly hidden object is said to be at most what shows.
                if r.question_type == QuestionType::PassBetween {
                    prop_assert_eq!(r.value_at_most, hidden, "{:?}", r.answer);
                }
                // No position of an object cut off by the frame.
                let cut = r.objects.iter().any(|&o| cut_off(&graph, &graph.objects[o as usize], &margins));
                let places = match r.question_type.form() {
                    Form::Predicate(rel) | Form::Choice(rel) => rel.is_position(),
                    Form::PairValue => r.question_type != QuestionType::Gap,
                    Form::Direction | Form::CloserTo => true,
                    _ => r.question_type == QuestionType::DistanceToCamera,
                };
                prop_assert!(!(cut && places), "{:?} of a cut-off object", r.question);
            }
        }
    }

    #[test]
    fn swapping_a_and_b_flips_every_binary_answer(blocks in prop::collection::vec(arb_block(), 2..6)) {
        let blocks = non_overlapping(blocks);
        prop_assume!(blocks.len() >= 2);
        let graph = scene("synthetic/swap", &blocks);
        let m = QaOptions::default().margins;
        let n = graph.objects.len() as u32;
        for &t in QuestionType::ALL.iter().filter(|t| t.arity() == 2) {
            for a in 0..n {
                for b in 0..n {
                    if a == b { continue; }
                    let ab = evaluate(&graph, t, &[a, b], 0.5, &m);
                    let ba = evaluate(&graph, t, &[b, a], 0.5, &m);
                    match t.form() {
                        Form::Predicate(_) => {
                            prop_assert_eq!(ab.is_some(), ba.is_some(), "{} {} {}", t.name(), a, b);
                            if let (Some(x), Some(y)) = (ab, ba) {
                                prop_assert_eq!(x.truth, y.truth.map(|v| !v));
                                prop_assert_eq!(x.margin.unwrap(), -y.margin.unwrap());
                            }
                        }
                        Form::Choice(_) | Form::HeightDifference => {
                            prop_assert_eq!(ab.map(|f| f.winner), ba.map(|f| f.winner));
                        }
                        Form::PairValue | Form::PassBetween => {
                            prop_assert_eq!(ab.map(|f| (f.value, f.truth)), ba.map(|f| (f.value, f.truth)));
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

proptest! {
    // Cheap cases: enough of them to reach the stop's rarer paths (three-object keys, failed renders).
    #![proptest_config(ProptestConfig { cases: 160, ..ProptestConfig::default() })]

    #[test]
    fn stopping_when_a_frame_is_spent_changes_no_question(
        blocks in prop::collection::vec(arb_block(), 2..7),
        seed in 0u64..1000,
        per_image in prop::sample::select(vec![2usize, 8, 16, 64]),
        units in prop::sample::select(vec![Units::Metric, Units::Imperial, Units::Mixed]),
        robots in prop::sample::select(vec![vec![], vec![0.5], vec![0.3, 0.4, 0.5, 0.6, 0.8, 1.0]]),
        mix in prop::sample::select(vec!["", "qualitative=0", "closer_to=5,pass_between=5"]),
    ) {
        // The draw loop stops once no draw can give a question (`qa::exhaust`): the same questions as spending
        // every draw, for graphs with hidden and cut-off objects, any units, and a bank without "at most" answers.
        let blocks = non_overlapping(blocks);
        prop_assume!(blocks.len() >= 2);
        let mut graph = scene("synthetic/spent", &blocks);
        for (i, o) in graph.objects.iter_mut().enumerate() {
            let tenths = (seed as usize * 5 + i * 11) % 12;
            o.occlusion = (tenths <= 10).then(|| Occlusion { left: Some(tenths as f32 / 10.0), ..Occlusion::default() });
            if (seed as usize + i).is_multiple_of(3) {
                o.bbox_px = [0.0, 100.0, 60.0, 200.0];
            }
        }
        let plain = TemplateBank::parse(&without_no_at_most(), std::path::Path::new("plain.toml")).unwrap();
        let bank = if seed.is_multiple_of(2) { TemplateBank::builtin().unwrap() } else { &plain };
        let mix = if mix.is_empty() { TypeMix::default() } else { TypeMix::from_spec(mix).unwrap() };
        let options = QaOptions { seed, qa_per_image: per_image, units, robot_widths_m: robots, mix, ..QaOptions::default() };
        let (mut stopped, mut every) = (Vec::new(), Vec::new());
        let made = generate_frame_counting_draws(&graph, bank, &options, &mut stopped, true);
        let all = generate_frame_counting_draws(&graph, bank, &options, &mut every, false);
        prop_assert_eq!(&stopped, &every);
        prop_assert!(made <= all && (made == all || stopped.len() < per_image), "{} {}", made, all);
    }
}

#[test]
fn the_mirror_relation_gives_the_same_fact() {
    // "Is A left of B?" and "Is B right of A?" agree, for every relation and its mirror.
    let graph = living_room();
    let m = QaOptions::default().margins;
    let mirrors = [
        (QuestionType::LeftPredicate, QuestionType::RightPredicate),
        (QuestionType::AbovePredicate, QuestionType::BelowPredicate),
        (QuestionType::FrontPredicate, QuestionType::BehindPredicate),
        (QuestionType::TallerPredicate, QuestionType::ShorterPredicate),
        (QuestionType::WiderPredicate, QuestionType::ThinnerPredicate),
        (QuestionType::BiggerPredicate, QuestionType::SmallerPredicate),
    ];
    let n = graph.objects.len() as u32;
    let mut answered = 0;
    for (p, q) in mirrors {
        for a in 0..n {
            for b in (0..n).filter(|&b| b != a) {
                let x = evaluate(&graph, p, &[a, b], 0.0, &m).map(|f| f.truth);
                let y = evaluate(&graph, q, &[b, a], 0.0, &m).map(|f| f.truth);
                assert_eq!(x, y, "{} vs {}", p.name(), q.name());
                answered += usize::from(x.is_some());
            }
        }
    }
    assert!(answered > 40, "{answered}");
}

#[test]
fn the_living_room_answers_match_what_was_built() {
    let graph = living_room();
    let label = |i: u32| graph.objects[i as usize].label.as_str();
    let id = |l: &str| graph.objects.iter().position(|o| o.label == l).unwrap() as u32;
    let m = QaOptions::default().margins;
    let truth = |t, a: &str, b: &str| evaluate(&graph, t, &[id(a), id(b)], 0.0, &m).and_then(|f| f.truth);
    assert_eq!(truth(QuestionType::LeftPredicate, "sofa", "table"), Some(true));
    assert_eq!(truth(QuestionType::RightPredicate, "sofa", "lamp"), Some(false));
    // In front = nearer the viewer: the chair (2.2 m) is in front of the sofa (4 m), not behind it.
    assert_eq!(truth(QuestionType::FrontPredicate, "chair", "sofa"), Some(true));
    assert_eq!(truth(QuestionType::BehindPredicate, "chair", "sofa"), Some(false));
    // Height means the vertical size (the lamp is 1.6 m tall and 0.3 m wide), not the width.
    assert_eq!(truth(QuestionType::TallerPredicate, "lamp", "sofa"), Some(true));
    assert_eq!(truth(QuestionType::WiderPredicate, "lamp", "sofa"), Some(false));
    // The vase stands on the table: above it.
    assert_eq!(truth(QuestionType::AbovePredicate, "vase", "table"), Some(true));
    let h = evaluate(&graph, QuestionType::Height, &[id("lamp")], 0.0, &m).unwrap().value.unwrap();
    assert!((h - 1.6).abs() < 0.05, "{h}");
    let w = evaluate(&graph, QuestionType::Width, &[id("sofa")], 0.0, &m).unwrap().value.unwrap();
    assert!((w - 1.8).abs() < 0.05, "{w}");
    // The sofa–table gap (about 0.5 m sideways) lets a 0.3 m robot through, not a 1 m one.
    let pass = |w| evaluate(&graph, QuestionType::PassBetween, &[id("sofa"), id("table")], w, &m).and_then(|f| f.truth);
    assert_eq!(pass(0.3), Some(true), "{}", label(id("sofa")));
    assert_eq!(pass(1.0), Some(false));
    let bank = TemplateBank::builtin().unwrap();
    for seed in 0..20 {
        let options = QaOptions { seed, qa_per_image: 40, ..QaOptions::default() };
        for r in generate_frame(&graph, bank, &options).unwrap() {
            check_record(&graph, bank, &r);
        }
    }
}

#[test]
fn near_ties_get_no_binary_question() {
    // Two chairs side by side 2 cm apart in depth and of equal size, at 4 m (depth noise about 5 cm there), and a
    // table clearly in front of them.
    let graph = scene(
        "synthetic/tie",
        &[
            Block { color: Some("red"), ..block("chair", -0.5, 4.0, [0.5, 0.9, 0.5]) },
            Block { color: Some("blue"), ..block("chair", 0.5, 4.02, [0.5, 0.9, 0.5]) },
            block("table", 0.0, 2.0, [1.2, 0.7, 0.8]),
        ],
    );
    let refs = references(&graph, &QaOptions::default().references);
    assert_eq!(refs.iter().flatten().count(), 3, "{refs:?}");
    let bank = TemplateBank::builtin().unwrap();
    let chairs: Vec<u32> = (0..3).filter(|&i| graph.objects[i as usize].label == "chair").collect();
    let tied = [
        QuestionType::FrontPredicate,
        QuestionType::FrontChoice,
        QuestionType::BehindPredicate,
        QuestionType::BehindChoice,
        QuestionType::TallerPredicate,
        QuestionType::TallerChoice,
        QuestionType::ShorterPredicate,
        QuestionType::WiderChoice,
        QuestionType::BiggerPredicate,
        QuestionType::SmallerChoice,
        QuestionType::AbovePredicate,
        QuestionType::HeightDifference,
    ];
    let mut total = 0;
    let mut chair_pairs = 0;
    for seed in 0..200 {
        let options = QaOptions { seed, qa_per_image: 30, ..QaOptions::default() };
        for r in generate_frame(&graph, bank, &options).unwrap() {
            total += 1;
            let both_chairs = r.objects.len() == 2 && r.objects.iter().all(|o| chairs.contains(o));
            if both_chairs {
                chair_pairs += 1;
                assert!(!tied.contains(&r.question_type), "near-tie asked: {r:?}");
            }
        }
    }
    // The chairs are still asked about: left/right, distances.
    assert!(total > 1000 && chair_pairs > 50, "{total} {chair_pairs}");
}

#[test]
fn yes_and_no_are_balanced() {
    let graph = living_room();
    let bank = TemplateBank::builtin().unwrap();
    let (mut yes, mut no) = (0, 0);
    for seed in 0..300 {
        let options = QaOptions { seed, qa_per_image: 20, ..QaOptions::default() };
        for r in generate_frame(&graph, bank, &options).unwrap() {
            match r.answer_bool {
                Some(true) => yes += 1,
                Some(false) => no += 1,
                None => {}
            }
        }
    }
    let share = f64::from(yes) / f64::from(yes + no);
    assert!(yes + no > 1000 && (share - 0.5).abs() < 0.03, "{yes} yes, {no} no");
}

#[test]
fn objects_of_one_class_are_told_apart_or_left_out() {
    let chair = |x, z, color| Block { color, ..block("chair", x, z, [0.5, 0.9, 0.5]) };
    // Colour first, then position.
    let g = scene(
        "synthetic/chairs",
        &[chair(-1.0, 3.0, Some("red")), chair(1.0, 3.0, Some("blue")), block("box", 0.0, 2.0, [0.3, 0.3, 0.3])],
    );
    let refs = references(&g, &QaOptions::default().references);
    let by_label = |r: &[Option<String>]| {
        let mut v: Vec<String> = r.iter().flatten().cloned().collect();
        v.sort();
        v
    };
    assert_eq!(by_label(&refs), ["the blue chair", "the box", "the red chair"]);
    let g = scene("synthetic/chairs2", &[chair(-1.0, 3.0, None), chair(1.0, 3.0, None)]);
    assert_eq!(
        by_label(&references(&g, &QaOptions::default().references)),
        ["the chair on the left", "the chair on the right"]
    );
    let g = scene("synthetic/chairs3", &[chair(-1.0, 3.0, None), chair(1.0, 3.0, None), chair(0.0, 5.0, None)]);
    assert_eq!(
        by_label(&references(&g, &QaOptions::default().references)),
        ["the farthest chair", "the leftmost chair", "the rightmost chair"]
    );
    // Same colour, same distance, side by side but only 5 cm apart in x (their centroids): one cannot be named.
    let g = scene(
        "synthetic/chairs4",
        &[chair(0.0, 3.0, Some("red")), chair(0.0, 4.5, Some("red")), chair(0.05, 6.0, Some("red"))],
    );
    let refs = references(&g, &QaOptions::default().references);
    assert_eq!(by_label(&refs), ["the farthest chair", "the nearest chair"], "{refs:?}");
    // The middle chair never appears in a question.
    let middle = g.objects.iter().position(|o| (o.centroid_m[1] - 4.5).abs() < 0.5).unwrap() as u32;
    let bank = TemplateBank::builtin().unwrap();
    for seed in 0..30 {
        for r in generate_frame(&g, bank, &QaOptions { seed, ..QaOptions::default() }).unwrap() {
            assert!(!r.objects.contains(&middle), "{r:?}");
        }
    }
    // "the box" would be ambiguous beside a cardboard box; "the cardboard box" is not.
    let g = scene(
        "synthetic/boxes",
        &[block("box", -1.0, 3.0, [0.3, 0.3, 0.3]), block("cardboard box", 1.0, 3.0, [0.4, 0.4, 0.4])],
    );
    assert_eq!(
        by_label(&references(&g, &QaOptions::default().references)),
        ["the box on the left", "the cardboard box"]
    );
}

#[test]
fn no_question_is_answered_by_the_names_of_its_objects() {
    // Three chairs named by where they stand (leftmost, rightmost, farthest), two bottles by their distance (the
    // nearer, the farther: 5 cm apart sideways), two cups by their colours and a table. "Is the leftmost chair left
    // of the farthest chair?" or "Which is in front, the nearer bottle or the farther bottle?" is answered by the
    // names, so it is never asked; the same relations between the cups (named by colour), and between a chair or
    // a bottle and an object of another class, are.
    let chair = |x, z| block("chair", x, z, [0.5, 0.9, 0.5]);
    let graph = scene(
        "synthetic/named_by_position",
        &[
            chair(-1.2, 3.0),
            chair(1.2, 3.0),
            chair(0.0, 5.5),
            block("bottle", 0.8, 2.0, [0.1, 0.3, 0.1]),
            block("bottle", 0.85, 3.5, [0.1, 0.3, 0.1]),
            Block { color: Some("red"), ..block("cup", -0.4, 2.2, [0.1, 0.12, 0.1]) },
            Block { color: Some("blue"), ..block("cup", 0.1, 3.0, [0.1, 0.12, 0.1]) },
            block("table", 0.0, 4.2, [1.0, 0.7, 0.6]),
        ],
    );
    let refs = references(&graph, &QaOptions::default().references);
    let mut names: Vec<&str> = refs.iter().flatten().map(String::as_str).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "the blue cup",
            "the farther bottle",
            "the farthest chair",
            "the leftmost chair",
            "the nearer bottle",
            "the red cup",
            "the rightmost chair",
            "the table"
        ]
    );
    let class = |o: u32| graph.objects[o as usize].label.as_str();
    let bank = TemplateBank::builtin().unwrap();
    // Left/right and front/behind questions between two objects of one class, and between classes.
    let (mut within, mut across) = ([0usize; 2], [0usize; 2]);
    let mut same_class_pairs = 0;
    for seed in 0..200 {
        for r in generate_frame(&graph, bank, &QaOptions { seed, qa_per_image: 30, ..QaOptions::default() }).unwrap() {
            check_record(&graph, bank, &r);
            let same_class = r.objects.len() == 2 && class(r.objects[0]) == class(r.objects[1]);
            let family = match r.question_type.form() {
                Form::Predicate(Relation::Left | Relation::Right) | Form::Choice(Relation::Left | Relation::Right) => 0,
                Form::Predicate(Relation::Front | Relation::Behind)
                | Form::Choice(Relation::Front | Relation::Behind) => 1,
                _ => {
                    same_class_pairs += usize::from(same_class);
                    continue;
                }
            };
            if !same_class {
                across[family] += 1;
                continue;
            }
            within[family] += 1;
            let answers = |o: u32| {
                let name = refs[o as usize].as_deref().unwrap_or("");
                let words: &[&str] = match family {
                    0 => &["leftmost", "rightmost", "on the left", "on the right"],
                    _ => &["nearest", "farthest", "nearer", "farther"],
                };
                words.iter().any(|w| name.contains(w))
            };
            assert!(!answers(r.objects[0]) && !answers(r.objects[1]), "answered by the names: {:?}", r.question);
            assert_eq!(class(r.objects[0]), "cup", "{:?}", r.question);
        }
    }
    // The cups are asked both ways; the chairs and the bottles are still asked about together (distances, heights,
    // directions), and each of them against the other classes on both relations.
    assert!(within.iter().all(|&n| n > 5), "{within:?}");
    assert!(same_class_pairs > 100 && across.iter().all(|&n| n > 100), "{same_class_pairs} {across:?}");
}

#[test]
fn objects_cut_off_by_the_frame_are_not_measured_by_what_shows() {
    // A chair of which the frame shows only its lowest 0.3 m (its box reaches the image's top edge), a whole box
    // 0.5 m tall and a whole stool 0.2 m tall. The chair's height, width and depth are lower bounds: they are not
    // asked, nor is a height difference with it, and a size comparison only when the chair is the larger one
    // ("Is the chair taller than the box?" would be answered "no" from the part in view). The same when the chair's
    // box is inside the image but most of one side borders something in front of it (it goes on behind that); a
    // rule that asks for more of the side than that takes it as whole.
    // So when the chair shows only its top 0.3 m, 0.4 m above the floor, as over a table in front of it: a chair
    // stands on the floor, and its base is out of view.
    // The position of the chair cut off by the frame is not asked either (its part out of view may lie anywhere
    // beyond the image's edge: `Margins::cut_off_positions`); that of the occluded chair and of the chair with its
    // base hidden is (their hidden part adjoins the part in view).
    // And so when a third of the points of the chair's region lay well below the ground, left out with the
    // ground's: the ground is a table top, and the chair stands under it on a floor out of the picture. And when
    // the chair rises no higher than 0.15 m above the ground (0.1 m; its points reach 0.2 m below it): it lies in
    // the ground plane, which is its top, as a table's whose top RANSAC took for the ground.
    // How the chair is hidden: its box, occlusion, lift and share of its region below the ground, and the margins
    // that take it as whole.
    type Hiding = (&'static str, [f32; 4], Option<Occlusion>, f32, f32, Margins);
    let inside = [150.0, 60.0, 260.0, 120.0];
    let hidings: [Hiding; 5] = [
        ("cut off", [150.0, 0.0, 260.0, 120.0], None, 0.0, 0.0, Margins { cut_off_px: None, ..Default::default() }),
        (
            "occluded",
            inside,
            Some(Occlusion { left: Some(0.0), top: Some(0.6), right: Some(0.1), bottom: None }),
            0.0,
            0.0,
            Margins { occluded_fraction: Some(0.7), ..Default::default() },
        ),
        ("base hidden", inside, None, 0.4, 0.0, Margins { floor_standing: Vec::new(), ..Default::default() }),
        ("below the ground", inside, None, 0.0, 0.3, Margins { below_ground_share: None, ..Default::default() }),
        ("in the ground plane", inside, None, -0.2, 0.0, Margins { floor_standing: Vec::new(), ..Default::default() }),
    ];
    for (how, chair_box, occlusion, lift, below, whole) in hidings {
        hidden_chair_is_not_measured_by_what_shows(how, chair_box, occlusion, lift, below, whole);
    }
}

fn hidden_chair_is_not_measured_by_what_shows(
    how: &str,
    chair_box: [f32; 4],
    occlusion: Option<Occlusion>,
    lift: f32,
    below: f32,
    whole: Margins,
) {
    let mut graph = scene(
        &format!("synthetic/{how}"),
        &[
            Block { lift, ..block("chair", -0.8, 3.0, [0.6, 0.3, 0.5]) },
            block("box", 0.8, 3.0, [0.3, 0.5, 0.3]),
            block("stool", 0.0, 2.5, [0.3, 0.2, 0.3]),
        ],
    );
    let id = |label: &str| graph.objects.iter().position(|o| o.label == label).unwrap() as u32;
    let (chair, box_, stool) = (id("chair"), id("box"), id("stool"));
    graph.objects[chair as usize].occlusion = occlusion;
    let in_region = graph.objects[chair as usize].points_in_region;
    graph.objects[chair as usize].points_below_ground = (below * in_region as f32) as u32;
    assert!(below == 0.0 || graph.objects[chair as usize].points_below_ground > in_region / 100, "{in_region}");
    for (o, bbox) in [(chair, chair_box), (box_, [400.0, 200.0, 470.0, 300.0]), (stool, [300.0, 250.0, 340.0, 300.0])] {
        graph.objects[o as usize].bbox_px = bbox;
    }
    let bank = TemplateBank::builtin().unwrap();
    let size = |o: u32, rel: Relation| {
        let o = &graph.objects[o as usize];
        match rel {
            Relation::Taller | Relation::Shorter => o.height_m,
            Relation::Wider | Relation::Thinner => o.width_m,
            _ => o.volume_m3,
        }
    };
    let is_size = |rel| {
        matches!(
            rel,
            Relation::Taller
                | Relation::Shorter
                | Relation::Wider
                | Relation::Thinner
                | Relation::Bigger
                | Relation::Smaller
        )
    };
    // Questions about the chair, by kind: its own sizes, height differences, size comparisons it wins, those it
    // loses, its distance from the camera, its gaps, a robot passing beside it (yes, no), its position against
    // the others (left, above, in front, distances, directions, which is closer).
    let whole_margins = whole.clone();
    let count = |options: &QaOptions| {
        let mut n = [0usize; 9];
        for seed in 0..300 {
            let records =
                generate_frame(&graph, bank, &QaOptions { seed, qa_per_image: 30, ..options.clone() }).unwrap();
            for r in records.iter().filter(|r| r.objects.contains(&chair)) {
                check_record(&graph, bank, r);
                match r.question_type.form() {
                    Form::ObjectValue if r.question_type == QuestionType::DistanceToCamera => n[4] += 1,
                    Form::ObjectValue => n[0] += 1,
                    Form::HeightDifference => n[1] += 1,
                    Form::PairValue if r.question_type == QuestionType::Gap => n[5] += 1,
                    Form::PassBetween => {
                        // The chair is partly hidden in every case here: the gap beside it is at most what shows.
                        let whole = options.margins == whole_margins;
                        assert_eq!(r.value_at_most, !whole, "{}", r.answer);
                        let at_most = ["at most", "no more than"].iter().any(|w| r.answer.to_lowercase().contains(w));
                        assert_eq!(at_most, !whole, "{}", r.answer);
                        n[if r.answer_bool == Some(true) { 6 } else { 7 }] += 1
                    }
                    Form::Predicate(rel) | Form::Choice(rel) if is_size(rel) => {
                        let other = r.objects.iter().copied().find(|&o| o != chair).unwrap();
                        n[if size(chair, rel) > size(other, rel) { 2 } else { 3 }] += 1;
                    }
                    Form::Predicate(_) | Form::Choice(_) | Form::PairValue | Form::Direction | Form::CloserTo => {
                        n[8] += 1
                    }
                }
            }
        }
        n
    };
    let [sizes, differences, wins, losses, distance, gaps, pass, no_pass, positions] = count(&QaOptions::default());
    assert_eq!((sizes, differences, losses, gaps, pass), (0, 0, 0, 0, 0), "asked of the {how} chair");
    // A robot passes only between objects on the floor: never beside the lifted chair.
    let on_floor = lift == 0.0;
    assert!(wins > 50 && (no_pass > 5) == on_floor, "{how}: {wins} {no_pass}");
    // A bank without "at most" answers has no honest way to say the gap: the question is not asked.
    let plain = TemplateBank::parse(&without_no_at_most(), std::path::Path::new("plain.toml")).unwrap();
    let no_pass_plain: usize = (0..300)
        .flat_map(|seed| {
            generate_frame(&graph, &plain, &QaOptions { seed, qa_per_image: 30, ..QaOptions::default() }).unwrap()
        })
        .filter(|r| r.objects.contains(&chair) && r.question_type == QuestionType::PassBetween)
        .count();
    assert_eq!(no_pass_plain, 0, "{how}");
    let placed = how != "cut off";
    assert!((distance > 20) == placed && (positions > 100) == placed, "{how}: {distance} {positions}");
    if !placed {
        assert_eq!((distance, positions), (0, 0), "the position of the {how} chair was asked");
        // With `cut_off_positions`, it is asked again (the sizes stay unasked).
        let margins = Margins { cut_off_positions: true, ..Margins::default() };
        let [sizes, _, _, _, distance, _, _, _, positions] = count(&QaOptions { margins, ..QaOptions::default() });
        assert!(sizes == 0 && distance > 20 && positions > 100, "{how}: {sizes} {distance} {positions}");
    }
    // Without the rule, the part in view is taken for the chair: the same questions are asked, and lost.
    let [sizes, differences, wins, losses, distance, gaps, pass, _, positions] =
        count(&QaOptions { margins: whole, ..QaOptions::default() });
    assert!(sizes > 50 && differences > 20 && losses > 50 && wins > 50, "{how}: {sizes} {differences} {losses} {wins}");
    assert!(gaps > 20 && (pass > 5) == on_floor, "{how}: {gaps} {pass}");
    assert!(distance > 20 && positions > 100, "{how}: {distance} {positions}");
}

#[test]
fn the_margins_of_a_depth_image_without_depth_cut_objects_off() {
    // A registered depth sensor leaves the image's border without depth: a box reaching into that margin has no
    // points there, as if the image ended at the margin.
    let mut graph = living_room();
    let id = |g: &SceneGraph, label: &str| g.objects.iter().position(|o| o.label == label).unwrap();
    let lamp = id(&graph, "lamp");
    graph.objects[lamp].bbox_px = [520.0, 100.0, 620.0, 300.0];
    let margins = Margins::default();
    let cut = |g: &SceneGraph| cut_off(g, &g.objects[lamp], &margins);
    assert!(!cut(&graph), "no depth frame: the image's border");
    graph.depth_frame_px = Some([38, 45, 606, 472]);
    assert!(cut(&graph) && partly_hidden(&graph, &graph.objects[lamp], &margins));
    graph.depth_frame_px = Some([38, 45, 630, 472]);
    assert!(!cut(&graph), "the box ends 10 px inside the depth frame");
    // A depth frame that does not overlap the image is ignored.
    graph.depth_frame_px = Some([700, 500, 900, 600]);
    assert!(!cut(&graph));
    // Its height is then not asked, nor where it is.
    graph.depth_frame_px = Some([38, 45, 606, 472]);
    let bank = TemplateBank::builtin().unwrap();
    let mut asked = 0;
    for seed in 0..100 {
        for r in generate_frame(&graph, bank, &QaOptions { seed, ..QaOptions::default() }).unwrap() {
            if r.objects.contains(&(lamp as u32)) {
                asked += 1;
                let sized_or_placed = !matches!(
                    r.question_type.form(),
                    Form::Predicate(rel) | Form::Choice(rel) if !rel.is_position()
                ) && r.question_type.form() != Form::PassBetween;
                assert!(!sized_or_placed, "{}", r.question);
            }
        }
    }
    // It is still compared in size where it is the larger one.
    assert!(asked > 20, "{asked}");
}

#[test]
fn people_are_not_called_objects() {
    // "Which object is taller, the person or the chair?": a question naming a person takes a phrasing that does not
    // call the objects things; the others still use every phrasing.
    let graph = scene(
        "synthetic/people",
        &[
            block("person", -1.0, 3.0, [0.5, 1.7, 0.3]),
            block("chair", 0.0, 3.5, [0.5, 0.9, 0.5]),
            block("box", 1.0, 3.0, [0.4, 0.4, 0.4]),
        ],
    );
    let bank = TemplateBank::builtin().unwrap();
    let (mut about_people, mut things_otherwise) = (0, 0);
    for seed in 0..200 {
        for r in generate_frame(&graph, bank, &QaOptions { seed, ..QaOptions::default() }).unwrap() {
            let says_things = bank.get(r.question_type).questions[r.question_template as usize].calls_things();
            if r.labels.iter().any(|l| l == "person") {
                about_people += 1;
                assert!(!says_things, "{}", r.question);
            } else {
                things_otherwise += usize::from(says_things);
            }
        }
    }
    assert!(about_people > 500 && things_otherwise >= 10, "{about_people} {things_otherwise}");
    // With no classes of people, the person is an object like the others.
    let options = QaOptions { people: Vec::new(), ..QaOptions::default() };
    let called: usize = (0..200)
        .flat_map(|seed| generate_frame(&graph, bank, &QaOptions { seed, ..options.clone() }).unwrap())
        .filter(|r| r.labels.iter().any(|l| l == "person"))
        .filter(|r| bank.get(r.question_type).questions[r.question_template as usize].calls_things())
        .count();
    assert!(called > 20, "{called}");
    assert!(QaOptions { people: vec!["Person".into()], ..QaOptions::default() }.validate().is_err());
    // In a `--qa-config`: `null` is none, and a config written before the key gets the default.
    assert!(serde_json::from_str::<QaOptions>(r#"{"people": null}"#).unwrap().people.is_empty());
    assert_eq!(serde_json::from_str::<QaOptions>("{}").unwrap().people, QaOptions::default().people);
}

#[test]
fn a_frame_whose_questions_run_out_stops_drawing() {
    // Two or three objects answer a few dozen questions at most: asked for 64, the frame stops drawing once each
    // that can be asked was, long before its 64 × 24 draws, with the same questions as when it spends them all. Also
    // with mixed units, no robot widths, and a bank without "at most" answers beside the cut-off box.
    let chair = block("chair", -0.8, 3.0, [0.6, 0.9, 0.5]);
    let boxed = block("box", 0.8, 3.5, [0.3, 0.5, 0.3]);
    let two = scene("synthetic/two", &[chair.clone(), boxed.clone()]);
    let mut three = scene("synthetic/three", &[chair, boxed, block("lamp", 0.0, 4.5, [0.3, 1.5, 0.3])]);
    let box_id = three.objects.iter().position(|o| o.label == "box").unwrap();
    three.objects[box_id].bbox_px = [600.0, 200.0, 640.0, 300.0];
    let builtin = TemplateBank::builtin().unwrap();
    let plain = TemplateBank::parse(&without_no_at_most(), std::path::Path::new("plain.toml")).unwrap();
    let plain_mixed = QaOptions { units: Units::Mixed, robot_widths_m: Vec::new(), ..QaOptions::default() };
    let cases = [
        (&two, builtin, QaOptions::default()),
        (&three, builtin, QaOptions::default()),
        // A robot 2 m wide cannot pass beside the cut-off box, and this bank cannot say so: its render fails.
        (&three, &plain, QaOptions { robot_widths_m: vec![2.0], ..QaOptions::default() }),
        (&three, &plain, plain_mixed),
    ];
    for (k, (graph, bank, base)) in cases.into_iter().enumerate() {
        let mut spent_early = 0;
        for seed in 0..20 {
            let options = QaOptions { seed, qa_per_image: 64, ..base.clone() };
            let (mut stopped, mut every) = (Vec::new(), Vec::new());
            let made = generate_frame_counting_draws(graph, bank, &options, &mut stopped, true);
            let all = generate_frame_counting_draws(graph, bank, &options, &mut every, false);
            assert_eq!(stopped, every, "case {k}, seed {seed}");
            assert!(!stopped.is_empty() && stopped.len() < 64, "case {k}, seed {seed}: {}", stopped.len());
            assert_eq!(all, 64 * 24, "case {k}, seed {seed}");
            spent_early += usize::from(made < all / 2);
        }
        eprintln!("case {k}: {spent_early} of 20 seeds stopped in under half the draws");
        assert!(spent_early >= 15, "case {k}: {spent_early}");
    }
}

#[test]
fn every_type_a_frame_can_answer_is_drawn() {
    // The draws take each type's objects from a pool (`FrameFacts::may_answer`): no type that some objects of the
    // frame answer may be left out. The living room (every object referable) with its lamp in a depth margin.
    let mut graph = living_room();
    let lamp = graph.objects.iter().position(|o| o.label == "lamp").unwrap();
    graph.objects[lamp].bbox_px = [520.0, 100.0, 620.0, 300.0];
    graph.depth_frame_px = Some([38, 45, 606, 472]);
    let options = QaOptions { qa_per_image: 64, ..QaOptions::default() };
    let facts = FrameFacts::new(&graph, &options.margins);
    let n = graph.objects.len() as u32;
    let mut answerable = std::collections::BTreeSet::new();
    for &t in QuestionType::ALL.iter() {
        for a in 0..n {
            for b in (0..n).filter(|&b| b != a) {
                for c in (0..n).filter(|&c| c != a && c != b) {
                    let objects = &[a, b, c][..t.arity()];
                    if options.robot_widths_m.iter().any(|&w| facts.evaluate(t, objects, w).is_some()) {
                        answerable.insert((t.name(), objects.contains(&(lamp as u32))));
                    }
                }
            }
        }
    }
    let bank = TemplateBank::builtin().unwrap();
    let mut drawn = std::collections::BTreeSet::new();
    for seed in 0..60 {
        for r in generate_frame(&graph, bank, &QaOptions { seed, ..options.clone() }).unwrap() {
            drawn.insert((r.question_type.name(), r.objects.contains(&(lamp as u32))));
        }
    }
    // Most types are answered of the others; some (size comparisons it wins) of the lamp too.
    assert!(answerable.len() > 40 && answerable.iter().filter(|(_, l)| *l).count() > 5, "{answerable:?}");
    let missing: Vec<_> = answerable.difference(&drawn).collect();
    assert!(missing.is_empty(), "answerable but never drawn: {missing:?}");
}

#[test]
fn hidden_parts_do_not_decide_positions() {
    // A chair showing only its top 0.3 m, 0.4 m above the floor (its base behind something: a chair stands on the
    // floor), a whole box on the floor and a lamp hanging 1.2 m up (not a floor-standing class: whole). The chair's
    // centre as seen is above the box's, but the whole chair's need not be: it is never called the higher of the
    // two, nor is a vertical distance asked with it; it is called the lower one against the lamp.
    let mut graph = scene(
        "synthetic/base_hidden",
        &[
            Block { lift: 0.4, ..block("chair", -0.8, 3.0, [0.6, 0.3, 0.5]) },
            block("box", 0.8, 3.0, [0.3, 0.5, 0.3]),
            Block { lift: 1.2, ..block("lamp", 0.0, 3.5, [0.3, 0.3, 0.3]) },
        ],
    );
    let id = |label: &str| graph.objects.iter().position(|o| o.label == label).unwrap() as u32;
    let (chair, box_, lamp) = (id("chair"), id("box"), id("lamp"));
    let z = |g: &SceneGraph, o: u32| g.objects[o as usize].centroid_m[2];
    assert!(z(&graph, box_) < z(&graph, chair) && z(&graph, chair) < z(&graph, lamp));
    let margins = Margins::default();
    let hidden = |g: &SceneGraph, o: u32| partly_hidden(g, &g.objects[o as usize], &margins);
    assert!(hidden(&graph, chair) && !hidden(&graph, box_) && !hidden(&graph, lamp));
    let bank = TemplateBank::builtin().unwrap();
    // Per question about the chair: above/below with the chair the higher one, with it the lower one, vertical
    // distances, and the lamp's own sizes (a lifted object of another class is whole).
    let count = |graph: &SceneGraph, options: &QaOptions| {
        let mut n = [0usize; 4];
        for seed in 0..300 {
            let records =
                generate_frame(graph, bank, &QaOptions { seed, qa_per_image: 30, ..options.clone() }).unwrap();
            for r in &records {
                check_record(graph, bank, r);
                let vertical = matches!(
                    r.question_type.form(),
                    Form::Predicate(Relation::Above | Relation::Below)
                        | Form::Choice(Relation::Above | Relation::Below)
                );
                if r.objects.contains(&chair) && vertical {
                    let other = r.objects.iter().copied().find(|&o| o != chair).unwrap();
                    n[usize::from(z(graph, chair) < z(graph, other))] += 1;
                }
                if r.objects.contains(&chair) && r.question_type == QuestionType::VerticalDistance {
                    n[2] += 1;
                }
                if r.objects == [lamp] && r.question_type == QuestionType::Height {
                    n[3] += 1;
                }
            }
        }
        n
    };
    let [higher, lower, vertical, lamp_height] = count(&graph, &QaOptions::default());
    assert_eq!((higher, vertical), (0, 0), "the chair with no base in view");
    assert!(lower > 20 && lamp_height > 5, "{lower} {lamp_height}");
    // Without the floor-standing rule, the chair is taken as whole: called the higher one, and measured.
    let whole =
        QaOptions { margins: Margins { floor_standing: Vec::new(), ..Margins::default() }, ..QaOptions::default() };
    let [higher, _, vertical, _] = count(&graph, &whole);
    assert!(higher > 20 && vertical > 5, "{higher} {vertical}");
    // The rule needs a found ground, and a base strictly above ground_contact_m.
    graph.ground.found = false;
    assert!(!hidden(&graph, chair));
    graph.ground.found = true;
    graph.objects[chair as usize].bottom_m = margins.ground_contact_m;
    assert!(!hidden(&graph, chair));
    graph.objects[chair as usize].bottom_m = margins.ground_contact_m + 0.001;
    assert!(hidden(&graph, chair));
}

#[test]
fn objects_partly_hidden_are_not_named_by_their_size() {
    let bank = TemplateBank::builtin().unwrap();
    // Two boxes at one place and distance, told apart by size only: "the larger box" and "the smaller box", and
    // never compared in size (the names answer it). When the smaller one is cut off, it may be the larger: neither
    // name holds, and neither box is asked about.
    let mut graph = scene(
        "synthetic/sizes",
        &[
            block("box", -0.3, 3.0, [0.5, 0.5, 0.5]),
            block("box", 0.3, 3.0, [0.2, 0.2, 0.2]),
            block("stool", 0.0, 2.0, [0.3, 0.2, 0.3]),
        ],
    );
    let (big, small) = (0, 1);
    assert!(graph.objects[big].volume_m3 > 4.0 * graph.objects[small].volume_m3);
    for i in [big, small] {
        let o = &mut graph.objects[i];
        (o.centroid_m[0], o.distance_to_camera_m) = (0.0, 3.0);
    }
    let refs = references(&graph, &QaOptions::default().references);
    assert_eq!(
        (refs[big].as_deref(), refs[small].as_deref()),
        (Some("the larger box"), Some("the smaller box")),
        "{refs:?}"
    );
    let mut asked = 0;
    for seed in 0..200 {
        for r in generate_frame(&graph, bank, &QaOptions { seed, qa_per_image: 30, ..QaOptions::default() }).unwrap() {
            let boxes = r.objects.iter().filter(|&&o| o < 2).count();
            asked += usize::from(boxes == 2);
            let size_question = matches!(
                r.question_type.form(),
                Form::Predicate(Relation::Bigger | Relation::Smaller)
                    | Form::Choice(Relation::Bigger | Relation::Smaller)
            );
            assert!(!(boxes == 2 && size_question), "answered by the names: {:?}", r.question);
        }
    }
    assert!(asked > 50, "{asked}");
    graph.objects[small].bbox_px = [300.0, 400.0, 340.0, 480.0];
    let refs = references(&graph, &QaOptions::default().references);
    assert_eq!((refs[big].as_deref(), refs[small].as_deref()), (None, None), "{refs:?}");
    // So it is when the smaller one's box is inside the image but its left side is behind something.
    graph.objects[small].bbox_px = [300.0, 300.0, 340.0, 380.0];
    graph.objects[small].occlusion = Some(Occlusion { left: Some(0.9), ..Occlusion::default() });
    let refs = references(&graph, &QaOptions::default().references);
    assert_eq!((refs[big].as_deref(), refs[small].as_deref()), (None, None), "{refs:?}");
    graph.objects[small].occlusion = None;
    // The other way round, the larger box cut off is still the larger one.
    graph.objects[small].bbox_px = [0.0; 4];
    graph.objects[big].bbox_px = [300.0, 400.0, 340.0, 480.0];
    let refs = references(&graph, &QaOptions::default().references);
    assert_eq!(
        (refs[big].as_deref(), refs[small].as_deref()),
        (Some("the larger box"), Some("the smaller box")),
        "{refs:?}"
    );
}

#[test]
fn same_seed_same_questions_and_other_seeds_differ() {
    let graph = living_room();
    let bank = TemplateBank::builtin().unwrap();
    let run = |seed| generate_frame(&graph, bank, &QaOptions { seed, ..QaOptions::default() }).unwrap();
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
    assert_eq!(run(7).len(), QaOptions::default().qa_per_image);
}

#[test]
fn imperial_and_mixed_units() {
    let graph = living_room();
    let bank = TemplateBank::builtin().unwrap();
    let (mut imperial, mut metric) = (0, 0);
    for seed in 0..20 {
        let options = QaOptions { seed, qa_per_image: 30, units: Units::Mixed, ..QaOptions::default() };
        for r in generate_frame(&graph, bank, &options).unwrap() {
            let text = &r.answer;
            let has_metric = text.contains("metre");
            let has_imperial = text.contains("feet") || text.contains("foot") || text.contains("inch");
            match r.unit_system {
                Some(spatialsynth::qa::UnitSystem::Imperial) => {
                    imperial += 1;
                    assert!(!has_metric, "{r:?}");
                }
                Some(spatialsynth::qa::UnitSystem::Metric) => {
                    metric += 1;
                    assert!(!has_imperial, "{r:?}");
                }
                None => assert!(!has_metric && !has_imperial, "{r:?}"),
            }
        }
    }
    assert!(imperial > 50 && metric > 50, "{imperial} {metric}");
}

#[test]
fn the_mix_selects_question_types() {
    let graph = living_room();
    let bank = TemplateBank::builtin().unwrap();
    let mix = spatialsynth::qa::TypeMix::from_spec("all=0,distance=1,left_predicate=1").unwrap();
    let options = QaOptions { mix, qa_per_image: 10, ..QaOptions::default() };
    let types: std::collections::BTreeSet<_> = (0..10)
        .flat_map(|seed| generate_frame(&graph, bank, &QaOptions { seed, ..options.clone() }).unwrap())
        .map(|r| r.question_type)
        .collect();
    assert_eq!(types.into_iter().collect::<Vec<_>>(), [QuestionType::LeftPredicate, QuestionType::Distance]);
    assert!(spatialsynth::qa::TypeMix::from_spec("all=0").is_err());
    assert!(spatialsynth::qa::TypeMix::from_spec("nonsense=1").is_err());
    assert!(spatialsynth::qa::TypeMix::from_spec("distance=-1").is_err());
}

/// The built-in bank without its `no_at_most` list.
fn without_no_at_most() -> String {
    let builtin = spatialsynth::qa::templates::BUILTIN_TEMPLATES;
    let start = builtin.find("\nno_at_most = [").unwrap();
    let end = start + builtin[start..].find("\n]\n").unwrap() + 3;
    format!("{}{}", &builtin[..start + 1], &builtin[end..])
}

#[test]
fn bad_template_banks_are_refused_with_the_file_named() {
    let path = std::path::Path::new("my_templates.toml");
    let builtin = spatialsynth::qa::templates::BUILTIN_TEMPLATES;
    let cases: Vec<(String, &str)> = vec![
        ("version = 1\n".into(), "missing table [left_predicate]"),
        (builtin.replacen("[left_predicate]", "[left_predicat]", 1), "unknown table `left_predicat`"),
        (builtin.replacen("{A} to the left of {B}?", "{Q} to the left of {B}?", 1), "unknown placeholder {Q}"),
        (
            builtin.replacen("[distance]\nquestions = [", "[distance]\nquestions = [\"How far is {A}?\",", 1),
            "lacks the placeholder {B}",
        ),
        (builtin.replacen("version = 1", "version = 2", 1), "unsupported version"),
        (builtin.replacen("[width]\nquestions", "[width]\nextra = 1\nquestions", 1), "unknown key `extra`"),
        // Only pass_between has answers whose value is an upper bound.
        (
            builtin.replacen("[width]\nquestions", "[width]\nno_at_most = [\"{value}\"]\nquestions", 1),
            "unknown key `no_at_most`",
        ),
        (
            builtin.replacen("at most about {value} between", "at most about between", 1),
            "lacks the placeholder {value}",
        ),
        ("not toml [".into(), "templates my_templates.toml"),
    ];
    for (text, expected) in cases {
        let err = TemplateBank::parse(&text, path).unwrap_err().to_string();
        assert!(err.contains("my_templates.toml") && err.contains(expected), "{expected}: {err}");
    }
    // Too few phrasings.
    let mut few = String::from("version = 1\n");
    for t in QuestionType::ALL {
        few.push_str(&format!("[{}]\nquestions = [\"{{A}} {{B}} {{C}} {{robot}}?\"]\nanswers = []\n", t.name()));
    }
    let err = TemplateBank::parse(&few, path).unwrap_err().to_string();
    assert!(err.contains("left_predicate"), "{err}");
}

#[test]
fn one_question_per_fact_and_pair_in_a_conversation() {
    let graph = living_room();
    let bank = TemplateBank::builtin().unwrap();
    let family = |t: QuestionType| {
        let name = t.name();
        for (prefixes, f) in [
            (&["left", "right"][..], "left/right"),
            (&["above", "below"][..], "above/below"),
            (&["front", "behind"][..], "front/behind"),
            (&["taller", "shorter", "height_difference"][..], "height"),
            (&["wider", "thinner"][..], "width"),
            (&["bigger", "smaller"][..], "size"),
        ] {
            if prefixes.iter().any(|p| name.starts_with(p)) {
                return f.to_string();
            }
        }
        name.to_string()
    };
    for seed in 0..50 {
        let records =
            generate_frame(&graph, bank, &QaOptions { seed, qa_per_image: 40, ..QaOptions::default() }).unwrap();
        let mut seen = std::collections::HashSet::new();
        for r in &records {
            let mut objects = r.objects.clone();
            if r.question_type != QuestionType::Direction && r.question_type != QuestionType::CloserTo {
                objects.sort();
            }
            assert!(seen.insert((family(r.question_type), objects)), "asked twice: {r:?}");
        }
    }
}

#[test]
fn the_mix_serialises_by_name_and_is_checked() {
    let mix = spatialsynth::qa::TypeMix::from_spec("all=0,distance=2,left_predicate=1").unwrap();
    let json = serde_json::to_value(&mix).unwrap();
    assert_eq!(json["distance"], 2.0);
    assert_eq!(json["left_predicate"], 1.0);
    assert_eq!(json["gap"], 0.0);
    let back: spatialsynth::qa::TypeMix = serde_json::from_value(json).unwrap();
    assert_eq!(back, mix);
    assert!(serde_json::from_str::<spatialsynth::qa::TypeMix>(r#"{"sideways": 1}"#).is_err());
    assert!(serde_json::from_str::<spatialsynth::qa::TypeMix>(r#"{"distance": -1}"#).is_err());
    assert!(serde_json::from_str::<spatialsynth::qa::TypeMix>(r#"{"distance": 0}"#).is_err());
}

#[test]
fn frames_without_a_colour_image_get_no_questions() {
    let tmp = tempfile::tempdir().unwrap();
    let mut with = living_room();
    let mut without = living_room();
    with.frame = "synthetic/with_image".into();
    without.frame = "synthetic/without_image".into();
    without.color = None;
    let lines = format!("{}\n{}\n", serde_json::to_string(&with).unwrap(), serde_json::to_string(&without).unwrap());
    let path = tmp.path().join("scene_graphs.jsonl");
    std::fs::write(&path, lines).unwrap();
    let summary = spatialsynth::dataset::write_dataset(&path, tmp.path(), &Default::default()).unwrap();
    assert_eq!((summary.counts.frames, summary.counts.frames_with_qa, summary.counts.frames_without_image), (2, 1, 1));
    let llava = std::fs::read_to_string(tmp.path().join("llava.jsonl")).unwrap();
    assert_eq!(llava.lines().count(), 1);
    assert!(llava.contains("synthetic/with_image") && !llava.contains("without_image"));
}
