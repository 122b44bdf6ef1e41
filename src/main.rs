//! `spatialsynth`: the command line over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use spatialsynth::backend::BackendKind;
use spatialsynth::bench::{run_frame, run_model_bench, run_qa_bench, summarize, summarize_models, WorkloadParams};
use spatialsynth::dataset::{write_dataset, DatasetOptions, DatasetSummary};
use spatialsynth::models::runtime::{ModelDevice, RuntimeOptions};
use spatialsynth::models::{ModelOptions, ModelSet, ObjectsMode};
use spatialsynth::pipeline::SceneConfig;
use spatialsynth::qa::{Category, QaOptions, TypeMix, Units};
use spatialsynth::run::parts::Shard;
use spatialsynth::run::{collect_frames, merge_shards, Job, RunOptions, RunSummary};

#[derive(Parser)]
#[command(name = "spatialsynth", version, about = "Spatial-reasoning training data from RGB-D frames")]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

/// Model options shared by the commands that run models.
#[derive(clap::Args, Clone, Debug)]
struct ModelArgs {
    /// Where objects come from: annotations where given and the detector elsewhere (auto), annotations only
    /// (given), or the detector everywhere (detect).
    #[arg(long, value_enum, default_value_t = ObjectsMode::Auto)]
    objects: ObjectsMode,
    /// Detector model card (default: the built-in YOLOX-nano, models/yolox_nano.toml).
    #[arg(long)]
    detector: Option<PathBuf>,
    /// Segmenter model card (default: the built-in DeepLabv3, models/deeplab_v3.toml).
    #[arg(long, conflicts_with = "no_segmenter")]
    segmenter: Option<PathBuf>,
    /// Use detector boxes without segmentation masks.
    #[arg(long)]
    no_segmenter: bool,
    /// Metric depth model card, for frames without a depth file.
    #[arg(long)]
    depth_model: Option<PathBuf>,
    /// Image-filter (embedding) model card; needs --filter-prompts.
    #[arg(long, requires = "filter_prompts")]
    filter_model: Option<PathBuf>,
    /// Text-prompt embeddings of the image filter (JSON).
    #[arg(long, requires = "filter_model")]
    filter_prompts: Option<PathBuf>,
    /// The ONNX Runtime library (default: ORT_DYLIB_PATH, else the onnxruntime Python package).
    #[arg(long)]
    ort_lib: Option<PathBuf>,
    /// Where the models run.
    #[arg(long, value_enum, default_value_t = ModelDevice::Cpu)]
    model_device: ModelDevice,
    /// Intra-op threads per model (0: ONNX Runtime's default, one per core).
    #[arg(long, default_value_t = 0)]
    model_threads: usize,
    /// Horizontal field of view (degrees) assumed for frames without intrinsics.
    #[arg(long, default_value_t = 60.0)]
    hfov_deg: f64,
}

impl ModelArgs {
    fn options(&self) -> ModelOptions {
        let defaults = ModelOptions::default();
        ModelOptions {
            detector: Some(self.detector.clone().or(defaults.detector).unwrap_or_default()),
            segmenter: if self.no_segmenter { None } else { self.segmenter.clone().or(defaults.segmenter) },
            depth: self.depth_model.clone(),
            filter: self.filter_model.clone(),
            filter_prompts: self.filter_prompts.clone(),
            runtime: RuntimeOptions {
                library: self.ort_lib.clone(),
                device: self.model_device,
                intra_threads: self.model_threads,
            },
            fuse: defaults.fuse,
        }
    }

    /// The user named a model: open and check it even if no frame needs it.
    fn named_any(&self) -> bool {
        self.detector.is_some() || self.segmenter.is_some() || self.ort_lib.is_some()
    }
}

