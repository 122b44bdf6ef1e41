// K1: unproject every valid depth pixel of a batch of frames to camera-frame points, frame after frame, row-major
// within each frame. The CUDA twin of src/geometry/unproject.rs `unproject_depth` (and shaders/unproject.wgsl).
// Stable order without atomics: `count_valid` counts the valid pixels of each tile of TILE pixels (tiles never
// straddle frames), `scan_counts` (scan.cuh) turns the counts into offsets over the whole batch, `write_points`
// ranks each valid pixel within its tile (warp ballots) and writes its point at the tile's offset plus its rank.
// 16-bit depth stays 16-bit on the device: two pixels per u32 word, low half first (each frame starts on a word).
// Needs common.cuh and scan.cuh (prepended by the host).

// Pixels per tile: BLOCK threads, PER_THREAD rounds of BLOCK consecutive pixels each (coalesced reads).
#define PER_THREAD 8
#define TILE (BLOCK * PER_THREAD)

// Keep in sync with `UnprojectFrame` in src/backend/gpu.rs (48 bytes; `block_offset` counts tiles here).
struct Frame {
    u32 width;
    u32 pixels;
    // 1: the frame's depth words hold u16 pairs; 0: f32 metres.
    u32 is_u16;
    // A u16 value that is invalid besides 0 (0xffffffff: none).
    u32 invalid_value;
    float units_per_meter;
    // Where the frame's depth words, ray factors and tiles start.
    u32 word_offset;
    u32 ray_x_offset;
    u32 ray_y_offset;
    u32 block_offset;
    u32 pad0, pad1, pad2;
};
static_assert(sizeof(Frame) == 48, "Frame must match UnprojectFrame (48 bytes)");

// The depth word that holds pixel i of frame f (a u16 pair or an f32).
__device__ __forceinline__ u32 depth_word(const Frame& f, const u32* __restrict__ depth, u32 i) {
    return depth[f.word_offset + (f.is_u16 == 1u ? i / 2u : i)];
}

// Depth of pixel i of frame f in metres from its word, or a negative value when the pixel is invalid (as
// `DepthImage::depth_m`).
__device__ __forceinline__ float depth_of_word(const Frame& f, u32 word, u32 i) {
    if (f.is_u16 == 1u) {
        const u32 v = (i & 1u) ? (word >> 16) : (word & 0xffffu);
        if (v == 0u || v == f.invalid_value) return -1.0f;
        return __fdiv_rn((float)v, f.units_per_meter);
    }
    const float z = __uint_as_float(word);
    // Non-finite (all exponent bits set) and non-positive values are invalid.
    if ((word & 0x7f800000u) == 0x7f800000u || !(z > 0.0f)) return -1.0f;
    return z;
}

__device__ __forceinline__ float depth_m(const Frame& f, const u32* __restrict__ depth, u32 i) {
    return depth_of_word(f, depth_word(f, depth, i), i);
}

// Every depth of a thread's PER_THREAD pixels (pixels base + k * BLOCK + threadIdx.x, coalesced across the block),
// negative where invalid or past the frame. All of the words are loaded before any is decoded: PER_THREAD loads in
// flight a thread. (Decoding each word as it came, a u16 word's division and its branches stood between one load and
// the next, so a thread waited for each load in turn; and a GPU needs many bytes in flight per multiprocessor to
// reach its memory bandwidth.)
__device__ __forceinline__ void tile_depths(const Frame& f, const u32* __restrict__ depth, u32 base,
                                            float z[PER_THREAD]) {
    u32 words[PER_THREAD];
#pragma unroll
    for (u32 k = 0; k < PER_THREAD; ++k) {
        const u32 i = base + k * BLOCK + threadIdx.x;
        words[k] = i < f.pixels ? depth_word(f, depth, i) : 0u;
    }
#pragma unroll
    for (u32 k = 0; k < PER_THREAD; ++k) {
        const u32 i = base + k * BLOCK + threadIdx.x;
        z[k] = i < f.pixels ? depth_of_word(f, words[k], i) : -1.0f;
    }
}

