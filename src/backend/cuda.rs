//! The `cuda` backend: the CUDA C kernels of `kernels/`, compiled at run time by NVRTC through `cudarc` and
//! launched on the first CUDA device.
//!
//! - **Loading.** cudarc loads `libcuda` and `libnvrtc` when the backend opens (feature `dynamic-loading`): a build
//!   needs nothing CUDA. Without `libcuda` (no driver) or `libnvrtc` (no CUDA 13 NVRTC), [`CudaBackend::new`] is an
//!   `Err` saying which is missing. It never panics (cudarc would, if asked blindly) and never falls back silently.
//! - **Compiling.** Each module is one string: `common.cuh`, the shared headers it uses (`scan.cuh`, `rng.cuh`) and
//!   its kernel file, embedded with `include_str!`. NVRTC compiles it with explicit options ([`compile_options`]:
//!   no fused multiply-add, IEEE division and square root, no flush to zero) for the device's virtual architecture,
//!   once per process (the PTX is cached per architecture). `tests/cuda_kernels.rs` compiles every module for
//!   `compute_80` and `compute_90` and assembles the PTX with `ptxas -arch=sm_90` where no GPU is present.
//! - **Batches.** K1 and K2 take a batch of frames ([`CudaBackend::frames_geometry`]): the depth of every frame in one
//!   device buffer (staged through pinned host memory, uploaded asynchronously), every device step of every frame
//!   launched between two round trips, the cloud left on the device (only the objects' points and the scoring
//!   subsamples come back; the large read-backs into pinned host memory, `CudaBackend::read_back`). K3, K4 and K5
//!   take every object and every pair of a batch of frames in one set of launches each, records placed by prefix
//!   sums (compact, in a fixed order). Each call runs on its own stream, except where it reads what an earlier call
//!   left on the device: K3 and K4 gather from K1's grouped buffer (K1's stream synchronised before; cudarc's event
//!   tracking is off, see [`CudaBackend::new`]), the gaps run on K4's stream.
//! - **Parity.** The host steps (packing, the planes through the drawn points, the winner and refinement, the hull
//!   and oriented box) are the code the `wgpu` backend uses ([`super::pack`]) and the CPU reference's own; K3's grid
//!   is the CPU reference's (cells of side eps/√3, dense cells all core, clusters joined cell by cell), built on the
//!   device (`cell_of`, `claim_cells`, `scatter_points`: a hash table of the occupied cells), where wgpu bins on the
//!   host. `tests/parity.rs` holds this backend to the CPU reference with the same test bodies.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, DriverError,
    LaunchArgs, LaunchConfig, PinnedHostSlice, PushKernelArg,
};
use cudarc::nvrtc::{CompileOptions, Ptx};
use rayon::prelude::*;

use super::layout::{DbscanParams, GpuCanonical, GpuObjectStats, GpuSupport};
use super::pack::{
    clusterings_in_batch_order_packed, dbscan_chunks, dbscan_chunks_of_shapes, dbscan_refusal, frame_chunks,
    gap_chunks, gap_matrices, gpu_regions, grouping_without_launch, hypotheses_from_draws, pack_relations, par_fill,
    relation_chunks, split_clouds, split_parts, split_relations, stats_chunks, stats_chunks_of_counts, support_test,
    Aabb, DbscanBatch, DepthBatch, GapPack, JobShape, StatsObject, StatsPack,
};
use super::{FrameGeometry, FrameGeometryInput, IndexedJob, IndexedPoints, KernelResources, PinnedMemory};
use crate::geometry::dbscan::{Clustering, DbscanJob};
use crate::geometry::ransac::{
    fit_from_scores_batch, score_sample_indices, GroundBatchDevice, GroundFrame, PlaneFit, RansacParams, Support,
};
use crate::geometry::relations::{RelationRecord, GAP_CHUNK, GAP_SUPER};
use crate::geometry::stats::{NoiseModel, ObjectSummary, StatsInput};
use crate::geometry::unproject::{DepthImage, GroupedPoints, ObjectRegion, PointCloud};
use crate::geometry::{Intrinsics, Plane, Point3, SharedSlice};

/// Threads per block (`BLOCK` in `kernels/common.cuh`).
const BLOCK: u32 = 256;
// The gap kernels take 8 super-chunk pairs per thread of a block (GAP_TILE in kernels/gaps.cu).
const _: () = assert!(8 * BLOCK as u64 == super::pack::GAP_TILE);
/// Pixels per K1 tile (`TILE` in `kernels/unproject.cu`).
const TILE: u32 = 2048;
/// Threads of the one-block prefix sums (`SCAN_THREADS` in `kernels/common.cuh`: `scan_counts` in
/// `kernels/scan.cuh`, `scan_frames` in `kernels/group.cu`).
const SCAN_THREADS: u32 = 1024;
/// The kernels launched with [`SCAN_THREADS`] threads a block (every other one with [`BLOCK`]), as their
/// `__launch_bounds__` declare.
const SCAN_KERNELS: [&str; 2] = ["scan_counts", "scan_frames"];

/// The threads a block of kernel `entry` is launched with (what its `__launch_bounds__` must declare:
/// tests/cuda_kernels.rs checks the PTX).
pub fn block_of(entry: &str) -> u32 {
    if SCAN_KERNELS.contains(&entry) {
        SCAN_THREADS
    } else {
        BLOCK
    }
}
/// Hypotheses per block of K2's scoring (`HYPS_PER_BLOCK` in `kernels/ransac.cu`).
const HYPS_PER_BLOCK: u32 = 8;
/// Subsample points per block slice of K2's scoring.
const SCORE_SLICE: u32 = 16_384;
/// The most points (K1 pixels, K4 points) in one launch: 32-bit float indices (3 per point) stay in range.
const MAX_POINTS: u64 = 1 << 28;
/// The most K3 points in one launch (the cells' hash table takes up to 4 slots a point).
const MAX_DBSCAN_POINTS: u64 = 1 << 26;
// `unsort` puts the core flag in the top bit of each label (a batch index, below this).
const _: () = assert!(MAX_DBSCAN_POINTS <= 1 << 31);
/// The most buckets of the gap kernels' spatial order in one launch (4 bytes each, twice: 8 GB).
const MAX_GAP_BUCKETS: u64 = 1 << 30;
/// The most K5 pairs in one launch (80 bytes each: 2.7 GB of records).
const MAX_PAIRS: u64 = 1 << 25;

/// One NVRTC module: its kernel file, its whole source (common.cuh, the shared headers, the kernel file) and its
/// entry points.
pub struct KernelModule {
    pub file: &'static str,
    pub source: &'static str,
    pub entries: &'static [&'static str],
}

macro_rules! kernel_source {
    ($($file:literal),+) => { concat!($(include_str!(concat!("../../kernels/", $file))),+) };
}

/// Every CUDA module of the backend, named by its kernel file (the twin of `shaders/<name>.wgsl` and
/// `src/geometry/<name>.rs`).
pub const MODULES: [KernelModule; 7] = [
    KernelModule {
        file: "unproject.cu",
        source: kernel_source!("common.cuh", "scan.cuh", "unproject.cu"),
        entries: &[
            "count_valid",
            "scan_counts",
            "scan_tile_sums",
            "scan_tiles_apply",
            "write_points",
            "sample_normals",
        ],
    },
    KernelModule {
        file: "group.cu",
        source: kernel_source!("common.cuh", "scan.cuh", "group.cu"),
        entries: &["count_members", "scan_frames", "object_starts", "write_members"],
    },
    KernelModule {
        file: "ransac.cu",
        source: kernel_source!("common.cuh", "rng.cuh", "ransac.cu"),
        entries: &["gather_samples", "draw", "score", "sample_supports", "count_inliers"],
    },
    KernelModule {
        file: "dbscan.cu",
        source: kernel_source!("common.cuh", "scan.cuh", "dbscan.cu"),
        entries: &[
            "gather_points",
            "cell_of",
            "claim_cells",
            "scan_counts",
            "scan_tile_sums",
            "scan_tiles_apply",
            "scatter_points",
            "count_neighbours",
            "unite",
            "flatten",
            "assign_borders",
            "unsort",
        ],
    },
    KernelModule {
        file: "stats.cu",
        source: kernel_source!("common.cuh", "scan.cuh", "reduce.cuh", "stats.cu"),
        entries: &["gather_canonical", "summarize"],
    },
    KernelModule { file: "relations.cu", source: kernel_source!("common.cuh", "relations.cu"), entries: &["relate"] },
    KernelModule {
        file: "gaps.cu",
        source: kernel_source!("common.cuh", "scan.cuh", "gaps.cu"),
        entries: &[
            "order_count",
            "scan_counts",
            "scan_tile_sums",
            "scan_tiles_apply",
            "order_scatter",
            "run_boxes",
            "pair_bounds",
            "refine_bounds",
            "search_pairs",
        ],
    },
];

/// The virtual architectures NVRTC 13 compiles for, by compute capability (major × 10 + minor). A device gets the
/// newest one not above its own (PTX runs on later devices through the driver's JIT).
pub const ARCHITECTURES: [(u32, &str); 7] = [
    (75, "compute_75"),
    (80, "compute_80"),
    (86, "compute_86"),
    (89, "compute_89"),
    (90, "compute_90"),
    (100, "compute_100"),
    (120, "compute_120"),
];

/// The NVRTC options of every module, explicit: IEEE f32 (no fused multiply-add, so the device rounds every
/// operation as the CPU reference does; correctly rounded division and square root; no flush to zero), C++17.
pub fn compile_options(file: &str, arch: &'static str) -> CompileOptions {
    CompileOptions {
        ftz: Some(false),
        prec_sqrt: Some(true),
        prec_div: Some(true),
        fmad: Some(false),
        use_fast_math: Some(false),
        arch: Some(arch),
        name: Some(file.to_string()),
        options: vec!["--std=c++17".into(), "--generate-line-info".into()],
        ..CompileOptions::default()
    }
}

/// `Ok` when `libnvrtc` (CUDA 13) can be loaded, else why not.
pub fn nvrtc_available() -> Result<(), String> {
    // SAFETY: only tries to open the shared library (libloading); no NVRTC function is called.
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        Ok(())
    } else {
        Err("NVRTC (libnvrtc.so.13, CUDA 13) not found: install the CUDA 13 toolkit, or `pip install \
             nvidia-cuda-nvrtc==13.0.88` and add site-packages/nvidia/cu13/lib to LD_LIBRARY_PATH"
            .into())
    }
}

/// `Ok` when the CUDA driver library can be loaded, else why not.
pub fn driver_available() -> Result<(), String> {
    // SAFETY: only tries to open the shared library (libloading); no driver function is called.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        Ok(())
    } else {
        Err("no CUDA driver (libcuda.so.1 not found): the CUDA backend needs an NVIDIA GPU and its driver; use \
             --backend wgpu or cpu"
            .into())
    }
}

/// Compiles one module to PTX text (NVRTC's log on error).
pub fn compile_module(module: &KernelModule, arch: &'static str) -> Result<String, String> {
    nvrtc_available()?;
    let options = compile_options(module.file, arch);
    // cudarc unwraps a few NVRTC calls internally: a panic there becomes an error naming the module.
    let compiled = std::panic::catch_unwind(|| cudarc::nvrtc::compile_ptx_with_opts(module.source, options))
        .map_err(|_| format!("NVRTC panicked compiling {} for {arch}", module.file))?;
    match compiled {
        Ok(ptx) => Ok(ptx.to_src()),
        Err(cudarc::nvrtc::CompileError::CompileError { log, .. }) => {
            Err(format!("NVRTC cannot compile {} for {arch}:\n{}", module.file, log.to_string_lossy()))
        }
        Err(e) => Err(format!("NVRTC cannot compile {} for {arch}: {e}", module.file)),
    }
}

/// Every module compiled for `arch`, once per process (cached): PTX text in [`MODULES`] order.
pub fn compiled_modules(arch: &'static str) -> Result<Arc<Vec<String>>, String> {
    type PtxByArch = HashMap<&'static str, Arc<Vec<String>>>;
    static CACHE: OnceLock<Mutex<PtxByArch>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(hit) = cache.lock().map_err(|_| "PTX cache poisoned")?.get(arch) {
        return Ok(hit.clone());
    }
    let ptx: Vec<String> = MODULES.iter().map(|m| compile_module(m, arch)).collect::<Result<_, _>>()?;
    let ptx = Arc::new(ptx);
    cache.lock().map_err(|_| "PTX cache poisoned")?.insert(arch, ptx.clone());
    Ok(ptx)
}

/// Set to `1`, the backend keeps cudarc's event tracking: an event recorded after, and a wait before, every use of a
/// buffer on a stream (about seven in ten of the driver calls the backend makes with it, as the CUDA emulator counts
/// them: BENCHMARKS.md). Off by default: the backend orders its streams itself (see [`CudaBackend::new`]).
pub const EVENT_TRACKING_VAR: &str = "SPATIALSYNTH_CUDA_EVENT_TRACKING";

/// How a host thread waits for the device (`blocking`, the default; `spin`; `yield`; `auto`, the driver's own
/// choice, which spins when the host has more cores than CUDA contexts). Blocking puts the waiting thread to sleep:
/// a wake-up costs some microseconds, but a spinning thread burns a core for as long as the device works, and a run
/// keeps several batches in flight, each with a thread that waits, while the host's steps for other batches need
/// the cores (BENCHMARKS.md: the host's CPU a frame). `bench --kernels` reports the process's CPU a frame, so the two
/// can be compared on a GPU.
pub const SYNC_VAR: &str = "SPATIALSYNTH_CUDA_SYNC";

/// The scheduling flag [`SYNC_VAR`] asks for, and its name.
fn sync_mode() -> Result<(cudarc::driver::sys::CUctx_flags, &'static str), String> {
    sync_mode_of(&std::env::var(SYNC_VAR).unwrap_or_default())
}

/// The scheduling flag a value of [`SYNC_VAR`] names (empty: the default), and its name.
fn sync_mode_of(value: &str) -> Result<(cudarc::driver::sys::CUctx_flags, &'static str), String> {
    use cudarc::driver::sys::CUctx_flags as F;
    match value {
        "" | "blocking" => Ok((F::CU_CTX_SCHED_BLOCKING_SYNC, "blocking")),
        "spin" => Ok((F::CU_CTX_SCHED_SPIN, "spin")),
        "yield" => Ok((F::CU_CTX_SCHED_YIELD, "yield")),
        "auto" => Ok((F::CU_CTX_SCHED_AUTO, "auto")),
        other => Err(format!("{SYNC_VAR}={other:?}: expected blocking, spin, yield or auto")),
    }
}

/// Sets the scheduling part of the (primary) context's flags to `mode`, keeping its other flags (`cuCtxSetFlags`
/// replaces them all).
fn set_scheduling(ctx: &CudaContext, mode: cudarc::driver::sys::CUctx_flags) -> Result<(), DriverError> {
    use cudarc::driver::sys;
    ctx.bind_to_thread()?;
    let mut flags = 0u32;
    // SAFETY: the context is current on this thread; cuCtxGetFlags writes one unsigned int through a valid pointer,
    // and cuCtxSetFlags takes the flags by value.
    unsafe {
        sys::cuCtxGetFlags(&mut flags).result()?;
        let sched = sys::CUctx_flags::CU_CTX_SCHED_MASK as u32;
        sys::cuCtxSetFlags((flags & !sched) | mode as u32).result()
    }
}

/// The device's memory divided by this is what its stream-ordered allocator keeps, once freed, for the next
/// allocations.
/// The pool's default (0) hands every freed block back to the driver at each stream synchronisation, so that every
/// batch (several synchronisations each) would map its buffers afresh; a quarter of the device holds many batches
/// in flight and leaves the rest to other processes (a model runner on the same GPU).
pub const POOL_KEEP_DIVISOR: u64 = 4;

/// The device's default memory pool (the one `cuMemAllocAsync` draws from), where it has memory pools.
fn default_pool(ctx: &CudaContext) -> Result<Option<cudarc::driver::sys::CUmemoryPool>, String> {
    if !ctx.has_async_alloc() {
        return Ok(None);
    }
    let mut pool: cudarc::driver::sys::CUmemoryPool = std::ptr::null_mut();
    ctx.bind_to_thread().map_err(de)?;
    // SAFETY: writes one pool handle through a valid pointer, for the context's own device.
    unsafe { cudarc::driver::sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) }.result().map_err(de)?;
    Ok(Some(pool))
}

/// The default pool's release threshold: set to `keep` when given, then read back.
fn pool_release_threshold(pool: cudarc::driver::sys::CUmemoryPool, keep: Option<u64>) -> Result<u64, DriverError> {
    use cudarc::driver::sys::{cuMemPoolGetAttribute, cuMemPoolSetAttribute, CUmemPool_attribute};
    let attribute = CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
    if let Some(mut keep) = keep {
        // SAFETY: the release threshold is a cuuint64_t, read through a valid pointer; the pool is the device's.
        unsafe { cuMemPoolSetAttribute(pool, attribute, (&mut keep as *mut u64).cast()) }.result()?;
    }
    let mut kept = 0u64;
    // SAFETY: as above, written through a valid pointer.
    unsafe { cuMemPoolGetAttribute(pool, attribute, (&mut kept as *mut u64).cast()) }.result()?;
    Ok(kept)
}

/// Sets the default pool's release threshold to 1 / [`POOL_KEEP_DIVISOR`] of the device's memory.
fn keep_pool_memory(ctx: &CudaContext) -> Result<(), String> {
    let Some(pool) = default_pool(ctx)? else { return Ok(()) };
    let keep = ctx.total_mem().map_err(de)? as u64 / POOL_KEEP_DIVISOR;
    pool_release_threshold(pool, Some(keep))
        .map(drop)
        .map_err(|e| format!("the device's memory pool refuses a release threshold: {}", de(e)))
}

/// The stream of one backend call ([`CudaBackend::stream`]). Dropped, it waits for the stream, so that no call leaves
/// work running, error or not: a call's work may read buffers of other streams (K3 and K4 gather from K1's grouped
/// points), which their owners free on their own streams, and with cudarc's event tracking off nothing else orders
/// those frees after it. On the success paths the stream is idle by then (each call ends by reading its results
/// back), so the wait returns at once; on an early `?` it is what keeps the other stream's free after the gather.
struct CallStream(Arc<CudaStream>);

impl std::ops::Deref for CallStream {
    type Target = Arc<CudaStream>;
    fn deref(&self) -> &Arc<CudaStream> {
        &self.0
    }
}

impl Drop for CallStream {
    fn drop(&mut self) {
        // (An error here leaves the context broken; the call's own error, if any, is the one to report.)
        let _ = self.0.synchronize();
    }
}

fn de(e: DriverError) -> String {
    format!("CUDA: {e}")
}

fn launch(grid: (u32, u32), block: u32) -> LaunchConfig {
    LaunchConfig { grid_dim: (grid.0.max(1), grid.1.max(1), 1), block_dim: (block, 1, 1), shared_mem_bytes: 0 }
}

fn blocks_for(n: u64, per_block: u32) -> Result<u32, String> {
    u32::try_from(n.div_ceil(u64::from(per_block)).max(1)).map_err(|_| format!("{n} elements exceed one launch"))
}

// SAFETY (for each impl): plain `#[repr(C)]` records of 32-bit fields with explicit padding, passed by value to
// kernels whose parameter is the twin struct of the same size (checked by `static_assert` in the kernel files).
unsafe impl DeviceRepr for GpuSupport {}
unsafe impl DeviceRepr for DbscanParams {}

/// K3's grid on the device: what every neighbour search reads.
struct DeviceGrid {
    points: CudaSlice<f32>,
    cell_xyz: CudaSlice<u32>,
    original: CudaSlice<u32>,
    owner: CudaSlice<u32>,
    start: CudaSlice<u32>,
    cell_b: CudaSlice<u32>,
    jobs: CudaSlice<u32>,
    params: DbscanParams,
}

impl DeviceGrid {
    /// Pushes (points, cell_xyz, original, owner, start, cell_b, jobs, Params): the leading parameters of
    /// `count_neighbours`, `unite` and `assign_borders` in kernels/dbscan.cu.
    fn push<'a>(&'a self, b: &mut LaunchArgs<'a>) {
        b.arg(&self.points)
            .arg(&self.cell_xyz)
            .arg(&self.original)
            .arg(&self.owner)
            .arg(&self.start)
            .arg(&self.cell_b)
            .arg(&self.jobs)
            .arg(&self.params);
    }
}

/// A module's prefix sums (kernels/scan.cuh): `scan_counts` in one block, and the tiled scan's two passes.
struct Scan {
    one_block: CudaFunction,
    tile_sums: CudaFunction,
    apply: CudaFunction,
}

/// Counts of each tile of the tiled prefix sum (`SCAN_TILE` in kernels/scan.cuh: BLOCK threads x 16).
const SCAN_TILE: u32 = 16 * BLOCK;
/// The most counts scanned by one block (`scan_counts` alone); more take the tiled scan. One block of 1,024 threads
/// keeps too few loads in flight to stream a large table (a few GB/s against the device's TB/s): 8,192 counts are
/// 32 KB, a few microseconds.
const SCAN_ONE_BLOCK_MAX: u32 = 8192;

/// The kernels, loaded.
struct Kernels {
    count_valid: CudaFunction,
    scan_tiles: Scan,
    write_points: CudaFunction,
    sample_normals: CudaFunction,
    count_members: CudaFunction,
    scan_frames: CudaFunction,
    object_starts: CudaFunction,
    write_members: CudaFunction,
    gather_samples: CudaFunction,
    draw: CudaFunction,
    score: CudaFunction,
    sample_supports: CudaFunction,
    count_inliers: CudaFunction,
    gather_points: CudaFunction,
    cell_of: CudaFunction,
    claim_cells: CudaFunction,
    scan_slots: Scan,
    scatter_points: CudaFunction,
    count_neighbours: CudaFunction,
    unite: CudaFunction,
    flatten: CudaFunction,
    assign_borders: CudaFunction,
    unsort: CudaFunction,
    gather_canonical: CudaFunction,
    summarize: CudaFunction,
    relate: CudaFunction,
    order_count: CudaFunction,
    scan_buckets: Scan,
    order_scatter: CudaFunction,
    run_boxes: CudaFunction,
    pair_bounds: CudaFunction,
    refine_bounds: CudaFunction,
    search_pairs: CudaFunction,
}