/// Input and scene options shared by `scene` and `generate`.
#[derive(clap::Args, Clone, Debug)]
struct SceneArgs {
    /// Manifests (frames.json or .jsonl) or folders searched for them.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder (scene_graphs.jsonl, failures.jsonl, run.json, and the dataset for `generate`).
    #[arg(short, long)]
    out: PathBuf,
    /// Frames processed together (0: four per worker thread). The geometry's batches in flight (--in-flight) and up to
    /// three more (being loaded, at the models' stage, waiting for the geometry) are alive at once, so this bounds
    /// memory (about 2 MB per VGA frame).
    #[arg(long, default_value_t = 0)]
    batch: usize,
    /// Batches the geometry works on at once, up to 16 (0: the backend's default, 1 on the CPU and 2 on a GPU, where
    /// the host steps of one batch overlap the device's work on another).
    #[arg(long, default_value_t = 0, value_parser = in_flight_arg)]
    in_flight: usize,
    /// At most this many MiB of page-locked host memory for the CUDA backend's uploads and read-backs (default: no
    /// limit); beyond it, copies go through pageable memory: slower, the same output. For several runs on one GPU
    /// server, or many batches in flight. run.json's `pinned_memory` says how much a run held at its peak.
    #[arg(long, value_name = "MIB")]
    pinned_limit_mib: Option<u64>,
    /// A JSON file overriding scene parameters (any subset of run.json's "config").
    #[arg(long)]
    config: Option<PathBuf>,
    /// Do not decode colour images to name objects by colour (faster loading; fewer objects can be told apart).
    #[arg(long)]
    no_colors: bool,
    /// Where the geometry kernels run: the CPU reference, WGSL through wgpu, CUDA (`kernels/`, NVRTC at run time),
    /// or the best available (auto says what it chose).
    #[arg(long, value_enum, default_value_t = BackendKind::Cpu)]
    backend: BackendKind,
    /// Do not draw a progress bar.
    #[arg(long)]
    quiet: bool,
    /// Frames per part: the unit that is written, resumed (--resume) and dealt out to shards (--shard).
    #[arg(long, default_value_t = 1024)]
    part_frames: usize,
    /// Skip the parts that an earlier run into the same output folder finished (same inputs and options); the
    /// output is byte-identical to an uninterrupted run.
    #[arg(long)]
    resume: bool,
    /// Run only shard i of N (0 <= i < N): the parts k with k mod N = i. The folder then holds the shard's parts
    /// and shard.json; `spatialsynth merge` combines the N folders into the dataset.
    #[arg(long, value_name = "i/N")]
    shard: Option<Shard>,
    #[command(flatten)]
    models: ModelArgs,
}

/// Question-generation options.
#[derive(clap::Args, Clone, Debug)]
struct QaArgs {
    /// Sampling seed: same scene graphs + same seed and options = byte-identical dataset.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Questions per image (fewer when a scene cannot support that many distinct, confident ones).
    #[arg(long, default_value_t = 16)]
    qa_per_image: usize,
    /// Units of the answers.
    #[arg(long, value_enum, default_value_t = Units::Metric)]
    units: Units,
    /// Question mix: name=weight pairs over categories (qualitative, quantitative, reasoning) and question types,
    /// e.g. "reasoning=0,distance=2".
    #[arg(long, default_value = "qualitative=1,quantitative=1,reasoning=0.5")]
    mix: String,
    /// A template bank (TOML, see templates/en.toml; default: the built-in English bank).
    #[arg(long)]
    templates: Option<PathBuf>,
    /// Write image paths relative to this folder (LLaVA's image_folder) when they lie under it.
    #[arg(long)]
    image_root: Option<PathBuf>,
    /// A JSON file overriding generation parameters (any subset of dataset.json's "options.qa", e.g. margins).
    #[arg(long)]
    qa_config: Option<PathBuf>,
}

