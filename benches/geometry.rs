//! Criterion benchmarks of the CPU reference, one group per kernel, named `<kernel>/cpu/<size>`, with throughput
//! in the kernel's natural unit (pixels, points, pairs). Real frames from `data/sample`; synthetic objects for K5.
//!
//! `cargo bench --bench geometry` (add `-- <filter>` to pick a kernel).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spatialsynth::geometry::dbscan::dbscan;
use spatialsynth::geometry::obb::min_area_rect;
use spatialsynth::geometry::ransac::{
    fit_ground_plane, inlier_mask, largest_connected, score_hypotheses, RansacParams,
};
use spatialsynth::geometry::relations::{bounding_box, closest_surface_matrix, relate_all};
use spatialsynth::geometry::rng::frame_key;
use spatialsynth::geometry::stats::{summarize, NoiseModel, ObjectSummary};
use spatialsynth::geometry::unproject::{estimate_normals, unproject_depth, PointCloud};
use spatialsynth::geometry::Point3;
use spatialsynth::io::{load_frame, read_manifest, LoadedFrame};
use spatialsynth::pipeline::{ground_sample_normals, process_frame, SceneConfig};

fn sample_frames() -> Vec<LoadedFrame> {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample/frames.json");
    read_manifest(&manifest)
        .expect("data/sample/frames.json")
        .into_iter()
        .map(|s| load_frame(&s.expect("frame spec")).expect("sample frame"))
        .collect()
}

/// The sample frame with the most valid depth points (a full 640x480 Kinect frame).
fn big_frame(frames: &[LoadedFrame]) -> (&LoadedFrame, PointCloud) {
    frames
        .iter()
        .map(|f| (f, unproject_depth(f.depth.as_ref().unwrap(), &f.intrinsics)))
        .max_by_key(|(_, c)| c.len())
        .expect("a sample frame")
}

/// Loading: each sample frame's depth PNG decoded from memory (16-bit samples into depth values), and a whole frame
/// loaded as a run loads it (files read, depth and colour decoded, objects read).
fn load(c: &mut Criterion) {
    use spatialsynth::io::depth::{decode_depth, DepthFormat};
    use spatialsynth::io::{load_frame_with, LoadOptions};
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample/frames.json");
    let specs: Vec<_> =
        read_manifest(&manifest).expect("data/sample/frames.json").into_iter().map(|s| s.expect("spec")).collect();
    let mut g = c.benchmark_group("load");
    for spec in specs.iter().filter(|s| s.depth.as_ref().is_some_and(|p| p.extension().is_some_and(|e| e == "png"))) {
        let bytes = std::fs::read(spec.depth.as_ref().expect("depth")).expect("depth file");
        let depth = decode_depth(&bytes, DepthFormat::Png, spec.depth_units_per_meter, spec.depth_invalid_value)
            .expect("sample depth");
        g.throughput(Throughput::Elements(depth.len() as u64));
        g.bench_function(BenchmarkId::new("depth_png", &spec.id), |b| {
            b.iter(|| {
                decode_depth(black_box(&bytes), DepthFormat::Png, spec.depth_units_per_meter, spec.depth_invalid_value)
            })
        });
    }
    let options = LoadOptions { decode_color: true, ..LoadOptions::default() };
    g.throughput(Throughput::Elements(specs.len() as u64));
    g.bench_function(BenchmarkId::new("frames_with_color", format!("{}frames", specs.len())), |b| {
        b.iter(|| {
            specs
                .iter()
                .map(|s| load_frame_with(black_box(s), &options).expect("sample frame").objects.len())
                .sum::<usize>()
        })
    });
    g.finish();
}

fn k1_unproject(c: &mut Criterion) {
    let frames = sample_frames();
    let (frame, cloud) = big_frame(&frames);
    let mut g = c.benchmark_group("k1_unproject");
    g.throughput(Throughput::Elements(frame.depth.as_ref().unwrap().len() as u64));
    g.bench_function(BenchmarkId::new("cpu", "640x480"), |b| {
        b.iter(|| unproject_depth(black_box(frame.depth.as_ref().unwrap()), &frame.intrinsics))
    });
    g.bench_function(BenchmarkId::new("cpu_normals_all", "640x480"), |b| {
        b.iter(|| estimate_normals(black_box(frame.depth.as_ref().unwrap()), &frame.intrinsics, &cloud, None, 10))
    });
    g.finish();
}

