//! Backend parity: one generic test body per kernel, run for every available backend against the CPU reference.
//! Without a GPU adapter the wgpu instances print SKIPPED with the reason; with `SPATIALSYNTH_REQUIRE_WGPU` set
//! (CI sets it once it has installed Mesa's lavapipe) a missing adapter is a failure.

mod common;

use std::io::Write;
use std::sync::OnceLock;

use proptest::prelude::*;
use spatialsynth::backend::cuda::CudaBackend;
use spatialsynth::backend::gpu::{WgpuBackend, SHADERS};
use spatialsynth::backend::Backend;
use spatialsynth::geometry::dbscan::DbscanJob;
use spatialsynth::geometry::ransac::{fit_ground_plane, hypothesis_indices, score_hypotheses, RansacParams};
use spatialsynth::geometry::relations::{closest_surface_matrix, relate_all, RelationRecord};
use spatialsynth::geometry::stats::{summarize_batch, NoiseModel, ObjectSummary, StatsInput};
use spatialsynth::geometry::unproject::{unproject_depth, unproject_objects, DepthData, DepthImage, ObjectRegion};
use spatialsynth::geometry::Intrinsics;

/// The GPU backends available here (each opened once per test binary), with a printed skip for the others.
/// `SPATIALSYNTH_REQUIRE_WGPU` (CI sets it once it has installed Mesa's lavapipe) and `SPATIALSYNTH_REQUIRE_CUDA`
/// (set it on a GPU host) make a missing backend a failure instead.
fn gpu_backends(test: &str) -> Vec<&'static Backend> {
    static WGPU: OnceLock<Result<Backend, String>> = OnceLock::new();
    static CUDA: OnceLock<Result<Backend, String>> = OnceLock::new();
    let only_cuda = std::env::var("SPATIALSYNTH_PARITY_ONLY").is_ok_and(|o| o == "cuda");
    let wgpu = WGPU.get_or_init(|| match only_cuda {
        true => Err("not opened (SPATIALSYNTH_PARITY_ONLY=cuda)".into()),
        false => WgpuBackend::new().map(|b| Backend::Wgpu(Box::new(b))),
    });
    let cuda = CUDA.get_or_init(|| CudaBackend::new().map(|b| Backend::Cuda(Box::new(b))));
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut out = Vec::new();
    // `SPATIALSYNTH_PARITY_ONLY=cuda` (the emulator run of `cuda_parity_on_the_emulator`) runs one backend only.
    let only = std::env::var("SPATIALSYNTH_PARITY_ONLY").ok();
    for (name, opened, require) in
        [("wgpu", wgpu, "SPATIALSYNTH_REQUIRE_WGPU"), ("cuda", cuda, "SPATIALSYNTH_REQUIRE_CUDA")]
    {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let label = format!("{test} [{name}]");
        let first = SAID.lock().map(|mut said| {
            let first = !said.contains(&label);
            if first {
                said.push(label.clone());
            }
            first
        });
        match opened {
            Ok(b) => {
                // Say once per test which device it ran on.
                if first.unwrap_or(true) {
                    let _ = writeln!(std::io::stderr(), "{test}: running on {}", b.describe());
                }
                out.push(b);
            }
            Err(why) => {
                if std::env::var_os(require).is_some() {
                    panic!("{test}: {require} is set but {why}");
                }
                if first.unwrap_or(true) {
                    common::skip(&label, why);
                }
            }
        }
    }
    out
}

/// Uniform numbers in [0, 1) from a seed (a 64-bit LCG; the same stream for the same seed).
fn uniform(seed: u64) -> impl FnMut() -> f32 {
    let mut state = seed | 1;
    move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 40) as f32) / (1u64 << 24) as f32
    }
}

/// A cloud for K3: cubic blobs (centre, side, points) and uniform noise points in [-2, 2)^3.
fn blob_cloud(next: &mut impl FnMut() -> f32, blobs: &[([f32; 3], f32, usize)], noise: usize) -> Vec<[f32; 3]> {
    let mut points = Vec::new();
    for &(c, r, n) in blobs {
        for _ in 0..n {
            points.push([c[0] + (next() - 0.5) * r, c[1] + (next() - 0.5) * r, c[2] + (next() - 0.5) * r]);
        }
    }
    for _ in 0..noise {
        points.push([next() * 4.0 - 2.0, next() * 4.0 - 2.0, next() * 4.0 - 2.0]);
    }
    points
}

/// `|a − b| ≤ tol · max(1, |a|)`, NaN matching NaN.
fn close(a: f32, b: f32, tol: f32) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= tol * a.abs().max(1.0)
}

/// K5 parity body: every field within a tolerance scaled to its magnitude; the clock hour equal wherever the
/// bearing is clear of an hour boundary by more than that tolerance.
fn check_relations(backend: &Backend, frames: &[Vec<ObjectSummary>]) {
    let refs: Vec<&[ObjectSummary]> = frames.iter().map(Vec::as_slice).collect();
    let ours = backend.relate_batch(&refs).unwrap();
    assert_eq!(ours.len(), frames.len());
    for (f, (objects, got)) in frames.iter().zip(&ours).enumerate() {
        let want = relate_all(objects, |_, _| f32::NAN);
        assert_eq!(got.len(), want.len(), "frame {f}");
        for (g, w) in got.iter().zip(&want) {
            let what = format!("{} frame {f}: {g:?} vs {w:?}", backend.describe());
            assert_eq!((g.a, g.b), (w.a, w.b), "{what}");
            let fields = |r: &RelationRecord| {
                [
                    r.left_m,
                    r.left_gap_m,
                    r.above_m,
                    r.above_gap_m,
                    r.front_m,
                    r.front_gap_m,
                    r.taller_m,
                    r.wider_m,
                    r.bigger_log_ratio,
                    r.distance_m,
                    r.horizontal_distance_m,
                    r.vertical_distance_m,
                    r.sigma_m,
                    r.gap_m,
                ]
            };
            for (x, y) in fields(g).iter().zip(fields(w)) {
                assert!(close(*x, y, 1e-5), "{what}");
            }
            // Bearings in degrees: an absolute tolerance (atan2 is approximate on GPUs).
            let d = (g.bearing_deg - w.bearing_deg).abs();
            assert!(d < 1e-3 || (d - 360.0).abs() < 1e-3, "{what}");
            if w.clock_margin_deg > 1e-3 {
                assert_eq!(g.clock_hour, w.clock_hour, "{what}");
                assert!((g.clock_margin_deg - w.clock_margin_deg).abs() < 1e-3, "{what}");
            }
        }
    }
}

/// K1 parity body: the same pixels in the same order, points within a relative 1e-6 (the depth division).
fn check_unproject(backend: &Backend, depth: &DepthImage, k: &Intrinsics) {
    let got = backend.unproject(depth, k).unwrap();
    let want = unproject_depth(depth, k);
    assert_eq!(got.pixels, want.pixels, "{}", backend.describe());
    for (g, w) in got.points_in_camera.iter().zip(&want.points_in_camera) {
        for c in 0..3 {
            assert!(close(g[c], w[c], 1e-6), "{}: {g:?} vs {w:?}", backend.describe());
        }
    }
}

/// K2 parity body: the hypothesis scores agree (a point exactly at the band's edge may count differently when a
/// GPU fuses a multiply-add: at most 2 per hypothesis and 1% of hypotheses), the winner is the same unless the
/// runner-up is within that difference, and then the whole fit on the device (draws, scoring, refinement support,
/// inlier count) is the very same as the CPU's: hypothesis, plane, spreads, inliers, acceptance.
fn check_scores(backend: &Backend, points: &[[f32; 3]], normals: Option<&[[f32; 3]]>, key: u32, params: &RansacParams) {
    let got = backend.score_hypotheses(points, normals, key, params).unwrap();
    let want = score_hypotheses(points, normals, key, params);
    assert_eq!(got.len(), want.len());
    let diff: Vec<u32> = got.iter().zip(&want).map(|(g, w)| g.abs_diff(*w)).collect();
    let max_diff = diff.iter().copied().max().unwrap_or(0);
    let differing = diff.iter().filter(|d| **d > 0).count();
    assert!(
        max_diff <= 2 && differing * 100 <= want.len().max(100),
        "{}: {differing} scores differ, by up to {max_diff}",
        backend.describe()
    );
    let winner = |s: &[u32]| {
        s.iter().enumerate().fold((None, 0), |(bh, bs), (h, &v)| if v > bs { (Some(h), v) } else { (bh, bs) })
    };
    let (wg, wb) = (winner(&got), winner(&want));
    let mut sorted = want.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let clear = sorted.len() < 2 || sorted[0] - sorted[1] > 2 * max_diff;
    if clear {
        assert_eq!(wg.0, wb.0, "{}: winner", backend.describe());
        let a = backend.fit_ground_plane(points, normals, key, params).unwrap();
        let b = fit_ground_plane(points, normals, key, params);
        assert_eq!(a, b, "{}: fitted plane", backend.describe());
    }
}

/// K4 parity body: per object, the box, point count, median depth (and so sigma) and the oriented box (size, yaw,
/// centre, volume: the same hull) exactly; the centroid (f32 sums on a GPU, f64 on the CPU) and the distance to
/// the camera within a relative 1e-5.
fn check_stats(backend: &Backend, objects: &[StatsInput]) {
    let noise = NoiseModel::default();
    let got = backend.summarize_batch(objects, &noise).unwrap();
    let want = summarize_batch(objects, &noise);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let what = format!("{} object {i} of {}: {g:?} vs {w:?}", backend.describe(), objects[i].canonical.len());
        let (Some(g), Some(w)) = (g, w) else {
            assert_eq!(g.is_none(), w.is_none(), "{what}");
            continue;
        };
        assert_eq!(
            (g.aabb_min_m, g.aabb_max_m, g.points, g.median_depth_m, g.sigma_m),
            (w.aabb_min_m, w.aabb_max_m, w.points, w.median_depth_m, w.sigma_m),
            "{what}"
        );
        assert_eq!(
            (g.size_m, g.yaw_rad, g.obb_center_m, g.volume_m3),
            (w.size_m, w.yaw_rad, w.obb_center_m, w.volume_m3),
            "{what}"
        );
        for k in 0..3 {
            assert!(close(g.centroid_m[k], w.centroid_m[k], 1e-5), "{what}");
        }
        assert!(close(g.distance_to_camera_m, w.distance_to_camera_m, 1e-5), "{what}");
    }
}

/// Closest-surface gap parity body: every pair of every frame of the batch, against the CPU reference's voxel index
/// (`closest_surface_matrix`, frame by frame). CUDA rounds every operation as written (`--fmad=false`): the very
/// same bits. A WGSL device may fuse multiply-adds: within a relative 1e-6 there (lavapipe gives the same bits; the
/// count of exact values is printed).
fn check_gaps(backend: &Backend, frames: &[Vec<Vec<[f32; 3]>>]) {
    let refs: Vec<Vec<&[[f32; 3]]>> = frames.iter().map(|f| f.iter().map(Vec::as_slice).collect()).collect();
    let per_frame: Vec<&[&[[f32; 3]]]> = refs.iter().map(Vec::as_slice).collect();
    let voxel_m = 0.02;
    let got = backend.closest_gaps_batch(&per_frame, voxel_m).unwrap();
    assert_eq!(got.len(), frames.len());
    let exact_required = matches!(backend, Backend::Cuda(_));
    let (mut exact, mut total) = (0usize, 0usize);
    for (f, (g, objects)) in got.iter().zip(&per_frame).enumerate() {
        let want = closest_surface_matrix(objects, voxel_m);
        assert_eq!(g.len(), want.len(), "frame {f}");
        for (k, (a, b)) in g.iter().zip(&want).enumerate() {
            let what = format!("{} frame {f} pair {k}: {a} vs {b}", backend.describe());
            total += 1;
            exact += usize::from(a.to_bits() == b.to_bits());
            match exact_required {
                true => assert_eq!(a.to_bits(), b.to_bits(), "{what}"),
                false => assert!(close(*a, *b, 1e-6), "{what}"),
            }
        }
    }
    let _ = writeln!(std::io::stderr(), "gaps on {}: {exact} of {total} entries bit-identical", backend.describe());
    // The same search from a kept K4 batch of every object of every frame (on CUDA the points K4 left on the device),
    // over a selection of each frame's objects (every third one left out, as objects without a summary are).
    let inputs: Vec<StatsInput> = frames
        .iter()
        .flatten()
        .map(|o| StatsInput { canonical: o, camera: o, camera_position: [0.0, 0.0, 0.0] })
        .collect();
    let noise = NoiseModel::default();
    let (summaries, kept) = backend.summarize_kept(&inputs, &noise).unwrap();
    // (The summaries themselves are K4's parity test; here: one per object with points, none for an empty one.)
    let with_points: Vec<bool> = inputs.iter().map(|o| !o.canonical.is_empty()).collect();
    assert_eq!(summaries.iter().map(Option::is_some).collect::<Vec<_>>(), with_points, "{}", backend.describe());
    // CUDA keeps the points on the device (one launch here), when there are any.
    let on_device = matches!(backend, Backend::Cuda(_)) && with_points.contains(&true);
    assert_eq!(kept.on_device(), on_device, "{}", backend.describe());
    check_device_places(backend, &kept, &inputs);
    let mut first = 0;
    let lists: Vec<Vec<usize>> = frames
        .iter()
        .map(|f| {
            let list = (first..first + f.len()).filter(|i| i % 3 != 2).rev().collect();
            first += f.len();
            list
        })
        .collect();
    let list_refs: Vec<&[usize]> = lists.iter().map(Vec::as_slice).collect();
    let got = backend.closest_gaps_kept(&kept, &list_refs, voxel_m).unwrap();
    assert_eq!(got.len(), frames.len());
    for (f, (g, list)) in got.iter().zip(&lists).enumerate() {
        let objects: Vec<&[[f32; 3]]> = list.iter().map(|&i| inputs[i].canonical).collect();
        let want = closest_surface_matrix(&objects, voxel_m);
        assert_eq!(g.len(), want.len(), "frame {f}");
        for (k, (a, b)) in g.iter().zip(&want).enumerate() {
            let what = format!("{} kept batch, frame {f} pair {k}: {a} vs {b}", backend.describe());
            match exact_required {
                true => assert_eq!(a.to_bits(), b.to_bits(), "{what}"),
                false => assert!(close(*a, *b, 1e-6), "{what}"),
            }
        }
    }
    // The benchmark's device timing runs the same launches (one per repeat, after a warm-up); on the small batches
    // only (the emulator is slow).
    let points: usize = frames.iter().flatten().map(Vec::len).sum();
    if let (Backend::Cuda(cuda), true) = (backend, points <= 20_000) {
        let searched: usize = frames
            .iter()
            .map(|f| {
                let n = f.iter().filter(|o| !o.is_empty()).count();
                n * n.saturating_sub(1) / 2
            })
            .sum();
        if searched > 0 {
            let (times, pairs) = cuda.time_gaps(&per_frame, 1).unwrap();
            assert_eq!((times.len(), pairs), (1, searched as u64));
            assert!(times.iter().all(|t| t.is_finite() && *t >= 0.0), "{times:?}");
        }
    }
}

/// K1 grouping parity body: the same offsets and pixels, points within a relative 1e-6.
fn check_grouping(
    backend: &Backend,
    depth: &DepthImage,
    k: &Intrinsics,
    labels: Option<&[u32]>,
    regions: &[ObjectRegion],
) {
    let got = backend.unproject_objects(depth, k, labels, regions).unwrap();
    let want = unproject_objects(depth, k, labels, regions);
    assert_eq!(got.offsets, want.offsets, "{}", backend.describe());
    assert_eq!(got.pixels, want.pixels, "{}", backend.describe());
    for (g, w) in got.points_in_camera.iter().zip(&want.points_in_camera) {
        for c in 0..3 {
            assert!(close(g[c], w[c], 1e-6), "{}: {g:?} vs {w:?}", backend.describe());
        }
    }
}

/// K3 parity body: the very same clustering (labels, core flags, cluster count), the canonical form DBSCAN
/// defines (clusters numbered by their smallest core index, borders to their nearest core point).
fn check_dbscan(backend: &Backend, points: &[[f32; 3]], eps: f32, min_points: u32) {
    let got = backend.dbscan(points, eps, min_points).unwrap();
    let want = spatialsynth::geometry::dbscan::dbscan(points, eps, min_points).unwrap();
    assert_eq!(got.clusters, want.clusters, "{}", backend.describe());
    assert_eq!(got.core, want.core, "{}", backend.describe());
    assert_eq!(got.labels, want.labels, "{}", backend.describe());
}

fn summary(c: [f32; 3], size: [f32; 3], sigma: f32) -> ObjectSummary {
    ObjectSummary {
        centroid_m: c,
        sigma_m: sigma,
        aabb_min_m: [c[0] - size[0] / 2.0, c[1] - size[1] / 2.0, c[2] - size[2] / 2.0],
        yaw_rad: 0.0,
        aabb_max_m: [c[0] + size[0] / 2.0, c[1] + size[1] / 2.0, c[2] + size[2] / 2.0],
        volume_m3: size[0] * size[1] * size[2],
        obb_center_m: c,
        distance_to_camera_m: (c[0] * c[0] + c[1] * c[1] + c[2] * c[2]).sqrt(),
        size_m: size,
        median_depth_m: c[1],
        points: 100,
        _pad: [0; 3],
    }
}

fn arb_summary() -> impl Strategy<Value = ObjectSummary> {
    (prop::array::uniform3(-10.0f32..10.0), prop::array::uniform3(0.0f32..3.0), 0.0f32..0.2)
        .prop_map(|(c, s, sigma)| summary(c, s, sigma))
}

