//! Generated answers against 3D ground truth nobody tuned to: the ScanNet scene0000_00 and SUN RGB-D 000017
//! boxes, and the 6-DoF GraspNet object centroids (../shared/data).
//!
//! Objects are the points inside each ground-truth box (or 2D box, or mask); everything after that is the real
//! pipeline (ground, canonical frame, denoising, measurement) and the real question generator. Each generated
//! answer is then scored against the relation or quantity computed from the ground-truth boxes alone:
//! qualitative answers right or wrong, quantitative ones within 25% (SpatialRGPT-Bench) and within a factor of 2
//! (SpatialVLM). Run with `--nocapture` to see the figures.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;
use spatialsynth::geometry::canonical::CanonicalFrame;
use spatialsynth::geometry::Point3;
use spatialsynth::io::objects::ObjectKind;
use spatialsynth::io::DepthSource;
use spatialsynth::pipeline::{scene_from_points, ObjectInput, SceneConfig};
use spatialsynth::qa::{generate_frame, Form, QaOptions, QaRecord, QuestionType, Relation, TemplateBank};
use spatialsynth::scene::SceneGraph;

/// A ground-truth object in the canonical frame of the scene graph: centre, size `[width (x), depth (y), height]`.
#[derive(Clone, Debug)]
struct Truth {
    centre: [f64; 3],
    size: [f64; 3],
}

impl Truth {
    fn lo(&self, k: usize) -> f64 {
        self.centre[k] - self.size[k] / 2.0
    }
    fn hi(&self, k: usize) -> f64 {
        self.centre[k] + self.size[k] / 2.0
    }
}

fn box_gap(a: &Truth, b: &Truth) -> f64 {
    (0..3).map(|k| (b.lo(k) - a.hi(k)).max(a.lo(k) - b.hi(k)).max(0.0).powi(2)).sum::<f64>().sqrt()
}

