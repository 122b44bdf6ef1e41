//! Pipeline behaviour that real frames rarely show: no ground at all, a camera on its side, parameter files.

mod common;

use spatialsynth::geometry::canonical::GroundSource;
use spatialsynth::geometry::Point3;
use spatialsynth::io::objects::ObjectKind;
use spatialsynth::pipeline::{scene_from_points, ObjectInput, SceneConfig};

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