/// An open CUDA device with the kernels loaded.
pub struct CudaBackend {
    ctx: Arc<CudaContext>,
    description: String,
    arch: &'static str,
    k: Kernels,
    /// Pinned host buffers for uploads, reused (each waits for its last copy before it is written again).
    staging: Mutex<Vec<Staged>>,
    /// How the staging buffers' events are made: a host thread that waits for one sleeps where the context's
    /// threads sleep in their synchronisations (blocking sync), and spins otherwise, as cudarc's default event does.
    staging_event: cudarc::driver::sys::CUevent_flags,
    /// Pinned host buffers for the large read-backs, reused (see [`CudaBackend::read_back`]).
    readbacks: Arc<Mutex<Vec<PinnedBuffer>>>,
    /// The page-locked memory held, and its limit (see [`CudaBackend::set_pinned_limit`]).
    pinned: Arc<PinnedBudget>,
    /// Launches that read their points where an earlier step left them (see [`CudaBackend::resident_reads`]).
    resident_reads: [std::sync::atomic::AtomicU64; 3],
    /// See [`CudaBackend::max_grid_yz`].
    max_grid_yz: u32,
    /// See [`CudaBackend::kernel_resources`].
    resources: Vec<KernelResources>,
}

/// What the driver says of kernel `kernel` of `module` (`f`), launched with [`block_of`] threads a block.
fn kernel_resources(module: &str, kernel: &str, f: &CudaFunction) -> Result<KernelResources, String> {
    let count = |v: Result<i32, DriverError>| v.map_err(de).map(|v| u32::try_from(v).unwrap_or(0));
    Ok(KernelResources {
        module: module.to_string(),
        kernel: kernel.to_string(),
        block: block_of(kernel),
        max_threads_per_block: count(f.max_threads_per_block())?,
        registers: count(f.num_regs())?,
        local_bytes: count(f.local_size_bytes())?,
        shared_bytes: count(f.shared_size_bytes())?,
    })
}

/// How many launches read their input where an earlier step left it on the device ([`CudaBackend::resident_reads`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResidentReads {
    /// K3 chunks gathered from K1's grouped points.
    pub k3_gathers: u64,
    /// K4 chunks whose canonical points were computed from K1's grouped points.
    pub k4_gathers: u64,
    /// Gap chunks that read K4's canonical points.
    pub gaps_from_k4: u64,
}

/// Page-locked (pinned) host memory: what the backend holds, and at most how much it may
/// ([`CudaBackend::set_pinned_limit`]).
struct PinnedBudget {
    /// The most bytes the backend may hold (`usize::MAX`: no limit).
    limit: AtomicUsize,
    /// What the backend held when the driver last refused a buffer for want of memory (`usize::MAX`: it has not, or
    /// has pinned more since): the backend asks it for more than that only every [`CEILING_RETRY`]th time (a refused
    /// pin may be dear: the driver may have touched every page before it gave up). Setting the limit lifts it.
    ceiling: AtomicUsize,
    /// Requests the ceiling turned away since the driver was last asked past it.
    ceiling_skips: AtomicU64,
    /// Bytes taken from the budget: the pools' buffers, those in use, and those being allocated.
    held: AtomicUsize,
    /// Bytes allocated (held less those being allocated), and their most at once.
    allocated: AtomicUsize,
    peak: AtomicUsize,
    allocations: AtomicU64,
    refused_by_limit: AtomicU64,
    refused_by_driver: AtomicU64,
    pageable_uploads: AtomicU64,
    pageable_read_backs: AtomicU64,
    /// Requests for a pooled buffer so far (uploads and read-backs): the clock of [`PinnedBuffer::pooled_at`].
    requests: AtomicU64,
}

/// An idle pooled buffer is freed to make room for another ([`CudaBackend::free_idle`]) only when no request has taken
/// it for this many requests (a few batches'): a run's buffers are each reused every batch, and freeing one of those
/// for another would only pin it again for the next batch.
const STALE_AFTER: u64 = 64;

/// After a refusal for want of memory, every this many requests past what was held then, one is put to the driver
/// again (the host may have freed lockable memory since).
const CEILING_RETRY: u64 = 64;

/// Why the budget turned a request away ([`PinnedBudget::reserve`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    /// It would pass the limit.
    Limit,
    /// It would pass what the backend held when the driver last refused one.
    Ceiling,
}

impl PinnedBudget {
    fn unlimited() -> PinnedBudget {
        PinnedBudget {
            limit: AtomicUsize::new(usize::MAX),
            ceiling: AtomicUsize::new(usize::MAX),
            ceiling_skips: AtomicU64::new(0),
            held: AtomicUsize::new(0),
            allocated: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            allocations: AtomicU64::new(0),
            refused_by_limit: AtomicU64::new(0),
            refused_by_driver: AtomicU64::new(0),
            pageable_uploads: AtomicU64::new(0),
            pageable_read_backs: AtomicU64::new(0),
            requests: AtomicU64::new(0),
        }
    }

    fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Relaxed);
        self.ceiling.store(usize::MAX, Relaxed);
    }

    /// Takes `bytes` from the budget; `Err` (nothing taken) where they would pass its limit or ceiling.
    fn reserve(&self, bytes: usize) -> Result<(), Refusal> {
        let (limit, ceiling) = (self.limit.load(Relaxed), self.ceiling.load(Relaxed));
        let fits =
            |cap: usize| self.held.fetch_update(Relaxed, Relaxed, |held| held.checked_add(bytes).filter(|&h| h <= cap));
        match fits(limit.min(ceiling)) {
            Ok(_) => Ok(()),
            Err(held) if held.checked_add(bytes).is_none_or(|h| h > limit) => Err(Refusal::Limit),
            // Past the ceiling only: every CEILING_RETRY-th such request is put to the driver again.
            Err(_) if self.ceiling_skips.fetch_add(1, Relaxed) + 1 >= CEILING_RETRY && fits(limit).is_ok() => {
                self.ceiling_skips.store(0, Relaxed);
                Ok(())
            }
            Err(_) => Err(Refusal::Ceiling),
        }
    }

    /// Bytes to free before `bytes` more fit under the limit and the ceiling.
    fn excess(&self, bytes: usize) -> usize {
        let cap = self.limit.load(Relaxed).min(self.ceiling.load(Relaxed));
        self.held.load(Relaxed).saturating_add(bytes).saturating_sub(cap)
    }

    /// A request refused, counted by why.
    fn count_refusal(&self, why: Refusal) {
        let counter = match why {
            Refusal::Limit => &self.refused_by_limit,
            Refusal::Ceiling => &self.refused_by_driver,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// The driver refused `bytes` reserved: given back; for want of memory (`out_of_memory`), it is asked for no
    /// more than is held now (the ceiling), bar the retries.
    fn refused(&self, bytes: usize, out_of_memory: bool) {
        let held = self.held.fetch_sub(bytes, Relaxed) - bytes;
        if out_of_memory {
            self.ceiling.fetch_min(held, Relaxed);
        }
        self.refused_by_driver.fetch_add(1, Relaxed);
    }

    /// `bytes` reserved are now allocated. An allocation past the ceiling (a retry the driver granted) lifts it.
    fn allocated(&self, bytes: usize) {
        let now = self.allocated.fetch_add(bytes, Relaxed) + bytes;
        self.peak.fetch_max(now, Relaxed);
        self.allocations.fetch_add(1, Relaxed);
        if self.held.load(Relaxed) > self.ceiling.load(Relaxed) {
            self.ceiling.store(usize::MAX, Relaxed);
        }
    }

    /// `bytes` reserved and not allocated are given back (tests).
    #[cfg(test)]
    fn release_unallocated(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Relaxed);
    }

    /// `bytes` allocated are freed.
    fn release(&self, bytes: usize) {
        self.allocated.fetch_sub(bytes, Relaxed);
        self.held.fetch_sub(bytes, Relaxed);
    }

    /// Whether more is held than the limit allows (it was lowered since).
    fn over_limit(&self) -> bool {
        self.held.load(Relaxed) > self.limit.load(Relaxed)
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// A request for a pooled buffer: the clock moves on.
    fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    fn now(&self) -> u64 {
        self.requests.load(Relaxed)
    }
}

/// A page-locked host buffer whose bytes count against the backend's [`PinnedBudget`] as long as it lives.
struct PinnedBuffer {
    slice: std::mem::ManuallyDrop<PinnedHostSlice<u32>>,
    bytes: usize,
    budget: Arc<PinnedBudget>,
    /// When it last went back to its pool ([`PinnedBudget::now`]).
    pooled_at: u64,
}

impl PinnedBuffer {
    /// Whether it has lain idle in its pool for [`STALE_AFTER`] requests.
    fn stale(&self) -> bool {
        self.budget.now().saturating_sub(self.pooled_at) >= STALE_AFTER
    }

    fn len(&self) -> usize {
        self.slice.len()
    }

    fn num_bytes(&self) -> usize {
        self.bytes
    }
}

impl std::ops::Deref for PinnedBuffer {
    type Target = PinnedHostSlice<u32>;
    fn deref(&self) -> &PinnedHostSlice<u32> {
        &self.slice
    }
}

impl std::ops::DerefMut for PinnedBuffer {
    fn deref_mut(&mut self) -> &mut PinnedHostSlice<u32> {
        &mut self.slice
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        // SAFETY: dropped once, here; nothing uses the slice after. (cudarc's drop waits for the buffer's event, then
        // frees it.)
        unsafe { std::mem::ManuallyDrop::drop(&mut self.slice) };
        self.budget.release(self.bytes);
    }
}

/// A read-back's host memory: a pooled page-locked buffer, or pageable memory where none could be had.
enum HostWords {
    Pinned(PinnedBuffer),
    Pageable(Vec<u32>),
}

impl HostWords {
    fn as_slice(&self) -> Result<&[u32], String> {
        match self {
            HostWords::Pinned(b) => b.as_slice().map_err(de),
            HostWords::Pageable(v) => Ok(v),
        }
    }

    fn as_mut_ptr(&mut self) -> Result<*mut u32, String> {
        match self {
            HostWords::Pinned(b) => b.as_mut_ptr().map_err(de),
            HostWords::Pageable(v) => Ok(v.as_mut_ptr()),
        }
    }
}

/// A pinned staging buffer for uploads, with an event recorded after its last copy: it is written again, or freed,
/// only once that copy is over (the backend orders its streams itself: see [`CudaBackend::new`]).
struct Staged {
    buffer: std::mem::ManuallyDrop<PinnedBuffer>,
    copied: CudaEvent,
}

/// Words written for an upload, not yet copied ([`CudaBackend::stage_words`]): the first `len` words of a pinned
/// staging buffer, or pageable memory.
enum StagedWords {
    Pinned { staged: Staged, len: usize },
    Pageable(Vec<u32>),
}

impl StagedWords {
    fn len(&self) -> usize {
        match self {
            StagedWords::Pinned { len, .. } => *len,
            StagedWords::Pageable(words) => words.len(),
        }
    }
}

impl Staged {
    /// The buffer, once its last copy is over.
    fn wait(&mut self) -> Result<&mut PinnedBuffer, String> {
        self.copied.synchronize().map_err(de)?;
        Ok(&mut self.buffer)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // A buffer whose copy cannot be waited for is left allocated: the copy may still read it.
        if self.copied.synchronize().is_ok() {
            // SAFETY: dropped once, here; nothing uses the buffer after.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.buffer) };
        }
    }
}

/// Which idle pooled buffers to free ([`CudaBackend::free_idle`]), of two pools of buffers of `a` and `b` bytes (`None`:
/// not to be freed): those of fewer than `below` bytes, the smallest first, until `excess` bytes are freed or none is
/// left (with `whole`, none unless `excess` bytes can be). Each as (from `a`, its index), in the order to
/// `swap_remove` them (each pool's highest index first, so that no removal moves one still to be taken), and the bytes
/// they free.
fn idle_to_free(
    a: &[Option<usize>],
    b: &[Option<usize>],
    excess: usize,
    below: usize,
    whole: bool,
) -> (Vec<(bool, usize)>, usize) {
    let listed = |pool: &[Option<usize>], from_a: bool| {
        pool.iter().enumerate().filter_map(move |(i, n)| n.map(|n| (n, from_a, i))).collect::<Vec<_>>()
    };
    let mut idle: Vec<(usize, bool, usize)> = listed(a, true);
    idle.extend(listed(b, false));
    idle.retain(|&(n, _, _)| n < below);
    idle.sort_unstable();
    let mut chosen = Vec::new();
    let mut freed = 0usize;
    for &(n, from_a, i) in &idle {
        if freed >= excess {
            break;
        }
        freed += n;
        chosen.push((from_a, i));
    }
    if whole && freed < excess {
        return (Vec::new(), 0);
    }
    chosen.sort_unstable_by_key(|&(_, i)| std::cmp::Reverse(i));
    (chosen, freed)
}

/// At most this many page-locked buffers, and bytes of them, wait in each pool: the read-backs', and the staging
/// buffers' (a batch's depth words and instance labels, and the K2 subsample's and the K3 and K4 gathers' indices,
/// for two batches in flight and some to spare).
const PINNED_POOL: usize = 8;
const PINNED_POOL_BYTES: usize = 1 << 30;

/// Which of pooled buffers of `sizes` words to reuse for `len` words: the smallest that holds them, if not more than
/// four times over.
fn pool_fit(sizes: impl Iterator<Item = usize>, len: usize) -> Option<usize> {
    sizes
        .enumerate()
        .filter(|&(_, n)| n >= len && n / 4 <= len.max(READBACK_MIN_WORDS))
        .min_by_key(|&(_, n)| n)
        .map(|(i, _)| i)
}

/// The buffers to free so that `pool` keeps at most [`PINNED_POOL`] buffers and [`PINNED_POOL_BYTES`] (`bytes` each):
/// the smallest first (the largest are the dearest to pin again). (Freed by the caller outside the pool's lock:
/// freeing a pinned buffer waits for its copy.)
fn pool_evictions<T>(pool: &mut Vec<T>, bytes: impl Fn(&T) -> usize) -> Vec<T> {
    let mut evicted = Vec::new();
    while pool.len() > PINNED_POOL || pool.iter().map(&bytes).sum::<usize>() > PINNED_POOL_BYTES {
        let Some(i) = (0..pool.len()).min_by_key(|&i| bytes(&pool[i])) else { break };
        evicted.push(pool.swap_remove(i));
    }
    evicted
}
/// Read-back buffers hold at least this many words (256 KiB), so that batches of different sizes reuse them.
const READBACK_MIN_WORDS: usize = 1 << 16;

/// The size of a new read-back buffer for `len` words: a power of two up to 64 MiB, then a multiple of 16 MiB (so
/// that a large batch does not pin up to twice what it reads).
fn readback_words(len: usize) -> usize {
    match len.max(READBACK_MIN_WORDS) {
        n if n <= 1 << 24 => n.next_power_of_two(),
        n => n.div_ceil(1 << 22) * (1 << 22),
    }
}

/// Words being copied from the device into host memory ([`CudaBackend::read_back`]). A page-locked buffer goes back to
/// the pool when this is dropped.
struct ReadBack {
    buffer: Option<HostWords>,
    len: usize,
    pool: Arc<Mutex<Vec<PinnedBuffer>>>,
    /// The stream that copies into the buffer.
    stream: Arc<CudaStream>,
    /// Whether the copy is known to be over (a `words` call returned them): the drop need not wait for the stream,
    /// which by then may be running later work.
    copied: bool,
}

impl ReadBack {
    /// The words, once the copy is done (synchronises its stream the first time; the drop then need not).
    fn words(&mut self) -> Result<&[u32], String> {
        let Some(b) = &self.buffer else { return Ok(&[]) };
        if !self.copied {
            self.stream.synchronize().map_err(de)?;
            self.copied = true;
        }
        b.as_slice()?.get(..self.len).ok_or_else(|| "read-back buffer too short".into())
    }

    /// The words as values of `T`, once the copy is done, kept in the buffer for views to share
    /// ([`SharedSlice::kept`]): no host copy; the buffer goes back to the pool with the last view.
    fn into_kept<T: bytemuck::Pod + Send + Sync>(mut self) -> Result<KeptWords<T>, String> {
        let (ptr, len) = {
            let values: &[T] =
                bytemuck::try_cast_slice(self.words()?).map_err(|_| "read-back words do not make whole values")?;
            (values.as_ptr(), values.len())
        };
        Ok(KeptWords { ptr, len, _read: self })
    }
}

/// A read-back's values once its copy is over ([`ReadBack::into_kept`]), read in place by the views that share it.
struct KeptWords<T> {
    /// The values: `len` of them from `ptr`, within `_read`'s buffer.
    ptr: *const T,
    len: usize,
    /// The buffer's owner, kept (not read) so that the values live exactly as long as this.
    _read: ReadBack,
}

// SAFETY: the values lie in `_read`'s host buffer, which this owns and nothing writes while it lives (the copy
// into it was over before it was built, and the buffer is reused only once `_read` is dropped, with this); reading
// them from any thread is reading plain `T: Send + Sync` values.
unsafe impl<T: Send + Sync> Send for KeptWords<T> {}
// SAFETY: as for Send: shared access only reads.
unsafe impl<T: Send + Sync> Sync for KeptWords<T> {}

impl<T> AsRef<[T]> for KeptWords<T> {
    fn as_ref(&self) -> &[T] {
        // SAFETY: `ptr` and `len` came from a slice of `_read`'s buffer (`into_kept`), which lives and stays unwritten
        // as long as this does (see Send), and is not moved by moving this (it is heap memory: the driver's
        // page-locked allocation, or a `Vec`'s).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for ReadBack {
    fn drop(&mut self) {
        let Some(buffer) = self.buffer.take() else { return };
        // The copy into the buffer must be over before it is reused or freed (an error here leaves it unpooled).
        if !self.copied && self.stream.synchronize().is_err() {
            std::mem::forget(buffer);
            return;
        }
        let HostWords::Pinned(buffer) = buffer else { return };
        // (The last view of a kept read-back may go on any thread: pooling needs no context, and a buffer freed below
        // binds its own, cudarc's `PinnedHostSlice` drop synchronising its event first.)
        // A buffer larger than the whole pool's budget is freed, not kept (it would empty the pool).
        if buffer.num_bytes() > PINNED_POOL_BYTES {
            return;
        }
        // (A poisoned pool: the buffer is freed.)
        let _ = return_to_pool(&self.pool, buffer);
    }
}

/// What the two pools hold: a page-locked buffer, with what goes with it (a staging buffer's event).
trait Pooled {
    fn buffer(&self) -> &PinnedBuffer;
    fn buffer_mut(&mut self) -> &mut PinnedBuffer;
}

impl Pooled for PinnedBuffer {
    fn buffer(&self) -> &PinnedBuffer {
        self
    }
    fn buffer_mut(&mut self) -> &mut PinnedBuffer {
        self
    }
}

impl Pooled for Staged {
    fn buffer(&self) -> &PinnedBuffer {
        &self.buffer
    }
    fn buffer_mut(&mut self) -> &mut PinnedBuffer {
        &mut self.buffer
    }
}

/// Puts `item` back in `pool`, stamped with when ([`PinnedBuffer::pooled_at`]), evicting as [`pool_evictions`] says;
/// or frees it where more is held than the limit allows (it was lowered since the buffer was allocated: checked under
/// the lock, which `set_pinned_limit` takes after setting the limit). Buffers are freed outside the lock (freeing one
/// waits for its copy). `Err` when the pool's lock is poisoned (the item is freed).
fn return_to_pool<T: Pooled>(pool: &Mutex<Vec<T>>, mut item: T) -> Result<(), String> {
    let mut guard = pool.lock().map_err(|_| "a page-locked pool poisoned")?;
    if item.buffer().budget.over_limit() {
        drop(guard);
        return Ok(());
    }
    let now = item.buffer().budget.now();
    item.buffer_mut().pooled_at = now;
    guard.push(item);
    let evicted = pool_evictions(&mut guard, |p| p.buffer().num_bytes());
    drop(guard);
    drop(evicted);
    Ok(())
}

/// The canonical points of a K4 batch left on the device for its gaps (see [`super::KeptObjects`]).
pub struct DevicePoints {
    points: CudaSlice<f32>,
    /// Each object's first point in `points` and the bounding box of its points (from K4's reductions: the gaps'
    /// spatial order starts from it), in the batch's order; `None` for an object K4 left out (no points).
    places: Vec<Option<(u32, Aabb)>>,
    /// The stream that uploaded them (and synchronised): the gaps run on it too.
    stream: Arc<CudaStream>,
}

impl DevicePoints {
    /// Object `i`'s first `count` points as they lie on the device, and its box, read back (synchronised); `None`
    /// for an object without a place. For the parity tests: that each object's place and box are its own.
    pub fn read_object(&self, i: usize, count: usize) -> Result<Option<(Vec<f32>, Aabb)>, String> {
        let Some((offset, b)) = self.places.get(i).copied().flatten() else {
            return Ok(None);
        };
        let start = 3 * offset as usize;
        let end = start + 3 * count;
        if end > self.points.len() {
            return Err(format!(
                "object {i}: points {offset}..+{count} past the {} on the device",
                self.points.len() / 3
            ));
        }
        let points = self.stream.clone_dtoh(&self.points.slice(start..end)).map_err(de)?;
        self.stream.synchronize().map_err(de)?;
        Ok(Some((points, b)))
    }
}

/// The objects' points that K1 grouped for a chunk of frames, left on the device for K3 (see
/// [`super::ResidentGroup`]).
pub struct GroupedOnDevice {
    /// x, y, z of every grouped point of the chunk, frame after frame.
    points: CudaSlice<f32>,
    /// How many points.
    len: u64,
}

/// The gap kernels' device buffers for one chunk (the points apart: uploaded, or left by K4).
struct GapBuffers {
    objects: CudaSlice<u32>,
    orders: CudaSlice<u32>,
    /// Each bucket's points (counted up, then down to 0 by the scatter), and the buckets' exclusive prefix sums.
    counts: CudaSlice<u32>,
    starts: CudaSlice<u32>,
    /// The objects' points in their spatial order, object after object.
    ordered: CudaSlice<f32>,
    pairs: CudaSlice<u32>,
    tile_start: CudaSlice<u32>,
    /// +inf's bits, one word per pair: what `best2` starts from.
    init: CudaSlice<u32>,
    boxes: CudaSlice<f32>,
    supers: CudaSlice<f32>,
    best2: CudaSlice<u32>,
    n_objects: u32,
    n_points: u32,
    n_buckets: u32,
    n_chunks: u32,
    n_supers: u32,
    n_pairs: u32,
    tiles: u32,
}

/// K1's device buffers for one batch.
struct K1Buffers {
    depth: CudaSlice<u32>,
    ray_x: CudaSlice<f32>,
    ray_y: CudaSlice<f32>,
    infos: CudaSlice<u32>,
    tile_frame: CudaSlice<u32>,
    counts: CudaSlice<u32>,
    offsets: CudaSlice<u32>,
    points: CudaSlice<f32>,
    pixels: CudaSlice<u32>,
    tiles: u32,
}

/// A batch's clouds on the device, each frame's first point (and the total), and K1's inputs, which K2's sample
/// normals read (the depth words, ray factors and frame table).
struct DeviceCloud {
    points: CudaSlice<f32>,
    pixels: CudaSlice<u32>,
    offsets: Vec<u64>,
    depth: CudaSlice<u32>,
    ray_x: CudaSlice<f32>,
    ray_y: CudaSlice<f32>,
    infos: CudaSlice<u32>,
}

impl CudaBackend {
    /// Opens device 0 and loads the kernels (compiled by NVRTC for its architecture, once per process). `Err` says
    /// what is missing: the driver, NVRTC, a device, or a kernel that does not compile.
    pub fn new() -> Result<CudaBackend, String> {
        driver_available()?;
        nvrtc_available()?;
        std::panic::catch_unwind(Self::open).unwrap_or_else(|_| Err("the CUDA driver panicked while opening".into()))
    }

    fn open() -> Result<CudaBackend, String> {
        let devices = CudaContext::device_count().map_err(de)?;
        if devices < 1 {
            return Err("the CUDA driver sees no device".into());
        }
        let mut driver = 0i32;
        // SAFETY: cuDriverGetVersion writes one int through a valid pointer.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver) };
        if driver < 13_000 {
            return Err(format!(
                "the CUDA driver supports CUDA {}.{}; the kernels are compiled by NVRTC 13 and need a CUDA 13 driver \
                 (R580 or newer)",
                driver / 1000,
                (driver % 1000) / 10
            ));
        }
        let (sync_flag, sync_name) = sync_mode()?;
        let ctx = CudaContext::new(0).map_err(de)?;
        // A driver that refuses the flag leaves its default (spinning on a host with more cores than contexts): a
        // slower host side, not a wrong one, so the backend opens and its description says so.
        let sync = match set_scheduling(&ctx, sync_flag) {
            Ok(()) => format!("{sync_name} sync"),
            Err(e) => format!("the driver's default sync: {sync_name} refused, {e}"),
        };
        if std::env::var_os(EVENT_TRACKING_VAR).is_none_or(|v| v != "1") {
            // SAFETY: the backend orders its streams itself. Every buffer is used on the stream that allocated it,
            // or on another only after the host has synchronised that stream, and freed only after the host has
            // synchronised every stream that used it; the pinned staging buffers wait on their own events
            // (`Staged`), the read-backs on their streams (`ReadBack`). The CUDA emulator's streams (kernels/emu)
            // check exactly this: they refuse, naming them, a use of a buffer on one stream while work of another
            // stream that uses it may still run, and a write to pinned memory that a queued copy still reads.
            unsafe { ctx.disable_event_tracking() };
        }
        keep_pool_memory(&ctx)?;
        let (major, minor) = ctx.compute_capability().map_err(de)?;
        let cc = (major * 10 + minor) as u32;
        let arch = ARCHITECTURES
            .iter()
            .rev()
            .find(|(c, _)| *c <= cc)
            .map(|(_, a)| *a)
            .ok_or_else(|| format!("compute capability {major}.{minor} is below NVRTC 13's oldest (7.5)"))?;
        let ptx = compiled_modules(arch)?;
        let mut functions: HashMap<(&str, &str), CudaFunction> = HashMap::new();
        for (module, text) in MODULES.iter().zip(ptx.iter()) {
            let loaded = ctx
                .load_module(Ptx::from_src(text.clone()))
                .map_err(|e| format!("the driver refuses {} ({arch}): {e}", module.file))?;
            for entry in module.entries {
                let f = loaded.load_function(entry).map_err(|e| format!("{}: {entry}: {e}", module.file))?;
                functions.insert((module.file, entry), f);
            }
        }
        let mut resources = Vec::with_capacity(functions.len());
        let mut get = |file: &'static str, entry: &'static str| {
            let f = functions.remove(&(file, entry)).ok_or_else(|| format!("{file} has no kernel {entry}"))?;
            let r = kernel_resources(file, entry, &f).map_err(|e| format!("{file}: {entry}: {e}"))?;
            // A kernel whose registers leave its block too few (its `__launch_bounds__` keeps them in: this is the
            // check that it did) would fail every launch with CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: refused here.
            if r.max_threads_per_block < r.block {
                return Err(format!(
                    "{file}: {entry} runs at most {} threads a block on this device ({} registers a thread); the \
                     backend launches it with {}",
                    r.max_threads_per_block, r.registers, r.block
                ));
            }
            resources.push(r);
            Ok::<_, String>(f)
        };
        // A module's three scan kernels, in its entries' order.
        macro_rules! scan {
            ($file:literal) => {
                Scan {
                    one_block: get($file, "scan_counts")?,
                    tile_sums: get($file, "scan_tile_sums")?,
                    apply: get($file, "scan_tiles_apply")?,
                }
            };
        }
        let k = Kernels {
            count_valid: get("unproject.cu", "count_valid")?,
            scan_tiles: scan!("unproject.cu"),
            write_points: get("unproject.cu", "write_points")?,
            sample_normals: get("unproject.cu", "sample_normals")?,
            count_members: get("group.cu", "count_members")?,
            scan_frames: get("group.cu", "scan_frames")?,
            object_starts: get("group.cu", "object_starts")?,
            write_members: get("group.cu", "write_members")?,
            gather_samples: get("ransac.cu", "gather_samples")?,
            draw: get("ransac.cu", "draw")?,
            score: get("ransac.cu", "score")?,
            sample_supports: get("ransac.cu", "sample_supports")?,
            count_inliers: get("ransac.cu", "count_inliers")?,
            gather_points: get("dbscan.cu", "gather_points")?,
            cell_of: get("dbscan.cu", "cell_of")?,
            claim_cells: get("dbscan.cu", "claim_cells")?,
            scan_slots: scan!("dbscan.cu"),
            scatter_points: get("dbscan.cu", "scatter_points")?,
            count_neighbours: get("dbscan.cu", "count_neighbours")?,
            unite: get("dbscan.cu", "unite")?,
            flatten: get("dbscan.cu", "flatten")?,
            assign_borders: get("dbscan.cu", "assign_borders")?,
            unsort: get("dbscan.cu", "unsort")?,
            gather_canonical: get("stats.cu", "gather_canonical")?,
            summarize: get("stats.cu", "summarize")?,
            relate: get("relations.cu", "relate")?,
            order_count: get("gaps.cu", "order_count")?,
            scan_buckets: scan!("gaps.cu"),
            order_scatter: get("gaps.cu", "order_scatter")?,
            run_boxes: get("gaps.cu", "run_boxes")?,
            pair_bounds: get("gaps.cu", "pair_bounds")?,
            refine_bounds: get("gaps.cu", "refine_bounds")?,
            search_pairs: get("gaps.cu", "search_pairs")?,
        };
        let max_grid_yz = {
            use cudarc::driver::sys::CUdevice_attribute as A;
            let y = ctx.attribute(A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y).map_err(de)?;
            let z = ctx.attribute(A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z).map_err(de)?;
            u32::try_from(y.min(z))
                .ok()
                .filter(|&m| m > 0)
                .ok_or_else(|| format!("the device's grid limit is {y} x {z}"))?
        };
        let name = ctx.name().map_err(de)?;
        let memory_gib = ctx.total_mem().map_err(de)? as f64 / f64::from(1u32 << 30);
        let description = format!(
            "{name} (compute {major}.{minor}, {memory_gib:.0} GiB, driver CUDA {}.{}, kernels {arch}, {sync})",
            driver / 1000,
            (driver % 1000) / 10
        );
        Ok(CudaBackend {
            ctx,
            description,
            arch,
            k,
            resources,
            staging: Mutex::default(),
            staging_event: match sync_flag {
                cudarc::driver::sys::CUctx_flags::CU_CTX_SCHED_BLOCKING_SYNC => {
                    cudarc::driver::sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC
                }
                _ => cudarc::driver::sys::CUevent_flags::CU_EVENT_DISABLE_TIMING,
            },
            readbacks: Arc::default(),
            pinned: Arc::new(PinnedBudget::unlimited()),
            resident_reads: Default::default(),
            max_grid_yz,
        })
    }

    /// The most blocks a launch's grid has along y and along z, as the device reports it (65,535 on every NVIDIA
    /// GPU): the kernels that lay frames, objects or requests along y or z launch again past it.
    pub fn max_grid_yz(&self) -> u32 {
        self.max_grid_yz
    }

    /// `[0, n)` in parts of at most [`Self::max_grid_yz`]: (first, how many).
    fn grid_parts(&self, n: u32) -> impl Iterator<Item = (u32, u32)> {
        let step = self.max_grid_yz;
        (0..n).step_by(step as usize).map(move |base| (base, (n - base).min(step)))
    }

    /// The device's memory, in bytes.
    pub fn device_memory_bytes(&self) -> Result<u64, String> {
        self.ctx.total_mem().map(|b| b as u64).map_err(de)
    }

    /// How many bytes of freed device memory the stream-ordered allocator keeps across synchronisations (see
    /// [`POOL_KEEP_DIVISOR`]); `None` where the device has no memory pools (its buffers are allocated and freed
    /// synchronously).
    pub fn pool_release_threshold(&self) -> Result<Option<u64>, String> {
        let Some(pool) = default_pool(&self.ctx)? else { return Ok(None) };
        pool_release_threshold(pool, None).map(Some).map_err(de)
    }

    /// The device, e.g. `NVIDIA H100 80GB HBM3 (compute 9.0, 79 GiB, driver CUDA 13.0, kernels compute_90, blocking sync)`.
    pub fn device_description(&self) -> &str {
        &self.description
    }

    /// Whether the device is the CPU emulator of the CUDA driver in `kernels/emu` (it names itself so): a
    /// correctness tool for the parity tests, whose timings mean nothing.
    pub fn is_emulator(&self) -> bool {
        self.description.starts_with("spatialsynth CUDA emulator")
    }

    /// The virtual architecture the kernels were compiled for.
    pub fn arch(&self) -> &'static str {
        self.arch
    }

    /// Every loaded kernel's registers, spills and block as the driver compiled it for this device (module order).
    pub fn kernel_resources(&self) -> &[KernelResources] {
        &self.resources
    }

    /// A new stream for one call, waited for when the call drops it ([`CallStream`]).
    fn stream(&self) -> Result<CallStream, String> {
        self.ctx.new_stream().map(CallStream).map_err(de)
    }

    /// Waits for `stream`; an error of its kernels comes back here. (The context's shared error flag is not
    /// consulted: with several worker threads it would report another call's error.)
    fn sync(&self, stream: &CudaStream) -> Result<(), String> {
        stream.synchronize().map_err(de)
    }

    /// `values` on the device (at least one element: empty buffers are padded).
    fn upload<T: DeviceRepr + Copy + Default>(
        &self,
        stream: &Arc<CudaStream>,
        values: &[T],
    ) -> Result<CudaSlice<T>, String> {
        match values.is_empty() {
            true => stream.clone_htod(&[T::default()]).map_err(de),
            false => stream.clone_htod(values).map_err(de),
        }
    }

    /// `len` elements on the device (at least one), not initialised: for buffers that kernels or copies write whole.
    ///
    /// # Safety
    /// Every element must be written before anything reads it (the caller says why). Where a write is missed, the
    /// CUDA emulator's fill of `0xff` bytes (kernels/emu) shows it in the parity tests.
    unsafe fn uninit<T: DeviceRepr>(&self, stream: &Arc<CudaStream>, len: usize) -> Result<CudaSlice<T>, String> {
        // SAFETY: passed on to the caller.
        unsafe { stream.alloc(len.max(1)) }.map_err(de)
    }

    /// `len` zeroed elements on the device (at least one).
    fn zeros<T: DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        stream: &Arc<CudaStream>,
        len: usize,
    ) -> Result<CudaSlice<T>, String> {
        stream.alloc_zeros(len.max(1)).map_err(de)
    }

    /// At most `limit` bytes of page-locked host memory for the staging and read-back buffers (`None`: no limit, the
    /// default). Beyond it the backend uploads and reads back through pageable memory (the driver copies it through
    /// its own page-locked staging: slower, and the results are the same). Page-locked memory cannot be paged out:
    /// several processes on one GPU server, or a run of many batches in flight (`--in-flight`), may want a bound.
    /// Lowering the limit frees the pools' idle buffers until the backend holds no more than it (or the pools are
    /// empty); buffers in use are freed instead of pooled when they come back while more than the limit is held.
    pub fn set_pinned_limit(&self, limit: Option<usize>) -> Result<(), String> {
        let limit = limit.unwrap_or(usize::MAX);
        self.pinned.set_limit(limit);
        self.free_idle(self.pinned.excess(0), usize::MAX, false).map(|_| ())
    }

    /// The page-locked host memory the backend holds, its peak and limit, and what was refused
    /// ([`CudaBackend::set_pinned_limit`]).
    pub fn pinned_memory(&self) -> PinnedMemory {
        use std::sync::atomic::Ordering::Relaxed;
        let b = &self.pinned;
        let bytes = |v: usize| v as u64;
        PinnedMemory {
            limit_bytes: Some(b.limit.load(Relaxed)).filter(|&l| l != usize::MAX).map(bytes),
            driver_ceiling_bytes: Some(b.ceiling.load(Relaxed)).filter(|&l| l != usize::MAX).map(bytes),
            held_bytes: bytes(b.allocated.load(Relaxed)),
            peak_bytes: bytes(b.peak.load(Relaxed)),
            allocations: b.allocations.load(Relaxed),
            refused_by_limit: b.refused_by_limit.load(Relaxed),
            refused_by_driver: b.refused_by_driver.load(Relaxed),
            pageable_uploads: b.pageable_uploads.load(Relaxed),
            pageable_read_backs: b.pageable_read_backs.load(Relaxed),
        }
    }

    /// How many launches so far read their input where an earlier step left it on the device (no upload): the
    /// resident paths' use, for tests and diagnostics.
    pub fn resident_reads(&self) -> ResidentReads {
        let get = |i: usize| self.resident_reads[i].load(std::sync::atomic::Ordering::Relaxed);
        ResidentReads { k3_gathers: get(0), k4_gathers: get(1), gaps_from_k4: get(2) }
    }

    fn count_resident_read(&self, which: usize) {
        self.resident_reads[which].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Starts copying `src` into pinned host memory on `stream` (asynchronous): [`ReadBack::words`] waits for the copy;
    /// into pageable memory where no pinned buffer can be had ([`CudaBackend::set_pinned_limit`]).
    /// The large read-backs take this path: a copy into pageable memory goes through the driver's own staging
    /// buffers at a fraction of the bus's speed. The buffers are plain page-locked memory, not write-combined (which
    /// the host reads slowly; cudarc's `alloc_pinned` is write-combined, right for the uploads only).
    fn read_back<T: DeviceRepr, S: DevicePtr<T>>(&self, stream: &Arc<CudaStream>, src: &S) -> Result<ReadBack, String> {
        // In 4-byte words (every caller's values are u32 or f32: the check is a guard for a new caller).
        if src.num_bytes() % 4 != 0 {
            return Err(format!("a read-back of {} bytes, not whole words", src.num_bytes()));
        }
        let len = src.num_bytes() / 4;
        let pool = Arc::clone(&self.readbacks);
        if len == 0 {
            return Ok(ReadBack { buffer: None, len, pool, stream: Arc::clone(stream), copied: false });
        }
        self.pinned.request();
        let mut pooled = pool.lock().map_err(|_| "read-back pool poisoned")?;
        let reused = pool_fit(pooled.iter().map(PinnedBuffer::len), len).map(|i| pooled.swap_remove(i));
        drop(pooled);
        let mut buffer = match reused {
            Some(b) => HostWords::Pinned(b),
            // Not write-combined: the host reads it. Where no page-locked buffer can be had (the limit, or the
            // driver), pageable memory (which the stream's synchronisation still guards: a copy into pageable memory
            // "might be" synchronous, the driver's documentation says, not that it is).
            None => match self.new_pinned(len, 0) {
                Ok(b) => HostWords::Pinned(b),
                Err(_) => {
                    PinnedBudget::count(&self.pinned.pageable_read_backs);
                    HostWords::Pageable(vec![0; len])
                }
            },
        };
        // Only `len` words are copied (cudarc's memcpy_dtoh copies the whole destination). A pooled buffer's previous
        // copy is over: `ReadBack`'s drop, or an earlier `ReadBack::words`, synchronised its stream before it was
        // pooled.
        let dst_ptr = buffer.as_mut_ptr()?;
        // SAFETY: the buffer holds at least `len` words; nothing reads them before `ReadBack::words` has synchronised
        // the stream that copies them.
        let dst = unsafe { std::slice::from_raw_parts_mut(dst_ptr, len) };
        stream.context().bind_to_thread().map_err(de)?;
        let (src_ptr, _record) = src.device_ptr(stream);
        // SAFETY: `src` holds `len` words on the device; `dst` is host memory of `len` words (page-locked, or pageable)
        // that lives in the ReadBack, which outlives the copy (ReadBack::words and its drop wait for the stream).
        unsafe { cudarc::driver::result::memcpy_dtoh_async(dst, src_ptr, stream.cu_stream()) }.map_err(de)?;
        Ok(ReadBack { buffer: Some(buffer), len, pool, stream: Arc::clone(stream), copied: false })
    }

    /// `len` words on the device, written by `fill` straight into a pinned staging buffer (no host copy of its own),
    /// then copied asynchronously (the host goes on while it runs). `fill` gets `len` words and must write every one.
    fn upload_pinned_with(
        &self,
        stream: &Arc<CudaStream>,
        len: usize,
        fill: impl FnOnce(&mut [u32]),
    ) -> Result<CudaSlice<u32>, String> {
        let staged = self.upload_staged(stream, len, |words| {
            fill(words);
            true
        })?;
        staged.ok_or_else(|| "the staging buffer was not written".to_string())
    }

    /// [`CudaBackend::stage_words`] then [`CudaBackend::send_words`]: `None` when `fill` refuses.
    fn upload_staged(
        &self,
        stream: &Arc<CudaStream>,
        len: usize,
        fill: impl FnOnce(&mut [u32]) -> bool,
    ) -> Result<Option<CudaSlice<u32>>, String> {
        match self.stage_words(len, fill)? {
            Some(words) => self.send_words(stream, words).map(Some),
            None => Ok(None),
        }
    }

    /// `len` words written by `fill` for an upload, not copied yet: into a pooled pinned staging buffer (the smallest
    /// that holds them, if not more than four times over: batches of equal frames reuse theirs, the gathers' indices
    /// the nearest size), or into pageable memory where no pinned buffer can be had. `None` when `fill` refuses
    /// (`false`; the buffer goes back to the pool).
    fn stage_words(&self, len: usize, fill: impl FnOnce(&mut [u32]) -> bool) -> Result<Option<StagedWords>, String> {
        let reused = match len {
            0 => None,
            _ => {
                self.pinned.request();
                let mut pool = self.staging.lock().map_err(|_| "staging pool poisoned")?;
                pool_fit(pool.iter().map(|p| p.buffer.len()), len).map(|i| pool.swap_remove(i))
            }
        };
        // A new buffer where none fits; none (pageable memory) where no page-locked memory is to be had (the host's
        // limit, say) or there is nothing to stage.
        let staged = match reused {
            Some(p) => Some(p),
            None if len > 0 => self.new_staging(len).ok(),
            None => None,
        };
        let Some(mut staged) = staged else {
            let mut words = vec![0u32; len];
            if !fill(&mut words) {
                return Ok(None);
            }
            if len > 0 {
                PinnedBudget::count(&self.pinned.pageable_uploads);
            }
            return Ok(Some(StagedWords::Pageable(words)));
        };
        // Waits for the buffer's previous copy, if any.
        let words = staged.wait()?.as_mut_slice().map_err(de)?;
        let Some(words) = words.get_mut(..len) else { return Err("a staging buffer came up short".into()) };
        if fill(words) {
            return Ok(Some(StagedWords::Pinned { staged, len }));
        }
        self.pool_staged(staged)?;
        Ok(None)
    }

    /// A new page-locked buffer for `len` words (`flags` as `cuMemHostAlloc`'s), zeroed: of [`readback_words`]'s size
    /// (so that later requests of other sizes reuse it), or of `len` words where that one is refused. `Err` where the
    /// limit or the driver refuses both ([`CudaBackend::set_pinned_limit`]).
    fn new_pinned(&self, len: usize, flags: u32) -> Result<PinnedBuffer, String> {
        let rounded = readback_words(len);
        match self.zeroed_pinned(rounded, flags) {
            Err(_) if rounded > len => self.zeroed_pinned(len, flags),
            r => r,
        }
    }

    /// `words` words of page-locked host memory (`flags` as `cuMemHostAlloc`'s), zeroed; `Err` where the limit
    /// or the driver refuses them. Where the limit (or the ceiling) refuses, idle pooled buffers too small for the
    /// request make room for it first ([`CudaBackend::free_idle`]).
    fn zeroed_pinned(&self, words: usize, flags: u32) -> Result<PinnedBuffer, String> {
        let bytes = words.checked_mul(4).ok_or("a page-locked buffer too large to count")?;
        if let Err(why) = self.pinned.reserve(bytes) {
            let excess = self.pinned.excess(bytes);
            let made_room = self.free_idle(excess, bytes, true)? >= excess;
            if let Err(why) = if made_room { self.pinned.reserve(bytes) } else { Err(why) } {
                self.pinned.count_refusal(why);
                return Err(format!("{bytes} more bytes of page-locked memory: refused ({why:?})"));
            }
        }
        // SAFETY: the buffer is zeroed below, before any reference to its contents is made.
        let b = match unsafe { self.ctx.alloc_pinned_with_flags::<u32>(words, flags) } {
            Ok(b) => b,
            Err(e) => {
                let out_of_memory = e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY;
                self.pinned.refused(bytes, out_of_memory);
                return Err(de(e));
            }
        };
        self.pinned.allocated(bytes);
        let budget = Arc::clone(&self.pinned);
        let mut b = PinnedBuffer { slice: std::mem::ManuallyDrop::new(b), bytes, budget, pooled_at: 0 };
        let words = b.len();
        // SAFETY: a fresh page-locked allocation of `words` words, written (zeroed) whole through its pointer.
        unsafe { std::ptr::write_bytes(b.as_mut_ptr().map_err(de)?, 0, words) };
        Ok(b)
    }

    /// Frees idle pooled buffers (of both pools) of fewer than `below` bytes, the smallest first, until `excess` bytes
    /// are freed or none is left. To make room for a request (`for_request`): only those no request has taken for
    /// [`STALE_AFTER`] requests, and none unless `excess` bytes can be freed (a lowered limit frees what it can).
    /// Returns the bytes freed.
    fn free_idle(&self, excess: usize, below: usize, for_request: bool) -> Result<usize, String> {
        if excess == 0 {
            return Ok(0);
        }
        let (mut staged, mut read) = (Vec::new(), Vec::new());
        let freed = {
            // (The one place that holds both pools' locks: staging first.)
            let mut staging = self.staging.lock().map_err(|_| "staging pool poisoned")?;
            let mut readbacks = self.readbacks.lock().map_err(|_| "read-back pool poisoned")?;
            let size = |b: &PinnedBuffer| (!for_request || b.stale()).then_some(b.num_bytes());
            let staging_sizes: Vec<Option<usize>> = staging.iter().map(|p| size(&p.buffer)).collect();
            let readback_sizes: Vec<Option<usize>> = readbacks.iter().map(size).collect();
            let (chosen, freed) = idle_to_free(&staging_sizes, &readback_sizes, excess, below, for_request);
            for (from_staging, i) in chosen {
                match from_staging {
                    true => staged.push(staging.swap_remove(i)),
                    false => read.push(readbacks.swap_remove(i)),
                }
            }
            freed
        };
        // Freeing a pinned buffer waits for its copy: outside the locks.
        drop(staged);
        drop(read);
        Ok(freed)
    }

    /// A new pinned (write-combined: the host only writes it) staging buffer that holds `len` words, sized as the
    /// read-backs are, zeroed.
    fn new_staging(&self, len: usize) -> Result<Staged, String> {
        // (The event first: the buffer is freed by `Staged`'s drop only.) With blocking sync, a host thread that waits
        // for it sleeps (an event without the flag is spun on, whatever the context's flags).
        let copied = self.ctx.new_event(Some(self.staging_event)).map_err(de)?;
        let buffer = self.new_pinned(len, cudarc::driver::sys::CU_MEMHOSTALLOC_WRITECOMBINED)?;
        Ok(Staged { buffer: std::mem::ManuallyDrop::new(buffer), copied })
    }

    /// Staged words on the device: copied asynchronously from the pinned buffer (which goes back to the pool, its
    /// event recorded after the copy), or from pageable memory.
    fn send_words(&self, stream: &Arc<CudaStream>, words: StagedWords) -> Result<CudaSlice<u32>, String> {
        let (staged, len) = match words {
            StagedWords::Pageable(words) => return self.upload(stream, &words),
            StagedWords::Pinned { staged, len } => (staged, len),
        };
        let src = staged.buffer.as_slice().map_err(de)?.get(..len).ok_or("a staging buffer came up short")?;
        // SAFETY: every element is written by the copy below before a kernel reads it.
        let mut dst: CudaSlice<u32> = unsafe { self.uninit(stream, len) }?;
        stream.context().bind_to_thread().map_err(de)?;
        let copy = {
            let (dst_ptr, _record) = dst.device_ptr_mut(stream);
            // SAFETY: `dst` holds `len` words on the device; `src` is `len` words of page-locked memory, which the
            // pool keeps until the event recorded below says the copy is over (`Staged::wait` and its drop).
            unsafe { cudarc::driver::result::memcpy_htod_async(dst_ptr, src, stream.cu_stream()) }
        };
        if let Err(e) = copy.map_err(de).and_then(|()| staged.copied.record(stream).map_err(de)) {
            // The copy may still read the buffer, and its event does not say when it is over: the stream does.
            if stream.synchronize().is_err() {
                std::mem::forget(staged);
            }
            return Err(e);
        }
        self.pool_staged(staged)?;
        Ok(dst)
    }

    /// Puts a staging buffer back in the pool ([`return_to_pool`]).
    fn pool_staged(&self, staged: Staged) -> Result<(), String> {
        return_to_pool(&self.staging, staged)
    }

    /// A gather's index (each point's place in the grouped buffer), written for an upload
    /// ([`CudaBackend::stage_words`]); `None` when an index does not fit (the caller copies the points instead, which
    /// names it).
    fn stage_index(&self, index: &DeviceIndex<'_>) -> Result<Option<StagedWords>, String> {
        self.stage_words(index.len(), |words| index.write(words))
    }

    /// K1 for the whole frame (see [`crate::geometry::unproject::unproject_depth`]).
    pub fn unproject(&self, depth: &DepthImage, k: &Intrinsics) -> Result<PointCloud, String> {
        Ok(self.unproject_batch(&[(depth, k)])?.pop().unwrap_or_default())
    }

    /// A K1 batch on the device (laid out by [`DepthBatch::layout`]; the frames' depth words written straight into a
    /// pinned staging buffer), with its outputs allocated.
    fn k1_buffers(
        &self,
        stream: &Arc<CudaStream>,
        frames: &[(&DepthImage, &Intrinsics)],
        batch: &DepthBatch,
    ) -> Result<K1Buffers, String> {
        let tiles = batch.tile_frame.len() as u32;
        // The small tables first (pageable copies wait for the stream), then the depth words, asynchronously.
        let ray_x = self.upload(stream, &batch.ray_x)?;
        let ray_y = self.upload(stream, &batch.ray_y)?;
        let infos = self.upload(stream, bytemuck::cast_slice::<_, u32>(&batch.frames))?;
        let tile_frame = self.upload(stream, &batch.tile_frame)?;
        let pixels = batch.pixels as usize;
        // SAFETY (the four outputs): count_valid writes every tile's count and scan_counts every offset (tiles + 1);
        // write_points writes slots [0, valid points) of `points` and `pixels`, and nothing reads past them (the
        // frames' offsets, from the tiles', bound every read). A frame-sized buffer left unzeroed: 16 bytes a pixel.
        Ok(K1Buffers {
            depth: self
                .upload_pinned_with(stream, batch.word_count as usize, |dst| DepthBatch::write_words(frames, dst))?,
            ray_x,
            ray_y,
            infos,
            tile_frame,
            counts: unsafe { self.uninit(stream, tiles as usize) }?,
            offsets: unsafe { self.uninit(stream, tiles as usize + 1) }?,
            points: unsafe { self.uninit(stream, 3 * pixels) }?,
            pixels: unsafe { self.uninit(stream, pixels) }?,
            tiles,
        })
    }

    /// K1's three passes on `stream` (asynchronous).
    /// The exclusive prefix sum of the first `n` of `counts` into `offsets` (`n + 1` entries, the total last) on
    /// `stream`: `scan_counts` in one block up to [`SCAN_ONE_BLOCK_MAX`] counts, else the tiled scan (kernels/scan.cuh:
    /// each tile's sum, those sums scanned in one block, each tile's offsets), whose loads and stores are coalesced
    /// and spread over the device. The same offsets either way.
    fn prefix_sum(
        &self,
        stream: &Arc<CudaStream>,
        scan: &Scan,
        counts: &CudaSlice<u32>,
        offsets: &mut CudaSlice<u32>,
        n: u32,
    ) -> Result<(), String> {
        if (counts.len() as u64) < u64::from(n) || (offsets.len() as u64) <= u64::from(n) {
            return Err(format!("a prefix sum of {n} counts into {} offsets from {}", offsets.len(), counts.len()));
        }
        if n <= SCAN_ONE_BLOCK_MAX {
            let mut b = stream.launch_builder(&scan.one_block);
            b.arg(counts).arg(offsets).arg(&n);
            // SAFETY: scan_counts(const u32* counts, u32* offsets, u32 n): at least n counts and n + 1 offsets.
            unsafe { b.launch(launch((1, 1), SCAN_THREADS)) }.map_err(de)?;
            return Ok(());
        }
        let tiles = n.div_ceil(SCAN_TILE);
        // SAFETY: scan_tile_sums writes every tile's sum, scan_counts every tile's offset and the total.
        let mut sums: CudaSlice<u32> = unsafe { self.uninit(stream, tiles as usize) }?;
        let mut firsts: CudaSlice<u32> = unsafe { self.uninit(stream, tiles as usize + 1) }?;
        let mut b = stream.launch_builder(&scan.tile_sums);
        b.arg(counts).arg(&n).arg(&mut sums);
        // SAFETY: scan_tile_sums(const u32* counts, u32 n, u32* tile_sums): one block per tile of SCAN_TILE counts,
        // reading the counts below n; `tiles` sums.
        unsafe { b.launch(launch((tiles, 1), BLOCK)) }.map_err(de)?;
        let mut b = stream.launch_builder(&scan.one_block);
        b.arg(&sums).arg(&mut firsts).arg(&tiles);
        // SAFETY: scan_counts(const u32* counts, u32* offsets, u32 n): `tiles` sums, `tiles + 1` offsets.
        unsafe { b.launch(launch((1, 1), SCAN_THREADS)) }.map_err(de)?;
        let mut b = stream.launch_builder(&scan.apply);
        b.arg(counts).arg(&n).arg(&firsts).arg(offsets);
        // SAFETY: scan_tiles_apply(const u32* counts, u32 n, const u32* tile_offsets, u32* offsets): the same grid
        // as scan_tile_sums; `tiles + 1` tile offsets; writes offsets[0..=n].
        unsafe { b.launch(launch((tiles, 1), BLOCK)) }.map_err(de)?;
        Ok(())
    }

    /// [`CudaBackend::prefix_sum`] of `counts` (with the gap kernels' scans), read back: `counts.len() + 1`
    /// offsets. For the parity tests of both of its paths.
    #[doc(hidden)]
    pub fn prefix_sum_of(&self, counts: &[u32]) -> Result<Vec<u32>, String> {
        let n = u32::try_from(counts.len()).map_err(|_| format!("{} counts exceed one scan", counts.len()))?;
        let stream = self.stream()?;
        let counts = self.upload(&stream, counts)?;
        // SAFETY: prefix_sum writes all n + 1 offsets.
        let mut offsets: CudaSlice<u32> = unsafe { self.uninit(&stream, n as usize + 1) }?;
        self.prefix_sum(&stream, &self.k.scan_buckets, &counts, &mut offsets, n)?;
        let out = stream.clone_dtoh(&offsets.slice(..n as usize + 1)).map_err(de)?;
        self.sync(&stream)?;
        Ok(out)
    }

    fn k1_launch(&self, stream: &Arc<CudaStream>, d: &mut K1Buffers) -> Result<(), String> {
        K1Pass::ALL.iter().try_for_each(|&pass| self.k1_pass(stream, d, pass))
    }

    /// One of K1's kernels (on a batch's buffers, in [`K1Pass::ALL`]'s order).
    fn k1_pass(&self, stream: &Arc<CudaStream>, d: &mut K1Buffers, pass: K1Pass) -> Result<(), String> {
        let tiles = d.tiles;
        match pass {
            K1Pass::Count => {
                let mut b = stream.launch_builder(&self.k.count_valid);
                b.arg(&d.depth).arg(&d.infos).arg(&d.tile_frame).arg(&mut d.counts).arg(&tiles);
                // SAFETY: count_valid(const u32* depth, const Frame* frames, const u32* tile_frame, u32* tile_counts,
                // u32 tiles) in kernels/unproject.cu; one block per tile; every tile's frame and words are in the
                // buffers.
                unsafe { b.launch(launch((tiles, 1), BLOCK)) }.map_err(de)?;
            }
            K1Pass::Scan => self.prefix_sum(stream, &self.k.scan_tiles, &d.counts, &mut d.offsets, tiles)?,
            K1Pass::Write => {
                let mut b = stream.launch_builder(&self.k.write_points);
                b.arg(&d.depth)
                    .arg(&d.ray_x)
                    .arg(&d.ray_y)
                    .arg(&d.infos)
                    .arg(&d.tile_frame)
                    .arg(&d.offsets)
                    .arg(&mut d.points)
                    .arg(&mut d.pixels)
                    .arg(&tiles);
                // SAFETY: write_points(depth, ray_x, ray_y, frames, tile_frame, tile_offsets, float* points,
                // u32* pixel_of_point, u32 tiles): the offsets never exceed the batch's pixels, the size of both
                // outputs.
                unsafe { b.launch(launch((tiles, 1), BLOCK)) }.map_err(de)?;
            }
        }
        Ok(())
    }

    /// K1 for a batch of frames: all frames of a chunk (up to 2^28 pixels) in one device buffer and one launch per
    /// pass.
    pub fn unproject_batch(&self, frames: &[(&DepthImage, &Intrinsics)]) -> Result<Vec<PointCloud>, String> {
        let mut out = Vec::with_capacity(frames.len());
        for (start, end) in frame_chunks(frames, MAX_POINTS) {
            let stream = self.stream()?;
            let chunk = &frames[start..end];
            match self.unproject_device(&stream, chunk)? {
                None => out.extend(chunk.iter().map(|_| PointCloud::default())),
                Some(cloud) => out.extend(self.read_clouds(&stream, &cloud)?),
            }
        }
        Ok(out)
    }

    fn read_clouds(&self, stream: &Arc<CudaStream>, cloud: &DeviceCloud) -> Result<Vec<PointCloud>, String> {
        let total = cloud.offsets.last().copied().unwrap_or(0) as usize;
        if total == 0 {
            return Ok(split_clouds(&cloud.offsets, &[], &[]));
        }
        let floats = stream.clone_dtoh(&cloud.points.slice(..3 * total)).map_err(de)?;
        let pixels = stream.clone_dtoh(&cloud.pixels.slice(..total)).map_err(de)?;
        self.sync(stream)?;
        Ok(split_clouds(&cloud.offsets, &floats, &pixels))
    }

    /// K1 on the device for a batch of frames: the clouds stay there (`None` when no frame has a pixel); only the
    /// tiles' offsets are read back.
    fn unproject_device(
        &self,
        stream: &Arc<CudaStream>,
        frames: &[(&DepthImage, &Intrinsics)],
    ) -> Result<Option<DeviceCloud>, String> {
        let batch = DepthBatch::layout(frames, TILE)?;
        if batch.pixels > MAX_POINTS {
            return Err(format!("a frame of {} pixels exceeds one launch", batch.pixels));
        }
        let tiles = batch.tile_frame.len() as u32;
        if tiles == 0 {
            return Ok(None);
        }
        let mut d = self.k1_buffers(stream, frames, &batch)?;
        self.k1_launch(stream, &mut d)?;
        let K1Buffers { offsets, points, pixels, depth, ray_x, ray_y, infos, .. } = d;
        let all = stream.clone_dtoh(&offsets).map_err(de)?;
        self.sync(stream)?;
        let offsets = batch.frame_offsets(&all)?;
        Ok(Some(DeviceCloud { points, pixels, offsets, depth, ray_x, ray_y, infos }))
    }

    /// K1 per object (see [`crate::geometry::unproject::unproject_objects`]): the cloud is computed and grouped on
    /// the device; only the grouped points come back.
    pub fn unproject_objects(
        &self,
        depth: &DepthImage,
        k: &Intrinsics,
        instance_labels: Option<&[u32]>,
        regions: &[ObjectRegion],
    ) -> Result<GroupedPoints, String> {
        if regions.is_empty() {
            return Ok(GroupedPoints { offsets: vec![0], ..GroupedPoints::default() });
        }
        let stream = self.stream()?;
        let Some(cloud) = self.unproject_device(&stream, &[(depth, k)])? else {
            return Ok(GroupedPoints { offsets: vec![0; regions.len() + 1], ..GroupedPoints::default() });
        };
        let mut failed = [None];
        let (grouped, _) = self.group_batch(&stream, &cloud, &[(depth, instance_labels, regions)], &mut failed)?;
        match failed {
            [Some(e)] => Err(e),
            _ => grouped.into_iter().next().ok_or_else(|| "no grouping came back".into()),
        }
    }

    /// K1 and K2 of a batch of frames (see [`super::Backend::frames_geometry`]): each chunk of frames (up to 2^28
    /// pixels) on one stream, every device step of every frame of the chunk launched before one round trip. The
    /// cloud stays on the device: only each frame's point count, its objects' points and its scoring subsample
    /// (points, for the host's refinement) come back. Per-frame checks (instance labels, the
    /// launch limits) fail only their frame; a device error fails the chunk's frames.
    pub fn frames_geometry(
        &self,
        frames: &[FrameGeometryInput<'_>],
        normal_max_step_px: u32,
    ) -> Vec<Result<FrameGeometry, String>> {
        let mut out: Vec<Option<Result<FrameGeometry, String>>> = vec![None; frames.len()];
        // A frame whose depth and intrinsics disagree in size would fail the whole packed batch: it fails alone.
        let mut packed = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            match (f.depth.width, f.depth.height) == (f.k.width, f.k.height) {
                true => packed.push(i),
                false => {
                    out[i] = Some(Err(format!(
                        "depth is {}x{} but the intrinsics say {}x{}",
                        f.depth.width, f.depth.height, f.k.width, f.k.height
                    )))
                }
            }
        }
        let pairs: Vec<(&DepthImage, &Intrinsics)> = packed.iter().map(|&i| (frames[i].depth, frames[i].k)).collect();
        for (start, end) in frame_chunks(&pairs, MAX_POINTS) {
            let chunk: Vec<&FrameGeometryInput<'_>> = packed[start..end].iter().map(|&i| &frames[i]).collect();
            match self.geometry_chunk(&chunk, normal_max_step_px) {
                Ok(results) => {
                    for (&i, r) in packed[start..end].iter().zip(results) {
                        out[i] = Some(r);
                    }
                }
                Err(e) => {
                    for &i in &packed[start..end] {
                        out[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        out.into_iter().map(|r| r.unwrap_or_else(|| Err("the frame was not processed".into()))).collect()
    }

    /// [`Self::frames_geometry`] for one chunk of frames on one stream.
    fn geometry_chunk(
        &self,
        frames: &[&FrameGeometryInput<'_>],
        normal_max_step_px: u32,
    ) -> Result<Vec<Result<FrameGeometry, String>>, String> {
        let stream = self.stream()?;
        let pairs: Vec<(&DepthImage, &Intrinsics)> = frames.iter().map(|f| (f.depth, f.k)).collect();
        let empty =
            |f: &FrameGeometryInput<'_>| GroupedPoints { offsets: vec![0; f.regions.len() + 1], ..Default::default() };
        let Some(cloud) = self.unproject_device(&stream, &pairs)? else {
            let none = |f: &&FrameGeometryInput<'_>| Ok(FrameGeometry { grouped: empty(f), ..Default::default() });
            return Ok(frames.iter().map(none).collect());
        };
        let mut failed: Vec<Option<String>> = vec![None; frames.len()];
        let inputs: Vec<GroupInput<'_>> = frames.iter().map(|f| (f.depth, f.instance_labels, f.regions)).collect();
        let (grouped, resident) = self.group_batch(&stream, &cloud, &inputs, &mut failed)?;
        let fits = self.ground_batch(&stream, &cloud, frames, &failed, normal_max_step_px)?;
        Ok(frames
            .iter()
            .enumerate()
            .zip(grouped.into_iter().zip(resident).zip(fits).zip(failed))
            .map(|((i, _), (((grouped, resident), fit), failed))| match failed {
                Some(e) => Err(e),
                None => Ok(FrameGeometry {
                    valid_points: (cloud.offsets[i + 1] - cloud.offsets[i]) as usize,
                    cloud: None,
                    grouped,
                    fit,
                    resident,
                }),
            })
            .collect())
    }

    /// K1's grouping for every frame of a chunk whose cloud is on the device, in four launches for the whole chunk
    /// (kernels/group.cu; a fifth and more only past [`Self::max_grid_yz`] objects): every frame's counts, scans and object starts,
    /// one round trip for the starts, every frame's writes, one read-back of all grouped points. The frames' labels
    /// go up in one pinned copy, their regions and job table in one copy each. A frame that cannot be grouped
    /// (labels that do not cover its depth, too many objects) gets its error in `failed`.
    fn group_batch(
        &self,
        stream: &Arc<CudaStream>,
        cloud: &DeviceCloud,
        frames: &[GroupInput<'_>],
        failed: &mut [Option<String>],
    ) -> Result<(Vec<GroupedPoints>, Vec<super::ResidentGroup>), String> {
        let mut out: Vec<GroupedPoints> = vec![GroupedPoints::default(); frames.len()];
        let mut resident = vec![super::ResidentGroup::default(); frames.len()];
        // Each job's frame, its table entry, and the tables' contents.
        let (mut job_frames, mut jobs) = (Vec::new(), Vec::<GroupJob>::new());
        // The labelled frames' labels, in job order (they go up in one pinned buffer), and how many words in all.
        let (mut labelled, mut label_words_total) = (Vec::<&[u32]>::new(), 0u64);
        let (mut regions, mut object_job) = (Vec::new(), Vec::<u32>::new());
        let (mut cells_total, mut widest) = (0u64, 0u32);
        for (i, &(depth, labels, frame_regions)) in frames.iter().enumerate() {
            let (a, n_points) = (cloud.offsets[i], cloud.offsets[i + 1] - cloud.offsets[i]);
            match grouping_without_launch(n_points, depth, labels, frame_regions) {
                Err(e) => {
                    failed[i] = Some(e);
                    continue;
                }
                Ok(Some(done)) => {
                    out[i] = done;
                    continue;
                }
                Ok(None) => {}
            }
            let objects = frame_regions.len() as u64;
            // Regions may overlap: every point may belong to every object. A frame's slots stay in 32 bits.
            if objects * n_points >= 1 << 32 {
                failed[i] = Some(format!(
                    "{objects} objects over {n_points} points may group more points than one launch holds"
                ));
                continue;
            }
            let blocks = blocks_for(n_points, BLOCK)?;
            let cells = objects * u64::from(blocks);
            let labels_at = label_words_total;
            let label_words = labels.map_or(0, |l| l.len() as u64);
            // Every index of the tables in 32 bits (the offsets have one more entry a frame).
            let ends = [
                cells_total + cells + jobs.len() as u64 + 1,
                (regions.len() + jobs.len()) as u64 + objects + 1,
                labels_at + label_words,
                object_job.len() as u64 + objects,
                a + n_points,
            ];
            if ends.iter().any(|&e| e >= 1 << 32) {
                failed[i] = Some(format!(
                    "{objects} objects over {n_points} points overflow the chunk's 32-bit grouping tables"
                ));
                continue;
            }
            object_job.extend(std::iter::repeat_n(jobs.len() as u32, objects as usize));
            jobs.push(GroupJob {
                point_base: a as u32,
                n_points: n_points as u32,
                objects: objects as u32,
                blocks,
                counts_at: cells_total as u32,
                labels_at: labels_at as u32,
                first_object: regions.len() as u32,
                width: depth.width,
                has_labels: u32::from(labels.is_some()),
                pad: [0; 3],
            });
            job_frames.push(i);
            if let Some(l) = labels {
                labelled.push(l);
            }
            label_words_total += label_words;
            regions.extend(gpu_regions(frame_regions));
            widest = widest.max(blocks);
            cells_total += cells;
        }
        if jobs.is_empty() {
            return Ok((out, resident));
        }
        let n_objects = object_job.len() as u32;
        // The small tables first (pageable copies may wait for the stream), then the labels, asynchronously.
        let regions = self.upload(stream, bytemuck::cast_slice::<_, u32>(&regions))?;
        let table = self.upload(stream, bytemuck::cast_slice::<_, u32>(&jobs))?;
        let object_job = self.upload(stream, &object_job)?;
        let labels = self.upload_pinned_with(stream, label_words_total as usize, |dst| {
            // The frames in parallel, each into its part (the parts fill the buffer: label_words_total words).
            let parts = split_parts(dst, labelled.iter().map(|l| l.len()));
            labelled.par_iter().zip(parts).for_each(|(l, part)| part.copy_from_slice(l));
        })?;
        // SAFETY (the three allocations): every launched job has objects and points (grouping_without_launch took the
        // others), so count_members writes each job's objects x blocks counts, scan_frames each job's cells + 1
        // offsets and object_starts each job's objects + 1 starts: every entry is written before it is read.
        let counts: CudaSlice<u32> = unsafe { self.uninit(stream, cells_total as usize) }?;
        let mut offsets: CudaSlice<u32> = unsafe { self.uninit(stream, cells_total as usize + jobs.len()) }?;
        // (The starts: objects + 1 a frame, kernels/group.cu.)
        let mut starts: CudaSlice<u32> = unsafe { self.uninit(stream, n_objects as usize + jobs.len()) }?;
        // The grid's y is bounded: the objects in parts.
        let parts: Vec<(u32, u32)> = self.grid_parts(n_objects).collect();
        for &(base, n) in &parts {
            let mut b = stream.launch_builder(&self.k.count_members);
            b.arg(&cloud.pixels).arg(&labels).arg(&regions).arg(&table).arg(&object_job).arg(&counts).arg(&base);
            // SAFETY: count_members(pixels, labels, regions, GroupJob* jobs, object_job, counts, object_base) in
            // kernels/group.cu; grid (widest frame's blocks, objects base..base + n of the chunk's n_objects): each
            // object's job (object_job, one per object) names its frame's points within the cloud, its labels (one
            // per pixel, checked by grouping_without_launch) within `labels`, its region and its objects x blocks
            // counts within `counts` (laid out above).
            unsafe { b.launch(launch((widest, n), BLOCK)) }.map_err(de)?;
        }
        let mut b = stream.launch_builder(&self.k.scan_frames);
        b.arg(&table).arg(&counts).arg(&mut offsets);
        // SAFETY: scan_frames(jobs, counts, offsets): a block per job, each scanning its cells of `counts` into its
        // cells + 1 entries of `offsets` (laid out above, disjoint).
        unsafe { b.launch(launch((jobs.len() as u32, 1), SCAN_THREADS)) }.map_err(de)?;
        let mut b = stream.launch_builder(&self.k.object_starts);
        b.arg(&table).arg(&object_job).arg(&offsets).arg(&mut starts).arg(&n_objects);
        // SAFETY: object_starts(jobs, object_job, offsets, starts, objects): a thread per object below n_objects,
        // writing its job's objects + 1 entries of `starts` (laid out above) from the job's offsets.
        unsafe { b.launch(launch((blocks_for(u64::from(n_objects), BLOCK)?, 1), BLOCK)) }.map_err(de)?;
        let starts_host = stream.clone_dtoh(&starts).map_err(de)?;
        self.sync(stream)?;
        // Each job's object offsets (within the frame) and where its grouped points go in the chunk's output.
        let mut bases = Vec::with_capacity(jobs.len());
        let mut object_offsets = Vec::with_capacity(jobs.len());
        let mut total = 0u64;
        for (f, j) in jobs.iter().enumerate() {
            // Frame f's object starts follow the earlier frames' (objects + 1 each): kernels/group.cu.
            let at = j.first_object as usize + f;
            let o = starts_host.get(at..at + j.objects as usize + 1).ok_or("object offsets came back short")?;
            bases.push(u32::try_from(total).map_err(|_| "the chunk groups more than 2^32 points")?);
            total += u64::from(o.last().copied().unwrap_or(0));
            object_offsets.push(o.to_vec());
        }
        let total = usize::try_from(total).map_err(|_| "grouped points overflow")?;
        if total == 0 {
            for (&f, o) in job_frames.iter().zip(object_offsets) {
                out[f] = GroupedPoints { offsets: o, ..GroupedPoints::default() };
            }
            return Ok((out, resident));
        }
        let bases_dev = self.upload(stream, &bases)?;
        // SAFETY (both): write_members writes every slot below `total`: each job's slots [base, base + its total) are
        // its members, one each, and the jobs' ranges tile [0, total).
        let mut out_points: CudaSlice<f32> = unsafe { self.uninit(stream, 3 * total) }?;
        let mut out_pixels: CudaSlice<u32> = unsafe { self.uninit(stream, total) }?;
        for &(base, n) in &parts {
            let mut b = stream.launch_builder(&self.k.write_members);
            b.arg(&cloud.points)
                .arg(&cloud.pixels)
                .arg(&labels)
                .arg(&regions)
                .arg(&table)
                .arg(&object_job)
                .arg(&offsets)
                .arg(&bases_dev)
                .arg(&mut out_points)
                .arg(&mut out_pixels)
                .arg(&base);
            // SAFETY: write_members(points, pixels, labels, regions, jobs, object_job, offsets, bases, out_points,
            // out_pixels, object_base); grid as count_members'; a job's slots run from its base (a prefix sum of the
            // jobs' totals) below base + its total, so every slot is below `total`, the outputs' size in points.
            unsafe { b.launch(launch((widest, n), BLOCK)) }.map_err(de)?;
        }
        // SAFETY: f32 and u32 have the same size and alignment, and every bit pattern is a valid u32.
        let point_words = unsafe { out_points.transmute::<u32>(3 * total) }.ok_or("grouped points buffer")?;
        let points = self.read_back(stream, &point_words)?;
        let pixels = self.read_back(stream, &out_pixels)?;
        // No host copy: each frame's grouped points and pixels are views of the chunk's read-backs (each waits for
        // the stream once), which go back to the pool when the last view goes (with the batch's objects).
        let points: SharedSlice<Point3> = SharedSlice::kept(Arc::new(points.into_kept::<Point3>()?));
        let pixels: SharedSlice<u32> = SharedSlice::kept(Arc::new(pixels.into_kept::<u32>()?));
        let on_device = Arc::new(GroupedOnDevice { points: out_points, len: total as u64 });
        for ((&f, &base), offsets) in job_frames.iter().zip(&bases).zip(object_offsets) {
            let (base, grouped) = (base as usize, offsets.last().copied().unwrap_or(0) as usize);
            let points = points.slice(base..base + grouped).ok_or("grouped points came back short")?;
            let pixels = pixels.slice(base..base + grouped).ok_or("grouped pixels came back short")?;
            resident[f] = super::ResidentGroup::on_cuda(Arc::clone(&on_device), base as u64);
            out[f] = GroupedPoints { points_in_camera: points, pixels, offsets };
        }
        Ok((out, resident))
    }

    /// K2 for every frame of a chunk whose cloud is on the device (frames marked `failed` sit out): the scoring
    /// subsamples gathered in one launch and brought back (their points), their normals estimated on the device from
    /// each depth image (K1's input, still there), then [`GroundBatch::fits`].
    fn ground_batch(
        &self,
        stream: &Arc<CudaStream>,
        cloud: &DeviceCloud,
        frames: &[&FrameGeometryInput<'_>],
        failed: &[Option<String>],
        normal_max_step_px: u32,
    ) -> Result<Vec<Option<PlaneFit>>, String> {
        let jobs = ground_jobs(frames.iter().enumerate().filter(|(i, _)| failed[*i].is_none()).map(|(i, f)| {
            let (a, b) = (cloud.offsets[i], cloud.offsets[i + 1]);
            (i, a as usize, (b - a) as u32, f.frame_key, f.params, true)
        }));
        let mut fits = vec![None; frames.len()];
        if jobs.is_empty() {
            return Ok(fits);
        }
        let gathered = self.gather_samples(stream, &cloud.points, &jobs)?;
        // Each frame's subsample is a cloud of its own: its normals from the depth image (as the CPU reference's,
        // which only read each sample's pixel and depth), on the device where K1 left the depth.
        let normals = self.sample_normals(stream, cloud, &jobs, &gathered, normal_max_step_px)?;
        let batch = GroundBatch::on_device(self, stream, &cloud.points, jobs, gathered, normals)?;
        for (j, fit) in batch.jobs.iter().zip(batch.fits()?) {
            fits[j.frame] = fit;
        }
        Ok(fits)
    }

    /// K2's sample normals of every job that uses them (`sample_normals` in kernels/unproject.cu, the twin of
    /// [`crate::geometry::unproject::estimate_normals`]), three floats per sample on the device; zeros for the others.
    fn sample_normals(
        &self,
        stream: &Arc<CudaStream>,
        cloud: &DeviceCloud,
        jobs: &[GroundJob<'_>],
        gathered: &Gathered,
        max_step_px: u32,
    ) -> Result<CudaSlice<f32>, String> {
        let samples = jobs.last().map_or(0, |j| j.sample_base + j.sample_index.len());
        let mut normals = self.zeros::<f32>(stream, 3 * samples)?;
        let table: Vec<NormalJob> = jobs
            .iter()
            .filter(|j| j.use_normals && !j.sample_index.is_empty())
            .map(|j| NormalJob {
                frame: j.frame as u32,
                sample_base: j.sample_base as u32,
                samples: j.sample_index.len() as u32,
                pad: 0,
            })
            .collect();
        let max_step = max_step_px.max(2);
        let Some(widest) = table.iter().map(|j| j.samples).max() else { return Ok(normals) };
        let table_dev = self.upload(stream, bytemuck::cast_slice::<_, u32>(&table))?;
        for (base, n) in self.grid_parts(table.len() as u32) {
            let mut l = stream.launch_builder(&self.k.sample_normals);
            l.arg(&cloud.depth)
                .arg(&cloud.ray_x)
                .arg(&cloud.ray_y)
                .arg(&cloud.infos)
                .arg(&cloud.points)
                .arg(&cloud.pixels)
                .arg(&gathered.index)
                .arg(&table_dev)
                .arg(&mut normals)
                .arg(&max_step)
                .arg(&base);
            // SAFETY: sample_normals(depth, ray_x, ray_y, frames, cloud, pixels, sample_index, NormalJob* jobs,
            // float* normals, u32 max_step, u32 job_base) in kernels/unproject.cu; grid (blocks of the widest job,
            // jobs base..base + n of the table), a thread per sample below its job's count; each job's frame is its
            // index in the K1 batch whose buffers these are, its samples' global indices (gather_samples' `index`) lie
            // below the batch's points, and `normals` holds 3 floats per sample.
            unsafe { l.launch(launch((blocks_for(u64::from(widest), BLOCK)?, n), BLOCK)) }.map_err(de)?;
        }
        Ok(normals)
    }

    /// K2's sample normals of a batch of frames as [`Self::frames_geometry`] computes them on the device: for each
    /// frame with at least 3 valid points, the normals of its scoring subsample
    /// ([`crate::geometry::ransac::score_sample_indices`]); empty for the others. For parity tests against
    /// [`crate::geometry::unproject::estimate_normals`].
    pub fn ground_sample_normals(
        &self,
        frames: &[(&DepthImage, &Intrinsics)],
        params: &RansacParams,
        normal_max_step_px: u32,
    ) -> Result<Vec<Vec<Point3>>, String> {
        let mut out = vec![Vec::new(); frames.len()];
        let stream = self.stream()?;
        let Some(cloud) = self.unproject_device(&stream, frames)? else { return Ok(out) };
        let jobs = ground_jobs((0..frames.len()).map(|i| {
            let (a, b) = (cloud.offsets[i], cloud.offsets[i + 1]);
            (i, a as usize, (b - a) as u32, 0, params, true)
        }));
        if jobs.is_empty() {
            return Ok(out);
        }
        let gathered = self.gather_samples(&stream, &cloud.points, &jobs)?;
        let normals = self.sample_normals(&stream, &cloud, &jobs, &gathered, normal_max_step_px)?;
        let floats = stream.clone_dtoh(&normals).map_err(de)?;
        self.sync(&stream)?;
        for j in &jobs {
            let (a, n) = (j.sample_base, j.sample_index.len());
            let got = floats.get(3 * a..3 * (a + n)).ok_or("sample normals came back short")?;
            out[j.frame] = bytemuck::cast_slice::<f32, Point3>(got).to_vec();
        }
        Ok(out)
    }

    /// The scoring subsample of every job, gathered on the device by global index into `cloud`: the device copy, the
    /// global indices, and each job's host copy (points only).
    fn gather_samples(
        &self,
        stream: &Arc<CudaStream>,
        cloud: &CudaSlice<f32>,
        jobs: &[GroundJob<'_>],
    ) -> Result<Gathered, String> {
        // The samples' indices in the batch's cloud, the jobs in parallel, straight into a pinned staging buffer (a
        // frame's points start below 2^32: MAX_POINTS).
        let items: Vec<(u32, &[u32])> = jobs.iter().map(|j| (j.point_base as u32, j.sample_index.as_slice())).collect();
        let total: usize = items.iter().map(|(_, s)| s.len()).sum();
        let n = u32::try_from(total).map_err(|_| format!("{total} K2 samples exceed one launch"))?;
        let index = self
            .upload_staged(stream, total, |words| {
                par_fill(&items, |(_, s)| s.len(), |&(base, s)| s.iter().map(move |&i| base.checked_add(i)), words)
            })?
            .ok_or("the K2 subsample's indices")?;
        // SAFETY: gather_samples writes the 3 floats of every sample.
        let mut samples: CudaSlice<f32> = unsafe { self.uninit(stream, 3 * total) }?;
        let grid = launch((blocks_for(u64::from(n), BLOCK)?, 1), BLOCK);
        let mut l = stream.launch_builder(&self.k.gather_samples);
        l.arg(cloud).arg(&index).arg(&mut samples).arg(&n);
        // SAFETY: gather_samples(cloud, sample_index, samples, n_samples) in kernels/ransac.cu: every global index
        // is below the cloud's point count; `samples` holds 3 floats per sample.
        unsafe { l.launch(grid) }.map_err(de)?;
        // Into a pooled pinned read-back buffer (a copy into pageable memory goes through the driver's staging).
        let mut back = self.read_back(stream, &samples)?;
        let floats: &[f32] = bytemuck::cast_slice(back.words()?);
        let points = jobs
            .par_iter()
            .map(|j| {
                let floats = floats.get(3 * j.sample_base..3 * (j.sample_base + j.sample_index.len()));
                floats.map(|f| bytemuck::cast_slice::<f32, Point3>(f).to_vec()).ok_or("a K2 job's samples out of range")
            })
            .collect::<Result<_, _>>()?;
        Ok(Gathered { samples, index, points })
    }

    /// A K2 batch of one frame whose points come from the host (the parity and timing entry points below): `None`
    /// when the frame has fewer than 3 points or no hypotheses (no admissible plane on any backend).
    fn one_frame_ground<'a>(
        &'a self,
        stream: &'a Arc<CudaStream>,
        cloud: &'a CudaSlice<f32>,
        points: &[Point3],
        sample_normals: Option<&[Point3]>,
        frame_key: u32,
        params: &'a RansacParams,
    ) -> Result<Option<GroundBatch<'a>>, String> {
        let n = u32::try_from(points.len()).map_err(|_| format!("{} points are too many", points.len()))?;
        if u64::from(n) > MAX_POINTS {
            return Err(format!("a cloud of {n} points exceeds one launch"));
        }
        let mut jobs = ground_jobs(std::iter::once((0, 0, n, frame_key, params, false)));
        let Some(job) = jobs.first_mut() else { return Ok(None) };
        job.use_normals = sample_normals.is_some_and(|m| m.len() == job.sample_index.len());
        let (with_normals, samples) = (job.use_normals, job.sample_index.len());
        let gathered = self.gather_samples(stream, cloud, &jobs)?;
        // Three floats per sample; zeros without normals.
        let flat: Vec<f32> = match sample_normals.filter(|_| with_normals) {
            Some(n) => bytemuck::cast_slice(n).to_vec(),
            None => vec![0.0; 3 * samples],
        };
        let normals = self.upload(stream, &flat)?;
        GroundBatch::on_device(self, stream, cloud, jobs, gathered, normals).map(Some)
    }

    /// K2 scores of every hypothesis (see [`crate::geometry::ransac::score_hypotheses`]), drawn on the device.
    pub fn score_hypotheses(
        &self,
        points: &[Point3],
        sample_normals: Option<&[Point3]>,
        frame_key: u32,
        params: &RansacParams,
    ) -> Result<Vec<u32>, String> {
        let stream = self.stream()?;
        let cloud = self.upload(&stream, bytemuck::cast_slice::<_, f32>(points))?;
        match self.one_frame_ground(&stream, &cloud, points, sample_normals, frame_key, params)? {
            Some(batch) => batch.scores(&batch.hypotheses()?.device),
            // No hypotheses, or every one inadmissible (fewer than 3 points).
            None => Ok(vec![0; if points.len() < 3 { params.hypotheses as usize } else { 0 }]),
        }
    }

    /// K2 whole (see [`crate::geometry::ransac::fit_ground_plane`]): the draws, the scoring, the refinement's
    /// support tests and the final inlier count on the device; the planes, the winner and the 3 x 3 fits on the
    /// host with the CPU reference's code.
    pub fn fit_ground_plane(
        &self,
        points: &[Point3],
        sample_normals: Option<&[Point3]>,
        frame_key: u32,
        params: &RansacParams,
    ) -> Result<Option<PlaneFit>, String> {
        let stream = self.stream()?;
        let cloud = self.upload(&stream, bytemuck::cast_slice::<_, f32>(points))?;
        match self.one_frame_ground(&stream, &cloud, points, sample_normals, frame_key, params)? {
            Some(batch) => Ok(batch.fits()?.pop().flatten()),
            None => Ok(None),
        }
    }

    /// The three point indices of every hypothesis as the device draws them (`kernels/rng.cuh`), for parity tests
    /// against [`crate::geometry::ransac::hypothesis_indices`].
    pub fn hypothesis_draws(
        &self,
        points: &[Point3],
        frame_key: u32,
        params: &RansacParams,
    ) -> Result<Vec<[u32; 3]>, String> {
        let stream = self.stream()?;
        let cloud = self.upload(&stream, bytemuck::cast_slice::<_, f32>(points))?;
        let Some(batch) = self.one_frame_ground(&stream, &cloud, points, None, frame_key, params)? else {
            return Ok(Vec::new());
        };
        let (triples, _) = batch.draws()?;
        Ok(triples.chunks_exact(3).map(|t| [t[0], t[1], t[2]]).collect())
    }

    /// K3: exact DBSCAN (see [`crate::geometry::dbscan::dbscan`] for the definitions every backend meets).
    pub fn dbscan(&self, input: &[Point3], eps: f32, min_points: u32) -> Result<Clustering, String> {
        self.dbscan_batch(&[DbscanJob { points: input, eps, min_points }])?
            .pop()
            .ok_or_else(|| "DBSCAN returned no clustering".to_string())
    }

    /// K3 for a batch of jobs (see [`crate::geometry::dbscan::dbscan_batch`]): every job of a chunk (up to 2^26
    /// points) in one set of launches and one round trip, the grid built on the device (the host only concatenates
    /// the points; `cell_of` checks them, and a refused chunk gets the host's error for it: see
    /// [`super::pack::dbscan_refusal`]).
    pub fn dbscan_batch(&self, jobs: &[DbscanJob<'_>]) -> Result<Vec<Clustering>, String> {
        // Jobs that take all their points, on no device: every chunk's points are uploaded (no copy is made before).
        let indexed: Vec<IndexedJob<'_>> = jobs
            .iter()
            .map(|j| IndexedJob { points: IndexedPoints::whole(j.points), eps: j.eps, min_points: j.min_points })
            .collect();
        self.dbscan_batch_indexed(&indexed)
    }

    /// [`CudaBackend::dbscan_batch`] on jobs that name their points by index into an object's points (see
    /// [`super::Backend::dbscan_batch_indexed`]): a chunk whose jobs all lie in one device buffer (K1's grouped
    /// points) uploads a word a point (the gather's indices) and the host copies no point; another chunk has its
    /// kept points copied and uploaded. The host copies every job's kept points only to name an error.
    pub fn dbscan_batch_indexed(&self, jobs: &[IndexedJob<'_>]) -> Result<Vec<Clustering>, String> {
        let shapes: Vec<JobShape> = jobs.iter().map(JobShape::from).collect();
        // The host's errors, from the kept points copied and checked as `dbscan_batch` checks them, after a bad index
        // of `keep` (as on the other backends): for the batch (`otherwise` if its points pass), and for a chunk the
        // device refused.
        let batch_error = |otherwise: String| match super::kept_points_of(jobs) {
            Err(m) => m,
            Ok(points) => {
                dbscan_chunks(&super::plain_jobs(jobs, &points), MAX_DBSCAN_POINTS).err().unwrap_or(otherwise)
            }
        };
        let refusal = |chunk: &[usize]| match super::kept_points_of(jobs) {
            Err(m) => m,
            Ok(points) => dbscan_refusal(&super::plain_jobs(jobs, &points), chunk, MAX_DBSCAN_POINTS),
        };
        let mut out = vec![Clustering::default(); jobs.len()];
        for chunk in dbscan_chunks_of_shapes(&shapes, MAX_DBSCAN_POINTS).map_err(batch_error)? {
            let mut batch = DbscanBatch::shaped(&shapes, &chunk)?;
            let gather = match device_index(chunk.iter().map(|&i| jobs[i].points)) {
                Some(index) => self.stage_index(&index)?.map(|words| (index.grouped, words)),
                None => None,
            };
            if gather.is_none() {
                // Some job of the chunk does not lie in the others' device buffer: the chunk's kept points go up.
                let these: Vec<IndexedJob<'_>> = chunk.iter().map(|&i| jobs[i]).collect();
                let points = super::kept_points_of(&these).map_err(batch_error)?;
                batch.pack_points(points.iter().map(|p| &p[..]));
            }
            let labels = self.dbscan_device(&batch, gather)?;
            let clusterings = chunk_clusterings(&batch, labels, || refusal(&chunk))?;
            for (&i, c) in chunk.iter().zip(clusterings) {
                out[i] = c;
            }
        }
        Ok(out)
    }

    /// One batch's labels and core flags (batch order, one word per point: the flag in the label's top bit), from the
    /// grid to the borders on one stream, and one word more: not 0 when `cell_of` refused a point (its labels are
    /// then meaningless).
    fn dbscan_device(
        &self,
        batch: &DbscanBatch,
        gather: Option<(&GroupedOnDevice, StagedWords)>,
    ) -> Result<ReadBack, String> {
        let n = batch.params.points as usize;
        let slots = batch.params.cells as usize;
        let stream = self.stream()?;
        let params = batch.params;
        let g = (blocks_for(n as u64, BLOCK)?, 1);
        // The small tables first (pageable copies may wait for the stream), then the points or the gather's index.
        let job_start = self.upload(&stream, &batch.job_start)?;
        let jobs = self.upload(&stream, bytemuck::cast_slice::<_, u32>(&batch.jobs))?;
        let points_b = match gather {
            Some((_, index)) if index.len() != n => {
                return Err(format!("the gather has {} indices for {n} points", index.len()));
            }
            Some((grouped, index)) => {
                let index = self.send_words(&stream, index)?;
                // SAFETY: gather_points writes all 3n floats before cell_of reads them.
                let mut points_b: CudaSlice<f32> = unsafe { self.uninit(&stream, 3 * n) }?;
                let mut b = stream.launch_builder(&self.k.gather_points);
                b.arg(&grouped.points).arg(&index).arg(&params).arg(&mut points_b);
                // SAFETY: gather_points(const float* grouped, const u32* index, Params, float* points_b) in
                // kernels/dbscan.cu: n indices, each below the grouped buffer's point count (device_index), 3n
                // floats written.
                unsafe { b.launch(launch(g, BLOCK)) }.map_err(de)?;
                self.count_resident_read(0);
                points_b
            }
            _ => self.upload(&stream, &batch.points)?,
        };
        // What comes back: n labels (unsort's) and the refusal word after them (cell_of's), zeroed here.
        // SAFETY: unsort writes labels_b at original[i] for every i, a permutation of 0..n; word n is zeroed below.
        let mut labels_b: CudaSlice<u32> = unsafe { self.uninit(&stream, n + 1) }?;
        // The grid: each point's cell, each occupied cell's slot and count, the slots' offsets, the sorted points.
        // SAFETY: cell_of writes the 4 words of every point below n (= params.points).
        let mut cell_b: CudaSlice<u32> = unsafe { self.uninit(&stream, 4 * n) }?;
        {
            let mut refused = labels_b.slice_mut(n..);
            stream.memset_zeros(&mut refused).map_err(de)?;
            let mut b = stream.launch_builder(&self.k.cell_of);
            b.arg(&points_b).arg(&job_start).arg(&jobs).arg(&params).arg(&mut cell_b).arg(&mut refused);
            // SAFETY: cell_of(const float* points_b, const u32* job_start, const Job* jobs, Params, u32* cell_b,
            // u32* refused): 3n floats, jobs + 1 starts (none of the jobs empty), the 16-byte job records, 4n cell
            // words, one refusal word (labels_b's last).
            unsafe { b.launch(launch(g, BLOCK)) }.map_err(de)?;
        }
        let mut owner = self.zeros::<u32>(&stream, slots)?;
        let mut count = self.zeros::<u32>(&stream, slots)?;
        // SAFETY: claim_cells writes every point's slot.
        let mut slot_b: CudaSlice<u32> = unsafe { self.uninit(&stream, n) }?;
        let mut b = stream.launch_builder(&self.k.claim_cells);
        b.arg(&cell_b).arg(&params).arg(&mut owner).arg(&mut count).arg(&mut slot_b);
        // SAFETY: claim_cells(cell_b, Params, owner, count, slot_b): slots (a power of two, at least 2n) zeroed
        // owners and counts, so every probe sequence ends at an empty slot or its cell; n slot indices.
        unsafe { b.launch(launch(g, BLOCK)) }.map_err(de)?;
        // SAFETY: scan_counts writes all `slots + 1` offsets (params.cells = slots).
        let mut start: CudaSlice<u32> = unsafe { self.uninit(&stream, slots + 1) }?;
        self.prefix_sum(&stream, &self.k.scan_slots, &count, &mut start, params.cells)?;
        // SAFETY (all three): scatter_points writes each point's entries at its sorted position, and the positions
        // (each slot's start plus a distinct cursor value below its count) are a permutation of 0..n.
        let mut d = DeviceGrid {
            points: unsafe { self.uninit(&stream, 3 * n) }?,
            cell_xyz: unsafe { self.uninit(&stream, 4 * n) }?,
            original: unsafe { self.uninit(&stream, n) }?,
            owner,
            start,
            cell_b,
            jobs,
            params,
        };
        let mut cursor = count;
        stream.memset_zeros(&mut cursor).map_err(de)?;
        let mut b = stream.launch_builder(&self.k.scatter_points);
        b.arg(&points_b)
            .arg(&d.cell_b)
            .arg(&slot_b)
            .arg(&d.start)
            .arg(&params)
            .arg(&mut cursor)
            .arg(&mut d.points)
            .arg(&mut d.cell_xyz)
            .arg(&mut d.original);
        // SAFETY: scatter_points(points_b, cell_b, slot_b, start, Params, cursor, points, cell_xyz, original): every
        // slot's count of points lands in [start[s], start[s + 1]) of the n sorted entries (zeroed cursors); 3n
        // floats, 4n cell words, n indices.
        unsafe { b.launch(launch(g, BLOCK)) }.map_err(de)?;
        // SAFETY (both): count_neighbours writes every point's core flag and label.
        let mut core: CudaSlice<u32> = unsafe { self.uninit(&stream, n) }?;
        let mut labels: CudaSlice<u32> = unsafe { self.uninit(&stream, n) }?;
        let mut b = stream.launch_builder(&self.k.count_neighbours);
        d.push(&mut b);
        b.arg(&mut core).arg(&mut labels);
        // SAFETY: count_neighbours(points, cell_xyz, original, owner, start, cell_b, jobs, Params, core, labels) in
        // kernels/dbscan.cu: the grid above (every cell's job < jobs entries), n entries of core and labels.
        unsafe { b.launch(launch(g, BLOCK)) }.map_err(de)?;
        // The clusters: a union-find over the core points (a forest of sorted positions), joined cell by cell (each
        // core point to its cell's first, neighbouring cells when two of their core points are within eps), then each
        // core point's label set to its tree's root (the sorted position of its cluster's point of smallest batch
        // index; `unsort` renames it to that batch index).
        let mut b = stream.launch_builder(&self.k.unite);
        d.push(&mut b);
        b.arg(&core).arg(&mut labels);
        // SAFETY: unite(grid..., Params, core, labels): count_neighbours set each core point's label to its own
        // sorted position (a forest of single points), below n.
        unsafe { b.launch(launch(g, BLOCK)) }.map_err(de)?;
        let mut b = stream.launch_builder(&self.k.flatten);
        b.arg(&core).arg(&d.params).arg(&mut labels);
        // SAFETY: flatten(core, Params, labels): n entries of core and labels; after unite, every core point's label
        // is a core point's sorted position, and the forest ends at roots.
        unsafe { b.launch(launch(g, BLOCK)) }.map_err(de)?;
        let mut b = stream.launch_builder(&self.k.assign_borders);
        d.push(&mut b);
        b.arg(&core).arg(&mut labels);
        // SAFETY: assign_borders(grid..., Params, core, labels).
        unsafe { b.launch(launch(g, BLOCK)) }.map_err(de)?;
        // One word per point comes back: the label with the core flag in its top bit (and the refusal word).
        let mut b = stream.launch_builder(&self.k.unsort);
        b.arg(&d.original).arg(&core).arg(&labels).arg(&d.params).arg(&mut labels_b);
        // SAFETY: unsort(original, core, labels, Params, labels_b): original is a permutation of 0..n, and every label
        // is NONE or a sorted position below n; n words of labels_b (of its n + 1).
        unsafe { b.launch(launch(g, BLOCK)) }.map_err(de)?;
        // The caller's `words` waits for the stream.
        self.read_back(&stream, &labels_b)
    }

    /// K4 for a batch of objects (of any frames; see [`crate::geometry::stats::summarize_batch`]): one block per
    /// object, every object of a chunk (up to 2^28 points) in one launch; the hull and oriented box on the host
    /// from the device's hull candidates.
    pub fn summarize_batch(
        &self,
        objects: &[StatsInput],
        noise: &NoiseModel,
    ) -> Result<Vec<Option<ObjectSummary>>, String> {
        let mut out = vec![None; objects.len()];
        for chunk in stats_chunks(objects, MAX_POINTS)? {
            let stream = self.stream()?;
            let pack = StatsPack::new(objects, &chunk);
            self.summarize_chunk(&stream, objects, &chunk, noise, &mut out, pack, None)?;
        }
        Ok(out)
    }

    /// K4 as [`CudaBackend::summarize_batch`]; when the batch is one launch, its canonical points stay on the device
    /// for [`CudaBackend::closest_gaps_resident`].
    pub fn summarize_kept(
        &self,
        objects: &[StatsInput],
        noise: &NoiseModel,
    ) -> Result<(Vec<Option<ObjectSummary>>, Option<DevicePoints>), String> {
        let chunks = stats_chunks(objects, MAX_POINTS)?;
        let [chunk] = &chunks[..] else {
            return Ok((self.summarize_batch(objects, noise)?, None));
        };
        let pack = StatsPack::new(objects, chunk);
        let (out, device) = self.summarize_resident(objects, chunk, noise, pack, None)?;
        Ok((out, Some(device)))
    }

    /// K4 as [`CudaBackend::summarize_kept`] on objects named by index ([`super::KeptInput`]), when the batch is one
    /// launch and every object's points lie in the same K1 buffer (each index within its object): the canonical points
    /// and depths are computed there (`gather_canonical`: a word per point uploaded instead of four) and the host
    /// copies no point. `None` otherwise (the caller copies the points for [`CudaBackend::summarize_kept`]).
    pub fn summarize_kept_indexed(
        &self,
        objects: &[super::KeptInput<'_>],
        noise: &NoiseModel,
    ) -> Result<Option<KeptOnDevice>, String> {
        let chunks = stats_chunks_of_counts(objects, MAX_POINTS)?;
        let [chunk] = &chunks[..] else { return Ok(None) };
        // The gather, when every object lies in the same grouped buffer and each index within it (its index written
        // for the upload here, copied with K4's launches).
        let Some(index) = device_index(chunk.iter().map(|&i| objects[i].points)) else { return Ok(None) };
        let Some(words) = self.stage_index(&index)? else { return Ok(None) };
        let gather = StatsGather { grouped: index.grouped, index: words, frames: kept_frames(objects, chunk) };
        let pack = StatsPack::ranges_only(objects, chunk);
        self.summarize_resident(objects, chunk, noise, pack, Some(gather)).map(Some)
    }

    /// K4 on a batch of one chunk, its canonical points left on the device.
    fn summarize_resident<O: StatsObject>(
        &self,
        objects: &[O],
        chunk: &[usize],
        noise: &NoiseModel,
        pack: StatsPack,
        gather: Option<StatsGather<'_>>,
    ) -> Result<KeptOnDevice, String> {
        let mut out = vec![None; objects.len()];
        let stream = self.stream()?;
        let KeptChunk { points, ranges, boxes } =
            self.summarize_chunk(&stream, objects, chunk, noise, &mut out, pack, gather)?;
        let mut places = vec![None; objects.len()];
        for ((&i, [offset, _]), b) in chunk.iter().zip(&ranges).zip(boxes) {
            places[i] = Some((*offset, b));
        }
        Ok((out, DevicePoints { points, places, stream: Arc::clone(&stream) }))
    }

    /// K4 on one chunk of objects (on `stream`, synchronised), packed as `pack` (with the points and depths to upload,
    /// or the ranges only when `gather` computes them on the device): the summaries into `out`; the canonical points
    /// on the device, each object's `[offset, count]` there and its points' bounding box (K4's reductions).
    #[allow(clippy::too_many_arguments)]
    fn summarize_chunk<O: StatsObject>(
        &self,
        stream: &Arc<CudaStream>,
        objects: &[O],
        chunk: &[usize],
        noise: &NoiseModel,
        out: &mut [Option<ObjectSummary>],
        pack: StatsPack,
        gather: Option<StatsGather<'_>>,
    ) -> Result<KeptChunk, String> {
        let n_obj = chunk.len() as u32;
        let total = pack.total;
        let ranges = self.upload(stream, bytemuck::cast_slice::<_, u32>(&pack.ranges))?;
        let (points, depths) = match gather {
            Some(g) if g.index.len() != total || g.frames.len() != chunk.len() => {
                return Err(format!("the gather has {} indices for {total} points", g.index.len()));
            }
            Some(g) => {
                // (The small table first: pageable copies may wait for the stream.)
                let frames = self.upload(stream, bytemuck::cast_slice::<_, u32>(&g.frames))?;
                let index = &self.send_words(stream, g.index)?;
                // SAFETY: gather_canonical writes every point and depth of every object (the ranges cover them all).
                let mut points: CudaSlice<f32> = unsafe { self.uninit(stream, 3 * total.max(1)) }?;
                // SAFETY: as above.
                let mut depths: CudaSlice<u32> = unsafe { self.uninit(stream, total) }?;
                let mut b = stream.launch_builder(&self.k.gather_canonical);
                b.arg(&g.grouped.points).arg(index).arg(&ranges).arg(&frames).arg(&mut points).arg(&mut depths);
                b.arg(&n_obj);
                // SAFETY: gather_canonical(grouped, const u32* index, objects, const Canonical* frames, float* points,
                // u32* depth_bits, u32 n_objects) in kernels/stats.cu; one block per object; `index` holds a word per
                // point of the ranges, each below the grouped buffer's point count (DeviceIndex::write); one 96-byte
                // frame per object.
                unsafe { b.launch(launch((n_obj, 1), BLOCK)) }.map_err(de)?;
                self.count_resident_read(1);
                (points, depths)
            }
            None if pack.points.len() != 3 * total || pack.depth_bits.len() != total => {
                let (coordinates, depths) = (pack.points.len(), pack.depth_bits.len());
                return Err(format!("K4's pack has {coordinates} coordinates and {depths} depths for {total} points"));
            }
            None => (self.upload(stream, &pack.points)?, self.upload(stream, &pack.depth_bits)?),
        };
        let words = std::mem::size_of::<GpuObjectStats>() / 4;
        let mut stats = self.zeros::<u32>(stream, n_obj as usize * words)?;
        // SAFETY: summarize writes the first `listed` words (below), the only ones read back.
        let mut candidates: CudaSlice<u32> = unsafe { self.uninit(stream, total) }?;
        let mut listed = self.zeros::<u32>(stream, 1)?;
        let mut b = stream.launch_builder(&self.k.summarize);
        b.arg(&points).arg(&depths).arg(&ranges).arg(&mut stats).arg(&mut candidates).arg(&mut listed).arg(&n_obj);
        // SAFETY: summarize(points, depth_bits, objects, ObjectStats* stats, u32* candidates, u32* candidate_total,
        // u32 n_objects) in kernels/stats.cu; one block of BLOCK threads per object; the objects' candidates, at
        // most one a point, fill the first candidate_total words of the candidates buffer (as many as points).
        unsafe { b.launch(launch((n_obj, 1), BLOCK)) }.map_err(de)?;
        // The statistics first (small), then only the listed candidates.
        let stats_words = stream.clone_dtoh(&stats).map_err(de)?;
        self.sync(stream)?;
        let stats: Vec<GpuObjectStats> = bytemuck::pod_collect_to_vec(&stats_words[..n_obj as usize * words]);
        let listed = pack.listed_candidates(&stats)?;
        let mut candidates = self.read_back(stream, &candidates.slice(0..listed))?;
        pack.summaries(objects, chunk, &stats, candidates.words()?, noise, out)?;
        let boxes = stats[..chunk.len()].iter().map(|s| (s.lo, s.hi)).collect();
        Ok(KeptChunk { points, ranges: pack.ranges, boxes })
    }

    /// K5 over a batch of frames (see [`super::Backend::relate_batch`]): every ordered pair of every frame of a
    /// chunk (up to 2^25 pairs) in one launch, records at prefix-sum offsets.
    pub fn relate_batch(&self, frames: &[&[ObjectSummary]]) -> Result<Vec<Vec<RelationRecord>>, String> {
        let mut out = Vec::with_capacity(frames.len());
        for (start, end, pairs) in relation_chunks(frames, MAX_PAIRS)? {
            let chunk = &frames[start..end];
            let (objects, ranges) = pack_relations(chunk);
            if pairs == 0 {
                out.extend(chunk.iter().map(|_| Vec::new()));
                continue;
            }
            let stream = self.stream()?;
            let objects_dev = self.upload(&stream, bytemuck::cast_slice::<_, u32>(&objects))?;
            let ranges_dev = self.upload(&stream, bytemuck::cast_slice::<_, u32>(&ranges))?;
            let words = std::mem::size_of::<RelationRecord>() / 4;
            // SAFETY: every record of the pairs is written by the kernel before it is read back.
            let mut records: CudaSlice<u32> = unsafe { self.uninit(&stream, pairs as usize * words) }?;
            self.relate_launch(&stream, &objects_dev, &ranges_dev, &mut records, ranges.len() as u32, pairs)?;
            let host = stream.clone_dtoh(&records).map_err(de)?;
            self.sync(&stream)?;
            let records: Vec<RelationRecord> = bytemuck::pod_collect_to_vec(&host);
            out.extend(split_relations(&ranges, &records)?);
        }
        Ok(out)
    }
    /// The exact closest-surface gaps of every pair of objects of every frame of a batch (see
    /// [`super::Backend::closest_gaps_batch`]): every pair of a chunk (up to 2^28 points) in one launch of each
    /// pass, one block per tile of 2,048 super-chunk pairs; one read-back of one word per pair.
    pub fn closest_gaps_batch(&self, frames: &[&[&[Point3]]]) -> Result<Vec<Vec<f32>>, String> {
        let mut out = gap_matrices(frames);
        for chunk in gap_chunks(frames, MAX_POINTS, i32::MAX as u64, i32::MAX as u64, MAX_GAP_BUCKETS)? {
            let pack = GapPack::new(frames, &chunk)?;
            let stream = self.stream()?;
            let points = self.upload(&stream, &pack.points)?;
            self.gaps_of_chunk(&stream, &points, &pack, &mut out)?;
        }
        Ok(out)
    }

    /// [`CudaBackend::closest_gaps_batch`] over objects whose canonical points K4 left on the device
    /// ([`CudaBackend::summarize_kept`], [`CudaBackend::summarize_kept_indexed`]): `frames[f][k]` is the point count
    /// of object `lists[f][k]` of that batch. No points are uploaded.
    pub fn closest_gaps_resident(
        &self,
        device: &DevicePoints,
        frames: &[&[usize]],
        lists: &[&[usize]],
    ) -> Result<Vec<Vec<f32>>, String> {
        // Each listed object's place on the device and its box as K4 reduced it from the same points. (An object
        // without points has neither and needs neither: the pack skips it, and its gaps are NaN.)
        let places: Vec<Vec<(u32, Aabb)>> = lists
            .iter()
            .zip(frames)
            .enumerate()
            .map(|(f, (list, objects))| {
                list.iter()
                    .zip(objects.iter())
                    .map(|(&i, &o)| match o == 0 {
                        true => Ok(Default::default()),
                        false => device
                            .places
                            .get(i)
                            .copied()
                            .flatten()
                            .ok_or_else(|| format!("frame {f} of the gap batch: object {i} is not on the device")),
                    })
                    .collect()
            })
            .collect::<Result<_, String>>()?;
        let (offsets, boxes): (Vec<Vec<u32>>, Vec<Vec<Aabb>>) =
            places.into_iter().map(|p| p.into_iter().unzip()).unzip();
        let mut out = gap_matrices(frames);
        for chunk in gap_chunks(frames, MAX_POINTS, i32::MAX as u64, i32::MAX as u64, MAX_GAP_BUCKETS)? {
            let pack = GapPack::resident(frames, &chunk, &offsets, &boxes)?;
            self.gaps_of_chunk(&device.stream, &device.points, &pack, &mut out)?;
            self.count_resident_read(2);
        }
        Ok(out)
    }

    /// One gap chunk on `stream` (synchronised), its gaps written into the frames' matrices.
    fn gaps_of_chunk(
        &self,
        stream: &Arc<CudaStream>,
        points: &CudaSlice<f32>,
        pack: &GapPack,
        out: &mut [Vec<f32>],
    ) -> Result<(), String> {
        let mut d = self.gap_buffers(stream, pack)?;
        self.gap_launch(stream, points, &mut d)?;
        let bits = stream.clone_dtoh(&d.best2).map_err(de)?;
        self.sync(stream)?;
        let host: Vec<f32> = bits.iter().map(|&b| f32::from_bits(b)).collect();
        pack.fill(&host, out)
    }

    /// A gap chunk's buffers on the device.
    fn gap_buffers(&self, stream: &Arc<CudaStream>, pack: &GapPack) -> Result<GapBuffers, String> {
        let n_pairs = pack.pairs.len();
        // SAFETY: run_boxes writes every chunk's box and every super-chunk's before they are read.
        let boxes = unsafe { self.uninit(stream, 6 * pack.chunks.max(1) as usize) }?;
        let supers = unsafe { self.uninit(stream, 6 * pack.supers.max(1) as usize) }?;
        // SAFETY: gap_launch copies `init` over every word before a kernel reads it.
        let best2 = unsafe { self.uninit(stream, n_pairs) }?;
        // SAFETY: order_scatter writes every point's x, y, z (each object's points fill its range) before
        // run_boxes reads them; scan_counts writes every start.
        let ordered = unsafe { self.uninit(stream, 3 * (pack.point_count as usize).max(1)) }?;
        let starts = unsafe { self.uninit(stream, pack.buckets as usize + 1) }?;
        // SAFETY: gap_launch zeroes the counts before order_count adds to them.
        let counts = unsafe { self.uninit(stream, pack.buckets as usize) }?;
        Ok(GapBuffers {
            objects: self.upload(stream, bytemuck::cast_slice::<_, u32>(&pack.objects))?,
            orders: self.upload(stream, bytemuck::cast_slice::<_, u32>(&pack.orders))?,
            counts,
            starts,
            ordered,
            pairs: self.upload(stream, bytemuck::cast_slice::<_, u32>(&pack.pairs))?,
            tile_start: self.upload(stream, &pack.tile_start)?,
            init: self.upload(stream, &vec![f32::INFINITY.to_bits(); n_pairs])?,
            boxes,
            supers,
            best2,
            n_objects: pack.objects.len() as u32,
            n_points: pack.point_count,
            n_buckets: pack.buckets,
            n_chunks: pack.chunks,
            n_supers: pack.supers,
            n_pairs: n_pairs as u32,
            tiles: pack.tiles(),
        })
    }

    /// The gap kernels on `stream` (asynchronous): `best2` reset to +inf's bits, then the spatial order, the boxes,
    /// the bounds and the search.
    fn gap_launch(&self, stream: &Arc<CudaStream>, points: &CudaSlice<f32>, d: &mut GapBuffers) -> Result<(), String> {
        stream.memcpy_dtod(&d.init, &mut d.best2).map_err(de)?;
        stream.memset_zeros(&mut d.counts).map_err(de)?;
        let g = (blocks_for(u64::from(d.n_points), BLOCK)?, 1);
        let mut b = stream.launch_builder(&self.k.order_count);
        b.arg(points).arg(&d.objects).arg(&d.orders).arg(&d.n_objects).arg(&d.n_points).arg(&mut d.counts);
        // SAFETY: order_count(const float* points, const GapObject* objects, const GapOrder* orders, u32 n_objects,
        // u32 n_points, u32* counts) in kernels/gaps.cu; one thread per point; each object's `count` points lie at
        // its `source` in `points` (GapPack: the pack's own points, or K4's buffer, where each object's source and
        // count are those of its K4 range: closest_gaps_resident), and its 8^bits buckets at `buckets` among the
        // pack's `n_buckets` zeroed counts.
        unsafe { b.launch(launch(g, BLOCK)) }.map_err(de)?;
        self.prefix_sum(stream, &self.k.scan_buckets, &d.counts, &mut d.starts, d.n_buckets)?;
        let mut b = stream.launch_builder(&self.k.order_scatter);
        b.arg(points).arg(&d.objects).arg(&d.orders).arg(&d.n_objects).arg(&d.n_points);
        b.arg(&d.starts).arg(&mut d.counts).arg(&mut d.ordered);
        // SAFETY: order_scatter(points, objects, orders, n_objects, n_points, const u32* start, u32* counts,
        // float* ordered): the same grid, buckets and sources as order_count, whose counts and their prefix sums
        // place every point once within `ordered`'s 3 * n_points floats.
        unsafe { b.launch(launch(g, BLOCK)) }.map_err(de)?;
        let points = &d.ordered;
        // (first, size) of the chunks and of the super-chunks: FIRST_CHUNK / FIRST_SUPER in kernels/gaps.cu.
        let runs = [
            (2u32, GAP_CHUNK as u32, &mut d.boxes, d.n_chunks),
            (3, (GAP_CHUNK * GAP_SUPER) as u32, &mut d.supers, d.n_supers),
        ];
        for (first, size, boxes, n) in runs {
            let mut b = stream.launch_builder(&self.k.run_boxes);
            b.arg(points).arg(&d.objects).arg(&d.n_objects).arg(&first).arg(&size).arg(boxes).arg(&n);
            // SAFETY: run_boxes(const float* points, const GapObject* objects, u32 n_objects, u32 first, u32 size,
            // float* boxes, u32 n_runs) in kernels/gaps.cu; one thread per run; `boxes` holds 6 floats per run and
            // every object's ordered points and runs lie within the buffers (GapPack: objects after one another).
            unsafe { b.launch(launch((blocks_for(u64::from(n), BLOCK)?, 1), BLOCK)) }.map_err(de)?;
        }
        let mut b = stream.launch_builder(&self.k.pair_bounds);
        b.arg(points).arg(&d.objects).arg(&d.pairs).arg(&d.tile_start).arg(&d.n_pairs).arg(&mut d.best2);
        // SAFETY: pair_bounds(points, objects, const u32* pairs, const u32* tile_start, u32 n_pairs,
        // u32* best2_bits) in kernels/gaps.cu; one block of BLOCK threads per tile (`tiles` < 2^31 blocks, see
        // gap_chunks); every pair names two objects of `objects`; `best2` holds one word per pair.
        unsafe { b.launch(launch((d.tiles, 1), BLOCK)) }.map_err(de)?;
        let mut b = stream.launch_builder(&self.k.refine_bounds);
        b.arg(points).arg(&d.objects).arg(&d.supers).arg(&d.pairs).arg(&d.tile_start).arg(&d.n_pairs);
        b.arg(&mut d.best2);
        // SAFETY: refine_bounds(points, objects, const float* supers, pairs, tile_start, u32 n_pairs,
        // u32* best2_bits) in kernels/gaps.cu; the same grid and buffers, and the boxes of every super-chunk.
        unsafe { b.launch(launch((d.tiles, 1), BLOCK)) }.map_err(de)?;
        let mut b = stream.launch_builder(&self.k.search_pairs);
        b.arg(points).arg(&d.objects).arg(&d.boxes).arg(&d.supers).arg(&d.pairs).arg(&d.tile_start);
        b.arg(&d.n_pairs).arg(&mut d.best2);
        // SAFETY: search_pairs(points, objects, const float* boxes, const float* supers, pairs, tile_start,
        // u32 n_pairs, u32* best2_bits) in kernels/gaps.cu; the same grid and buffers, and the boxes of every chunk
        // and super-chunk.
        unsafe { b.launch(launch((d.tiles, 1), BLOCK)) }.map_err(de)?;
        Ok(())
    }

    /// The gap kernels alone on a batch already on the device (one chunk): each run's time (ms) and the number of
    /// pairs.
    pub fn time_gaps(&self, frames: &[&[&[Point3]]], reps: usize) -> Result<(Vec<f64>, u64), String> {
        let chunks = gap_chunks(frames, MAX_POINTS, i32::MAX as u64, i32::MAX as u64, MAX_GAP_BUCKETS)?;
        let [chunk] = &chunks[..] else {
            return Err(format!("a timed gap batch must fit one launch (2^28 points), not {} chunks", chunks.len()));
        };
        let pack = GapPack::new(frames, chunk)?;
        let stream = self.stream()?;
        let points = self.upload(&stream, &pack.points)?;
        let mut d = self.gap_buffers(&stream, &pack)?;
        let times = self.time_on(&stream, reps, || self.gap_launch(&stream, &points, &mut d))?;
        Ok((times, pack.pairs.len() as u64))
    }

    /// K5's kernel on `stream` (asynchronous).
    fn relate_launch(
        &self,
        stream: &Arc<CudaStream>,
        objects: &CudaSlice<u32>,
        ranges: &CudaSlice<u32>,
        records: &mut CudaSlice<u32>,
        n_frames: u32,
        pairs: u64,
    ) -> Result<(), String> {
        let n_pairs = u32::try_from(pairs).map_err(|_| format!("{pairs} pairs exceed one launch"))?;
        let mut b = stream.launch_builder(&self.k.relate);
        b.arg(objects).arg(ranges).arg(records).arg(&n_frames).arg(&n_pairs);
        // SAFETY: relate(uint4* objects, frames, uint4* out, u32 n_frames, u32 pairs) in kernels/relations.cu; one
        // thread per pair in blocks of BLOCK (its shared staging holds BLOCK records); the caller uploaded the
        // summaries and allocated `pairs` records of 80 bytes, each buffer a device allocation of its own (16-byte
        // aligned, as the kernel's 16-byte loads and stores need), and packed the frames' ranges.
        unsafe { b.launch(launch((blocks_for(pairs, BLOCK)?, 1), BLOCK)) }.map_err(de)?;
        Ok(())
    }

    /// The device's peak f32 arithmetic in operations/s, a fused multiply-add counting as one (the kernels are
    /// compiled with `--fmad=false`, so none is fused): multiprocessors x f32 lanes a multiprocessor x the maximum
    /// clock, from the driver's attributes and [`f32_lanes_per_multiprocessor`]; `None` where the driver reports no
    /// clock or multiprocessors (the emulator) or the compute capability is not in that table.
    pub fn peak_f32_ops(&self) -> Result<Option<f64>, String> {
        use cudarc::driver::sys::CUdevice_attribute as A;
        let clock_khz = self.ctx.attribute(A::CU_DEVICE_ATTRIBUTE_CLOCK_RATE).map_err(de)?;
        let multiprocessors = self.ctx.attribute(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).map_err(de)?;
        let (major, minor) = self.ctx.compute_capability().map_err(de)?;
        let lanes = f32_lanes_per_multiprocessor(major, minor);
        Ok(lanes
            .filter(|_| clock_khz > 0 && multiprocessors > 0)
            .map(|lanes| f64::from(multiprocessors) * f64::from(lanes) * f64::from(clock_khz) * 1e3))
    }

    /// The device's peak memory bandwidth in bytes/s: memory clock x bus width x 2 (double data rate), from the
    /// driver's attributes; `None` where the driver reports no memory clock or bus width.
    pub fn peak_bandwidth(&self) -> Result<Option<f64>, String> {
        use cudarc::driver::sys::CUdevice_attribute as A;
        let clock_khz = self.ctx.attribute(A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE).map_err(de)?;
        let bus_bits = self.ctx.attribute(A::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH).map_err(de)?;
        // `None` where the driver reports neither figure (the emulator's 0): no bandwidth, rather than a fraction of
        // zero that would say every kernel beats the hardware.
        Ok((clock_khz > 0 && bus_bits > 0).then(|| 2.0 * f64::from(clock_khz) * 1e3 * f64::from(bus_bits) / 8.0))
    }

    /// Device times (CUDA events) of `reps` runs of `launch`, after one warm-up run, in milliseconds (see
    /// [`CudaBackend::time_parts`]).
    fn time_on(
        &self,
        stream: &Arc<CudaStream>,
        reps: usize,
        mut launch: impl FnMut() -> Result<(), String>,
    ) -> Result<Vec<f64>, String> {
        Ok(self.time_parts(stream, reps, 1, |_| launch())?.pop().unwrap_or_default())
    }

    /// K1's kernels alone on a batch already on the device: each run's time (ms) and the bytes one run moves
    /// (the depth words read twice, 16 bytes written per point, the tile tables); then each kernel timed on its own
    /// (an event between each two, in runs of their own, so that the whole run's time has no events inside): its
    /// name, each run's time and the bytes it moves (count_valid: the depth words and the tiles' counts; the scan:
    /// the counts and offsets, a small table, so a tiny share of the bandwidth; write_points: the depth words, the
    /// points and the offsets).
    pub fn time_unproject(&self, frames: &[(&DepthImage, &Intrinsics)], reps: usize) -> Result<K1Times, String> {
        let batch = DepthBatch::layout(frames, TILE)?;
        if batch.pixels > MAX_POINTS || batch.tile_frame.is_empty() {
            return Err(format!("a timed K1 batch needs 1 to 2^28 pixels, not {}", batch.pixels));
        }
        let stream = self.stream()?;
        let mut d = self.k1_buffers(&stream, frames, &batch)?;
        let times = self.time_on(&stream, reps, || self.k1_launch(&stream, &mut d))?;
        let split =
            self.time_parts(&stream, reps, K1Pass::ALL.len(), |k| self.k1_pass(&stream, &mut d, K1Pass::ALL[k]))?;
        let tiles = d.tiles as usize;
        let total = stream.clone_dtoh(&d.offsets.slice(tiles..tiles + 1)).map_err(de)?;
        self.sync(&stream)?;
        let points = u64::from(total.first().copied().unwrap_or(0));
        let (words, tile_bytes) = (4 * batch.word_count, 4 * tiles as u64);
        let kernels = K1Pass::ALL
            .iter()
            .zip(split)
            .map(|(&pass, times)| {
                let bytes = match pass {
                    K1Pass::Count => words + tile_bytes,
                    K1Pass::Scan => 2 * tile_bytes,
                    K1Pass::Write => words + 16 * points + tile_bytes,
                };
                (pass.kernel(), times, bytes)
            })
            .collect();
        Ok(K1Times { times, bytes: 2 * words + 16 * points + 4 * tile_bytes, kernels })
    }

    /// Device times of `parts` launches (`launch(k)` for k in order) on `stream`, in `reps` runs after one warm-up
    /// run: per part, each run's time in milliseconds. Every event is made first, and the warm-up and every run are
    /// queued back to back with an event after each part (the first after the warm-up), before one wait for the
    /// stream: the device does not wait for the host between two parts or runs (unless the host queues more slowly
    /// than the device runs), so a part's time is its own, not the host's delay in queueing it.
    fn time_parts(
        &self,
        stream: &Arc<CudaStream>,
        reps: usize,
        parts: usize,
        mut launch: impl FnMut(usize) -> Result<(), String>,
    ) -> Result<Vec<Vec<f64>>, String> {
        use cudarc::driver::sys::CUevent_flags;
        let reps = reps.max(1);
        let events = (0..=reps * parts)
            .map(|_| self.ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(de)?;
        // The warm-up run is queued, not waited for: the first timed run starts when it ends, already queued.
        (0..parts).try_for_each(&mut launch)?;
        events[0].record(stream).map_err(de)?;
        for run in 0..reps {
            for k in 0..parts {
                launch(k)?;
                events[run * parts + k + 1].record(stream).map_err(de)?;
            }
        }
        self.sync(stream)?;
        let mut out: Vec<Vec<f64>> = (0..parts).map(|_| Vec::with_capacity(reps)).collect();
        for (i, pair) in events.windows(2).enumerate() {
            out[i % parts].push(f64::from(pair[0].elapsed_ms(&pair[1]).map_err(de)?));
        }
        Ok(out)
    }

    /// K2's scoring kernel alone (the hypotheses drawn and the subsample gathered beforehand): each run's time (ms).
    pub fn time_score(
        &self,
        points: &[Point3],
        frame_key: u32,
        params: &RansacParams,
        reps: usize,
    ) -> Result<Vec<f64>, String> {
        let stream = self.stream()?;
        let cloud = self.upload(&stream, bytemuck::cast_slice::<_, f32>(points))?;
        let Some(batch) = self.one_frame_ground(&stream, &cloud, points, None, frame_key, params)? else {
            return Err("a timed K2 needs at least 3 points and 1 hypothesis".into());
        };
        let hyps = batch.hypotheses()?.device;
        let mut scores = self.zeros::<u32>(&stream, params.hypotheses as usize)?;
        self.time_on(&stream, reps, || {
            stream.memset_zeros(&mut scores).map_err(de)?;
            batch.score_launch(&hyps, &mut scores)
        })
    }

    /// Device times (ms) of `reps` K5 launches over `frames` (one launch: at most 2^25 pairs), the pairs, and the
    /// bytes one launch must move at the least (its records written, its summaries and frame ranges read once).
    pub fn time_relate(&self, frames: &[&[ObjectSummary]], reps: usize) -> Result<(Vec<f64>, u64, u64), String> {
        let chunks = relation_chunks(frames, MAX_PAIRS)?;
        let [(_, _, pairs)] = chunks[..] else {
            return Err(format!("a timed K5 batch must fit one launch (2^25 pairs), not {} chunks", chunks.len()));
        };
        let (objects, ranges) = pack_relations(frames);
        let stream = self.stream()?;
        let objects_dev = self.upload(&stream, bytemuck::cast_slice::<_, u32>(&objects))?;
        let ranges_dev = self.upload(&stream, bytemuck::cast_slice::<_, u32>(&ranges))?;
        let words = std::mem::size_of::<RelationRecord>() / 4;
        let mut records = self.zeros::<u32>(&stream, pairs as usize * words)?;
        let n_frames = ranges.len() as u32;
        let times = self.time_on(&stream, reps, || {
            self.relate_launch(&stream, &objects_dev, &ranges_dev, &mut records, n_frames, pairs)
        })?;
        let read = std::mem::size_of_val(objects.as_slice()) + std::mem::size_of_val(ranges.as_slice());
        let bytes = pairs * std::mem::size_of::<RelationRecord>() as u64 + read as u64;
        Ok((times, pairs, bytes))
    }
}

/// The f32 adds or multiplies a multiprocessor completes a clock (a lane each) by compute capability, as the CUDA
/// C++ Programming Guide's table of arithmetic instruction throughput gives them: 64 on 7.x (Volta, Turing) and 8.0
/// (A100), 128 on 8.6, 8.7 and 8.9 (Ampere's other parts, Ada), 9.0 (H100, H200) and 10.x to 12.x (Blackwell);
/// `None` for any other.
pub fn f32_lanes_per_multiprocessor(major: i32, minor: i32) -> Option<u32> {
    match (major, minor) {
        (7, _) | (8, 0) => Some(64),
        (8, 6) | (8, 7) | (8, 9) | (9, 0) | (10..=12, _) => Some(128),
        _ => None,
    }
}

/// [`CudaBackend::time_unproject`]'s times: each run of K1's kernels together (ms), the bytes one run moves, and
/// each kernel on its own (its name, each run's time, its bytes).
pub struct K1Times {
    pub times: Vec<f64>,
    pub bytes: u64,
    pub kernels: Vec<(&'static str, Vec<f64>, u64)>,
}

/// K1's kernels, in the order a batch runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum K1Pass {
    /// count_valid: each tile's valid pixels (reads the depth words).
    Count,
    /// The tiles' offsets: scan_counts, or the tiled scan for many tiles ([`CudaBackend::prefix_sum`]).
    Scan,
    /// write_points: each valid pixel's point and pixel index at its offset (reads the depth words again).
    Write,
}

impl K1Pass {
    const ALL: [K1Pass; 3] = [K1Pass::Count, K1Pass::Scan, K1Pass::Write];

    fn kernel(self) -> &'static str {
        match self {
            K1Pass::Count => "count_valid",
            K1Pass::Scan => "scan",
            K1Pass::Write => "write_points",
        }
    }
}

/// What K4 leaves of a chunk of objects on the device: their canonical points, each object's `[offset, count]` there
/// and its points' bounding box (from K4's reductions), in the chunk's order.
struct KeptChunk {
    points: CudaSlice<f32>,
    ranges: Vec<[u32; 2]>,
    boxes: Vec<Aabb>,
}

/// A K4 batch's summaries and its canonical points left on the device.
type KeptOnDevice = (Vec<Option<ObjectSummary>>, DevicePoints);

/// K4's gather for one chunk (see [`CudaBackend::summarize_kept_indexed`]).
struct StatsGather<'a> {
    grouped: &'a GroupedOnDevice,
    /// Each point's index in `grouped`, the chunk's objects in order, written for the upload.
    index: StagedWords,
    /// Each object's canonical frame.
    frames: Vec<GpuCanonical>,
}

/// The frames of a K4 gather's objects.
fn kept_frames(objects: &[super::KeptInput<'_>], chunk: &[usize]) -> Vec<GpuCanonical> {
    chunk
        .iter()
        .map(|&i| {
            let c = objects[i].canonical;
            GpuCanonical { rotation: c.rotation, translation: c.translation }
        })
        .collect()
}

/// A chunk's clusterings from the device's labels ([`CudaBackend::dbscan_device`]), or `refusal()` when the device
/// refused a point of it.
fn chunk_clusterings(
    batch: &DbscanBatch,
    mut labels: ReadBack,
    refusal: impl FnOnce() -> String,
) -> Result<Vec<Clustering>, String> {
    let words = labels.words()?;
    let n = batch.params.points as usize;
    match words.get(n) {
        Some(0) => {}
        Some(_) => return Err(refusal()),
        None => return Err("DBSCAN labels came back short".into()),
    }
    clusterings_in_batch_order_packed(&batch.job_start, &words[..n])
}

/// Where a chunk's points lie in one grouped buffer ([`device_index`]): the buffer, and per item its first point there,
/// its kept indices (`None`: all its points in order), its point count and how many points it takes.
struct DeviceIndex<'a> {
    grouped: &'a GroupedOnDevice,
    sources: Vec<(u64, Option<&'a [u32]>, usize, usize)>,
}

/// Where `items`' points lie in one grouped buffer, in order, each taking its points from its object's (`resident`:
/// from the object's first point in the frame's group, points `keep`, or all of them in order), when every item lies
/// in the same buffer; `None` otherwise. The index itself is written by [`DeviceIndex::write`].
fn device_index<'a>(items: impl Iterator<Item = IndexedPoints<'a>>) -> Option<DeviceIndex<'a>> {
    let mut first: Option<&GroupedOnDevice> = None;
    let mut sources = Vec::new();
    for item in items {
        let (group, object_first) = item.resident?;
        let (grouped, base) = group.cuda()?;
        if !std::ptr::eq(grouped, *first.get_or_insert(grouped)) {
            return None;
        }
        sources.push((base + u64::from(object_first), item.keep, item.all.len(), item.len()));
    }
    Some(DeviceIndex { grouped: first?, sources })
}

impl DeviceIndex<'_> {
    /// The index's words: the points the items take.
    fn len(&self) -> usize {
        self.sources.iter().map(|&(_, _, _, points)| points).sum()
    }

    /// Each point's index in the grouped buffer into `dst` (`len` words; the items written in parallel): `false` when
    /// an index lies outside its object or the buffer, or does not fit a word.
    fn write(&self, dst: &mut [u32]) -> bool {
        let buffer_len = self.grouped.len;
        let at = move |at: u64| Some(at).filter(|&at| at < buffer_len)?.try_into().ok();
        par_fill(
            &self.sources,
            |&(_, _, _, points)| points,
            |&(base, keep, limit, points)| match keep {
                Some(keep) => rayon::iter::Either::Left(
                    keep.iter().map(move |&k| ((k as usize) < limit).then(|| at(base + u64::from(k))).flatten()),
                ),
                None => rayon::iter::Either::Right((base..base + points as u64).map(at)),
            },
            dst,
        )
    }
}

/// The scoring subsamples of a K2 batch: on the device (three floats per sample, job after job) and, per job, on
/// the host.
struct Gathered {
    samples: CudaSlice<f32>,
    /// Each sample's index in the batch's cloud.
    index: CudaSlice<u32>,
    /// Each job's samples, on the host.
    points: Vec<Vec<Point3>>,
}

/// A frame's samples for `sample_normals` (kernels/unproject.cu's `NormalJob`, 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct NormalJob {
    frame: u32,
    sample_base: u32,
    samples: u32,
    pad: u32,
}
const _: () = assert!(std::mem::size_of::<NormalJob>() == 16, "NormalJob must match kernels/unproject.cu's (16 bytes)");

/// The indices below `n` whose bit is set in `words` (bit k % 32 of word k / 32), in order.
fn set_bits(words: &[u32], n: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for (w, &word) in words.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let k = 32 * w as u32 + bits.trailing_zeros();
            if k >= n {
                break;
            }
            out.push(k);
            bits &= bits - 1;
        }
    }
    out
}

/// One frame of a K2 batch as kernels/ransac.cu reads it (`RansacJob`, 64 bytes; the fields are described there).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct RansacJob {
    point_base: u32,
    n_points: u32,
    hyp_base: u32,
    hypotheses: u32,
    sample_base: u32,
    n_samples: u32,
    slices: u32,
    per_slice: u32,
    seed: u32,
    frame_key: u32,
    threshold: f32,
    min_cos: f32,
    use_normals: u32,
    pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<RansacJob>() == 64, "RansacJob must match kernels/ransac.cu's (64 bytes)");

/// One support test of K2's refinement or final count (kernels/ransac.cu's `SupportJob`, 48 bytes): the plane's
/// test over points [base, base + n), its answer at `out_at`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct SupportJob {
    test: GpuSupport,
    base: u32,
    n: u32,
    out_at: u32,
    pad: u32,
}
const _: () = assert!(std::mem::size_of::<SupportJob>() == 48, "SupportJob must match kernels/ransac.cu's (48 bytes)");

/// A K2 batch's hypotheses: each job's planes (`None`: inadmissible), and on the device as the scoring kernel reads
/// them.
struct Hypotheses {
    planes: Vec<Vec<Option<Plane>>>,
    device: CudaSlice<u32>,
}

/// One frame of a chunk for K1's grouping (kernels/group.cu's `GroupJob`, 48 bytes; the fields are described there).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct GroupJob {
    point_base: u32,
    n_points: u32,
    objects: u32,
    blocks: u32,
    counts_at: u32,
    labels_at: u32,
    first_object: u32,
    width: u32,
    has_labels: u32,
    pad: [u32; 3],
}
const _: () = assert!(std::mem::size_of::<GroupJob>() == 48, "GroupJob must match kernels/group.cu's (48 bytes)");

/// One frame of K1's grouping: its depth image, instance labels and regions.
type GroupInput<'a> = (&'a DepthImage, Option<&'a [u32]>, &'a [ObjectRegion]);

/// One frame of a K2 batch: where its points, subsample and hypotheses are in the batch's buffers.
struct GroundJob<'a> {
    /// Its index among the caller's frames.
    frame: usize,
    point_base: usize,
    n_points: u32,
    sample_index: Vec<u32>,
    sample_base: usize,
    hyp_base: usize,
    frame_key: u32,
    params: &'a RansacParams,
    use_normals: bool,
}

/// The jobs of a K2 batch from `(frame, point_base, n_points, frame_key, params, use_normals)`, laid out one after
/// another. A frame with fewer than 3 points or no hypotheses has no admissible plane on any backend: it gets no job.
fn ground_jobs<'a>(
    frames: impl Iterator<Item = (usize, usize, u32, u32, &'a RansacParams, bool)>,
) -> Vec<GroundJob<'a>> {
    let (mut samples, mut hyps) = (0usize, 0usize);
    let mut jobs = Vec::new();
    let frames: Vec<_> =
        frames.filter(|&(_, _, n_points, _, params, _)| n_points >= 3 && params.hypotheses > 0).collect();
    // Each frame's subsample, the frames in parallel.
    let indices: Vec<Vec<u32>> = frames
        .par_iter()
        .map(|&(_, _, n_points, _, params, _)| score_sample_indices(n_points as usize, params))
        .collect();
    for ((frame, point_base, n_points, frame_key, params, use_normals), sample_index) in frames.into_iter().zip(indices)
    {
        let (sample_base, hyp_base) = (samples, hyps);
        samples += sample_index.len();
        hyps += params.hypotheses as usize;
        jobs.push(GroundJob {
            frame,
            point_base,
            n_points,
            sample_index,
            sample_base,
            hyp_base,
            frame_key,
            params,
            use_normals,
        });
    }
    jobs
}

