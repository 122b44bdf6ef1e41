// K5: relations for every ordered pair (a, b), a != b, of every frame of a batch, a-major within each frame. The
// CUDA twin of src/geometry/relations.rs `relate` (and shaders/relations.wgsl); keep the record layouts in sync with
// `ObjectSummary` (96 bytes) and `RelationRecord` (80 bytes) there. Each frame's records start at its pair offset,
// the exclusive prefix sum of n (n - 1) over the frames before it (computed on the host): records are compact and
// their order is fixed. `gap_m` is not computed here (the host fills it from the exact closest-surface search); it
// is written as NaN, like the CPU's `relate`. Needs common.cuh (prepended by the host).

struct ObjectSummary {
    float centroid[3];
    float sigma_m;
    float aabb_min[3];
    float yaw_rad;
    float aabb_max[3];
    float volume_m3;
    float obb_center[3];
    float distance_to_camera_m;
    float size[3];
    float median_depth_m;
    u32 points;
    u32 pad0, pad1, pad2;
};
static_assert(sizeof(ObjectSummary) == 96, "ObjectSummary must match src/geometry/stats.rs (96 bytes)");

struct RelationRecord {
    u32 a, b, clock_hour, pad;
    float left_m, left_gap_m, above_m, above_gap_m, front_m, front_gap_m, taller_m, wider_m, bigger_log_ratio;
    float distance_m, horizontal_distance_m, vertical_distance_m, gap_m, bearing_deg, clock_margin_deg, sigma_m;
};
static_assert(sizeof(RelationRecord) == 80, "RelationRecord must match src/geometry/relations.rs (80 bytes)");

// One frame of the batch. Keep in sync with `FrameRange` in src/backend/gpu.rs (16 bytes).
struct FrameRange {
    u32 object_offset;
    u32 object_count;
    u32 pair_offset;
    u32 pad;
};
static_assert(sizeof(FrameRange) == 16, "FrameRange must match src/backend/gpu.rs (16 bytes)");

#define MIN_VOLUME_M3 1e-9f
// f32 of 180 / pi, as Rust's f32::to_degrees.
#define DEGREES_PER_RADIAN 57.2957795130823208767981548141051703f

__device__ __forceinline__ float ln_volume(float v) { return logf(fmaxf(v, MIN_VOLUME_M3)); }

// What K5 reads of an ObjectSummary: four of its six 16-byte words (words 0, 1, 2 and 4 of the struct above:
// centroid and sigma_m, aabb_min, aabb_max and volume_m3, size). A warp's threads read consecutive objects b, 96
// bytes apart, so each load instruction for b touches some 24 cache lines whatever its width: the compiler keeps of
// each word the lanes used, and b's 10 fields take 5 loads instead of 10, about half the L1 wavefronts.
#define SUMMARY_WORDS 6u
static_assert(sizeof(ObjectSummary) == SUMMARY_WORDS * 16u, "an ObjectSummary is six 16-byte words");
struct Summary {
    float centroid[3], sigma_m, aabb_min[3], aabb_max[3], volume_m3, size[3];
};
// A word's first three lanes as floats into xyz; its fourth as a float.
__device__ __forceinline__ float unpack_word(uint4 w, float* xyz) {
    xyz[0] = __uint_as_float(w.x);
    xyz[1] = __uint_as_float(w.y);
    xyz[2] = __uint_as_float(w.z);
    return __uint_as_float(w.w);
}
__device__ __forceinline__ Summary load_summary(const uint4* __restrict__ objects, u32 index) {
    const uint4* __restrict__ o = objects + (u64)SUMMARY_WORDS * index;
    Summary s;
    s.sigma_m = unpack_word(o[0], s.centroid);
    unpack_word(o[1], s.aabb_min);
    s.volume_m3 = unpack_word(o[2], s.aabb_max);
    unpack_word(o[4], s.size);
    return s;
}

