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
