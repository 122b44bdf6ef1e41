// K1: unproject every valid depth pixel of a batch of frames to camera-frame points, frame after frame, row-major
// within each frame. The CUDA twin of src/geometry/unproject.rs `unproject_depth` (and shaders/unproject.wgsl).
// Stable order without atomics: `count_valid` counts the valid pixels of each tile of TILE pixels (tiles never
// straddle frames), `scan_counts` (scan.cuh) turns the counts into offsets over the whole batch, `write_points`
// ranks each valid pixel within its tile (block_rank) and writes its point at the tile's offset plus its rank.
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

// Depth of pixel i of frame f in metres, or a negative value when the pixel is invalid (as `DepthImage::depth_m`).
__device__ __forceinline__ float depth_m(const Frame& f, const u32* __restrict__ depth, u32 i) {
    if (f.is_u16 == 1u) {
        const u32 word = depth[f.word_offset + i / 2u];
        const u32 v = (i & 1u) ? (word >> 16) : (word & 0xffffu);
        if (v == 0u || v == f.invalid_value) return -1.0f;
        return __fdiv_rn((float)v, f.units_per_meter);
    }
    const u32 bits = depth[f.word_offset + i];
    const float z = __uint_as_float(bits);
    // Non-finite (all exponent bits set) and non-positive values are invalid.
    if ((bits & 0x7f800000u) == 0x7f800000u || !(z > 0.0f)) return -1.0f;
    return z;
}

extern "C" __global__ void count_valid(const u32* __restrict__ depth, const Frame* __restrict__ frames,
                                       const u32* __restrict__ tile_frame, u32* __restrict__ tile_counts,
                                       u32 tiles) {
    const u32 b = blockIdx.x;
    if (b >= tiles) return;  // uniform per block
    const Frame f = frames[tile_frame[b]];
    const u32 base = (b - f.block_offset) * TILE;
    u32 count = 0;
    for (u32 k = 0; k < PER_THREAD; ++k) {
        const u32 i = base + k * BLOCK + threadIdx.x;
        count += __syncthreads_count(i < f.pixels && depth_m(f, depth, i) > 0.0f);
    }
    if (threadIdx.x == 0) tile_counts[b] = count;
}

extern "C" __global__ void write_points(const u32* __restrict__ depth, const float* __restrict__ ray_x,
                                        const float* __restrict__ ray_y, const Frame* __restrict__ frames,
                                        const u32* __restrict__ tile_frame, const u32* __restrict__ tile_offsets,
                                        float* __restrict__ points, u32* __restrict__ pixel_of_point, u32 tiles) {
    const u32 b = blockIdx.x;
    if (b >= tiles) return;  // uniform per block
    const Frame f = frames[tile_frame[b]];
    const u32 base = (b - f.block_offset) * TILE;
    u32 running = tile_offsets[b];
    for (u32 k = 0; k < PER_THREAD; ++k) {
        const u32 i = base + k * BLOCK + threadIdx.x;
        const float z = i < f.pixels ? depth_m(f, depth, i) : -1.0f;
        const bool valid = z > 0.0f;
        u32 total;
        const u32 rank = block_rank(valid, &total);
        if (valid) {
            const u32 slot = running + rank - 1u;
            const u32 u = i % f.width;
            const u32 v = i / f.width;
            points[3u * slot] = __fmul_rn(z, ray_x[f.ray_x_offset + u]);
            points[3u * slot + 1u] = __fmul_rn(z, ray_y[f.ray_y_offset + v]);
            points[3u * slot + 2u] = z;
            pixel_of_point[slot] = i;
        }
        running += total;
    }
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