// Record k of the batch (k < pairs): pair k's frame by binary search, then its relations.
__device__ __forceinline__ RelationRecord relation_of(const uint4* __restrict__ objects,
                                                      const FrameRange* __restrict__ frames, u32 n_frames, u32 k) {
    // The frame holding pair k: the last frame whose pair_offset <= k (binary search).
    u32 lo = 0, hi = n_frames;
    while (hi - lo > 1u) {
        const u32 mid = (lo + hi) / 2u;
        if (frames[mid].pair_offset <= k) lo = mid; else hi = mid;
    }
    const FrameRange f = frames[lo];
    const u32 local = k - f.pair_offset;
    const u32 n = f.object_count;
    const u32 i = local / (n - 1u);
    const u32 jj = local % (n - 1u);
    const u32 j = jj >= i ? jj + 1u : jj;
    const Summary a = load_summary(objects, f.object_offset + i);
    const Summary b = load_summary(objects, f.object_offset + j);

    const float d0 = b.centroid[0] - a.centroid[0];
    const float d1 = b.centroid[1] - a.centroid[1];
    const float d2 = b.centroid[2] - a.centroid[2];
    const float h2 = d0 * d0 + d1 * d1;
    float bearing = atan2f(d0, d1) * DEGREES_PER_RADIAN;
    if (bearing <= -180.0f) bearing += 360.0f;
    // roundf: halves away from zero, as Rust's f32::round.
    const float hour_f = roundf(bearing / 30.0f);
    const float clock_margin = 15.0f - fabsf(bearing - 30.0f * hour_f);
    const int hour = (((int)hour_f % 12) + 12) % 12;

    RelationRecord r;
    r.a = i;
    r.b = j;
    r.clock_hour = hour == 0 ? 12u : (u32)hour;
    r.pad = 0;
    r.left_m = d0;
    r.left_gap_m = b.aabb_min[0] - a.aabb_max[0];
    r.above_m = a.centroid[2] - b.centroid[2];
    r.above_gap_m = a.aabb_min[2] - b.aabb_max[2];
    r.front_m = d1;
    r.front_gap_m = b.aabb_min[1] - a.aabb_max[1];
    r.taller_m = a.size[2] - b.size[2];
    r.wider_m = a.size[0] - b.size[0];
    r.bigger_log_ratio = ln_volume(a.volume_m3) - ln_volume(b.volume_m3);
    r.distance_m = sqrtf(h2 + d2 * d2);
    r.horizontal_distance_m = sqrtf(h2);
    r.vertical_distance_m = fabsf(d2);
    r.gap_m = __uint_as_float(0x7fc00000u);
    r.bearing_deg = bearing;
    r.clock_margin_deg = clock_margin;
    r.sigma_m = sqrtf(a.sigma_m * a.sigma_m + b.sigma_m * b.sigma_m);
    return r;
}

// A record's 80 bytes as RECORD_WORDS 16-byte words, in RelationRecord's field order (its layout, written out).
#define RECORD_WORDS 5u
static_assert(sizeof(RelationRecord) == RECORD_WORDS * 16u, "a RelationRecord is five 16-byte words");
__device__ __forceinline__ void store_record(uint4* at, const RelationRecord& r) {
    at[0] = make_uint4(r.a, r.b, r.clock_hour, r.pad);
    at[1] = make_uint4(__float_as_uint(r.left_m), __float_as_uint(r.left_gap_m), __float_as_uint(r.above_m),
                       __float_as_uint(r.above_gap_m));
    at[2] = make_uint4(__float_as_uint(r.front_m), __float_as_uint(r.front_gap_m), __float_as_uint(r.taller_m),
                       __float_as_uint(r.wider_m));
    at[3] = make_uint4(__float_as_uint(r.bigger_log_ratio), __float_as_uint(r.distance_m),
                       __float_as_uint(r.horizontal_distance_m), __float_as_uint(r.vertical_distance_m));
    at[4] = make_uint4(__float_as_uint(r.gap_m), __float_as_uint(r.bearing_deg), __float_as_uint(r.clock_margin_deg),
                       __float_as_uint(r.sigma_m));
}

// One thread per pair, BLOCK threads a block; pairs k of the batch, k < pairs (at most 2^25 a launch: MAX_PAIRS in
// src/backend/cuda.rs). `objects` is the summaries as 16-byte words (SUMMARY_WORDS a summary), `out` the records
// (RECORD_WORDS a record); both buffers start 16-byte aligned (device allocations), and so does every record and
// summary. A thread's record would go out as 80-byte strided stores (each of a
// warp's 20 stores of 4 bytes touching 32 sectors of 32 bytes, 8 times the sectors the warp's 2,560 bytes fill), so
// the block's records are staged in shared memory (20,480 bytes: a 16-byte store at a stride of 80 bytes touches
// every bank once a quarter warp) and written out by consecutive threads, 16 bytes each: every sector written whole.
extern "C" __global__ void relate(const uint4* __restrict__ objects, const FrameRange* __restrict__ frames,
                                  uint4* __restrict__ out, u32 n_frames, u32 pairs) {
    __shared__ uint4 staged[BLOCK * RECORD_WORDS];
    const u64 first = (u64)blockIdx.x * BLOCK;
    if (first >= pairs) return;  // the whole block (only where pairs == 0: the host launches at least one block)
    const u64 left = (u64)pairs - first;
    const u32 live = left < BLOCK ? (u32)left : BLOCK;
    if (threadIdx.x < live) {
        const u32 k = (u32)first + threadIdx.x;
        store_record(staged + RECORD_WORDS * threadIdx.x, relation_of(objects, frames, n_frames, k));
    }
    __syncthreads();
    uint4* block_out = out + first * RECORD_WORDS;
    for (u32 w = threadIdx.x; w < live * RECORD_WORDS; w += BLOCK) block_out[w] = staged[w];
}