fn intrinsics(width: u32, height: u32) -> Intrinsics {
    Intrinsics {
        fx: 0.9 * f64::from(width),
        fy: 0.9 * f64::from(width),
        cx: f64::from(width) / 2.0 - 0.5,
        cy: f64::from(height) / 2.0 - 0.5,
        width,
        height,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn k5_relations_match_the_cpu_reference(
        frames in prop::collection::vec(prop::collection::vec(arb_summary(), 0..12), 1..20)
    ) {
        for backend in gpu_backends("k5_relations_match_the_cpu_reference") {
            check_relations(backend, &frames);
        }
    }

    #[test]
    fn gaps_match_the_cpu_reference(
        frames in prop::collection::vec(
            prop::collection::vec((any::<u64>(), 0usize..4, 0usize..300, any::<bool>()), 0..7),
            1..6,
        )
    ) {
        // Objects of blobs (touching, overlapping, far apart, a few centimetres to metres across), some empty, some
        // shuffled so that chunks are not compact; frames with fewer than two objects in the batch too.
        let frames: Vec<Vec<Vec<[f32; 3]>>> = frames
            .iter()
            .map(|objects| {
                objects
                    .iter()
                    .map(|&(seed, blobs, n, shuffle)| {
                        let mut next = uniform(seed);
                        let specs: Vec<([f32; 3], f32, usize)> = (0..blobs)
                            .map(|_| {
                                let c = [next() * 2.0 - 1.0, next() * 2.0 - 1.0, next() * 0.5];
                                (c, 0.02 + next() * 0.6, n / blobs.max(1))
                            })
                            .collect();
                        let mut points = blob_cloud(&mut next, &specs, usize::from(n % 7 == 0));
                        if shuffle {
                            for i in (1..points.len()).rev() {
                                points.swap(i, (next() * (i + 1) as f32) as usize % (i + 1));
                            }
                        }
                        points
                    })
                    .collect()
            })
            .collect();
        for backend in gpu_backends("gaps_match_the_cpu_reference") {
            check_gaps(backend, &frames);
        }
    }

    #[test]
    fn k1_batches_match_the_cpu_reference(
        frames in prop::collection::vec((0u32..70, 0u32..50, any::<bool>(), any::<u64>()), 1..12),
    ) {
        // Frames of different sizes (odd pixel counts, empty ones) and depth types in one batch.
        let images: Vec<(DepthImage, Intrinsics)> = frames
            .iter()
            .map(|&(width, height, float, seed)| {
                let n = (width * height) as usize;
                let mut state = seed | 1;
                let mut next = || {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    (state >> 33) as u32
                };
                let data = if float {
                    DepthData::F32 { values: (0..n).map(|_| if next() % 6 == 0 { f32::NAN } else { (next() % 9000) as f32 * 1e-3 }).collect() }
                } else {
                    DepthData::U16 { values: (0..n).map(|_| (next() % 9000) as u16).collect(), units_per_meter: 5000.0, invalid_value: Some(7) }
                };
                (DepthImage { width, height, data }, intrinsics(width, height))
            })
            .collect();
        let batch: Vec<(&DepthImage, &Intrinsics)> = images.iter().map(|(d, k)| (d, k)).collect();
        for backend in gpu_backends("k1_batches_match_the_cpu_reference") {
            let got = backend.unproject_batch(&batch).unwrap();
            prop_assert_eq!(got.len(), batch.len());
            for (g, (d, k)) in got.iter().zip(&batch) {
                let want = unproject_depth(d, k);
                prop_assert_eq!(&g.pixels, &want.pixels);
                for (a, b) in g.points_in_camera.iter().zip(&want.points_in_camera) {
                    prop_assert!((0..3).all(|c| close(a[c], b[c], 1e-6)), "{:?} vs {:?}", a, b);
                }
            }
        }
    }

    #[test]
    fn k4_stats_match_the_cpu_reference(
        objects in prop::collection::vec(
            (prop::array::uniform3(-5.0f32..5.0), prop::array::uniform3(0.0f32..2.0), -1.5f32..1.5, 0usize..3000, 0u8..4),
            0..10,
        ),
        seed in any::<u64>(),
    ) {
        // Boxes of random size and yaw, some flat (on a line or a point), with repeated depths.
        let mut next = uniform(seed);
        let mut clouds = Vec::new();
        for (c, size, yaw, n, shape) in objects {
            let (sy, cy) = yaw.sin_cos();
            let mut canonical = Vec::with_capacity(n);
            let mut camera = Vec::with_capacity(n);
            for _ in 0..n {
                let (u, v, w) = match shape {
                    0 => (next() - 0.5, 0.0, 0.0),
                    1 => (0.0, 0.0, 0.0),
                    _ => (next() - 0.5, next() - 0.5, next()),
                };
                let (u, v) = (u * size[0], v * size[1]);
                canonical.push([c[0] + u * cy - v * sy, c[1] + u * sy + v * cy, c[2].abs() + w * size[2]]);
                camera.push([0.0, 0.0, 0.5 + (next() * 64.0).floor() * 0.05]);
            }
            clouds.push((canonical, camera));
        }
        let inputs: Vec<StatsInput> = clouds
            .iter()
            .map(|(a, b)| StatsInput { canonical: a, camera: b, camera_position: [0.1, -0.2, 1.4] })
            .collect();
        for backend in gpu_backends("k4_stats_match_the_cpu_reference") {
            check_stats(backend, &inputs);
        }
    }

    #[test]
    fn k2_draws_match_the_cpu_reference(n in 3usize..200_000, key in any::<u32>(), seed in any::<u32>()) {
        // shaders/rng.wgsl and kernels/rng.cuh draw the very same point triples as src/geometry/rng.rs.
        let params = RansacParams { hypotheses: 1500, seed, ..RansacParams::default() };
        let points = vec![[0.0f32; 3]; n];
        for backend in gpu_backends("k2_draws_match_the_cpu_reference") {
            let got = match backend {
                Backend::Wgpu(b) => b.hypothesis_draws(&points, key, &params).unwrap(),
                Backend::Cuda(b) => b.hypothesis_draws(&points, key, &params).unwrap(),
                Backend::Cpu => continue,
            };
            let want: Vec<[u32; 3]> = (0..params.hypotheses).map(|h| hypothesis_indices(n as u32, key, h, &params)).collect();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn k2_scores_match_the_cpu_reference(
        height in 0.5f32..2.0,
        tilt in -0.3f32..0.3,
        floor in 200usize..3000,
        clutter in 0usize..3000,
        seed in any::<u32>(),
    ) {
        // A floor `height` below the camera, tilted, plus clutter above it.
        let mut state = u64::from(seed) | 1;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32) / (1u64 << 24) as f32
        };
        let mut points = Vec::new();
        for _ in 0..floor {
            let (x, z) = (next() * 6.0 - 3.0, 0.5 + next() * 6.0);
            points.push([x, height + tilt * x + (next() - 0.5) * 0.01, z]);
        }
        for _ in 0..clutter {
            points.push([next() * 6.0 - 3.0, height - next() * 2.0, 0.5 + next() * 6.0]);
        }
        let params = RansacParams { hypotheses: 200, score_samples: 2048, seed, ..RansacParams::default() };
        for backend in gpu_backends("k2_scores_match_the_cpu_reference") {
            check_scores(backend, &points, None, seed ^ 0x5bd1, &params);
        }
    }

    #[test]
    fn k1_grouping_matches_the_cpu_reference(
        width in 1u32..80,
        height in 1u32..60,
        seed in any::<u64>(),
        regions in prop::collection::vec((any::<bool>(), 0u32..5, prop::array::uniform4(0.0f32..1.1)), 0..8),
    ) {
        let n = (width * height) as usize;
        let mut state = seed | 1;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let depth = DepthImage {
            width,
            height,
            data: DepthData::U16 { values: (0..n).map(|_| if next() % 5 == 0 { 0 } else { (next() % 5000) as u16 }).collect(), units_per_meter: 1000.0, invalid_value: None },
        };
        let labels: Vec<u32> = (0..n).map(|_| next() % 5).collect();
        // Boxes clipped to the image, as the frame loader gives them; they may overlap.
        let regions: Vec<ObjectRegion> = regions
            .into_iter()
            .map(|(instance, id, f)| {
                let at = |v: f32, size: u32| ((v * size as f32) as u32).min(size);
                match instance {
                    true => ObjectRegion::Instance { instance_id: id },
                    false => ObjectRegion::Box {
                        x0: at(f[0].min(f[2]), width),
                        y0: at(f[1].min(f[3]), height),
                        x1: at(f[0].max(f[2]), width),
                        y1: at(f[1].max(f[3]), height),
                    },
                }
            })
            .collect();
        for backend in gpu_backends("k1_grouping_matches_the_cpu_reference") {
            check_grouping(backend, &depth, &intrinsics(width, height), Some(&labels), &regions);
            let boxes: Vec<ObjectRegion> = regions.iter().filter(|r| matches!(r, ObjectRegion::Box { .. })).cloned().collect();
            check_grouping(backend, &depth, &intrinsics(width, height), None, &boxes);
        }
    }

    #[test]
    fn k3_dbscan_matches_the_cpu_reference(
        blobs in prop::collection::vec((prop::array::uniform3(-2.0f32..2.0), 0.02f32..0.4, 1usize..400), 1..6),
        noise in 0usize..200,
        eps in 0.01f32..0.2,
        min_points in 1u32..15,
        seed in any::<u64>(),
    ) {
        let points = blob_cloud(&mut uniform(seed), &blobs, noise);
        for backend in gpu_backends("k3_dbscan_matches_the_cpu_reference") {
            check_dbscan(backend, &points, eps, min_points);
        }
    }

    #[test]
    fn k3_dbscan_batch_matches_the_cpu_reference(
        jobs in prop::collection::vec(
            (prop::collection::vec((prop::array::uniform3(-2.0f32..2.0), 0.02f32..0.4, 0usize..200), 0..4),
             0usize..60, 0.01f32..0.2, 1u32..12),
            1..7,
        ),
        seed in any::<u64>(),
    ) {
        // Several objects in one batch, each with its own radius and min_points (some empty, some overlapping in
        // space): each job's clustering equals the CPU reference's for that job alone.
        let mut next = uniform(seed);
        let clouds: Vec<(Vec<[f32; 3]>, f32, u32)> = jobs
            .into_iter()
            .map(|(blobs, noise, eps, min_points)| (blob_cloud(&mut next, &blobs, noise), eps, min_points))
            .collect();
        let jobs: Vec<DbscanJob> =
            clouds.iter().map(|(points, eps, min_points)| DbscanJob { points, eps: *eps, min_points: *min_points }).collect();
        for backend in gpu_backends("k3_dbscan_batch_matches_the_cpu_reference") {
            let got = backend.dbscan_batch(&jobs).unwrap();
            prop_assert_eq!(got.len(), jobs.len());
            for (j, (job, got)) in jobs.iter().zip(&got).enumerate() {
                let want = spatialsynth::geometry::dbscan::dbscan(job.points, job.eps, job.min_points).unwrap();
                prop_assert_eq!(got, &want, "{} job {}", backend.describe(), j);
            }
        }
    }

    #[test]
    fn k1_unproject_matches_the_cpu_reference(
        width in 1u32..90,
        height in 1u32..70,
        seed in any::<u64>(),
        float in any::<bool>(),
    ) {
        let n = (width * height) as usize;
        let mut state = seed;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let data = if float {
            let specials = [f32::NAN, f32::INFINITY, -1.0, 0.0, f32::NEG_INFINITY];
            DepthData::F32 {
                values: (0..n)
                    .map(|_| match next() % 10 {
                        0 => specials[(next() % 5) as usize],
                        _ => 0.2 + (next() % 10_000) as f32 * 1e-3,
                    })
                    .collect(),
            }
        } else {
            DepthData::U16 {
                values: (0..n).map(|_| match next() % 8 { 0 => 0, 1 => 65535, _ => (next() % 20_000) as u16 }).collect(),
                units_per_meter: 1000.0,
                invalid_value: Some(65535),
            }
        };
        let depth = DepthImage { width, height, data };
        for backend in gpu_backends("k1_unproject_matches_the_cpu_reference") {
            check_unproject(backend, &depth, &intrinsics(width, height));
        }
    }
}

#[test]
fn k2_scores_match_on_the_sample_frames() {
    use spatialsynth::geometry::rng::frame_key;
    use spatialsynth::pipeline::{ground_sample_normals, SceneConfig};
    let manifest = common::repo().join("data/sample/frames.json");
    let frames: Vec<_> = spatialsynth::io::read_manifest(&manifest).unwrap().into_iter().map(|f| f.unwrap()).collect();
    let config = SceneConfig::default();
    for backend in gpu_backends("k2_scores_match_on_the_sample_frames") {
        for spec in &frames {
            let frame = spatialsynth::io::load_frame(spec).unwrap();
            let depth = frame.depth.as_ref().unwrap();
            let cloud = unproject_depth(depth, &frame.intrinsics);
            let normals =
                ground_sample_normals(depth, &frame.intrinsics, &cloud, &config.ransac, config.normal_max_step_px);
            let key = frame_key(&spec.key);
            check_scores(backend, &cloud.points_in_camera, Some(&normals), key, &config.ransac);
            check_scores(backend, &cloud.points_in_camera, None, key, &config.ransac);
        }
    }
}

/// An object's points in the canonical frame and in the camera's, and the camera centre in the canonical frame.
type SampleObject = (Vec<[f32; 3]>, Vec<[f32; 3]>, [f64; 3]);

/// Each sample frame's annotated objects (their regions, before denoising): per object its points in the frame's
/// canonical frame and in the camera's, and the camera centre in the canonical frame. What K4 and the gaps see.
fn sample_objects() -> Vec<Vec<SampleObject>> {
    use spatialsynth::geometry::rng::frame_key;
    use spatialsynth::pipeline::{ground_and_frame, SceneConfig};
    let manifest = common::repo().join("data/sample/frames.json");
    let specs: Vec<_> = spatialsynth::io::read_manifest(&manifest).unwrap().into_iter().map(|f| f.unwrap()).collect();
    let config = SceneConfig::default();
    specs
        .iter()
        .map(|spec| {
            let frame = spatialsynth::io::load_frame(spec).unwrap();
            let depth = frame.depth.as_ref().unwrap();
            let cloud = unproject_depth(depth, &frame.intrinsics);
            let (_, canonical, _) =
                ground_and_frame(&cloud.points_in_camera, None, frame_key(&spec.key), &config, None);
            let regions: Vec<ObjectRegion> = frame.objects.iter().map(|o| o.region.clone()).collect();
            let grouped = unproject_objects(depth, &frame.intrinsics, frame.instance_labels.as_deref(), &regions);
            (0..grouped.objects())
                .map(|i| {
                    let camera = grouped.object_points(i).to_vec();
                    let pts = camera.iter().map(|p| canonical.apply_f32(*p)).collect();
                    (pts, camera, canonical.camera_position())
                })
                .collect()
        })
        .collect()
}

#[test]
fn gaps_match_on_the_sample_frames() {
    // The annotated objects of every sample frame in its canonical frame (before outlier removal: larger objects,
    // touching and overlapping ones), every frame in one batch.
    let frames: Vec<Vec<Vec<[f32; 3]>>> =
        sample_objects().into_iter().map(|f| f.into_iter().map(|(canonical, _, _)| canonical).collect()).collect();
    let pairs: usize = frames.iter().map(|f| f.len() * f.len().saturating_sub(1) / 2).sum();
    assert!(pairs >= 30, "{pairs} pairs");
    for backend in gpu_backends("gaps_match_on_the_sample_frames") {
        check_gaps(backend, &frames);
    }
}

#[test]
fn gaps_of_large_and_degenerate_objects_match_on_every_backend() {
    // Objects of thousands of points (many super-chunks of 256, ragged last chunks and super-chunks), in random order
    // and sorted, near, touching, nested and far; with them objects whose grid has cells of 0 metres (every point at
    // one place, a single point) and a flat one (a grid of one layer), so that the device's spatial order sends many
    // points to one bucket.
    let mut next = uniform(0x9e37_79b9_7f4a_7c15);
    let mut frames: Vec<Vec<Vec<[f32; 3]>>> = Vec::new();
    for f in 0..3 {
        let mut objects = Vec::new();
        for k in 0..5 {
            let n = 700 + 1_337 * ((f + k) % 4) + 31 * k;
            let centre = [k as f32 * 0.25 * (f as f32 + 1.0), 0.1 * k as f32, 0.2 * f as f32];
            let side = [0.05, 0.4, 1.5][(f + k) % 3];
            let mut points = blob_cloud(&mut next, &[(centre, side, n)], 0);
            if k % 2 == 1 {
                points.sort_by(|a, b| a[1].total_cmp(&b[1]));
            }
            objects.push(points);
        }
        objects.push(vec![[0.3, 0.05, 0.1]; 1_000 + 100 * f]);
        objects.push(vec![[-0.2, 0.3, 0.0]]);
        objects.push((0..2_000).map(|i| [(i % 50) as f32 * 0.01, (i / 50) as f32 * 0.01, 0.15]).collect());
        frames.push(objects);
    }
    for backend in gpu_backends("gaps_of_large_and_degenerate_objects_match_on_every_backend") {
        check_gaps(backend, &frames);
    }
}

#[test]
fn k4_stats_match_on_the_sample_frames() {
    // Each annotated object of each sample frame, in the frame's canonical frame, all frames in one batch.
    let clouds: Vec<_> = sample_objects().into_iter().flatten().collect();
    let inputs: Vec<StatsInput> =
        clouds.iter().map(|(a, b, c)| StatsInput { canonical: a, camera: b, camera_position: *c }).collect();
    assert!(inputs.len() >= 20, "{} objects", inputs.len());
    for backend in gpu_backends("k4_stats_match_on_the_sample_frames") {
        check_stats(backend, &inputs);
    }
}

#[test]
fn k1_and_k3_match_on_the_sample_frames() {
    let manifest = common::repo().join("data/sample/frames.json");
    let frames: Vec<_> = spatialsynth::io::read_manifest(&manifest).unwrap().into_iter().map(|f| f.unwrap()).collect();
    for backend in gpu_backends("k1_and_k3_match_on_the_sample_frames") {
        for spec in &frames {
            let frame = spatialsynth::io::load_frame(spec).unwrap();
            let depth = frame.depth.as_ref().unwrap();
            check_unproject(backend, depth, &frame.intrinsics);
            let regions: Vec<ObjectRegion> = frame.objects.iter().map(|o| o.region.clone()).collect();
            check_grouping(backend, depth, &frame.intrinsics, frame.instance_labels.as_deref(), &regions);
            // K3 on each object's points, at the pipeline's radius.
            let grouped = unproject_objects(depth, &frame.intrinsics, frame.instance_labels.as_deref(), &regions);
            // (Every 4th point: lavapipe runs the neighbour scans on the CPU, and whole objects take seconds.)
            for i in 0..grouped.objects() {
                let points: Vec<[f32; 3]> = grouped.object_points(i).iter().step_by(4).copied().collect();
                check_dbscan(backend, &points, 0.05, 10);
            }
        }
    }
}

#[test]
fn k1_batches_of_many_sample_frames_match() {
    // K1 on one batch of 56 sample frames (about 17 million pixels): more than the one-block scans take of the
    // tiles' or blocks' counts (8,192: CUDA's tiles of 2,048 pixels, wgpu's blocks of 256), so the tiled scans
    // place the points (kernels/scan.cuh, shaders/unproject.wgsl). Every frame's cloud against the CPU reference.
    let (_, loaded, _) = sample_frames();
    let loaded: Vec<_> = loaded.into_iter().filter(|f| f.depth.is_some()).collect();
    let batch: Vec<(&DepthImage, &Intrinsics)> =
        (0..56).map(|i| &loaded[i % loaded.len()]).map(|f| (f.depth.as_ref().unwrap(), &f.intrinsics)).collect();
    let pixels: u64 = batch.iter().map(|(d, _)| d.len() as u64).sum();
    assert!(pixels > 8192 * 2048, "{pixels} pixels: too few for CUDA's tiled scan");
    let want: Vec<_> = batch.iter().map(|(d, k)| unproject_depth(d, k)).collect();
    for backend in gpu_backends("k1_batches_of_many_sample_frames_match") {
        let got = backend.unproject_batch(&batch).unwrap();
        assert_eq!(got.len(), want.len());
        for (f, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g.pixels == w.pixels, "{} frame {f}: other pixels", backend.describe());
            let far = g
                .points_in_camera
                .iter()
                .zip(&w.points_in_camera)
                .position(|(a, b)| (0..3).any(|c| !close(a[c], b[c], 1e-6)));
            assert_eq!(far, None, "{} frame {f}: a point differs", backend.describe());
        }
    }
}

