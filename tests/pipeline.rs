//! Pipeline behaviour that real frames rarely show: no ground at all, a camera on its side, parameter files.

mod common;

use spatialsynth::geometry::canonical::GroundSource;
use spatialsynth::geometry::Point3;
use spatialsynth::io::objects::ObjectKind;
use spatialsynth::pipeline::{scene_from_points, ObjectInput, SceneConfig};
use spatialsynth::qa::facts::reaches_below_ground;
use spatialsynth::qa::Margins;

fn object(label: &str, points: Vec<Point3>) -> ObjectInput {
    ObjectInput {
        label: label.into(),
        kind: ObjectKind::Instance,
        instance_id: None,
        bbox_px: [0.0; 4],
        points_in_camera: points.into(),
        in_box_core: Vec::new(),
        score: None,
        colors: Vec::new(),
    }
}

/// A dense square patch of points: `origin + s·a + t·b` for s, t in 0..1.
fn patch(origin: [f32; 3], a: [f32; 3], b: [f32; 3], n: usize) -> Vec<Point3> {
    let mut out = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            let (s, t) = (i as f32 / (n - 1) as f32, j as f32 / (n - 1) as f32);
            out.push([0, 1, 2].map(|k| origin[k] + s * a[k] + t * b[k]));
        }
    }
    out
}

#[test]
fn without_a_ground_the_gravity_prior_is_used_and_said() {
    // Only a wall 3 m ahead (normal along the optical axis): no admissible ground plane.
    let wall = patch([-2.0, -1.5, 3.0], [4.0, 0.0, 0.0], [0.0, 3.0, 0.0], 200);
    let a = object("poster", patch([-1.0, -0.5, 2.9], [0.4, 0.0, 0.0], [0.0, 0.3, 0.0], 40));
    let b = object("clock", patch([0.8, -1.0, 2.9], [0.3, 0.0, 0.0], [0.0, 0.3, 0.0], 40));
    let mut all = wall.clone();
    all.extend(a.points_in_camera.iter().chain(&b.points_in_camera));
    let geo = scene_from_points("synthetic/wall", &all, None, &[a, b], 1e9, None, &SceneConfig::default()).unwrap();
    assert!(!geo.ground.found, "{:?}", geo.ground);
    assert_eq!(geo.ground.source, GroundSource::GravityPrior);
    // Up is the prior (camera -y); the ground sits at the lowest 1% of points (y = 1.5 m below the camera).
    let up = [geo.ground.plane_in_camera[0], geo.ground.plane_in_camera[1], geo.ground.plane_in_camera[2]];
    assert!((up[1] + 1.0).abs() < 1e-9, "{up:?}");
    // (The 1% quantile of 200 rows 1.5 cm apart is the third row up: 1.47 m.)
    assert!((geo.ground.camera_height_m - 1.47).abs() < 0.01, "{}", geo.ground.camera_height_m);
    // Objects and relations are still measured in that frame: the clock is right of and above the poster.
    assert_eq!(geo.objects.len(), 2);
    let r = geo.relations.iter().find(|r| r.a == 0 && r.b == 1).unwrap();
    assert!(r.left_m > 1.0 && r.above_m < -0.3, "{r:?}");
}

#[test]
fn an_up_hint_finds_the_floor_for_a_camera_on_its_side() {
    // A camera rolled 90 degrees (portrait): the floor is to the camera's left (-x), 1.2 m away.
    let floor = patch([-1.2, -2.0, 0.5], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0], 200);
    let chair = object("chair", patch([-1.2, -0.3, 2.0], [0.9, 0.0, 0.0], [0.0, 0.4, 0.0], 40));
    let mut all = floor.clone();
    all.extend(&chair.points_in_camera);
    let config = SceneConfig::default();
    let objects = [chair];
    let without = scene_from_points("synthetic/side", &all, None, &objects, 1e9, None, &config).unwrap();
    assert!(!without.ground.found, "the floor is 90 degrees from the default prior: it must not be taken");
    let with = scene_from_points("synthetic/side", &all, None, &objects, 1e9, Some([1.0, 0.0, 0.0]), &config).unwrap();
    assert!(with.ground.found);
    assert!((with.ground.camera_height_m - 1.2).abs() < 1e-3, "{}", with.ground.camera_height_m);
    let chair = &with.objects[0];
    assert!(chair.bottom_m.abs() < 1e-3 && (chair.height_m - 0.9).abs() < 1e-3, "{chair:?}");
}

