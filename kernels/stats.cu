// K4: per-object reductions for the statistics of src/geometry/stats.rs `summarize` (the CUDA twin of
// shaders/stats.wgsl), one block of BLOCK threads per object, every object of a batch in one launch:
//   - sums of the canonical coordinates relative to the object's first point (f32; fixed strides, then a fixed
//     tree, so the same bits on every run), combined in f64 with the first point on the host: the centroid, within
//     a tolerance of the CPU's f64 sum;
//   - the axis-aligned box (min / max: exact);
//   - the median camera depth: the (n/2)-th smallest value in `f32::total_cmp` order, found exactly by a 4-pass
//     radix select on order-preserving keys (block histograms of 256 bins);
//   - hull candidates of the horizontal footprint (Akl-Toussaint): every point that is not strictly inside the
//     16-gon of the extreme points in the 16 directions of src/geometry/obb.rs `POLYGON_DIRECTIONS` (`direction`),
//     by a margin that covers f32 rounding, so no hull vertex is ever dropped (about 3% of the points of the sample
//     frames' objects). Each object's candidates go to one compact list, at an offset claimed with one atomicAdd on
//     `candidate_total`, so the host reads back only the candidates. It builds the hull and the minimum-area
//     rectangle from them with the CPU reference's f64 code: the same hull, so the very same oriented box.
// Needs common.cuh, scan.cuh and reduce.cuh (prepended by the host). Launch with BLOCK (256) threads.

#define HULL_DIRECTIONS 16u

struct ObjectRange {
    u32 offset;
    u32 count;
};

// Keep in sync with `GpuObjectStats` in src/backend/layout.rs (64 bytes).
struct ObjectStats {
    float sum_x, sum_y, sum_z;
    u32 points;
    float lo_x, lo_y, lo_z;
    u32 median_bits;
    float hi_x, hi_y, hi_z;
    u32 candidates;
    u32 candidate_offset;
    u32 pad0, pad1, pad2;
};
static_assert(sizeof(ObjectStats) == 64, "ObjectStats must match GpuObjectStats (64 bytes)");

// Keep in sync with `GpuCanonical` in src/backend/layout.rs (96 bytes): canonical_from_camera (the rotation's rows,
// then the translation), f64.
struct Canonical {
    double r[9];
    double t[3];
};
static_assert(sizeof(Canonical) == 96, "Canonical must match GpuCanonical (96 bytes)");

// K4's input gathered on the device: object o's points are K1's grouped points index[offset .. offset + count], in
// the canonical frame of frames[o] and rounded to f32 as src/geometry/canonical.rs `apply_f32` does (f64, each dot
// product left to right, then the translation; no fused multiply-add), and their camera depths (bits). One block per
// object; `points` and `depth_bits` laid out as `summarize` reads them.
extern "C" __global__ void gather_canonical(const float* __restrict__ grouped, const u32* __restrict__ index,
                                            const ObjectRange* __restrict__ objects,
                                            const Canonical* __restrict__ frames, float* __restrict__ points,
                                            u32* __restrict__ depth_bits, u32 n_objects) {
    const u32 o = blockIdx.x;
    if (o >= n_objects) return;
    const u32 start = objects[o].offset;
    const u32 n = objects[o].count;
    const Canonical c = frames[o];
    for (u32 i = threadIdx.x; i < n; i += BLOCK) {
        const unsigned long long s = 3ull * index[start + i];
        const float fz = grouped[s + 2ull];
        const double x = (double)grouped[s], y = (double)grouped[s + 1ull], z = (double)fz;
        const unsigned long long d = 3ull * (start + i);
        points[d] = (float)(c.r[0] * x + c.r[1] * y + c.r[2] * z + c.t[0]);
        points[d + 1ull] = (float)(c.r[3] * x + c.r[4] * y + c.r[5] * z + c.t[1]);
        points[d + 2ull] = (float)(c.r[6] * x + c.r[7] * y + c.r[8] * z + c.t[2]);
        depth_bits[start + i] = __float_as_uint(fz);
    }
}

// The order of `f32::total_cmp` as unsigned keys, and back.
__device__ __forceinline__ u32 order_key(u32 bits) { return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u); }
__device__ __forceinline__ u32 key_bits(u32 key) { return (key & 0x80000000u) ? (key ^ 0x80000000u) : ~key; }