/// K2 on the device for a batch of frames whose points are in one device buffer: the gathered subsamples (device
/// and host copies) and their normals. Every step launches for every job, then makes one round trip.
struct GroundBatch<'a> {
    b: &'a CudaBackend,
    stream: &'a Arc<CudaStream>,
    cloud: &'a CudaSlice<f32>,
    jobs: Vec<GroundJob<'a>>,
    /// Every job's subsample, on the device and (one cloud per job) on the host.
    gathered: Gathered,
    /// Three floats per sample (zeros for a job without normals).
    normals: CudaSlice<f32>,
    /// The jobs as the kernels read them (kernels/ransac.cu's `RansacJob`), on the device.
    table: CudaSlice<u32>,
    /// The widest job's hypotheses and most slices of its subsample.
    widest: (u32, u32),
}

impl<'a> GroundBatch<'a> {
    /// The batch with its normals already on the device (three floats per sample); its job table uploaded.
    fn on_device(
        b: &'a CudaBackend,
        stream: &'a Arc<CudaStream>,
        cloud: &'a CudaSlice<f32>,
        jobs: Vec<GroundJob<'a>>,
        gathered: Gathered,
        normals: CudaSlice<f32>,
    ) -> Result<Self, String> {
        let mut table = Vec::with_capacity(jobs.len());
        for j in &jobs {
            let n_samples = j.sample_index.len() as u32;
            let slices = n_samples.div_ceil(SCORE_SLICE).clamp(1, b.max_grid_yz);
            let hyp_base = u32::try_from(j.hyp_base).map_err(|_| "a K2 batch holds more than 2^32 hypotheses")?;
            let sample_base = u32::try_from(j.sample_base).map_err(|_| "a K2 batch holds more than 2^32 samples")?;
            table.push(RansacJob {
                point_base: u32::try_from(j.point_base).map_err(|_| "a K2 batch holds more than 2^32 points")?,
                n_points: j.n_points,
                hyp_base,
                hypotheses: j.params.hypotheses,
                sample_base,
                n_samples,
                slices,
                per_slice: n_samples.div_ceil(slices),
                seed: j.params.seed,
                frame_key: j.frame_key,
                threshold: j.params.inlier_threshold_m,
                min_cos: j.params.normal_agreement_deg.to_radians().cos(),
                use_normals: u32::from(j.use_normals),
                pad: [0; 3],
            });
        }
        let widest = table.iter().fold((0, 0), |(h, s), j| (h.max(j.hypotheses), s.max(j.slices)));
        let table = b.upload(stream, bytemuck::cast_slice::<_, u32>(&table))?;
        Ok(GroundBatch { b, stream, cloud, jobs, gathered, normals, table, widest })
    }

