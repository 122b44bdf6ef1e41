//! The `spatialsynth` command line: the README's main command, bad input, atomic output, determinism.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use spatialsynth::run::FailureRecord;

fn spatialsynth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spatialsynth")).args(args).output().unwrap()
}

fn sample(path: &str) -> String {
    common::repo().join("data/sample").join(path).display().to_string()
}

fn good_frame(id: &str) -> Value {
    json!({
        "id": id,
        "color": sample("pcl_kinect/milk_cartoon_floor_color.png"),
        "depth": sample("pcl_kinect/milk_cartoon_floor_depth.png"),
        "depth_units_per_meter": 1000.0,
        "intrinsics": {"fx": 525.0, "fy": 525.0, "cx": 319.5, "cy": 239.5, "width": 640, "height": 480},
        "boxes": [{"label": "milk carton", "xyxy": [231, 55, 328, 232]}, {"label": "bleach bottle", "xyxy": [400, 67, 500, 258]}]
    })
}

fn write_npy_f32(path: &Path, h: usize, w: usize, value: f32) {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({h}, {w}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for _ in 0..h * w {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

fn failures(out: &Path) -> Vec<FailureRecord> {
    std::fs::read_to_string(out.join("failures.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn main_command_runs_on_the_sample_and_says_where_the_output_went() {
    // The sample's unannotated frames go through the built-in detector and segmenter.
    if !common::ort_or_skip("main_command_runs_on_the_sample_and_says_where_the_output_went") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("scenes");
    let o = spatialsynth(&[
        "generate",
        &common::repo().join("data/sample").display().to_string(),
        "-o",
        &out.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("10 of 10 frames ok"), "{stdout}");
    assert!(stdout.contains("models on cpu"), "{stdout}");
    assert!(stdout.contains(&out.join("scene_graphs.jsonl").display().to_string()), "{stdout}");
    assert!(stdout.contains(&format!("dataset: {}", out.display())), "{stdout}");
    assert_eq!(
        files_in(&out),
        [
            "README.md",
            "dataset.json",
            "failures.jsonl",
            "llava.jsonl",
            "openai.jsonl",
            "qa.parquet",
            "run.json",
            "scene_graphs.jsonl"
        ]
    );
    let dataset: Value = serde_json::from_str(&std::fs::read_to_string(out.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(dataset["frames"], 10);
    assert!(dataset["qa"].as_u64().unwrap() >= 100, "{dataset}");
    for category in ["qualitative", "quantitative", "reasoning"] {
        assert!(dataset["per_category"][category].as_u64().unwrap() > 0, "{dataset}");
    }
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains("| `left_predicate` | qualitative |"), "{card}");
    // The files load in Python (pyarrow, json) with the schema the README documents.
    if common::python_or_skip("main_command_runs_on_the_sample_and_says_where_the_output_went", &["pyarrow"]) {
        let check = Command::new("python3")
            .arg(common::repo().join("tests/python/check_dataset.py"))
            .arg(&out)
            .arg(common::repo().join("README.md"))
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
        assert!(check.status.success(), "{text}");
        assert!(text.contains("schema matches README"), "{text}");
    }
    assert!(failures(&out).is_empty());
    let run: Value = serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["frames_ok"], 10);
    assert_eq!(run["stages"]["detected_frames"], 4);
    // The geometry's time step by step: every step named once, in order; backend steps marked; the shares add up to
    // one and no step took longer than the whole geometry stage.
    let steps = run["stages"]["geometry_steps"].as_array().unwrap();
    let names: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    let expected = spatialsynth::pipeline::GeometryStep::ALL.map(|s| s.name());
    assert_eq!(names, expected);
    let on_backend: Vec<&str> =
        steps.iter().filter(|s| s["on_backend"].as_bool().unwrap()).map(|s| s["step"].as_str().unwrap()).collect();
    assert_eq!(on_backend, ["k1_k2", "k3", "k4", "gaps", "k5"]);
    let share: f64 = steps.iter().map(|s| s["share"].as_f64().unwrap()).sum();
    assert!((share - 1.0).abs() < 1e-9, "{share}");
    let geometry_s = run["stages"]["geometry_s"].as_f64().unwrap();
    for s in steps {
        let (busy, per_frame) = (s["busy_s"].as_f64().unwrap(), s["ms_per_frame"].as_f64().unwrap());
        assert!(busy >= 0.0 && busy <= geometry_s, "{s} against {geometry_s} s");
        assert!((per_frame - busy * 1e3 / 10.0).abs() < 1e-9, "{s}");
    }
    // K1+K2 and K3 do work on every frame.
    assert!(steps[0]["busy_s"].as_f64().unwrap() > 0.0 && steps[3]["busy_s"].as_f64().unwrap() > 0.0);
    // The parameters that made the data are recorded with it.
    assert_eq!(run["options"]["config"]["ransac"]["hypotheses"], 1000);
}

#[test]
fn bad_input_catalogue_each_error_names_its_kind_file_and_frame_and_the_rest_is_processed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let p = |name: &str| dir.join(name).display().to_string();

    // Broken files.
    let depth_png = std::fs::read(sample("pcl_kinect/milk_cartoon_floor_depth.png")).unwrap();
    std::fs::write(dir.join("truncated.png"), &depth_png[..depth_png.len() / 3]).unwrap();
    std::fs::write(dir.join("not_an_image.png"), b"this is not a PNG").unwrap();
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_pixel(320, 240, image::Luma([1000u16]))
        .save(dir.join("small_depth.png"))
        .unwrap();
    write_npy_f32(&dir.join("nan_depth.npy"), 480, 640, f32::NAN);
    image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_pixel(640, 480, image::Luma([0u16]))
        .save(dir.join("zero_depth.png"))
        .unwrap();
    image::ImageBuffer::<image::Luma<u8>, Vec<u8>>::from_pixel(640, 480, image::Luma([0u8]))
        .save(dir.join("empty_mask.png"))
        .unwrap();
    image::ImageBuffer::<image::Luma<u8>, Vec<u8>>::from_pixel(320, 240, image::Luma([1u8]))
        .save(dir.join("small_mask.png"))
        .unwrap();
    image::RgbImage::from_pixel(320, 240, image::Rgb([9, 9, 9])).save(dir.join("small_color.png")).unwrap();
    let npy = dir.join("short.npy");
    write_npy_f32(&npy, 480, 640, 1.0);
    let bytes = std::fs::read(&npy).unwrap();
    std::fs::write(&npy, &bytes[..bytes.len() - 1000]).unwrap();
    std::fs::write(dir.join("labels_broken.json"), "{\"1\": ").unwrap();

    let mut frames = vec![good_frame("good_1")];
    let mut bad = |id: &str, edit: &dyn Fn(&mut Value)| {
        let mut f = good_frame(id);
        edit(&mut f);
        frames.push(f);
    };
    bad("missing_depth", &|f| f["depth"] = p("no_such_depth.png").into());
    bad("truncated_depth", &|f| f["depth"] = p("truncated.png").into());
    bad("wrong_size", &|f| f["depth"] = p("small_depth.png").into());
    bad("nan_depth", &|f| f["depth"] = p("nan_depth.npy").into());
    bad("zero_depth", &|f| f["depth"] = p("zero_depth.png").into());
    bad("corrupt_color", &|f| f["color"] = p("not_an_image.png").into());
    bad("negative_focal", &|f| f["intrinsics"]["fx"] = (-525.0).into());
    bad("missing_label_id", &|f| {
        f.as_object_mut().unwrap().remove("boxes");
        f["instances"] = p("empty_mask.png").into();
        f["labels"] = json!({"3": "chair"});
    });
    bad("absurd_focal", &|f| f["intrinsics"]["fx"] = 5.0e8.into());
    bad("principal_point_off", &|f| f["intrinsics"]["cx"] = 9000.0.into());
    bad("small_color", &|f| f["color"] = p("small_color.png").into());
    bad("short_npy", &|f| f["depth"] = p("short.npy").into());
    bad("small_instances", &|f| {
        f.as_object_mut().unwrap().remove("boxes");
        f["instances"] = p("small_mask.png").into();
        f["labels"] = json!({"1": "chair"});
    });
    bad("missing_labels_file", &|f| {
        f.as_object_mut().unwrap().remove("boxes");
        f["instances"] = p("empty_mask.png").into();
        f["labels"] = p("no_such_labels.json").into();
    });
    bad("broken_labels_file", &|f| {
        f.as_object_mut().unwrap().remove("boxes");
        f["instances"] = p("empty_mask.png").into();
        f["labels"] = p("labels_broken.json").into();
    });
    bad("box_outside", &|f| f["boxes"] = json!([{"label": "cup", "xyxy": [700, 10, 800, 90]}]));
    bad("no_objects_label", &|f| f["boxes"] = json!([{"label": "", "xyxy": [10, 10, 80, 90]}]));
    frames.push(good_frame("good_2"));
    std::fs::create_dir(dir.join("set")).unwrap();
    std::fs::write(
        dir.join("set/frames.json"),
        serde_json::to_string(&json!({"dataset": "mixed", "frames": frames})).unwrap(),
    )
    .unwrap();
    // A JSON Lines manifest with one malformed line between two good ones, and a manifest that is not JSON.
    let lines =
        [good_frame("line_1").to_string(), "{\"id\": \"broken\", ".to_string(), good_frame("line_3").to_string()];
    std::fs::write(dir.join("set/more.jsonl"), lines.join("\n")).unwrap();
    std::fs::create_dir(dir.join("set/broken")).unwrap();
    std::fs::write(dir.join("set/broken/frames.json"), "{not json").unwrap();

    let out = dir.join("out");
    let o = spatialsynth(&["scene", &p("set"), "-o", &out.display().to_string(), "--quiet"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    // Every good frame made it, in input order.
    let done: Vec<String> = std::fs::read_to_string(out.join("scene_graphs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["frame"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(done, ["mixed/good_1", "mixed/good_2", "more/line_1", "more/line_3"]);
    let fails = failures(&out);
    let find = |frame: &str| {
        fails.iter().find(|f| f.frame == frame).unwrap_or_else(|| panic!("no failure recorded for {frame}: {fails:#?}"))
    };
    for (frame, kind, file) in [
        ("mixed/missing_depth", "missing_file", "no_such_depth.png"),
        ("mixed/truncated_depth", "corrupt_image", "truncated.png"),
        ("mixed/wrong_size", "image_format", "small_depth.png"),
        ("mixed/nan_depth", "invalid_depth", "nan_depth.npy"),
        ("mixed/zero_depth", "invalid_depth", "zero_depth.png"),
        ("mixed/corrupt_color", "corrupt_image", "not_an_image.png"),
        ("mixed/negative_focal", "invalid_intrinsics", "frames.json"),
        ("mixed/missing_label_id", "invalid_objects", "frames.json"),
        ("mixed/absurd_focal", "invalid_intrinsics", "frames.json"),
        ("mixed/principal_point_off", "invalid_intrinsics", "frames.json"),
        ("mixed/small_color", "image_format", "small_color.png"),
        ("mixed/short_npy", "corrupt_image", "short.npy"),
        ("mixed/small_instances", "image_format", "small_mask.png"),
        ("mixed/missing_labels_file", "missing_file", "no_such_labels.json"),
        ("mixed/broken_labels_file", "invalid_objects", "labels_broken.json"),
        ("mixed/box_outside", "invalid_objects", "frames.json"),
        ("mixed/no_objects_label", "invalid_objects", "frames.json"),
    ] {
        let f = find(frame);
        assert_eq!(f.kind, kind, "{f:?}");
        assert!(f.file.as_deref().is_some_and(|p| p.ends_with(file)), "{f:?}");
        // The message names both the frame and the file, and the CLI prints it.
        assert!(f.message.contains(frame) && f.message.contains(file), "{f:?}");
        assert!(stderr.contains(&f.message), "{stderr}");
    }
    let line = fails.iter().find(|f| f.line == Some(2)).expect("the malformed JSON line");
    assert_eq!(line.kind, "malformed_manifest");
    assert!(line.message.contains("more.jsonl line 2"), "{line:?}");
    let whole = fails.iter().find(|f| f.file.as_deref().is_some_and(|p| p.ends_with("broken/frames.json"))).unwrap();
    assert_eq!(whole.kind, "malformed_manifest");
    assert_eq!(fails.len(), 19, "{fails:#?}");
    // Only complete files are left behind.
    assert_eq!(files_in(&out), ["failures.jsonl", "run.json", "scene_graphs.jsonl"]);
}

#[test]
fn parameter_files_override_defaults_and_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"ransac": {"hypotheses": 200}, "outlier_removal": {"std_ratio": 2.0}, "noise": {"per_m2": 0.01}}"#,
    )
    .unwrap();
    let out = tmp.path().join("out");
    let sample = common::repo().join("data/sample/frames.json").display().to_string();
    let o = spatialsynth(&[
        "scene",
        &sample,
        "-o",
        &out.display().to_string(),
        "--quiet",
        "--config",
        &config.display().to_string(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run: Value = serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    let c = &run["options"]["config"];
    assert_eq!(c["ransac"]["hypotheses"], 200);
    assert_eq!(c["ransac"]["inlier_threshold_m"], 0.02);
    assert_eq!(c["outlier_removal"]["std_ratio"], 2.0);
    assert_eq!(c["outlier_removal"]["neighbours"], 10);
    assert_eq!(c["noise"]["floor_m"], 0.01);
    // A misspelt parameter is an error that names the file, not a silent default.
    std::fs::write(&config, r#"{"ransac": {"hypothesis": 200}}"#).unwrap();
    let o =
        spatialsynth(&["scene", &sample, "-o", &out.display().to_string(), "--config", &config.display().to_string()]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("config.json") && stderr.contains("hypothesis"), "{stderr}");
    // A value out of range is refused before any frame is processed, naming the parameter.
    std::fs::write(&config, r#"{"ransac": {"up_prior": [0.0, 0.0, 0.0]}}"#).unwrap();
    let o =
        spatialsynth(&["scene", &sample, "-o", &out.display().to_string(), "--config", &config.display().to_string()]);
    assert_eq!(o.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("ransac.up_prior"), "{stderr}");
}

#[test]
fn missing_input_is_a_clear_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let o = spatialsynth(&["scene", "/no/such/manifest.json", "-o", &tmp.path().join("o").display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("/no/such/manifest.json"), "{stderr}");
}

#[test]
fn the_block_cache_reports_what_it_served_and_turns_off() {
    // A run on the sample frames frees frame-sized buffers and asks for them again: the cache serves some of them,
    // and none with a cap of 0 (the statistics come from the allocator, on stderr when asked for).
    let run = |cap: Option<&str>| {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_spatialsynth"));
        c.args(["--threads", "1", "scene", &sample("frames.json"), "-o", &tmp.path().join("o").display().to_string()]);
        c.args(["--backend", "cpu", "--objects", "given"]).env("SPATIALSYNTH_BLOCK_CACHE_STATS", "1");
        match cap {
            Some(cap) => c.env("SPATIALSYNTH_BLOCK_CACHE_MB", cap),
            None => c.env_remove("SPATIALSYNTH_BLOCK_CACHE_MB"),
        };
        let o = c.output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{stderr}");
        let line = stderr.lines().find(|l| l.starts_with("block cache: ")).unwrap_or_else(|| panic!("{stderr}"));
        let numbers: Vec<f64> =
            line.split(|c: char| !(c.is_ascii_digit() || c == '.')).filter_map(|w| w.parse().ok()).collect();
        assert_eq!(numbers.len(), 3, "{line}");
        (numbers[0], numbers[1], numbers[2])
    };
    let (hits, misses, cached) = run(None);
    assert!(hits > 0.0 && misses > 0.0 && cached > 0.0, "hits {hits}, misses {misses}, {cached} MiB cached");
    let (hits, misses, cached) = run(Some("0"));
    assert!(hits == 0.0 && misses > 0.0 && cached == 0.0, "hits {hits}, misses {misses}, {cached} MiB cached");
    let o = Command::new(env!("CARGO_BIN_EXE_spatialsynth"))
        .args(["scene", &sample("frames.json"), "-o", "/nonexistent/o"])
        .env("SPATIALSYNTH_BLOCK_CACHE_MB", "lots")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("SPATIALSYNTH_BLOCK_CACHE_MB=\"lots\""));
}

#[test]
fn output_is_byte_identical_across_runs_and_thread_counts() {
    // Includes the model path (detections on the unannotated sample frames).
    if !common::ort_or_skip("output_is_byte_identical_across_runs_and_thread_counts") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let run = |threads: &str, name: &str| -> PathBuf {
        let out = tmp.path().join(name);
        let o = spatialsynth(&[
            "--threads",
            threads,
            "generate",
            &common::repo().join("data/sample").display().to_string(),
            "-o",
            &out.display().to_string(),
            "--quiet",
        ]);
        assert!(o.status.success());
        out
    };
    let dirs = [run("1", "a"), run("2", "b"), run("3", "c")];
    for file in ["scene_graphs.jsonl", "llava.jsonl", "openai.jsonl", "qa.parquet", "README.md"] {
        let bytes: Vec<Vec<u8>> = dirs.iter().map(|d| std::fs::read(d.join(file)).unwrap()).collect();
        assert!(!bytes[0].is_empty(), "{file}");
        assert!(bytes[0] == bytes[1] && bytes[1] == bytes[2], "{file} differs between thread counts");
    }
    let a = std::fs::read(dirs[0].join("scene_graphs.jsonl")).unwrap();
    // A different seed draws other hypotheses (so the output really depends on it).
    let out = tmp.path().join("seeded");
    let o = spatialsynth(&[
        "scene",
        &common::repo().join("data/sample").display().to_string(),
        "-o",
        &out.display().to_string(),
        "--quiet",
        "--seed",
        "7",
    ]);
    assert!(o.status.success());
    assert_ne!(std::fs::read(out.join("scene_graphs.jsonl")).unwrap(), a);
}

#[test]
fn bench_prints_per_frame_lines_and_a_summary() {
    let o = spatialsynth(&[
        "bench",
        &common::repo().join("data/sample/frames.json").display().to_string(),
        "--repeats",
        "1",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&o.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 7);
    let summary = lines.last().unwrap();
    assert_eq!(summary["summary"], true);
    assert_eq!(summary["frames"], 6);
    for stage in ["unproject", "ransac", "dbscan"] {
        assert!(summary["ms_per_frame"][stage].as_f64().unwrap() > 0.0);
    }
    for frame in &lines[..6] {
        assert_eq!(frame["ground_found"], true, "{frame}");
        assert!(frame["clusters"].as_u64().unwrap() > 0, "{frame}");
    }
}

#[test]
fn qa_regenerates_from_scene_graphs_and_reports_malformed_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let scenes = tmp.path().join("scenes");
    let o = spatialsynth(&["scene", &sample("frames.json"), "-o", &scenes.display().to_string(), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let graphs = scenes.join("scene_graphs.jsonl");
    let qa = |args: &[&str], out: &str| {
        let out = tmp.path().join(out);
        let mut all = vec!["qa", graphs.to_str().unwrap(), "-o", out.to_str().unwrap()];
        all.extend_from_slice(args);
        (spatialsynth(&all), out)
    };
    let (o, a) = qa(&[], "a");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (_, same) = qa(&[], "same");
    let (_, seeded) = qa(&["--seed", "5"], "seeded");
    let read = |d: &Path| std::fs::read(d.join("llava.jsonl")).unwrap();
    assert_eq!(read(&a), read(&same));
    assert_ne!(read(&a), read(&seeded));
    // Image paths relative to an image folder.
    let root = common::repo().join("data/sample");
    let (o, rooted) = qa(&["--image-root", root.to_str().unwrap()], "rooted");
    assert!(o.status.success());
    let first: Value = serde_json::from_str(String::from_utf8(read(&rooted)).unwrap().lines().next().unwrap()).unwrap();
    let image = first["image"].as_str().unwrap();
    assert!(!image.starts_with('/') && root.join(image).is_file(), "{image}");
    // Imperial units and a narrower mix.
    let (o, imperial) = qa(&["--units", "imperial", "--mix", "all=0,distance=1,height=1"], "imperial");
    assert!(o.status.success());
    let text = String::from_utf8(read(&imperial)).unwrap();
    assert!(!text.contains("metre") && (text.contains("feet") || text.contains("inches")), "{text}");
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        for r in v["qa"].as_array().unwrap() {
            assert!(["distance", "height"].contains(&r["question_type"].as_str().unwrap()), "{r}");
        }
    }
    // A malformed line is reported with its number, the others are templated, and the exit status says so.
    let mut lines: Vec<String> = std::fs::read_to_string(&graphs).unwrap().lines().map(String::from).collect();
    let n = lines.len();
    lines.insert(1, "{\"frame\": 3".into());
    let broken = tmp.path().join("broken.jsonl");
    std::fs::write(&broken, lines.join("\n")).unwrap();
    let out = tmp.path().join("broken");
    let o = spatialsynth(&["qa", broken.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("scene graph line 2"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let dataset: Value = serde_json::from_str(&std::fs::read_to_string(out.join("dataset.json")).unwrap()).unwrap();
    assert_eq!(dataset["frames"], n);
    assert_eq!(dataset["failures"][0]["line"], 2);
    // Bad options are refused before anything is written.
    let (o, bad) = qa(&["--mix", "sideways=1"], "bad");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("sideways"));
    assert!(!bad.exists());
    let bank = tmp.path().join("bank.toml");
    std::fs::write(&bank, "version = 1\n").unwrap();
    let (o, _) = qa(&["--templates", bank.to_str().unwrap()], "bank");
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("bank.toml"));
}
