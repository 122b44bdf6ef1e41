//! ONNX Runtime, loaded dynamically: finding the library, the one environment of the process, sessions.
//!
//! The library is looked up, in order, at: the path given in [`RuntimeOptions::library`] (the CLI's
//! `--ort-lib`), `ORT_DYLIB_PATH`, and the `onnxruntime` Python package (`python3 -m pip install
//! onnxruntime==1.32.0`), asked through `python3`. Nothing is downloaded. ONNX Runtime allows one environment per
//! process: the first successful [`environment`] call fixes the library; a later call naming another library is
//! an error.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::ep::ExecutionProvider;
use ort::session::Session;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where models run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ModelDevice {
    /// ONNX Runtime's CPU execution provider (the default).
    #[default]
    Cpu,
    /// The CUDA execution provider; an error when the loaded onnxruntime has none (install `onnxruntime-gpu`).
    Cuda,
    /// CUDA when the loaded onnxruntime has it, else the CPU; the choice is reported.
    Auto,
}

/// How ONNX Runtime is found and set up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeOptions {
    /// The `libonnxruntime` shared library; `None` looks it up (see the module documentation).
    pub library: Option<PathBuf>,
    pub device: ModelDevice,
    /// Threads of each session's intra-op pool; 0 lets ONNX Runtime choose (one per core).
    pub intra_threads: usize,
}

const INSTALL_HINT: &str = "install it with `python3 -m pip install onnxruntime==1.32.0` (found through python3), or \
                            point ORT_DYLIB_PATH or --ort-lib at libonnxruntime.so";

/// The ONNX Runtime library this process would load: the explicit path, `ORT_DYLIB_PATH`, or the `onnxruntime`
/// Python package.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf> {
    let check = |p: PathBuf, from: &str| {
        if p.is_file() {
            Ok(p)
        } else {
            Err(Error::Runtime {
                message: format!("{from} names {}, which is not a file; {INSTALL_HINT}", p.display()),
            })
        }
    };
    if let Some(p) = explicit {
        return check(p.to_path_buf(), "--ort-lib");
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        return check(PathBuf::from(p), "ORT_DYLIB_PATH");
    }
    let script = "import glob, os, onnxruntime as o\n\
                  d = os.path.join(os.path.dirname(o.__file__), 'capi')\n\
                  c = sorted(glob.glob(os.path.join(d, 'libonnxruntime.so*')) + glob.glob(os.path.join(d, 'libonnxruntime*.dylib')) + glob.glob(os.path.join(d, 'onnxruntime.dll')))\n\
                  print(c[0] if c else '')";
    for python in ["python3", "python"] {
        let Ok(out) = Command::new(python).args(["-c", script]).output() else { continue };
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if !text.is_empty() {
                return check(PathBuf::from(text), "the onnxruntime Python package");
            }
        }
    }
    Err(Error::Runtime {
        message: format!(
            "the ONNX Runtime library was not found (no --ort-lib, no ORT_DYLIB_PATH, no onnxruntime Python \
             package); {INSTALL_HINT}"
        ),
    })
}

struct Loaded {
    library: PathBuf,
    env: Environment,
}

static ENV: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

/// The process's ONNX Runtime environment, created on first use from `library` (see [`find_library`]).
pub fn environment(library: Option<&Path>) -> Result<(&'static Environment, &'static Path)> {
    // Resolve before taking the lock so that a later call with another library can be compared.
    let wanted = match ENV.get() {
        Some(_) => None,
        None => Some(find_library(library)?),
    };
    let loaded = ENV.get_or_init(|| {
        let path = match wanted {
            Some(p) => p,
            None => return Err("ONNX Runtime environment was not initialised".into()),
        };
        let builder = ort::init_from(&path)
            .map_err(|e| format!("cannot load {}: {e}; {INSTALL_HINT}", path.display()))?
            .with_name("spatialsynth");
        let env = builder.build().map_err(|e| format!("cannot create the environment from {}: {e}", path.display()))?;
        Ok(Loaded { library: path, env })
    });
    match loaded {
        Ok(l) => {
            if let Some(asked) = library {
                if asked != l.library {
                    return Err(Error::Runtime {
                        message: format!(
                            "this process already loaded {}; one ONNX Runtime library per process (asked for {})",
                            l.library.display(),
                            asked.display()
                        ),
                    });
                }
            }
            Ok((&l.env, &l.library))
        }
        Err(message) => Err(Error::Runtime { message: message.clone() }),
    }
}

/// The execution provider a session will use.
pub fn resolve_device(device: ModelDevice) -> Result<&'static str> {
    let cuda = || ort::ep::CUDA::is_available().unwrap_or(false);
    match device {
        ModelDevice::Cpu => Ok("cpu"),
        ModelDevice::Cuda if cuda() => Ok("cuda"),
        ModelDevice::Cuda => Err(Error::Runtime {
            message: "the loaded onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu, or use \
                      --model-device cpu)"
                .into(),
        }),
        ModelDevice::Auto => Ok(if cuda() { "cuda" } else { "cpu" }),
    }
}

/// Opens `model` as a session on `device` ("cpu" or "cuda", from [`resolve_device`]).
pub fn open_session(env: &Environment, model: &Path, device: &str, intra_threads: usize) -> Result<Session> {
    let err = |e: &dyn std::fmt::Display| Error::Model { path: model.to_path_buf(), message: e.to_string() };
    let mut builder = Session::builder(env).map_err(|e| err(&e))?;
    if intra_threads > 0 {
        builder = builder.with_intra_threads(intra_threads).map_err(|e| err(&e))?;
    }
    if device == "cuda" {
        builder = builder
            .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
            .map_err(|e| err(&e))?;
    }
    builder.commit_from_file(model).map_err(|e| Error::Model {
        path: model.to_path_buf(),
        message: format!("ONNX Runtime cannot load it (truncated or not an ONNX model?): {e}"),
    })
}
