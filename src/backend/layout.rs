//! The data contract of the GPU backends: every `#[repr(C)]` record that crosses into a WGSL shader
//! (`shaders/`) or a CUDA kernel (`kernels/`), declared once here with explicit padding. The shaders' structs are
//! checked against these sizes by naga (`tests/parity.rs`); the kernels' by `static_assert`s that NVRTC evaluates
//! (`tests/cuda_kernels.rs` compiles every kernel).

/// Per-frame ranges of a K5 batch. Keep in sync with `FrameRange` in `shaders/relations.wgsl` and `kernels/relations.cu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FrameRange {
    pub object_offset: u32,
    pub object_count: u32,
    pub pair_offset: u32,
    pub _pad: u32,
}

/// Uniforms of K5. Keep in sync with `Params` in `shaders/relations.wgsl` (the CUDA kernels take these as scalar arguments).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RelationParams {
    pub frames: u32,
    pub pairs: u32,
    pub _pad: [u32; 2],
}

/// Uniforms of K1. Keep in sync with `Params` in `shaders/unproject.wgsl` (the CUDA kernels take these as scalar arguments).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct UnprojectParams {
    pub blocks: u32,
    pub frames: u32,
    pub _pad: [u32; 2],
}

/// One frame of a K1 batch. Keep in sync with `Frame` in `shaders/unproject.wgsl` and `kernels/unproject.cu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct UnprojectFrame {
    pub width: u32,
    pub pixels: u32,
    pub is_u16: u32,
    pub invalid_value: u32,
    pub units_per_meter: f32,
    pub word_offset: u32,
    pub ray_x_offset: u32,
    pub ray_y_offset: u32,
    pub block_offset: u32,
    pub _pad: [u32; 3],
}

/// One ground-plane hypothesis as K2 scores it. Keep in sync with `Hypothesis` in `shaders/ransac.wgsl` and `kernels/ransac.cu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GpuHypothesis {
    pub plane: [f32; 4],
    pub admissible: u32,
    pub _pad: [u32; 3],
}

/// Uniforms of K2 scoring. Keep in sync with `Params` in `shaders/ransac.wgsl` (the CUDA kernels take these as scalar arguments).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RansacParamsGpu {
    pub hypotheses: u32,
    pub samples: u32,
    pub threshold: f32,
    pub min_cos: f32,
    pub use_normals: u32,
    pub points: u32,
    pub seed: u32,
    pub frame_key: u32,
}

/// One plane's support test. Keep in sync with `SupportTest` in `shaders/ransac.wgsl` and `kernels/ransac.cu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GpuSupport {
    pub plane: [f32; 4],
    pub threshold: f32,
    pub min_cos: f32,
    pub use_normals: u32,
    pub _pad: u32,
}

/// An object's pixel region as K1's grouping tests it. Keep in sync with `Region` in `shaders/group.wgsl` and `kernels/group.cu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GpuRegion {
    /// 0: instance `id`; 1: box `[x0, x1) × [y0, y1)`.
    pub kind: u32,
    pub id: u32,
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
    pub _pad: [u32; 2],
}

/// Uniforms of K1's grouping. Keep in sync with `Params` in `shaders/group.wgsl` (the CUDA kernels take these as scalar arguments).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GroupParams {
    pub points: u32,
    pub blocks: u32,
    pub objects: u32,
    pub width: u32,
    pub has_labels: u32,
    pub _pad: [u32; 3],
}

/// Uniforms of K3 (a batch of DBSCAN problems in one grid). Keep in sync with `Params` in `shaders/dbscan.wgsl` and
/// `kernels/dbscan.cu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DbscanParams {
    /// Points of all jobs.
    pub points: u32,
    /// Occupied cells of all jobs (wgpu); the hash table's slots, a power of two at least twice the points (CUDA).
    pub cells: u32,
    /// Jobs of the batch.
    pub jobs: u32,
    pub _pad: [u32; 5],
}

/// One K3 job's radius (squared), core threshold and 1 / its cells' side (read by CUDA's `cell_of`, which bins on the
/// device; the wgpu kernels leave it alone). Keep in sync with `Job` in `shaders/dbscan.wgsl` and `kernels/dbscan.cu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct DbscanJobParams {
    pub eps2: f32,
    pub min_points: u32,
    pub inv_side: f64,
}

