// The exact closest-surface gap of every pair of objects of every frame of a batch: the smallest distance between
// a point of one object and a point of the other. The CUDA twin of shaders/gaps.wgsl; the specification is
// src/geometry/relations.rs `closest_surface_matrix` (a two-level voxel index, best first, on the CPU), and this
// is `chunked_closest_distance2` there, the same algorithm run serially. No index is built: each object's points
// are put in a spatial order first, then taken in chunks of GAP_CHUNK (32) consecutive points, each chunk with its
// bounding box.
//   - order_count, scan_counts (scan.cuh), order_scatter: a counting sort of each object's points by the Morton
//     code of their cell in a grid over the object's bounding box (GapOrder, from the host; up to 64 cells a side,
//     at most four cells a point), into `ordered`, object after object. Points in one cell land in any order (the
//     scatter's atomics): the gap is a minimum, the same whatever the order. Chunks of points in pixel order are
//     strips across the object; chunks of nearby points have small boxes, so far fewer chunk pairs survive the box
//     test below and far fewer points are compared (30-50x fewer on the sample frames' objects: examples/gap_work.rs).
//   - run_boxes: one thread per chunk, its box; then one thread per super-chunk (GAP_SUPER = 8 consecutive chunks,
//     256 points), its box.
//   - pair_bounds, refine_bounds, search_pairs: the super-chunk pairs of every pair of objects in tiles of GAP_TILE
//     (2,048), one block per tile (so a pair of large objects spreads over many blocks), 8 super pairs a thread:
//       pair_bounds: an upper bound, the smallest distance between the first points of a super-chunk of A and a
//       super-chunk of B (atomicMin per pair);
//       refine_bounds: the super pairs whose boxes are nearer than that bound (a list per block, in shared memory)
//       lower it to the smallest distance between the first points of their chunks (64 chunk pairs each, the
//       block's threads over all of them);
//       search_pairs: the super pairs whose boxes are nearer than the refined bound, then their chunk pairs whose
//       boxes are too, are searched point by point, a point of A farther from B's chunk box than the best skipped
//       (atomicMin per pair).
//     A pruned super pair costs one box test instead of 64: on the sample frames' objects, 24x fewer box tests than
//     the one-level search, and as few points compared (examples/gap_work.rs).
// Squared distances throughout, summed as the CPU sums them (--fmad=false: every operation rounded as written).
// Float rounding is monotone, so a box's distance never exceeds the distance of any pair of points it bounds, and
// the pruning is exact: the result is the CPU reference's squared gap, bit for bit (the host takes the square
// root, as the CPU does). Needs common.cuh and scan.cuh (prepended by the host). Launch pair_bounds,
// refine_bounds and search_pairs with BLOCK threads, scan_counts with one block of 1,024 (or the tiled scan of scan.cuh).

#define GAP_CHUNK 32u
// Chunks per super-chunk (8 x 8 chunk pairs per super pair), and points.
#define GAP_SUPER 8u
#define GAP_SUPER_POINTS (GAP_CHUNK * GAP_SUPER)

// One object of the batch. Keep in sync with `GpuGapObject` in src/backend/layout.rs (16 bytes).
struct GapObject {
    u32 offset;        // its first point
    u32 count;         // its points (at least one)
    u32 chunk_offset;  // its first chunk
    u32 super_offset;  // its first super-chunk
};
static_assert(sizeof(GapObject) == 16, "GapObject must match GpuGapObject (16 bytes)");

// GapObject's words that number each kind of item: points, chunks, super-chunks.
#define FIRST_POINT 0u
#define FIRST_CHUNK 2u
#define FIRST_SUPER 3u

// The object holding item x of a kind (`first`: FIRST_POINT, FIRST_CHUNK or FIRST_SUPER): the last object whose
// first item of that kind is <= x (binary search; objects are never empty).
__device__ u32 object_holding(const GapObject* __restrict__ objects, u32 n_objects, u32 first, u32 x) {
    const u32* words = (const u32*)objects;
    u32 lo = 0, hi = n_objects;
    while (hi - lo > 1u) {
        const u32 mid = (lo + hi) / 2u;
        if (words[4u * mid + first] <= x) lo = mid; else hi = mid;
    }
    return lo;
}