// The hull filter's direction d (0..16), counter-clockwise from -y: (0, -1), (1, -2), (1, -1), (2, -1), each turned
// by d / 4 quarter turns, as `POLYGON_DIRECTIONS` in src/geometry/obb.rs.
__device__ __forceinline__ void direction(u32 d, float* a, float* b) {
    const u32 k = d & 3u;
    const float a0 = (float)((k + 1u) >> 1), b0 = k == 1u ? -2.0f : -1.0f;
    switch (d >> 2) {
        case 0: *a = a0; *b = b0; break;
        case 1: *a = -b0; *b = a0; break;
        case 2: *a = -a0; *b = -b0; break;
        default: *a = b0; *b = -a0; break;
    }
}

// Twice the signed area of (o, a, p): positive when p is left of o -> a.
__device__ __forceinline__ float cross2(float ox, float oy, float ax, float ay, float x, float y) {
    return (ax - ox) * (y - oy) - (ay - oy) * (x - ox);
}

// `candidates`: room for every point of the batch; `candidate_total`: one word, zero before the launch (the
// candidates listed, in the end).
extern "C" __global__ void summarize(const float* __restrict__ points, const u32* __restrict__ depth_bits,
                                     const ObjectRange* __restrict__ objects, ObjectStats* __restrict__ stats,
                                     u32* __restrict__ candidates, u32* __restrict__ candidate_total, u32 n_objects) {
    __shared__ float red[BLOCK];
    __shared__ u32 red_u[BLOCK];
    __shared__ u32 hist[256];
    __shared__ u32 sel_prefix, sel_k, written, listed_at, edges;
    __shared__ float poly_x[HULL_DIRECTIONS], poly_y[HULL_DIRECTIONS];
    const u32 o = blockIdx.x;
    if (o >= n_objects) return;  // uniform per block
    const u32 start = objects[o].offset;
    const u32 n = objects[o].count;
    if (n == 0u) return;
    const float* __restrict__ p = points + 3u * start;

    // Sums (relative to the first point), box, and for the hull filter below each thread's extreme point in each
    // direction (its lowest index on ties), in one pass over the points (a pass a direction read them 16 more
    // times).
    const float rx = p[0], ry = p[1], rz = p[2];
    float sx = 0.0f, sy = 0.0f, sz = 0.0f;
    float lx = 3.4e38f, ly = 3.4e38f, lz = 3.4e38f;
    float hx = -3.4e38f, hy = -3.4e38f, hz = -3.4e38f;
    float best[HULL_DIRECTIONS];
    u32 best_i[HULL_DIRECTIONS];
#pragma unroll
    for (u32 d = 0; d < HULL_DIRECTIONS; ++d) {
        best[d] = 3.4e38f;
        best_i[d] = 0xffffffffu;
    }
    for (u32 i = threadIdx.x; i < n; i += BLOCK) {
        const float x = p[3u * i], y = p[3u * i + 1u], z = p[3u * i + 2u];
        sx = sx + (x - rx);
        sy = sy + (y - ry);
        sz = sz + (z - rz);
        lx = fminf(lx, x);
        ly = fminf(ly, y);
        lz = fminf(lz, z);
        hx = fmaxf(hx, x);
        hy = fmaxf(hy, y);
        hz = fmaxf(hz, z);
#pragma unroll
        for (u32 d = 0; d < HULL_DIRECTIONS; ++d) {
            float a, b;
            direction(d, &a, &b);
            const float key = -(a * x + b * y);
            if (key < best[d]) {
                best[d] = key;
                best_i[d] = i;
            }
        }
    }
    const float sum_x = reduce_sum(red, sx), sum_y = reduce_sum(red, sy), sum_z = reduce_sum(red, sz);
    const float lo_x = reduce_min(red, lx), lo_y = reduce_min(red, ly), lo_z = reduce_min(red, lz);
    const float hi_x = -reduce_min(red, -hx), hi_y = -reduce_min(red, -hy), hi_z = -reduce_min(red, -hz);

    // Median depth: radix select of the (n/2)-th smallest key, 8 bits per pass from the top.
    if (threadIdx.x == 0) {
        sel_prefix = 0;
        sel_k = n / 2u;
    }
    for (u32 round = 0; round < 4u; ++round) {
        const u32 shift = 24u - 8u * round;
        hist[threadIdx.x] = 0;
        __syncthreads();
        const u32 prefix = sel_prefix;
        const u32 mask = round > 0 ? (0xffffffffu << (shift + 8u)) : 0u;
        for (u32 i = threadIdx.x; i < n; i += BLOCK) {
            const u32 key = order_key(depth_bits[start + i]);
            if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            const u32 k = sel_k;
            u32 cum = 0;
            for (u32 b = 0; b < 256u; ++b) {
                const u32 c = hist[b];
                if (k < cum + c) {
                    sel_prefix = prefix | (b << shift);
                    sel_k = k - cum;
                    break;
                }
                cum += c;
            }
        }
        __syncthreads();
    }
    const u32 median_key = sel_prefix;

    // Hull candidates: the extreme point in each direction (lowest index on ties: the threads' extremes from the
    // first pass, reduced), the polygon of those points with repeats dropped, then the conservative filter: a point
    // is dropped when it is left of every edge by the margin. (Any closed chain of the points would do: a point left
    // of each of its edges is inside their hull.) Unrolled, so that `best` and `best_i` stay in registers.
#pragma unroll
    for (u32 d = 0; d < HULL_DIRECTIONS; ++d) {
        const u32 q = reduce_argmin(red, red_u, best[d], best_i[d]);
        const u32 at = q < n ? q : 0u;  // no finite key (not from real points): any point will do
        if (threadIdx.x == 0) { poly_x[d] = p[3u * at]; poly_y[d] = p[3u * at + 1u]; }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        u32 m = 0;
        for (u32 d = 0; d < HULL_DIRECTIONS; ++d) {
            const float x = poly_x[d], y = poly_y[d];
            if (m == 0u || x != poly_x[m - 1u] || y != poly_y[m - 1u]) { poly_x[m] = x; poly_y[m] = y; ++m; }
        }
        while (m > 1u && poly_x[0] == poly_x[m - 1u] && poly_y[0] == poly_y[m - 1u]) --m;
        edges = m < 3u ? 0u : m;  // fewer than 3 distinct points: no filter
        written = 0;
    }
    __syncthreads();
    const u32 m = edges;
    // f32 rounding of each cross product is below 1e-6 (span_x + span_y)^2: a point dropped by this margin is
    // strictly inside the polygon (and so the hull) in exact arithmetic too.
    const float span = (hi_x - lo_x) + (hi_y - lo_y);
    const float margin = 4e-6f * span * span;
    // Twice: count the candidates and claim their place in the list, then write them there in point order.
    for (u32 pass = 0; pass < 2u; ++pass) {
        if (pass == 1u) {
            if (threadIdx.x == 0) {
                listed_at = atomicAdd(candidate_total, written);
                written = 0;
            }
            __syncthreads();
        }
        const u32 at = pass == 1u ? listed_at : 0u;
        for (u32 base = 0; base < n; base += BLOCK) {
            const u32 i = base + threadIdx.x;
            bool keep = false;
            if (i < n) {
                const float x = p[3u * i], y = p[3u * i + 1u];
                bool inside = m > 0u;
                for (u32 e = 0; e < m; ++e) {
                    const u32 f = e + 1u == m ? 0u : e + 1u;
                    if (!(cross2(poly_x[e], poly_y[e], poly_x[f], poly_y[f], x, y) > margin)) inside = false;
                }
                keep = !inside;
            }
            const u32 before = written;
            u32 total;
            const u32 rank = block_rank(keep, &total);
            if (pass == 1u && keep) candidates[at + before + rank - 1u] = i;
            if (threadIdx.x == 0) written = before + total;
            __syncthreads();
        }
    }

    if (threadIdx.x == 0) {
        stats[o] = ObjectStats{sum_x, sum_y, sum_z, n, lo_x, lo_y, lo_z, key_bits(median_key), hi_x, hi_y, hi_z,
                               written, listed_at, 0u, 0u, 0u};
    }
}