fn sub(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

fn norm(v: [f64; 3]) -> f64 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

/// The ground-truth value of a relation "A rel B" (positive when it holds).
fn true_relation(rel: Relation, a: &Truth, b: &Truth) -> f64 {
    let d = sub(b.centre, a.centre);
    let volume = |t: &Truth| t.size[0] * t.size[1] * t.size[2];
    match rel {
        Relation::Left => d[0],
        Relation::Right => -d[0],
        Relation::Above => -d[2],
        Relation::Below => d[2],
        Relation::Front => d[1],
        Relation::Behind => -d[1],
        Relation::Taller => a.size[2] - b.size[2],
        Relation::Shorter => b.size[2] - a.size[2],
        Relation::Wider => a.size[0] - b.size[0],
        Relation::Thinner => b.size[0] - a.size[0],
        Relation::Bigger => (volume(a) / volume(b)).ln(),
        Relation::Smaller => (volume(b) / volume(a)).ln(),
    }
}

#[derive(Default, Debug)]
struct Score {
    /// Qualitative and reasoning answers with a yes/no or a named object: (right, total).
    qualitative: (usize, usize),
    /// Quantities: (within 25%, within a factor of 2, total).
    quantitative: (usize, usize, usize),
    per_type: BTreeMap<&'static str, (usize, usize)>,
}

impl Score {
    fn judge(&mut self, t: QuestionType, right: bool) {
        self.qualitative.0 += usize::from(right);
        self.qualitative.1 += 1;
        let e = self.per_type.entry(t.name()).or_default();
        e.0 += usize::from(right);
        e.1 += 1;
    }

    fn measure(&mut self, t: QuestionType, ours: f64, truth: f64) {
        let within = (ours - truth).abs() <= 0.25 * truth.abs();
        let factor2 = ours > 0.0 && truth > 0.0 && ours / truth <= 2.0 && truth / ours <= 2.0;
        self.quantitative.0 += usize::from(within);
        self.quantitative.1 += usize::from(factor2);
        self.quantitative.2 += 1;
        let e = self.per_type.entry(t.name()).or_default();
        e.0 += usize::from(within);
        e.1 += 1;
    }

    fn add(&mut self, other: &Score) {
        self.qualitative.0 += other.qualitative.0;
        self.qualitative.1 += other.qualitative.1;
        self.quantitative.0 += other.quantitative.0;
        self.quantitative.1 += other.quantitative.1;
        self.quantitative.2 += other.quantitative.2;
        for (k, v) in &other.per_type {
            let e = self.per_type.entry(k).or_default();
            e.0 += v.0;
            e.1 += v.1;
        }
    }

    fn qualitative_share(&self) -> f64 {
        self.qualitative.0 as f64 / self.qualitative.1.max(1) as f64
    }

    fn within_25_share(&self) -> f64 {
        self.quantitative.0 as f64 / self.quantitative.2.max(1) as f64
    }

    fn report(&self, name: &str) {
        eprintln!(
            "{name}: qualitative {}/{} right ({:.1}%); quantitative {}/{} within 25% ({:.1}%), {}/{} within 2x ({:.1}%)",
            self.qualitative.0,
            self.qualitative.1,
            100.0 * self.qualitative_share(),
            self.quantitative.0,
            self.quantitative.2,
            100.0 * self.within_25_share(),
            self.quantitative.1,
            self.quantitative.2,
            100.0 * self.quantitative.1 as f64 / self.quantitative.2.max(1) as f64
        );
        for (t, (ok, n)) in &self.per_type {
            eprintln!("  {t:<22} {ok:>4}/{n:<4}");
        }
    }
}

/// Scores one generated pair against the truths (indexed like the graph's objects). `camera` is the camera
/// position in the canonical frame.
/// Scores one record; with `SPATIALSYNTH_GT_WRONG=1` (and `--nocapture`) prints each wrong one with its boxes.
fn score(r: &QaRecord, truths: &[Truth], camera: [f64; 3], s: &mut Score) {
    let right = |s: &Score| s.qualitative.0 + s.quantitative.0;
    let total = |s: &Score| s.qualitative.1 + s.quantitative.2;
    let before = (right(s), total(s));
    score_record(r, truths, camera, s);
    if total(s) - before.1 > right(s) - before.0 && std::env::var_os("SPATIALSYNTH_GT_WRONG").is_some() {
        let boxes: Vec<&Truth> = r.objects.iter().map(|&i| &truths[i as usize]).collect();
        eprintln!("  wrong: {} | {} | value {:?} | boxes {boxes:?}", r.question, r.answer, r.value);
    }
}

fn score_record(r: &QaRecord, truths: &[Truth], camera: [f64; 3], s: &mut Score) {
    let o: Vec<&Truth> = r.objects.iter().map(|&i| &truths[i as usize]).collect();
    let t = r.question_type;
    match t.form() {
        Form::Predicate(rel) => s.judge(t, r.answer_bool == Some(true_relation(rel, o[0], o[1]) > 0.0)),
        Form::Choice(rel) => {
            let winner = if true_relation(rel, o[0], o[1]) > 0.0 { r.objects[0] } else { r.objects[1] };
            s.judge(t, r.answer_object == Some(winner));
        }
        Form::PairValue => {
            let d = sub(o[1].centre, o[0].centre);
            let truth = match t {
                QuestionType::Distance => norm(d),
                QuestionType::HorizontalDistance => d[0].hypot(d[1]),
                QuestionType::VerticalDistance => d[2].abs(),
                _ => box_gap(o[0], o[1]),
            };
            s.measure(t, r.value.unwrap_or(f64::NAN), truth);
        }
        Form::ObjectValue => {
            let truth = match t {
                QuestionType::Width => o[0].size[0],
                QuestionType::Depth => o[0].size[1],
                QuestionType::Height => o[0].size[2],
                _ => norm(sub(o[0].centre, camera)),
            };
            s.measure(t, r.value.unwrap_or(f64::NAN), truth);
        }
        Form::Direction => {
            let d = sub(o[1].centre, o[0].centre);
            let hour = (d[0].atan2(d[1]).to_degrees() / 30.0).round().rem_euclid(12.0) as u32;
            let hour = if hour == 0 { 12 } else { hour };
            s.judge(t, r.value == Some(f64::from(hour)));
        }
        Form::HeightDifference => {
            let taller = if o[0].size[2] > o[1].size[2] { r.objects[0] } else { r.objects[1] };
            s.judge(t, r.answer_object == Some(taller));
        }
        Form::CloserTo => {
            let (db, dc) = (norm(sub(o[1].centre, o[0].centre)), norm(sub(o[2].centre, o[0].centre)));
            s.judge(t, r.answer_object == Some(if db < dc { r.objects[1] } else { r.objects[2] }));
        }
        Form::PassBetween => {
            let gap = box_gap(o[0], o[1]);
            s.judge(t, r.answer_bool == Some(gap > r.robot_width_m.unwrap_or(0.0)));
        }
    }
}

/// Every pair the generator produces for the graph over `seeds` seeds (64 per image each, duplicates across seeds
/// removed), scored.
fn score_graph(graph: &SceneGraph, truths: &[Truth], camera: [f64; 3], seeds: u64) -> Score {
    score_graph_with(graph, truths, camera, seeds, &QaOptions::default())
}

/// [`score_graph`] with other options (the seed and the number of questions aside).
fn score_graph_with(graph: &SceneGraph, truths: &[Truth], camera: [f64; 3], seeds: u64, base: &QaOptions) -> Score {
    let bank = TemplateBank::builtin().unwrap();
    let mut s = Score::default();
    let mut seen = std::collections::HashSet::new();
    for seed in 0..seeds {
        let options = QaOptions { seed, qa_per_image: 64, ..base.clone() };
        for r in generate_frame(graph, bank, &options).unwrap() {
            let key = (r.question_type, r.objects.clone(), r.robot_width_m.map(f64::to_bits));
            if seen.insert(key) {
                score(&r, truths, camera, &mut s);
            }
        }
    }
    s
}

/// Names that single an object out of its class (leftmost, nearest, largest, ...) against the ground-truth boxes:
/// whether the named object leads every other object of its class by the boxes' centres and volumes. Prints each
/// wrong name with the class's partly hidden members. Returns (right, named).
fn score_names(graph: &SceneGraph, truths: &[Truth], camera: [f64; 3], what: &str) -> (usize, usize) {
    use spatialsynth::qa::refer::{described, noun, Basis};
    let options = QaOptions::default();
    let names = described(graph, &options.references, &options.margins);
    let nouns: Vec<String> = graph.objects.iter().map(|o| noun(&o.label)).collect();
    let same_kind = |mine: &str, other: &str| {
        other == mine
            || (other.len() > mine.len() && other.ends_with(mine) && other[..other.len() - mine.len()].ends_with(' '))
    };
    let hidden = |j: usize| spatialsynth::qa::facts::partly_hidden(graph, &graph.objects[j], &options.margins);
    let (mut right, mut named) = (0, 0);
    for (i, name) in names.iter().enumerate() {
        let Some(r) = name else { continue };
        let key = |j: usize| -> f64 {
            let t = &truths[j];
            match r.basis {
                Basis::Left => -t.centre[0],
                Basis::Right => t.centre[0],
                Basis::Nearest => -norm(sub(t.centre, camera)),
                Basis::Farthest => norm(sub(t.centre, camera)),
                Basis::Largest => t.size.iter().product(),
                Basis::Smallest => -t.size.iter().product::<f64>(),
                _ => 0.0,
            }
        };
        if matches!(r.basis, Basis::Class | Basis::Color) {
            continue;
        }
        let members: Vec<usize> = (0..nouns.len()).filter(|&j| j != i && same_kind(&nouns[i], &nouns[j])).collect();
        named += 1;
        if members.iter().all(|&j| key(i) > key(j)) {
            right += 1;
        } else {
            let hidden_members: Vec<&str> =
                members.iter().chain([&i]).filter(|&&j| hidden(j)).map(|&j| graph.objects[j].label.as_str()).collect();
            eprintln!(
                "  {what}: \"{}\" is wrong by the boxes (partly hidden in its class: {hidden_members:?})",
                r.text
            );
        }
    }
    eprintln!("{what}: names by position, distance or size right by the boxes: {right}/{named}");
    (right, named)
}

fn graph_of(frame: &str, geo: spatialsynth::pipeline::SceneGeometry) -> SceneGraph {
    graph_with_focal(frame, geo, 500.0)
}

/// [`graph_of`] for a 640x480 pinhole of focal length `focal` pixels.
fn graph_with_focal(frame: &str, geo: spatialsynth::pipeline::SceneGeometry, focal: f64) -> SceneGraph {
    SceneGraph {
        frame: frame.into(),
        frame_id: frame.into(),
        dataset: "ground_truth".into(),
        color: None,
        depth: None,
        depth_source: DepthSource::File,
        intrinsics: spatialsynth::geometry::Intrinsics {
            fx: focal,
            fy: focal,
            cx: 320.0,
            cy: 240.0,
            width: 640,
            height: 480,
        },
        intrinsics_assumed: false,
        image_filter: None,
        valid_depth_points: 0,
        depth_frame_px: None,
        ground: geo.ground,
        canonical_from_camera: geo.canonical.matrix(),
        objects: geo.objects,
        dropped_objects: geo.dropped,
        relations: geo.relations,
    }
}

fn object(label: &str, points: Vec<Point3>, colors: Vec<[u8; 3]>) -> ObjectInput {
    ObjectInput {
        label: label.into(),
        kind: ObjectKind::Box,
        instance_id: None,
        bbox_px: [0.0; 4],
        points_in_camera: points.into(),
        in_box_core: Vec::new(),
        score: None,
        colors,
    }
}

/// A truth given in the camera frame (centre) with a size along the canonical axes, moved to the canonical frame.
fn to_canonical(canonical: &CanonicalFrame, centre_cam: [f64; 3], size: [f64; 3]) -> Truth {
    Truth { centre: canonical.apply(centre_cam), size }
}

/// ScanNet scene0000_00 seen by a level virtual camera 1.5 m above the floor, 1 m outside the room, looking along
/// the room's +y axis. Returns the graph, the truths and the camera position (canonical frame).
///
/// With `framed`, the camera is the graph's 640x480 pinhole (f = 500 px, 65° across): only the points in its
/// frame are kept, and each object's box is the pixels its points fall on, so that objects near the side walls
/// are cut off by the frame as in a photograph. Without, every point is kept and objects have no box.
fn scannet(data: &Path, framed: bool) -> (SceneGraph, Vec<Truth>, [f64; 3]) {
    scannet_view(data, framed.then_some(500.0), 0.0, 1.0)
}

fn scannet_view(data: &Path, focal: Option<f64>, eye_x: f64, back: f64) -> (SceneGraph, Vec<Truth>, [f64; 3]) {
    let framed = focal.is_some();
    let f = focal.unwrap_or(500.0);
    let dir = data.join("mmdet3d_scannet_scene0000_00");
    let ann: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("annotations.json")).unwrap()).unwrap();
    let m: Vec<Vec<f64>> = ann["axis_align_matrix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect())
        .collect();
    let raw = common::read_xyzrgb(&dir.join("scene0000_00_points_xyzrgb_f32.bin"));
    let aligned: Vec<([f64; 3], [u8; 3])> = raw
        .iter()
        .map(|p| {
            let v = [f64::from(p[0]), f64::from(p[1]), f64::from(p[2]), 1.0];
            let q = [0, 1, 2].map(|i| (0..4).map(|j| m[i][j] * v[j]).sum::<f64>());
            (q, [p[3], p[4], p[5]].map(|c| c.clamp(0.0, 255.0) as u8))
        })
        .collect();
    let min_y = aligned.iter().map(|p| p.0[1]).fold(f64::INFINITY, f64::min);
    let eye = [eye_x, min_y - back, 1.5];
    // Aligned (x right, y forward, z up) -> camera (x right, y down, z forward).
    let to_cam = |p: [f64; 3]| -> [f64; 3] { [p[0] - eye[0], eye[2] - p[2], p[1] - eye[1]] };
    // The pixel a camera-frame point falls on (the graph's intrinsics), when it is in the frame.
    let pixel = |c: [f64; 3]| {
        let (u, v) = (f * c[0] / c[2] + 320.0, f * c[1] / c[2] + 240.0);
        (c[2] > 0.1 && (0.0..640.0).contains(&u) && (0.0..480.0).contains(&v)).then_some([u, v])
    };
    let aligned: Vec<([f64; 3], [u8; 3])> =
        aligned.into_iter().filter(|p| !framed || pixel(to_cam(p.0)).is_some()).collect();
    let cloud: Vec<Point3> = aligned.iter().map(|p| to_cam(p.0).map(|v| v as f32)).collect();
    let mut inputs = Vec::new();
    let mut boxes = Vec::new();
    for inst in ann["instances"].as_array().unwrap() {
        let b: Vec<f64> = inst["bbox_3d_center_size"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let inside = |p: &[f64; 3]| (0..3).all(|k| (p[k] - b[k]).abs() <= b[k + 3] / 2.0);
        let (points, colors): (Vec<Point3>, Vec<[u8; 3]>) =
            aligned.iter().filter(|p| inside(&p.0)).map(|p| (to_cam(p.0).map(|v| v as f32), p.1)).unzip();
        // An object with no point in the view is not in the photograph: nobody would annotate it.
        if framed && points.is_empty() {
            continue;
        }
        let mut o = object(inst["label"].as_str().unwrap(), points, colors);
        if framed {
            let mut bbox = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
            for p in o.points_in_camera.iter() {
                if let Some([u, v]) = pixel(p.map(f64::from)) {
                    let (u, v) = (u.floor() as f32, v.floor() as f32);
                    bbox = [bbox[0].min(u), bbox[1].min(v), bbox[2].max(u + 1.0), bbox[3].max(v + 1.0)];
                }
            }
            o.bbox_px = bbox;
        }
        inputs.push(o);
        boxes.push(b);
    }
    // The cloud is a subsampled mesh, equally dense at every distance: the DBSCAN radius comes from its density
    // (the k-distance rule of the DBSCAN paper: the 90th percentile of the distance to the min_points-th
    // neighbour), not from a camera's focal length.
    let config = SceneConfig::default();
    let eps = k_distance(&cloud, config.object_min_points as usize, 0.9);
    eprintln!("scannet: DBSCAN radius {eps:.3} m from the cloud's density");
    let config = SceneConfig { object_eps_m: eps, ..config };
    let geo = scene_from_points("scannet/scene0000_00", &cloud, None, &inputs, 1e9, None, &config).unwrap();
    assert!(geo.ground.found);
    let truths: Vec<Truth> = geo
        .objects
        .iter()
        .map(|o| {
            let b = &boxes[o.annotation_index as usize];
            to_canonical(&geo.canonical, to_cam([b[0], b[1], b[2]]), [b[3], b[4], b[5]])
        })
        .collect();
    let camera = geo.canonical.apply([0.0, 0.0, 0.0]);
    // The pipeline names each object's colour from the mesh colours of its kept points.
    (graph_with_focal("scannet/scene0000_00", geo, f), truths, camera)
}

/// The `q` quantile, over a subsample of the points, of the distance to their `k`-th nearest neighbour.
fn k_distance(points: &[Point3], k: usize, q: f64) -> f32 {
    let mut d: Vec<f32> = points
        .iter()
        .step_by(50)
        .map(|p| {
            let mut all: Vec<f32> = points
                .iter()
                .map(|o| ((o[0] - p[0]).powi(2) + (o[1] - p[1]).powi(2) + (o[2] - p[2]).powi(2)).sqrt())
                .collect();
            all.select_nth_unstable_by(k, f32::total_cmp);
            all[k]
        })
        .collect();
    d.sort_by(f32::total_cmp);
    d[((d.len() - 1) as f64 * q) as usize]
}

#[test]
fn generated_answers_agree_with_scannet_and_sunrgbd_ground_truth() {
    let Some(data) = common::shared_data_or_skip("generated_answers_agree_with_scannet_and_sunrgbd_ground_truth")
    else {
        return;
    };
    let (graph, truths, camera) = scannet(&data, false);
    eprintln!(
        "scannet: {} objects in the scene graph ({} dropped), {} referable",
        graph.objects.len(),
        graph.dropped_objects.len(),
        spatialsynth::qa::references(&graph, &QaOptions::default().references).iter().flatten().count()
    );
    for d in &graph.dropped_objects {
        eprintln!("scannet: dropped {} ({})", d.label, d.reason);
    }
    let scannet_score = score_graph(&graph, &truths, camera, 40);
    scannet_score.report("scannet scene0000_00");
    let names_scannet = score_names(&graph, &truths, camera, "scannet scene0000_00");
    let (graph_f, truths_f, camera_f) = scannet(&data, true);
    let names_framed = score_names(&graph_f, &truths_f, camera_f, "scannet framed");

    let (graph, truths, camera) = sunrgbd(&data);
    let sun_score = score_graph(&graph, &truths, camera, 40);
    sun_score.report("sunrgbd 000017");
    let names_sun = score_names(&graph, &truths, camera, "sunrgbd 000017");
    // Measured: 12 of 12 in the whole scene, 4 of 4 in the framed view (SUN RGB-D names none by position, distance
    // or size).
    for (right, named) in [names_scannet, names_framed, names_sun] {
        assert_eq!(right, named, "names wrong by the boxes");
    }
    assert!(names_scannet.1 >= 10, "{names_scannet:?}");

    let mut total = Score::default();
    total.add(&scannet_score);
    total.add(&sun_score);
    total.report("ScanNet + SUN RGB-D");
    assert!(total.qualitative.1 >= 1000 && total.quantitative.2 >= 400, "{total:?}");
    // Measured 99.7% and 95.1% (see the README); the bounds leave room for platform float differences only.
    assert!(total.qualitative_share() >= 0.97, "qualitative {:.3}", total.qualitative_share());
    assert!(total.within_25_share() >= 0.9, "quantitative within 25% {:.3}", total.within_25_share());
}

/// SUN RGB-D 000017 (bed and night stand): the points of each 2D box, as the geometry test builds them.
fn sunrgbd(data: &Path) -> (SceneGraph, Vec<Truth>, [f64; 3]) {
    let dir = data.join("mmdet3d_sunrgbd_000017");
    let ann: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("annotations.json")).unwrap()).unwrap();
    let raw = common::read_xyzrgb(&dir.join("000017_points_xyzrgb_f32.bin"));
    let to_cam = |p: [f64; 3]| -> [f64; 3] { [p[0], -p[2], p[1]] };
    let m: [[f64; 3]; 3] = [0, 1, 2].map(|i| [0, 1, 2].map(|j| ann["depth2img"][i][j].as_f64().unwrap()));
    let pixel = |p: [f64; 3]| {
        let q = [0, 1, 2].map(|i| m[i][0] * p[0] + m[i][1] * p[1] + m[i][2] * p[2]);
        (q[2] > 0.0).then(|| [q[0] / q[2], q[1] / q[2]])
    };
    let cloud: Vec<Point3> = raw.iter().map(|p| to_cam([p[0], p[1], p[2]].map(f64::from)).map(|v| v as f32)).collect();
    let instances = ann["instances"].as_array().unwrap();
    let mut inputs = Vec::new();
    for inst in instances {
        let b: [f64; 4] = [0, 1, 2, 3].map(|i| inst["bbox_2d_xyxy"][i].as_f64().unwrap());
        let (mut points, mut colors, mut core) = (Vec::new(), Vec::new(), Vec::new());
        let (mx, my) = ((b[2] - b[0]) / 4.0, (b[3] - b[1]) / 4.0);
        for p in &raw {
            let up = [p[0], p[1], p[2]].map(f64::from);
            if let Some([u, v]) = pixel(up) {
                if u >= b[0] && u < b[2] && v >= b[1] && v < b[3] {
                    points.push(to_cam(up).map(|v| v as f32));
                    colors.push([p[3], p[4], p[5]].map(|c| (c * 255.0).clamp(0.0, 255.0) as u8));
                    core.push(u >= b[0] + mx && u < b[2] - mx && v >= b[1] + my && v < b[3] - my);
                }
            }
        }
        let mut o = object(inst["label"].as_str().unwrap(), points, colors);
        o.in_box_core = core;
        inputs.push(o);
    }
    let focal = m[0][0] * (50_000.0f64 / (730.0 * 530.0)).sqrt();
    let geo = scene_from_points("sunrgbd/000017", &cloud, None, &inputs, focal, None, &SceneConfig::default()).unwrap();
    let truths = geo
        .objects
        .iter()
        .map(|o| {
            let b: Vec<f64> = instances[o.annotation_index as usize]["bbox_3d_xyz_dxdydz_yaw"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            // The gravity centre; the footprint turned by the yaw, measured along the canonical axes.
            let (c, s) = (b[6].cos().abs(), b[6].sin().abs());
            to_canonical(&geo.canonical, to_cam([b[0], b[1], b[2]]), [b[3] * c + b[4] * s, b[3] * s + b[4] * c, b[5]])
        })
        .collect();
    let camera = geo.canonical.apply([0.0, 0.0, 0.0]);
    (graph_of("sunrgbd/000017", geo), truths, camera)
}