fn k2_ransac(c: &mut Criterion) {
    let frames = sample_frames();
    let (frame, cloud) = big_frame(&frames);
    let key = frame_key(&frame.spec.key);
    let params = RansacParams::default();
    let normals = ground_sample_normals(frame.depth.as_ref().unwrap(), &frame.intrinsics, &cloud, &params, 10);
    let mut g = c.benchmark_group("k2_ransac");
    // Scoring: hypotheses x subsample points tested.
    let tested = u64::from(params.hypotheses) * u64::from(params.score_samples).min(cloud.len() as u64);
    g.throughput(Throughput::Elements(tested));
    g.bench_function(BenchmarkId::new("cpu_score", format!("{}x{}", params.hypotheses, params.score_samples)), |b| {
        b.iter(|| score_hypotheses(black_box(&cloud.points_in_camera), Some(&normals), key, &params))
    });
    g.throughput(Throughput::Elements(cloud.len() as u64));
    g.bench_function(BenchmarkId::new("cpu_fit", format!("{}pts", cloud.len())), |b| {
        b.iter(|| fit_ground_plane(black_box(&cloud.points_in_camera), Some(&normals), key, &params))
    });
    // The refinement's connected support: the largest piece of the fitted plane's inliers (every backend's host step).
    let fit = fit_ground_plane(&cloud.points_in_camera, Some(&normals), key, &params).expect("a ground plane");
    let mask = inlier_mask(&cloud.points_in_camera, &fit.plane, params.inlier_threshold_m);
    let support: Vec<u32> = (0..mask.len() as u32).filter(|&i| mask[i as usize]).collect();
    g.throughput(Throughput::Elements(support.len() as u64));
    g.bench_function(BenchmarkId::new("cpu_largest_connected", format!("{}pts", support.len())), |b| {
        b.iter(|| largest_connected(black_box(&cloud.points_in_camera), support.clone(), params.connect_voxel_m))
    });
    g.finish();
}

fn k3_dbscan(c: &mut Criterion) {
    let frames = sample_frames();
    let mut g = c.benchmark_group("k3_dbscan");
    g.sample_size(20);
    for frame in frames.iter().take(3) {
        let cloud = unproject_depth(frame.depth.as_ref().unwrap(), &frame.intrinsics);
        let params = RansacParams::default();
        let normals = ground_sample_normals(frame.depth.as_ref().unwrap(), &frame.intrinsics, &cloud, &params, 10);
        let Some(fit) = fit_ground_plane(&cloud.points_in_camera, Some(&normals), frame_key(&frame.spec.key), &params)
        else {
            continue;
        };
        let mask = inlier_mask(&cloud.points_in_camera, &fit.plane, params.inlier_threshold_m);
        let rest: Vec<Point3> = cloud.points_in_camera.iter().zip(mask).filter(|(_, m)| !m).map(|(p, _)| *p).collect();
        g.throughput(Throughput::Elements(rest.len() as u64));
        g.bench_function(BenchmarkId::new("cpu_eps0.05_min10", format!("{}/{}pts", frame.spec.id, rest.len())), |b| {
            b.iter(|| dbscan(black_box(&rest), 0.05, 10))
        });
    }
    g.finish();
}

/// A synthetic object: a box surface of `n` points around `centre`.
fn synthetic_object(centre: [f32; 3], n: usize, seed: u32) -> Vec<Point3> {
    (0..n as u32)
        .map(|i| {
            let h = spatialsynth::geometry::rng::draw_u32(seed, 0, i, 0);
            let (a, b) = ((h & 0xffff) as f32 / 65535.0 - 0.5, (h >> 16) as f32 / 65535.0 - 0.5);
            match i % 3 {
                0 => [centre[0] + 0.3 * a, centre[1] + 0.2 * b, centre[2] + 0.25],
                1 => [centre[0] + 0.3 * a, centre[1] - 0.1, centre[2] + 0.25 + 0.5 * b],
                _ => [centre[0] + 0.15, centre[1] + 0.2 * a, centre[2] + 0.25 + 0.5 * b],
            }
        })
        .collect()
}

fn k4_stats(c: &mut Criterion) {
    let mut g = c.benchmark_group("k4_stats");
    for n in [2_000usize, 50_000] {
        let pts = synthetic_object([0.5, 2.0, 0.0], n, 1);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("cpu", format!("{n}pts")), |b| {
            b.iter(|| summarize(black_box(&pts), &pts, [0.0, 0.0, 1.5], &NoiseModel::default()))
        });
    }
    g.finish();
}