impl QaArgs {
    fn options(&self) -> Result<DatasetOptions> {
        let mut qa: QaOptions = match &self.qa_config {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
                serde_json::from_str(&text).with_context(|| format!("{}: not valid QA options", path.display()))?
            }
            None => QaOptions::default(),
        };
        qa.seed = self.seed;
        qa.qa_per_image = self.qa_per_image;
        qa.units = self.units;
        qa.mix = TypeMix::from_spec(&self.mix).map_err(|m| anyhow::anyhow!("--mix: {m}"))?;
        Ok(DatasetOptions { qa, templates: self.templates.clone(), image_root: self.image_root.clone() })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Build a scene graph (ground, canonical frame, objects, pairwise relations) for every frame.
    Scene {
        #[command(flatten)]
        scene: SceneArgs,
        /// RANSAC seed.
        #[arg(long, default_value_t = 0)]
        seed: u32,
    },
    /// The whole pipeline: scene graphs, then question-answer pairs (LLaVA and OpenAI JSON Lines, Parquet, a
    /// dataset card), all in the output folder.
    Generate {
        #[command(flatten)]
        scene: SceneArgs,
        /// RANSAC seed.
        #[arg(long, default_value_t = 0)]
        ransac_seed: u32,
        #[command(flatten)]
        qa: QaArgs,
    },
    /// Combine the output folders of the N shards of one run (`--shard i/N`) into one dataset: the same files, byte
    /// for byte, as one machine running the whole run.
    Merge {
        /// The shard folders (all N, any order).
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// Output folder.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Question-answer pairs from existing scene graphs (scene_graphs.jsonl), without recomputing them.
    Qa {
        /// A scene_graphs.jsonl written by `scene` or `generate`.
        scene_graphs: PathBuf,
        /// Output folder.
        #[arg(short, long)]
        out: PathBuf,
        #[command(flatten)]
        qa: QaArgs,
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
        /// Time the detector and segmenter (pre-processing, inference, decoding) per frame instead of the geometry.
        #[arg(long, conflicts_with = "qa")]
        models: bool,
        /// Time templating instead: the frames' scene graphs (computed once, annotated objects only) to
        /// question-answer pairs on one core, `--repeats` passes of 100 repetitions; prints pairs per second.
        #[arg(long)]
        qa: bool,
        /// Time the kernel workloads of the CUDA issue instead (K1 batch, K2 scoring, K5 pairs, end to end) on
        /// `--backend` and on the CPU reference in the same run; prints one JSON document with the ratios (and,
        /// on CUDA, the kernels' device times against the hardware's limits).
        #[arg(long, conflicts_with_all = ["qa", "models"])]
        kernels: bool,
        /// The backend the kernel workloads run on (with --kernels).
        #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
        backend: BackendKind,
        /// Kernel workload sizes (with --kernels): K1 frames per batch.
        #[arg(long, default_value_t = 256)]
        k1_frames: usize,
        /// K2 points (every hypothesis scores every point).
        #[arg(long, default_value_t = 1 << 20)]
        k2_points: usize,
        /// K2 hypotheses.
        #[arg(long, default_value_t = 1024)]
        k2_hypotheses: u32,
        /// K5 frames per batch (40 objects each).
        #[arg(long, default_value_t = 4096)]
        k5_frames: usize,
        /// Frames through the whole geometry.
        #[arg(long, default_value_t = 512)]
        e2e_frames: usize,
        /// Objects per frame through the whole geometry: frames with fewer annotated objects get grid boxes up to
        /// this many (the workload names how many were annotated).
        #[arg(long, default_value_t = 10)]
        e2e_objects: usize,
        /// With --kernels: batches the end-to-end figure gives the backend at once, up to 16 (0: its default, 2 on a
        /// GPU; the CPU reference takes one at a time).
        #[arg(long, default_value_t = 0, value_parser = in_flight_arg)]
        in_flight: usize,
        /// With --kernels: at most this many MiB of page-locked host memory for the CUDA backend (default: no limit;
        /// the report's `cuda_pinned_memory` says how much it held at its peak).
        #[arg(long, value_name = "MIB")]
        pinned_limit_mib: Option<u64>,
        /// With --kernels: do not decode the colour images, so the end-to-end figure leaves out naming the objects'
        /// colours (which a run does unless given --no-colors).
        #[arg(long)]
        no_colors: bool,
        #[command(flatten)]
        model_args: ModelArgs,
    },
}

/// `--in-flight`: checked as the command line is read, before any frame is ([`spatialsynth::backend::check_in_flight`]).
fn in_flight_arg(s: &str) -> std::result::Result<usize, String> {
    spatialsynth::backend::check_in_flight(s.parse::<usize>().map_err(|e| e.to_string())?)
}

/// `--pinned-limit-mib`'s bytes (a limit past the largest count is none).
fn mib_to_bytes(mib: u64) -> u64 {
    mib.saturating_mul(1 << 20)
}

/// Large freed blocks are cached (up to 256 MiB) so frames reuse their pages (see `spatialsynth::alloc`).
#[global_allocator]
static ALLOCATOR: spatialsynth::alloc::BigBlockCache = spatialsynth::alloc::BigBlockCache::new(256 << 20);

fn main() -> ExitCode {
    let r = run();
    // How the allocator's cache served the run (for tuning SPATIALSYNTH_BLOCK_CACHE_MB), on request.
    if std::env::var_os("SPATIALSYNTH_BLOCK_CACHE_STATS").is_some() {
        let s = ALLOCATOR.stats();
        eprintln!(
            "block cache: {} large requests from the cache, {} from the system, {:.1} MiB cached at exit",
            s.hits,
            s.misses,
            s.cached_bytes as f64 / f64::from(1 << 20)
        );
    }
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    if let Some(mb) = std::env::var_os("SPATIALSYNTH_BLOCK_CACHE_MB") {
        let mb: usize = mb
            .to_str()
            .and_then(|v| v.trim().parse().ok())
            .filter(|&mb: &usize| mb <= 1 << 20)
            .with_context(|| format!("SPATIALSYNTH_BLOCK_CACHE_MB={mb:?} is not a number of MiB up to 1048576"))?;
        ALLOCATOR.set_cap(mb << 20);
    }
    // glibc raises its mmap threshold to the size of the largest block freed (up to 32 MB), after which frame-sized
    // buffers come from the heap and fragment it over a long run; a fixed threshold of 128 KiB keeps them mmapped
    // (returned on free) and a run's memory flat (BENCHMARKS.md). (With the run's `malloc_trim` after a batch that
    // left the process grown.)
    // Fresh mmapped pages cost a fault and a clearing each: ALLOCATOR's cache of freed large blocks gives most of
    // them back to the next frame instead.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("cannot set up the thread pool")?;
    }
    match cli.command {
        Command::Scene { scene, seed } => {
            let summary = scenes(&scene, seed, None)?;
            Ok(report_failures(&summary))
        }
        Command::Generate { scene, ransac_seed, qa } => {
            let options = qa.options()?;
            let summary = scenes(&scene, ransac_seed, Some(options))?;
            if let Some(dataset) = &summary.dataset {
                print_dataset(dataset, &scene.out);
            }
            Ok(report_failures(&summary))
        }
        Command::Merge { shards, out } => {
            let merged = merge_shards(&shards, &out)?;
            let a = &merged.assembled;
            let c = &a.counts;
            println!(
                "merged {} shards ({} parts): {} of {} frames ok ({} failed), {} objects, {} relations",
                merged.shards,
                merged.manifest.parts_total,
                c.frames_ok,
                c.frames,
                c.frames_failed + c.other_failures,
                c.objects,
                c.relations
            );
            if let Some(d) = &a.dataset {
                print_dataset(d, &out);
            }
            println!("scene graphs: {}", a.scene_graphs.display());
            let failed = c.frames_failed + c.other_failures > 0 || a.dataset.as_ref().is_some_and(|d| !d.all_ok());
            if failed {
                eprintln!("failures listed in {}", a.failures.display());
            }
            Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
        }
        Command::Qa { scene_graphs, out, qa } => {
            let dataset = write_dataset(&scene_graphs, &out, &qa.options()?)?;
            print_dataset(&dataset, &out);
            Ok(if dataset.all_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Bench {
            inputs,
            max_frames,
            repeats,
            hypotheses,
            summary_only,
            models,
            qa,
            kernels,
            backend,
            k1_frames,
            k2_points,
            k2_hypotheses,
            k5_frames,
            e2e_frames,
            e2e_objects,
            in_flight,
            pinned_limit_mib,
            no_colors,
            model_args,
        } => {
            let (mut frames, failures) = collect_frames(&inputs);
            if max_frames > 0 {
                frames.truncate(max_frames);
            }
            if kernels {
                let mut loaded = Vec::new();
                // Colour decoded as a run decodes it (unless --no-colors): the end to end names the objects' colours.
                let load = spatialsynth::io::LoadOptions {
                    decode_color: !no_colors,
                    ..spatialsynth::io::LoadOptions::default()
                };
                for spec in &frames {
                    loaded.push(spatialsynth::io::load_frame_with(spec, &load)?);
                }
                let backend = spatialsynth::backend::Backend::open(backend)?;
                backend.set_pinned_limit(pinned_limit_mib.map(mib_to_bytes))?;
                eprintln!("kernel benchmark on {}", backend.describe());
                let options = spatialsynth::bench::KernelBenchOptions {
                    k1_frames,
                    k2_points,
                    k2_hypotheses,
                    k5_frames,
                    e2e_frames,
                    e2e_objects,
                    repeats,
                    in_flight,
                    ..Default::default()
                };
                let result = spatialsynth::bench::run_kernel_bench(&backend, &loaded, &options)?;
                for f in &result.figures {
                    if let Some(steps) = &f.steps {
                        eprintln!("{}, ms per frame (busy time summed over batches):", f.kernel);
                        eprintln!("  {:<20} {:>10} {:>10}", "step", "backend", "cpu");
                        for (b, c) in steps.backend.iter().zip(&steps.cpu) {
                            let host = if b.on_backend { "" } else { " (host)" };
                            eprintln!(
                                "  {:<20} {:>10.3} {:>10.3}",
                                format!("{}{host}", b.step),
                                b.ms_per_frame,
                                c.ms_per_frame
                            );
                        }
                        let cpu = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
                        eprintln!(
                            "  {:<20} {:>10} {:>10}",
                            "process CPU",
                            cpu(steps.backend_process_cpu_ms_per_frame),
                            cpu(steps.cpu_process_cpu_ms_per_frame)
                        );
                    }
                }
                println!("{}", serde_json::to_string_pretty(&result)?);
                return Ok(if failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) });
            }
            if qa {
                let mut graphs = Vec::new();
                let mut failed = failures.len();
                for spec in &frames {
                    let graph = spatialsynth::io::load_frame(spec)
                        .and_then(|f| spatialsynth::pipeline::process_frame(&f, &SceneConfig::default()));
                    match graph {
                        Ok(g) => graphs.push(g),
                        Err(e) => {
                            eprintln!("failed: {e}");
                            failed += 1;
                        }
                    }
                }
                // 100 repetitions per pass so that a pass is long enough to time.
                let passes: Vec<_> = std::iter::repeat_n(graphs.iter(), 100).flatten().cloned().collect();
                let summary = run_qa_bench(&passes, &QaOptions::default(), repeats)?;
                println!("{}", serde_json::to_string(&summary)?);
                return Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) });
            }
            if models {
                let mut set = ModelSet::open(&model_args.options())?;
                let (timings, failed) = run_model_bench(&mut set, &frames, repeats, summary_only)?;
                let failed = failed + failures.len();
                println!("{}", serde_json::to_string(&summarize_models(&timings, failed, &set.info()))?);
                return Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) });
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