#[test]
fn objects_cut_off_by_the_frame_are_not_measured_by_their_visible_part() {
    let Some(data) = common::shared_data_or_skip("objects_cut_off_by_the_frame_are_not_measured_by_their_visible_part")
    else {
        return;
    };
    // ScanNet through a 65° pinhole 1 m outside the room: the objects near the side walls are cut off by the frame.
    let (graph, truths, camera) = scannet(&data, true);
    let margins = spatialsynth::qa::Margins::default();
    let cut: Vec<&str> = graph
        .objects
        .iter()
        .filter(|o| spatialsynth::qa::facts::cut_off(&graph, o, &margins))
        .map(|o| o.label.as_str())
        .collect();
    eprintln!("scannet framed: {} objects, {} cut off by the frame: {cut:?}", graph.objects.len(), cut.len());
    // The questions whose answers rest on an object's whole size: its width, depth and height, size comparisons
    // and height differences, the gaps and passing between objects.
    let sized = |t: &str| {
        ["width", "depth", "height", "taller", "shorter", "wider", "thinner", "bigger", "smaller", "gap", "pass"]
            .iter()
            .any(|p| t.starts_with(p))
    };
    let share = |options: &QaOptions, name: &str| {
        let s = score_graph_with(&graph, &truths, camera, 40, options);
        s.report(name);
        let (ok, n) = s.per_type.iter().filter(|(t, _)| sized(t)).fold((0, 0), |a, (_, v)| (a.0 + v.0, a.1 + v.1));
        eprintln!("{name}: answers that rest on whole sizes {ok}/{n}");
        (ok, n)
    };
    let (ok, n) = share(&QaOptions::default(), "scannet framed, cut-off rule");
    let whole = QaOptions {
        margins: spatialsynth::qa::Margins {
            cut_off_px: None,
            occluded_fraction: None,
            floor_standing: Vec::new(),
            ..margins.clone()
        },
        ..QaOptions::default()
    };
    let (ok_whole, n_whole) = share(&whole, "scannet framed, every object taken as whole");
    assert!(cut.len() >= 3 && n > 100 && n_whole > n, "{cut:?} {n} {n_whole}");
    // Measured: 403/415 right with the rule, 679/708 without (the frame cuts these objects by a little; the
    // synthetic test in tests/qa.rs shows a deep cut; the 12 wrong with the rule are whole objects whose
    // axis-aligned boxes do not fit them). The rule must not make answers worse.
    assert!(n - ok <= n_whole - ok_whole, "wrong: {} with the rule, {} without", n - ok, n_whole - ok_whole);
    assert!(ok as f64 / n as f64 >= ok_whole as f64 / n_whole as f64);
}

