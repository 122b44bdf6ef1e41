//! The CUDA kernels compile, without a GPU: NVRTC (CUDA 13, the pip wheel `nvidia-cuda-nvrtc` in CI) compiles every
//! module of `kernels/` for every virtual architecture the backend may pick (`ARCHITECTURES`, `compute_75` to
//! `compute_120`: code under `__CUDA_ARCH__` differs between them) with the backend's own options, and
//! `ptxas -arch=sm_90` (the pip wheel `nvidia-cuda-nvcc`) assembles the PTX: a real compile of every kernel, with
//! its registers, shared memory and spills reported. The `static_assert`s in the kernel files hold each record to
//! the size of its Rust twin (`src/backend/layout.rs`). One property of the code that performance rests on is held
//! here too: K5 writes its records in 16-byte stores. Without NVRTC or ptxas the tests print SKIPPED; with
//! `SPATIALSYNTH_REQUIRE_NVRTC` set (CI sets it once it has installed the wheels) they fail instead.

mod common;

use std::path::PathBuf;
use std::process::Command;

use spatialsynth::backend::cuda::{compile_module, nvrtc_available, KernelModule, ARCHITECTURES, MODULES};

fn nvrtc_or_skip(test: &str) -> bool {
    match nvrtc_available() {
        Ok(()) => true,
        Err(why) => {
            assert!(
                std::env::var_os("SPATIALSYNTH_REQUIRE_NVRTC").is_none(),
                "{test}: SPATIALSYNTH_REQUIRE_NVRTC is set but {why}"
            );
            common::skip(test, &why);
            false
        }
    }
}

/// `$PTXAS`, else `ptxas` on the PATH, else the pip wheel's.
fn ptxas() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PTXAS") {
        return Some(PathBuf::from(p));
    }
    if Command::new("ptxas").arg("--version").output().is_ok_and(|o| o.status.success()) {
        return Some(PathBuf::from("ptxas"));
    }
    let out = Command::new("python3")
        .args(["-c", "import nvidia,os;print(os.path.join(list(nvidia.__path__)[0],'cu13','bin','ptxas'))"])
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.is_file().then_some(p)
}

/// Per kernel: (name, registers, shared bytes, spill stores, spill loads), from `ptxas -v`.
fn ptxas_report(stderr: &str) -> Vec<(String, u32, u32, u32, u32)> {
    let number_before = |line: &str, unit: &str| -> u32 {
        line.split(',')
            .find(|part| part.trim_end().ends_with(unit))
            .and_then(|part| part.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let mut out: Vec<(String, u32, u32, u32, u32)> = Vec::new();
    let mut current: Option<String> = None;
    for line in stderr.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            current = rest.split('\'').next().map(str::to_string);
            if let Some(name) = &current {
                out.push((name.clone(), 0, 0, 0, 0));
            }
        } else if let (Some(_), Some(last)) = (&current, out.last_mut()) {
            if line.contains("spill stores") {
                last.3 = number_before(line, "bytes spill stores");
                last.4 = number_before(line, "bytes spill loads");
            } else if line.contains("Used") && line.contains("registers") {
                let used = line.split("Used").nth(1).unwrap_or("");
                last.1 = used.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
                last.2 = number_before(line, "bytes smem");
            }
        }
    }
    out
}

#[test]
fn every_kernel_compiles_with_nvrtc_for_every_architecture_the_backend_picks() {
    if !nvrtc_or_skip("every_kernel_compiles_with_nvrtc_for_every_architecture_the_backend_picks") {
        return;
    }
    for (_, arch) in ARCHITECTURES {
        for module in &MODULES {
            let ptx = compile_module(module, arch).unwrap_or_else(|e| panic!("{e}"));
            assert!(ptx.contains(&format!(".target sm_{}", &arch[8..])), "{}: {arch}", module.file);
            for entry in module.entries {
                let at = ptx.find(&format!(".entry {entry}(")).unwrap_or_else(|| {
                    panic!("{}: no entry {entry} in the PTX", module.file);
                });
                // A block of more than 256 threads cannot give each thread the 255 registers a kernel may use: such a
                // kernel declares its block (`__launch_bounds__`, `.maxntid` between the parameters and the body),
                // so that the compiler fits its registers to it. No kernel declares less than it is launched with.
                let head = &ptx[at..at + ptx[at..].find('{').unwrap()];
                let block = spatialsynth::backend::cuda::block_of(entry);
                let declared = head.split(".maxntid ").nth(1).map(|rest| {
                    let n: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    n.parse::<u32>().unwrap()
                });
                match declared {
                    None => assert!(
                        block <= 256,
                        "{}: {entry} is launched with {block} threads but declares no __launch_bounds__:\n{head}",
                        module.file
                    ),
                    Some(n) => assert!(
                        n >= block && (block <= 256 || n == block),
                        "{}: {entry} declares __launch_bounds__({n}) but is launched with {block} threads",
                        module.file
                    ),
                }
            }
        }
    }
}

