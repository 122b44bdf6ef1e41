//! Long runs: a run killed with SIGKILL leaves only complete files and `--resume` finishes it to the same bytes as
//! an uninterrupted run; `--shard i/N` + `merge` give the same bytes as one machine; the Slurm and Kubernetes
//! scripts of `deploy/` run the shards and the merge.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_spatialsynth")
}

fn spatialsynth(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A JSON Lines manifest of `copies` × the annotated sample frames (absolute paths, so no models are needed), with
/// a frame whose depth file is missing and a malformed line in the middle, so that the failure lists are not empty.
fn manifest(dir: &Path, copies: usize) -> PathBuf {
    let sample = common::repo().join("data/sample");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(sample.join("frames.json")).unwrap()).unwrap();
    let frames = doc["frames"].as_array().unwrap();
    let mut lines = Vec::new();
    for c in 0..copies {
        for f in frames {
            let mut f = f.clone();
            for key in ["color", "depth", "instances", "labels"] {
                if let Some(p) = f.get(key).and_then(Value::as_str) {
                    f[key] = sample.join(p).display().to_string().into();
                }
            }
            f["id"] = format!("{}_{c:03}", f["id"].as_str().unwrap()).into();
            lines.push(f.to_string());
        }
        if c == copies / 2 {
            let mut bad = frames[0].clone();
            bad["id"] = "missing_depth".into();
            bad["depth"] = dir.join("no_such_depth.png").display().to_string().into();
            lines.push(bad.to_string());
            lines.push("{\"id\": \"broken\", ".into());
        }
    }
    let path = dir.join("frames.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Every file of a dataset folder except `run.json` (the run's log: timings), by name.
fn dataset_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().unwrap() != "run.json")
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

fn assert_same_dataset(a: &Path, b: &Path) {
    let (fa, fb) = (dataset_files(a), dataset_files(b));
    let names = |f: &[(String, Vec<u8>)]| f.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&fa),
        [
            "README.md",
            "dataset.json",
            "failures.jsonl",
            "llava.jsonl",
            "openai.jsonl",
            "qa.parquet",
            "scene_graphs.jsonl"
        ]
    );
    assert_eq!(names(&fa), names(&fb));
    for ((name, x), (_, y)) in fa.iter().zip(&fb) {
        assert!(!x.is_empty(), "{name} is empty");
        assert!(x == y, "{name} differs between {} and {}", a.display(), b.display());
    }
}

fn generate(manifest: &Path, out: &Path, extra: &[&str]) -> Output {
    let (m, o) = (manifest.display().to_string(), out.display().to_string());
    let mut args = vec!["generate", m.as_str(), "-o", o.as_str(), "--quiet", "--part-frames", "4", "--batch", "2"];
    args.extend_from_slice(extra);
    spatialsynth(&args)
}

fn run_json(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap()
}

