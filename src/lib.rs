//! spatialsynth: spatial-reasoning training data from RGB-D frames (the SpatialVLM data pipeline).
//!
//! The library is the product; the `spatialsynth` binary is a thin layer over it. Layers:
//! - [`io`]: frame manifests (`frames.json`, JSON Lines), depth (16-bit PNG, `.npy`), object annotations;
//! - [`geometry`]: the CPU reference of kernels K1–K5 (unproject, ground RANSAC, DBSCAN, stats, relations);
//! - [`pipeline`]: one frame to one [`scene::SceneGraph`];
//! - [`run`]: many frames, in parallel batches, written atomically, failures recorded;
//! - [`qa`]: scene graphs to question-answer pairs (36 question types with margins, template bank, references);
//! - [`dataset`]: LLaVA and OpenAI JSON Lines, Parquet and the dataset card;
//! - [`bench`](mod@bench): the W1–W3 geometry workload shared with the Open3D baseline.
//!
//! ```no_run
//! use spatialsynth::{io, pipeline};
//! # fn main() -> Result<(), spatialsynth::Error> {
//! for spec in io::read_manifest("data/sample/frames.json".as_ref())? {
//!     let frame = io::load_frame(&spec?)?;
//!     let graph = pipeline::process_frame(&frame, &pipeline::SceneConfig::default())?;
//!     println!("{}: {} objects, ground found: {}", graph.frame, graph.objects.len(), graph.ground.found);
//! }
//! # Ok(()) }
//! ```

pub mod alloc;
pub mod backend;
pub mod bench;
pub mod color;
pub mod dataset;
pub mod error;
pub mod geometry;
pub mod io;
pub mod models;
pub mod pipeline;
pub mod qa;
pub mod run;
pub mod scene;
#[cfg(test)]
mod test_rng;

pub use error::{Error, Result};