#[test]
fn distances_to_the_camera_agree_with_graspnet_centroids() {
    let Some(data) = common::shared_data_or_skip("distances_to_the_camera_agree_with_graspnet_centroids") else {
        return;
    };
    let dir = data.join("sixdof_graspnet_objects");
    let tmp = tempfile::tempdir().unwrap();
    let path = common::graspnet_manifest(&data, tmp.path());
    let out = tmp.path().join("out");
    let summary = spatialsynth::run::run_scenes(&[path], &out, &Default::default(), &|_, _| {}).unwrap();
    assert_eq!(summary.counts.frames_ok, 3);
    let dataset =
        spatialsynth::dataset::write_dataset(summary.scene_graphs.as_ref().unwrap(), &out, &Default::default())
            .unwrap();
    let text = std::fs::read_to_string(out.join("llava.jsonl")).unwrap();
    let mut s = Score::default();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let frame = v["id"].as_str().unwrap();
        let id = frame.rsplit('/').next().unwrap();
        let gt: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{id}_object.json"))).unwrap()).unwrap();
        let c: Vec<f64> = gt["centroid_cam_m"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        for qa in v["qa"].as_array().unwrap() {
            let r: QaRecord = serde_json::from_value(qa.clone()).unwrap();
            if r.question_type == QuestionType::DistanceToCamera {
                s.measure(r.question_type, r.value.unwrap(), norm([c[0], c[1], c[2]]));
            }
        }
    }
    s.report("graspnet distance to camera");
    assert!(dataset.counts.qa > 0 && s.quantitative.2 == 3, "{s:?}");
    assert_eq!(s.quantitative.0, 3, "{s:?}");
}

