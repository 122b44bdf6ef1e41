//! Library errors. Every error that comes from user data names the file and, where there is one, the frame.

use std::path::PathBuf;

/// Result alias used across the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading inputs or computing a scene graph.
///
/// `frame` is the run-wide frame key (`dataset/id`), or `-` when the failure happened before a frame was known
/// (an unreadable manifest, say).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("frame {frame}: cannot read {}: {source}", path.display())]
    Io {
        frame: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A manifest (frames.json or JSON Lines) is malformed.
    #[error("manifest {}{}: {message}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Manifest { path: PathBuf, line: Option<usize>, message: String },
    /// An image (colour, depth or instance labels) could not be decoded.
    #[error("frame {frame}: {}: cannot decode image: {message}", path.display())]
    Decode { frame: String, path: PathBuf, message: String },
    /// An image has the wrong size, bit depth or channel count for its role.
    #[error("frame {frame}: {}: {message}", path.display())]
    ImageFormat { frame: String, path: PathBuf, message: String },
    /// The depth image holds no usable measurement.
    #[error("frame {frame}: {}: {message}", path.display())]
    InvalidDepth { frame: String, path: PathBuf, message: String },
    /// Camera intrinsics are missing, negative, non-finite or inconsistent.
    #[error("frame {frame}: invalid intrinsics in {}: {message}", path.display())]
    Intrinsics { frame: String, path: PathBuf, message: String },
    /// Object annotations (instance labels, labels file, boxes) are inconsistent.
    #[error("frame {frame}: {}: {message}", path.display())]
    Objects { frame: String, path: PathBuf, message: String },
    /// A geometry stage was given input it cannot handle (documented limits).
    #[error("frame {frame}: geometry: {message}")]
    Geometry { frame: String, message: String },
    /// A run parameter is out of range.
    #[error("invalid parameter: {message}")]
    Config { message: String },
    /// A model card or model file is missing, malformed, not ONNX, or disagrees with its card. Raised when the
    /// models are loaded, before any frame is processed.
    #[error("model {}: {message}", path.display())]
    Model { path: PathBuf, message: String },
    /// ONNX Runtime could not be loaded or set up (library missing, execution provider unavailable).
    #[error("ONNX Runtime: {message}")]
    Runtime { message: String },
    /// A model failed on one frame (inference error, unexpected output).
    #[error("frame {frame}: model {}: {message}", path.display())]
    Inference { frame: String, path: PathBuf, message: String },
    /// A question template bank is malformed (unknown table or placeholder, too few phrasings, ...).
    #[error("templates {}: {message}", path.display())]
    Template { path: PathBuf, message: String },
    /// A scene-graph file given to the QA generator is malformed.
    #[error("scene graphs {}{}: {message}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    SceneGraph { path: PathBuf, line: Option<usize>, message: String },
    /// A compute backend is unavailable or failed (no adapter, device lost, a kernel error).
    #[error("backend {backend}: {message}")]
    Backend { backend: String, message: String },
    /// The parts of a resumable or sharded run are missing, incomplete or disagree (a shard not finished, shards of
    /// different runs given to `merge`, a part file that does not match its record).
    #[error("run parts {}: {message}", path.display())]
    Parts { path: PathBuf, message: String },
    /// Writing an output file failed.
    #[error("cannot write {}: {source}", path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A short, stable name for the kind of failure, for machine-readable failure lists.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => "missing_file",
            Error::Io { .. } => "io",
            Error::Manifest { .. } => "malformed_manifest",
            Error::Decode { .. } => "corrupt_image",
            Error::ImageFormat { .. } => "image_format",
            Error::InvalidDepth { .. } => "invalid_depth",
            Error::Intrinsics { .. } => "invalid_intrinsics",
            Error::Objects { .. } => "invalid_objects",
            Error::Geometry { .. } => "geometry",
            Error::Config { .. } => "invalid_config",
            Error::Output { .. } => "output",
            Error::Model { .. } => "invalid_model",
            Error::Runtime { .. } => "model_runtime",
            Error::Inference { .. } => "inference",
            Error::Template { .. } => "invalid_templates",
            Error::SceneGraph { .. } => "malformed_scene_graph",
            Error::Backend { .. } => "backend",
            Error::Parts { .. } => "run_parts",
        }
    }

    /// The frame this error belongs to (`-` when none).
    pub fn frame(&self) -> &str {
        match self {
            Error::Io { frame, .. }
            | Error::Decode { frame, .. }
            | Error::ImageFormat { frame, .. }
            | Error::InvalidDepth { frame, .. }
            | Error::Intrinsics { frame, .. }
            | Error::Objects { frame, .. }
            | Error::Geometry { frame, .. }
            | Error::Inference { frame, .. } => frame,
            Error::Manifest { .. }
            | Error::Output { .. }
            | Error::Config { .. }
            | Error::Model { .. }
            | Error::Template { .. }
            | Error::SceneGraph { .. }
            | Error::Backend { .. }
            | Error::Parts { .. }
            | Error::Runtime { .. } => "-",
        }
    }

    /// The file this error names, if any.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            Error::Io { path, .. }
            | Error::Manifest { path, .. }
            | Error::Decode { path, .. }
            | Error::ImageFormat { path, .. }
            | Error::InvalidDepth { path, .. }
            | Error::Intrinsics { path, .. }
            | Error::Objects { path, .. }
            | Error::Output { path, .. }
            | Error::Model { path, .. }
            | Error::Template { path, .. }
            | Error::SceneGraph { path, .. }
            | Error::Inference { path, .. }
            | Error::Parts { path, .. } => Some(path),
            Error::Geometry { .. } | Error::Config { .. } | Error::Runtime { .. } | Error::Backend { .. } => None,
        }
    }
}
