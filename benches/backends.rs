//! Criterion benchmarks of the kernels the GPU backends run, on every available backend, named
//! `<kernel>/<backend>/<size>` with throughput in the kernel's unit. Without an adapter (or a CUDA GPU) the wgpu (cuda) cases are skipped
//! with a printed reason. On Mesa's lavapipe (a CPU rasteriser) these figures are a correctness run, not a speed
//! claim; on a real GPU they are (each sample includes upload, dispatch and read-back).
//!
//! Batch sizes are 1, 16 and 256 frames; `SPATIALSYNTH_BENCH_FRAMES=1,16` runs fewer (a 256-frame batch takes
//! seconds per sample on lavapipe).
//!
//! `cargo bench --bench backends` (one group: `cargo bench --bench backends -- gaps`)

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spatialsynth::backend::gpu::WgpuBackend;
use spatialsynth::backend::Backend;
use spatialsynth::geometry::ransac::RansacParams;
use spatialsynth::geometry::stats::{NoiseModel, ObjectSummary, StatsInput};
use spatialsynth::io::{load_frame, read_manifest, LoadedFrame};

fn backends() -> Vec<(&'static str, Backend)> {
    let mut out = vec![("cpu", Backend::Cpu)];
    match WgpuBackend::new() {
        Ok(b) => {
            eprintln!("wgpu adapter: {}", b.adapter_description());
            out.push(("wgpu", Backend::Wgpu(Box::new(b))));
        }
        Err(why) => eprintln!("SKIPPED wgpu benchmarks: {why}"),
    }
    match spatialsynth::backend::cuda::CudaBackend::new() {
        Ok(b) => {
            eprintln!("cuda device: {}", b.device_description());
            out.push(("cuda", Backend::Cuda(Box::new(b))));
        }
        Err(why) => eprintln!("SKIPPED cuda benchmarks: {why}"),
    }
    out
}

fn big_frame() -> LoadedFrame {
    // `$SPATIALSYNTH_REPO`, as the tests take it: this binary is carried to a GPU host and run in another checkout.
    let repo = std::env::var_os("SPATIALSYNTH_REPO")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let manifest = repo.join("data/sample/frames.json");
    read_manifest(&manifest)
        .expect("data/sample/frames.json")
        .into_iter()
        .map(|s| load_frame(&s.expect("frame spec")).expect("sample frame"))
        .max_by_key(|f| f.depth.as_ref().map_or(0, |d| d.count_valid()))
        .expect("a sample frame")
}