/// Runs the scene stage (and the questions, with `dataset`) and prints its summary.
fn scenes(args: &SceneArgs, seed: u32, dataset: Option<DatasetOptions>) -> Result<RunSummary> {
    let mut scene_config: SceneConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{}: not a valid scene config", path.display()))?
        }
        None => SceneConfig::default(),
    };
    scene_config.ransac.seed = seed;
    let models = &args.models;
    let options = RunOptions {
        batch_frames: args.batch,
        config: scene_config,
        objects: models.objects,
        models: models.options(),
        open_models_always: models.named_any(),
        default_hfov_deg: models.hfov_deg,
        object_colors: !args.no_colors,
        backend: args.backend,
        part_frames: args.part_frames,
        in_flight: args.in_flight,
        pinned_limit_bytes: args.pinned_limit_mib.map(mib_to_bytes),
    };
    let job =
        Job { inputs: args.inputs.clone(), out_dir: args.out.clone(), dataset, shard: args.shard, resume: args.resume };
    let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
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
    let summary = spatialsynth::run::run(&job, &options, &progress)?;
    bar.finish_and_clear();
    if let Some(m) = &summary.models {
        let st = &summary.stages;
        println!(
            "models on {}: {} detections in {} frames; busy seconds: load {:.2}, filter {:.2}, depth {:.2}, detect {:.2}, segment {:.2}, geometry {:.2}",
            m.device,
            st.models.detections,
            st.models.detected_frames,
            st.load_s,
            st.models.filter_s,
            st.models.depth_s,
            st.models.detect_s,
            st.models.segment_s,
            st.geometry_s
        );
    }
    if let Some(filtered) = &summary.filtered {
        println!("{} frames rejected by the image filter: {}", summary.counts.frames_filtered, filtered.display());
    }
    let c = &summary.counts;
    println!(
        "{} of {} frames ok ({} failed), ground found in {}, {} objects ({} dropped), {} relations, {:.2} s on {} threads",
        c.frames_ok,
        c.frames,
        c.frames_failed + c.other_failures,
        c.ground_found,
        c.objects,
        c.dropped_objects,
        c.relations,
        summary.seconds,
        summary.threads
    );
    if summary.parts_resumed > 0 {
        println!(
            "resumed: {} of {} parts were already done, {} processed now",
            summary.parts_resumed, summary.parts_in_shard, summary.parts_processed
        );
    }
    println!("geometry backend: {}", summary.backend);
    if let Some(p) = &summary.pinned_memory {
        let mb = |bytes: u64| bytes as f64 / 1e6;
        let limit = p.limit_bytes.map_or("no limit".to_string(), |l| format!("limit {:.1} MB", mb(l)));
        let pageable = p.pageable_uploads + p.pageable_read_backs;
        println!(
            "page-locked host memory: {:.1} MB at the peak ({limit}); {pageable} copies through pageable memory",
            mb(p.peak_bytes)
        );
    }
    match &summary.scene_graphs {
        Some(path) => println!("scene graphs: {}", path.display()),
        None => println!(
            "shard {}: {} of {} parts written to {}; combine all {} shard folders with `spatialsynth merge`",
            summary.shard.unwrap_or(Shard::ALL),
            summary.parts_in_shard,
            summary.parts_total,
            args.out.join("parts").display(),
            summary.shard.unwrap_or(Shard::ALL).count
        ),
    }
    Ok(summary)
}