/// The CUDA backend's count of launches that read what an earlier step left on the device; `None` elsewhere.
fn resident_reads(backend: &Backend) -> Option<spatialsynth::backend::cuda::ResidentReads> {
    match backend {
        Backend::Cuda(b) => Some(b.resident_reads()),
        _ => None,
    }
}

#[test]
fn cuda_keeps_freed_device_memory_for_the_next_batches() {
    // The stream-ordered allocator's pool hands freed memory back to the driver at every synchronisation unless its
    // release threshold says otherwise: the backend keeps a quarter of the device's memory.
    const TEST: &str = "cuda_keeps_freed_device_memory_for_the_next_batches";
    for backend in gpu_backends(TEST) {
        let Backend::Cuda(cuda) = backend else { continue };
        let memory = cuda.device_memory_bytes().unwrap();
        match cuda.pool_release_threshold().unwrap() {
            Some(kept) => {
                let want = memory / spatialsynth::backend::cuda::POOL_KEEP_DIVISOR;
                assert_eq!(kept, want, "{TEST}: the pool keeps {kept} bytes of {memory}");
            }
            None => common::skip(TEST, "the device has no memory pools (buffers are freed synchronously)"),
        }
    }
}

#[test]
fn cuda_keeps_to_a_page_locked_limit_set_between_batches() {
    // K1 and K2 of every sample frame on a CUDA backend of the test's own, three times: with no limit on page-locked
    // host memory (the depth words, instance labels and K2's subsample index go up from pinned staging buffers, the
    // grouped points and labels come back into pinned read-back buffers); then with a limit of 0, set between
    // batches, which frees the pools' idle buffers, so that every one of those copies goes through pageable memory
    // instead; then with no limit again. The same points, pixels and ground planes, bit for bit, each time.
    use spatialsynth::backend::PinnedMemory;
    let (keys, frames, regions) = sample_frames();
    let params = RansacParams::default();
    let inputs = k1_inputs(&keys, &frames, &regions, &params);
    for backend in gpu_backends("cuda_keeps_to_a_page_locked_limit_set_between_batches") {
        // (wgpu holds no page-locked memory of its own: its mapped buffers are its driver's.)
        if !matches!(backend, Backend::Cuda(_)) {
            assert_eq!(backend.pinned_memory(), None);
            continue;
        }
        // The limit is the backend's: one of the test's own, not the one the other tests share.
        let own = Backend::Cuda(Box::new(CudaBackend::new().unwrap()));
        let what = own.describe();
        let results = |b: &Backend| {
            let geometry: Vec<_> = b.frames_geometry(&inputs, 10).into_iter().map(Result::unwrap).collect();
            geometry
                .iter()
                .map(|g| {
                    let points: Vec<u32> =
                        g.grouped.points_in_camera.iter().flat_map(|p| p.map(f32::to_bits)).collect();
                    let fit = g.fit.map(|f| f.plane.normal.map(f64::to_bits));
                    (points, g.grouped.pixels.to_vec(), g.grouped.offsets.clone(), fit, g.valid_points)
                })
                .collect::<Vec<_>>()
        };
        let pinned = |b: &Backend| -> PinnedMemory { b.pinned_memory().unwrap() };
        let free = results(&own);
        let first = pinned(&own);
        assert!(first.allocations > 0 && first.held_bytes > 0 && first.limit_bytes.is_none(), "{what}: {first:?}");
        assert!(first.peak_bytes >= first.held_bytes, "{what}: {first:?}");
        assert_eq!((first.pageable_uploads, first.pageable_read_backs), (0, 0), "{what}: {first:?}");
        assert_eq!((first.refused_by_limit, first.refused_by_driver), (0, 0), "{what}: {first:?}");
        assert!(free.iter().map(|r| r.0.len()).sum::<usize>() > 100_000, "{what}: too few points to read back");

        own.set_pinned_limit(Some(0)).unwrap();
        let emptied = pinned(&own);
        assert_eq!(
            (emptied.held_bytes, emptied.limit_bytes),
            (0, Some(0)),
            "{what}: the idle buffers stay: {emptied:?}"
        );
        let limited = results(&own);
        let after = pinned(&own);
        assert!(limited == free, "{what}: other results through pageable memory");
        assert_eq!(after.allocations, first.allocations, "{what}: pinned past the limit: {after:?}");
        assert_eq!((after.held_bytes, after.peak_bytes), (0, first.peak_bytes), "{what}: {after:?}");
        assert!(after.refused_by_limit > 0, "{what}: {after:?}");
        // The depth words, the labels (frames with instance masks) and K2's index; the points, pixels and labels.
        assert!(after.pageable_uploads >= 2 && after.pageable_read_backs >= 2, "{what}: {after:?}");

        own.set_pinned_limit(None).unwrap();
        let again = results(&own);
        let last = pinned(&own);
        assert!(again == free, "{what}: other results once the limit is lifted");
        assert!(last.allocations > after.allocations && last.held_bytes > 0, "{what}: {last:?}");
        assert_eq!(
            (last.pageable_uploads, last.pageable_read_backs),
            (after.pageable_uploads, after.pageable_read_backs)
        );
    }
}

#[test]
fn cuda_ground_sample_normals_equal_the_cpu_ones_bit_for_bit() {
    // K2's sample normals, which the CUDA backend computes on the device from K1's depth (kernels/unproject.cu
    // `sample_normals`): the CPU reference's `estimate_normals` of the same subsample, every bit, for the sample
    // frames (real depth with holes and edges) and a small frame with holes at the borders, in one batch, at the
    // pipeline's reach and at a reach of 2 pixels.
    use spatialsynth::geometry::ransac::score_sample_indices;
    use spatialsynth::geometry::unproject::estimate_normals;
    const TEST: &str = "cuda_ground_sample_normals_equal_the_cpu_ones_bit_for_bit";
    let (_, loaded, _) = sample_frames();
    let (w, h) = (40u32, 30u32);
    let small_k = intrinsics(w, h);
    let small = DepthImage {
        width: w,
        height: h,
        data: DepthData::F32 {
            values: (0..w * h)
                .map(|i| {
                    let (u, v) = (i % w, i / w);
                    match (u * 5 + v * 3) % 7 {
                        0 => f32::NAN,
                        1 => 0.0,
                        _ => 0.9 + 0.02 * v as f32 + if (u / 6) % 2 == 0 { 0.0 } else { 0.15 },
                    }
                })
                .collect(),
        },
    };
    let mut frames: Vec<(&DepthImage, &Intrinsics)> =
        loaded.iter().filter_map(|f| Some((f.depth.as_ref()?, &f.intrinsics))).collect();
    frames.insert(1, (&small, &small_k));
    let params = spatialsynth::pipeline::SceneConfig::default().ransac;
    for backend in gpu_backends(TEST) {
        let Backend::Cuda(cuda) = backend else { continue };
        for reach in [spatialsynth::pipeline::SceneConfig::default().normal_max_step_px, 2] {
            let got = cuda.ground_sample_normals(&frames, &params, reach).unwrap();
            assert_eq!(got.len(), frames.len());
            let mut known = 0;
            for (f, ((depth, k), got)) in frames.iter().zip(&got).enumerate() {
                let cloud = unproject_depth(depth, k);
                let index = score_sample_indices(cloud.len(), &params);
                let want = estimate_normals(depth, k, &cloud, Some(&index), reach);
                assert_eq!(got.len(), want.len(), "{TEST}: frame {f}, reach {reach}");
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.map(f32::to_bits),
                        w.map(f32::to_bits),
                        "{TEST}: frame {f}, sample {i}: {g:?} vs {w:?}"
                    );
                }
                known += want.iter().filter(|n| **n != [0.0; 3]).count();
            }
            // Most samples have a normal; some (holes, edges, borders) have none.
            let total: usize = got.iter().map(Vec::len).sum();
            assert!(known > total / 2 && known < total, "{TEST}: {known} of {total} samples with a normal");
        }
    }
}

/// The sample frames loaded, with their regions: K1's input for one batch of every frame.
fn sample_frames() -> (Vec<String>, Vec<spatialsynth::io::LoadedFrame>, Vec<Vec<ObjectRegion>>) {
    let manifest = common::repo().join("data/sample/frames.json");
    let specs: Vec<_> = spatialsynth::io::read_manifest(&manifest).unwrap().into_iter().map(|f| f.unwrap()).collect();
    let frames: Vec<_> = specs.iter().map(|s| spatialsynth::io::load_frame(s).unwrap()).collect();
    let regions = frames.iter().map(|f| f.objects.iter().map(|o| o.region.clone()).collect()).collect();
    (specs.into_iter().map(|s| s.key).collect(), frames, regions)
}

/// K1's inputs for the frames of [`sample_frames`].
fn k1_inputs<'a>(
    keys: &[String],
    frames: &'a [spatialsynth::io::LoadedFrame],
    regions: &'a [Vec<ObjectRegion>],
    params: &'a RansacParams,
) -> Vec<spatialsynth::backend::FrameGeometryInput<'a>> {
    frames
        .iter()
        .zip(keys)
        .zip(regions)
        .map(|((f, key), regions)| spatialsynth::backend::FrameGeometryInput {
            depth: f.depth.as_ref().unwrap(),
            k: &f.intrinsics,
            instance_labels: f.instance_labels.as_deref(),
            regions,
            frame_key: spatialsynth::geometry::rng::frame_key(key),
            params,
        })
        .collect()
}

#[test]
fn k3_gathered_from_k1_matches_on_the_sample_frames() {
    // K1 for every sample frame in one batch, then K3 on each object's points (every 4th, or all of every third
    // object) named by index into the object's points: on CUDA gathered on the device (no points uploaded, none copied
    // on the host), elsewhere from the host's copy. The same clusterings as the CPU's DBSCAN on those points.
    use spatialsynth::backend::{IndexedJob, IndexedPoints};
    use spatialsynth::geometry::dbscan::dbscan;
    let (keys, frames, regions) = sample_frames();
    let params = RansacParams::default();
    let inputs = k1_inputs(&keys, &frames, &regions, &params);
    for backend in gpu_backends("k3_gathered_from_k1_matches_on_the_sample_frames") {
        let geometry: Vec<_> = backend.frames_geometry(&inputs, 10).into_iter().map(Result::unwrap).collect();
        let mut objects = Vec::new();
        for g in &geometry {
            assert_eq!(g.resident.on_device(), matches!(backend, Backend::Cuda(_)), "{}", backend.describe());
            for i in 0..g.grouped.objects() {
                let n = g.grouped.object_points(i).len() as u32;
                let keep: Option<Vec<u32>> = (objects.len() % 3 != 2).then(|| (0..n).step_by(4).collect());
                objects.push((g, i, keep));
            }
        }
        let jobs: Vec<IndexedJob> = objects
            .iter()
            .map(|(g, i, keep)| IndexedJob {
                points: IndexedPoints {
                    all: g.grouped.object_points(*i),
                    keep: keep.as_deref(),
                    resident: Some((&g.resident, g.grouped.offsets[*i])),
                },
                eps: 0.05,
                min_points: 10,
            })
            .collect();
        assert!(jobs.len() >= 20, "{} objects", jobs.len());
        let kept: Vec<Vec<[f32; 3]>> = jobs.iter().map(|j| j.points.kept().unwrap().into_owned()).collect();
        let check = |got: Vec<spatialsynth::geometry::dbscan::Clustering>, what: &str| {
            for (k, (g, p)) in got.iter().zip(&kept).enumerate() {
                let want = if p.is_empty() { Default::default() } else { dbscan(p, 0.05, 10).unwrap() };
                assert_eq!(*g, want, "{} {what}: object {k} of the batch ({} points)", backend.describe(), p.len());
            }
        };
        let before = resident_reads(backend);
        check(backend.dbscan_batch_indexed(&jobs).unwrap(), "gathered");
        if let (Some(before), Some(after)) = (before, resident_reads(backend)) {
            assert!(after.k3_gathers > before.k3_gathers, "CUDA did not gather K3's points: {after:?}");
        }
        // One job with points not on the device: its chunk's kept points are copied and uploaded, the same
        // clusterings.
        let mut mixed = jobs.clone();
        let k = mixed.iter().position(|j| !j.points.is_empty()).expect("an object with points");
        mixed[k].points.resident = None;
        let before = resident_reads(backend);
        check(backend.dbscan_batch_indexed(&mixed).unwrap(), "copied");
        if let (Some(before), Some(after)) = (before, resident_reads(backend)) {
            assert_eq!(after.k3_gathers, before.k3_gathers, "CUDA gathered a chunk with a job not on the device");
        }
        // One job in another K1 batch's buffer (the frames in reverse order, so that its place there is not its place
        // in the first): a gather reads one buffer, so its chunk is copied and uploaded; the same clusterings.
        let reversed: Vec<_> = inputs.iter().rev().copied().collect();
        let other: Vec<_> = backend.frames_geometry(&reversed, 10).into_iter().map(Result::unwrap).collect();
        let (g, i, _) = &objects[k];
        let f = geometry.iter().position(|h| std::ptr::eq(h, *g)).expect("the job's frame");
        let there = &other[geometry.len() - 1 - f];
        assert_eq!(there.grouped.object_points(*i), g.grouped.object_points(*i), "{}", backend.describe());
        let mut elsewhere = jobs.clone();
        elsewhere[k].points.resident = Some((&there.resident, there.grouped.offsets[*i]));
        let before = resident_reads(backend);
        check(backend.dbscan_batch_indexed(&elsewhere).unwrap(), "from two K1 buffers");
        if let (Some(before), Some(after)) = (before, resident_reads(backend)) {
            assert_eq!(after.k3_gathers, before.k3_gathers, "CUDA gathered a chunk from two K1 buffers");
        }
        // A kept index outside its object's points: the same error on every backend, naming the job.
        let mut bad = jobs.clone();
        let k =
            objects.iter().position(|o| o.2.as_ref().is_some_and(|v| !v.is_empty())).expect("an object kept in part");
        let mut keep = objects[k].2.clone().unwrap();
        let n = bad[k].points.all.len() as u32;
        keep[0] = n;
        bad[k].points.keep = Some(&keep);
        let err = backend.dbscan_batch_indexed(&bad).unwrap_err();
        assert!(err.contains(&format!("job {k}: kept point 0 is point {n} of {n}")), "{}: {err}", backend.describe());
        // A gathered batch the device refuses (one job's radius so small that its cells overflow 32 bits): on CUDA,
        // `cell_of`'s check of the gathered points, named as the host's check names it.
        if matches!(backend, Backend::Cuda(_)) {
            let mut tiny = jobs.clone();
            let k = tiny.iter().position(|j| !j.points.is_empty()).expect("an object with points");
            tiny[k].eps = 1e-30;
            let err = backend.dbscan_batch_indexed(&tiny).unwrap_err();
            assert!(err.starts_with(&format!("cuda: job {k}: the points lie more than 2^31 cells")), "{err}");
        }
    }
}

/// A K4 object of the gather test: its frame, its index there, its kept indices (into its points), its camera and
/// canonical points.
type GatheredObject = (usize, usize, Vec<u32>, Vec<[f32; 3]>, Vec<[f32; 3]>);