fn k5_relations(c: &mut Criterion) {
    let mut g = c.benchmark_group("k5_relations");
    for n in [10usize, 100, 1000] {
        let objects: Vec<ObjectSummary> = (0..n)
            .map(|i| {
                let pts = synthetic_object([(i % 37) as f32 * 0.7, (i / 37) as f32 * 0.9 + 1.0, 0.0], 64, i as u32);
                summarize(&pts, &pts, [0.0, 0.0, 1.5], &NoiseModel::default()).expect("object")
            })
            .collect();
        g.throughput(Throughput::Elements((n * (n - 1)) as u64));
        g.bench_function(BenchmarkId::new("cpu_pairs", format!("{n}obj")), |b| {
            b.iter(|| relate_all(black_box(&objects), |_, _| 0.0))
        });
    }
    let objs: Vec<Vec<Point3>> =
        (0..10).map(|i| synthetic_object([i as f32 * 0.6, 2.0 + (i % 3) as f32, 0.0], 20_000, i)).collect();
    let refs: Vec<&[Point3]> = objs.iter().map(Vec::as_slice).collect();
    g.throughput(Throughput::Elements(45));
    g.bench_function(BenchmarkId::new("cpu_closest_surface", "10obj_x_20000pts"), |b| {
        b.iter(|| closest_surface_matrix(black_box(&refs), 0.01))
    });
    // Ten neighbouring patches of one wall and floor (boxes over a room's surfaces): 0.8 m squares, 2 cm apart.
    let walls: Vec<Vec<Point3>> = (0..10u32)
        .map(|i| {
            let (col, row) = ((i % 5) as f32 * 0.82, (i / 5) as f32 * 0.82);
            (0..20_000u32)
                .map(|k| {
                    let h = spatialsynth::geometry::rng::draw_u32(i, 1, k, 0);
                    let (a, b) = ((h & 0xffff) as f32 / 65535.0 * 0.8, (h >> 16) as f32 / 65535.0 * 0.8);
                    [col + a, 3.0 + 0.01 * b, row + b]
                })
                .collect()
        })
        .collect();
    let refs: Vec<&[Point3]> = walls.iter().map(Vec::as_slice).collect();
    g.bench_function(BenchmarkId::new("cpu_closest_surface", "10walls_x_20000pts"), |b| {
        b.iter(|| closest_surface_matrix(black_box(&refs), 0.02))
    });
    g.finish();
}

