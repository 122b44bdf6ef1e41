//! Criterion benchmarks of five of the host's frame-sized steps around a GPU batch (shared by the CUDA and wgpu
//! backends), each on a pool of one thread and on one of every thread, named `host_batch/<step>/<threads>`. These
//! steps ran on the batch's own thread before 2026-12-06; the one-thread pool runs today's code on one thread (the
//! same work; the old loops differed only in reusing a buffer or growing a vector), and the ratio is what one batch
//! alone gains: an upper bound for a run, where two batches in flight and the pipeline's other parallel steps share
//! the pool. A GPU run keeps two batches in flight, so host work that runs on one thread per batch bounds the frames
//! a second whatever the host's cores. The depth words land in an ordinary vector here; on CUDA they go into a
//! pinned write-combined staging buffer, which this does not time. The gathers' index is timed both ways:
//! `gather_index` into a fresh vector (CUDA's until 2be860d, which the driver then copied from pageable memory) and
//! `gather_index_into` into a reused buffer (CUDA's now: a pinned staging buffer the device copies from).
//!
//! The workload is a 64-frame batch (a 16-core host's batch: four frames a thread) of 640x480 frames with 10 objects
//! of 15,000 points each: 64 depth images, 640 DBSCAN jobs, 9.6 million points.
//!
//! The allocator is the CLI's (a cache of freed large blocks over glibc with a fixed mmap threshold), so that the
//! steps' buffers cost what they cost in a run.
//!
//! `cargo bench --bench host` (add `-- <step>` to pick one).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spatialsynth::backend::pack::{
    clusterings_in_batch_order_packed, dbscan_chunks, dbscan_range_refusal, par_concat, par_fill, DepthBatch,
};
use spatialsynth::geometry::dbscan::DbscanJob;
use spatialsynth::geometry::unproject::{DepthData, DepthImage};
use spatialsynth::geometry::{Intrinsics, Point3};

#[global_allocator]
static ALLOCATOR: spatialsynth::alloc::BigBlockCache = spatialsynth::alloc::BigBlockCache::new(256 << 20);

const FRAMES: usize = 64;
const OBJECTS: usize = 10;
const POINTS: usize = 15_000;

/// One pool of one thread and one of every thread (rayon's default), each with its name.
fn pools() -> Vec<(String, rayon::ThreadPool)> {
    let all = rayon::current_num_threads();
    let mut out = Vec::new();
    for n in [1, all] {
        if out.iter().any(|(_, p): &(String, rayon::ThreadPool)| p.current_num_threads() == n) {
            continue;
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().expect("a thread pool");
        out.push((format!("{n}_threads"), pool));
    }
    out
}

/// A small deterministic generator (xorshift), so that the workload is the same in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
}