// How one object's points are ordered. Keep in sync with `GpuGapOrder` in src/backend/layout.rs (32 bytes).
struct GapOrder {
    u32 source;      // its first point in the buffer the points are read from
    u32 buckets;     // its first bucket
    u32 bits;        // its grid has 2^bits cells a side (bits <= 6)
    float inv_cell;  // 1 / the side of a cell (0: every point in one cell)
    float lo[3];     // the grid's corner
    u32 pad;
};
static_assert(sizeof(GapOrder) == 32, "GapOrder must match GpuGapOrder (32 bytes)");

// The bits of v (below 1,024) spread three apart: one coordinate of a Morton code.
__device__ __forceinline__ u32 spread3(u32 v) {
    v = (v | (v << 16)) & 0x030000FFu;
    v = (v | (v << 8)) & 0x0300F00Fu;
    v = (v | (v << 4)) & 0x030C30C3u;
    return (v | (v << 2)) & 0x09249249u;
}

// Ordered point t's bucket and its place in `points`.
struct Placed {
    u32 bucket, source;
};

__device__ Placed place_point(const float* __restrict__ points, const GapObject* __restrict__ objects,
                              const GapOrder* __restrict__ orders, u32 n_objects, u32 t) {
    Placed r;
    const u32 object = object_holding(objects, n_objects, FIRST_POINT, t);
    const GapOrder o = orders[object];
    r.source = o.source + (t - objects[object].offset);
    const float top = (float)((1u << o.bits) - 1u);
    u32 cell[3];
    for (u32 k = 0; k < 3u; ++k) {
        // fmaxf first: a NaN (a point that is not finite, or inv_cell 0 times infinity) goes to cell 0.
        cell[k] = (u32)fminf(fmaxf((points[3u * r.source + k] - o.lo[k]) * o.inv_cell, 0.0f), top);
    }
    r.bucket = o.buckets + (spread3(cell[0]) | (spread3(cell[1]) << 1) | (spread3(cell[2]) << 2));
    return r;
}

// One thread per point: counts[bucket] = the points of each bucket (zeroed by the host).
extern "C" __global__ void order_count(const float* __restrict__ points, const GapObject* __restrict__ objects,
                                       const GapOrder* __restrict__ orders, u32 n_objects, u32 n_points,
                                       u32* __restrict__ counts) {
    const unsigned long long t = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n_points) return;
    atomicAdd(counts + place_point(points, objects, orders, n_objects, (u32)t).bucket, 1u);
}

// One thread per point: its x, y, z to `ordered`, within its bucket's range [start[b], start[b + 1]) (start: the
// exclusive prefix sums of the counts, which this counts down to 0). Buckets are numbered object after object, so
// each object's points land in its own range [offset, offset + count).
extern "C" __global__ void order_scatter(const float* __restrict__ points, const GapObject* __restrict__ objects,
                                         const GapOrder* __restrict__ orders, u32 n_objects, u32 n_points,
                                         const u32* __restrict__ start, u32* __restrict__ counts,
                                         float* __restrict__ ordered) {
    const unsigned long long t = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n_points) return;
    const Placed p = place_point(points, objects, orders, n_objects, (u32)t);
    const u32 at = start[p.bucket] + atomicSub(counts + p.bucket, 1u) - 1u;
    for (u32 k = 0; k < 3u; ++k) ordered[3u * at + k] = points[3u * p.source + k];
}

__device__ __forceinline__ float gap_dist2(const float* __restrict__ points, u32 p, u32 q) {
    const float d0 = points[3u * p] - points[3u * q];
    const float d1 = points[3u * p + 1u] - points[3u * q + 1u];
    const float d2 = points[3u * p + 2u] - points[3u * q + 2u];
    return d0 * d0 + d1 * d1 + d2 * d2;
}

// Squared distance from point p to box b (lo x, y, z, hi x, y, z), 0 inside; as `point_box_dist2` on the CPU.
__device__ __forceinline__ float point_box_dist2(const float* __restrict__ points, u32 p, const float* b) {
    float g[3];
    for (u32 k = 0; k < 3u; ++k) {
        const float v = points[3u * p + k];
        g[k] = fmaxf(fmaxf(b[k] - v, v - b[3u + k]), 0.0f);
    }
    return g[0] * g[0] + g[1] * g[1] + g[2] * g[2];
}