const _: () = assert!(std::mem::size_of::<DbscanParams>() == 32);
const _: () = assert!(std::mem::size_of::<DbscanJobParams>() == 16);
const _: () = assert!(std::mem::size_of::<GpuSupport>() == 32);
const _: () = assert!(std::mem::size_of::<GpuRegion>() == 32);
const _: () = assert!(std::mem::size_of::<GroupParams>() == 32);
const _: () = assert!(std::mem::size_of::<GpuHypothesis>() == 32);
const _: () = assert!(std::mem::size_of::<RansacParamsGpu>() == 32);
const _: () = assert!(std::mem::size_of::<FrameRange>() == 16);
const _: () = assert!(std::mem::size_of::<RelationParams>() == 16);
const _: () = assert!(std::mem::size_of::<UnprojectParams>() == 16);
const _: () = assert!(std::mem::size_of::<UnprojectFrame>() == 48);

/// One object's K4 reductions as the device returns them. Keep in sync with `ObjectStats` in `shaders/stats.wgsl` and `kernels/stats.cu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GpuObjectStats {
    /// Sum of the canonical points minus the object's first point.
    pub sum: [f32; 3],
    pub points: u32,
    pub lo: [f32; 3],
    pub median_bits: u32,
    pub hi: [f32; 3],
    /// Hull candidates listed for the object, at `candidate_offset` of the batch's compact list.
    pub candidates: u32,
    pub candidate_offset: u32,
    pub _pad: [u32; 3],
}

/// Uniforms of K4. Keep in sync with `Params` in `shaders/stats.wgsl` (the CUDA kernels take these as scalar arguments).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StatsParams {
    pub objects: u32,
    pub _pad: [u32; 3],
}

/// An object's canonical frame for K4's gather on CUDA (`gather_canonical`): `canonical_from_camera` as
/// [`crate::geometry::canonical::CanonicalFrame::apply`] uses it (f64). Keep in sync with `Canonical` in
/// `kernels/stats.cu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GpuCanonical {
    /// The rotation's rows.
    pub rotation: [[f64; 3]; 3],
    pub translation: [f64; 3],
}

const _: () = assert!(std::mem::size_of::<GpuCanonical>() == 96);
const _: () = assert!(std::mem::size_of::<GpuObjectStats>() == 64);
const _: () = assert!(std::mem::size_of::<StatsParams>() == 16);

/// One object of a closest-surface gap batch: its points, its chunks of 32 points and its super-chunks of 8 chunks.
/// Keep in sync with `GapObject` in `shaders/gaps.wgsl` and `kernels/gaps.cu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GpuGapObject {
    pub offset: u32,
    /// At least one (objects without points are in no pair).
    pub count: u32,
    pub chunk_offset: u32,
    pub super_offset: u32,
}

/// How the gap kernels put one object's points in a spatial order before they chunk them: the object's points lie
/// at `source` in the buffer they are read from; each goes to bucket `buckets + morton(cell)`, its cell that of a
/// grid of `2^bits` cells a side of `1 / inv_cell` metres from `lo` (cells clamped to the grid). Keep in sync with
/// `GapOrder` in `shaders/gaps.wgsl` and `kernels/gaps.cu`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GpuGapOrder {
    pub source: u32,
    pub buckets: u32,
    pub bits: u32,
    pub inv_cell: f32,
    pub lo: [f32; 3],
    pub _pad: u32,
}

/// Uniforms of the gap kernels. Keep in sync with `Params` in `shaders/gaps.wgsl` (the CUDA kernels take these as
/// scalar arguments).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct GapParams {
    pub objects: u32,
    pub chunks: u32,
    pub pairs: u32,
    pub tiles: u32,
    pub points: u32,
    pub buckets: u32,
    pub supers: u32,
    pub _pad: u32,
}

const _: () = assert!(std::mem::size_of::<GpuGapObject>() == 16);
const _: () = assert!(std::mem::size_of::<GapParams>() == 32);
const _: () = assert!(std::mem::size_of::<GpuGapOrder>() == 32);