    /// The job table's parts that one launch's grid holds along y or z: (first job, jobs).
    fn job_parts(&self) -> impl Iterator<Item = (u32, u32)> {
        self.b.grid_parts(self.jobs.len() as u32)
    }

    fn hyps_total(&self) -> usize {
        self.jobs.last().map_or(0, |j| j.hyp_base + j.params.hypotheses as usize)
    }

    /// Every job's drawn point indices and corners (3 and 9 per hypothesis), one round trip.
    fn draws(&self) -> Result<(Vec<u32>, Vec<f32>), String> {
        let s = self.stream;
        let mut triples = self.b.zeros::<u32>(s, 3 * self.hyps_total())?;
        let mut corners = self.b.zeros::<f32>(s, 9 * self.hyps_total())?;
        for (base, n) in self.job_parts() {
            let mut l = s.launch_builder(&self.b.k.draw);
            l.arg(self.cloud).arg(&self.table).arg(&mut triples).arg(&mut corners).arg(&base);
            // SAFETY: draw(cloud, RansacJob* jobs, triples, corners, job_base) in kernels/ransac.cu; grid (widest
            // job's hypotheses, jobs base..base + n): each job's indices are drawn below its point count, its points
            // lie within the cloud (the jobs' layout, ground_jobs), and its hypotheses within the batch's, 3 and 9
            // entries each in the outputs.
            unsafe { l.launch(launch((blocks_for(u64::from(self.widest.0), BLOCK)?, n), BLOCK)) }.map_err(de)?;
        }
        let triples = s.clone_dtoh(&triples).map_err(de)?;
        let corners = s.clone_dtoh(&corners).map_err(de)?;
        self.b.sync(s)?;
        Ok((triples, corners))
    }

