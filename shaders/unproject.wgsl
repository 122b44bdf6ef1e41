// K1: unproject every valid depth pixel to a camera-frame point, in row-major pixel order.
// The WGSL twin of src/geometry/unproject.rs `unproject_depth`. Output order is stable without atomics: pass 1
// counts the valid pixels of each block of 256, pass 2 turns the counts into offsets (exclusive prefix sum), pass 3
// scans each block in workgroup memory (`block_scan`, from scan.wgsl, which the host prepends) and writes each point
// at its block's offset plus its rank in the block.
// 16-bit depth stays 16-bit on the device: two pixels per u32 word, low half first.

struct Params {
    width: u32,
    height: u32,
    pixels: u32,
    // 1: depth holds u16 pairs; 0: depth holds f32 metres.
    is_u16: u32,
    units_per_meter: f32,
    // A u16 value that is invalid besides 0 (0xffffffff: none).
    invalid_value: u32,
    blocks: u32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read> depth: array<u32>;
@group(0) @binding(1) var<storage, read> ray_x: array<f32>;
@group(0) @binding(2) var<storage, read> ray_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> block_counts: array<u32>;
// blocks + 1 entries: exclusive offsets, then the total.
@group(0) @binding(4) var<storage, read_write> block_offsets: array<u32>;
@group(0) @binding(5) var<storage, read_write> points: array<f32>;
@group(0) @binding(6) var<storage, read_write> pixel_of_point: array<u32>;
@group(0) @binding(7) var<uniform> params: Params;

var<workgroup> block_total: atomic<u32>;

// Depth of pixel i in metres, or a negative value when the pixel is invalid.
fn depth_m(i: u32) -> f32 {
    if (params.is_u16 == 1u) {
        let word = depth[i / 2u];
        let v = select(word & 0xffffu, word >> 16u, (i & 1u) == 1u);
        if (v == 0u || v == params.invalid_value) {
            return -1.0;
        }
        return f32(v) / params.units_per_meter;
    }
    let bits = depth[i];
    let z = bitcast<f32>(bits);
    // Non-finite (all exponent bits set) and non-positive values are invalid.
    if ((bits & 0x7f800000u) == 0x7f800000u || !(z > 0.0)) {
        return -1.0;
    }
    return z;
}

@compute @workgroup_size(256)
fn count_valid(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
               @builtin(workgroup_id) wid: vec3<u32>) {
    if (lid == 0u) {
        atomicStore(&block_total, 0u);
    }
    workgroupBarrier();
    if (gid.x < params.pixels && depth_m(gid.x) > 0.0) {
        atomicAdd(&block_total, 1u);
    }
    workgroupBarrier();
    if (lid == 0u) {
        block_counts[wid.x] = atomicLoad(&block_total);
    }
}

// One invocation: the block counts are few (1,200 for 640 x 480).
@compute @workgroup_size(1)
fn scan_blocks() {
    var total = 0u;
    for (var b = 0u; b < params.blocks; b = b + 1u) {
        block_offsets[b] = total;
        total = total + block_counts[b];
    }
    block_offsets[params.blocks] = total;
}

@compute @workgroup_size(256)
fn write_points(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                @builtin(workgroup_id) wid: vec3<u32>) {
    let i = gid.x;
    var z = -1.0;
    if (i < params.pixels) {
        z = depth_m(i);
    }
    let valid = z > 0.0;
    let rank = block_scan(lid, select(0u, 1u, valid));
    if (valid) {
        let slot = block_offsets[wid.x] + rank - 1u;
        let u = i % params.width;
        let v = i / params.width;
        points[3u * slot] = z * ray_x[u];
        points[3u * slot + 1u] = z * ray_y[v];
        points[3u * slot + 2u] = z;
        pixel_of_point[slot] = i;
    }
}
