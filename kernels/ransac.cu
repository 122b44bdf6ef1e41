// K2: the ground-plane RANSAC of src/geometry/ransac.rs on the device (the CUDA twin of shaders/ransac.wgsl), from
// the frame's cloud on the device:
//   gather_samples  the strided scoring subsample (its indices come from the host: 64-bit index arithmetic);
//   draw            the three points of every hypothesis, by the counter-based RNG of rng.cuh: the same indices as
//                   the CPU reference. The host builds each plane from the three points in f64 (`plane_through`,
//                   shared with the CPU), so every backend tests the very same planes;
//   score           per hypothesis, the subsample points within the inlier band (and, with normals, whose normal
//                   agrees with the plane's). A block takes HYPS_PER_BLOCK hypotheses and one slice of the
//                   subsample, so each point read serves several planes; slices add their counts with integer
//                   atomics (exact whatever the order);
//   sample_supports the refinement's support among the subsample (a bit a point), for one plane a frame;
//   count_inliers   the final inlier count over all points, for one plane a frame.
// Every kernel but gather_samples takes every frame of a batch in one launch: a row (or, for score, a layer) of
// blocks per frame or request, each reading its frame from a table (RansacJob, SupportJob); a block past its
// frame's work returns at once (the whole block: no barrier is left waiting).
// The winner (highest score, lowest index on ties), the connected-support test and the 3x3 eigen-solve of the
// refinement run on the host, the same code for every backend (`fit_from_scores_on`).
// Needs common.cuh and rng.cuh (prepended by the host).

#define HYPS_PER_BLOCK 8

// Keep in sync with `GpuHypothesis` in src/backend/gpu.rs (32 bytes).
struct Hypothesis {
    float a, b, c, d;
    // 0: inadmissible (scores 0).
    u32 admissible;
    u32 pad0, pad1, pad2;
};
static_assert(sizeof(Hypothesis) == 32, "Hypothesis must match GpuHypothesis (32 bytes)");

// One plane's support test. Keep in sync with `GpuSupport` in src/backend/gpu.rs (32 bytes) and `Support` in
// src/geometry/ransac.rs.
struct SupportTest {
    float a, b, c, d;
    float threshold;
    float min_cos;
    u32 use_normals;
    u32 pad;
};
static_assert(sizeof(SupportTest) == 32, "SupportTest must match GpuSupport (32 bytes)");

// One frame of a K2 batch (keep in sync with `RansacJob` in src/backend/cuda.rs, 64 bytes): its points are
// cloud[point_base, point_base + n_points), its hypotheses the batch's [hyp_base, hyp_base + hypotheses) (drawn by
// seed and frame_key), its subsample samples[sample_base, sample_base + n_samples) with one normal each, scored in
// `slices` slices of per_slice points with the inlier band `threshold` and, when use_normals is 1, min_cos.
struct RansacJob {
    u32 point_base, n_points, hyp_base, hypotheses;
    u32 sample_base, n_samples, slices, per_slice;
    u32 seed, frame_key;
    float threshold, min_cos;
    u32 use_normals, pad0, pad1, pad2;
};
static_assert(sizeof(RansacJob) == 64, "RansacJob must match the host's (64 bytes)");

// One support test over a run of points (keep in sync with `SupportJob` in src/backend/cuda.rs, 48 bytes): points
// [base, base + n) of the launch's buffer, its answer at out_at (a bit mask of ceil(n / 32) words from there, or one
// count).
struct SupportJob {
    SupportTest test;
    u32 base, n, out_at, pad;
};
static_assert(sizeof(SupportJob) == 48, "SupportJob must match the host's (48 bytes)");

// The same expression, in the same order, as `Support::test` on the CPU (no fused multiply-add: --fmad=false).
__device__ __forceinline__ bool supports(float a, float b, float c, float d, float threshold, float x, float y,
                                         float z) {
    return !(fabsf(a * x + b * y + c * z + d) > threshold);
}

__device__ __forceinline__ bool normal_agrees(float a, float b, float c, float min_cos,
                                              const float* __restrict__ normals, u64 i) {
    return fabsf(a * normals[3u * i] + b * normals[3u * i + 1u] + c * normals[3u * i + 2u]) >= min_cos;
}

