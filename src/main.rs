//! `spatialsynth`: the command line over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use spatialsynth::bench::{run_frame, summarize, WorkloadParams};
use spatialsynth::pipeline::SceneConfig;
use spatialsynth::run::{collect_frames, run_scenes, RunOptions};

#[derive(Parser)]
#[command(name = "spatialsynth", version, about = "Spatial-reasoning training data from RGB-D frames")]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build a scene graph (ground, canonical frame, objects, pairwise relations) for every frame.
    Scene {
        /// Manifests (frames.json or .jsonl) or folders searched for them.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output folder (scene_graphs.jsonl, failures.jsonl, run.json).
        #[arg(short, long)]
        out: PathBuf,
        /// RANSAC seed.
        #[arg(long, default_value_t = 0)]
        seed: u32,
        /// Frames processed together.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// A JSON file overriding scene parameters (any subset of run.json's "config").
        #[arg(long)]
        config: Option<PathBuf>,
        /// Do not draw a progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Time the geometry workload W1–W3 (unproject, ground RANSAC, exact DBSCAN) per frame, as JSON lines.
    Bench {
        /// Manifests or folders.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Stop after this many frames (0 = all).
        #[arg(long, default_value_t = 0)]
        max_frames: usize,
        /// Runs per frame; the median of each stage is reported.
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// RANSAC hypotheses.
        #[arg(long, default_value_t = 1000)]
        hypotheses: u32,
        /// Print only the summary line.
        #[arg(long)]
        summary_only: bool,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("cannot set up the thread pool")?;
    }
    match cli.command {
        Command::Scene { inputs, out, seed, batch, config, quiet } => {
            let mut scene_config: SceneConfig = match &config {
                Some(path) => {
                    let text =
                        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                    serde_json::from_str(&text)
                        .with_context(|| format!("{}: not a valid scene config", path.display()))?
                }
                None => SceneConfig::default(),
            };
            scene_config.ransac.seed = seed;
            let options = RunOptions { batch_frames: batch, config: scene_config };
            let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} frames ({per_sec}, eta {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let progress = |done: usize, total: usize| {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            };
            let summary = run_scenes(&inputs, &out, &options, &progress)?;
            bar.finish_and_clear();
            println!(
                "{} of {} frames ok ({} failed), ground found in {}, {} objects ({} dropped), {} relations, {:.2} s on {} threads",
                summary.frames_ok,
                summary.frames,
                summary.frames_failed + summary.other_failures,
                summary.ground_found,
                summary.objects,
                summary.dropped_objects,
                summary.relations,
                summary.seconds,
                summary.threads
            );
            println!("scene graphs: {}", summary.scene_graphs.display());
            if !summary.all_ok() {
                eprintln!("failures listed in {}:", summary.failures.display());
                let text = std::fs::read_to_string(&summary.failures).unwrap_or_default();
                for line in text.lines().take(20) {
                    if let Ok(f) = serde_json::from_str::<spatialsynth::run::FailureRecord>(line) {
                        eprintln!("  {}", f.message);
                    }
                }
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench { inputs, max_frames, repeats, hypotheses, summary_only } => {
            let (mut frames, failures) = collect_frames(&inputs);
            if max_frames > 0 {
                frames.truncate(max_frames);
            }
            let mut params = WorkloadParams { repeats, ..WorkloadParams::default() };
            params.ransac.hypotheses = hypotheses;
            let mut timings = Vec::new();
            let mut failed = failures.len();
            for f in &failures {
                eprintln!("skipped: {}", f.message);
            }
            for spec in &frames {
                match run_frame(spec, &params) {
                    Ok(t) => {
                        if !summary_only {
                            println!("{}", serde_json::to_string(&t)?);
                        }
                        timings.push(t);
                    }
                    Err(e) => {
                        eprintln!("failed: {e}");
                        failed += 1;
                    }
                }
            }
            println!("{}", serde_json::to_string(&summarize(&timings, failed, &params))?);
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}
