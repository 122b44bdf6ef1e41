//! Backends of the geometry kernels: the CPU reference (the specification), WGSL through `wgpu`, and CUDA through `cudarc` (`kernels/`).
//!
//! The `wgpu` backend runs all five kernels on the device: K1 (unproject, batched across frames, and per-object
//! grouping from the cloud left on the device; stable order by prefix sums), K2 (the counter-based draws of
//! `shaders/rng.wgsl`, scoring, the refinement's support tests and the inlier count, from the frame's cloud kept
//! on the device after K1), K3 (exact DBSCAN), K4 (per-object reductions for a batch of objects) and K5 (every
//! pair of every frame of a batch). The small serial steps run on the host with the CPU reference's own code (the
//! planes through the drawn points, the winner and the 3 x 3 fits, the hull and oriented box from the device's
//! hull candidates), so every backend picks the same plane and the same boxes. See `shaders/README.md`.
//!
//! The `cuda` backend runs the same five kernels as CUDA C (`kernels/`, compiled by NVRTC when it opens) with the same
//! host steps (`pack.rs`, shared by both GPU backends), except that it builds K3's grid on the device; see
//! `kernels/README.md`.
//!
//! Every kernel has one generic parity test body (`tests/parity.rs`) run for each available backend.

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "wgpu")]
pub mod gpu;
pub mod layout;
pub mod pack;

use crate::error::{Error, Result};
use crate::geometry::ransac::{PlaneFit, RansacParams};
use crate::geometry::relations::{closest_surface_matrix, relate_all, RelationRecord};
use crate::geometry::stats::ObjectSummary;
use crate::geometry::unproject::{unproject_depth, DepthImage, GroupedPoints, ObjectRegion, PointCloud};
use crate::geometry::{Intrinsics, Point3};
use rayon::prelude::*;
use std::borrow::Cow;

/// The most batches a run may keep in flight ([`Backend::in_flight`]).
pub const MAX_BATCHES_IN_FLIGHT: usize = 16;

/// `requested` batches in flight, when it is at most [`MAX_BATCHES_IN_FLIGHT`] (0 stands for the backend's default);
/// else why not. Each batch in flight holds its frames (about 2 MB per VGA frame).
pub fn check_in_flight(requested: usize) -> std::result::Result<usize, String> {
    match requested <= MAX_BATCHES_IN_FLIGHT {
        true => Ok(requested),
        false => {
            Err(format!("{requested} batches in flight: at most {MAX_BATCHES_IN_FLIGHT} (0: the backend's default)"))
        }
    }
}

/// A CUDA backend's message as this crate's error.
#[cfg(feature = "cuda")]
fn cuda_error(message: String) -> Error {
    Error::Backend { backend: "cuda".into(), message }
}

/// A wgpu backend's message as this crate's error.
#[cfg(feature = "wgpu")]
fn wgpu_error(message: String) -> Error {
    Error::Backend { backend: "wgpu".into(), message }
}

/// One frame's input to [`Backend::frames_geometry`] (K1 and K2).
#[derive(Clone, Copy)]
pub struct FrameGeometryInput<'a> {
    pub depth: &'a DepthImage,
    pub k: &'a Intrinsics,
    /// The instance-label image, when a region is an instance.
    pub instance_labels: Option<&'a [u32]>,
    pub regions: &'a [ObjectRegion],
    /// Seeds the frame's RANSAC draws ([`crate::geometry::rng::frame_key`]).
    pub frame_key: u32,
    pub params: &'a RansacParams,
}

/// K1 and K2 of one frame (see [`Backend::frames_geometry`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrameGeometry {
    /// How many pixels have valid depth.
    pub valid_points: usize,
    /// The whole cloud when the ground was not accepted (the gravity prior's fallback reads it) and the backend
    /// has it on the host (cpu, wgpu); `None` otherwise (CUDA batches keep it on the device: the fallback then
    /// unprojects the frame on the host, the same points).
    pub cloud: Option<PointCloud>,
    /// Each region's points. On CUDA, views of the batch's read-back (page-locked, or pageable past the limit; no
    /// host copy), shared by the frames of its chunk: the buffer goes back to the backend's pool when the last view
    /// of it goes (keeping a frame's points keeps it; `to_vec` them to keep them longer).
    pub grouped: GroupedPoints,
    /// The ground plane search's result.
    pub fit: Option<PlaneFit>,
    /// Where `grouped`'s points also lie on the device (CUDA batches), for [`Backend::dbscan_batch_indexed`] and
    /// [`Backend::summarize_kept_indexed`].
    pub resident: ResidentGroup,
}

/// Where a frame's grouped object points ([`FrameGeometry::grouped`]) also lie on the device: on CUDA, the buffer K1
/// grouped them into and the frame's first point there. Nothing on the other backends. Cloning shares the buffer,
/// which lives as long as a clone does.
#[derive(Clone, Default)]
pub struct ResidentGroup {
    #[cfg(feature = "cuda")]
    cuda: Option<(std::sync::Arc<cuda::GroupedOnDevice>, u64)>,
}

impl ResidentGroup {
    #[cfg(feature = "cuda")]
    fn on_cuda(buffer: std::sync::Arc<cuda::GroupedOnDevice>, first: u64) -> ResidentGroup {
        ResidentGroup { cuda: Some((buffer, first)) }
    }

    #[cfg(feature = "cuda")]
    fn cuda(&self) -> Option<(&cuda::GroupedOnDevice, u64)> {
        self.cuda.as_ref().map(|(b, first)| (b.as_ref(), *first))
    }

    /// Whether the points are on a device.
    pub fn on_device(&self) -> bool {
        #[cfg(feature = "cuda")]
        if self.cuda.is_some() {
            return true;
        }
        false
    }
}

impl std::fmt::Debug for ResidentGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResidentGroup").field("on_device", &self.on_device()).finish()
    }
}