extern "C" __global__ void gather_samples(const float* __restrict__ cloud, const u32* __restrict__ sample_index,
                                          float* __restrict__ samples, u32 n_samples) {
    const u32 s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= n_samples) return;
    const u64 i = sample_index[s];
    samples[3ull * s] = cloud[3u * i];
    samples[3ull * s + 1u] = cloud[3u * i + 1u];
    samples[3ull * s + 2u] = cloud[3u * i + 2u];
}

// Grid (blocks of the widest frame's hypotheses, frames): frame job_base + blockIdx.y. A hypothesis' three indices
// are within its frame (triples), its corners the points.
extern "C" __global__ void draw(const float* __restrict__ cloud, const RansacJob* __restrict__ jobs,
                                u32* __restrict__ triples, float* __restrict__ corners, u32 job_base) {
    const RansacJob j = jobs[job_base + blockIdx.y];
    const u32 h = blockIdx.x * blockDim.x + threadIdx.x;
    if (h >= j.hypotheses || j.n_points < 3u) return;
    const u64 t = u64(j.hyp_base) + h;
    for (u32 d = 0; d < 3u; ++d) {
        const u32 i = draw_index(j.seed, j.frame_key, h, d, j.n_points);
        const u64 p = u64(j.point_base) + i;
        triples[3u * t + d] = i;
        corners[9u * t + 3u * d] = cloud[3u * p];
        corners[9u * t + 3u * d + 1u] = cloud[3u * p + 1u];
        corners[9u * t + 3u * d + 2u] = cloud[3u * p + 2u];
    }
}

// Grid (ceil(widest frame's hypotheses / HYPS_PER_BLOCK), most slices of a frame, frames): frame job_base +
// blockIdx.z; `scores` (laid out as the hypotheses) zeroed by the host. Slice y covers the frame's subsample points
// [y * per_slice, (y + 1) * per_slice).
extern "C" __global__ void score(const Hypothesis* __restrict__ all_hypotheses, const float* __restrict__ all_samples,
                                 const float* __restrict__ all_normals, const RansacJob* __restrict__ jobs,
                                 u32* __restrict__ all_scores, u32 job_base) {
    __shared__ u32 block_counts[HYPS_PER_BLOCK];
    const RansacJob j = jobs[job_base + blockIdx.z];
    const u32 h0 = blockIdx.x * HYPS_PER_BLOCK;
    if (h0 >= j.hypotheses || blockIdx.y >= j.slices) return;
    const Hypothesis* __restrict__ hypotheses = all_hypotheses + j.hyp_base;
    const float* __restrict__ samples = all_samples + 3ull * j.sample_base;
    const float* __restrict__ normals = all_normals + 3ull * j.sample_base;
    u32* __restrict__ scores = all_scores + j.hyp_base;
    const u32 n_samples = j.n_samples, use_normals = j.use_normals;
    const float threshold = j.threshold, min_cos = j.min_cos;
    float pa[HYPS_PER_BLOCK], pb[HYPS_PER_BLOCK], pc[HYPS_PER_BLOCK], pd[HYPS_PER_BLOCK];
    bool live[HYPS_PER_BLOCK];
    // Each thread's counts, as floats: whole numbers, exact, since a thread takes at most ceil(per_slice / BLOCK)
    // <= 2^24 points. An integer count took three instructions a hypothesis and point in the loop below (an add, a
    // predicated move back and a copy, sm_90 ptxas 13.0), a float one takes one predicated add: 85 instructions a
    // point and 8 hypotheses instead of 101 (scripts/kernel-sass.sh OUT ransac.cu score).
    float count[HYPS_PER_BLOCK];
#pragma unroll
    for (u32 k = 0; k < HYPS_PER_BLOCK; ++k) {
        const u32 h = h0 + k;
        live[k] = h < j.hypotheses && hypotheses[h].admissible == 1u;
        const Hypothesis hy = live[k] ? hypotheses[h] : Hypothesis{};
        pa[k] = hy.a;
        pb[k] = hy.b;
        pc[k] = hy.c;
        pd[k] = hy.d;
        count[k] = 0.0f;
    }
    if (threadIdx.x < HYPS_PER_BLOCK) block_counts[threadIdx.x] = 0;
    __syncthreads();
    const u32 start = min(blockIdx.y * j.per_slice, n_samples);
    const u32 end = min(start + j.per_slice, n_samples);
    for (u32 i = start + threadIdx.x; i < end; i += blockDim.x) {
        const float x = samples[3u * i], y = samples[3u * i + 1u], z = samples[3u * i + 2u];
        float nx = 0.0f, ny = 0.0f, nz = 0.0f;
        if (use_normals == 1u) {
            nx = normals[3u * i];
            ny = normals[3u * i + 1u];
            nz = normals[3u * i + 2u];
        }
#pragma unroll
        for (u32 k = 0; k < HYPS_PER_BLOCK; ++k) {
            bool ok = supports(pa[k], pb[k], pc[k], pd[k], threshold, x, y, z);
            if (use_normals == 1u) ok = ok && fabsf(pa[k] * nx + pb[k] * ny + pc[k] * nz) >= min_cos;
            if (ok) count[k] += 1.0f;
        }
    }
    // Warp sums (common.cuh's warp_sum), then one shared atomic per warp and hypothesis, then one global atomic per
    // block and hypothesis.
#pragma unroll
    for (u32 k = 0; k < HYPS_PER_BLOCK; ++k) {
        const u32 c = warp_sum((u32)count[k]);
        if ((threadIdx.x & 31u) == 0 && c > 0) atomicAdd(&block_counts[k], c);
    }
    __syncthreads();
    if (threadIdx.x < HYPS_PER_BLOCK && live[threadIdx.x] && block_counts[threadIdx.x] > 0) {
        atomicAdd(&scores[h0 + threadIdx.x], block_counts[threadIdx.x]);
    }
}