extern "C" __global__ void count_valid(const u32* __restrict__ depth, const Frame* __restrict__ frames,
                                       const u32* __restrict__ tile_frame, u32* __restrict__ tile_counts,
                                       u32 tiles) {
    __shared__ u32 warp_counts[BLOCK / 32];
    const u32 b = blockIdx.x;
    if (b >= tiles) return;  // uniform per block
    const Frame f = frames[tile_frame[b]];
    float z[PER_THREAD];
    tile_depths(f, depth, (b - f.block_offset) * TILE, z);
    u32 count = 0;
#pragma unroll
    for (u32 k = 0; k < PER_THREAD; ++k) count += z[k] > 0.0f ? 1u : 0u;
    // The warp's sum, then the warps' (one barrier).
    count = warp_sum(count);
    if ((threadIdx.x & 31u) == 0u) warp_counts[threadIdx.x >> 5] = count;
    __syncthreads();
    if (threadIdx.x == 0) {
        u32 total = 0;
        for (u32 w = 0; w < BLOCK / 32; ++w) total += warp_counts[w];
        tile_counts[b] = total;
    }
}

// Each valid pixel's slot in its tile is the count of valid pixels before it in row-major order: those of the
// earlier rounds, of the earlier warps of its round and of the earlier lanes of its warp (a ballot a round and warp;
// one barrier for the whole tile, where ranking round by round took two a round). The tile's points are staged in
// shared memory in slot order and written out together, consecutive threads writing consecutive floats (a thread
// writing its point's three floats makes three stores of stride 12 bytes across the warp). Each pixel index goes
// straight out: the valid lanes of a round write consecutive slots.
extern "C" __global__ void write_points(const u32* __restrict__ depth, const float* __restrict__ ray_x,
                                        const float* __restrict__ ray_y, const Frame* __restrict__ frames,
                                        const u32* __restrict__ tile_frame, const u32* __restrict__ tile_offsets,
                                        float* __restrict__ points, u32* __restrict__ pixel_of_point, u32 tiles) {
    __shared__ float staged[3 * TILE];
    __shared__ u32 warp_counts[PER_THREAD][BLOCK / 32];
    const u32 b = blockIdx.x;
    if (b >= tiles) return;  // uniform per block
    const Frame f = frames[tile_frame[b]];
    const u32 base = (b - f.block_offset) * TILE;
    const u32 offset = tile_offsets[b];  // loaded with the depth words, before the barrier
    const u32 lane = threadIdx.x & 31u;
    const u32 warp = threadIdx.x >> 5;
    float z[PER_THREAD];
    tile_depths(f, depth, base, z);
    u32 ballots[PER_THREAD];
#pragma unroll
    for (u32 k = 0; k < PER_THREAD; ++k) {
        ballots[k] = __ballot_sync(0xffffffffu, z[k] > 0.0f);
        if (lane == 0u) warp_counts[k][warp] = __popc(ballots[k]);
    }
    __syncthreads();
    const u32 below = (1u << lane) - 1u;  // the lanes before this one (lane 0: none)
    u32 before = 0;                       // the valid pixels of the earlier rounds
#pragma unroll
    for (u32 k = 0; k < PER_THREAD; ++k) {
        u32 warps_before = 0, round = 0;
        for (u32 w = 0; w < BLOCK / 32; ++w) {
            const u32 c = warp_counts[k][w];
            if (w < warp) warps_before += c;
            round += c;
        }
        if (z[k] > 0.0f) {
            const u32 s = before + warps_before + __popc(ballots[k] & below);
            const u32 i = base + k * BLOCK + threadIdx.x;
            const u32 u = i % f.width;
            const u32 v = i / f.width;
            staged[3u * s] = __fmul_rn(z[k], ray_x[f.ray_x_offset + u]);
            staged[3u * s + 1u] = __fmul_rn(z[k], ray_y[f.ray_y_offset + v]);
            staged[3u * s + 2u] = z[k];
            pixel_of_point[offset + s] = i;
        }
        before += round;
    }
    __syncthreads();
    // `before` now counts the tile's valid pixels: its slots are [offset, offset + before).
    for (u32 e = threadIdx.x; e < 3u * before; e += BLOCK) points[3u * offset + e] = staged[e];
}

// K2's ground samples' normals from the organized depth image: the CUDA twin of `estimate_normals`
// (src/geometry/unproject.rs) for the points listed. The cross product of the horizontal and vertical differences
// between the nearest valid pixels 2 to `max_step` pixels away on each side; [0, 0, 0] (unknown) when a side has no
// valid pixel in reach or the neighbour's depth differs by more than 10% (a depth edge). Every operation rounds as
// the host's f32 code does (no fused multiply-add; correctly rounded division and square root).