// Squared distance between boxes a and b, 0 when they overlap; as `box_dist2` on the CPU.
__device__ __forceinline__ float box_dist2(const float* a, const float* b) {
    float d = 0.0f;
    for (u32 k = 0; k < 3u; ++k) {
        const float gap = fmaxf(fmaxf(b[k] - a[3u + k], a[k] - b[3u + k]), 0.0f);
        d += gap * gap;
    }
    return d;
}

// The smallest of the block's values, for thread 0. The values are squared distances: never negative nor NaN, so
// their bits order as their values (the order atomicMin on best2_bits relies on too), and a min of the bits in any
// order is the exact min. One warp min each (`__reduce_min_sync` from sm_80 on, five shuffles before), one word per
// warp through shared memory, one barrier, then thread 0 takes the smallest of the BLOCK / 32 words.
__device__ __forceinline__ u32 block_min_bits(u32* __restrict__ warp_min, float v) {
    u32 bits = __float_as_uint(v);
#if __CUDA_ARCH__ >= 800
    bits = __reduce_min_sync(0xffffffffu, bits);
#else
    for (u32 o = 16; o > 0; o >>= 1) bits = min(bits, __shfl_down_sync(0xffffffffu, bits, o));
#endif
    if ((threadIdx.x & 31u) == 0) warp_min[threadIdx.x >> 5] = bits;
    __syncthreads();
    u32 r = warp_min[0];
    for (u32 w = 1; w < BLOCK / 32u; ++w) r = min(r, warp_min[w]);
    return r;
}

__device__ __forceinline__ u32 chunks_of(const GapObject& o) { return (o.count + GAP_CHUNK - 1u) / GAP_CHUNK; }

// One thread per run of a kind (`first`: FIRST_CHUNK or FIRST_SUPER, of `size` points: GAP_CHUNK or
// GAP_SUPER_POINTS): boxes[6r ..][.. 6] = lo x, y, z, hi x, y, z of run r's points, from its first point (a run is
// never empty), as in the WGSL twin. Launched once for the chunks, once for the super-chunks.
extern "C" __global__ void run_boxes(const float* __restrict__ points, const GapObject* __restrict__ objects,
                                     u32 n_objects, u32 first, u32 size, float* __restrict__ boxes, u32 n_runs) {
    const unsigned long long r64 = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (r64 >= n_runs) return;
    const u32 r = (u32)r64;
    const u32 i = object_holding(objects, n_objects, first, r);
    const GapObject o = objects[i];
    const u32 start = o.offset + (r - ((const u32*)objects)[4u * i + first]) * size;
    const u32 end = min(start + size, o.offset + o.count);
    float lo[3], hi[3];
    for (u32 k = 0; k < 3u; ++k) lo[k] = hi[k] = points[3u * start + k];
    for (u32 p = start + 1u; p < end; ++p) {
        for (u32 k = 0; k < 3u; ++k) {
            lo[k] = fminf(lo[k], points[3u * p + k]);
            hi[k] = fmaxf(hi[k], points[3u * p + k]);
        }
    }
    for (u32 k = 0; k < 3u; ++k) {
        boxes[6u * r + k] = lo[k];
        boxes[6u * r + 3u + k] = hi[k];
    }
}

// Super pairs per thread of a tile (GAP_TILE = BLOCK * GAP_PER_THREAD super pairs).
#define GAP_PER_THREAD 8u
#define GAP_TILE (BLOCK * GAP_PER_THREAD)

// Block w's tile: its pair k (the last pair whose tile_start <= w, by binary search), the pair's objects, their
// chunk and super-chunk counts, and the tile's first super pair: thread x's are base + r * BLOCK + x, r <
// GAP_PER_THREAD, each (i, j) = (sp / sb, sp % sb) of the pair when i < sa.
struct Tile {
    u32 k;
    GapObject a, b;
    u32 na, nb, sa, sb, base;
};

