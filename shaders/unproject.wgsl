// K1: unproject every valid depth pixel of a batch of frames to camera-frame points, frame after frame, row-major
// within each frame. The WGSL twin of src/geometry/unproject.rs `unproject_depth`. Output order is stable without
// atomics: pass 1 counts the valid pixels of each block of 256 pixels (blocks never straddle frames), pass 2 turns
// the counts into offsets (an exclusive prefix sum over the whole batch), pass 3 scans each block in workgroup
// memory (`block_scan`, from scan.wgsl, which the host prepends) and writes each point at its block's offset plus
// its rank in the block. 16-bit depth stays 16-bit on the device: two pixels per u32 word, low half first (each
// frame starts on a word).

// Keep in sync with `UnprojectFrame` in src/backend/gpu.rs (48 bytes).
struct Frame {
    width: u32,
    pixels: u32,
    // 1: the frame's depth words hold u16 pairs; 0: f32 metres.
    is_u16: u32,
    // A u16 value that is invalid besides 0 (0xffffffff: none).
    invalid_value: u32,
    units_per_meter: f32,
    // Where the frame's depth words, ray factors and blocks start.
    word_offset: u32,
    ray_x_offset: u32,
    ray_y_offset: u32,
    block_offset: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

// Keep in sync with `UnprojectParams` in src/backend/gpu.rs (16 bytes).
struct Params {
    blocks: u32,
    frames: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> depth: array<u32>;
@group(0) @binding(1) var<storage, read> ray_x: array<f32>;
@group(0) @binding(2) var<storage, read> ray_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> block_counts: array<u32>;
// blocks + 1 entries: exclusive offsets, then the total.
@group(0) @binding(4) var<storage, read_write> block_offsets: array<u32>;
@group(0) @binding(5) var<storage, read_write> points: array<f32>;
// The pixel (row-major index within its frame) of each point.
@group(0) @binding(6) var<storage, read_write> pixel_of_point: array<u32>;
@group(0) @binding(7) var<uniform> params: Params;
@group(0) @binding(8) var<storage, read> frames: array<Frame>;
// The frame of each block.
@group(0) @binding(9) var<storage, read> block_frame: array<u32>;
// The tiled scan of the block counts (shaders/tiled_scan.wgsl): each tile's sum, then each tile's first offset and
// the total.
@group(0) @binding(10) var<storage, read_write> tile_sums: array<u32>;
@group(0) @binding(11) var<storage, read_write> tile_starts: array<u32>;

var<workgroup> block_total: atomic<u32>;

// Depth of pixel i of frame f in metres, or a negative value when the pixel is invalid.
fn depth_m(f: Frame, i: u32) -> f32 {
    if (f.is_u16 == 1u) {
        let word = depth[f.word_offset + i / 2u];
        let v = select(word & 0xffffu, word >> 16u, (i & 1u) == 1u);
        if (v == 0u || v == f.invalid_value) {
            return -1.0;
        }
        return f32(v) / f.units_per_meter;
    }
    let bits = depth[f.word_offset + i];
    let z = bitcast<f32>(bits);
    // Non-finite (all exponent bits set) and non-positive values are invalid.
    if ((bits & 0x7f800000u) == 0x7f800000u || !(z > 0.0)) {
        return -1.0;
    }
    return z;
}

fn block_id(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wid.y * groups.x + wid.x;
}

@compute @workgroup_size(256)
fn count_valid(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let b = block_id(wid, groups);
    if (lid == 0u) {
        atomicStore(&block_total, 0u);
    }
    workgroupBarrier();
    if (b < params.blocks) {
        let f = frames[block_frame[b]];
        let i = (b - f.block_offset) * 256u + lid;
        if (i < f.pixels && depth_m(f, i) > 0.0) {
            atomicAdd(&block_total, 1u);
        }
    }
    workgroupBarrier();
    if (lid == 0u && b < params.blocks) {
        block_counts[b] = atomicLoad(&block_total);
    }
}

// The block counts and offsets as shaders/tiled_scan.wgsl reads and writes them.
fn scan_n() -> u32 {
    return params.blocks;
}

fn scan_count(i: u32) -> u32 {
    return block_counts[i];
}

fn scan_set(i: u32, offset: u32) {
    block_offsets[i] = offset;
}

@compute @workgroup_size(256)
fn write_points(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let b = block_id(wid, groups);
    var z = -1.0;
    var i = 0u;
    var f: Frame;
    if (b < params.blocks) {
        f = frames[block_frame[b]];
        i = (b - f.block_offset) * 256u + lid;
        if (i < f.pixels) {
            z = depth_m(f, i);
        }
    }
    let valid = z > 0.0;
    let rank = block_scan(lid, select(0u, 1u, valid));
    if (valid) {
        let slot = block_offsets[b] + rank - 1u;
        let u = i % f.width;
        let v = i / f.width;
        points[3u * slot] = z * ray_x[f.ray_x_offset + u];
        points[3u * slot + 1u] = z * ray_y[f.ray_y_offset + v];
        points[3u * slot + 2u] = z;
        pixel_of_point[slot] = i;
    }
}