/// ScanNet through eight pinholes that cut objects deeply (longer focal lengths, cameras moved sideways or into
/// the room): a bed seen from beyond its foot, curtains along the side walls cut by the image's side edges. Only
/// the questions that name an object cut off by the frame are scored, with the default margins and with
/// `cut_off_positions` (its position asked from the part in view).
#[test]
fn objects_cut_off_by_the_frame_are_not_placed_by_their_visible_part() {
    let Some(data) = common::shared_data_or_skip("objects_cut_off_by_the_frame_are_not_placed_by_their_visible_part")
    else {
        return;
    };
    let margins = spatialsynth::qa::Margins::default();
    let placed = QaOptions {
        margins: spatialsynth::qa::Margins { cut_off_positions: true, ..margins.clone() },
        ..QaOptions::default()
    };
    let (mut rule, mut asked) = (Score::default(), Score::default());
    let mut cut_objects = 0;
    let mut names = (0, 0);
    // (focal length in pixels, camera x, metres behind the room's nearest point; negative: inside the room)
    let views = [
        (500.0, 0.0, 1.0),
        (700.0, 0.0, 1.0),
        (900.0, 0.0, 1.0),
        (700.0, -1.0, 1.0),
        (700.0, 1.0, 1.0),
        (500.0, 0.0, -0.5),
        (600.0, 0.5, 0.0),
        (800.0, -0.5, 0.0),
    ];
    for (focal, x, back) in views {
        let (graph, truths, camera) = scannet_view(&data, Some(focal), x, back);
        let cut: Vec<bool> =
            graph.objects.iter().map(|o| spatialsynth::qa::facts::cut_off(&graph, o, &margins)).collect();
        cut_objects += cut.iter().filter(|&&c| c).count();
        // How far the centroid of what shows lies from the box's centre, for each cut-off object.
        for (o, t) in graph.objects.iter().zip(&truths).filter(|(o, _)| cut[o.object_id as usize]) {
            let d = [0, 1, 2].map(|k| f64::from(o.centroid_m[k]) - t.centre[k]);
            eprintln!(
                "  {focal} px, x {x} m, back {back} m: {} {:?}, seen centroid off by x {:+.2} y {:+.2} z {:+.2} m",
                o.label, o.bbox_px, d[0], d[1], d[2]
            );
        }
        let n = score_names(&graph, &truths, camera, &format!("{focal} px, x {x} m, back {back} m"));
        names = (names.0 + n.0, names.1 + n.1);
        for (options, total) in [(QaOptions::default(), &mut rule), (placed.clone(), &mut asked)] {
            let bank = TemplateBank::builtin().unwrap();
            let mut seen = std::collections::HashSet::new();
            for seed in 0..40 {
                let options = QaOptions { seed, qa_per_image: 64, ..options.clone() };
                for r in generate_frame(&graph, bank, &options).unwrap() {
                    let key = (r.question_type, r.objects.clone(), r.robot_width_m.map(f64::to_bits));
                    if r.objects.iter().any(|&o| cut[o as usize]) && seen.insert(key) {
                        score(&r, &truths, camera, total);
                    }
                }
            }
        }
    }
    eprintln!("scannet, eight views: {cut_objects} objects cut off by the frame; names right {names:?}");
    rule.report("scannet cut deep, questions naming a cut-off object");
    asked.report("scannet cut deep, the same with cut_off_positions");
    let wrong = |s: &Score| (s.qualitative.1 - s.qualitative.0) + (s.quantitative.2 - s.quantitative.0);
    let total = |s: &Score| s.qualitative.1 + s.quantitative.2;
    // Measured: 0 of 766 wrong (size comparisons the cut-off object wins, a robot that cannot pass beside it)
    // against 100 of 4474 with its position asked: left and right of a bed cut by the bottom edge, distances and
    // directions of curtains cut by the side edges (qualitative 46 of 3723 wrong, 1.2% against 0.3% for the whole
    // scene without a frame; quantities 54 of 751 off by more than 25%, 7.2% against 4.4%).
    // Measured: 12 of 12 names by position, distance or size right.
    assert_eq!(names.0, names.1, "names wrong by the boxes");
    assert!(names.1 >= 8, "{names:?}");
    assert!(cut_objects >= 30 && total(&rule) >= 100 && total(&asked) > 3 * total(&rule), "{rule:?} {asked:?}");
    assert!(
        wrong(&rule) <= 1 && wrong(&asked) >= 10,
        "wrong: {} with the rule, {} without",
        wrong(&rule),
        wrong(&asked)
    );
}