__device__ Tile tile_of(const GapObject* __restrict__ objects, const u32* __restrict__ pairs,
                        const u32* __restrict__ tile_start, u32 n_pairs, u32 w) {
    u32 lo = 0, hi = n_pairs;
    while (hi - lo > 1u) {
        const u32 mid = (lo + hi) / 2u;
        if (tile_start[mid] <= w) lo = mid; else hi = mid;
    }
    Tile t;
    t.k = lo;
    t.a = objects[pairs[2u * lo]];
    t.b = objects[pairs[2u * lo + 1u]];
    t.na = chunks_of(t.a);
    t.nb = chunks_of(t.b);
    t.sa = (t.na + GAP_SUPER - 1u) / GAP_SUPER;
    t.sb = (t.nb + GAP_SUPER - 1u) / GAP_SUPER;
    // The host keeps sa * sb within 2^31, so the last tile's indices stay within 32 bits.
    t.base = (w - tile_start[lo]) * GAP_TILE;
    return t;
}

// Pass 1, one block per tile (blockIdx.x), GAP_PER_THREAD super pairs per thread: best2_bits[pair] = min over its super pairs of
// the squared distance between the super-chunks' first points (an upper bound of the gap: a real distance).
// Squared distances are never negative, so their bits order as their values and atomicMin on the bits is a min on
// the values; best2_bits starts as +inf's bits (the host's copy); one atomicMin per block, after a block-wide min.
extern "C" __global__ void pair_bounds(const float* __restrict__ points, const GapObject* __restrict__ objects,
                                       const u32* __restrict__ pairs, const u32* __restrict__ tile_start,
                                       u32 n_pairs, u32* __restrict__ best2_bits) {
    const Tile t = tile_of(objects, pairs, tile_start, n_pairs, blockIdx.x);
    // From the first points' distance (a real one, so a thread without a super pair changes nothing).
    float u = gap_dist2(points, t.a.offset, t.b.offset);
    for (u32 r = 0; r < GAP_PER_THREAD; ++r) {
        const u32 sp = t.base + r * BLOCK + threadIdx.x;
        const u32 i = sp / t.sb, j = sp % t.sb;
        if (i < t.sa) u = fminf(u, gap_dist2(points, t.a.offset + i * GAP_SUPER_POINTS, t.b.offset + j * GAP_SUPER_POINTS));
    }
    // One atomic per block: same-address atomics serialise.
    __shared__ u32 warp_min[BLOCK / 32u];
    const u32 bits = block_min_bits(warp_min, u);
    if (threadIdx.x == 0) atomicMin(best2_bits + t.k, bits);
}

// The super pairs of the block's tile whose boxes are nearer than `best`, listed in `list` (each as its index
// i * sb + j in the pair), in any order; returns how many. Call from every thread (it has barriers).
__device__ u32 near_supers(const Tile& t, const float* __restrict__ supers, float best, u32* __restrict__ list,
                           u32* __restrict__ count) {
    if (threadIdx.x == 0) *count = 0u;
    __syncthreads();
    for (u32 r = 0; r < GAP_PER_THREAD; ++r) {
        const u32 sp = t.base + r * BLOCK + threadIdx.x;
        const u32 i = sp / t.sb, j = sp % t.sb;
        if (i < t.sa && box_dist2(supers + 6u * (t.a.super_offset + i), supers + 6u * (t.b.super_offset + j)) < best) {
            list[atomicAdd(count, 1u)] = sp;
        }
    }
    __syncthreads();
    return *count;
}

// A tile of pass 2 or 3: the tile, its pair's bound as the pass reads it (it only falls), and how many of its super
// pairs are listed in `list` (nearer than that bound). Call from every thread (it has barriers).
struct Listed {
    Tile t;
    float start;
    u32 n;
};

__device__ Listed listed_tile(const GapObject* __restrict__ objects, const float* __restrict__ supers,
                              const u32* __restrict__ pairs, const u32* __restrict__ tile_start, u32 n_pairs,
                              u32* best2_bits, u32* __restrict__ list, u32* __restrict__ count) {
    Listed l;
    l.t = tile_of(objects, pairs, tile_start, n_pairs, blockIdx.x);
    l.start = __uint_as_float(((volatile u32*)best2_bits)[l.t.k]);
    l.n = near_supers(l.t, supers, l.start, list, count);
    return l;
}