/// The host steps the GPU backends run around K3 and the gaps, for a batch of 64 objects of 10,000 points (about six
/// frames of ten objects): wgpu's binning of the objects into the DBSCAN grid (`k3_dbscan_grid`), CUDA's packing for
/// the grid it builds on the device (`k3_dbscan_batch`: the points concatenated; `cell_of` checks them), the
/// clusterings from the device's labels (`k3_clusterings`), and the gap search's packing (`gap_pack`,
/// `gap_pack_resident`).
fn host_steps(c: &mut Criterion) {
    use spatialsynth::backend::pack::{DbscanBatch, DbscanGrid};
    use spatialsynth::geometry::dbscan::DbscanJob;
    let mut g = c.benchmark_group("host");
    let objs: Vec<Vec<Point3>> =
        (0..64).map(|i| synthetic_object([(i % 8) as f32 * 0.6, 2.0 + (i / 8) as f32 * 0.5, 0.0], 10_000, i)).collect();
    let jobs: Vec<DbscanJob<'_>> = objs.iter().map(|p| DbscanJob { points: p, eps: 0.02, min_points: 10 }).collect();
    let chunk: Vec<usize> = (0..jobs.len()).collect();
    g.throughput(Throughput::Elements(640_000));
    g.bench_function(BenchmarkId::new("k3_dbscan_grid", "64obj_x_10000pts"), |b| {
        b.iter(|| DbscanGrid::new(black_box(&jobs), &chunk).expect("grid"))
    });
    g.bench_function(BenchmarkId::new("k3_dbscan_batch", "64obj_x_10000pts"), |b| {
        b.iter(|| DbscanBatch::new(black_box(&jobs), &chunk).expect("batch"))
    });
    // The device's DBSCAN labels (each point's label a batch index of its cluster, the core flag in the top bit, as
    // CUDA's `unsort` writes them) turned into each job's clustering, as both GPU backends do after K3.
    let mut job_start = vec![0u32];
    let mut words: Vec<u32> = Vec::new();
    for o in &objs {
        let first = *job_start.last().expect("first job start");
        let c = dbscan(o, 0.02, 10).expect("dbscan");
        let mut root = vec![u32::MAX; c.clusters as usize];
        for (i, (&l, &core)) in c.labels.iter().zip(&c.core).enumerate() {
            words.push(match usize::try_from(l) {
                Ok(l) => {
                    if root[l] == u32::MAX {
                        root[l] = first + i as u32;
                    }
                    root[l] | u32::from(core) << 31
                }
                Err(_) => u32::MAX,
            });
        }
        job_start.push(first + o.len() as u32);
    }
    g.bench_function(BenchmarkId::new("k3_clusterings", "64obj_x_10000pts"), |b| {
        b.iter(|| {
            spatialsynth::backend::pack::clusterings_in_batch_order_packed(&job_start, black_box(&words))
                .expect("labels")
        })
    });
    // The gap search's packing, the same objects as about six frames of ten and a half (every pair of each): with
    // the points copied (`GapPack::new`, wgpu: each object's box computed from its points) and for points K4 left on
    // the device (`GapPack::resident`, CUDA: offsets, and the boxes K4's reductions give, computed here beforehand).
    use spatialsynth::backend::pack::GapPack;
    let frames: Vec<Vec<&[Point3]>> = objs.chunks(10).map(|f| f.iter().map(Vec::as_slice).collect()).collect();
    let frames: Vec<&[&[Point3]]> = frames.iter().map(Vec::as_slice).collect();
    let frame_list: Vec<usize> = (0..frames.len()).collect();
    let offsets: Vec<Vec<u32>> = frames
        .iter()
        .enumerate()
        .map(|(f, o)| (0..o.len()).map(|i| ((f * 10 + i) * 10_000) as u32).collect())
        .collect();
    let boxes: Vec<Vec<_>> = frames.iter().map(|f| f.iter().map(|o| bounding_box(o)).collect()).collect();
    g.bench_function(BenchmarkId::new("gap_pack", "64obj_x_10000pts"), |b| {
        b.iter(|| GapPack::new(black_box(&frames), &frame_list).expect("pack").point_count)
    });
    g.bench_function(BenchmarkId::new("gap_pack_resident", "64obj_x_10000pts"), |b| {
        b.iter(|| GapPack::resident(black_box(&frames), &frame_list, &offsets, &boxes).expect("pack").point_count)
    });
    // K4's oriented boxes, which every backend builds on the host: the minimum-area rectangle of each object's
    // footprint (hull candidates, hull, rotating edges), for real footprints: the big sample frame cut into a 4 x 3
    // grid of pixel boxes (as `bench --kernels` tops frames up to 10 objects), each box's points seen from above
    // (camera x and z).
    let sample = sample_frames();
    let (frame, cloud) = big_frame(&sample);
    let width = frame.depth.as_ref().map_or(640, |d| d.width);
    let height = frame.depth.as_ref().map_or(480, |d| d.height);
    let mut footprints: Vec<Vec<[f64; 2]>> = vec![Vec::new(); 12];
    for (p, &pixel) in cloud.points_in_camera.iter().zip(&cloud.pixels) {
        let (u, v) = (pixel % width, pixel / width);
        footprints[(v * 3 / height * 4 + u * 4 / width) as usize].push([f64::from(p[0]), f64::from(p[2])]);
    }
    g.throughput(Throughput::Elements(footprints.iter().map(|f| f.len() as u64).sum()));
    g.bench_function(BenchmarkId::new("oriented_boxes", format!("12obj_{}pts", cloud.len())), |b| {
        b.iter(|| footprints.iter().map(|f| min_area_rect(black_box(f)).extent[0]).sum::<f64>())
    });
    // Which sides of each object's box border something in front of it (the graphs step, every backend): every
    // object of the annotated sample frames, from their scene graphs.
    use spatialsynth::geometry::canonical::CanonicalFrame;
    use spatialsynth::geometry::occlusion::{occlusion, ObjectExtent};
    let objects: Vec<(&LoadedFrame, CanonicalFrame, ObjectExtent)> = sample
        .iter()
        .filter(|f| !f.objects.is_empty())
        .flat_map(|f| {
            let graph = process_frame(f, &SceneConfig::default()).expect("sample scene");
            let m = graph.canonical_from_camera;
            let canonical = CanonicalFrame {
                rotation: [0, 1, 2].map(|r| [m[r][0], m[r][1], m[r][2]]),
                translation: [m[0][3], m[1][3], m[2][3]],
                camera_height_m: graph.ground.camera_height_m,
                source: graph.ground.source,
            };
            let extents: Vec<ObjectExtent> = graph.objects.iter().map(ObjectExtent::from).collect();
            extents.into_iter().map(move |e| (f, canonical, e))
        })
        .collect();
    g.throughput(Throughput::Elements(objects.len() as u64));
    g.bench_function(BenchmarkId::new("occlusion", format!("{}obj", objects.len())), |b| {
        b.iter(|| {
            objects
                .iter()
                .filter_map(|(f, canonical, e)| {
                    occlusion(f.depth.as_ref().expect("depth"), &f.intrinsics, canonical, black_box(e)).right
                })
                .sum::<f32>()
        })
    });
    // The part of each sample frame's depth image that holds depth (the graphs step, once a frame).
    let depths: Vec<&spatialsynth::geometry::unproject::DepthImage> =
        sample.iter().filter_map(|f| f.depth.as_ref()).collect();
    g.throughput(Throughput::Elements(depths.len() as u64));
    g.bench_function(BenchmarkId::new("depth_frame", format!("{}frames", depths.len())), |b| {
        b.iter(|| {
            depths
                .iter()
                .filter_map(|d| spatialsynth::geometry::occlusion::depth_frame(black_box(d)))
                .map(|r| r[0])
                .sum::<u32>()
        })
    });
    g.finish();
}