    /// Every job's hypothesis planes (built on the host in f64, the CPU reference's code) and the hypotheses as the
    /// scoring kernel reads them, on the device.
    fn hypotheses(&self) -> Result<Hypotheses, String> {
        let (triples, corners) = self.draws()?;
        let drawn: Vec<_> = self
            .jobs
            .par_iter()
            .map(|j| {
                let h = j.params.hypotheses as usize;
                let (t, c) =
                    (&triples[3 * j.hyp_base..3 * (j.hyp_base + h)], &corners[9 * j.hyp_base..9 * (j.hyp_base + h)]);
                hypotheses_from_draws(t, c, j.params)
            })
            .collect();
        let words: Vec<u32> =
            drawn.iter().flat_map(|(_, hyps)| bytemuck::cast_slice::<_, u32>(hyps).iter().copied()).collect();
        let hyps = self.b.upload(self.stream, &words)?;
        Ok(Hypotheses { planes: drawn.into_iter().map(|(planes, _)| planes).collect(), device: hyps })
    }

    /// Every job's scoring (asynchronous): every hypothesis scored against its job's subsample, added to its entry
    /// of `scores` (laid out as the hypotheses; zeroed by the caller).
    fn score_launch(&self, hyps: &CudaSlice<u32>, scores: &mut CudaSlice<u32>) -> Result<(), String> {
        let (widest, slices) = self.widest;
        for (base, n) in self.job_parts() {
            let mut l = self.stream.launch_builder(&self.b.k.score);
            l.arg(hyps).arg(&self.gathered.samples).arg(&self.normals).arg(&self.table).arg(&mut *scores).arg(&base);
            let config = LaunchConfig {
                grid_dim: (widest.div_ceil(HYPS_PER_BLOCK).max(1), slices.max(1), n.max(1)),
                block_dim: (BLOCK, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: score(hypotheses, samples, normals, RansacJob* jobs, scores, job_base) in kernels/ransac.cu;
            // grid (widest job's hypotheses / 8, most slices, jobs base..base + n): each job's hypotheses and
            // scores lie within the batch's (one each), its samples and normals (three floats each) within the
            // gathered subsample; blocks past a job's hypotheses or slices return.
            unsafe { l.launch(config) }.map_err(de)?;
        }
        Ok(())
    }

    /// Every job's scores (laid out as the hypotheses), one round trip.
    fn scores(&self, hyps: &CudaSlice<u32>) -> Result<Vec<u32>, String> {
        let mut scores = self.b.zeros::<u32>(self.stream, self.hyps_total())?;
        self.score_launch(hyps, &mut scores)?;
        let scores = self.stream.clone_dtoh(&scores).map_err(de)?;
        self.b.sync(self.stream)?;
        Ok(scores)
    }

    /// Every job's fit: draws, scores, then the winners, refinements and inlier counts in lockstep
    /// ([`fit_from_scores_batch`]). One per job, in order.
    fn fits(&self) -> Result<Vec<Option<PlaneFit>>, String> {
        let Hypotheses { planes, device } = self.hypotheses()?;
        let scores = self.scores(&device)?;
        let plane_fns: Vec<_> =
            planes.iter().map(|planes| move |h: u32| planes.get(h as usize).copied().flatten()).collect();
        let frames: Vec<GroundFrame<'_>> = self
            .jobs
            .iter()
            .zip(&self.gathered.points)
            .zip(&plane_fns)
            .map(|((j, sample), plane_of)| GroundFrame {
                plane_of,
                sample_points: sample,
                with_normals: j.use_normals,
                n_points: j.n_points as usize,
                params: j.params,
                scores: &scores[j.hyp_base..j.hyp_base + j.params.hypotheses as usize],
            })
            .collect();
        fit_from_scores_batch(self, &frames)
    }
}

impl GroundBatch<'_> {
    /// One support test a request over `(base, n)` of its job (the subsample or the cloud), every request in one
    /// launch (per [`CudaBackend::max_grid_yz`] requests) of `kernel`, read back: each request's answer at its `out_at`, `out_len` words in all.
    fn support_launch(
        &self,
        kernel: &CudaFunction,
        points: &CudaSlice<f32>,
        normals: Option<&CudaSlice<f32>>,
        requests: &[SupportJob],
        out_len: usize,
    ) -> Result<Vec<u32>, String> {
        let s = self.stream;
        let longest = requests.iter().map(|r| r.n).max().unwrap_or(0);
        let table = self.b.upload(s, bytemuck::cast_slice::<_, u32>(requests))?;
        let mut out = self.b.zeros::<u32>(s, out_len)?;
        for (base, n) in self.b.grid_parts(requests.len() as u32) {
            let mut l = s.launch_builder(kernel);
            l.arg(points);
            if let Some(normals) = normals {
                l.arg(normals);
            }
            l.arg(&table).arg(&mut out).arg(&base);
            // SAFETY: sample_supports(samples, normals, SupportJob* requests, mask, request_base) or
            // count_inliers(cloud, SupportJob* requests, counts, request_base) in kernels/ransac.cu (`normals` is
            // given for the first only); grid (longest request's blocks, requests base..base + n): each request's
            // points [base, base + n) lie within `points` (and `normals`, three floats a point), its answer within
            // `out` (ceil(n / 32) words of bits from out_at, or one count).
            unsafe { l.launch(launch((blocks_for(u64::from(longest), BLOCK)?, n), BLOCK)) }.map_err(de)?;
        }
        let out = s.clone_dtoh(&out).map_err(de)?;
        self.b.sync(s)?;
        Ok(out)
    }
}

impl GroundBatchDevice for GroundBatch<'_> {
    fn sample_supports(&self, requests: &[(usize, Support)]) -> Result<Vec<Vec<u32>>, String> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut table = Vec::with_capacity(requests.len());
        let mut out_len = 0usize;
        for (i, test) in requests {
            let j = self.jobs.get(*i).ok_or("a support request for no frame")?;
            let n = j.sample_index.len() as u32;
            let out_at = u32::try_from(out_len).map_err(|_| "support masks exceed 2^32 words")?;
            table.push(SupportJob {
                test: support_test(test, j.use_normals),
                base: j.sample_base as u32,
                n,
                out_at,
                pad: 0,
            });
            // A bit a sample.
            out_len += n.div_ceil(32) as usize;
        }
        let mask = self.support_launch(
            &self.b.k.sample_supports,
            &self.gathered.samples,
            Some(&self.normals),
            &table,
            out_len,
        )?;
        table
            .iter()
            .map(|r| {
                let words = r.n.div_ceil(32) as usize;
                let m = mask.get(r.out_at as usize..r.out_at as usize + words).ok_or("the mask came back short")?;
                Ok(set_bits(m, r.n))
            })
            .collect()
    }

    fn count_inliers(&self, requests: &[(usize, Support)]) -> Result<Vec<u32>, String> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let table = requests
            .iter()
            .enumerate()
            .map(|(r, (i, test))| {
                let j = self.jobs.get(*i).ok_or("an inlier request for no frame")?;
                Ok(SupportJob {
                    test: support_test(&Support { min_cos: None, ..*test }, j.use_normals),
                    base: j.point_base as u32,
                    n: j.n_points,
                    out_at: r as u32,
                    pad: 0,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        self.support_launch(&self.b.k.count_inliers, self.cloud, None, &table, requests.len())
    }
}

#[cfg(test)]
mod tests {
    use super::{f32_lanes_per_multiprocessor, set_bits, sync_mode_of, PinnedBudget};

    #[test]
    fn idle_buffers_are_freed_smallest_first_and_only_below_the_request() {
        use super::idle_to_free;
        let (a, b) = ([Some(40), Some(10), Some(30)], [Some(20), Some(50)]);
        // The smallest first, from both pools, until 25 bytes are freed: 10 (a[1]) and 20 (b[0]).
        let (chosen, freed) = idle_to_free(&a, &b, 25, usize::MAX, true);
        assert_eq!(freed, 30);
        assert_eq!(sorted(&chosen), vec![(false, 0), (true, 1)]);
        // Only those smaller than the request (35): 10, 20, 30 make 60 at most.
        assert_eq!(idle_to_free(&a, &b, 70, 35, true), (vec![], 0));
        let (chosen, freed) = idle_to_free(&a, &b, 70, 35, false);
        assert_eq!((sorted(&chosen), freed), (vec![(false, 0), (true, 1), (true, 2)], 60));
        // The order to swap_remove them in: each pool's highest index first, so that every removal takes the one
        // chosen.
        let (chosen, _) = idle_to_free(&a, &b, usize::MAX, usize::MAX, false);
        let (mut pa, mut pb) = (a.to_vec(), b.to_vec());
        let mut removed = Vec::new();
        for (from_a, i) in chosen {
            removed.push(if from_a { pa.swap_remove(i) } else { pb.swap_remove(i) });
        }
        removed.sort_unstable();
        assert_eq!(
            (removed.into_iter().flatten().collect::<Vec<_>>(), pa.len(), pb.len()),
            (vec![10, 20, 30, 40, 50], 0, 0)
        );
        let (chosen, _) = idle_to_free(&a, &b, 45, usize::MAX, false);
        let mut pa = a.to_vec();
        let taken: Vec<Option<usize>> = chosen.iter().filter(|c| c.0).map(|&(_, i)| pa.swap_remove(i)).collect();
        assert_eq!((taken, pa), (vec![Some(30), Some(10)], vec![Some(40)]));
        assert_eq!(idle_to_free(&a, &b, 0, usize::MAX, true), (vec![], 0));
        // Those not to be freed (used lately) are passed over.
        let (chosen, freed) = idle_to_free(&[None, Some(10), None], &[None, Some(50)], 25, usize::MAX, false);
        assert_eq!((sorted(&chosen), freed), (vec![(false, 1), (true, 1)], 60));

        fn sorted(c: &[(bool, usize)]) -> Vec<(bool, usize)> {
            let mut c = c.to_vec();
            c.sort_unstable();
            c
        }
    }

    #[test]
    fn the_page_locked_budget_keeps_to_its_limit_and_to_what_the_driver_refused() {
        use super::{Refusal, CEILING_RETRY};
        use std::sync::atomic::Ordering::Relaxed;
        let b = PinnedBudget::unlimited();
        assert_eq!(b.reserve(usize::MAX / 2), Ok(()));
        b.release_unallocated(usize::MAX / 2);
        b.set_limit(100);
        assert_eq!(b.reserve(60), Ok(()));
        b.allocated(60);
        // Past the limit: refused as the limit's, nothing taken; 10 bytes to free first.
        assert_eq!(b.reserve(50), Err(Refusal::Limit));
        assert_eq!((b.held.load(Relaxed), b.excess(50)), (60, 10));
        // A driver error other than a want of memory sets no ceiling.
        assert_eq!(b.reserve(30), Ok(()));
        b.refused(30, false);
        assert_eq!((b.held.load(Relaxed), b.ceiling.load(Relaxed)), (60, usize::MAX));
        // For want of memory: no more than the 60 held is asked of the driver, though the limit would allow it, but
        // for every CEILING_RETRY-th request.
        assert_eq!(b.reserve(30), Ok(()));
        b.refused(30, true);
        assert_eq!((b.held.load(Relaxed), b.ceiling.load(Relaxed)), (60, 60));
        assert_eq!(b.refused_by_driver.load(Relaxed), 2);
        for _ in 1..CEILING_RETRY {
            assert_eq!(b.reserve(10), Err(Refusal::Ceiling));
        }
        assert_eq!(b.excess(10), 10);
        assert_eq!(b.reserve(0), Ok(()));
        assert_eq!(b.reserve(10), Ok(()), "the retry");
        assert_eq!(b.reserve(10), Err(Refusal::Ceiling), "the next retry is CEILING_RETRY requests away");
        // The driver grants the retry: the ceiling is lifted.
        b.allocated(10);
        assert_eq!((b.held.load(Relaxed), b.ceiling.load(Relaxed)), (70, usize::MAX));
        assert_eq!(b.reserve(30), Ok(()));
        b.allocated(30);
        // Freeing makes room; the peak stays.
        b.release(60);
        assert_eq!((b.allocated.load(Relaxed), b.peak.load(Relaxed)), (40, 100));
        assert_eq!(b.allocations.load(Relaxed), 3);
        // Setting the limit again lifts a ceiling; a limit lowered below what is held is passed.
        assert_eq!(b.reserve(70), Err(Refusal::Limit));
        b.set_limit(20);
        assert_eq!(b.ceiling.load(Relaxed), usize::MAX);
        assert!(b.over_limit());
        assert_eq!(b.reserve(1), Err(Refusal::Limit));
        b.release(40);
        assert!(!b.over_limit());
        assert_eq!(b.reserve(20), Ok(()));
    }

    #[test]
    fn f32_lanes_follow_the_programming_guides_table() {
        // V100, T4, A100: 64; A10/RTX 30, Orin, L4/RTX 40, H100/H200, B200, RTX 50: 128.
        for (cc, lanes) in [((7, 0), 64), ((7, 5), 64), ((8, 0), 64), ((8, 6), 128), ((8, 7), 128), ((8, 9), 128)] {
            assert_eq!(f32_lanes_per_multiprocessor(cc.0, cc.1), Some(lanes), "{cc:?}");
        }
        for cc in [(9, 0), (10, 0), (12, 0)] {
            assert_eq!(f32_lanes_per_multiprocessor(cc.0, cc.1), Some(128), "{cc:?}");
        }
        // Not in the table: no peak rather than a guess.
        for cc in [(6, 1), (8, 8), (9, 1), (13, 0)] {
            assert_eq!(f32_lanes_per_multiprocessor(cc.0, cc.1), None, "{cc:?}");
        }
    }

    #[test]
    fn the_sync_variable_names_the_scheduling_flag_and_refuses_anything_else() {
        use cudarc::driver::sys::CUctx_flags as F;
        assert_eq!(sync_mode_of(""), Ok((F::CU_CTX_SCHED_BLOCKING_SYNC, "blocking")));
        assert_eq!(sync_mode_of("blocking"), Ok((F::CU_CTX_SCHED_BLOCKING_SYNC, "blocking")));
        assert_eq!(sync_mode_of("spin"), Ok((F::CU_CTX_SCHED_SPIN, "spin")));
        assert_eq!(sync_mode_of("yield"), Ok((F::CU_CTX_SCHED_YIELD, "yield")));
        assert_eq!(sync_mode_of("auto"), Ok((F::CU_CTX_SCHED_AUTO, "auto")));
        let e = sync_mode_of("Spin").unwrap_err();
        assert!(e.contains("SPATIALSYNTH_CUDA_SYNC") && e.contains("\"Spin\""), "{e}");
    }

    #[test]
    fn set_bits_lists_the_set_bits_below_n_in_order() {
        let mut rng = crate::test_rng::XorShift(0x9e37_79b9_7f4a_7c15);
        for n in [0u32, 1, 31, 32, 33, 64, 100, 1000] {
            let words: Vec<u32> = (0..n.div_ceil(32) + 1).map(|_| rng.below(u32::MAX)).collect();
            let want: Vec<u32> = (0..n).filter(|&k| words[(k / 32) as usize] >> (k % 32) & 1 == 1).collect();
            assert_eq!(set_bits(&words, n), want, "n = {n}");
        }
        assert_eq!(set_bits(&[u32::MAX], 3), vec![0, 1, 2]);
    }
}