// One job per frame (keep in sync with `NormalJob` in src/backend/cuda.rs, 16 bytes).
struct NormalJob {
    // The frame's index in `frames` (its K1 batch).
    u32 frame;
    // Its first sample in `sample_index` and `normals`, and how many.
    u32 sample_base;
    u32 samples;
    u32 pad;
};
static_assert(sizeof(NormalJob) == 16, "NormalJob must match the host's (16 bytes)");

// The point of the nearest valid pixel from (u, v) along (du, dv), 2 to max_step pixels away, into `out`; false when
// none is in reach or its depth is more than 10% away from z0.
__device__ __forceinline__ bool normal_neighbour(const Frame& f, u32 height, const u32* __restrict__ depth,
                                                 const float* __restrict__ ray_x, const float* __restrict__ ray_y,
                                                 int u, int v, int du, int dv, float z0, int max_step, float* out) {
    for (int s = 2; s <= max_step; ++s) {
        const int x = u + du * s;
        const int y = v + dv * s;
        if (x < 0 || y < 0 || x >= (int)f.width || y >= (int)height) return false;
        const float z = depth_m(f, depth, (u32)y * f.width + (u32)x);
        if (z > 0.0f) {
            if (!(fabsf(z - z0) <= __fmul_rn(0.1f, z0))) return false;
            out[0] = __fmul_rn(z, ray_x[f.ray_x_offset + (u32)x]);
            out[1] = __fmul_rn(z, ray_y[f.ray_y_offset + (u32)y]);
            out[2] = z;
            return true;
        }
    }
    return false;
}

// Grid (blocks, jobs): thread x of block (b, y) takes sample b * BLOCK + x of job job_base + y. `sample_index` holds
// each sample's index in the batch's cloud (`cloud`, `pixels`: K1's output); three floats per sample into `normals`.
extern "C" __global__ void sample_normals(const u32* __restrict__ depth, const float* __restrict__ ray_x,
                                          const float* __restrict__ ray_y, const Frame* __restrict__ frames,
                                          const float* __restrict__ cloud, const u32* __restrict__ pixels,
                                          const u32* __restrict__ sample_index, const NormalJob* __restrict__ jobs,
                                          float* __restrict__ normals, u32 max_step, u32 job_base) {
    const NormalJob job = jobs[job_base + blockIdx.y];
    const u32 s = blockIdx.x * BLOCK + threadIdx.x;
    if (s >= job.samples) return;
    const u32 at = job.sample_base + s;
    const u32 g = sample_index[at];
    const Frame f = frames[job.frame];
    const u32 height = f.pixels / f.width;
    const u32 pixel = pixels[g];
    const int u = (int)(pixel % f.width);
    const int v = (int)(pixel / f.width);
    const float z = cloud[3u * g + 2u];
    const int reach = (int)max_step;
    float r[3], l[3], d[3], t[3];
    float n[3] = {0.0f, 0.0f, 0.0f};
    if (normal_neighbour(f, height, depth, ray_x, ray_y, u, v, 1, 0, z, reach, r) &&
        normal_neighbour(f, height, depth, ray_x, ray_y, u, v, -1, 0, z, reach, l) &&
        normal_neighbour(f, height, depth, ray_x, ray_y, u, v, 0, 1, z, reach, d) &&
        normal_neighbour(f, height, depth, ray_x, ray_y, u, v, 0, -1, z, reach, t)) {
        const float a0 = r[0] - l[0], a1 = r[1] - l[1], a2 = r[2] - l[2];
        const float b0 = d[0] - t[0], b1 = d[1] - t[1], b2 = d[2] - t[2];
        const float c0 = __fmul_rn(a1, b2) - __fmul_rn(a2, b1);
        const float c1 = __fmul_rn(a2, b0) - __fmul_rn(a0, b2);
        const float c2 = __fmul_rn(a0, b1) - __fmul_rn(a1, b0);
        const float len = sqrtf(__fmul_rn(c0, c0) + __fmul_rn(c1, c1) + __fmul_rn(c2, c2));
        // Positive and finite (not NaN, not +inf), as the host's `len > 0.0 && len.is_finite()`.
        if (len > 0.0f && (__float_as_uint(len) & 0x7f800000u) != 0x7f800000u) {
            n[0] = __fdiv_rn(c0, len);
            n[1] = __fdiv_rn(c1, len);
            n[2] = __fdiv_rn(c2, len);
        }
    }
    normals[3u * at] = n[0];
    normals[3u * at + 1u] = n[1];
    normals[3u * at + 2u] = n[2];
}
