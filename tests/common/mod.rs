//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod cuda_emu;

use std::io::Write;
use std::path::PathBuf;

/// The repository root: `$SPATIALSYNTH_REPO` (a test binary carried to a GPU host runs in another checkout), else
/// where the tests were built.
pub fn repo() -> PathBuf {
    std::env::var_os("SPATIALSYNTH_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The shared real-data folder: `$SPATIALSYNTH_SHARED_DATA`, else `../shared/data` beside the repository.
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("SPATIALSYNTH_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("..").join("shared").join("data"));
    dir.join("README.md").is_file().then_some(dir)
}

/// Says loudly that a test did not run, bypassing the test harness's output capture so it shows in CI logs.
pub fn skip(test: &str, reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

/// The shared data folder, or a printed skip.
pub fn shared_data_or_skip(test: &str) -> Option<PathBuf> {
    let d = shared_data();
    if d.is_none() {
        skip(test, "../shared/data not found (set SPATIALSYNTH_SHARED_DATA to run it)");
    }
    d
}

/// Whether ONNX Runtime can be found; otherwise a printed skip. With `SPATIALSYNTH_REQUIRE_ORT` set (CI sets it),
/// a missing runtime fails the test instead.
pub fn ort_or_skip(test: &str) -> bool {
    match spatialsynth::models::runtime::find_library(None) {
        Ok(_) => true,
        Err(e) => {
            if std::env::var_os("SPATIALSYNTH_REQUIRE_ORT").is_some() {
                panic!("{test}: SPATIALSYNTH_REQUIRE_ORT is set but {e}");
            }
            skip(test, &e.to_string());
            false
        }
    }
}

/// Whether `python3` can import the modules a Python reference script needs; otherwise a printed skip (a failure
/// when `SPATIALSYNTH_REQUIRE_ORT` is set).
pub fn python_or_skip(test: &str, modules: &[&str]) -> bool {
    let code = modules.iter().map(|m| format!("import {m}")).collect::<Vec<_>>().join("; ");
    let ok = std::process::Command::new("python3").args(["-c", &code]).output().is_ok_and(|o| o.status.success());
    if !ok {
        let why = format!("python3 cannot import {modules:?}");
        if std::env::var_os("SPATIALSYNTH_REQUIRE_ORT").is_some() {
            panic!("{test}: SPATIALSYNTH_REQUIRE_ORT is set but {why}");
        }
        skip(test, &why);
    }
    ok
}

/// A JSON Lines manifest of the 6-DoF GraspNet frames of `data` (shared data), written into `dir`: each frame's
/// object mask as its one instance, labelled with the object's name.
pub fn graspnet_manifest(data: &std::path::Path, dir: &std::path::Path) -> PathBuf {
    let src = data.join("sixdof_graspnet_objects");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("frames.json")).unwrap()).unwrap();
    let mut lines = String::new();
    for raw in manifest["frames"].as_array().unwrap() {
        let id = raw["id"].as_str().unwrap();
        let entry = serde_json::json!({
            "id": id,
            "color": src.join(raw["color"].as_str().unwrap()),
            "depth": src.join(raw["depth"].as_str().unwrap()),
            "depth_units_per_meter": raw["depth_units_per_meter"],
            "intrinsics": raw["intrinsics"],
            "instances": src.join(raw["object_mask"].as_str().unwrap()),
            "labels": {"255": id},
        });
        lines.push_str(&entry.to_string());
        lines.push('\n');
    }
    let path = dir.join("graspnet.jsonl");
    std::fs::write(&path, lines).unwrap();
    path
}

/// A little-endian float32 `x, y, z, r, g, b` point file (the SUN RGB-D and ScanNet clouds of the shared data).
pub fn read_xyzrgb(path: &std::path::Path) -> Vec<[f32; 6]> {
    let bytes = std::fs::read(path).unwrap();
    let floats: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    floats.chunks_exact(6).map(|p| [p[0], p[1], p[2], p[3], p[4], p[5]]).collect()
}