#[test]
fn k4_and_gaps_gathered_from_k1_match_on_the_sample_frames() {
    // K1 for every sample frame in one batch, then K4 on each object's points (every 2nd, and every point of every
    // 5th object) named by index, in a tilted canonical frame (the frame's own ground plane): on CUDA computed on the
    // device from where K1 left the camera points (the f64 transform of `apply_f32`), and the gaps from K4's kept
    // batch. The summaries as K4's parity test wants them against the CPU reference on the host's copies, the gaps as
    // the gap parity test (bit for bit on CUDA: the canonical points must be the host's, bit for bit).
    use spatialsynth::backend::{IndexedPoints, KeptInput};
    use spatialsynth::geometry::canonical::{CanonicalFrame, GroundSource};
    let (keys, frames, regions) = sample_frames();
    let params = RansacParams::default();
    let inputs = k1_inputs(&keys, &frames, &regions, &params);
    let noise = NoiseModel::default();
    for backend in gpu_backends("k4_and_gaps_gathered_from_k1_match_on_the_sample_frames") {
        let geometry: Vec<_> = backend.frames_geometry(&inputs, 10).into_iter().map(Result::unwrap).collect();
        let canonical: Vec<CanonicalFrame> = geometry
            .iter()
            .map(|g| {
                let fit = g.fit.expect("a ground plane search result");
                CanonicalFrame::from_ground_plane(&fit.plane, GroundSource::Ransac).expect("a canonical frame")
            })
            .collect();
        let mut objects: Vec<GatheredObject> = Vec::new();
        for (f, g) in geometry.iter().enumerate() {
            for i in 0..g.grouped.objects() {
                let step = if objects.len() % 5 == 4 { 1 } else { 2 };
                let keep: Vec<usize> = (0..g.grouped.object_points(i).len()).step_by(step).collect();
                let camera: Vec<[f32; 3]> = keep.iter().map(|&k| g.grouped.object_points(i)[k]).collect();
                let points = camera.iter().map(|p| canonical[f].apply_f32(*p)).collect();
                objects.push((f, i, keep.iter().map(|&k| k as u32).collect(), camera, points));
            }
        }
        let stats_inputs: Vec<StatsInput> = objects
            .iter()
            .map(|(f, _, _, camera, points)| StatsInput {
                canonical: points,
                camera,
                camera_position: canonical[*f].camera_position(),
            })
            .collect();
        // Each object by index: every 5th object (all its points) without `keep`.
        let kept_inputs: Vec<KeptInput> = objects
            .iter()
            .map(|&(f, i, ref keep, _, _)| {
                let all = geometry[f].grouped.object_points(i);
                let points = IndexedPoints {
                    all,
                    keep: (keep.len() != all.len() || all.is_empty()).then_some(keep.as_slice()),
                    resident: Some((&geometry[f].resident, geometry[f].grouped.offsets[i])),
                };
                KeptInput { points, canonical: &canonical[f] }
            })
            .collect();
        assert!(kept_inputs.iter().any(|o| o.points.keep.is_none() && !o.points.is_empty()), "an object taken whole");
        assert!(stats_inputs.len() >= 20, "{} objects", stats_inputs.len());
        let before = resident_reads(backend);
        let (got, kept) = backend.summarize_kept_indexed(&kept_inputs, &noise).unwrap();
        assert_eq!(kept.on_device(), matches!(backend, Backend::Cuda(_)), "{}", backend.describe());
        assert_eq!(kept.len(), objects.len());
        check_device_places(backend, &kept, &stats_inputs);
        let want = summarize_batch(&stats_inputs, &noise);
        let check_summaries = |got: &[Option<ObjectSummary>], how: &str| {
            for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                let what = format!("{} {how} object {k}: {g:?} vs {w:?}", backend.describe());
                let (Some(g), Some(w)) = (g, w) else {
                    assert_eq!(g.is_none(), w.is_none(), "{what}");
                    continue;
                };
                assert_eq!(
                    (g.aabb_min_m, g.aabb_max_m, g.points, g.median_depth_m, g.size_m, g.yaw_rad),
                    (w.aabb_min_m, w.aabb_max_m, w.points, w.median_depth_m, w.size_m, w.yaw_rad),
                    "{what}"
                );
                assert!((0..3).all(|c| close(g.centroid_m[c], w.centroid_m[c], 1e-5)), "{what}");
            }
        };
        check_summaries(&got, "gathered");
        // Each frame's gaps over its objects, from the kept batch.
        let lists: Vec<Vec<usize>> =
            (0..geometry.len()).map(|f| (0..objects.len()).filter(|&k| objects[k].0 == f).collect()).collect();
        let list_refs: Vec<&[usize]> = lists.iter().map(Vec::as_slice).collect();
        let check_gaps = |gaps: &[Vec<f32>], how: &str| {
            for (f, (g, list)) in gaps.iter().zip(&lists).enumerate() {
                let points: Vec<&[[f32; 3]]> = list.iter().map(|&k| objects[k].4.as_slice()).collect();
                let want = closest_surface_matrix(&points, 0.02);
                assert_eq!(g.len(), want.len(), "{} {how} frame {f}", backend.describe());
                for (k, (a, b)) in g.iter().zip(&want).enumerate() {
                    let what = format!("{} {how} frame {f} pair {k}: {a} vs {b}", backend.describe());
                    match backend {
                        Backend::Cuda(_) => assert_eq!(a.to_bits(), b.to_bits(), "{what}"),
                        _ => assert!(close(*a, *b, 1e-6), "{what}"),
                    }
                }
            }
        };
        let gaps = backend.closest_gaps_kept(&kept, &list_refs, 0.02).unwrap();
        if let (Some(before), Some(after)) = (before, resident_reads(backend)) {
            assert!(after.k4_gathers > before.k4_gathers, "CUDA did not gather K4's points: {after:?}");
            assert!(after.gaps_from_k4 > before.gaps_from_k4, "the gaps did not read K4's points: {after:?}");
        }
        check_gaps(&gaps, "gathered");
        // One object not on the device: CUDA copies every object's points on the host and uploads them (no gather),
        // the same summaries and gaps.
        let mut mixed = kept_inputs.clone();
        let k = objects.iter().position(|o| !o.2.is_empty()).expect("an object with points");
        mixed[k].points.resident = None;
        let before = resident_reads(backend);
        let (again, kept_again) = backend.summarize_kept_indexed(&mixed, &noise).unwrap();
        if let (Some(before), Some(after)) = (before, resident_reads(backend)) {
            assert_eq!(after.k4_gathers, before.k4_gathers, "a gather with an object off the device");
        }
        // The uploaded points stay on the device too (one launch), and the gaps read them there.
        assert_eq!(kept_again.on_device(), matches!(backend, Backend::Cuda(_)), "{}", backend.describe());
        assert_eq!(again, got, "{}: gathered and copied K4 differ", backend.describe());
        check_device_places(backend, &kept_again, &stats_inputs);
        let before = resident_reads(backend);
        check_gaps(&backend.closest_gaps_kept(&kept_again, &list_refs, 0.02).unwrap(), "copied");
        if let (Some(before), Some(after)) = (before, resident_reads(backend)) {
            assert!(after.gaps_from_k4 > before.gaps_from_k4, "the gaps did not read K4's points: {after:?}");
        }
        // One object in another K1 batch's buffer (the frames in reverse order, so that its place there is not its
        // place in the first): a gather reads one buffer, so the points are copied and uploaded; the same summaries.
        let reversed: Vec<_> = inputs.iter().rev().copied().collect();
        let other: Vec<_> = backend.frames_geometry(&reversed, 10).into_iter().map(Result::unwrap).collect();
        let (f, i) = (objects[k].0, objects[k].1);
        let there = &other[geometry.len() - 1 - f];
        assert_eq!(there.grouped.object_points(i), geometry[f].grouped.object_points(i), "{}", backend.describe());
        let mut elsewhere = kept_inputs.clone();
        elsewhere[k].points.resident = Some((&there.resident, there.grouped.offsets[i]));
        let before = resident_reads(backend);
        let (from_two, kept_from_two) = backend.summarize_kept_indexed(&elsewhere, &noise).unwrap();
        assert_eq!(from_two, got, "{}: K4 from two K1 buffers differs", backend.describe());
        check_device_places(backend, &kept_from_two, &stats_inputs);
        if let (Some(before), Some(after)) = (before, resident_reads(backend)) {
            assert_eq!(after.k4_gathers, before.k4_gathers, "a gather from two K1 buffers");
        }
        // A kept index past its object's points (still inside K1's buffer, on CUDA: a gather would read the next
        // object's points) is an error naming the object, on every backend, resident or not.
        let mut past = objects[k].2.clone();
        past[0] = geometry[objects[k].0].grouped.object_points(objects[k].1).len() as u32;
        for resident in [true, false] {
            let mut bad = kept_inputs.clone();
            bad[k].points.keep = Some(&past);
            if !resident {
                bad[k].points.resident = None;
            }
            let before = resident_reads(backend);
            let err = backend.summarize_kept_indexed(&bad, &noise).err().expect("an error").to_string();
            assert!(err.contains(&format!("object {k}: kept point 0 is point {}", past[0])), "{err}");
            if let (Some(before), Some(after)) = (before, resident_reads(backend)) {
                assert_eq!(after.k4_gathers, before.k4_gathers, "a gather past an object");
            }
        }
    }
}

#[test]
fn k5_relations_match_on_a_large_batch() {
    // 256 frames of 40 objects: 399,360 pairs in one batch, beyond one dispatch row of workgroups.
    let frames: Vec<Vec<ObjectSummary>> = (0..256)
        .map(|f| {
            (0..40)
                .map(|i| {
                    let t = (f * 40 + i) as f32;
                    summary(
                        [(t * 0.37).sin() * 4.0, 2.0 + (t * 0.11).cos() * 3.0, (t * 0.05).sin().abs()],
                        [0.3, 0.4, 0.5 + 0.01 * i as f32],
                        0.02,
                    )
                })
                .collect()
        })
        .collect();
    for backend in gpu_backends("k5_relations_match_on_a_large_batch") {
        check_relations(backend, &frames);
    }
}

#[test]
fn shaders_validate_with_naga_and_share_the_rust_layouts() {
    use spatialsynth::backend::gpu::{
        DbscanJobParams, DbscanParams, FrameRange, GapParams, GpuGapObject, GpuHypothesis, GpuObjectStats, GpuRegion,
        GpuSupport, GroupParams, RansacParamsGpu, RelationParams, StatsParams, UnprojectFrame, UnprojectParams,
    };
    let expected: [(&str, usize); 18] = [
        ("Job", std::mem::size_of::<DbscanJobParams>()),
        ("Frame", std::mem::size_of::<UnprojectFrame>()),
        ("ObjectStats", std::mem::size_of::<GpuObjectStats>()),
        ("ObjectRange", std::mem::size_of::<[u32; 2]>()),
        ("Params", std::mem::size_of::<StatsParams>()),
        ("SupportTest", std::mem::size_of::<GpuSupport>()),
        ("Params", std::mem::size_of::<DbscanParams>()),
        ("Region", std::mem::size_of::<GpuRegion>()),
        ("Params", std::mem::size_of::<GroupParams>()),
        ("Hypothesis", std::mem::size_of::<GpuHypothesis>()),
        ("Params", std::mem::size_of::<RansacParamsGpu>()),
        ("ObjectSummary", std::mem::size_of::<ObjectSummary>()),
        ("RelationRecord", std::mem::size_of::<RelationRecord>()),
        ("FrameRange", std::mem::size_of::<FrameRange>()),
        ("Params", std::mem::size_of::<RelationParams>()),
        ("Params", std::mem::size_of::<UnprojectParams>()),
        ("GapObject", std::mem::size_of::<GpuGapObject>()),
        ("Params", std::mem::size_of::<GapParams>()),
    ];
    let mut seen = 0;
    for (name, source) in SHADERS {
        let module =
            naga::front::wgsl::parse_str(source).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        let mut validator =
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::default());
        validator.validate(&module).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        for (_, ty) in module.types.iter() {
            if let (Some(ty_name), naga::TypeInner::Struct { span, .. }) = (&ty.name, &ty.inner) {
                let matches: Vec<usize> =
                    expected.iter().filter(|(n, _)| n == ty_name).map(|(_, size)| *size).collect();
                if !matches.is_empty() {
                    assert!(
                        matches.contains(&(*span as usize)),
                        "{name}: struct {ty_name} is {span} bytes, Rust {matches:?}"
                    );
                    seen += 1;
                }
            }
        }
    }
    assert_eq!(seen, 18, "every shared struct was found in the shaders");
}

#[test]
fn explicit_backends_that_are_missing_say_why() {
    // Without a CUDA driver, --backend cuda is an error naming what is missing (never a panic, never a fallback).
    match Backend::open(spatialsynth::backend::BackendKind::Cuda) {
        Ok(b) => eprintln!("cuda opened: {}", b.describe()),
        Err(e) => {
            let err = e.to_string();
            assert!(err.contains("cuda") && (err.contains("libcuda") || err.contains("NVRTC")), "{err}");
            assert!(std::env::var_os("SPATIALSYNTH_REQUIRE_CUDA").is_none(), "SPATIALSYNTH_REQUIRE_CUDA: {err}");
            common::skip("explicit_backends_that_are_missing_say_why [cuda]", &err);
        }
    }
    // auto always opens something and says what.
    let auto = Backend::open(spatialsynth::backend::BackendKind::Auto).unwrap();
    let described = auto.describe();
    assert!(
        described.starts_with("cuda: ") || described.starts_with("wgpu: ") || described.starts_with("cpu: "),
        "{described}"
    );
    eprintln!("auto chose {described}");
}

/// The GPU backends available here as run options take them (see [`gpu_backends`]), each with a folder name.
fn gpu_kinds(test: &str) -> Vec<(spatialsynth::backend::BackendKind, &'static str)> {
    use spatialsynth::backend::BackendKind;
    gpu_backends(test)
        .into_iter()
        .map(|b| match b.kind() {
            BackendKind::Cuda => (BackendKind::Cuda, "cuda"),
            kind => (kind, "wgpu"),
        })
        .collect()
}

#[test]
fn generated_questions_and_answers_read_the_same_on_every_backend() {
    // The README's job (scenes, then question-answer pairs) on the six annotated sample frames, on the CPU and on
    // each GPU backend: the same records, questions and answers word for word (the numbers behind them may differ in
    // their last bits: scene_graphs_on_gpus_equal_the_cpu_ones holds them to a tolerance; scripts/compare-datasets.py
    // checks both on a GPU host).
    use spatialsynth::backend::BackendKind;
    use spatialsynth::dataset::DatasetOptions;
    use spatialsynth::run::{run, Job, RunOptions};
    let kinds = gpu_kinds("generated_questions_and_answers_read_the_same_on_every_backend");
    if kinds.is_empty() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let inputs = [common::repo().join("data/sample/frames.json")];
    let texts = |backend, name: &str| {
        let job = Job { dataset: Some(DatasetOptions::default()), ..Job::new(&inputs, &tmp.path().join(name)) };
        let summary = run(&job, &RunOptions { backend, ..RunOptions::default() }, &|_, _| {}).unwrap();
        assert_eq!(summary.counts.frames_ok, 6, "{name}");
        let llava = std::fs::read_to_string(tmp.path().join(name).join("llava.jsonl")).unwrap();
        llava
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let turns = v["conversations"].as_array().unwrap();
                (v["id"].to_string(), turns.iter().map(|t| t["value"].as_str().unwrap().to_string()).collect())
            })
            .collect::<Vec<(String, Vec<String>)>>()
    };
    let cpu = texts(BackendKind::Cpu, "cpu");
    let pairs: usize = cpu.iter().map(|(_, turns)| turns.len() / 2).sum();
    assert!(cpu.len() == 6 && pairs > 50, "{} records, {pairs} pairs", cpu.len());
    for (kind, name) in kinds {
        let gpu = texts(kind, name);
        assert_eq!(gpu.len(), cpu.len(), "{name}");
        for ((id, want), (gpu_id, got)) in cpu.iter().zip(&gpu) {
            assert_eq!(gpu_id, id, "{name}");
            for (k, (w, g)) in want.iter().zip(got).enumerate() {
                assert_eq!(g, w, "{name}: record {id}, turn {k}");
            }
            assert_eq!(got.len(), want.len(), "{name}: record {id}");
        }
    }
}

