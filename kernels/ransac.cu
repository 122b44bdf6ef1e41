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
//   sample_supports the refinement's support among the subsample (a 0/1 mask), for one plane;
//   count_inliers   the final inlier count over all points, for one plane.
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

// The same expression, in the same order, as `Support::test` on the CPU (no fused multiply-add: --fmad=false).
__device__ __forceinline__ bool supports(float a, float b, float c, float d, float threshold, float x, float y,
                                         float z) {
    return !(fabsf(a * x + b * y + c * z + d) > threshold);
}

__device__ __forceinline__ bool normal_agrees(float a, float b, float c, float min_cos,
                                              const float* __restrict__ normals, u32 i) {
    return fabsf(a * normals[3u * i] + b * normals[3u * i + 1u] + c * normals[3u * i + 2u]) >= min_cos;
}

extern "C" __global__ void gather_samples(const float* __restrict__ cloud, const u32* __restrict__ sample_index,
                                          float* __restrict__ samples, u32 n_samples) {
    const u32 s = blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= n_samples) return;
    const u32 i = sample_index[s];
    samples[3u * s] = cloud[3u * i];
    samples[3u * s + 1u] = cloud[3u * i + 1u];
    samples[3u * s + 2u] = cloud[3u * i + 2u];
}

extern "C" __global__ void draw(const float* __restrict__ cloud, u32* __restrict__ triples,
                                float* __restrict__ corners, u32 hypotheses, u32 points, u32 seed, u32 frame_key) {
    const u32 h = blockIdx.x * blockDim.x + threadIdx.x;
    if (h >= hypotheses || points < 3u) return;
    for (u32 d = 0; d < 3u; ++d) {
        const u32 i = draw_index(seed, frame_key, h, d, points);
        triples[3u * h + d] = i;
        corners[9u * h + 3u * d] = cloud[3u * i];
        corners[9u * h + 3u * d + 1u] = cloud[3u * i + 1u];
        corners[9u * h + 3u * d + 2u] = cloud[3u * i + 2u];
    }
}

// Grid (ceil(hypotheses / HYPS_PER_BLOCK), slices); `scores` zeroed by the host. Slice y covers the subsample
// points [y * per_slice, (y + 1) * per_slice).
extern "C" __global__ void score(const Hypothesis* __restrict__ hypotheses, const float* __restrict__ samples,
                                 const float* __restrict__ normals, u32* __restrict__ scores, u32 n_hypotheses,
                                 u32 n_samples, u32 per_slice, float threshold, float min_cos, u32 use_normals) {
    __shared__ u32 block_counts[HYPS_PER_BLOCK];
    const u32 h0 = blockIdx.x * HYPS_PER_BLOCK;
    float pa[HYPS_PER_BLOCK], pb[HYPS_PER_BLOCK], pc[HYPS_PER_BLOCK], pd[HYPS_PER_BLOCK];
    bool live[HYPS_PER_BLOCK];
    u32 count[HYPS_PER_BLOCK];
#pragma unroll
    for (u32 k = 0; k < HYPS_PER_BLOCK; ++k) {
        const u32 h = h0 + k;
        live[k] = h < n_hypotheses && hypotheses[h].admissible == 1u;
        const Hypothesis hy = live[k] ? hypotheses[h] : Hypothesis{};
        pa[k] = hy.a;
        pb[k] = hy.b;
        pc[k] = hy.c;
        pd[k] = hy.d;
        count[k] = 0;
    }
    if (threadIdx.x < HYPS_PER_BLOCK) block_counts[threadIdx.x] = 0;
    __syncthreads();
    const u32 start = min(blockIdx.y * per_slice, n_samples);
    const u32 end = min(start + per_slice, n_samples);
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
            count[k] += ok ? 1u : 0u;
        }
    }
    // Warp sums (one `__reduce_add_sync` each from sm_80 on, five shuffles before), then one shared atomic per warp
    // and hypothesis, then one global atomic per block and hypothesis.
#pragma unroll
    for (u32 k = 0; k < HYPS_PER_BLOCK; ++k) {
#if __CUDA_ARCH__ >= 800
        const u32 c = __reduce_add_sync(0xffffffffu, count[k]);
#else
        u32 c = count[k];
        for (u32 o = 16; o > 0; o >>= 1) c += __shfl_down_sync(0xffffffffu, c, o);
#endif
        if ((threadIdx.x & 31u) == 0 && c > 0) atomicAdd(&block_counts[k], c);
    }
    __syncthreads();
    if (threadIdx.x < HYPS_PER_BLOCK && live[threadIdx.x] && block_counts[threadIdx.x] > 0) {
        atomicAdd(&scores[h0 + threadIdx.x], block_counts[threadIdx.x]);
    }
}

extern "C" __global__ void sample_supports(const float* __restrict__ samples, const float* __restrict__ normals,
                                           u32* __restrict__ mask, const SupportTest test, u32 n_samples) {
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_samples) return;
    bool ok = supports(test.a, test.b, test.c, test.d, test.threshold, samples[3u * i], samples[3u * i + 1u],
                       samples[3u * i + 2u]);
    if (ok && test.use_normals == 1u) ok = normal_agrees(test.a, test.b, test.c, test.min_cos, normals, i);
    mask[i] = ok ? 1u : 0u;
}

// `count` zeroed by the host; integer atomics: the sum is exact whatever the schedule.
extern "C" __global__ void count_inliers(const float* __restrict__ cloud, u32* __restrict__ count,
                                         const SupportTest test, u32 points) {
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool in = i < points && supports(test.a, test.b, test.c, test.d, test.threshold, cloud[3u * i],
                                           cloud[3u * i + 1u], cloud[3u * i + 2u]);
    const u32 n = __syncthreads_count(in);
    if (threadIdx.x == 0 && n > 0) atomicAdd(count, n);
}