/// Equal when both are on no device, or at the same place of the same device buffer.
impl PartialEq for ResidentGroup {
    fn eq(&self, other: &ResidentGroup) -> bool {
        #[cfg(feature = "cuda")]
        match (&self.cuda, &other.cuda) {
            (Some((a, i)), Some((b, j))) => return std::sync::Arc::ptr_eq(a, b) && i == j,
            (None, None) => {}
            _ => return false,
        }
        let _ = other;
        true
    }
}

/// Some of an object's points, named by index: points `keep[0]`, `keep[1]`, ... of `all` (all of them, in order,
/// without `keep`), with where `all` also lie on the device. K3 ([`IndexedJob`]) and K4 ([`KeptInput`]) take their
/// points so: where they lie on the device (`resident`: CUDA, after K1), the device gathers them there and the host
/// copies none; elsewhere the host copies them once ([`IndexedPoints::kept`]).
#[derive(Clone, Copy, Debug)]
pub struct IndexedPoints<'a> {
    /// The object's points.
    pub all: &'a [Point3],
    /// Which of them are taken, in order (indices into `all`); `None`: all of them.
    pub keep: Option<&'a [u32]>,
    /// Where `all` also lie on the device: the frame's group ([`FrameGeometry::resident`]) and the object's first
    /// point there ([`GroupedPoints::offsets`]). They must be the same points (the host's are what the other
    /// backends read, what names a job the device's check refuses, and what the host's part of K4 reads: the first
    /// point and the hull's candidates).
    pub resident: Option<(&'a ResidentGroup, u32)>,
}

impl<'a> IndexedPoints<'a> {
    /// All of `all`, on no device.
    pub fn whole(all: &'a [Point3]) -> IndexedPoints<'a> {
        IndexedPoints { all, keep: None, resident: None }
    }

    /// How many points are taken.
    pub fn len(&self) -> usize {
        self.keep.map_or(self.all.len(), <[u32]>::len)
    }

    /// Whether no point is taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Point `k` of those taken (`None` past the last, or for an index of `keep` outside `all`).
    pub fn get(&self, k: usize) -> Option<&'a Point3> {
        match self.keep {
            Some(keep) => self.all.get(*keep.get(k)? as usize),
            None => self.all.get(k),
        }
    }

    /// The points taken: `all` itself without `keep`, else a copy of the kept ones. `Err` names the first index of
    /// `keep` outside `all`.
    pub fn kept(&self) -> std::result::Result<Cow<'a, [Point3]>, String> {
        let Some(keep) = self.keep else { return Ok(Cow::Borrowed(self.all)) };
        let n = self.all.len();
        let mut out = Vec::with_capacity(keep.len());
        for (k, &i) in keep.iter().enumerate() {
            match self.all.get(i as usize) {
                Some(p) => out.push(*p),
                None => return Err(format!("kept point {k} is point {i} of {n}")),
            }
        }
        Ok(Cow::Owned(out))
    }
}

/// A K4 object named by index ([`Backend::summarize_kept_indexed`]): its camera points are `points` (see
/// [`IndexedPoints`]), and its canonical points are `canonical.apply_f32` of those. On CUDA the device transforms the
/// gathered points too; elsewhere the host copies the camera and canonical points once and K4 runs on the copies.
#[derive(Clone, Copy, Debug)]
pub struct KeptInput<'a> {
    pub points: IndexedPoints<'a>,
    /// The frame's canonical frame.
    pub canonical: &'a crate::geometry::canonical::CanonicalFrame,
}

impl pack::PointCount for KeptInput<'_> {
    fn count(&self) -> usize {
        self.points.len()
    }
}

impl pack::StatsObject for KeptInput<'_> {
    fn canonical_point(&self, k: usize) -> Option<Point3> {
        Some(self.canonical.apply_f32(*self.points.get(k)?))
    }

    fn camera_position(&self) -> [f64; 3] {
        self.canonical.camera_position()
    }
}

/// A K4 object's points copied from a [`KeptInput`]: its camera points (borrowed when it keeps them all), its
/// canonical points and the camera centre. Only the canonical points are kept after K4 (for the gaps).
struct CopiedObject<'a> {
    camera: Cow<'a, [Point3]>,
    canonical: Vec<Point3>,
    camera_position: [f64; 3],
}

impl CopiedObject<'_> {
    fn view(&self) -> crate::geometry::stats::StatsInput<'_> {
        crate::geometry::stats::StatsInput {
            canonical: &self.canonical,
            camera: &self.camera,
            camera_position: self.camera_position,
        }
    }
}

/// Each object's points ([`IndexedPoints::kept`] and their canonical points, the objects in parallel); `Err`
/// names the first object in order with an index outside its points.
fn copy_kept<'a>(objects: &[KeptInput<'a>]) -> std::result::Result<Vec<CopiedObject<'a>>, String> {
    let copied: Vec<std::result::Result<CopiedObject<'a>, String>> = objects
        .par_iter()
        .enumerate()
        .map(|(i, o)| {
            let camera = o.points.kept().map_err(|m| format!("object {i}: {m}"))?;
            let canonical = camera.iter().map(|p| o.canonical.apply_f32(*p)).collect();
            Ok(CopiedObject { camera, canonical, camera_position: o.canonical.camera_position() })
        })
        .collect();
    // In order: the first bad object (a parallel collect into a `Result` may return any of them).
    copied.into_iter().collect()
}