fn batch_sizes() -> Vec<usize> {
    std::env::var("SPATIALSYNTH_BENCH_FRAMES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 16, 256])
}

fn kernels(c: &mut Criterion) {
    let backends = backends();
    let frame = big_frame();
    let depth = frame.depth.as_ref().expect("depth");
    let pixels = u64::from(depth.width * depth.height);
    let sizes = batch_sizes();

    let mut g = c.benchmark_group("k1_unproject");
    g.sample_size(10);
    for &frames in &sizes {
        let batch: Vec<_> = (0..frames).map(|_| (depth, &frame.intrinsics)).collect();
        g.throughput(Throughput::Elements(pixels * frames as u64));
        for (name, b) in &backends {
            let id = format!("{frames}frames_{}x{}", depth.width, depth.height);
            g.bench_function(BenchmarkId::new(*name, id), |bench| {
                bench.iter(|| black_box(b.unproject_batch(&batch).expect("k1").len()))
            });
        }
    }
    g.finish();

    let cloud = spatialsynth::geometry::unproject::unproject_depth(depth, &frame.intrinsics);
    let params = RansacParams::default();
    let mut g = c.benchmark_group("k2_score");
    // Point tests: hypotheses x subsample points.
    g.throughput(Throughput::Elements(u64::from(params.hypotheses) * u64::from(params.score_samples)));
    for (name, b) in &backends {
        g.bench_function(BenchmarkId::new(*name, "1000hyp_x_16384pts"), |bench| {
            bench.iter(|| black_box(b.score_hypotheses(&cloud.points_in_camera, None, 7, &params).expect("k2").len()))
        });
    }
    g.finish();

    // K2 whole (draws, scoring, refinement, inlier count), frame after frame: points/s of the frames' clouds.
    let mut g = c.benchmark_group("k2_ground");
    g.sample_size(10);
    for &frames in &sizes {
        g.throughput(Throughput::Elements(cloud.len() as u64 * frames as u64));
        for (name, b) in &backends {
            g.bench_function(BenchmarkId::new(*name, format!("{frames}frames_{}pts", cloud.len())), |bench| {
                bench.iter(|| {
                    (0..frames)
                        .map(|f| b.fit_ground_plane(&cloud.points_in_camera, None, f as u32, &params).expect("k2"))
                        .filter(Option::is_some)
                        .count()
                })
            });
        }
    }
    g.finish();

    // K4 on the frame's annotated objects, repeated: points/s.
    let object_points = spatialsynth::bench::object_points(&frame).expect("the frame has depth");
    let mut g = c.benchmark_group("k4_stats");
    g.sample_size(10);
    for &frames in &sizes {
        let inputs: Vec<StatsInput> = (0..frames)
            .flat_map(|_| object_points.iter())
            .map(|p| StatsInput { canonical: p, camera: p, camera_position: [0.0; 3] })
            .collect();
        let points: usize = inputs.iter().map(|i| i.canonical.len()).sum();
        g.throughput(Throughput::Elements(points as u64));
        for (name, b) in &backends {
            let id = format!("{frames}frames_x_{}obj_{points}pts", object_points.len());
            g.bench_function(BenchmarkId::new(*name, id), |bench| {
                bench.iter(|| black_box(b.summarize_batch(&inputs, &NoiseModel::default()).expect("k4").len()))
            });
        }
    }
    g.finish();

    // The closest-surface gaps of every pair of the frame's objects, topped up to 10 with grid boxes as the kernel
    // benchmark's end-to-end frames are (their regions before denoising), the frame repeated: pairs/s.
    let topped = spatialsynth::bench::with_grid_boxes(&frame, 10);
    let topped_points = spatialsynth::bench::object_points(&topped).expect("the frame has depth");
    let gap_objects: Vec<&[[f32; 3]]> = topped_points.iter().map(Vec::as_slice).collect();
    let gap_points: usize = gap_objects.iter().map(|o| o.len()).sum();
    let voxel_m = spatialsynth::pipeline::SceneConfig::default().gap_voxel_m;
    let mut g = c.benchmark_group("gaps");
    g.sample_size(10);
    for &frames in &sizes {
        let batch: Vec<&[&[[f32; 3]]]> = (0..frames).map(|_| gap_objects.as_slice()).collect();
        let n = gap_objects.len();
        g.throughput(Throughput::Elements((frames * n * (n - 1) / 2) as u64));
        for (name, b) in &backends {
            let id = format!("{frames}frames_x_{n}obj_{gap_points}pts");
            g.bench_function(BenchmarkId::new(*name, id), |bench| {
                bench.iter(|| black_box(b.closest_gaps_batch(&batch, voxel_m).expect("gaps").len()))
            });
        }
    }
    g.finish();

    // K3 on the largest object-sized blob of the frame: the points within 1.5 m of the cloud's median point.
    let mut sorted: Vec<[f32; 3]> = cloud.points_in_camera.clone();
    sorted.sort_by(|a, b| a[2].total_cmp(&b[2]));
    let m = sorted[sorted.len() / 2];
    let blob: Vec<[f32; 3]> = cloud
        .points_in_camera
        .iter()
        .filter(|p| (p[0] - m[0]).powi(2) + (p[1] - m[1]).powi(2) + (p[2] - m[2]).powi(2) < 1.5 * 1.5)
        .step_by(4)
        .copied()
        .collect();
    let mut g = c.benchmark_group("k3_dbscan");
    g.sample_size(10);
    g.throughput(Throughput::Elements(blob.len() as u64));
    for (name, b) in &backends {
        g.bench_function(BenchmarkId::new(*name, format!("{}pts_eps5cm", blob.len())), |bench| {
            bench.iter(|| black_box(b.dbscan(&blob, 0.05, 10).expect("k3").clusters))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("k5_relations");
    g.sample_size(10);
    for &frames in &sizes {
        let batch: Vec<Vec<ObjectSummary>> = spatialsynth::bench::bench_objects(frames, 40);
        let refs: Vec<&[ObjectSummary]> = batch.iter().map(Vec::as_slice).collect();
        g.throughput(Throughput::Elements((frames * 40 * 39) as u64));
        for (name, b) in &backends {
            g.bench_function(BenchmarkId::new(*name, format!("{frames}frames_x_40obj")), |bench| {
                bench.iter(|| black_box(b.relate_batch(&refs).expect("k5").len()))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