fn host_batch(c: &mut Criterion) {
    // As the CLI's main does first.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; no other thread allocates yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let k = Intrinsics { fx: 525.0, fy: 525.0, cx: 319.5, cy: 239.5, width: 640, height: 480 };
    let depths: Vec<DepthImage> = (0..FRAMES)
        .map(|_| DepthImage {
            width: 640,
            height: 480,
            data: DepthData::U16 {
                values: (0..640 * 480).map(|_| (rng.next() % 8000) as u16).collect(),
                units_per_meter: 1000.0,
                invalid_value: None,
            },
        })
        .collect();
    let frames: Vec<(&DepthImage, &Intrinsics)> = depths.iter().map(|d| (d, &k)).collect();
    let objects: Vec<Vec<Point3>> = (0..FRAMES * OBJECTS)
        .map(|_| (0..POINTS).map(|_| [0, 1, 2].map(|_| (rng.next() % 4000) as f32 * 1e-3)).collect())
        .collect();
    let jobs: Vec<DbscanJob<'_>> = objects.iter().map(|p| DbscanJob { points: p, eps: 0.05, min_points: 10 }).collect();
    // CUDA's labels, one word a point: per job, one point in 20 noise, the rest in clusters of 3,000 consecutive
    // points (K1's pixel order) named by their first (a core point, labelled itself), four in five of them core
    // points.
    let mut job_start = vec![0u32];
    let mut words = Vec::with_capacity(FRAMES * OBJECTS * POINTS);
    for _ in 0..FRAMES * OBJECTS {
        let first = *job_start.last().expect("a start");
        words.extend((0..POINTS as u32).map(|i| match (i % 3000, rng.next() % 20) {
            (0, _) => (first + i) | 1 << 31,
            (_, 0) => u32::MAX,
            (_, r) => (first + (i / 3000) * 3000) | u32::from(r % 5 != 0) << 31,
        }));
        job_start.push(first + POINTS as u32);
    }
    // Each object's points' indices in its frame's grouped points (K3's gather), every other point kept.
    let kept: Vec<Vec<u32>> =
        (0..FRAMES * OBJECTS).map(|_| (0..POINTS as u32).filter(|i| i % 2 == 0).collect()).collect();
    let bases: Vec<(u64, &[u32])> = kept.iter().enumerate().map(|(i, k)| ((i * POINTS) as u64, k.as_slice())).collect();
    let total = (FRAMES * OBJECTS * POINTS) as u64;

    let mut g = c.benchmark_group("host_batch");
    g.sample_size(10);
    for (threads, pool) in pools() {
        g.throughput(Throughput::Elements((FRAMES * 640 * 480) as u64));
        let mut dst = vec![0u32; DepthBatch::layout(&frames, 256).expect("a layout").word_count as usize];
        g.bench_function(BenchmarkId::new("depth_words", &threads), |b| {
            b.iter(|| pool.install(|| DepthBatch::write_words(black_box(&frames), &mut dst)))
        });
        g.throughput(Throughput::Elements(words.len() as u64));
        g.bench_function(BenchmarkId::new("dbscan_labels", &threads), |b| {
            b.iter(|| {
                pool.install(|| clusterings_in_batch_order_packed(black_box(&job_start), &words).expect("labels"))
            })
        });
        g.bench_function(BenchmarkId::new("finite_check", &threads), |b| {
            b.iter(|| pool.install(|| dbscan_chunks(black_box(&jobs), 1 << 26).expect("chunks")))
        });
        // The 2^31-cell range check: what CUDA's K3 read of the host's points until its `cell_of` checked them (now
        // only a refused batch runs it, to name the job); with the finite check above (wgpu's, and CUDA's before),
        // the host work that moved to the device.
        let all_jobs: Vec<usize> = (0..jobs.len()).collect();
        g.bench_function(BenchmarkId::new("range_check", &threads), |b| {
            b.iter(|| pool.install(|| assert!(dbscan_range_refusal(black_box(&jobs), &all_jobs).is_none())))
        });
        g.throughput(Throughput::Elements(kept.iter().map(Vec::len).sum::<usize>() as u64));
        g.bench_function(BenchmarkId::new("gather_index", &threads), |b| {
            b.iter(|| {
                pool.install(|| {
                    par_concat::<_, u32, _>(black_box(&bases), |(_, k)| k.len(), |item| places(item, total))
                        .expect("an index")
                })
            })
        });
        // The same index written into a reused buffer (on CUDA since 2be860d: a pooled pinned staging buffer the
        // device copies from) instead of a fresh vector.
        let mut index = vec![0u32; kept.iter().map(Vec::len).sum::<usize>()];
        g.bench_function(BenchmarkId::new("gather_index_into", &threads), |b| {
            b.iter(|| {
                pool.install(|| {
                    let filled = par_fill(black_box(&bases), |(_, k)| k.len(), |item| places(item, total), &mut index);
                    assert!(filled)
                })
            })
        });
    }
    g.finish();
}

/// The gather index's words for one object (`base`: its first point in the batch; `indices`: its kept points): each
/// point's place in the batch, `None` past `total` or a word (as the CUDA backend's `DeviceIndex::write` checks).
fn places<'a>(&(base, indices): &(u64, &'a [u32]), total: u64) -> impl Iterator<Item = Option<u32>> + 'a {
    indices.iter().map(move |&k| Some(base + u64::from(k)).filter(|&at| at < total)?.try_into().ok())
}

criterion_group!(benches, host_batch);
criterion_main!(benches);