/// How the CUDA backend has used page-locked host memory (`CudaBackend::pinned_memory`, [`Backend::pinned_memory`]). The depth words, the
/// instance labels and the gathers' indices go up from page-locked staging buffers, and the grouped points, labels
/// and hull candidates come back into page-locked read-back buffers, both pooled; where the limit (or the driver)
/// refuses a new buffer, the words go through pageable memory instead (the driver's own staging: slower, the same
/// results).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PinnedMemory {
    /// The limit set ([`Backend::set_pinned_limit`]); `None`: none.
    pub limit_bytes: Option<u64>,
    /// Held now: the pools' buffers and those in use.
    pub held_bytes: u64,
    /// The most held at once since the backend opened.
    pub peak_bytes: u64,
    /// Page-locked buffers allocated.
    pub allocations: u64,
    /// New buffers not allocated because the limit would have been passed (a buffer of the pools' rounded size and
    /// then of its exact size count as two).
    pub refused_by_limit: u64,
    /// What the backend held when the driver last refused a buffer for want of memory: it asks the driver for more
    /// than that only once in 64 requests (a refused pin may be dear); one granted, or setting the limit, lifts it.
    /// `None`: no such ceiling now.
    pub driver_ceiling_bytes: Option<u64>,
    /// New buffers the driver refused, and those not asked of it because they would pass `driver_ceiling_bytes`.
    pub refused_by_driver: u64,
    /// Uploads staged in pageable memory because no page-locked buffer could be had (the small tables, which
    /// always go up from pageable memory, are not counted).
    pub pageable_uploads: u64,
    /// Read-backs into pageable memory because no page-locked buffer could be had.
    pub pageable_read_backs: u64,
}

/// What the CUDA driver says of one loaded kernel: what it compiled the PTX to on this device (registers, spills)
/// and the block it is launched with (`CudaBackend::kernel_resources`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KernelResources {
    /// Its kernel file, e.g. `ransac.cu`.
    pub module: String,
    pub kernel: String,
    /// Threads a block it is launched with.
    pub block: u32,
    /// The most threads a block may have, as the driver reports it (its `__launch_bounds__`, unless its registers
    /// allow fewer).
    pub max_threads_per_block: u32,
    /// Registers a thread (0 on the emulator).
    pub registers: u32,
    /// Local memory a thread, in bytes: register spills and local arrays (0 on the emulator).
    pub local_bytes: u32,
    /// Static shared memory a block, in bytes (0 on the emulator).
    pub shared_bytes: u32,
}

/// A K3 job over some of an object's points, named by index ([`Backend::dbscan_batch_indexed`]): DBSCAN sees
/// `points` (see [`IndexedPoints`]). Where the object's points also lie on the device, the device gathers them there
/// and the host copies none; elsewhere the host copies the kept points once, for the backend's
/// [`Backend::dbscan_batch`].
#[derive(Clone, Copy, Debug)]
pub struct IndexedJob<'a> {
    pub points: IndexedPoints<'a>,
    pub eps: f32,
    pub min_points: u32,
}

impl From<&IndexedJob<'_>> for pack::JobShape {
    fn from(j: &IndexedJob<'_>) -> pack::JobShape {
        pack::JobShape { points: j.points.len(), eps: j.eps, min_points: j.min_points }
    }
}

/// Each job's kept points ([`IndexedPoints::kept`], in parallel); `Err` names the first job in order with an
/// index outside its points.
fn kept_points_of<'a>(jobs: &[IndexedJob<'a>]) -> std::result::Result<Vec<Cow<'a, [Point3]>>, String> {
    let points: Vec<std::result::Result<Cow<'a, [Point3]>, String>> =
        jobs.par_iter().enumerate().map(|(i, j)| j.points.kept().map_err(|m| format!("job {i}: {m}"))).collect();
    // In order: the first bad job (a parallel collect into a `Result` may return any of them).
    points.into_iter().collect()
}

/// [`crate::geometry::dbscan::DbscanJob`]s over `points[i]`, with job `i`'s radius and `min_points`.
fn plain_jobs<'p>(
    jobs: &[IndexedJob<'_>],
    points: &'p [Cow<'_, [Point3]>],
) -> Vec<crate::geometry::dbscan::DbscanJob<'p>> {
    let job = |(j, p): (&IndexedJob<'_>, &'p Cow<'_, [Point3]>)| crate::geometry::dbscan::DbscanJob {
        points: p,
        eps: j.eps,
        min_points: j.min_points,
    };
    jobs.iter().zip(points).map(job).collect()
}

/// The cloud, kept only when the ground was not accepted (the gravity prior's fallback reads it): a batch does not
/// hold every frame's cloud.
fn kept(cloud: PointCloud, fit: &Option<PlaneFit>) -> Option<PointCloud> {
    (!fit.is_some_and(|f| f.accepted)).then_some(cloud)
}

/// K1 and K2 of a frame computed with its cloud on the host (cpu, wgpu): nothing left on a device.
fn on_host(cloud: PointCloud, grouped: GroupedPoints, fit: Option<PlaneFit>) -> FrameGeometry {
    FrameGeometry {
        valid_points: cloud.len(),
        cloud: kept(cloud, &fit),
        grouped,
        fit,
        resident: ResidentGroup::default(),
    }
}

/// The normals of a cloud's scoring subsample (the CPU reference's, from the depth image).
fn sample_normals(f: &FrameGeometryInput<'_>, cloud: &PointCloud, max_step_px: u32) -> Vec<crate::geometry::Point3> {
    crate::pipeline::ground_sample_normals(f.depth, f.k, cloud, f.params, max_step_px)
}

/// An object's canonical points as they lie on the device and their box (lowest and highest corner), as
/// [`KeptObjects::device_object`] reads them back.
pub type DeviceObject = (Vec<Point3>, (Point3, Point3));

/// A batch of K4 objects as [`Backend::summarize_kept`] or [`Backend::summarize_kept_indexed`] left them: their
/// canonical points on the host (as given, or copied; none where they are on the device and were never copied) and,
/// where the backend keeps them (CUDA, when the batch is one launch), on the device, so that
/// [`Backend::closest_gaps_kept`] does not upload them again. From [`Backend::summarize_kept_indexed`] it borrows
/// nothing (`KeptObjects<'static>`): the objects' points and K1's device buffer may go once K4 has run.
pub struct KeptObjects<'a> {
    host: KeptHost<'a>,
    #[cfg(feature = "cuda")]
    device: Option<cuda::DevicePoints>,
}