#[test]
fn ptxas_assembles_every_kernel_for_sm_90_without_spills() {
    let test = "ptxas_assembles_every_kernel_for_sm_90_without_spills";
    if !nvrtc_or_skip(test) {
        return;
    }
    let Some(ptxas) = ptxas() else {
        assert!(
            std::env::var_os("SPATIALSYNTH_REQUIRE_NVRTC").is_none(),
            "{test}: SPATIALSYNTH_REQUIRE_NVRTC is set but ptxas was not found (set PTXAS)"
        );
        common::skip(test, "ptxas not found (pip install nvidia-cuda-nvcc==13.0.88, or set PTXAS)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut lines = vec![format!(
        "{:<13} {:<17} {:<17} {:>9} {:>10} {:>14}",
        "module", "ptx", "kernel", "registers", "smem bytes", "spills (st/ld)"
    )];
    let mut kernels = 0;
    // compute_80 PTX runs on sm_90 through the driver's JIT, so it must assemble there too.
    for (arch, sm) in [("compute_90", "sm_90"), ("compute_80", "sm_80"), ("compute_80", "sm_90")] {
        for module in &MODULES {
            let ptx = compile_module(module, arch).unwrap_or_else(|e| panic!("{e}"));
            let path = dir.path().join(format!("{}-{arch}.ptx", module.file));
            std::fs::write(&path, &ptx).unwrap();
            // SPATIALSYNTH_PTX_DIR: a copy of each PTX, for reading the machine code (scripts/kernel-sass.sh).
            if let Some(keep) = std::env::var_os("SPATIALSYNTH_PTX_DIR") {
                std::fs::create_dir_all(&keep).unwrap();
                std::fs::write(PathBuf::from(keep).join(format!("{}-{arch}.ptx", module.file)), &ptx).unwrap();
            }
            let out = Command::new(&ptxas)
                .args(["-v", "-O3", &format!("-arch={sm}"), "-o"])
                .arg(dir.path().join("out.cubin"))
                .arg(&path)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", ptxas.display()));
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "ptxas -arch={sm} rejects {} ({arch}):\n{stderr}", module.file);
            let report = ptxas_report(&stderr);
            let names: Vec<&str> = report.iter().map(|r| r.0.as_str()).collect();
            for entry in module.entries {
                assert!(names.contains(entry), "{}: ptxas did not report {entry}: {stderr}", module.file);
            }
            for (name, registers, smem, spill_st, spill_ld) in report {
                assert!(registers > 0, "{}: {name}: no register count in {stderr}", module.file);
                // Spills to local memory would cost the bandwidth the kernels are built around.
                assert_eq!((spill_st, spill_ld), (0, 0), "{} {name} spills on {sm}", module.file);
                // SPATIALSYNTH_PTXAS_ALL=1: every row, the compute_80 ones too.
                if (sm == "sm_90" && arch == "compute_90") || std::env::var_os("SPATIALSYNTH_PTXAS_ALL").is_some() {
                    kernels += 1;
                    lines.push(format!(
                        "{:<13} {:<17} {:<17} {:>9} {:>10} {:>14}",
                        module.file,
                        format!("{arch}>{sm}"),
                        name,
                        registers,
                        smem,
                        format!("{spill_st}/{spill_ld}")
                    ));
                }
            }
        }
    }
    assert!(kernels >= MODULES.iter().map(|m| m.entries.len()).sum::<usize>());
    // Shown in CI logs (the harness does not capture a direct write to stderr).
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "ptxas -arch=sm_90 -v ({}):\n{}", ptxas.display(), lines.join("\n"));
}

#[test]
fn nvrtc_errors_carry_the_log_and_name_the_module() {
    if !nvrtc_or_skip("nvrtc_errors_carry_the_log_and_name_the_module") {
        return;
    }
    let broken = KernelModule {
        file: "broken.cu",
        source: "extern \"C\" __global__ void k(float* x) { x[0] = undefined_name; }",
        entries: &["k"],
    };
    let err = compile_module(&broken, "compute_90").unwrap_err();
    assert!(err.contains("broken.cu") && err.contains("undefined_name"), "{err}");
    // A record whose size disagrees with its Rust twin fails the build of the module (static_assert).
    let mismatched = KernelModule {
        file: "layout.cu",
        source: "struct Frame { unsigned a; }; static_assert(sizeof(Frame) == 48, \"Frame must match\");",
        entries: &[],
    };
    let err = compile_module(&mismatched, "compute_90").unwrap_err();
    assert!(err.contains("Frame must match"), "{err}");
}

#[test]
fn every_kernel_file_is_in_a_module() {
    // Each .cu file of kernels/ is compiled by some module (named after it); the shared headers are used.
    let dir = common::repo().join("kernels");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        if name.ends_with(".cu") {
            assert!(MODULES.iter().any(|m| m.file == name), "{name} is compiled by no module");
        }
        if name.ends_with(".cuh") {
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            assert!(MODULES.iter().any(|m| m.source.contains(&text)), "{name} is used by no module");
        }
    }
}

#[test]
fn relate_writes_its_records_in_16_byte_stores() {
    // K5's records (80 bytes a pair) go out staged through shared memory, as 16-byte words written by consecutive
    // threads: every 32-byte sector written whole. Scalar stores of a thread's own record (80 bytes apart across a
    // warp) would touch 8 times the sectors (BENCHMARKS.md, eighth session). The PTX says which: every global store
    // of `relate` is a vector of four words, on every architecture the backend picks.
    if !nvrtc_or_skip("relate_writes_its_records_in_16_byte_stores") {
        return;
    }
    let module = MODULES.iter().find(|m| m.file == "relations.cu").expect("relations.cu");
    for (_, arch) in ARCHITECTURES {
        let ptx = compile_module(module, arch).unwrap_or_else(|e| panic!("{e}"));
        let at = ptx.find(".entry relate(").expect("relate's entry");
        let body = &ptx[at..];
        let body = &body[..body[1..].find(".entry ").map_or(body.len(), |n| n + 1)];
        let stores: Vec<&str> = body.lines().map(str::trim).filter(|l| l.starts_with("st.global")).collect();
        assert!(!stores.is_empty(), "{arch}: relate stores nothing to global memory?\n{body}");
        assert!(stores.iter().all(|s| s.starts_with("st.global.v4.")), "{arch}: relate's global stores: {stores:?}");
    }
}
