// K1, per object: the points of the whole-frame cloud (row-major, from unproject.cu) whose pixel lies in each
// object's region, object after object, row-major within each object. The CUDA twin of `unproject_objects` in
// src/geometry/unproject.rs (and shaders/group.wgsl). Stable order without atomics: per (object, block of BLOCK
// points) counts, one exclusive prefix sum per frame over objects then blocks (`scan_frames`, scan.cuh's
// `scan_run`), and a block-local scan to place each point. Every frame of a chunk in the same four launches: the
// frames' counts, scans, object starts and writes, each frame found through its `GroupJob`. Needs common.cuh and
// scan.cuh (prepended by the host).

// Keep in sync with `GpuRegion` in src/backend/gpu.rs (32 bytes).
struct Region {
    // 0: instance (pixels whose label equals `id`, never 0); 1: box [x0, x1) x [y0, y1).
    u32 kind;
    u32 id;
    u32 x0, y0, x1, y1;
    u32 pad0, pad1;
};
static_assert(sizeof(Region) == 32, "Region must match GpuRegion (32 bytes)");

// One frame of a chunk (keep in sync with `GroupJob` in src/backend/cuda.rs, 48 bytes). Its points are
// cloud[point_base, point_base + n_points) (pixel indices within the frame); its objects are the chunk's objects
// [first_object, first_object + objects), its regions regions[first_object..]; its counts are counts[counts_at..]
// (objects x blocks, object after object); its labels labels[labels_at..] (one per pixel) when has_labels is 1.
// Frame f's offsets (its counts scanned, one more entry) are offsets[counts_at + f..] and its object starts
// (objects + 1) starts[first_object + f..]: each frame before it adds one entry to either table.
struct GroupJob {
    u32 point_base, n_points, objects, blocks;
    u32 counts_at, labels_at, first_object, width;
    u32 has_labels, pad0, pad1, pad2;
};
static_assert(sizeof(GroupJob) == 48, "GroupJob must match the host's (48 bytes)");

__device__ __forceinline__ bool member(const Region& r, u32 pixel, const u32* __restrict__ labels, u32 has_labels,
                                       u32 width) {
    if (r.kind == 0u) return has_labels == 1u && r.id != 0u && labels[pixel] == r.id;
    const u32 u = pixel % width;
    const u32 v = pixel / width;
    return u >= r.x0 && u < r.x1 && v >= r.y0 && v < r.y1;
}

// Grid (blocks of the chunk's widest frame, objects): object object_base + blockIdx.y of the chunk, whose frame is
// jobs[object_job[...]]. A block past its frame's blocks returns at once (the whole block: no barrier is left
// waiting).
extern "C" __global__ void count_members(const u32* __restrict__ pixels, const u32* __restrict__ labels,
                                         const Region* __restrict__ regions, const GroupJob* __restrict__ jobs,
                                         const u32* __restrict__ object_job, u32* __restrict__ counts,
                                         u32 object_base) {
    const u32 g = object_base + blockIdx.y;
    const GroupJob j = jobs[object_job[g]];
    if (blockIdx.x >= j.blocks) return;
    const u32 o = g - j.first_object;
    const u32 i = blockIdx.x * BLOCK + threadIdx.x;
    const Region r = regions[g];
    const bool inside =
        i < j.n_points && member(r, pixels[j.point_base + i], labels + j.labels_at, j.has_labels, j.width);
    const u32 count = __syncthreads_count(inside);
    if (threadIdx.x == 0) counts[j.counts_at + o * j.blocks + blockIdx.x] = count;
}

// Grid (frames): each frame's counts scanned into its offsets by one block (scan_run).
extern "C" __global__ void __launch_bounds__(SCAN_THREADS)
scan_frames(const GroupJob* __restrict__ jobs, const u32* __restrict__ counts, u32* __restrict__ offsets) {
    const GroupJob j = jobs[blockIdx.x];
    scan_run(counts + j.counts_at, offsets + j.counts_at + blockIdx.x, j.objects * j.blocks);
}

// A thread per object of the chunk: the frame's start for object o = the offset of its first block, and after the
// frame's last object, the frame's total.
extern "C" __global__ void object_starts(const GroupJob* __restrict__ jobs, const u32* __restrict__ object_job,
                                         const u32* __restrict__ offsets, u32* __restrict__ starts, u32 objects) {
    const u32 g = blockIdx.x * blockDim.x + threadIdx.x;
    if (g >= objects) return;
    const u32 f = object_job[g];
    const GroupJob j = jobs[f];
    const u32 o = g - j.first_object;
    const u32* __restrict__ frame_offsets = offsets + j.counts_at + f;
    starts[g + f] = frame_offsets[o * j.blocks];
    if (o + 1u == j.objects) starts[g + f + 1u] = frame_offsets[j.objects * j.blocks];
}

// Grid as count_members'. Frame f's grouped points go to [bases[f], bases[f] + its total) of the chunk's output.
extern "C" __global__ void write_members(const float* __restrict__ points, const u32* __restrict__ pixels,
                                         const u32* __restrict__ labels, const Region* __restrict__ regions,
                                         const GroupJob* __restrict__ jobs, const u32* __restrict__ object_job,
                                         const u32* __restrict__ offsets, const u32* __restrict__ bases,
                                         float* __restrict__ out_points, u32* __restrict__ out_pixels,
                                         u32 object_base) {
    const u32 g = object_base + blockIdx.y;
    const u32 f = object_job[g];
    const GroupJob j = jobs[f];
    if (blockIdx.x >= j.blocks) return;
    const u32 o = g - j.first_object;
    const u32 i = blockIdx.x * BLOCK + threadIdx.x;
    const Region r = regions[g];
    const u32 p = j.point_base + i;
    const bool inside = i < j.n_points && member(r, pixels[p], labels + j.labels_at, j.has_labels, j.width);
    u32 total;
    const u32 rank = block_rank(inside, &total);
    if (inside) {
        // 64-bit float indices: the chunk's output may hold more than 2^32 / 3 points.
        const u64 slot = u64(bases[f]) + offsets[j.counts_at + f + o * j.blocks + blockIdx.x] + rank - 1u;
        out_points[3u * slot] = points[3ull * p];
        out_points[3u * slot + 1u] = points[3ull * p + 1u];
        out_points[3u * slot + 2u] = points[3ull * p + 2u];
        out_pixels[slot] = pixels[p];
    }
}