#[test]
fn scene_graphs_on_gpus_equal_the_cpu_ones() {
    // The whole scene stage with --backend wgpu and cuda: the same frames, objects, planes, hypotheses, counts and labels;
    // real numbers within a relative 1e-5 (GPU f32 centroid sums, and atan2 and ln that are not correctly rounded
    // on GPUs: bearings within 1e-3 degrees).
    use spatialsynth::backend::BackendKind;
    use spatialsynth::run::{run_scenes, RunOptions};
    let kinds = gpu_kinds("scene_graphs_on_gpus_equal_the_cpu_ones");
    if kinds.is_empty() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let inputs = [common::repo().join("data/sample/frames.json")];
    // Three of the sample frames in a manifest of their own (file paths made absolute).
    let picked = ["pcl_milk_cartoon_floor", "graspnet_blue_mug", "tum_office_desk"];
    let three = tmp.path().join("three.json");
    let mut manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&inputs[0]).unwrap()).unwrap();
    let sample_dir = common::repo().join("data/sample");
    let frames = manifest["frames"].as_array_mut().unwrap();
    frames.retain(|f| picked.contains(&f["id"].as_str().unwrap()));
    for f in frames.iter_mut() {
        for key in ["color", "depth", "instances", "labels"] {
            if let Some(path) = f.get(key).and_then(|v| v.as_str()) {
                f[key] = sample_dir.join(path).display().to_string().into();
            }
        }
    }
    std::fs::write(&three, serde_json::to_string(&manifest).unwrap()).unwrap();
    let run_text = |backend, name: &str, batch_frames| {
        let options = RunOptions { backend, batch_frames, ..RunOptions::default() };
        let summary = run_scenes(&inputs, &tmp.path().join(name), &options, &|_, _| {}).unwrap();
        assert_eq!(summary.counts.frames_ok, 6);
        (summary.backend, std::fs::read_to_string(summary.scene_graphs.as_ref().unwrap()).unwrap())
    };
    let run = |backend, name: &str| {
        let (backend, text) = run_text(backend, name, 6);
        (backend, text.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).collect::<Vec<_>>())
    };
    let (cpu_name, cpu) = run(BackendKind::Cpu, "cpu");
    assert!(cpu_name.starts_with("cpu"), "{cpu_name}");
    fn walk(a: &serde_json::Value, b: &serde_json::Value, path: &str, diffs: &mut Vec<String>) {
        use serde_json::Value;
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                assert_eq!(x.len(), y.len(), "{path}");
                // A bearing within the bearings' tolerance of the boundary between two clock hours (a margin below
                // 1e-3 degrees on both sides) may fall on either side of it: the neighbouring hour is the same fact.
                let hour = |v: &serde_json::Map<String, Value>| v.get("clock_hour").and_then(Value::as_u64);
                let margin = |v: &serde_json::Map<String, Value>| v.get("clock_margin_deg").and_then(Value::as_f64);
                let flipped = match (hour(x), hour(y), margin(x), margin(y)) {
                    (Some(a), Some(b), Some(ma), Some(mb)) if a != b => {
                        let next = |h: u64| (h + 1) % 12;
                        ma.abs() < 1e-3 && mb.abs() < 1e-3 && (next(a) == b % 12 || next(b) == a % 12)
                    }
                    _ => false,
                };
                for (k, v) in x {
                    if flipped && k == "clock_hour" {
                        diffs.push(format!("{path}.{k}"));
                        continue;
                    }
                    walk(v, &y[k], &format!("{path}.{k}"), diffs);
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                assert_eq!(x.len(), y.len(), "{path}");
                for (i, (u, v)) in x.iter().zip(y).enumerate() {
                    walk(u, v, &format!("{path}[{i}]"), diffs);
                }
            }
            _ if a == b => {}
            (Value::Number(x), Value::Number(y)) => {
                assert!(!(x.is_u64() || x.is_i64() || y.is_u64() || y.is_i64()), "{path}: {x} vs {y} (integers)");
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                let field = path.rsplit('.').next().unwrap();
                // An occlusion share counts pixels against thresholds made from the backend's numbers, put where
                // their last bits should not matter (geometry::occlusion); a pixel or two of a band of a hundred
                // more may still cross.
                let tolerance = match field {
                    "bearing_deg" | "clock_margin_deg" | "obb_yaw_deg" => 1e-3,
                    _ if path.contains(".occlusion.") => 0.02,
                    _ => 1e-5 * x.abs().max(1.0),
                };
                assert!((x - y).abs() <= tolerance, "{path}: {x} vs {y}");
                diffs.push(path.to_string());
            }
            _ => panic!("{path}: {a} vs {b}"),
        }
    }
    for (kind, name) in kinds {
        let (gpu_name, gpu) = run(kind, name);
        assert!(gpu_name.starts_with(name), "{gpu_name}");
        assert_eq!(gpu.len(), cpu.len());
        let mut diffs = Vec::new();
        for (a, b) in cpu.iter().zip(&gpu) {
            walk(a, b, a["frame"].as_str().unwrap(), &mut diffs);
        }
        eprintln!("scene graphs on {gpu_name}: {} values differ in their last bits", diffs.len());
        // One frame a batch (three of the frames, one with instance masks): the run gives a GPU backend two batches
        // at once (the host steps of one while the device works on the other), and the scene graphs come out the
        // same as in one batch, byte for byte, in input order.
        let one_batch = std::fs::read_to_string(tmp.path().join(name).join("scene_graphs.jsonl")).unwrap();
        let options = RunOptions { backend: kind, batch_frames: 1, ..RunOptions::default() };
        let summary = run_scenes(
            std::slice::from_ref(&three),
            &tmp.path().join(format!("{name}-overlapped")),
            &options,
            &|_, _| {},
        )
        .unwrap();
        assert_eq!(summary.counts.frames_ok, 3);
        let overlapped = std::fs::read_to_string(summary.scene_graphs.as_ref().unwrap()).unwrap();
        let want: Vec<&str> = one_batch
            .lines()
            .filter(|l| picked.iter().any(|id| l.contains(&format!("\"frame_id\":\"{id}\""))))
            .collect();
        assert_eq!(want.len(), 3);
        assert_eq!(overlapped.lines().collect::<Vec<_>>(), want, "{gpu_name}: batches of one frame, two at once");
    }
}

#[test]
fn k3_border_ties_go_to_the_lower_index_on_every_backend() {
    // A border point exactly 1 m (= eps) from two core points of different clusters: it joins the cluster of the
    // core point with the lower index (here B's, listed first).
    let mut points = vec![[1.0f32, 0.0, 0.0]];
    points.extend(std::iter::repeat_n([1.5f32, 0.0, 0.0], 11));
    points.push([-1.0, 0.0, 0.0]);
    points.extend(std::iter::repeat_n([-1.5f32, 0.0, 0.0], 11));
    points.push([0.0, 0.0, 0.0]);
    let border = points.len() - 1;
    let want = spatialsynth::geometry::dbscan::dbscan(&points, 1.0, 12).unwrap();
    assert_eq!(want.clusters, 2);
    assert!(!want.core[border] && want.core[0] && want.core[12]);
    assert_eq!(want.labels[border], want.labels[0]);
    for backend in gpu_backends("k3_border_ties_go_to_the_lower_index_on_every_backend") {
        check_dbscan(backend, &points, 1.0, 12);
    }
}

#[test]
fn k3_long_chains_in_shuffled_order_are_one_cluster_each_on_every_backend() {
    // Three parallel lines of 3,000 points each, 1 cm apart along the line, 10 cm between lines, eps 1.5 cm: each
    // line is one cluster only through a chain of 2,999 links. The points are shuffled, so a line's batch indices
    // are scattered over every block of threads: the GPUs' union-find joins race across blocks, and the smallest
    // index of each cluster sits anywhere along its line.
    const PER_LINE: usize = 3000;
    let mut points: Vec<[f32; 3]> =
        (0..3 * PER_LINE).map(|k| [(k % PER_LINE) as f32 * 0.01, (k / PER_LINE) as f32 * 0.1, 1.0]).collect();
    let mut next = uniform(7);
    for i in (1..points.len()).rev() {
        let j = ((next() * (i + 1) as f32) as usize).min(i);
        points.swap(i, j);
    }
    let want = spatialsynth::geometry::dbscan::dbscan(&points, 0.015, 3).unwrap();
    assert_eq!(want.clusters, 3);
    // The two ends of each line have only one neighbour: borders; every other point is core.
    assert_eq!(want.core.iter().filter(|&&c| c).count(), 3 * (PER_LINE - 2));
    for backend in gpu_backends("k3_long_chains_in_shuffled_order_are_one_cluster_each_on_every_backend") {
        check_dbscan(backend, &points, 0.015, 3);
    }
}

#[test]
fn k3_neighbours_at_exactly_eps_across_cells_and_dense_cells_on_every_backend() {
    // A lattice of spacing exactly eps (0.5 m, binary-exact coordinates), so every axis neighbour is at distance
    // eps to the bit (dist2 == eps2: a neighbour), 1.7 cells away on the backends' grid of side eps/√3; the diagonal
    // ones are not neighbours. With min_points 7, a point is core exactly when all six axis neighbours are there. A
    // fifth of the lattice is left out (by a fixed hash), which splits it into clusters and leaves borders and noise.
    // Clumps of 12 coincident-ish points (one cell each, all core without a distance test) sit between lattice
    // points, within eps of some of them.
    let eps = 0.5f32;
    let mut points = Vec::new();
    for k in 0..9u32 * 9 * 9 {
        let (x, y, z) = (k % 9, (k / 9) % 9, k / 81);
        if k.wrapping_mul(2654435761) % 5 == 0 {
            continue;
        }
        points.push([x as f32 * eps + 0.25, y as f32 * eps - 1.0, z as f32 * eps + 2.0]);
    }
    let (clumps, per_clump) = (6, 12);
    let mut next = uniform(11);
    for c in 0..clumps {
        let centre = [1.0 + 0.5 * c as f32 + 0.125, 0.375, 3.0 + 0.25 * c as f32];
        for _ in 0..per_clump {
            points.push(centre.map(|v| v + 0.01 * (next() - 0.5)));
        }
    }
    let want = spatialsynth::geometry::dbscan::dbscan(&points, eps, 7).unwrap();
    let core = want.core.iter().filter(|&&c| c).count();
    let noise = want.labels.iter().filter(|&&l| l < 0).count();
    // Every clump point is core; so are more than 50 lattice points.
    assert!(
        want.clusters >= 2 && core > clumps * per_clump + 50 && noise > 0,
        "{} clusters, {core} core, {noise} noise",
        want.clusters
    );
    for backend in gpu_backends("k3_neighbours_at_exactly_eps_across_cells_and_dense_cells_on_every_backend") {
        check_dbscan(backend, &points, eps, 7);
    }
}

#[test]
fn a_refused_dbscan_job_is_named_on_every_backend() {
    fn good_job(points: &[[f32; 3]]) -> DbscanJob<'_> {
        DbscanJob { points, eps: 0.1, min_points: 2 }
    }
    let good = vec![[0.0f32, 0.0, 0.0]; 3];
    let bad = vec![[0.0f32, 0.0, 0.0], [0.0, f32::NAN, 0.0]];
    let non_finite =
        [DbscanJob { points: &good, eps: 0.1, min_points: 2 }, DbscanJob { points: &bad, eps: 0.1, min_points: 2 }];
    // A bad radius is refused even for an empty job, as on the CPU.
    let bad_eps =
        [DbscanJob { points: &good, eps: 0.1, min_points: 2 }, DbscanJob { points: &[], eps: 0.0, min_points: 2 }];
    let cpu = Backend::Cpu;
    for backend in std::iter::once(&cpu).chain(gpu_backends("a_refused_dbscan_job_is_named_on_every_backend")) {
        let err = backend.dbscan_batch(&non_finite).unwrap_err();
        assert!(err.contains("job 1") && err.contains("point 1 is not finite"), "{}: {err}", backend.describe());
        let err = backend.dbscan_batch(&bad_eps).unwrap_err();
        assert!(err.contains("job 1") && err.contains("positive and finite"), "{}: {err}", backend.describe());
        // Extreme coordinates for the radius: the CPU's answer, or (a span the device grid cannot hold) an error
        // naming the job; never a wrapped cell coordinate.
        let far = [[0.0f32, 0.0, 0.0], [3e38, -3e38, 0.0]];
        let too_wide = [good_job(&good), DbscanJob { points: &far, eps: 1e-30, min_points: 1 }];
        match backend.dbscan_batch(&too_wide) {
            Ok(got) => assert_eq!(got, cpu.dbscan_batch(&too_wide).unwrap(), "{}", backend.describe()),
            Err(err) => assert!(err.contains("job 1"), "{}: {err}", backend.describe()),
        }
        // Without the refused job the batch runs.
        let ok = backend.dbscan_batch(&non_finite[..1]).unwrap();
        assert_eq!((ok.len(), ok[0].clusters), (1, 1));
    }
}

#[test]
fn k3_points_the_device_refuses_are_named_as_the_host_names_them() {
    // CUDA's host reads no point of a DBSCAN batch: `cell_of` checks each (finite, its cell within 2^31 - 4 of 0) and a
    // refused batch gets the host's checks' error: the first job with a point that is not finite (in any job, before
    // the rest), else the first job whose cells overflow. The other backends: the CPU's answer or an error naming the
    // job.
    fn job(points: &[[f32; 3]], eps: f32) -> DbscanJob<'_> {
        DbscanJob { points, eps, min_points: 2 }
    }
    let good = [[0.0f32, 0.0, 0.0], [0.01, 0.0, 0.0], [0.5, 0.2, 0.1]];
    // With eps 1e-2 (cells of about 5.8 mm): 2e6 m is 3.5e8 cells out, 3e7 m 5.2e9 cells (more than 2^31). (The CPU
    // reference's grid spans 2^21 cells a side: the far points lie together.)
    let near = [[0.0f32, 2.0e6, 0.0], [0.001, 2.0e6, 0.0], [0.0, 2.0e6, 0.0]];
    let far = [[0.0f32, 0.0, 0.0], [0.0, 0.0, -3.0e7]];
    let nan = [[0.0f32, 0.0, 0.0], [f32::NAN, 0.0, 0.0]];
    let inf = [[f32::INFINITY, 0.0, 0.0], [0.0, 0.0, 0.0]];
    // At the edge: the farthest f32 coordinate whose cell (floor(v x 1 / the cell side) in double precision, the
    // host's and `cell_of`'s formula) is accepted, and the next f32 out, refused, either way. (A cell within 2^31 - 4
    // of 0 is accepted. With an f32 coordinate and an f32 side the cells a point can have near 2^31 are sparse: no
    // two 24-bit mantissas have a ratio within 2^-24 of a power of two but at it. For this radius the pair is
    // 2^31 - 174 and 2^31, and -(2^31 - 173) and -2^31: a device limit off by fewer cells would pass.)
    let eps_edge = 0.01f32;
    let inv = spatialsynth::backend::pack::inverse_cell_side(eps_edge);
    let cell = |v: f32| (f64::from(v) * inv).floor();
    let accepted = |v: f32| cell(v).abs() <= 2147483644.0;
    let edge = |sign: f32| -> [[[f32; 3]; 1]; 2] {
        let (inward, outward) = match sign > 0.0 {
            true => (f32::next_down as fn(f32) -> f32, f32::next_up as fn(f32) -> f32),
            false => (f32::next_up as fn(f32) -> f32, f32::next_down as fn(f32) -> f32),
        };
        let mut v = (f64::from(sign) * 2147483644.0 / inv) as f32;
        while !accepted(v) {
            v = inward(v);
        }
        while accepted(outward(v)) {
            v = outward(v);
        }
        assert!(cell(v).abs() > 2147483644.0 - 256.0, "{v}: cell {}", cell(v));
        [[[0.0, v, 0.0]], [[0.0, outward(v), 0.0]]]
    };
    let (above, below) = (edge(1.0), edge(-1.0));
    let edge_job = |points| vec![job(&good, 0.1), job(points, eps_edge)];
    let over = Some("job 1: the points lie more than 2^31 cells");
    let cases: [(&str, Vec<DbscanJob>, Option<&str>); 10] = [
        ("the farthest cell accepted", edge_job(&above[0]), None),
        ("the nearest cell refused", edge_job(&above[1]), over),
        ("the farthest cell accepted below 0", edge_job(&below[0]), None),
        ("the nearest cell refused below 0", edge_job(&below[1]), over),
        (
            "a NaN after an overflow",
            vec![job(&good, 0.1), job(&far, 1e-2), job(&nan, 1e-2)],
            Some("job 2: point 1 is not finite"),
        ),
        ("two overflows", vec![job(&good, 0.1), job(&far, 1e-2), job(&far, 1e-2)], over),
        ("an infinity", vec![job(&good, 0.1), job(&inf, 0.1)], Some("job 1: point 0 is not finite")),
        ("a NaN before a bad radius", vec![job(&nan, 0.1), job(&good, f32::NAN)], Some("job 0: point 1 is not finite")),
        ("a tiny radius", vec![job(&good, 0.1), job(&good, 1e-30)], over),
        ("far but within the cells", vec![job(&good, 0.1), job(&near, 1e-2)], None),
    ];
    let cpu = Backend::Cpu;
    for backend in gpu_backends("k3_points_the_device_refuses_are_named_as_the_host_names_them") {
        let cuda = matches!(backend, Backend::Cuda(_));
        for (what, jobs, refusal) in &cases {
            let got = backend.dbscan_batch(jobs);
            match (refusal, got) {
                (Some(want), Err(err)) if cuda => {
                    assert!(err.starts_with(&format!("cuda: {want}")), "{what}: {err}, want {want}")
                }
                (None, Ok(got)) => assert_eq!(got, cpu.dbscan_batch(jobs).unwrap(), "{}: {what}", backend.describe()),
                (Some(_), Ok(got)) if !cuda => {
                    assert_eq!(got, cpu.dbscan_batch(jobs).unwrap(), "{}: {what}", backend.describe())
                }
                (Some(want), Err(err)) => {
                    let job = want.split(':').next().unwrap_or_default();
                    assert!(err.contains(job), "{}: {what}: {err}", backend.describe())
                }
                (_, got) => panic!("{}: {what}: {got:?}, want {refusal:?}", backend.describe()),
            }
        }
    }
}

/// The tests that build and run the CUDA emulator themselves: the emulator's parity run leaves them out, and so
/// does the GPU carry (`scripts/build-gpu-carry.sh`).
const EMULATOR_TESTS: [&str; 3] = [
    "cuda_parity_on_the_emulator",
    "the_emulator_runs_stream_work_as_late_as_a_gpu_may",
    "a_scene_run_on_the_emulated_cuda_backend_keeps_its_streams_in_order",
];
const EMULATOR_TESTS_IN_ONE_BACKEND_RUN: &str =
    "SPATIALSYNTH_PARITY_ONLY is set (a run of one backend): the emulator's own tests run without it";

