//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
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