/// The host's side of a [`KeptObjects`].
enum KeptHost<'a> {
    /// As given to [`Backend::summarize_kept`].
    Given(&'a [crate::geometry::stats::StatsInput<'a>]),
    /// The canonical points copied from the objects given to [`Backend::summarize_kept_indexed`].
    Copied(Vec<Vec<Point3>>),
    /// How many points each object given to [`Backend::summarize_kept_indexed`] has: their canonical points are on
    /// the device only.
    #[cfg(feature = "cuda")]
    Indexed(Vec<usize>),
}

impl<'a> KeptObjects<'a> {
    /// How many objects the batch has.
    pub fn len(&self) -> usize {
        match &self.host {
            KeptHost::Given(o) => o.len(),
            KeptHost::Copied(o) => o.len(),
            #[cfg(feature = "cuda")]
            KeptHost::Indexed(o) => o.len(),
        }
    }

    /// Whether the batch has no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many points object `i` has (`i` below [`KeptObjects::len`]).
    #[cfg(feature = "cuda")]
    fn count(&self, i: usize) -> usize {
        use pack::PointCount;
        match &self.host {
            KeptHost::Given(o) => o[i].count(),
            KeptHost::Copied(o) => o[i].len(),
            KeptHost::Indexed(counts) => counts[i],
        }
    }

    /// Object `i`'s canonical points on the host (`i` below [`KeptObjects::len`]); `Err` where they are on the device
    /// only.
    fn canonical(&self, i: usize) -> std::result::Result<&[Point3], String> {
        match &self.host {
            KeptHost::Given(o) => Ok(o[i].canonical),
            KeptHost::Copied(o) => Ok(&o[i]),
            #[cfg(feature = "cuda")]
            KeptHost::Indexed(_) => Err(format!("object {i} of the kept batch has its points on the device only")),
        }
    }

    /// Object `i`'s canonical points as they lie on the device, with the bounding box the device reduced from them
    /// (the gaps' starting order), read back; `None` where they are not on the device. For the parity tests: K4's
    /// places and boxes line up with the objects (a box that did not would leave the gaps right, only slower).
    #[doc(hidden)]
    pub fn device_object(&self, i: usize) -> Result<Option<DeviceObject>> {
        #[cfg(feature = "cuda")]
        if let (Some(device), true) = (&self.device, i < self.len()) {
            let read = device.read_object(i, self.count(i)).map_err(cuda_error)?;
            return Ok(read.map(|(flat, b)| (flat.chunks_exact(3).map(|p| [p[0], p[1], p[2]]).collect(), b)));
        }
        let _ = i;
        Ok(None)
    }

    /// Whether the canonical points are still on the device.
    pub fn on_device(&self) -> bool {
        #[cfg(feature = "cuda")]
        if self.device.is_some() {
            return true;
        }
        false
    }
}

/// Which backend to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// The multi-threaded CPU reference.
    Cpu,
    /// WGSL kernels through wgpu (Vulkan, Metal, DX12, GL; Mesa's lavapipe without a GPU).
    Wgpu,
    /// CUDA kernels (`kernels/`, NVRTC at run time) through cudarc; needs an NVIDIA driver and CUDA 13's NVRTC.
    Cuda,
    /// The first available of cuda, wgpu, cpu; says what it chose.
    Auto,
}

/// A backend ready to run kernels.
pub enum Backend {
    Cpu,
    #[cfg(feature = "wgpu")]
    Wgpu(Box<gpu::WgpuBackend>),
    #[cfg(feature = "cuda")]
    Cuda(Box<cuda::CudaBackend>),
}

impl Backend {
    /// Opens the backend `kind`. An explicit backend that is unavailable is an error saying why; `auto` falls back
    /// to the CPU and [`Backend::describe`] says what it chose.
    pub fn open(kind: BackendKind) -> Result<Backend> {
        match kind {
            BackendKind::Cpu => Ok(Backend::Cpu),
            #[cfg(feature = "wgpu")]
            BackendKind::Wgpu => gpu::WgpuBackend::new().map(|b| Backend::Wgpu(Box::new(b))).map_err(wgpu_error),
            #[cfg(not(feature = "wgpu"))]
            BackendKind::Wgpu => Err(Error::Backend {
                backend: "wgpu".into(),
                message: "this build of spatialsynth has no wgpu backend (built without the `wgpu` feature)".into(),
            }),
            #[cfg(feature = "cuda")]
            BackendKind::Cuda => cuda::CudaBackend::new().map(|b| Backend::Cuda(Box::new(b))).map_err(cuda_error),
            #[cfg(not(feature = "cuda"))]
            BackendKind::Cuda => Err(Error::Backend {
                backend: "cuda".into(),
                message: "this build of spatialsynth has no CUDA backend (built without the `cuda` feature)".into(),
            }),
            BackendKind::Auto => Ok(Self::auto()),
        }
    }

    /// The first of cuda, wgpu and cpu that opens.
    fn auto() -> Backend {
        #[cfg(feature = "cuda")]
        if let Ok(b) = cuda::CudaBackend::new() {
            return Backend::Cuda(Box::new(b));
        }
        #[cfg(feature = "wgpu")]
        if let Ok(b) = gpu::WgpuBackend::new() {
            return Backend::Wgpu(Box::new(b));
        }
        Backend::Cpu
    }

    /// `message` as this backend's error.
    fn error(&self, message: String) -> Error {
        Error::Backend { backend: format!("{:?}", self.kind()).to_lowercase(), message }
    }