// Grid (blocks of the longest request, requests): request request_base + blockIdx.y tests the subsample's points
// [base, base + n) (and their normals) against its plane: a bit each, point k of the request at bit k % 32 of
// mask[out_at + k / 32] (a warp's ballot; the bits past n are 0).
extern "C" __global__ void sample_supports(const float* __restrict__ samples, const float* __restrict__ normals,
                                           const SupportJob* __restrict__ requests, u32* __restrict__ mask,
                                           u32 request_base) {
    const SupportJob r = requests[request_base + blockIdx.y];
    if (blockIdx.x * blockDim.x >= r.n) return;
    const SupportTest test = r.test;
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    bool ok = false;
    if (i < r.n) {
        const u64 s = u64(r.base) + i;
        ok = supports(test.a, test.b, test.c, test.d, test.threshold, samples[3u * s], samples[3u * s + 1u],
                      samples[3u * s + 2u]);
        if (ok && test.use_normals == 1u) ok = normal_agrees(test.a, test.b, test.c, test.min_cos, normals, s);
    }
    // Every lane of the warp takes part (BLOCK is a multiple of 32, so a warp's lanes are 32 consecutive points).
    const u32 bits = __ballot_sync(0xffffffffu, ok);
    if ((threadIdx.x & 31u) == 0u && i < r.n) mask[u64(r.out_at) + i / 32u] = bits;
}

// Grid as sample_supports': request request_base + blockIdx.y counts the cloud's points [base, base + n) within its
// plane's band into counts[out_at] (zeroed by the host; integer atomics: the sum is exact whatever the schedule).
extern "C" __global__ void count_inliers(const float* __restrict__ cloud, const SupportJob* __restrict__ requests,
                                         u32* __restrict__ counts, u32 request_base) {
    const SupportJob r = requests[request_base + blockIdx.y];
    if (blockIdx.x * blockDim.x >= r.n) return;
    const SupportTest test = r.test;
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    const u64 p = u64(r.base) + i;
    const bool in = i < r.n && supports(test.a, test.b, test.c, test.d, test.threshold, cloud[3u * p],
                                        cloud[3u * p + 1u], cloud[3u * p + 2u]);
    const u32 n = __syncthreads_count(in);
    if (threadIdx.x == 0 && n > 0) atomicAdd(&counts[r.out_at], n);
}