/// Lists a run's failures on stderr; exit code 1 when there were any.
fn report_failures(summary: &RunSummary) -> ExitCode {
    if summary.all_ok() {
        return ExitCode::SUCCESS;
    }
    match &summary.failures {
        Some(path) => eprintln!("failures listed in {}:", path.display()),
        None => eprintln!("failures (listed in the parts' failures.jsonl; merged by `spatialsynth merge`):"),
    }
    let from_file = summary.failures.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).map(|text| {
        text.lines()
            .take(20)
            .filter_map(|l| serde_json::from_str::<spatialsynth::run::FailureRecord>(l).ok())
            .collect::<Vec<_>>()
    });
    for f in from_file.as_ref().unwrap_or(&summary.failure_examples) {
        eprintln!("  {}", f.message);
    }
    if let Some(d) = &summary.dataset {
        for f in &d.failures {
            eprintln!("  scene graph line {}: {}", f.line, f.message);
        }
    }
    ExitCode::from(1)
}

fn print_dataset(d: &DatasetSummary, out: &std::path::Path) {
    let c = &d.counts;
    println!(
        "{} question-answer pairs from {} of {} frames ({} qualitative, {} quantitative, {} reasoning; yes/no {}/{})",
        c.qa,
        c.frames_with_qa,
        c.frames,
        c.per_category.get(&Category::Qualitative).unwrap_or(&0),
        c.per_category.get(&Category::Quantitative).unwrap_or(&0),
        c.per_category.get(&Category::Reasoning).unwrap_or(&0),
        c.answers_yes,
        c.answers_no,
    );
    for f in &d.failures {
        eprintln!("  scene graph line {}: {}", f.line, f.message);
    }
    println!("dataset: {} (llava.jsonl, openai.jsonl, qa.parquet, README.md)", out.display());
}
