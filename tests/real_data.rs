//! Real-data checks on `../shared/data` (41 RGB-D frames, SUN RGB-D and 6-DoF GraspNet ground truth).

mod common;

use std::path::Path;

use serde_json::Value;
use spatialsynth::geometry::rng::frame_key;
use spatialsynth::geometry::unproject::unproject_depth;
use spatialsynth::geometry::Point3;
use spatialsynth::io::objects::ObjectKind;
use spatialsynth::io::{find_manifests, load_frame, read_manifest, FrameSpec};
use spatialsynth::pipeline::{
    ground_and_frame, ground_sample_normals, process_frame, scene_from_points, ObjectInput, SceneConfig,
};
use spatialsynth::scene::GroundInfo;

fn all_frames(data: &Path) -> Vec<FrameSpec> {
    find_manifests(data).unwrap().iter().flat_map(|m| read_manifest(m).unwrap()).map(|f| f.unwrap()).collect()
}

fn ground_of(spec: &FrameSpec) -> GroundInfo {
    let frame = load_frame(spec).unwrap();
    let depth = frame.depth.as_ref().unwrap();
    let cloud = unproject_depth(depth, &frame.intrinsics);
    {
        let config = SceneConfig::default();
        let normals = ground_sample_normals(depth, &frame.intrinsics, &cloud, &config.ransac, 10);
        ground_and_frame(&cloud.points_in_camera, Some(&normals), frame_key(&spec.key), &config, None).0
    }
}

fn angle_deg(a: [f64; 3], b: [f64; 3]) -> f64 {
    let d = a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    let n = (a.iter().map(|v| v * v).sum::<f64>() * b.iter().map(|v| v * v).sum::<f64>()).sqrt();
    (d / n).clamp(-1.0, 1.0).acos().to_degrees()
}

fn mat_vec(m: &[[f64; 3]; 3], v: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2])
}

/// Raw manifest entries (for the poses and ground truth our loader ignores).
fn raw_frames(manifest: &Path) -> Vec<Value> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(manifest).unwrap()).unwrap();
    v["frames"].as_array().unwrap().clone()
}

#[test]
fn ground_is_found_on_every_frame_and_is_horizontal() {
    let Some(data) = common::shared_data_or_skip("ground_is_found_on_every_frame_and_is_horizontal") else { return };
    let frames = all_frames(&data);
    assert_eq!(frames.len(), 41);
    for spec in &frames {
        let g = ground_of(spec);
        // Every one of these frames shows a floor, a road or a table (checked by eye on overlays of the inliers).
        assert!(g.found, "{}: no ground found ({g:?})", spec.key);
        assert!(g.inlier_fraction > 0.1, "{}: ground too small to be the floor or table: {g:?}", spec.key);
        assert!((0.25..2.0).contains(&g.camera_height_m), "{}: camera height {}", spec.key, g.camera_height_m);
    }
}

#[test]
fn floor_heights_match_the_known_ranges() {
    let Some(data) = common::shared_data_or_skip("floor_heights_match_the_known_ranges") else { return };
    // From the data README: NYU and house frames have the floor 1.3-1.5 m below the camera; KITTI's camera is
    // mounted 1.65 m above the road.
    for spec in all_frames(&data) {
        let g = ground_of(&spec);
        let range = match spec.dataset.as_str() {
            "metric3d_nyu_test" | "open3d_nyu_raw_frame" | "slambook2_house" => 1.3..1.5,
            "metric3d_kitti_outdoor" => 1.55..1.75,
            _ => continue,
        };
        assert!(
            range.contains(&g.camera_height_m),
            "{}: camera height {} not in {range:?}",
            spec.key,
            g.camera_height_m
        );
    }
}