#[test]
fn a_killed_run_leaves_only_complete_files_and_resumes_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = manifest(tmp.path(), 10);
    // The uninterrupted run (exit 1: the two bad frames).
    let whole = tmp.path().join("whole");
    let o = generate(&manifest, &whole, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let summary = run_json(&whole);
    assert_eq!(summary["frames_ok"], 60);
    assert_eq!(summary["parts_total"], 16);
    assert!(!whole.join("parts").exists(), "the parts are removed once assembled");

    // The same run, killed (SIGKILL) as soon as its third part is done.
    let killed = tmp.path().join("killed");
    // One thread, so that even a fast machine is still at work when the third part is done.
    let args = ["--part-frames", "4", "--batch", "2", "--quiet"];
    let mut child = Command::new(bin())
        .args(["--threads", "1", "generate", &manifest.display().to_string(), "-o", &killed.display().to_string()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let parts = killed.join("parts");
    let t = Instant::now();
    while !parts.join("part-000002.json").exists() {
        assert!(t.elapsed() < Duration::from_secs(120), "part 2 never finished");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Nothing final was written, and every part file under its own name is complete: listed in a part record
    // with its exact size, or (written before the record) valid line by line. Temporary files are hidden.
    assert!(!killed.join("run.json").exists(), "the run finished before the kill; the test proves nothing");
    for f in ["scene_graphs.jsonl", "llava.jsonl", "qa.parquet", "dataset.json"] {
        assert!(!killed.join(f).exists(), "{f} written by a killed run");
    }
    let mut done = 0;
    for e in std::fs::read_dir(&parts).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(".partial-") {
            continue;
        }
        assert!(name.starts_with("part-"), "unexpected file {name}");
        if name.ends_with(".json") {
            done += 1;
            let record: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for (suffix, bytes) in record["files"].as_object().unwrap() {
                let file = path.with_extension(suffix);
                assert_eq!(std::fs::metadata(&file).unwrap().len(), bytes.as_u64().unwrap(), "{}", file.display());
            }
        } else if name.ends_with(".jsonl") {
            let body = std::fs::read_to_string(&path).unwrap();
            assert!(body.is_empty() || body.ends_with('\n'), "{name} ends mid-line");
            for line in body.lines() {
                serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
    }
    assert!((3..16).contains(&done), "{done} parts done when killed");

    // --resume skips the finished parts, cleans up, and ends with the very same bytes; with three batches in flight
    // (a speed setting: the finished parts still count, and results go on in input order).
    let o = generate(&manifest, &killed, &["--resume", "--in-flight", "3"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains(&format!("resumed: {done} of 16 parts were already done")), "{}", text(&o));
    let summary = run_json(&killed);
    assert_eq!((summary["parts_resumed"].as_u64(), summary["parts_processed"].as_u64()), (Some(done), Some(16 - done)));
    assert_eq!(summary["frames_ok"], 60);
    assert_same_dataset(&whole, &killed);
    assert!(!parts.exists());
    assert!(std::fs::read_dir(&killed).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')));

    // Resuming a finished run does nothing; a run with other options does not reuse its parts.
    let o = generate(&manifest, &killed, &["--resume"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(run_json(&killed)["parts_processed"], 0);
    assert_same_dataset(&whole, &killed);
    // More batches in flight than a run may keep: refused before anything is read or written.
    let refused = tmp.path().join("refused");
    let o = generate(&manifest, &refused, &["--in-flight", "17"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("17 batches in flight: at most 16"), "{}", text(&o));
    assert!(!refused.exists(), "a refused run wrote {}", refused.display());
    let o = generate(&manifest, &killed, &["--resume", "--seed", "5"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(run_json(&killed)["parts_processed"], 16);
    assert_ne!(std::fs::read(killed.join("llava.jsonl")).unwrap(), std::fs::read(whole.join("llava.jsonl")).unwrap());
}

#[test]
fn shards_merge_to_the_bytes_of_one_machine_and_bad_merges_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = manifest(tmp.path(), 4);
    let whole = tmp.path().join("whole");
    assert_eq!(generate(&manifest, &whole, &[]).status.code(), Some(1));
    let shard = |i: usize, n: usize, extra: &[&str]| -> PathBuf {
        let dir = tmp.path().join(format!("shard-{i}-of-{n}{}", extra.join("")));
        let spec = format!("{i}/{n}");
        let mut args = vec!["--shard", spec.as_str()];
        args.extend_from_slice(extra);
        let o = generate(&manifest, &dir, &args);
        assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
        assert!(text(&o).contains("spatialsynth merge"), "{}", text(&o));
        let m: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("shard.json")).unwrap()).unwrap();
        let parts: Vec<u64> = m["parts"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap()).collect();
        assert!(parts.iter().all(|p| *p as usize % n == i), "{parts:?}");
        assert!(!dir.join("scene_graphs.jsonl").exists(), "a shard of several does not assemble");
        dir
    };
    let shards: Vec<PathBuf> = (0..3).map(|i| shard(i, 3, &[])).collect();
    let merged = tmp.path().join("merged");
    let mut args: Vec<String> = vec!["merge".into()];
    // Any order.
    args.extend(shards.iter().rev().map(|d| d.display().to_string()));
    args.extend(["-o".into(), merged.display().to_string()]);
    let o = Command::new(bin()).args(&args).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "exit 1: frames failed\n{}", text(&o));
    assert!(text(&o).contains("merged 3 shards (7 parts)"), "{}", text(&o));
    assert_same_dataset(&whole, &merged);

    let merge = |dirs: &[&Path]| {
        let mut args: Vec<String> = vec!["merge".into()];
        args.extend(dirs.iter().map(|d| d.display().to_string()));
        args.extend(["-o".into(), tmp.path().join("refused").display().to_string()]);
        let o = Command::new(bin()).args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // A missing shard, a shard given twice, a shard of another run (another seed), an unfinished shard.
    assert!(merge(&[&shards[0], &shards[1]]).contains("shard 2/3 is missing"));
    assert!(merge(&[&shards[0], &shards[1], &shards[1]]).contains("is given twice"));
    let other = shard(2, 3, &["--seed", "9"]);
    assert!(merge(&[&shards[0], &shards[1], &other]).contains("not a shard of the same run"));
    // A shard of other inputs (one frame more: same options, same part count).
    let more = tmp.path().join("more");
    std::fs::create_dir(&more).unwrap();
    let mut text_more = std::fs::read_to_string(&manifest).unwrap();
    text_more.push_str(&std::fs::read_to_string(&manifest).unwrap().lines().next().unwrap().replace("_000", "_extra"));
    std::fs::write(more.join("frames.jsonl"), text_more).unwrap();
    let o = generate(&more.join("frames.jsonl"), &tmp.path().join("more-2"), &["--shard", "2/3"]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", text(&o));
    assert!(merge(&[&shards[0], &shards[1], &tmp.path().join("more-2")]).contains("not a shard of the same run"));
    // A damaged shard manifest is refused, not a panic.
    let copy = tmp.path().join("damaged");
    std::fs::create_dir(&copy).unwrap();
    let mut m: Value = serde_json::from_str(&std::fs::read_to_string(shards[2].join("shard.json")).unwrap()).unwrap();
    m["shard"]["index"] = 7.into();
    std::fs::write(copy.join("shard.json"), m.to_string()).unwrap();
    assert!(merge(&[&shards[0], &shards[1], &copy]).contains("inconsistent shard manifest"));
    std::fs::remove_file(shards[1].join("shard.json")).unwrap();
    let e = merge(&[&shards[0], &shards[1], &shards[2]]);
    assert!(e.contains("not a finished shard") && e.contains("--resume"), "{e}");
    // A part file that no longer matches its record.
    assert_eq!(generate(&manifest, &shards[1], &["--shard", "1/3", "--resume"]).status.code(), Some(1));
    let scenes = shards[1].join("parts/part-000001.scenes.jsonl");
    std::fs::write(&scenes, "truncated").unwrap();
    assert!(merge(&[&shards[0], &shards[1], &shards[2]]).contains("part-000001.scenes.jsonl has 9 bytes"));
}

fn write_script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_slurm_scripts_run_a_job_array_and_its_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = manifest(tmp.path(), 3);
    let whole = tmp.path().join("whole");
    assert_eq!(
        spatialsynth(&["generate", &manifest.display().to_string(), "-o", &whole.display().to_string(), "--quiet"])
            .status
            .code(),
        Some(1)
    );
    // A stand-in for `sbatch` that runs the script as Slurm would: each array task with its SLURM_ARRAY_* variables,
    // then (for --dependency) the next job. Only the queueing is simulated; the scripts are the real ones.
    let fake = tmp.path().join("bin");
    std::fs::create_dir(&fake).unwrap();
    write_script(
        &fake.join("sbatch"),
        r#"#!/bin/sh
array=""; script=""
for a in "$@"; do
  case "$a" in
    --array=*) array=${a#--array=} ;;
    --*) ;;
    *) script=$a ;;
  esac
done
echo "sbatch $*" >> "$OUT/sbatch.log"
if [ -n "$array" ]; then
  lo=${array%-*}; hi=${array#*-}; i=$lo
  while [ "$i" -le "$hi" ]; do
    SLURM_ARRAY_JOB_ID=41 SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_COUNT=$((hi - lo + 1)) SLURM_ARRAY_TASK_MIN=$lo \
      bash "$script" >&2 || exit 1
    i=$((i + 1))
  done
  echo 41
else
  bash "$script" >&2 || echo "merge exit $?" >> "$OUT/sbatch.log"
  echo 42
fi
"#,
    );
    let out = tmp.path().join("slurm");
    std::fs::create_dir(&out).unwrap();
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap_or_default());
    let o = Command::new(common::repo().join("deploy/submit-slurm.sh"))
        .args(["3", &out.display().to_string(), &manifest.display().to_string()])
        .env("PATH", path)
        .env("SPATIALSYNTH", bin())
        .env("EXTRA_ARGS", "--part-frames 4 --batch 2")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("shards: job 41; merge: job 42"), "{}", text(&o));
    let log = std::fs::read_to_string(out.join("sbatch.log")).unwrap();
    assert!(log.contains("--array=0-2") && log.contains("--dependency=afterany:41"), "{log}");
    // The merge found frames that failed and wrote the dataset anyway; merge.sh says so and exits 0 (no retry).
    assert!(!log.contains("merge exit"), "{log}");
    assert!(text(&o).contains("some frames failed"), "{}", text(&o));
    assert_same_dataset(&whole, &out.join("dataset"));
}

#[test]
fn the_gpus_script_runs_a_shard_per_gpu_and_merges() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = manifest(tmp.path(), 3);
    let whole = tmp.path().join("whole");
    assert_eq!(generate(&manifest, &whole, &["--backend", "cpu"]).status.code(), Some(1));
    // The binary behind a stand-in that logs which GPUs each shard was shown and how it was called; a stand-in
    // `nvidia-smi -L` (two GPUs and a MIG instance line, which is not a GPU of its own).
    let fake = tmp.path().join("bin");
    std::fs::create_dir(&fake).unwrap();
    let log = tmp.path().join("calls.log");
    write_script(
        &fake.join("spatialsynth"),
        &format!(
            "#!/bin/sh\necho \"$CUDA_VISIBLE_DEVICES $*\" >> '{}'\n[ -n \"${{FAIL_ON:-}}\" ] && [ \"$CUDA_VISIBLE_DEVICES\" = \"$FAIL_ON\" ] && exit 3\nexec '{}' \"$@\"\n",
            log.display(),
            bin()
        ),
    );
    write_script(
        &fake.join("nvidia-smi"),
        "#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-aaaa)'\necho '  MIG 1g.10gb Device 0: (UUID: MIG-bbbb)'\n\
         echo 'GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-cccc)'\n",
    );
    let path = format!("{}:{}", fake.display(), std::env::var("PATH").unwrap_or_default());
    let gpus = |out: &Path, env: &[(&str, &str)]| {
        let mut c = Command::new(common::repo().join("deploy/gpus.sh"));
        c.args([out.display().to_string(), manifest.display().to_string()]);
        c.env("PATH", &path).env("SPATIALSYNTH", fake.join("spatialsynth")).env("BACKEND", "cpu");
        c.env("THREADS", "1").env("EXTRA_ARGS", "--part-frames 4 --batch 2");
        c.env_remove("GPUS").env_remove("CUDA_VISIBLE_DEVICES").env_remove("FAIL_ON");
        c.envs(env.iter().copied()).output().unwrap()
    };
    // The GPUs nvidia-smi lists: one shard each, its GPU alone visible; the merge writes the whole run's dataset.
    let out = tmp.path().join("gpus");
    let o = gpus(&out, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("2 shards on GPUs 0,1, 1 threads each"), "{}", text(&o));
    assert!(text(&o).contains("some frames failed"), "{}", text(&o));
    let calls = std::fs::read_to_string(&log).unwrap();
    for (gpu, shard) in [("0", "0/2"), ("1", "1/2")] {
        assert!(
            calls.lines().any(|l| l.starts_with(&format!("{gpu} generate "))
                && l.contains(&format!("--shard {shard} --resume"))
                && l.contains("--backend cpu --threads 1 --model-threads 1 --part-frames 4")),
            "{calls}"
        );
    }
    assert_same_dataset(&whole, &out.join("dataset"));
    // GPUS (or CUDA_VISIBLE_DEVICES) chooses them: three shards; a shard that fails stops the merge and is named.
    std::fs::remove_file(&log).unwrap();
    let out = tmp.path().join("gpus-3");
    let o = gpus(&out, &[("CUDA_VISIBLE_DEVICES", "4,GPU-cccc,7"), ("FAIL_ON", "GPU-cccc")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("shard 1 (GPU GPU-cccc) failed"), "{}", text(&o));
    assert!(!out.join("dataset").exists());
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(["4 ", "GPU-cccc ", "7 "].iter().all(|g| calls.lines().any(|l| l.starts_with(g))), "{calls}");
    // Run again once the GPU is back: the shards resume and the merge writes the dataset.
    let o = gpus(&out, &[("GPUS", "4,GPU-cccc,7")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_same_dataset(&whole, &out.join("dataset"));
    // No GPU to find: a clear refusal.
    write_script(&fake.join("nvidia-smi"), "#!/bin/sh\necho 'No devices were found'\n");
    let o = gpus(&tmp.path().join("none"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no GPU found (nvidia-smi -L lists none); set GPUS"), "{}", text(&o));
}

#[test]
fn the_kubernetes_indexed_job_runs_its_shards_and_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = manifest(tmp.path(), 3);
    let whole = tmp.path().join("whole");
    assert_eq!(generate(&manifest, &whole, &[]).status.code(), Some(1));
    let yaml = std::fs::read_to_string(common::repo().join("deploy/k8s-indexed-job.yaml")).unwrap();
    let value = |key: &str| -> String {
        let line = yaml.lines().find(|l| l.trim_start().starts_with(key)).unwrap_or_else(|| panic!("no {key}"));
        line.trim_start()[key.len()..].trim().trim_matches('"').to_string()
    };
    assert_eq!(value("completionMode:"), "Indexed");
    let completions: usize = value("completions:").parse().unwrap();
    // The shard count the pods are told is the Job's completions.
    let shards_env = yaml.lines().skip_while(|l| !l.contains("name: SHARDS")).nth(1).unwrap();
    assert_eq!(shards_env.trim(), format!("value: \"{completions}\""));
    assert!(yaml.contains("command: [\"/opt/spatialsynth/deploy/shard.sh\"]"));
    let merge_yaml = std::fs::read_to_string(common::repo().join("deploy/k8s-merge-job.yaml")).unwrap();
    assert!(merge_yaml.contains("command: [\"/opt/spatialsynth/deploy/merge.sh\"]"));

    // Each pod as Kubernetes starts it: JOB_COMPLETION_INDEX set, the Job's env.
    let out = tmp.path().join("k8s");
    for i in 0..completions {
        let o = Command::new(common::repo().join("deploy/shard.sh"))
            .env("JOB_COMPLETION_INDEX", i.to_string())
            .env("SHARDS", completions.to_string())
            .env("INPUTS", &manifest)
            .env("OUT", &out)
            .env("SPATIALSYNTH", bin())
            .env("EXTRA_ARGS", "--part-frames 4 --batch 2")
            .output()
            .unwrap();
        assert!(o.status.success(), "pod {i}: {}", text(&o));
    }
    // With 19 frames in parts of 4 there are 5 parts: three of the 8 pods have none, and still finish.
    let merge_sh = |out: &Path, shards: usize| {
        Command::new(common::repo().join("deploy/merge.sh"))
            .env("OUT", out)
            .env("SHARDS", shards.to_string())
            .env("SPATIALSYNTH", bin())
            .output()
            .unwrap()
    };
    let o = merge_sh(&out, completions);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("some frames failed"), "{}", text(&o));
    assert!(text(&o).contains(&format!("merged {completions} shards (5 parts)")), "{}", text(&o));
    assert_same_dataset(&whole, &out.join("dataset"));
    // One shard is a shard too: it writes shard.json and merges alone.
    let single = tmp.path().join("k8s-1");
    let o = Command::new(common::repo().join("deploy/shard.sh"))
        .env("JOB_COMPLETION_INDEX", "0")
        .env("SHARDS", "1")
        .env("INPUTS", &manifest)
        .env("OUT", &single)
        .env("SPATIALSYNTH", bin())
        .env("EXTRA_ARGS", "--part-frames 4 --batch 2")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(single.join("shard-0/shard.json").is_file());
    assert_eq!(merge_sh(&single, 1).status.code(), Some(0));
    assert_same_dataset(&whole, &single.join("dataset"));
    // Outside a scheduler the script says what it needs.
    let o = Command::new(common::repo().join("deploy/shard.sh")).env_remove("SLURM_ARRAY_TASK_ID").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("JOB_COMPLETION_INDEX"), "{}", text(&o));
}