#[test]
fn cuda_parity_on_the_emulator() {
    // Every parity test above again, on the CUDA backend, with `kernels/emu`'s CPU emulator of the CUDA driver in
    // place of NVIDIA's (a child run of this test binary with the emulator first on LD_LIBRARY_PATH): the kernels
    // of kernels/ (built for the host from the sources NVRTC compiles, NVRTC still compiling them to PTX), every
    // launch and copy of src/backend/cuda.rs, CUDA's barrier and warp-shuffle semantics with the threads of a block
    // run in a new pseudo-random order between barriers, device memory that starts as 0xff bytes, a grid limit of
    // 1,000 blocks along y and z (so that batches past it stay small), and (where the compiler has AddressSanitizer)
    // every device buffer bounds-checked. Not a GPU: the parity tests must still pass
    // on one before the CUDA backend counts as working (kernels/README.md).
    const TEST: &str = "cuda_parity_on_the_emulator";
    const EMULATED_GRID_YZ: u32 = 1_000;
    let require = std::env::var_os("SPATIALSYNTH_REQUIRE_CUDA_EMULATOR").is_some();
    let skip_or_fail = |why: String| {
        assert!(!require, "{TEST}: SPATIALSYNTH_REQUIRE_CUDA_EMULATOR is set but {why}");
        common::skip(TEST, &why);
    };
    if std::env::var_os("SPATIALSYNTH_PARITY_ONLY").is_some() {
        return common::skip(TEST, EMULATOR_TESTS_IN_ONE_BACKEND_RUN);
    }
    if let Err(why) = spatialsynth::backend::cuda::nvrtc_available() {
        return skip_or_fail(why);
    }
    let target = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out = if std::fs::create_dir_all(&target).is_ok() { target } else { std::env::temp_dir() };
    let emulator = match common::cuda_emu::build(&out, true) {
        Ok(e) => e,
        Err(why) => return skip_or_fail(why),
    };
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child
        .args(EMULATOR_TESTS.iter().flat_map(|t| ["--skip", t]))
        .envs(emulator.environment())
        .env("SPATIALSYNTH_PARITY_ONLY", "cuda")
        .env("SPATIALSYNTH_REQUIRE_CUDA", "1")
        // A grid of at most 1,000 blocks along y and z (65,535 on a GPU): the batches of the tests above that pass
        // the limit launch in parts with a thousand frames or objects, not 65,000.
        .env("SPATIALSYNTH_CUDA_EMU_MAX_GRID_YZ", EMULATED_GRID_YZ.to_string());
    let output = child.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail = |s: &str| s.chars().rev().take(6000).collect::<Vec<_>>().into_iter().rev().collect::<String>();
    assert!(
        output.status.success(),
        "{TEST}: the parity tests fail on the emulated CUDA backend ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        tail(&stdout),
        tail(&stderr)
    );
    // Every test that asks for the GPU backends ran on the emulated device; none skipped it.
    let ran: std::collections::BTreeSet<&str> = stderr
        .lines()
        .filter(|l| l.contains(": running on cuda: spatialsynth CUDA emulator"))
        .filter_map(|l| l.split(':').next())
        .collect();
    assert!(!stderr.contains("SKIPPED"), "{TEST}: a test skipped the emulated CUDA backend:\n{}", tail(&stderr));
    // The emulator's complaints (a race between streams, a freed buffer in use, ...) fail the run even where the
    // backend swallows the error (cudarc keeps errors of `Drop` for later).
    let complaints: Vec<&str> = stderr.lines().filter(|l| l.starts_with("cuda emulator:")).take(5).collect();
    assert!(complaints.is_empty(), "{TEST}: the emulator complained:\n{}", complaints.join("\n"));
    let source = std::fs::read_to_string(common::repo().join("tests/parity.rs")).unwrap();
    let expected = source.matches("gpu_backends(\"").count();
    assert!(
        ran.len() >= expected && expected >= 16,
        "{TEST}: {} of {expected} tests ran on the emulator: {ran:?}",
        ran.len()
    );
    let summary = stdout.lines().filter(|l| l.starts_with("test result")).collect::<Vec<_>>().join("; ");
    let _ = writeln!(
        std::io::stderr(),
        "{TEST}: {} tests on the emulated CUDA backend ({}, {}): {summary}",
        ran.len(),
        emulator.lib_dir.display(),
        match &emulator.asan_runtime {
            Some(_) => "device buffers bounds-checked by AddressSanitizer",
            None => "no AddressSanitizer runtime: device buffers not bounds-checked",
        }
    );
}

/// Where a kept K4 batch left its objects' canonical points on the device (CUDA), each object's place holds its own
/// points, bit for bit, and its box is its points' box (`bounding_box`, exactly: K4's reductions are min and max).
/// The gaps start each object's spatial order from that box: a box of another object would leave them right, only
/// slower, so only this can catch one.
fn check_device_places(backend: &Backend, kept: &spatialsynth::backend::KeptObjects<'_>, objects: &[StatsInput]) {
    use spatialsynth::geometry::relations::bounding_box;
    if !kept.on_device() {
        return;
    }
    let bits = |p: &[[f32; 3]]| p.iter().flat_map(|q| q.map(f32::to_bits)).collect::<Vec<u32>>();
    for (i, o) in objects.iter().enumerate() {
        let what = format!("{} object {i} of {}", backend.describe(), objects.len());
        match kept.device_object(i).unwrap() {
            None => assert!(o.canonical.is_empty(), "{what}: its points are not on the device"),
            Some((points, b)) => {
                assert_eq!(bits(&points), bits(o.canonical), "{what}: another object's points");
                let want = bounding_box(o.canonical);
                assert_eq!(bits(&[b.0, b.1]), bits(&[want.0, want.1]), "{what}: another object's box");
            }
        }
    }
}

#[test]
fn cuda_prefix_sums_equal_the_serial_ones() {
    // The CUDA backend's exclusive prefix sum (kernels/scan.cuh), which places K1's points, DBSCAN's cells and the
    // gaps' buckets: one block up to 8,192 counts, the tiled scan beyond (tiles of 4,096 counts: each tile's sum,
    // those sums scanned, each tile's offsets). Both paths and their edges, against the serial sum.
    const TEST: &str = "cuda_prefix_sums_equal_the_serial_ones";
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    let mut ran = false;
    for backend in gpu_backends(TEST) {
        let Backend::Cuda(cuda) = backend else { continue };
        ran = true;
        for n in [0, 1, 4095, 4096, 8192, 8193, 4096 * 3 + 5, 100_000, 1 << 20] {
            // Mostly small counts, some zero runs, a few large ones (the sums stay far below 2^32).
            let counts: Vec<u32> = (0..n)
                .map(|i| match next() % 8 {
                    0 => 0,
                    1 if i % 1000 < 50 => 1000,
                    _ => next() % 5,
                })
                .collect();
            let mut want = Vec::with_capacity(n + 1);
            let mut total = 0u32;
            for &c in &counts {
                want.push(total);
                total += c;
            }
            want.push(total);
            let got = cuda.prefix_sum_of(&counts).unwrap();
            assert!(got == want, "{}: {n} counts: the offsets differ", backend.describe());
        }
    }
    if !ran {
        common::skip(TEST, "no CUDA device (the emulator's child run of cuda_parity_on_the_emulator runs it)");
    }
}

#[test]
fn the_emulator_runs_stream_work_as_late_as_a_gpu_may() {
    // The emulator's streams (kernels/emu/README.md): stream-ordered work is queued and runs only when something must
    // see it, in its stream's order. Each case runs in a child process on the emulator, with the driver API called
    // directly (cudarc's safe layer would add the waits this checks for):
    // - `late`: a read-back into page-locked memory holds 0xff bytes until its stream is synchronised; another
    //   stream that waits on an event recorded after the first's memset sees it.
    // - `unpinned`: freeing page-locked memory while a copy into it waits is refused, and fails the context.
    // - `race`: another stream reads the buffer while that memset is queued, with no wait: refused, naming the race.
    // - `rewrite`: the host writes a page-locked buffer between queueing a copy from it and the copy running: the
    //   synchronisation fails, naming the race.
    // - `freed`: a stream-ordered free of a buffer is queued, and another stream queues a memset of it: refused.
    // - `allocated`: a stream-ordered allocation is queued, and another stream queues a memset of it: refused.
    // - `synchronous`, `synchronous-read`, `synchronous-memset`: a synchronous copy into the buffer, one out of it,
    //   and a synchronous memset of it (the NULL stream's, which cudarc's non-blocking streams do not wait for) while
    //   that memset is queued: refused.
    // - `misaligned`: a kernel given a pointer to 8-byte-aligned values (DBSCAN's jobs, with a double) 4 bytes into
    //   a buffer: the launch fails when it runs, as a GPU's misaligned load does.
    // - `sync`: the backend asks the driver to put a waiting thread to sleep (blocking sync, the default of
    //   SPATIALSYNTH_CUDA_SYNC) and says so in its description.
    // - `bounds`: a kernel's block as its PTX declares it (`__launch_bounds__`, `.maxntid`): the most threads a block,
    //   as the driver reports it, and a launch of more threads refused, as a GPU refuses it.
    // - `context`: a thread that never made the context current has none (as with NVIDIA's driver), and an
    //   allocation there fails with CUDA_ERROR_INVALID_CONTEXT, named on stderr, until it binds the context, as on a
    //   GPU. (The emulator asks the same of every call that works in a context, stricter than the driver, which
    //   takes it from the handle for some calls on a stream.) So every run on the emulator checks that each thread
    //   the backend calls the driver from (the run's workers, rayon's threads) binds it first.
    const TEST: &str = "the_emulator_runs_stream_work_as_late_as_a_gpu_may";
    if let Ok(case) = std::env::var("SPATIALSYNTH_EMU_STREAM_CASE") {
        return emulator_stream_case(&case);
    }
    if std::env::var_os("SPATIALSYNTH_PARITY_ONLY").is_some() {
        return common::skip(TEST, EMULATOR_TESTS_IN_ONE_BACKEND_RUN);
    }
    let require = std::env::var_os("SPATIALSYNTH_REQUIRE_CUDA_EMULATOR").is_some();
    let target = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out = if std::fs::create_dir_all(&target).is_ok() { target } else { std::env::temp_dir() };
    let emulator = match common::cuda_emu::build(&out, true) {
        Ok(e) => e,
        Err(why) => {
            assert!(!require, "{TEST}: SPATIALSYNTH_REQUIRE_CUDA_EMULATOR is set but {why}");
            return common::skip(TEST, &why);
        }
    };
    for (case, complaint) in [
        ("late", None),
        ("unpinned", Some("cuMemFreeHost: a queued copy still uses this page-locked memory")),
        ("race", Some("cuMemcpyDtoHAsync: races cuMemsetD8Async queued on another stream")),
        ("rewrite", Some("the host wrote the page-locked source after the copy was queued")),
        ("freed", Some("cuMemsetD8Async: races cuMemFreeAsync queued on another stream")),
        ("allocated", Some("cuMemsetD8Async: races cuMemAllocAsync queued on another stream")),
        ("synchronous", Some("cuMemcpyHtoD: races cuMemsetD8Async queued on another stream")),
        ("synchronous-read", Some("cuMemcpyDtoH: races cuMemsetD8Async queued on another stream")),
        ("synchronous-memset", Some("cuMemsetD32: races cuMemsetD8Async queued on another stream")),
        ("misaligned", Some("dbscan.cu cell_of: a pointer argument (")),
        ("sync", None),
        (
            "bounds",
            Some("unproject.cu count_valid: a block of 512 threads, more than the kernel's __launch_bounds__ (256)"),
        ),
        ("context", Some("cuMemAlloc_v2: called on a thread with no current context")),
    ] {
        // These compile the kernels (NVRTC), which building the emulator does not need.
        if ["misaligned", "sync", "bounds"].contains(&case) {
            if let Err(why) = spatialsynth::backend::cuda::nvrtc_available() {
                assert!(!require, "{TEST} [{case}]: SPATIALSYNTH_REQUIRE_CUDA_EMULATOR is set but {why}");
                common::skip(&format!("{TEST} [{case}]"), &why);
                continue;
            }
        }
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture"])
            .envs(emulator.environment())
            .env("SPATIALSYNTH_EMU_STREAM_CASE", case)
            .env_remove("SPATIALSYNTH_CUDA_SYNC")
            .env_remove("SPATIALSYNTH_CUDA_EMU_CONTEXT")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{TEST} [{case}]: {}\n{stdout}\n{stderr}", output.status);
        assert!(stdout.contains("1 passed"), "{TEST} [{case}]: the case did not run:\n{stdout}");
        if let Some(c) = complaint {
            assert!(stderr.contains(c), "{TEST} [{case}]: the emulator did not say {c:?}:\n{stderr}");
        }
    }
}