#[test]
fn ground_normals_agree_in_the_world_frame_across_posed_frames() {
    let Some(data) = common::shared_data_or_skip("ground_normals_agree_in_the_world_frame_across_posed_frames") else {
        return;
    };
    // 7-Scenes (camera-to-world 4x4) and slambook2 (T_wc quaternion): a floor or table seen from different
    // viewpoints has one normal in the world frame; a wall found in any frame would be 90 degrees off.
    for (folder, rotation) in [
        (
            "sevenscenes_kitchen",
            Box::new(|f: &Value| {
                let m = &f["pose_cam_to_world"];
                let r: [[f64; 3]; 3] = [0, 1, 2].map(|i| [0, 1, 2].map(|j| m[i][j].as_f64().unwrap()));
                r
            }) as Box<dyn Fn(&Value) -> [[f64; 3]; 3]>,
        ),
        (
            "slambook2_house",
            Box::new(|f: &Value| {
                let p = &f["pose_twc_tx_ty_tz_qx_qy_qz_qw"];
                let q: [f64; 4] = [3, 4, 5, 6].map(|i| p[i].as_f64().unwrap());
                let (x, y, z, w) = (q[0], q[1], q[2], q[3]);
                [
                    [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - z * w), 2.0 * (x * z + y * w)],
                    [2.0 * (x * y + z * w), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - x * w)],
                    [2.0 * (x * z - y * w), 2.0 * (y * z + x * w), 1.0 - 2.0 * (x * x + y * y)],
                ]
            }),
        ),
    ] {
        let manifest = data.join(folder).join("frames.json");
        let specs: Vec<FrameSpec> = read_manifest(&manifest).unwrap().into_iter().map(|f| f.unwrap()).collect();
        let raws = raw_frames(&manifest);
        let normals: Vec<([f64; 3], f64)> = specs
            .iter()
            .zip(&raws)
            .map(|(spec, raw)| {
                let g = ground_of(spec);
                let n = [g.plane_in_camera[0], g.plane_in_camera[1], g.plane_in_camera[2]];
                (mat_vec(&rotation(raw), n), g.tilt_uncertainty_deg)
            })
            .collect();
        // The reference: the best-determined frame's normal.
        let best = normals.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0;
        for (i, (n, uncertainty)) in normals.iter().enumerate() {
            let off = angle_deg(*n, best);
            eprintln!("{folder} {} {off:.2} unc={uncertainty:.2}", specs[i].id);
            // Within 3 degrees, or within twice the uncertainty the frame reports for its own ground (poses are
            // approximate too: slambook2's to 5-10 cm).
            assert!(
                off < 3.0_f64.max(2.0 * uncertainty),
                "{folder} frame {}: ground normal {off:.1} deg off (reported uncertainty {uncertainty:.1})",
                specs[i].id
            );
        }
    }
}

#[test]
fn graspnet_object_centroids_match_ground_truth() {
    let Some(data) = common::shared_data_or_skip("graspnet_object_centroids_match_ground_truth") else { return };
    let tmp = tempfile::tempdir().unwrap();
    let manifest = common::graspnet_manifest(&data, tmp.path());
    let specs: Vec<FrameSpec> = read_manifest(&manifest).unwrap().into_iter().map(|f| f.unwrap()).collect();
    assert_eq!(specs.len(), 3);
    for spec in specs {
        let graph = process_frame(&load_frame(&spec).unwrap(), &SceneConfig::default()).unwrap();
        assert_eq!(graph.objects.len(), 1, "{}", spec.key);
        let obj = &graph.objects[0];
        let gt: Value = serde_json::from_str(
            &std::fs::read_to_string(data.join("sixdof_graspnet_objects").join(format!("{}_object.json", spec.id)))
                .unwrap(),
        )
        .unwrap();
        let gt_centroid: [f64; 3] = [0, 1, 2].map(|i| gt["centroid_cam_m"][i].as_f64().unwrap());
        // Our centroid is in the canonical frame: take it back to the camera frame.
        let m = graph.canonical_from_camera;
        let c = obj.centroid_m.map(f64::from);
        let t = [c[0] - m[0][3], c[1] - m[1][3], c[2] - m[2][3]];
        let cam = [0, 1, 2].map(|j| m[0][j] * t[0] + m[1][j] * t[1] + m[2][j] * t[2]);
        let err =
            ((cam[0] - gt_centroid[0]).powi(2) + (cam[1] - gt_centroid[1]).powi(2) + (cam[2] - gt_centroid[2]).powi(2))
                .sqrt();
        assert!(err < 0.02, "{}: centroid {cam:?} vs ground truth {gt_centroid:?} ({err:.4} m)", spec.key);
        // The object stands on the table, which is the ground here.
        assert!(obj.bottom_m.abs() < 0.03, "{}: bottom {} m above the table", spec.key, obj.bottom_m);
        let gt_n = gt["n_points"].as_f64().unwrap();
        assert!((f64::from(obj.points) - gt_n).abs() / gt_n < 0.05, "{}: {} points vs {gt_n}", spec.key, obj.points);
    }
}

