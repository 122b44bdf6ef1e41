// K1, per object: the points of the whole-frame cloud (row-major, from unproject.cu) whose pixel lies in each
// object's region, object after object, row-major within each object. The CUDA twin of `unproject_objects` in
// src/geometry/unproject.rs (and shaders/group.wgsl). Stable order without atomics: per (object, block of BLOCK
// points) counts, one exclusive prefix sum over objects then blocks (`scan_counts`, scan.cuh), and a block-local
// scan to place each point. Needs common.cuh and scan.cuh (prepended by the host).

// Keep in sync with `GpuRegion` in src/backend/gpu.rs (32 bytes).
struct Region {
    // 0: instance (pixels whose label equals `id`, never 0); 1: box [x0, x1) x [y0, y1).
    u32 kind;
    u32 id;
    u32 x0, y0, x1, y1;
    u32 pad0, pad1;
};
static_assert(sizeof(Region) == 32, "Region must match GpuRegion (32 bytes)");

__device__ __forceinline__ bool member(const Region& r, u32 pixel, const u32* __restrict__ labels, u32 has_labels,
                                       u32 width) {
    if (r.kind == 0u) return has_labels == 1u && r.id != 0u && labels[pixel] == r.id;
    const u32 u = pixel % width;
    const u32 v = pixel / width;
    return u >= r.x0 && u < r.x1 && v >= r.y0 && v < r.y1;
}

// Grid (blocks of points, objects).
extern "C" __global__ void count_members(const u32* __restrict__ pixels, const u32* __restrict__ labels,
                                         const Region* __restrict__ regions, u32* __restrict__ counts, u32 points,
                                         u32 blocks, u32 width, u32 has_labels) {
    const u32 o = blockIdx.y;
    const u32 i = blockIdx.x * BLOCK + threadIdx.x;
    const Region r = regions[o];
    const bool inside = i < points && member(r, pixels[i], labels, has_labels, width);
    const u32 count = __syncthreads_count(inside);
    if (threadIdx.x == 0) counts[o * blocks + blockIdx.x] = count;
}

// object_offsets[o] = where object o's points start (offsets of its first block), then the total.
extern "C" __global__ void object_starts(const u32* __restrict__ offsets, u32* __restrict__ object_offsets,
                                         u32 objects, u32 blocks) {
    const u32 o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o <= objects) object_offsets[o] = offsets[o * blocks];
}

extern "C" __global__ void write_members(const float* __restrict__ points, const u32* __restrict__ pixels,
                                         const u32* __restrict__ labels, const Region* __restrict__ regions,
                                         const u32* __restrict__ offsets, float* __restrict__ out_points,
                                         u32* __restrict__ out_pixels, u32 n_points, u32 blocks, u32 width,
                                         u32 has_labels) {
    const u32 o = blockIdx.y;
    const u32 i = blockIdx.x * BLOCK + threadIdx.x;
    const Region r = regions[o];
    const bool inside = i < n_points && member(r, pixels[i], labels, has_labels, width);
    u32 total;
    const u32 rank = block_rank(inside, &total);
    if (inside) {
        const u32 slot = offsets[o * blocks + blockIdx.x] + rank - 1u;
        out_points[3u * slot] = points[3u * i];
        out_points[3u * slot + 1u] = points[3u * i + 1u];
        out_points[3u * slot + 2u] = points[3u * i + 2u];
        out_pixels[slot] = pixels[i];
    }
}
