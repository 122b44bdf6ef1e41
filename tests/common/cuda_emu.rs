//! Builds the CUDA emulator of `kernels/emu/` (see its README): a `libcuda.so` that runs the kernels of `kernels/`,
//! compiled for the host from the very sources NVRTC compiles, so that the CUDA backend's parity tests run where
//! there is no GPU. A correctness tool only: it says "not a GPU" in its device name, and no figure comes from it.

use std::path::{Path, PathBuf};
use std::process::Command;

use spatialsynth::backend::cuda::MODULES;

/// The built emulator: the folder holding its `libcuda.so`, and the AddressSanitizer runtime to preload when it
/// was built with `-fsanitize=address` (every device buffer is then bounds-checked).
pub struct Emulator {
    pub lib_dir: PathBuf,
    pub asan_runtime: Option<PathBuf>,
}

impl Emulator {
    /// The environment that makes a process run the CUDA backend on this emulator: its folder first on
    /// `LD_LIBRARY_PATH`, and the library preloaded, after ASan's runtime (which must come first), so that its
    /// thread-locals are in the static TLS block (see the TLS flags in [`build`]); cudarc's dlopen of libcuda finds
    /// it loaded already.
    pub fn environment(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        let mut library_path = std::ffi::OsString::from(&self.lib_dir);
        if let Some(old) = std::env::var_os("LD_LIBRARY_PATH") {
            library_path.push(":");
            library_path.push(old);
        }
        let mut preload = std::ffi::OsString::new();
        let mut env = vec![("LD_LIBRARY_PATH", library_path)];
        if let Some(asan) = &self.asan_runtime {
            preload.push(asan);
            preload.push(":");
            // Rust's own allocations go through ASan too; leaks of the test process are not the kernels' business.
            env.push(("ASAN_OPTIONS", "detect_leaks=0:halt_on_error=1".into()));
        }
        preload.push(self.lib_dir.join(LIBRARY));
        env.push(("LD_PRELOAD", preload));
        env
    }
}

/// The emulator's file name in its folder (what cudarc opens through `LD_LIBRARY_PATH`).
const LIBRARY: &str = "libcuda.so";

/// The C++ compiler: `$CXX`, else `c++`, else `g++`.
fn compiler() -> Result<String, String> {
    let candidates: Vec<String> = std::env::var("CXX").ok().into_iter().chain(["c++".into(), "g++".into()]).collect();
    for c in &candidates {
        if Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return Ok(c.clone());
        }
    }
    Err(format!("no C++ compiler ({}) to build the CUDA emulator", candidates.join(", ")))
}

/// One module's translation unit: `cuda_emu.h`, the module's whole source (as NVRTC gets it) in a namespace of its
/// own with `extern "C"` removed (two modules define `scan_counts`), and the registration of its entry points.
pub fn translation_unit(index: usize) -> String {
    let m = &MODULES[index];
    let ns = format!("emu_module_{index}");
    let names: Vec<String> = m.entries.iter().map(|e| format!("\"{e}\"")).collect();
    let entries: Vec<String> = m.entries.iter().map(|e| format!("ENTRY({ns}, {e})")).collect();
    format!(
        "#include \"cuda_emu.h\"\nnamespace {ns} {{\n{}\n}}  // namespace {ns}\nnamespace {{\nconst char* const \
         names[] = {{{}}};\nconst emu::Entry entries[] = {{{}}};\nconst emu::Registrar registrar(\"{}\", names, \
         entries, {});\n}}  // namespace\n",
        m.source.replace("extern \"C\" ", ""),
        names.join(", "),
        entries.join(", "),
        m.file,
        m.entries.len()
    )
}

fn fnv(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    h
}

/// Compiles the emulator into `out` (reused when the same sources and flags built it before). With `asan`, tries
/// an AddressSanitizer build first and falls back to a plain one when the compiler has no ASan runtime.
pub fn build(out: &Path, asan: bool) -> Result<Emulator, String> {
    // One build at a time in a process: two tests of one binary may ask at once, and the partial file is named by
    // the process.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _building = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let cxx = compiler()?;
    let emu_dir = super::repo().join("kernels").join("emu");
    let driver = emu_dir.join("driver.cpp");
    let header = std::fs::read(emu_dir.join("cuda_emu.h")).map_err(|e| format!("{}: {e}", emu_dir.display()))?;
    let driver_text = std::fs::read(&driver).map_err(|e| format!("{}: {e}", driver.display()))?;
    let units: Vec<String> = (0..MODULES.len()).map(translation_unit).collect();
    let asan_runtime = asan.then(|| asan_runtime(&cxx)).flatten();
    // TLS descriptors (`-mtls-dialect=gnu2`): every `__shared__` variable and `threadIdx` is thread-local; in a
    // library loaded at start-up (the child run preloads it) they are then read without a call to
    // `__tls_get_addr`, which AddressSanitizer intercepts (the scene-graph parity test on the emulator: 66 s with
    // those calls, 39 s without).
    let mut flags: Vec<&str> = vec![
        "-std=c++17",
        "-fPIC",
        "-shared",
        "-pthread",
        "-ffp-contract=off",
        "-fno-fast-math",
        "-mtls-dialect=gnu2",
        "-w",
    ];
    match asan_runtime {
        Some(_) => flags.extend(["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"]),
        None => flags.push("-O2"),
    }
    let mut h = fnv(&header, 0xcbf29ce484222325);
    h = fnv(&driver_text, h);
    for u in &units {
        h = fnv(u.as_bytes(), h);
    }
    h = fnv(flags.join(" ").as_bytes(), fnv(cxx.as_bytes(), h));
    let dir = out.join(format!("cuda-emu-{h:016x}"));
    let lib = dir.join(LIBRARY);
    if !lib.is_file() {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut sources = vec![driver.clone()];
        for (i, u) in units.iter().enumerate() {
            let path = dir.join(format!("module_{i}_{}.cpp", MODULES[i].file.trim_end_matches(".cu")));
            std::fs::write(&path, u).map_err(|e| format!("{}: {e}", path.display()))?;
            sources.push(path);
        }
        let partial = dir.join(format!(".libcuda.so.partial-{}", std::process::id()));
        let output = Command::new(&cxx)
            .args(&flags)
            .arg("-I")
            .arg(&emu_dir)
            .arg("-o")
            .arg(&partial)
            .args(&sources)
            .output()
            .map_err(|e| format!("{cxx}: {e}"))?;
        if !output.status.success() {
            return Err(format!("{cxx} cannot build the CUDA emulator:\n{}", String::from_utf8_lossy(&output.stderr)));
        }
        std::fs::rename(&partial, &lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    }
    // The folder's time says when a test last used it (a rename in it updates it), so that the newest
    // `cuda-emu-*` (scripts/emulator-counts.sh takes it) holds the kernels as they are now, not those of an earlier
    // edit whose folder was built later.
    let stamp = dir.join(format!(".used-{}", std::process::id()));
    if std::fs::write(&stamp, b"").is_ok() {
        let _ = std::fs::rename(&stamp, dir.join(".used"));
    }
    Ok(Emulator { lib_dir: dir, asan_runtime })
}

/// The compiler's AddressSanitizer runtime, when it has one that links.
fn asan_runtime(cxx: &str) -> Option<PathBuf> {
    let out = Command::new(cxx).arg("-print-file-name=libasan.so").output().ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (path.is_absolute() && path.exists()).then_some(path)
}