#[test]
fn a_mask_lying_on_the_floor_keeps_its_points_and_other_objects_lose_the_floor() {
    // A floor 1.2 m below the camera (y down), points 2 cm apart.
    let floor = patch([-2.0, 1.2, 0.5], [4.0, 0.0, 0.0], [0.0, 0.0, 4.0], 200);
    let with_kind = |label: &str, kind: ObjectKind, points: Vec<Point3>| ObjectInput { kind, ..object(label, points) };
    // A rug: every point in the ground band. As a detected mask it is an object lying on the floor (more than half
    // of it in the band) and keeps its points; as a box it holds nothing but floor.
    let rug = patch([-0.5, 1.2, 2.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0], 60);
    // A crate's front face standing on the floor (its lowest two rows of 40 within the 2 cm band), seen with 100
    // floor points in front of it: 180 of 1,700 points in the band, so the band goes.
    let mut crate_points = patch([0.8, 0.6, 2.5], [0.6, 0.0, 0.0], [0.0, 0.6, 0.0], 40);
    crate_points.extend(patch([0.8, 1.2, 2.3], [0.6, 0.0, 0.0], [0.0, 0.0, 0.19], 10));
    let objects = [
        with_kind("rug", ObjectKind::DetectedMask, rug.clone()),
        with_kind("rug box", ObjectKind::DetectedBox, rug),
        with_kind("crate", ObjectKind::DetectedMask, crate_points),
    ];
    let mut all = floor;
    all.extend(objects.iter().flat_map(|o| o.points_in_camera.iter().copied()));
    let geo = scene_from_points("synthetic/rug", &all, None, &objects, 1e9, None, &SceneConfig::default()).unwrap();
    assert!(geo.ground.found && (geo.ground.camera_height_m - 1.2).abs() < 1e-3, "{:?}", geo.ground);
    let rug = geo.objects.iter().find(|o| o.label == "rug").unwrap_or_else(|| panic!("rug dropped: {:?}", geo.dropped));
    assert_eq!(rug.points, 3600);
    assert!(rug.height_m < 0.02, "{rug:?}");
    let dropped: Vec<_> = geo.dropped.iter().map(|d| (d.label.as_str(), d.reason.as_str())).collect();
    assert_eq!(dropped, [("rug box", "only ground points in its box")]);
    let crate_ = geo.objects.iter().find(|o| o.label == "crate").expect("the crate is kept");
    assert_eq!(crate_.points, 1520, "the floor points and the face's two lowest rows go");
    assert!(crate_.bottom_m > 0.02, "{crate_:?}");
}

#[test]
fn points_well_below_a_table_top_ground_are_counted_and_hide_the_objects_base() {
    // A table top 0.7 m below the camera (y down), 3 m by 2.2 m, points 1.5 cm apart: the largest plane, so the
    // ground. The floor 1.45 m below the camera shows only beyond it, a strip of 1.5 m by 0.5 m.
    let table = patch([-1.5, 0.7, 0.8], [3.0, 0.0, 0.0], [0.0, 0.0, 2.2], 200);
    let floor = patch([-0.75, 1.45, 3.1], [1.5, 0.0, 0.0], [0.0, 0.0, 0.5], 60);
    // A chair's front 2.3 m away, from 0.4 m above the table top down to 0.7 m below it (it stands under the
    // table's far edge), in rows 2.5 cm apart: rows 0.3, 0.325, ... 1.4 m below the camera. The rows at 0.8 m and
    // lower (25 rows of 45) lie more than 3 sigma of depth noise below the ground (3 · (0.01 + 0.003 · 2.3²) =
    // 7.76 cm); the row at 0.775 m, 7.5 cm below it, lies within the noise and is taken for ground.
    let chair = patch([0.2, 0.3, 2.3], [0.5, 0.0, 0.0], [0.0, 1.1, 0.0], 45);
    // A cup standing on the table top.
    let cup = patch([-0.6, 0.6, 1.5], [0.08, 0.0, 0.0], [0.0, 0.1, 0.0], 20);
    let as_box =
        |label: &str, points: Vec<Point3>| ObjectInput { kind: ObjectKind::DetectedBox, ..object(label, points) };
    let objects = [as_box("chair", chair), as_box("cup", cup)];
    let mut all = table;
    all.extend(floor);
    all.extend(objects.iter().flat_map(|o| o.points_in_camera.iter().copied()));
    let geo =
        scene_from_points("synthetic/table top", &all, None, &objects, 1e9, None, &SceneConfig::default()).unwrap();
    assert!(geo.ground.found && (geo.ground.camera_height_m - 0.7).abs() < 1e-3, "{:?}", geo.ground);
    let get = |label: &str| geo.objects.iter().find(|o| o.label == label).unwrap_or_else(|| panic!("{label}"));
    let (chair, cup) = (get("chair"), get("cup"));
    assert_eq!((chair.points_in_region, chair.points_below_ground), (45 * 45, 25 * 45));
    assert_eq!(cup.points_below_ground, 0);
    // The chair is measured by its part above the table top (rows 0.3–0.675 m), its base hidden.
    assert!((chair.height_m - 0.375).abs() < 0.01 && chair.bottom_m > 0.02, "{chair:?}");
    let margins = Margins::default();
    assert!(reaches_below_ground(chair, &margins) && !reaches_below_ground(cup, &margins));
    assert!(!reaches_below_ground(chair, &Margins { below_ground_share: None, ..margins.clone() }));
    assert!(!reaches_below_ground(chair, &Margins { below_ground_share: Some(0.6), ..margins }));
    // Without ground removal (the points are all kept, the chair whole), nothing is counted.
    let keep_all = SceneConfig { remove_ground_from_boxes: false, ..SceneConfig::default() };
    let geo = scene_from_points("synthetic/table top", &all, None, &objects, 1e9, None, &keep_all).unwrap();
    let chair = geo.objects.iter().find(|o| o.label == "chair").expect("the chair is kept");
    assert_eq!(chair.points_below_ground, 0);
    assert!((chair.height_m - 1.1).abs() < 0.01, "{chair:?}");
}
