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
// The tiled scan of the block counts (scan_tile_sums, scan_tile_starts, scan_tiles_apply): each tile's sum, then each
// tile's first offset and the total.
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

// One workgroup: each invocation sums a contiguous run of block counts, the runs are scanned together, then each
// invocation writes its run's offsets.
@compute @workgroup_size(256)
fn scan_blocks(@builtin(local_invocation_index) lid: u32) {
    let per = (params.blocks + 255u) / 256u;
    let start = min(lid * per, params.blocks);
    let end = min(start + per, params.blocks);
    var local = 0u;
    for (var b = start; b < end; b = b + 1u) {
        local = local + block_counts[b];
    }
    let inclusive = block_scan(lid, local);
    var running = inclusive - local;
    for (var b = start; b < end; b = b + 1u) {
        block_offsets[b] = running;
        running = running + block_counts[b];
    }
    if (lid == 255u) {
        block_offsets[params.blocks] = inclusive;
    }
}

// The tiled scan, for many blocks (one workgroup keeps too few loads in flight for a large table; the host takes it
// beyond 8,192 blocks), as kernels/scan.cuh's and shaders/gaps.wgsl's: tiles of SCAN_TILE counts, one workgroup each,
// read and written coalesced. Integer sums: the offsets are scan_blocks' whatever the tiling.
const SCAN_ITEMS: u32 = 16u;
const SCAN_TILE: u32 = 4096u;
var<workgroup> scan_total: u32;

fn scan_tiles() -> u32 {
    return (params.blocks + SCAN_TILE - 1u) / SCAN_TILE;
}

// One workgroup per tile (over a two-dimensional grid): tile_sums[tile] = the sum of its block counts.
@compute @workgroup_size(256)
fn scan_tile_sums(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) groups: vec3<u32>) {
    let tile = wid.y * groups.x + wid.x;
    if (tile >= scan_tiles()) {
        return;
    }
    var local = 0u;
    for (var k = 0u; k < SCAN_ITEMS; k = k + 1u) {
        let i = tile * SCAN_TILE + k * 256u + lid;
        if (i < params.blocks) {
            local = local + block_counts[i];
        }
    }
    let inclusive = block_scan(lid, local);
    if (lid == 255u) {
        tile_sums[tile] = inclusive;
    }
}

// One workgroup: the tiles' exclusive prefix sums into tile_starts, then the total (as scan_blocks does).
@compute @workgroup_size(256)
fn scan_tile_starts(@builtin(local_invocation_index) lid: u32) {
    let tiles = scan_tiles();
    let per = (tiles + 255u) / 256u;
    let first = min(lid * per, tiles);
    let end = min(first + per, tiles);
    var local = 0u;
    for (var b = first; b < end; b = b + 1u) {
        local = local + tile_sums[b];
    }
    let inclusive = block_scan(lid, local);
    var running = inclusive - local;
    for (var b = first; b < end; b = b + 1u) {
        tile_starts[b] = running;
        running = running + tile_sums[b];
    }
    if (lid == 255u) {
        tile_starts[tiles] = inclusive;
    }
}

// One workgroup per tile, as scan_tile_sums: each block's offset from its tile's first one, and the total last.
@compute @workgroup_size(256)
fn scan_tiles_apply(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) groups: vec3<u32>) {
    let tile = wid.y * groups.x + wid.x;
    let tiles = scan_tiles();
    if (tile >= tiles) {
        return;
    }
    var running = tile_starts[tile];
    for (var k = 0u; k < SCAN_ITEMS; k = k + 1u) {
        let i = tile * SCAN_TILE + k * 256u + lid;
        var c = 0u;
        if (i < params.blocks) {
            c = block_counts[i];
        }
        let inclusive = block_scan(lid, c);
        if (i < params.blocks) {
            block_offsets[i] = running + inclusive - c;
        }
        // The part's total, to every invocation (read by all before the next part's write).
        if (lid == 255u) {
            scan_total = inclusive;
        }
        workgroupBarrier();
        running = running + scan_total;
        workgroupBarrier();
    }
    if (tile == 0u && lid == 0u) {
        block_offsets[params.blocks] = tile_starts[tiles];
    }
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