    /// The backend and, for GPUs, the adapter: e.g. `wgpu: llvmpipe (LLVM 15.0.6, 256 bits) (Vulkan, Cpu)`.
    pub fn describe(&self) -> String {
        match self {
            Backend::Cpu => format!("cpu: {} threads", rayon::current_num_threads()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(b) => format!("wgpu: {}", b.adapter_description()),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => format!("cuda: {}", b.device_description()),
        }
    }

    /// How many batches of frames a run (and `bench --kernels`' end-to-end figure) gives this backend at once: 1 on
    /// the CPU (its kernels already use every thread), 2 on a GPU, so that the host steps of one batch (hulls,
    /// packing, the objects' records) run while the device works on the other.
    pub fn batches_in_flight(&self) -> usize {
        match self {
            Backend::Cpu => 1,
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(_) => 2,
            #[cfg(feature = "cuda")]
            Backend::Cuda(_) => 2,
        }
    }

    /// The batches a run gives this backend at once: `requested`, or [`Backend::batches_in_flight`] when it is 0.
    /// `Err` above [`MAX_BATCHES_IN_FLIGHT`] ([`check_in_flight`]).
    pub fn in_flight(&self, requested: usize) -> Result<usize> {
        match check_in_flight(requested).map_err(|message| Error::Config { message })? {
            0 => Ok(self.batches_in_flight()),
            n => Ok(n),
        }
    }

    /// At most `limit` bytes of page-locked host memory for the CUDA backend's staging and read-back buffers
    /// (`None`: no limit, the default); beyond it, it copies through pageable memory: slower, the same results (see
    /// `CudaBackend::set_pinned_limit`). The CPU and wgpu backends hold no page-locked memory of their own (wgpu's
    /// mapped buffers are its driver's): the limit does not apply to them.
    pub fn set_pinned_limit(&self, limit: Option<u64>) -> Result<()> {
        match self {
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => {
                // (A limit past the address space is no limit.)
                let limit = limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
                b.set_pinned_limit(limit).map_err(|message| self.error(message))
            }
            _ => {
                let _ = limit;
                Ok(())
            }
        }
    }

    /// The page-locked host memory the CUDA backend holds, its peak, its limit and what was refused; `None` on the
    /// other backends.
    pub fn pinned_memory(&self) -> Option<PinnedMemory> {
        match self {
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => Some(b.pinned_memory()),
            _ => None,
        }
    }

    /// Which backend this is (never `Auto`).
    pub fn kind(&self) -> BackendKind {
        match self {
            Backend::Cpu => BackendKind::Cpu,
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(_) => BackendKind::Wgpu,
            #[cfg(feature = "cuda")]
            Backend::Cuda(_) => BackendKind::Cuda,
        }
    }

    /// K1 and K2 of a batch of frames: each frame's valid points, its objects' points and its ground plane (normals
    /// of the scoring subsample from the depth image, looking up to `normal_max_step_px` pixels away, as
    /// [`crate::pipeline::ground_sample_normals`]). One result per frame, in order. A frame's bad input (instance
    /// labels that do not cover its depth, a launch limit) fails that frame only; on CUDA a device error fails every
    /// frame of its chunk. The CPU runs the frames in parallel; wgpu runs each frame with its cloud resident on the
    /// device; CUDA runs the frames of each chunk (up to 2^28 pixels) together: each K1 and K2 step launched for
    /// every frame, then one round trip (about six, plus one per refinement round), bringing back only the objects'
    /// points and the scoring subsamples, not the whole cloud.
    pub fn frames_geometry(
        &self,
        frames: &[FrameGeometryInput<'_>],
        normal_max_step_px: u32,
    ) -> Vec<Result<FrameGeometry>> {
        match self {
            Backend::Cpu => frames
                .par_iter()
                .map(|f| {
                    let cloud = unproject_depth(f.depth, f.k);
                    let grouped =
                        crate::geometry::unproject::unproject_objects(f.depth, f.k, f.instance_labels, f.regions);
                    let normals = sample_normals(f, &cloud, normal_max_step_px);
                    let fit = crate::geometry::ransac::fit_ground_plane(
                        &cloud.points_in_camera,
                        Some(&normals),
                        f.frame_key,
                        f.params,
                    );
                    Ok(on_host(cloud, grouped, fit))
                })
                .collect(),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(b) => frames
                .par_iter()
                .map(|f| {
                    let normals = |cloud: &PointCloud| sample_normals(f, cloud, normal_max_step_px);
                    let (cloud, grouped, fit) = b
                        .frame_geometry(f.depth, f.k, f.instance_labels, f.regions, f.frame_key, f.params, &normals)
                        .map_err(wgpu_error)?;
                    Ok(on_host(cloud, grouped, fit))
                })
                .collect(),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => {
                b.frames_geometry(frames, normal_max_step_px).into_iter().map(|r| r.map_err(cuda_error)).collect()
            }
        }
    }

    /// K1 for the whole frame: every valid depth pixel, row-major.
    pub fn unproject(&self, depth: &DepthImage, k: &Intrinsics) -> Result<PointCloud> {
        match self {
            Backend::Cpu => Ok(unproject_depth(depth, k)),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(b) => b.unproject(depth, k).map_err(wgpu_error),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.unproject(depth, k).map_err(cuda_error),
        }
    }

    /// K1 for a batch of frames (one dispatch per chunk of frames on a GPU).
    pub fn unproject_batch(&self, frames: &[(&DepthImage, &Intrinsics)]) -> Result<Vec<PointCloud>> {
        match self {
            Backend::Cpu => Ok(frames.iter().map(|(d, k)| unproject_depth(d, k)).collect()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(b) => b.unproject_batch(frames).map_err(wgpu_error),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.unproject_batch(frames).map_err(cuda_error),
        }
    }

    /// K1 per object: each region's valid depth points, row-major per object.
    pub fn unproject_objects(
        &self,
        depth: &DepthImage,
        k: &Intrinsics,
        instance_labels: Option<&[u32]>,
        regions: &[crate::geometry::unproject::ObjectRegion],
    ) -> Result<crate::geometry::unproject::GroupedPoints> {
        match self {
            Backend::Cpu => Ok(crate::geometry::unproject::unproject_objects(depth, k, instance_labels, regions)),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(b) => b.unproject_objects(depth, k, instance_labels, regions).map_err(wgpu_error),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.unproject_objects(depth, k, instance_labels, regions).map_err(cuda_error),
        }
    }

    /// K3: exact DBSCAN; `Err` says why (bad radius, non-finite point, a span too large for the device grid).
    pub fn dbscan(
        &self,
        points: &[crate::geometry::Point3],
        eps: f32,
        min_points: u32,
    ) -> std::result::Result<crate::geometry::dbscan::Clustering, String> {
        match self {
            Backend::Cpu => crate::geometry::dbscan::dbscan(points, eps, min_points).map_err(|e| e.to_string()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(b) => b.dbscan(points, eps, min_points).map_err(|m| format!("wgpu: {m}")),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.dbscan(points, eps, min_points).map_err(|m| format!("cuda: {m}")),
        }
    }

    /// K3 for a batch of jobs (the objects of a frame or of many frames, each with its own radius): one clustering per
    /// job, equal to [`crate::geometry::dbscan::dbscan`]'s. GPUs run every job of the batch in one grid and one set of
    /// launches; the CPU runs the jobs in parallel. `Err` names the refused job.
    pub fn dbscan_batch(
        &self,
        jobs: &[crate::geometry::dbscan::DbscanJob<'_>],
    ) -> std::result::Result<Vec<crate::geometry::dbscan::Clustering>, String> {
        match self {
            Backend::Cpu => crate::geometry::dbscan::dbscan_batch(jobs).map_err(|e| e.to_string()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(b) => b.dbscan_batch(jobs).map_err(|m| format!("wgpu: {m}")),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.dbscan_batch(jobs).map_err(|m| format!("cuda: {m}")),
        }
    }

    /// [`Backend::dbscan_batch`] on jobs that name their points by index into an object's points
    /// ([`IndexedJob`]): CUDA gathers them on the device (a word a point uploaded, from the object's first point and
    /// `keep`) when every job of a launch lies in the same device buffer, and the host copies no point; elsewhere, and
    /// on the other backends, the host copies the kept points once. The same clusterings as [`Backend::dbscan_batch`]
    /// on the kept points; an index of `keep` outside its points is an error naming the job.
    pub fn dbscan_batch_indexed(
        &self,
        jobs: &[IndexedJob<'_>],
    ) -> std::result::Result<Vec<crate::geometry::dbscan::Clustering>, String> {
        match self {
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.dbscan_batch_indexed(jobs).map_err(|m| format!("cuda: {m}")),
            _ => {
                // A bad index is named as `dbscan_batch` names its errors on this backend.
                let points = kept_points_of(jobs).map_err(|m| match self {
                    #[cfg(feature = "wgpu")]
                    Backend::Wgpu(_) => format!("wgpu: {m}"),
                    _ => m,
                })?;
                self.dbscan_batch(&plain_jobs(jobs, &points))
            }
        }
    }

    /// K2 hypothesis scores (the same hypotheses on every backend: drawn by the shared counter-based RNG).
    pub fn score_hypotheses(
        &self,
        points: &[crate::geometry::Point3],
        sample_normals: Option<&[crate::geometry::Point3]>,
        frame_key: u32,
        params: &crate::geometry::ransac::RansacParams,
    ) -> Result<Vec<u32>> {
        match self {
            Backend::Cpu => Ok(crate::geometry::ransac::score_hypotheses(points, sample_normals, frame_key, params)),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(b) => b.score_hypotheses(points, sample_normals, frame_key, params).map_err(wgpu_error),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.score_hypotheses(points, sample_normals, frame_key, params).map_err(cuda_error),
        }
    }

    /// K2 whole: the ground plane (see [`crate::geometry::ransac::fit_ground_plane`]).
    pub fn fit_ground_plane(
        &self,
        points: &[crate::geometry::Point3],
        sample_normals: Option<&[crate::geometry::Point3]>,
        frame_key: u32,
        params: &crate::geometry::ransac::RansacParams,
    ) -> Result<Option<crate::geometry::ransac::PlaneFit>> {
        match self {
            Backend::Cpu => Ok(crate::geometry::ransac::fit_ground_plane(points, sample_normals, frame_key, params)),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(b) => b.fit_ground_plane(points, sample_normals, frame_key, params).map_err(wgpu_error),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.fit_ground_plane(points, sample_normals, frame_key, params).map_err(cuda_error),
        }
    }

    /// K4 for a batch of objects of any frames (see [`crate::geometry::stats::summarize_batch`]).
    pub fn summarize_batch(
        &self,
        objects: &[crate::geometry::stats::StatsInput],
        noise: &crate::geometry::stats::NoiseModel,
    ) -> Result<Vec<Option<ObjectSummary>>> {
        match self {
            Backend::Cpu => Ok(crate::geometry::stats::summarize_batch(objects, noise)),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(b) => b.summarize_batch(objects, noise).map_err(wgpu_error),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.summarize_batch(objects, noise).map_err(cuda_error),
        }
    }

    /// K4 as [`Backend::summarize_batch`], keeping the batch for [`Backend::closest_gaps_kept`]: on CUDA the
    /// objects' canonical points stay on the device (when the batch fits one launch), so the gaps need no second
    /// upload. The other backends keep the host's points only.
    pub fn summarize_kept<'a>(
        &self,
        objects: &'a [crate::geometry::stats::StatsInput<'a>],
        noise: &crate::geometry::stats::NoiseModel,
    ) -> Result<(Vec<Option<ObjectSummary>>, KeptObjects<'a>)> {
        let host = KeptHost::Given(objects);
        match self {
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => {
                let (summaries, device) = b.summarize_kept(objects, noise).map_err(cuda_error)?;
                Ok((summaries, KeptObjects { host, device }))
            }
            _ => Ok((
                self.summarize_batch(objects, noise)?,
                KeptObjects {
                    host,
                    #[cfg(feature = "cuda")]
                    device: None,
                },
            )),
        }
    }

    /// [`Backend::summarize_kept`] on objects that name their points by index into an object's points
    /// ([`KeptInput`]): CUDA gathers them on the device and computes their canonical points there (a word a point
    /// uploaded) when the batch is one launch and every object lies in the same device buffer, and the host copies no
    /// point; elsewhere, and on the other backends, the host copies each object's camera and canonical points once.
    /// The same summaries, and the same gaps from the kept batch, as [`Backend::summarize_kept`] on the copied points;
    /// an index of `keep` outside its points is an error naming the object.
    pub fn summarize_kept_indexed(
        &self,
        objects: &[KeptInput<'_>],
        noise: &crate::geometry::stats::NoiseModel,
    ) -> Result<(Vec<Option<ObjectSummary>>, KeptObjects<'static>)> {
        #[cfg(feature = "cuda")]
        if let Backend::Cuda(b) = self {
            if let Some((summaries, device)) = b.summarize_kept_indexed(objects, noise).map_err(cuda_error)? {
                let counts = objects.iter().map(|o| o.points.len()).collect();
                return Ok((summaries, KeptObjects { host: KeptHost::Indexed(counts), device: Some(device) }));
            }
        }
        let copied = copy_kept(objects).map_err(|m| self.error(m))?;
        let views: Vec<_> = copied.iter().map(CopiedObject::view).collect();
        // K4 on the copies. The batch keeps that call's device side, and the canonical copies as its host side (the
        // call's own borrows the views).
        let (summaries, on_copies) = self.summarize_kept(&views, noise)?;
        #[cfg(feature = "cuda")]
        let device = on_copies.device;
        #[cfg(not(feature = "cuda"))]
        drop(on_copies);
        drop(views);
        let host = KeptHost::Copied(copied.into_iter().map(|c| c.canonical).collect());
        Ok((
            summaries,
            KeptObjects {
                host,
                #[cfg(feature = "cuda")]
                device,
            },
        ))
    }

    /// [`Backend::closest_gaps_batch`] over objects of a kept K4 batch: `frames[f]` lists frame `f`'s objects as
    /// indices into the batch (their canonical points), in the order of its matrix. The same values as
    /// `closest_gaps_batch` on those points; on CUDA read from the device when they are still there.
    pub fn closest_gaps_kept(
        &self,
        kept: &KeptObjects<'_>,
        frames: &[&[usize]],
        voxel_m: f32,
    ) -> Result<Vec<Vec<f32>>> {
        let n = kept.len();
        if let Some((f, &i)) =
            frames.iter().enumerate().find_map(|(f, list)| list.iter().find(|&&i| i >= n).map(|i| (f, i)))
        {
            return Err(self.error(format!("frame {f} of the gap batch names object {i} of a batch of {n}")));
        }
        #[cfg(feature = "cuda")]
        if let (Backend::Cuda(b), Some(device)) = (self, &kept.device) {
            // The points are on the device: the host needs only how many each object has.
            let counts: Vec<Vec<usize>> =
                frames.iter().map(|list| list.iter().map(|&i| kept.count(i)).collect()).collect();
            let per_frame: Vec<&[usize]> = counts.iter().map(Vec::as_slice).collect();
            return b.closest_gaps_resident(device, &per_frame, frames).map_err(cuda_error);
        }
        let refs: Vec<Vec<&[Point3]>> = frames
            .iter()
            .map(|list| list.iter().map(|&i| kept.canonical(i)).collect())
            .collect::<std::result::Result<_, _>>()
            .map_err(|m| self.error(m))?;
        let per_frame: Vec<&[&[Point3]]> = refs.iter().map(Vec::as_slice).collect();
        self.closest_gaps_batch(&per_frame, voxel_m)
    }

    /// The exact closest-surface gap of every pair of objects of every frame of a batch (`frames[f][i]` = object
    /// `i`'s points): each frame's dense symmetric `n × n` matrix of distances (diagonal 0, `NaN` for a pair with
    /// an object without points), as [`closest_surface_matrix`] computes it with voxels of `voxel_m` metres (the
    /// specification). The GPU backends compute the very same squared minimum by another exact search
    /// (`kernels/gaps.cu`, `shaders/gaps.wgsl`; `voxel_m` is the CPU's index only).
    pub fn closest_gaps_batch(&self, frames: &[&[&[Point3]]], voxel_m: f32) -> Result<Vec<Vec<f32>>> {
        match self {
            Backend::Cpu => Ok(frames.par_iter().map(|objects| closest_surface_matrix(objects, voxel_m)).collect()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(b) => b.closest_gaps_batch(frames).map_err(wgpu_error),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.closest_gaps_batch(frames).map_err(cuda_error),
        }
    }

    /// K5 for every ordered pair of every frame of a batch (`frames[f]` = that frame's object summaries); the
    /// closest-surface `gap_m` is left `NaN` (the host fills it from the exact search).
    pub fn relate_batch(&self, frames: &[&[ObjectSummary]]) -> Result<Vec<Vec<RelationRecord>>> {
        match self {
            Backend::Cpu => Ok(frames.iter().map(|objects| relate_all(objects, |_, _| f32::NAN)).collect()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu(b) => b.relate_batch(frames).map_err(wgpu_error),
            #[cfg(feature = "cuda")]
            Backend::Cuda(b) => b.relate_batch(frames).map_err(cuda_error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::dbscan::{dbscan_batch, DbscanJob};
    use IndexedPoints as P;

    #[test]
    fn indexed_jobs_cluster_their_kept_points_and_name_a_bad_index() {
        // Two blobs 1 m apart, every third point left out of the first job; the second job takes all its points.
        let points: Vec<Point3> = (0..90).map(|i| [(i / 45) as f32 + 0.001 * (i % 45) as f32, 0.0, 0.0]).collect();
        let keep: Vec<u32> = (0..90).filter(|i| i % 3 != 0).collect();
        let jobs = [
            IndexedJob { points: IndexedPoints { keep: Some(&keep), ..P::whole(&points) }, eps: 0.01, min_points: 3 },
            IndexedJob { points: P::whole(&points[..50]), eps: 0.01, min_points: 3 },
            IndexedJob { points: IndexedPoints { keep: Some(&[]), ..P::whole(&points) }, eps: 0.01, min_points: 3 },
        ];
        assert_eq!(jobs.map(|j| j.points.len()), [60, 50, 0]);
        let kept: Vec<Point3> = keep.iter().map(|&i| points[i as usize]).collect();
        assert_eq!(jobs[0].points.kept().unwrap(), kept);
        assert_eq!(
            (0..61).map(|k| jobs[0].points.get(k).copied()).collect::<Vec<_>>(),
            kept.iter().copied().map(Some).chain([None]).collect::<Vec<_>>()
        );
        assert!(matches!(jobs[1].points.kept().unwrap(), Cow::Borrowed(p) if p.len() == 50));
        let want = dbscan_batch(&[
            DbscanJob { points: &kept, eps: 0.01, min_points: 3 },
            DbscanJob { points: &points[..50], eps: 0.01, min_points: 3 },
            DbscanJob { points: &[], eps: 0.01, min_points: 3 },
        ])
        .unwrap();
        assert_eq!(want[0].clusters, 2);
        assert_eq!(Backend::Cpu.dbscan_batch_indexed(&jobs).unwrap(), want);
        // An index past the object's points: the job and the index named, nothing clustered.
        let bad_keep = [0, 5, 90];
        let mut bad = jobs;
        bad[2].points.keep = Some(&bad_keep);
        assert_eq!(bad[2].points.kept().unwrap_err(), "kept point 2 is point 90 of 90");
        assert_eq!(bad[2].points.get(2), None);
        assert_eq!(Backend::Cpu.dbscan_batch_indexed(&bad).unwrap_err(), "job 2: kept point 2 is point 90 of 90");
    }

    #[test]
    fn kept_inputs_summarise_and_space_their_kept_points_and_name_a_bad_index() {
        use crate::geometry::canonical::{CanonicalFrame, GroundSource};
        use crate::geometry::stats::{NoiseModel, StatsInput};
        use crate::geometry::Plane;
        // A tilted ground; an object of every other point of a box, one of all the points of another, an empty one.
        let plane = Plane { normal: [0.1, -0.98, 0.17], offset: 1.3 };
        let canonical = CanonicalFrame::from_ground_plane(&plane, GroundSource::Ransac).unwrap();
        let cube = |at: f32| -> Vec<Point3> {
            (0..343)
                .map(|i| [at + 0.01 * (i % 7) as f32, 0.02 * (i / 7 % 7) as f32, 2.0 + 0.03 * (i / 49) as f32])
                .collect()
        };
        let (a, b) = (cube(0.0), cube(0.5));
        let keep: Vec<u32> = (0..343).step_by(2).collect();
        let objects = [
            KeptInput { points: IndexedPoints { keep: Some(&keep), ..P::whole(&a) }, canonical: &canonical },
            KeptInput { points: P::whole(&b), canonical: &canonical },
            KeptInput { points: IndexedPoints { keep: Some(&[]), ..P::whole(&a) }, canonical: &canonical },
        ];
        assert_eq!(objects.map(|o| o.points.len()), [172, 343, 0]);
        // The CPU reference on the host's copies: camera points, then `apply_f32` of each.
        let camera: Vec<Vec<Point3>> = vec![keep.iter().map(|&i| a[i as usize]).collect(), b.clone(), Vec::new()];
        let canon: Vec<Vec<Point3>> =
            camera.iter().map(|c| c.iter().map(|p| canonical.apply_f32(*p)).collect()).collect();
        let inputs: Vec<StatsInput> = camera
            .iter()
            .zip(&canon)
            .map(|(camera, canonical_points)| StatsInput {
                canonical: canonical_points,
                camera,
                camera_position: canonical.camera_position(),
            })
            .collect();
        let noise = NoiseModel::default();
        let (want, want_kept) = Backend::Cpu.summarize_kept(&inputs, &noise).unwrap();
        let (got, kept) = Backend::Cpu.summarize_kept_indexed(&objects, &noise).unwrap();
        assert_eq!(got, want);
        assert!(got[0].is_some() && got[2].is_none());
        assert_eq!((kept.len(), kept.on_device()), (3, false));
        // The host's part of K4 reads the same canonical points by index.
        use pack::{PointCount, StatsObject};
        for (o, c) in objects.iter().zip(&canon) {
            let by_index: Vec<Point3> = (0..o.count()).map(|k| o.canonical_point(k).unwrap()).collect();
            assert_eq!(&by_index, c);
            assert_eq!(o.canonical_point(o.count()), None);
        }
        let lists: [&[usize]; 2] = [&[1, 0, 2], &[0]];
        let gaps = Backend::Cpu.closest_gaps_kept(&kept, &lists, 0.02).unwrap();
        let bits =
            |g: &[Vec<f32>]| g.iter().map(|m| m.iter().map(|x| x.to_bits()).collect()).collect::<Vec<Vec<u32>>>();
        assert_eq!(bits(&gaps), bits(&Backend::Cpu.closest_gaps_kept(&want_kept, &lists, 0.02).unwrap()));
        assert!(gaps[0][1] > 0.1 && gaps[0][2].is_nan(), "{:?}", gaps[0]);
        let err = Backend::Cpu.closest_gaps_kept(&kept, &[&[3]], 0.02).unwrap_err().to_string();
        assert!(err.contains("names object 3 of a batch of 3"), "{err}");
        // An index past the object's points: the object and the index named, nothing summarised.
        let bad_keep = [0, 343];
        let mut bad = objects;
        bad[1].points.keep = Some(&bad_keep);
        let err = Backend::Cpu.summarize_kept_indexed(&bad, &noise).err().unwrap().to_string();
        assert!(err.contains("object 1: kept point 1 is point 343 of 343"), "{err}");
    }
}