fn scene_end_to_end(c: &mut Criterion) {
    let frames = sample_frames();
    let config = SceneConfig::default();
    let mut g = c.benchmark_group("scene");
    g.sample_size(20);
    for frame in &frames {
        g.throughput(Throughput::Elements(1));
        g.bench_function(BenchmarkId::new("cpu_frame", &frame.spec.id), |b| {
            b.iter(|| process_frame(black_box(frame), &config))
        });
    }
    // The annotated sample frames topped up to 10 objects with grid boxes (the end-to-end workload of
    // `spatialsynth bench --kernels`), as one batch: the workload behind the host-step profile in BENCHMARKS.md.
    let topped: Vec<LoadedFrame> =
        frames.iter().filter(|f| !f.objects.is_empty()).map(|f| spatialsynth::bench::with_grid_boxes(f, 10)).collect();
    let refs: Vec<&LoadedFrame> = topped.iter().collect();
    g.throughput(Throughput::Elements(refs.len() as u64));
    g.bench_function(BenchmarkId::new("cpu_batch", format!("{}frames_x_10objects", refs.len())), |b| {
        b.iter(|| {
            spatialsynth::pipeline::process_frames_on(&spatialsynth::backend::Backend::Cpu, black_box(&refs), &config)
        })
    });
    g.finish();
}

/// Colour names (the objects step): every pixel of every sample frame's colour image named and counted by
/// `dominant_color`, whole images in order. A run names each kept object's pixels, among other work on the same
/// caches: a table of all 2^24 colours' names halved this figure but left a run's objects step as it was (BENCHMARKS,
/// 2026-12-07), so this bench alone does not decide a change there.
fn colors(c: &mut Criterion) {
    use spatialsynth::color::dominant_color;
    let options = spatialsynth::io::LoadOptions { decode_color: true, ..Default::default() };
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/sample/frames.json");
    let pixels: Vec<[u8; 3]> = read_manifest(&manifest)
        .expect("data/sample/frames.json")
        .into_iter()
        .filter_map(|s| spatialsynth::io::load_frame_with(&s.expect("spec"), &options).expect("sample frame").color)
        .flat_map(|image| image.pixels().map(|p| p.0).collect::<Vec<_>>())
        .collect();
    let mut g = c.benchmark_group("colors");
    g.throughput(Throughput::Elements(pixels.len() as u64));
    g.bench_function(BenchmarkId::new("dominant_color", format!("{}px", pixels.len())), |b| {
        b.iter(|| dominant_color(black_box(&pixels).iter().copied()))
    });
    g.finish();
}

criterion_group!(
    benches,
    load,
    colors,
    k1_unproject,
    k2_ransac,
    k3_dbscan,
    k4_stats,
    k5_relations,
    host_steps,
    scene_end_to_end
);
criterion_main!(benches);