/// One case of [`the_emulator_runs_stream_work_as_late_as_a_gpu_may`], run on the emulated device.
fn emulator_stream_case(case: &str) {
    use cudarc::driver::{result, sys, CudaContext};
    let ctx = CudaContext::new(0).unwrap();
    assert!(ctx.name().unwrap().contains("emulator"), "not the emulator: {}", ctx.name().unwrap());
    ctx.bind_to_thread().unwrap();
    if case == "sync" {
        let backend = spatialsynth::backend::cuda::CudaBackend::new().unwrap();
        let description = backend.device_description();
        assert!(description.ends_with(", blocking sync)"), "{description}");
        let mut flags = 0u32;
        // SAFETY: cuCtxGetFlags writes one unsigned int through a valid pointer (the context is current).
        unsafe { sys::cuCtxGetFlags(&mut flags) }.result().unwrap();
        assert_eq!(flags & 7, sys::CUctx_flags::CU_CTX_SCHED_BLOCKING_SYNC as u32, "flags {flags:#x}");
        return;
    }
    if case == "bounds" {
        use cudarc::driver::{LaunchConfig, PushKernelArg};
        let modules = spatialsynth::backend::cuda::compiled_modules("compute_90").unwrap();
        let unproject = spatialsynth::backend::cuda::MODULES.iter().position(|m| m.file == "unproject.cu").unwrap();
        let ptx = &modules[unproject];
        let module = ctx.load_module(cudarc::nvrtc::Ptx::from_src(ptx.clone())).unwrap();
        let (count, scan) =
            (module.load_function("count_valid").unwrap(), module.load_function("scan_counts").unwrap());
        // scan_counts declares its block (1,024); count_valid none (the device's limit, 1,024).
        assert_eq!(scan.max_threads_per_block().unwrap(), 1024);
        assert_eq!(count.max_threads_per_block().unwrap(), 1024);
        // The same PTX with a bound of 256 threads declared for count_valid, after its parameters.
        let at = ptx.find(".entry count_valid(").unwrap();
        let close = at + ptx[at..].find(')').unwrap() + 1;
        let bounded = format!("{}\n.maxntid 256, 1, 1{}", &ptx[..close], &ptx[close..]);
        let module = ctx.load_module(cudarc::nvrtc::Ptx::from_src(bounded)).unwrap();
        let count = module.load_function("count_valid").unwrap();
        assert_eq!(count.max_threads_per_block().unwrap(), 256);
        let stream = ctx.new_stream().unwrap();
        let words = stream.alloc_zeros::<u32>(4).unwrap();
        let mut b = stream.launch_builder(&count);
        b.arg(&words);
        let config = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (512, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: the emulator refuses the launch before it reads the arguments (count_valid takes more than this
        // one; a launch that went ahead would fail the case in the child process, the test's own).
        let r = unsafe { b.launch(config) };
        assert_eq!(r.err().map(|e| e.0), Some(sys::CUresult::CUDA_ERROR_INVALID_VALUE), "a block past its bound ran");
        return;
    }
    let code = |r: Result<(), cudarc::driver::DriverError>| r.err().map(|e| e.0);
    let stream = || result::stream::create(result::stream::StreamKind::NonBlocking).unwrap();
    let (s1, s2) = (stream(), stream());
    // SAFETY: every device and host pointer below is allocated here with room for the four words it is used for;
    // the host buffer is read only through `read`, after each copy that writes it was queued.
    unsafe {
        let dev = result::malloc_async(s1, 16).unwrap();
        result::memcpy_htod_async(dev, &[1u32, 2, 3, 4], s1).unwrap();
        let host = result::malloc_host(16, 0).unwrap().cast::<u32>();
        let pinned = std::slice::from_raw_parts_mut(host, 4);
        let read = |p: *const u32| std::ptr::read_volatile(p.cast::<[u32; 4]>());
        match case {
            "late" => {
                result::memcpy_dtoh_async(pinned, dev, s1).unwrap();
                assert_eq!(read(host), [u32::MAX; 4], "a read-back was there before its stream ran");
                result::stream::synchronize(s1).unwrap();
                assert_eq!(read(host), [1, 2, 3, 4]);
                // s2 reads into pageable memory (the call returns once its copy is done), after s1's memset.
                result::memset_d8_async(dev, 7, 16, s1).unwrap();
                let mut seen = [0u32; 4];
                let event = result::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT).unwrap();
                result::event::record(event, s1).unwrap();
                result::stream::wait_event(s2, event, sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT).unwrap();
                result::memcpy_dtoh_async(&mut seen, dev, s2).unwrap();
                assert_eq!(seen, [0x0707_0707; 4], "a wait on an event did not run the work before it");
                result::free_host(host.cast()).unwrap();
            }
            "unpinned" => {
                result::memcpy_dtoh_async(pinned, dev, s1).unwrap();
                let r = result::free_host(host.cast());
                assert_eq!(code(r), Some(sys::CUresult::CUDA_ERROR_ILLEGAL_STATE), "freed under a queued copy");
                // A context that failed stays failed (cudarc keeps the errors of `Drop`, where pinned memory goes).
                assert!(result::stream::synchronize(s1).is_err(), "the refused free was forgotten");
            }
            "race" => {
                result::stream::synchronize(s1).unwrap();
                result::memset_d8_async(dev, 7, 16, s1).unwrap();
                let mut seen = [0u32; 4];
                let r = result::memcpy_dtoh_async(&mut seen, dev, s2);
                assert_eq!(code(r), Some(sys::CUresult::CUDA_ERROR_ILLEGAL_STATE), "an unordered read ran");
            }
            "rewrite" => {
                pinned.copy_from_slice(&[5, 6, 7, 8]);
                result::memcpy_htod_async(dev, pinned, s1).unwrap();
                pinned[0] = 9;
                assert_eq!(code(result::stream::synchronize(s1)), Some(sys::CUresult::CUDA_ERROR_ILLEGAL_STATE));
            }
            "freed" => {
                result::stream::synchronize(s1).unwrap();
                result::free_async(dev, s1).unwrap();
                let r = result::memset_d8_async(dev, 0, 16, s2);
                assert_eq!(code(r), Some(sys::CUresult::CUDA_ERROR_ILLEGAL_STATE), "a memset raced a free");
            }
            "misaligned" => {
                let modules = spatialsynth::backend::cuda::compiled_modules("compute_90").unwrap();
                let at = spatialsynth::backend::cuda::MODULES.iter().position(|m| m.file == "dbscan.cu").unwrap();
                let ptx = std::ffi::CString::new(modules[at].clone()).unwrap();
                let module = result::module::load_data(ptx.as_ptr().cast()).unwrap();
                let f = result::module::get_function(module, std::ffi::CString::new("cell_of").unwrap()).unwrap();
                // cell_of(points_b, job_start, const Job* jobs, Params p, cell_b, refused): `jobs` 4 bytes into a
                // buffer (a Job holds a double); no point to do (Params all zero), so only the pointers' check can
                // fail it.
                result::stream::synchronize(s1).unwrap();
                let (mut points, mut starts, mut jobs, mut cells, mut refused) = (dev, dev, dev + 4, dev, dev);
                let mut params = [0u32; 8];
                let mut args: [*mut std::ffi::c_void; 6] = [
                    (&mut points as *mut u64).cast(),
                    (&mut starts as *mut u64).cast(),
                    (&mut jobs as *mut u64).cast(),
                    params.as_mut_ptr().cast(),
                    (&mut cells as *mut u64).cast(),
                    (&mut refused as *mut u64).cast(),
                ];
                result::launch_kernel(f, (1, 1, 1), (32, 1, 1), 0, s1, &mut args).unwrap();
                let r = result::stream::synchronize(s1);
                assert_eq!(code(r), Some(sys::CUresult::CUDA_ERROR_MISALIGNED_ADDRESS), "a misaligned pointer ran");
            }
            "synchronous" | "synchronous-read" | "synchronous-memset" => {
                result::stream::synchronize(s1).unwrap();
                result::memset_d8_async(dev, 7, 16, s1).unwrap();
                let mut seen = [0u32; 4];
                let r = match case {
                    "synchronous" => result::memcpy_htod_sync(dev, &[5u32, 6, 7, 8]),
                    "synchronous-read" => result::memcpy_dtoh_sync(&mut seen, dev),
                    _ => sys::cuMemsetD32_v2(dev, 9, 4).result(),
                };
                assert_eq!(code(r), Some(sys::CUresult::CUDA_ERROR_ILLEGAL_STATE), "an unordered {case} ran");
            }
            "context" => {
                result::stream::synchronize(s1).unwrap();
                let (stream, ctx) = (s1 as usize, std::sync::Arc::clone(&ctx));
                std::thread::spawn(move || {
                    let s1 = stream as sys::CUstream;
                    assert_eq!(result::ctx::get_current().unwrap(), None, "a new thread had a current context");
                    let r = result::malloc_sync(16).map(|_| ());
                    assert_eq!(
                        code(r),
                        Some(sys::CUresult::CUDA_ERROR_INVALID_CONTEXT),
                        "an allocation without a context ran"
                    );
                    ctx.bind_to_thread().unwrap();
                    assert!(result::ctx::get_current().unwrap().is_some());
                    result::free_sync(result::malloc_sync(16).unwrap()).unwrap();
                    // Setting no context pops the current one, as the driver does.
                    result::ctx::set_current(std::ptr::null_mut()).unwrap();
                    assert_eq!(result::ctx::get_current().unwrap(), None, "setting no context left one current");
                    ctx.bind_to_thread().unwrap();
                    result::memset_d8_async(dev, 7, 16, s1).unwrap();
                    let mut seen = [0u32; 4];
                    result::memcpy_dtoh_async(&mut seen, dev, s1).unwrap();
                    assert_eq!(seen, [0x0707_0707; 4]);
                })
                .join()
                .unwrap();
                result::free_host(host.cast()).unwrap();
            }
            "allocated" => {
                result::stream::synchronize(s1).unwrap();
                let fresh = result::malloc_async(s1, 16).unwrap();
                let r = result::memset_d8_async(fresh, 0, 16, s2);
                assert_eq!(code(r), Some(sys::CUresult::CUDA_ERROR_ILLEGAL_STATE), "a memset raced an allocation");
            }
            other => panic!("no case {other}"),
        }
    }
}

#[test]
fn a_scene_run_on_the_emulated_cuda_backend_keeps_its_streams_in_order() {
    // The CLI's `scene` on the emulated CUDA device (kernels/emu) as `scripts/emulator-counts.sh` runs it: 20 frames of
    // 10 objects (scripts/grid-box-manifest.py: equal frames, so the pinned staging buffers are reused across
    // batches), two threads, batches in flight. The parity tests call the backend a batch at a time; here calls on
    // different streams overlap, which the emulator's streams check: a race between streams, or a staging buffer
    // written while a copy from it waits, fails the run with a line on stderr (the staging buffers' own events,
    // `Staged` in src/backend/cuda.rs, are what this catches when they go missing). Each frame's scene must have the
    // CPU reference's objects, dropped objects and relations (their values are the parity tests' business).
    const TEST: &str = "a_scene_run_on_the_emulated_cuda_backend_keeps_its_streams_in_order";
    if std::env::var_os("SPATIALSYNTH_PARITY_ONLY").is_some() {
        return common::skip(TEST, EMULATOR_TESTS_IN_ONE_BACKEND_RUN);
    }
    let require = std::env::var_os("SPATIALSYNTH_REQUIRE_CUDA_EMULATOR").is_some();
    let skip_or_fail = |why: String| {
        assert!(!require, "{TEST}: SPATIALSYNTH_REQUIRE_CUDA_EMULATOR is set but {why}");
        common::skip(TEST, &why);
    };
    if let Err(why) = spatialsynth::backend::cuda::nvrtc_available() {
        return skip_or_fail(why);
    }
    if !common::python_or_skip(TEST, &["json"]) {
        return;
    }
    let target = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let out = if std::fs::create_dir_all(&target).is_ok() { target } else { std::env::temp_dir() };
    let emulator = match common::cuda_emu::build(&out, true) {
        Ok(e) => e,
        Err(why) => return skip_or_fail(why),
    };
    let dir = tempfile::tempdir().unwrap();
    let repo = common::repo();
    let manifest = dir.path().join("frames.json");
    let made = std::process::Command::new("python3")
        .arg(repo.join("scripts/grid-box-manifest.py"))
        .arg(repo.join("data/sample/frames.json"))
        .args(["10", "4"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{TEST}: grid-box-manifest.py: {}", String::from_utf8_lossy(&made.stderr));
    std::fs::write(&manifest, &made.stdout).unwrap();
    // A run's scene graphs (the file's text) and run.json, of the frames of `manifest` on `backend`, into `name`, with
    // `args` and `env` more.
    let scene_of = |manifest: &std::path::Path, name: &str, backend: &str, args: &[&str], env: &[(&str, &str)]| {
        let out = dir.path().join(name);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_spatialsynth"));
        cmd.args(["--threads", "2", "scene"]).arg(manifest).arg("-o").arg(&out);
        cmd.args(["--backend", backend, "--quiet"]).args(args);
        if backend == "cuda" {
            cmd.envs(emulator.environment());
        }
        cmd.envs(env.iter().copied());
        let output = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let complaints: Vec<&str> = stderr.lines().filter(|l| l.starts_with("cuda emulator:")).take(5).collect();
        assert!(complaints.is_empty(), "{TEST} [{name}]: the emulator complained:\n{}", complaints.join("\n"));
        assert!(output.status.success(), "{TEST} [{name}]: {}\n{stderr}", output.status);
        let run: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
        (std::fs::read_to_string(out.join("scene_graphs.jsonl")).unwrap(), run)
    };
    let scene = |name: &str, backend: &str| scene_of(&manifest, name, backend, &[], &[]);
    let shape = |text: &str| {
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let len = |k: &str| v[k].as_array().map(Vec::len);
                (v["frame"].to_string(), len("objects"), len("dropped_objects"), len("relations"))
            })
            .collect::<Vec<_>>()
    };
    let (cuda_text, cuda_run) = scene("cuda", "cuda");
    let cuda = shape(&cuda_text);
    let (cpu_text, cpu_run) = scene("cpu", "cpu");
    let cpu = shape(&cpu_text);
    assert_eq!(cuda.len(), 20, "{TEST}: {} scenes", cuda.len());
    assert!(cuda.iter().all(|s| s.3.is_some_and(|r| r > 0)), "{TEST}: a scene without relations: {cuda:?}");
    assert_eq!(cuda, cpu, "{TEST}: the emulated CUDA run's scenes differ from the CPU reference's");
    let pinned = |run: &serde_json::Value, key: &str| run["pinned_memory"][key].as_u64().unwrap();
    assert!(pinned(&cuda_run, "allocations") > 0, "{TEST}: {}", cuda_run["pinned_memory"]);
    assert_eq!(pinned(&cuda_run, "pageable_uploads") + pinned(&cuda_run, "pageable_read_backs"), 0);
    // (The CPU and wgpu backends hold no page-locked memory of their own: run.json says nothing of it.)
    assert!(cpu_run.get("pinned_memory").is_none(), "{TEST}: the CPU run reports page-locked memory");
    // The first 8 frames again, in batches of 2 (four batches, two in flight), with no page-locked memory for the
    // backend (`--pinned-limit-mib 0`): every upload and read-back through pageable memory (the emulator checks those
    // copies' order too), and the same scene graphs as the whole run's, byte for byte. (A frame's scene graph does
    // not depend on its batch; 8 frames, not 20, to keep the test's time down.)
    let eight = dir.path().join("eight.json");
    let mut frames: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap();
    frames["frames"].as_array_mut().unwrap().truncate(8);
    std::fs::write(&eight, serde_json::to_vec(&frames).unwrap()).unwrap();
    let first_eight: String = cuda_text.split_inclusive('\n').take(8).collect();
    let (text, run) = scene_of(&eight, "cuda-unpinned", "cuda", &["--batch", "2", "--pinned-limit-mib", "0"], &[]);
    assert!(text == first_eight, "{TEST}: other scene graphs through pageable memory");
    assert_eq!(pinned(&run, "allocations"), 0, "{TEST}: {}", run["pinned_memory"]);
    assert_eq!(pinned(&run, "limit_bytes"), 0, "{TEST}: {}", run["pinned_memory"]);
    for key in ["refused_by_limit", "pageable_uploads", "pageable_read_backs"] {
        assert!(pinned(&run, key) > 0, "{TEST}: {key}: {}", run["pinned_memory"]);
    }
    // And with a driver that locks no more than 12 MiB at once (the emulator's SPATIALSYNTH_CUDA_EMU_PINNED_LIMIT), as a
    // host short of lockable memory: some buffers pinned, the rest refused by the driver (or not asked of it past
    // what it refused, `driver_ceiling_bytes`) and copied through pageable memory; the same scene graphs again.
    let driver_limit = [("SPATIALSYNTH_CUDA_EMU_PINNED_LIMIT", "12582912")];
    let (text, run) = scene_of(&eight, "cuda-refused", "cuda", &["--batch", "2"], &driver_limit);
    assert!(text == first_eight, "{TEST}: other scene graphs where the driver refuses to pin");
    for key in ["allocations", "refused_by_driver", "pageable_uploads", "pageable_read_backs"] {
        assert!(pinned(&run, key) > 0, "{TEST}: {key}: {}", run["pinned_memory"]);
    }
    assert!(pinned(&run, "peak_bytes") <= 12582912, "{TEST}: {}", run["pinned_memory"]);
}

#[test]
fn the_kernel_benchmark_runs_on_every_backend_but_the_emulator() {
    // `bench --kernels` at small sizes on the CPU reference and on each real GPU backend: every figure is there, with
    // positive times and throughputs, and the end-to-end frames carry the objects asked for (grid boxes added to the
    // annotated ones). On a GPU host this runs before the full benchmark of gpu-carry/run.sh. The emulator's timings
    // mean nothing: `bench --kernels` on it is an error saying so; the same benchmark still runs there through the
    // test-only `run_kernel_bench_on_emulator`, so that its CUDA paths (each kernel's device timing, the kernels'
    // resources, no bandwidth where the driver reports none) have run before the GPU host runs them.
    use spatialsynth::bench::{run_kernel_bench, KernelBenchOptions};
    const TEST: &str = "the_kernel_benchmark_runs_on_every_backend_but_the_emulator";
    let manifest = common::repo().join("data/sample/frames.json");
    let frames: Vec<_> = spatialsynth::io::read_manifest(&manifest)
        .unwrap()
        .iter()
        .take(2)
        .map(|spec| spatialsynth::io::load_frame(spec.as_ref().unwrap()).unwrap())
        .collect();
    let options = KernelBenchOptions {
        k1_frames: 3,
        k2_points: 20_000,
        k2_hypotheses: 64,
        k5_frames: 8,
        k5_objects: 5,
        e2e_frames: 4,
        e2e_objects: 10,
        repeats: 1,
        in_flight: 0,
    };
    let check = |b: &Backend, options: &KernelBenchOptions| {
        // The emulator's run goes through the test-only entry (`run_kernel_bench` refuses it, below): the benchmark's
        // CUDA paths, its device timings of each kernel, run here before a GPU runs them.
        let emulated = matches!(b, Backend::Cuda(c) if c.is_emulator());
        let run = if emulated { spatialsynth::bench::run_kernel_bench_on_emulator } else { run_kernel_bench };
        let bench = run(b, &frames, options).unwrap_or_else(|e| panic!("{}: {e}", b.describe()));
        let kernels: Vec<&str> = bench.figures.iter().map(|f| f.kernel.as_str()).collect();
        assert_eq!(
            kernels,
            ["K1 unproject", "K2 RANSAC scoring", "K5 pairwise relations", "closest-surface gaps", "K1-K5 end to end"]
        );
        for f in &bench.figures {
            assert!(f.backend_ms > 0.0 && f.cpu_ms > 0.0 && f.throughput > 0.0, "{f:?}");
        }
        let e2e = &bench.figures[4];
        let expected = format!("{} frames of 640x480, {}.0 objects per frame", options.e2e_frames, options.e2e_objects);
        assert!(e2e.workload.starts_with(&expected), "{}", e2e.workload);
        // As many batches at once as asked (0: the backend's default), the CPU reference one.
        let at_once = match options.in_flight {
            0 => b.batches_in_flight(),
            n => n,
        };
        assert!(e2e.workload.ends_with(&format!(", {at_once} at once (the CPU reference: 1)")), "{}", e2e.workload);
        // Its time step by step, on the backend and on the CPU reference: every step, in order, adding up to the
        // batches' busy time (one batch at once on the CPU, so there it is at most the wall time of the repeats).
        let steps = e2e.steps.as_ref().expect("the end-to-end figure breaks its time down");
        for (side, list) in [("backend", &steps.backend), ("cpu", &steps.cpu)] {
            let names: Vec<&str> = list.iter().map(|s| s.step.as_str()).collect();
            assert_eq!(names, spatialsynth::pipeline::GeometryStep::ALL.map(|s| s.name()), "{side}");
            let share: f64 = list.iter().map(|s| s.share).sum();
            assert!((share - 1.0).abs() < 1e-9, "{side}: {share}");
            assert!(list.iter().all(|s| s.busy_s >= 0.0 && s.ms_per_frame >= 0.0), "{side}: {list:?}");
            assert!(list[0].busy_s > 0.0, "{side}: K1+K2 took no time: {list:?}");
        }
        let cpu_busy: f64 = steps.cpu.iter().map(|s| s.busy_s).sum();
        assert!(cpu_busy <= e2e.cpu_ms * 1e-3 * options.repeats as f64 * 1.01, "{cpu_busy} s against {e2e:?}");
        // The process's CPU a frame while each side ran (no bound against the wall times: a busy machine stretches
        // those, not the CPU time).
        for cpu in [steps.backend_process_cpu_ms_per_frame, steps.cpu_process_cpu_ms_per_frame] {
            assert!(cpu.is_some_and(|c| c.is_finite() && c > 0.0), "{steps:?}");
        }
        let per_frame: f64 = steps.cpu.iter().map(|s| s.ms_per_frame).sum();
        let frames = (options.e2e_frames * options.repeats) as f64;
        assert!((per_frame * frames * 1e-3 - cpu_busy).abs() < 1e-9, "{per_frame} ms a frame, {cpu_busy} s");
        // The gaps' workload: the end-to-end frames, every pair of their objects (as many objects as the frames
        // were topped up to).
        let gaps = &bench.figures[3];
        let n = options.e2e_objects;
        let want = format!("{} frames, {} pairs of objects", options.e2e_frames, options.e2e_frames * n * (n - 1) / 2);
        assert!(gaps.workload.starts_with(&want), "{} against {want}", gaps.workload);
        assert!(gaps.backend_ms > 0.0 && gaps.cpu_ms > 0.0 && gaps.throughput > 0.0, "{gaps:?}");
        // K5's workload: 8 frames of 5 objects, 20 ordered pairs each.
        assert!(bench.figures[2].workload.ends_with(", 160 ordered pairs"), "{}", bench.figures[2].workload);
        // The device's own figures (its kernels timed one by one, shares of its peaks) are CUDA's alone.
        let no_device_figures = |f: &spatialsynth::bench::KernelFigure| {
            f.device_kernels.is_none() && f.fraction_of_peak_bandwidth.is_none() && f.fraction_of_peak_f32.is_none()
        };
        assert!(matches!(b, Backend::Cuda(_)) || bench.figures.iter().all(no_device_figures));
        assert!(matches!(b, Backend::Cuda(_)) || (bench.peak_bandwidth_gb_s, bench.peak_f32_tops) == (None, None));
        if matches!(b, Backend::Cuda(_)) {
            assert!(bench.figures.iter().all(|f| f.device_ms.is_some_and(|t| t > 0.0) || f.kernel.contains("end")));
            let kernels = bench.cuda_kernels.as_ref().expect("the CUDA kernels' resources");
            assert!(kernels.len() > 20 && kernels.iter().all(|k| k.block > 0), "{kernels:?}");
            // K1's share of the peak bandwidth, where the driver reports one (the emulator reports no memory clock:
            // no bandwidth, no fraction and no verdict, rather than a fraction of zero).
            let k1 = &bench.figures[0];
            // K1's kernels each timed on its own, in order, with the bytes each moves.
            let split = k1.device_kernels.as_ref().expect("K1's kernels one by one");
            let names: Vec<&str> = split.iter().map(|k| k.kernel.as_str()).collect();
            assert_eq!(names, ["count_valid", "scan", "write_points"]);
            assert!(split.iter().all(|k| k.device_ms > 0.0 && k.bytes > 0), "{split:?}");
            assert!(split[0].bytes < split[2].bytes, "{split:?}");
            let fractions = split.iter().map(|k| k.fraction_of_peak_bandwidth.is_some());
            assert!(fractions.clone().all(|f| f != emulated), "{split:?}");
            match emulated {
                false => {
                    assert!(bench.peak_bandwidth_gb_s.is_some_and(|p| p > 0.0));
                    assert!(k1.fraction_of_peak_bandwidth.is_some_and(|f| f > 0.0 && f.is_finite()), "{k1:?}");
                    let k5 = &bench.figures[2];
                    assert!(k5.fraction_of_peak_bandwidth.is_some_and(|f| f > 0.0 && f.is_finite()), "{k5:?}");
                    // K2's share of the peak f32 rate, where the device's capability is in the lanes' table.
                    let k2 = &bench.figures[1];
                    assert_eq!(k2.fraction_of_peak_f32.is_some(), bench.peak_f32_tops.is_some(), "{k2:?}");
                    assert!(k2.fraction_of_peak_f32.is_none_or(|f| f > 0.0 && f.is_finite()), "{k2:?}");
                }
                true => {
                    assert_eq!(bench.peak_bandwidth_gb_s, None);
                    assert_eq!((k1.fraction_of_peak_bandwidth, k1.meets_target), (None, None), "{k1:?}");
                    assert_eq!(bench.figures[2].fraction_of_peak_bandwidth, None);
                    assert_eq!((bench.peak_f32_tops, bench.figures[1].fraction_of_peak_f32), (None, None));
                }
            }
        }
    };
    check(&Backend::Cpu, &options);
    check(&Backend::Cpu, &KernelBenchOptions { in_flight: 3, ..options.clone() });
    let err = run_kernel_bench(&Backend::Cpu, &frames, &KernelBenchOptions { in_flight: 17, ..options.clone() });
    assert!(err.is_err_and(|e| e.to_string().contains("at most 16")));
    let mut refused = false;
    for b in gpu_backends(TEST) {
        match b {
            Backend::Cuda(cuda) if cuda.is_emulator() => {
                let err = run_kernel_bench(b, &frames, &options).unwrap_err().to_string();
                assert!(err.contains("emulator") && err.contains("no figures"), "{err}");
                refused = true;
                check(b, &options);
            }
            // A software Vulkan driver (lavapipe) takes seconds per frame of 10 objects: one frame of 4 there.
            Backend::Wgpu(_) => check(b, &KernelBenchOptions { e2e_frames: 1, e2e_objects: 4, ..options.clone() }),
            _ => check(b, &options),
        }
    }
    if !refused {
        common::skip(
            TEST,
            "no emulated CUDA device here to refuse (it runs in the child run of cuda_parity_on_the_emulator)",
        );
    }
}

#[test]
fn grid_boxes_top_up_the_frames_objects() {
    // The end-to-end benchmark's frames: grid boxes added up to the count asked for, distinct, inside the image,
    // after the frame's own objects (kept as they are); none added to a frame that has enough.
    let manifest = common::repo().join("data/sample/frames.json");
    let spec = spatialsynth::io::read_manifest(&manifest).unwrap().remove(0).unwrap();
    let frame = spatialsynth::io::load_frame(&spec).unwrap();
    let own = frame.objects.len();
    assert!(own > 0 && own < 10);
    for n in [10, 30] {
        let topped = spatialsynth::bench::with_grid_boxes(&frame, n);
        assert_eq!(topped.objects.len(), n);
        assert_eq!(topped.objects[..own], frame.objects[..]);
        let mut regions = std::collections::HashSet::new();
        for o in &topped.objects[own..] {
            let spatialsynth::geometry::unproject::ObjectRegion::Box { x0, y0, x1, y1 } = o.region else {
                panic!("{o:?}")
            };
            assert!(x0 < x1 && y0 < y1 && x1 <= frame.intrinsics.width && y1 <= frame.intrinsics.height, "{o:?}");
            assert!(regions.insert((x0, y0, x1, y1)), "a repeated box: {o:?}");
        }
    }
    assert_eq!(spatialsynth::bench::with_grid_boxes(&frame, own).objects, frame.objects);
}

#[test]
fn cuda_groups_a_batch_of_more_objects_than_one_launch_holds() {
    // K1's grouping launches a block row per object of the whole batch; past the grid's limit along y (65,535 on a
    // GPU; the emulator run lowers it, see cuda_parity_on_the_emulator) it launches again for the rest. A batch of a
    // tiny frame with 65 more boxes and instance regions (labelled) than the limit, then a labelled frame whose
    // objects all lie past the first launch: each frame's grouping as the CPU reference's.
    use spatialsynth::backend::FrameGeometryInput;
    const TEST: &str = "cuda_groups_a_batch_of_more_objects_than_one_launch_holds";
    let params = spatialsynth::pipeline::SceneConfig::default().ransac;
    let depth = |w: u32, h: u32| DepthImage {
        width: w,
        height: h,
        data: DepthData::F32 {
            values: (0..w * h).map(|i| if i % 7 == 3 { f32::NAN } else { 1.0 + 0.01 * (i % 13) as f32 }).collect(),
        },
    };
    let (tiny, tiny_k) = (depth(4, 3), intrinsics(4, 3));
    let (wide, wide_k) = (depth(40, 30), intrinsics(40, 30));
    let tiny_labels: Vec<u32> = (0..12).map(|i| i % 3).collect();
    let wide_labels: Vec<u32> = (0..1200).map(|i| (i % 40) / 10).collect();
    let few = [ObjectRegion::Instance { instance_id: 2 }, ObjectRegion::Box { x0: 3, y0: 2, x1: 33, y1: 20 }];
    for backend in gpu_backends(TEST) {
        let Backend::Cuda(cuda) = backend else { continue }; // wgpu groups a frame in one dispatch
        let objects = cuda.max_grid_yz() + 65;
        let many: Vec<ObjectRegion> = (0..objects)
            .map(|k| match k % 5 {
                4 => ObjectRegion::Instance { instance_id: k % 3 },
                _ => {
                    let (x0, y0) = (k % 4, (k / 4) % 3);
                    ObjectRegion::Box { x0, y0, x1: x0 + 1 + (k / 12) % 4, y1: y0 + 1 + (k / 48) % 3 }
                }
            })
            .collect();
        let frame = |depth, k, labels, regions, frame_key| FrameGeometryInput {
            depth,
            k,
            instance_labels: Some(labels),
            regions,
            frame_key,
            params: &params,
        };
        let inputs = [frame(&tiny, &tiny_k, &tiny_labels, &many, 1), frame(&wide, &wide_k, &wide_labels, &few, 2)];
        let want = Backend::Cpu.frames_geometry(&inputs, 10);
        let got = backend.frames_geometry(&inputs, 10);
        for (f, (g, w)) in got.iter().zip(&want).enumerate() {
            let (g, w) = (g.as_ref().unwrap(), w.as_ref().unwrap());
            assert_eq!(g.grouped.offsets, w.grouped.offsets, "{TEST}: frame {f}");
            assert_eq!(g.grouped.pixels, w.grouped.pixels, "{TEST}: frame {f}");
            assert_eq!(g.grouped.points_in_camera, w.grouped.points_in_camera, "{TEST}: frame {f}");
        }
        let grouped = want[0].as_ref().unwrap().grouped.offsets.windows(2).filter(|o| o[1] > o[0]).count();
        assert!(
            grouped > objects as usize * 3 / 4,
            "{TEST}: {grouped} of the tiny frame's {objects} objects have points"
        );
        assert!(!want[1].as_ref().unwrap().grouped.pixels.is_empty(), "{TEST}: the labelled frame groups points");
    }
}

#[test]
fn cuda_batches_more_frames_than_one_launch_holds() {
    // K2's kernels (and K1's sample normals) launch a block row, or layer, per frame of the batch; past the grid's
    // limit along y and z (65,535 on a GPU; the emulator run lowers it) they launch again for the rest. A batch of 65
    // more small frames than the limit, each with its own depth, key, region and two hypotheses: each frame's points,
    // grouping and ground fit as the CPU reference's.
    use spatialsynth::backend::FrameGeometryInput;
    const TEST: &str = "cuda_batches_more_frames_than_one_launch_holds";
    // Each frame a near-frontal patch, the up prior towards the camera: most planes through three points are
    // admissible.
    let params = RansacParams {
        hypotheses: 2,
        up_prior: [0.0, 0.0, -1.0],
        max_tilt_deg: 80.0,
        min_inliers: 3,
        ..spatialsynth::pipeline::SceneConfig::default().ransac
    };
    let k = intrinsics(8, 6);
    for backend in gpu_backends(TEST) {
        let Backend::Cuda(cuda) = backend else { continue }; // wgpu runs a batch frame by frame
        if let Ok(limit) = std::env::var("SPATIALSYNTH_CUDA_EMU_MAX_GRID_YZ") {
            assert_eq!(cuda.max_grid_yz().to_string(), limit, "{TEST}: the emulator's grid limit");
        }
        let frames = cuda.max_grid_yz() + 65;
        let depths: Vec<DepthImage> = (0..frames)
            .map(|f| DepthImage {
                width: 8,
                height: 6,
                data: DepthData::F32 {
                    values: (0..48u32)
                        .map(|i| if (f + i) % 11 == 0 { 0.0 } else { 1.0 + 0.002 * ((f * 7 + i * 3) % 17) as f32 })
                        .collect(),
                },
            })
            .collect();
        let regions: Vec<[ObjectRegion; 1]> =
            (0..frames).map(|f| [ObjectRegion::Box { x0: f % 3, y0: 1, x1: 5 + f % 3, y1: 3 + (f / 3) % 3 }]).collect();
        let inputs: Vec<FrameGeometryInput<'_>> = depths
            .iter()
            .zip(&regions)
            .enumerate()
            .map(|(f, (depth, regions))| FrameGeometryInput {
                depth,
                k: &k,
                instance_labels: None,
                regions,
                frame_key: f as u32,
                params: &params,
            })
            .collect();
        let want = Backend::Cpu.frames_geometry(&inputs, 10);
        let fits = want.iter().filter(|w| w.as_ref().unwrap().fit.is_some()).count();
        assert!(fits > frames as usize * 9 / 10, "{TEST}: {fits} of {frames} frames with a fit");
        let got = backend.frames_geometry(&inputs, 10);
        for (f, (g, w)) in got.iter().zip(&want).enumerate() {
            let (g, w) = (g.as_ref().unwrap(), w.as_ref().unwrap());
            assert_eq!(g.valid_points, w.valid_points, "{TEST}: frame {f}");
            assert_eq!(g.grouped.offsets, w.grouped.offsets, "{TEST}: frame {f}");
            assert_eq!(g.grouped.points_in_camera, w.grouped.points_in_camera, "{TEST}: frame {f}");
            assert_eq!(g.fit, w.fit, "{TEST}: frame {f}");
        }
    }
}

#[test]
fn k1_and_k2_batches_match_the_cpu_reference() {
    // `Backend::frames_geometry`, the pipeline's K1 and K2 for a batch: the sample frames and odd frames together in
    // one batch (no valid depth, two valid pixels, no hypotheses, a small bumpy frame of another size, a frame
    // whose instance labels do not cover its depth). Each frame's valid points and grouped points as the CPU's; its
    // ground fit equal to the CPU's on CUDA (f32 as written: the same subsample, draws and refinement), of the same
    // acceptance and within 1e-3 on wgpu (WGSL divides within 2.5 ulp, so the clouds differ in the last bits). The
    // frame with bad labels fails alone.
    use spatialsynth::backend::{BackendKind, FrameGeometryInput};
    use spatialsynth::geometry::rng::frame_key;
    use spatialsynth::pipeline::SceneConfig;
    let (_, loaded, _) = sample_frames();
    let config = SceneConfig::default();
    let params = config.ransac.clone();
    let no_hypotheses = RansacParams { hypotheses: 0, ..params.clone() };
    let tilted = RansacParams { up_prior: [0.0, -0.8, -0.6], ..params.clone() };
    // Up along the camera's x axis, no tilt allowed: no plane through the ramp below is admissible.
    let sideways = RansacParams { up_prior: [1.0, 0.0, 0.0], max_tilt_deg: 0.0, ..params.clone() };
    let (w, h) = (64u32, 48u32);
    let small = intrinsics(w, h);
    let u16_depth = |values: Vec<u16>| DepthImage {
        width: w,
        height: h,
        data: DepthData::U16 { values, units_per_meter: 1000.0, invalid_value: None },
    };
    let invalid = u16_depth(vec![0; (w * h) as usize]);
    let mut two = vec![0u16; (w * h) as usize];
    two[5] = 1500;
    two[100] = 1600;
    let two = u16_depth(two);
    // A floor-like ramp (depth grows with the row) with noise and some holes.
    let bumpy = u16_depth(
        (0..w * h)
            .map(|i| {
                let (u, v) = (i % w, i / w);
                if (u * 7 + v * 13) % 17 == 0 {
                    0
                } else {
                    (800 + 40 * v + (u * 7919 + v * 104729) % 23) as u16
                }
            })
            .collect(),
    );
    let boxes =
        [ObjectRegion::Box { x0: 10, y0: 10, x1: 30, y1: 40 }, ObjectRegion::Box { x0: 0, y0: 0, x1: 64, y1: 48 }];
    let instance = [ObjectRegion::Instance { instance_id: 1 }];
    let short_labels = vec![1u32; 10];
    let bumpy_labels: Vec<u32> = (0..w * h).map(|i| (i % w) / 16 + 2 * ((i / w) % 2)).collect();
    let labelled = [
        ObjectRegion::Instance { instance_id: 3 },
        ObjectRegion::Box { x0: 5, y0: 5, x1: 20, y1: 9 },
        ObjectRegion::Instance { instance_id: 1 },
        ObjectRegion::Instance { instance_id: 0 },
    ];
    let regions: Vec<Vec<ObjectRegion>> =
        loaded.iter().map(|f| f.objects.iter().map(|o| o.region.clone()).collect()).collect();
    let mut inputs: Vec<FrameGeometryInput<'_>> = loaded
        .iter()
        .zip(&regions)
        .filter_map(|(f, r)| {
            Some(FrameGeometryInput {
                depth: f.depth.as_ref()?,
                k: &f.intrinsics,
                instance_labels: f.instance_labels.as_deref(),
                regions: r,
                frame_key: frame_key(&f.spec.key),
                params: &params,
            })
        })
        .collect();
    assert!(inputs.len() >= 5);
    let odd = |depth, params, key| FrameGeometryInput {
        depth,
        k: &small,
        instance_labels: None,
        regions: &boxes,
        frame_key: key,
        params,
    };
    inputs.insert(1, odd(&invalid, &params, 11));
    inputs.insert(3, odd(&two, &params, 12));
    // A labelled frame ahead of the sample frame with instance masks: the batch's labels lie one frame after another.
    inputs.insert(
        4,
        FrameGeometryInput { instance_labels: Some(&bumpy_labels), regions: &labelled, ..odd(&bumpy, &params, 18) },
    );
    assert!(inputs[5..].iter().any(|f| f.instance_labels.is_some()), "a labelled sample frame after it");
    inputs.push(odd(&bumpy, &params, 13));
    inputs.push(odd(&bumpy, &no_hypotheses, 14));
    inputs.push(odd(&bumpy, &tilted, 15));
    let bad = inputs.len();
    inputs.push(FrameGeometryInput {
        instance_labels: Some(&short_labels),
        regions: &instance,
        ..odd(&bumpy, &params, 16)
    });
    let step = config.normal_max_step_px;
    let want = Backend::Cpu.frames_geometry(&inputs[..bad], step);
    for backend in gpu_backends("k1_and_k2_batches_match_the_cpu_reference") {
        let what = backend.describe();
        let got = backend.frames_geometry(&inputs, step);
        assert_eq!(got.len(), inputs.len(), "{what}");
        let err = got[bad].as_ref().unwrap_err().to_string();
        assert!(err.contains("instance labels"), "{what}: {err}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let (g, w) = (g.as_ref().unwrap(), w.as_ref().unwrap());
            let what = format!("{what}: frame {i}");
            assert_eq!(g.valid_points, w.valid_points, "{what}");
            assert_eq!(g.grouped.offsets, w.grouped.offsets, "{what}");
            assert_eq!(g.grouped.pixels, w.grouped.pixels, "{what}");
            for (a, b) in g.grouped.points_in_camera.iter().zip(&w.grouped.points_in_camera) {
                assert!((0..3).all(|c| close(a[c], b[c], 1e-6)), "{what}: {a:?} vs {b:?}");
            }
            match backend.kind() {
                BackendKind::Cuda => assert_eq!(g.fit, w.fit, "{what}"),
                _ => {
                    assert_eq!(g.fit.map(|f| f.accepted), w.fit.map(|f| f.accepted), "{what}");
                    if let (Some(a), Some(b)) = (g.fit, w.fit) {
                        assert!((0..3).all(|c| (a.plane.normal[c] - b.plane.normal[c]).abs() < 1e-3), "{what}");
                        assert!((a.plane.offset - b.plane.offset).abs() < 1e-3, "{what}");
                    }
                }
            }
        }
        // The odd frames: nothing found where nothing can be.
        assert_eq!((got[1].as_ref().unwrap().valid_points, got[1].as_ref().unwrap().fit), (0, None), "{what}");
        assert_eq!((got[3].as_ref().unwrap().valid_points, got[3].as_ref().unwrap().fit), (2, None), "{what}");
        assert!(got[bad - 2].as_ref().unwrap().fit.is_none(), "{what}: no hypotheses, no plane");
        assert!(want[bad - 3].as_ref().unwrap().fit.is_some(), "the bumpy frame has a plane");
        // A batch in which no frame has an admissible plane (every score 0): no fit, and no error.
        let alone = [odd(&bumpy, &sideways, 17)];
        let got = backend.frames_geometry(&alone, step);
        let want = Backend::Cpu.frames_geometry(&alone, step);
        assert_eq!(want[0].as_ref().unwrap().fit, None, "the CPU finds no plane");
        assert!(matches!(got[0].as_ref(), Ok(g) if g.fit.is_none()), "{what}: {:?}", got[0].as_ref().map(|g| g.fit));
    }
}
