// K1, per object: the points of the whole-frame cloud (row-major, from unproject.wgsl) whose pixel lies in each
// object's region, object after object, row-major within each object. The WGSL twin of `unproject_objects` in
// src/geometry/unproject.rs. Stable order without atomics, as in unproject.wgsl: per (object, block of 256 points)
// counts, one exclusive prefix sum over objects then blocks, and a block-local scan (`block_scan`, from scan.wgsl,
// which the host prepends) to place each point.

// Keep in sync with `GpuRegion` in src/backend/gpu.rs (32 bytes).
struct Region {
    // 0: instance (pixels whose label equals `id`, never 0); 1: box [x0, x1) x [y0, y1).
    kind: u32,
    id: u32,
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
    pad0: u32,
    pad1: u32,
}

// Keep in sync with `GroupParams` in src/backend/gpu.rs (32 bytes).
struct Params {
    points: u32,
    blocks: u32,
    objects: u32,
    width: u32,
    has_labels: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> points: array<f32>;
@group(0) @binding(1) var<storage, read> pixels: array<u32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> regions: array<Region>;
// objects x blocks counts, then their exclusive offsets.
@group(0) @binding(4) var<storage, read_write> counts: array<u32>;
@group(0) @binding(5) var<storage, read_write> offsets: array<u32>;
// objects + 1 entries: where each object's points start, then the total.
@group(0) @binding(6) var<storage, read_write> object_offsets: array<u32>;
@group(0) @binding(7) var<storage, read_write> out_points: array<f32>;
@group(0) @binding(8) var<storage, read_write> out_pixels: array<u32>;
@group(0) @binding(9) var<uniform> params: Params;

var<workgroup> block_total: atomic<u32>;

fn member(object: u32, point: u32) -> bool {
    if (point >= params.points) {
        return false;
    }
    let r = regions[object];
    let p = pixels[point];
    if (r.kind == 0u) {
        return params.has_labels == 1u && r.id != 0u && labels[p] == r.id;
    }
    let u = p % params.width;
    let v = p / params.width;
    return u >= r.x0 && u < r.x1 && v >= r.y0 && v < r.y1;
}

@compute @workgroup_size(256)
fn count_members(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                 @builtin(workgroup_id) wid: vec3<u32>) {
    if (lid == 0u) {
        atomicStore(&block_total, 0u);
    }
    workgroupBarrier();
    if (member(wid.y, gid.x)) {
        atomicAdd(&block_total, 1u);
    }
    workgroupBarrier();
    if (lid == 0u) {
        counts[wid.y * params.blocks + wid.x] = atomicLoad(&block_total);
    }
}

@compute @workgroup_size(1)
fn scan_members() {
    var total = 0u;
    for (var o = 0u; o < params.objects; o = o + 1u) {
        object_offsets[o] = total;
        for (var b = 0u; b < params.blocks; b = b + 1u) {
            offsets[o * params.blocks + b] = total;
            total = total + counts[o * params.blocks + b];
        }
    }
    object_offsets[params.objects] = total;
}

@compute @workgroup_size(256)
fn write_members(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(local_invocation_index) lid: u32,
                 @builtin(workgroup_id) wid: vec3<u32>) {
    let inside = member(wid.y, gid.x);
    let rank = block_scan(lid, select(0u, 1u, inside));
    if (inside) {
        let slot = offsets[wid.y * params.blocks + wid.x] + rank - 1u;
        let i = gid.x;
        out_points[3u * slot] = points[3u * i];
        out_points[3u * slot + 1u] = points[3u * i + 1u];
        out_points[3u * slot + 2u] = points[3u * i + 2u];
        out_pixels[slot] = pixels[i];
    }
}