#[test]
fn sunrgbd_bed_and_night_stand_agree_with_their_3d_boxes() {
    let Some(data) = common::shared_data_or_skip("sunrgbd_bed_and_night_stand_agree_with_their_3d_boxes") else {
        return;
    };
    let dir = data.join("mmdet3d_sunrgbd_000017");
    let ann: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("annotations.json")).unwrap()).unwrap();
    let upright: Vec<[f32; 3]> =
        common::read_xyzrgb(&dir.join("000017_points_xyzrgb_f32.bin")).iter().map(|p| [p[0], p[1], p[2]]).collect();
    assert_eq!(upright.len(), 50_000);
    // Upright depth frame (x right, y forward, z up) -> a level OpenCV camera (x right, y down, z forward).
    let to_cam = |p: [f32; 3]| -> Point3 { [p[0], -p[2], p[1]] };
    let cam: Vec<Point3> = upright.iter().map(|p| to_cam(*p)).collect();
    let m: [[f64; 3]; 3] = [0, 1, 2].map(|i| [0, 1, 2].map(|j| ann["depth2img"][i][j].as_f64().unwrap()));
    let pixel = |p: [f32; 3]| {
        let q = mat_vec(&m, p.map(f64::from));
        (q[2] > 0.0).then(|| [q[0] / q[2], q[1] / q[2]])
    };
    let instances = ann["instances"].as_array().unwrap();
    let objects: Vec<ObjectInput> = instances
        .iter()
        .map(|inst| {
            let b: [f64; 4] = [0, 1, 2, 3].map(|i| inst["bbox_2d_xyxy"][i].as_f64().unwrap());
            let (mx, my) = ((b[2] - b[0]) / 4.0, (b[3] - b[1]) / 4.0);
            let mut points = Vec::new();
            let mut core = Vec::new();
            for (p, c) in upright.iter().zip(&cam) {
                if let Some([u, v]) = pixel(*p) {
                    if u >= b[0] && u < b[2] && v >= b[1] && v < b[3] {
                        points.push(*c);
                        core.push(u >= b[0] + mx && u < b[2] - mx && v >= b[1] + my && v < b[3] - my);
                    }
                }
            }
            ObjectInput {
                label: inst["label"].as_str().unwrap().to_string(),
                kind: ObjectKind::Box,
                instance_id: None,
                bbox_px: b.map(|v| v as f32),
                points_in_camera: points.into(),
                in_box_core: core,
                score: None,
                colors: Vec::new(),
            }
        })
        .collect();
    // The cloud is a 50k subsample of a 730x530 depth map: scale the pixel-based DBSCAN radius accordingly.
    let focal = m[0][0] * (50_000.0f64 / (730.0 * 530.0)).sqrt();
    let geo = scene_from_points("sunrgbd/000017", &cam, None, &objects, focal, None, &SceneConfig::default()).unwrap();
    assert!(geo.ground.found);
    // The ground-truth boxes sit on the floor at z = -1.23 in the upright frame.
    assert!((geo.ground.camera_height_m - 1.23).abs() < 0.08, "camera height {}", geo.ground.camera_height_m);
    assert_eq!(geo.objects.len(), 2, "{:?}", geo.dropped);
    let to_canonical = |p: [f64; 3]| geo.canonical.apply([p[0], -p[2], p[1]]);
    let mut centres = Vec::new();
    for (inst, obj) in instances.iter().zip(&geo.objects) {
        assert_eq!(inst["label"].as_str().unwrap(), obj.label);
        let b: Vec<f64> =
            inst["bbox_3d_xyz_dxdydz_yaw"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let centre = to_canonical([b[0], b[1], b[2]]);
        let (gt_bottom, gt_top) = (centre[2] - b[5] / 2.0, centre[2] + b[5] / 2.0);
        let what = &obj.label;
        // Seen from the front, an object's visible points reach its top; its bottom and back may be hidden.
        assert!((f64::from(obj.top_m) - gt_top).abs() < 0.12, "{what}: top {} vs {gt_top}", obj.top_m);
        assert!(
            f64::from(obj.bottom_m) > gt_bottom - 0.05 && f64::from(obj.bottom_m) < gt_bottom + 0.25,
            "{what}: bottom {} vs {gt_bottom}",
            obj.bottom_m
        );
        // Our centroid lies inside the ground-truth box (in its own yaw-rotated frame), with 10 cm of slack.
        let c = obj.centroid_m.map(f64::from);
        let (dx, dy) = (c[0] - centre[0], c[1] - centre[1]);
        // The canonical frame is the upright frame turned by a fraction of a degree: use the box yaw as given.
        let (s, co) = (b[6].sin(), b[6].cos());
        let (u, v) = (dx * co + dy * s, -dx * s + dy * co);
        assert!(u.abs() < b[3] / 2.0 + 0.1 && v.abs() < b[4] / 2.0 + 0.1, "{what}: centroid {c:?} outside box {b:?}");
        // The footprint's larger side is within 30% of the box's (the far side may be hidden).
        let (ours, gt) = (f64::from(obj.obb_size_m[0].max(obj.obb_size_m[1])), b[3].max(b[4]));
        assert!((ours - gt).abs() / gt < 0.3, "{what}: footprint {ours} vs {gt}");
        centres.push(centre);
    }
    // Relations agree with the ground-truth boxes: the night stand is left of the bed and lower than it.
    let rel = geo.relations.iter().find(|r| r.a == 0 && r.b == 1).unwrap();
    assert!(rel.left_m > 0.0 && (f64::from(rel.left_m) - (centres[1][0] - centres[0][0])).abs() < 0.3, "{rel:?}");
    assert!(rel.taller_m < 0.0, "{rel:?}");
    let gt_h = ((centres[1][0] - centres[0][0]).powi(2) + (centres[1][1] - centres[0][1]).powi(2)).sqrt();
    assert!((f64::from(rel.horizontal_distance_m) - gt_h).abs() / gt_h < 0.25, "{rel:?} vs {gt_h}");
}