// Chunk pair c (of 64) of listed super pair e: its chunks (ci, cj) of A and B; false beyond either object's chunks.
__device__ __forceinline__ bool chunk_pair(const Tile& t, const u32* __restrict__ list, u32 e, u32 c, u32* ci,
                                           u32* cj) {
    const u32 sp = list[e];
    *ci = (sp / t.sb) * GAP_SUPER + c / GAP_SUPER;
    *cj = (sp % t.sb) * GAP_SUPER + c % GAP_SUPER;
    return *ci < t.na && *cj < t.nb;
}

// Pass 2, the same tiles: the super pairs whose boxes are nearer than the pair's bound (read once; it only falls)
// lower it to the smallest distance between the first points of their chunk pairs, the block's threads over all
// of their chunk pairs; one atomicMin per block.
extern "C" __global__ void refine_bounds(const float* __restrict__ points, const GapObject* __restrict__ objects,
                                         const float* __restrict__ supers, const u32* __restrict__ pairs,
                                         const u32* __restrict__ tile_start, u32 n_pairs,
                                         u32* __restrict__ best2_bits) {
    __shared__ u32 list[GAP_TILE];
    __shared__ u32 count;
    const Listed l = listed_tile(objects, supers, pairs, tile_start, n_pairs, best2_bits, list, &count);
    const Tile& t = l.t;
    const float start = l.start;
    const u32 n = l.n;
    float u = start;
    for (u32 w = threadIdx.x; w < n * GAP_SUPER * GAP_SUPER; w += BLOCK) {
        u32 ci, cj;
        if (chunk_pair(t, list, w / (GAP_SUPER * GAP_SUPER), w % (GAP_SUPER * GAP_SUPER), &ci, &cj)) {
            u = fminf(u, gap_dist2(points, t.a.offset + ci * GAP_CHUNK, t.b.offset + cj * GAP_CHUNK));
        }
    }
    __shared__ u32 warp_min[BLOCK / 32u];
    const u32 bits = block_min_bits(warp_min, u);
    if (threadIdx.x == 0 && __uint_as_float(bits) < start) atomicMin(best2_bits + t.k, bits);
}

// Pass 3, the same tiles: the super pairs whose boxes are nearer than the pair's best so far, then their chunk
// pairs whose boxes are too, are searched point by point, a point farther from the other chunk's box than the
// thread's best skipped; the block's best goes to best2_bits[pair] by one atomicMin. Every best used is a real
// distance, so no pair of points nearer than the gap is ever pruned: the result is the exact minimum.
extern "C" __global__ void search_pairs(const float* __restrict__ points, const GapObject* __restrict__ objects,
                                        const float* __restrict__ boxes, const float* __restrict__ supers,
                                        const u32* __restrict__ pairs, const u32* __restrict__ tile_start,
                                        u32 n_pairs, u32* __restrict__ best2_bits) {
    __shared__ u32 list[GAP_TILE];
    __shared__ u32 count;
    const Listed l = listed_tile(objects, supers, pairs, tile_start, n_pairs, best2_bits, list, &count);
    const Tile& t = l.t;
    const float start = l.start;
    const u32 n = l.n;
    float best = start;
    for (u32 w = threadIdx.x; w < n * GAP_SUPER * GAP_SUPER; w += BLOCK) {
        u32 ci, cj;
        if (!chunk_pair(t, list, w / (GAP_SUPER * GAP_SUPER), w % (GAP_SUPER * GAP_SUPER), &ci, &cj)) continue;
        const float* box_b = boxes + 6u * (t.b.chunk_offset + cj);
        if (box_dist2(boxes + 6u * (t.a.chunk_offset + ci), box_b) < best) {
            const u32 a_start = t.a.offset + ci * GAP_CHUNK;
            const u32 a_end = min(a_start + GAP_CHUNK, t.a.offset + t.a.count);
            const u32 b_start = t.b.offset + cj * GAP_CHUNK;
            const u32 b_end = min(b_start + GAP_CHUNK, t.b.offset + t.b.count);
            for (u32 p = a_start; p < a_end; ++p) {
                if (point_box_dist2(points, p, box_b) < best) {
                    for (u32 q = b_start; q < b_end; ++q) best = fminf(best, gap_dist2(points, p, q));
                }
            }
        }
    }
    __shared__ u32 warp_min[BLOCK / 32u];
    const u32 bits = block_min_bits(warp_min, best);
    if (threadIdx.x == 0 && __uint_as_float(bits) < start) atomicMin(best2_bits + t.k, bits);
}
