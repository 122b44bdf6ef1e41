// The exact closest-surface gap of every pair of objects of every frame of a batch: the smallest distance between
// a point of one object and a point of the other. The WGSL twin of kernels/gaps.cu; the specification is
// src/geometry/relations.rs `closest_surface_matrix`, and this is `chunked_closest_distance2` there, the same
// algorithm run serially (reduce.wgsl and scan.wgsl, prepended by the host, have the workgroup min and prefix sum).
// No index is built: each object's points are put in a spatial order first, then taken in chunks of 32 consecutive
// points, each chunk with its bounding box.
//   - order_count, a prefix sum of tiled_scan.wgsl (scan_one_group, or the tiled scan beyond 8,192 buckets),
//     order_scatter: a counting sort of each object's points by the Morton code of their cell in a grid over the
//     object's bounding box (GapOrder, from the host), into `points`, object after object.
//     Points of one cell land in any order: the gap is a minimum, the same whatever the order. Chunks of nearby
//     points have small boxes, so far fewer chunk pairs survive the box test and far fewer points are compared.
//   - chunk_boxes: one invocation per chunk, its box; super_boxes: one per super-chunk (8 consecutive chunks), its
//     box.
//   - pair_bounds, refine_bounds, search_pairs: the super-chunk pairs of every pair of objects in tiles of 2,048,
//     one workgroup per tile, 8 super pairs per invocation: an upper bound from the super-chunks' first points; the
//     super pairs whose boxes are nearer than it (a list per workgroup) lower it with their chunks' first points;
//     then the super pairs whose boxes are nearer than the best so far, and their chunk pairs whose boxes are too,
//     are searched point by point, a point of A farther from B's chunk box than the best skipped (atomicMin per
//     pair). A pruned super pair costs one box test instead of 64.
// Squared distances throughout, summed as the CPU sums them. Where the device rounds each operation as written
// (lavapipe does), the result is the CPU reference's squared gap, bit for bit; a GPU that fuses multiply-adds may
// differ in the last bits. The host takes the square root.

const GAP_CHUNK: u32 = 32u;
// Chunks per super-chunk (8 x 8 chunk pairs per super pair).
const GAP_SUPER: u32 = 8u;

// One object of the batch. Keep in sync with `GpuGapObject` in src/backend/layout.rs (16 bytes).
struct GapObject {
    offset: u32,
    count: u32,
    chunk_offset: u32,
    super_offset: u32,
}

// How one object's points are ordered. Keep in sync with `GpuGapOrder` in src/backend/layout.rs (32 bytes).
struct GapOrder {
    // Its first point in `source`, its first bucket, and its grid of 2^bits cells a side (bits <= 6).
    source: u32,
    buckets: u32,
    bits: u32,
    // 1 / the side of a cell (0: every point in one cell).
    inv_cell: f32,
    lo_x: f32,
    lo_y: f32,
    lo_z: f32,
    pad: u32,
}

// Keep in sync with `GapParams` in src/backend/layout.rs (32 bytes).
struct Params {
    objects: u32,
    chunks: u32,
    pairs: u32,
    tiles: u32,
    points: u32,
    buckets: u32,
    supers: u32,
    pad: u32,
}

// The objects' points in their spatial order, object after object (order_scatter writes them).
@group(0) @binding(0) var<storage, read_write> points: array<f32>;
@group(0) @binding(1) var<storage, read> objects: array<GapObject>;
// Per chunk: lo x, y, z, hi x, y, z.
@group(0) @binding(2) var<storage, read_write> boxes: array<f32>;
// Per pair: the indices of its two objects.
@group(0) @binding(3) var<storage, read> pairs: array<u32>;
// Per pair: the bits of the smallest squared distance found so far.
@group(0) @binding(4) var<storage, read_write> best2: array<atomic<u32>>;
@group(0) @binding(5) var<uniform> params: Params;
// Per pair: its first tile (2,048 chunk pairs a tile).
@group(0) @binding(6) var<storage, read> tile_start: array<u32>;
// The fields of GapObject that number each kind of item: points, chunks, super-chunks.
const FIRST_POINT: u32 = 0u;
const FIRST_CHUNK: u32 = 2u;
const FIRST_SUPER: u32 = 3u;

fn first_item(i: u32, first: u32) -> u32 {
    let o = objects[i];
    return select(select(o.super_offset, o.chunk_offset, first == FIRST_CHUNK), o.offset, first == FIRST_POINT);
}

// The object holding item x of a kind (`first`: FIRST_POINT, FIRST_CHUNK or FIRST_SUPER): the last object whose
// first item of that kind is <= x (binary search; objects are never empty).
fn object_holding(first: u32, x: u32) -> u32 {
    var lo = 0u;
    var hi = params.objects;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (first_item(mid, first) <= x) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// The points as they come, each object's at its `source`.
@group(0) @binding(7) var<storage, read> source: array<f32>;
@group(0) @binding(8) var<storage, read> orders: array<GapOrder>;
// Each bucket's points: counted up by order_count, down to 0 by order_scatter (zeroed by the host).
@group(0) @binding(9) var<storage, read_write> counts: array<atomic<u32>>;
// The buckets' exclusive prefix sums, then the number of points.
@group(0) @binding(10) var<storage, read_write> starts: array<u32>;
// Per super-chunk: lo x, y, z, hi x, y, z.
@group(0) @binding(11) var<storage, read_write> supers: array<f32>;
// The tiled scan of the bucket counts (shaders/tiled_scan.wgsl): each tile's sum, then each tile's first start and
// the total.
@group(0) @binding(12) var<storage, read_write> tile_sums: array<u32>;
@group(0) @binding(13) var<storage, read_write> tile_starts: array<u32>;

// The bits of v (below 1,024) spread three apart: one coordinate of a Morton code.
fn spread3(x: u32) -> u32 {
    var v = (x | (x << 16u)) & 0x030000FFu;
    v = (v | (v << 8u)) & 0x0300F00Fu;
    v = (v | (v << 4u)) & 0x030C30C3u;
    return (v | (v << 2u)) & 0x09249249u;
}

// Ordered point t's bucket and its place in `source`.
struct Placed {
    bucket: u32,
    at: u32,
}

fn place_point(t: u32) -> Placed {
    let i = object_holding(FIRST_POINT, t);
    let o = orders[i];
    let at = o.source + (t - objects[i].offset);
    let p = vec3<f32>(source[3u * at], source[3u * at + 1u], source[3u * at + 2u]);
    let top = (1u << o.bits) - 1u;
    // Bounded in u32 too: a coordinate that is not finite gives some cell of the grid.
    let c = min(vec3<u32>(max((p - vec3<f32>(o.lo_x, o.lo_y, o.lo_z)) * o.inv_cell, vec3<f32>(0.0))), vec3<u32>(top));
    return Placed(o.buckets + (spread3(c.x) | (spread3(c.y) << 1u) | (spread3(c.z) << 2u)), at);
}

// One invocation per point: counts[bucket] = the points of each bucket.
@compute @workgroup_size(256)
fn order_count(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let t = gid.y * groups.x * 256u + gid.x;
    if (t >= params.points) {
        return;
    }
    atomicAdd(&counts[place_point(t).bucket], 1u);
}

// The bucket counts and starts as shaders/tiled_scan.wgsl reads and writes them.
fn scan_n() -> u32 {
    return params.buckets;
}

fn scan_count(i: u32) -> u32 {
    return atomicLoad(&counts[i]);
}

fn scan_set(i: u32, offset: u32) {
    starts[i] = offset;
}

// One invocation per point: its x, y, z to `points`, within its bucket's range [starts[b], starts[b + 1]). Buckets
// are numbered object after object, so each object's points land in its own range [offset, offset + count).
@compute @workgroup_size(256)
fn order_scatter(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let t = gid.y * groups.x * 256u + gid.x;
    if (t >= params.points) {
        return;
    }
    let p = place_point(t);
    let to = starts[p.bucket] + atomicSub(&counts[p.bucket], 1u) - 1u;
    points[3u * to] = source[3u * p.at];
    points[3u * to + 1u] = source[3u * p.at + 1u];
    points[3u * to + 2u] = source[3u * p.at + 2u];
}

fn point(p: u32) -> vec3<f32> {
    return vec3<f32>(points[3u * p], points[3u * p + 1u], points[3u * p + 2u]);
}

fn box_lo(c: u32) -> vec3<f32> {
    return vec3<f32>(boxes[6u * c], boxes[6u * c + 1u], boxes[6u * c + 2u]);
}

fn box_hi(c: u32) -> vec3<f32> {
    return vec3<f32>(boxes[6u * c + 3u], boxes[6u * c + 4u], boxes[6u * c + 5u]);
}

// Summed x, y, z as the CPU sums: ((x² + y²) + z²).
fn norm2(d: vec3<f32>) -> f32 {
    return d.x * d.x + d.y * d.y + d.z * d.z;
}

fn gap_dist2(p: u32, q: u32) -> f32 {
    return norm2(point(p) - point(q));
}

// Squared distance from point p to chunk c's box, 0 inside; as `point_box_dist2` on the CPU.
fn point_box_dist2(p: u32, c: u32) -> f32 {
    let v = point(p);
    return norm2(max(max(box_lo(c) - v, v - box_hi(c)), vec3<f32>(0.0)));
}

// Squared distance between the boxes of chunks a and b, 0 when they overlap; as `box_dist2` on the CPU (which adds
// to 0 first: the same sum).
fn box_dist2(a: u32, b: u32) -> f32 {
    return norm2(max(max(box_lo(b) - box_hi(a), box_lo(a) - box_hi(b)), vec3<f32>(0.0)));
}

// The box of run r of a kind (`first`: FIRST_CHUNK or FIRST_SUPER, of `size` points: a chunk or a super-chunk), from
// its first point (a run is never empty): no infinities, which a WGSL compiler may assume away.
struct Box {
    lo: vec3<f32>,
    hi: vec3<f32>,
}

fn run_box(first: u32, size: u32, r: u32) -> Box {
    let i = object_holding(first, r);
    let o = objects[i];
    let start = o.offset + (r - first_item(i, first)) * size;
    let end = min(start + size, o.offset + o.count);
    var b = Box(point(start), point(start));
    for (var p = start + 1u; p < end; p = p + 1u) {
        b.lo = min(b.lo, point(p));
        b.hi = max(b.hi, point(p));
    }
    return b;
}

@compute @workgroup_size(256)
fn chunk_boxes(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let c = gid.y * groups.x * 256u + gid.x;
    if (c >= params.chunks) {
        return;
    }
    let b = run_box(FIRST_CHUNK, GAP_CHUNK, c);
    boxes[6u * c] = b.lo.x;
    boxes[6u * c + 1u] = b.lo.y;
    boxes[6u * c + 2u] = b.lo.z;
    boxes[6u * c + 3u] = b.hi.x;
    boxes[6u * c + 4u] = b.hi.y;
    boxes[6u * c + 5u] = b.hi.z;
}

// The same for super-chunks, from their points (the same box as their chunks' boxes together).
@compute @workgroup_size(256)
fn super_boxes(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let s = gid.y * groups.x * 256u + gid.x;
    if (s >= params.supers) {
        return;
    }
    let b = run_box(FIRST_SUPER, GAP_CHUNK * GAP_SUPER, s);
    supers[6u * s] = b.lo.x;
    supers[6u * s + 1u] = b.lo.y;
    supers[6u * s + 2u] = b.lo.z;
    supers[6u * s + 3u] = b.hi.x;
    supers[6u * s + 4u] = b.hi.y;
    supers[6u * s + 5u] = b.hi.z;
}

// Squared distance between the boxes of super-chunks a and b, as box_dist2.
fn super_dist2(a: u32, b: u32) -> f32 {
    let a_lo = vec3<f32>(supers[6u * a], supers[6u * a + 1u], supers[6u * a + 2u]);
    let a_hi = vec3<f32>(supers[6u * a + 3u], supers[6u * a + 4u], supers[6u * a + 5u]);
    let b_lo = vec3<f32>(supers[6u * b], supers[6u * b + 1u], supers[6u * b + 2u]);
    let b_hi = vec3<f32>(supers[6u * b + 3u], supers[6u * b + 4u], supers[6u * b + 5u]);
    return norm2(max(max(b_lo - a_hi, a_lo - b_hi), vec3<f32>(0.0)));
}

fn chunks_of(o: GapObject) -> u32 {
    return (o.count + GAP_CHUNK - 1u) / GAP_CHUNK;
}

// Super pairs per invocation, and per tile.
const PER_INVOCATION: u32 = 8u;
const TILE: u32 = 2048u;

// Workgroup w's tile: its pair k (the last pair whose tile_start <= w, by binary search), the pair's objects, their
// chunk and super-chunk counts, and the tile's first super pair: invocation x's are base + r * 256 + x, r <
// PER_INVOCATION, each (i, j) = (sp / sb, sp % sb) of the pair when i < sa.
struct Tile {
    k: u32,
    a: GapObject,
    b: GapObject,
    na: u32,
    nb: u32,
    sa: u32,
    sb: u32,
    base: u32,
}

fn tile_of(w: u32) -> Tile {
    var lo = 0u;
    var hi = params.pairs;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (tile_start[mid] <= w) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let a = objects[pairs[2u * lo]];
    let b = objects[pairs[2u * lo + 1u]];
    let na = chunks_of(a);
    let nb = chunks_of(b);
    let sa = (na + GAP_SUPER - 1u) / GAP_SUPER;
    let sb = (nb + GAP_SUPER - 1u) / GAP_SUPER;
    // The host keeps sa * sb within 2^31, so the last tile's indices stay within 32 bits.
    return Tile(lo, a, b, na, nb, sa, sb, (w - tile_start[lo]) * TILE);
}

// Pass 1, one workgroup per tile, PER_INVOCATION super pairs per invocation: best2[pair] = min over its super pairs of the
// squared distance between the super-chunks' first points (an upper bound of the gap: a real distance), by one
// atomicMin per workgroup on the bits (never negative, so the bits order as the values); best2 starts as +inf's
// bits (the host's upload).
@compute @workgroup_size(256)
fn pair_bounds(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    let w = wid.y * groups.x + wid.x;
    if (w >= params.tiles) {
        return;
    }
    let t = tile_of(w);
    // From the first points' distance (a real one, so an invocation without a super pair changes nothing).
    var u = gap_dist2(t.a.offset, t.b.offset);
    for (var r = 0u; r < PER_INVOCATION; r = r + 1u) {
        let sp = t.base + r * 256u + lid;
        let i = sp / t.sb;
        if (i < t.sa) {
            u = min(u, gap_dist2(t.a.offset + i * GAP_CHUNK * GAP_SUPER, t.b.offset + (sp % t.sb) * GAP_CHUNK * GAP_SUPER));
        }
    }
    // One atomic per workgroup: same-address atomics serialise.
    u = reduce_min(lid, u);
    if (lid == 0u) {
        atomicMin(&best2[t.k], bitcast<u32>(u));
    }
}

// The super pairs of the workgroup's tile whose boxes are nearer than the bound, each as its index i * sb + j in
// the pair, in any order.
var<workgroup> near_list: array<u32, 2048>;
var<workgroup> near_count: atomic<u32>;

// Lists the tile's super pairs whose boxes are nearer than `best`; returns how many. Call from uniform control flow
// (it has barriers).
fn near_supers(t: Tile, lid: u32, best: f32) -> u32 {
    if (lid == 0u) {
        atomicStore(&near_count, 0u);
    }
    workgroupBarrier();
    for (var r = 0u; r < PER_INVOCATION; r = r + 1u) {
        let sp = t.base + r * 256u + lid;
        let i = sp / t.sb;
        if (i < t.sa && super_dist2(t.a.super_offset + i, t.b.super_offset + sp % t.sb) < best) {
            near_list[atomicAdd(&near_count, 1u)] = sp;
        }
    }
    workgroupBarrier();
    return atomicLoad(&near_count);
}

// A tile of pass 2 or 3: the tile, its pair's bound as the pass reads it, and how many of its super pairs are
// listed (nearer than that bound). Call from uniform control flow (it has barriers).
struct Listed {
    t: Tile,
    start: f32,
    n: u32,
}

fn listed_tile(w: u32, lid: u32) -> Listed {
    let t = tile_of(w);
    let start = bitcast<f32>(atomicLoad(&best2[t.k]));
    return Listed(t, start, near_supers(t, lid, start));
}

// Chunk pair c (of 64) of listed super pair e: its chunks of A and B (beyond either object's chunks: not a pair).
fn chunk_pair(t: Tile, e: u32, c: u32) -> vec2<u32> {
    let sp = near_list[e];
    return vec2<u32>((sp / t.sb) * GAP_SUPER + c / GAP_SUPER, (sp % t.sb) * GAP_SUPER + c % GAP_SUPER);
}

// Pass 2, the same tiles: the super pairs whose boxes are nearer than the pair's bound (read once; it only falls)
// lower it to the smallest distance between the first points of their chunk pairs, the workgroup's invocations over
// all of their chunk pairs; one atomicMin per workgroup.
@compute @workgroup_size(256)
fn refine_bounds(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let w = wid.y * groups.x + wid.x;
    if (w >= params.tiles) {
        return;
    }
    let l = listed_tile(w, lid);
    let t = l.t;
    let start = l.start;
    let n = l.n;
    var u = start;
    for (var e = lid; e < n * GAP_SUPER * GAP_SUPER; e = e + 256u) {
        let c = chunk_pair(t, e / (GAP_SUPER * GAP_SUPER), e % (GAP_SUPER * GAP_SUPER));
        if (c.x < t.na && c.y < t.nb) {
            u = min(u, gap_dist2(t.a.offset + c.x * GAP_CHUNK, t.b.offset + c.y * GAP_CHUNK));
        }
    }
    u = reduce_min(lid, u);
    if (lid == 0u && u < start) {
        atomicMin(&best2[t.k], bitcast<u32>(u));
    }
}

// Pass 3, the same tiles: the super pairs whose boxes are nearer than the pair's best so far, then their chunk pairs
// whose boxes are too, are searched point by point, a point farther from the other chunk's box than the
// invocation's best skipped; the workgroup's best goes to best2[pair] by one atomicMin. Every best used is a real
// distance: the exact minimum.
@compute @workgroup_size(256)
fn search_pairs(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let w = wid.y * groups.x + wid.x;
    if (w >= params.tiles) {
        return;
    }
    let l = listed_tile(w, lid);
    let t = l.t;
    let start = l.start;
    let n = l.n;
    var best = start;
    for (var e = lid; e < n * GAP_SUPER * GAP_SUPER; e = e + 256u) {
        let c = chunk_pair(t, e / (GAP_SUPER * GAP_SUPER), e % (GAP_SUPER * GAP_SUPER));
        let ca = t.a.chunk_offset + c.x;
        let cb = t.b.chunk_offset + c.y;
        if (c.x < t.na && c.y < t.nb && box_dist2(ca, cb) < best) {
            let a_start = t.a.offset + c.x * GAP_CHUNK;
            let a_end = min(a_start + GAP_CHUNK, t.a.offset + t.a.count);
            let b_start = t.b.offset + c.y * GAP_CHUNK;
            let b_end = min(b_start + GAP_CHUNK, t.b.offset + t.b.count);
            for (var p = a_start; p < a_end; p = p + 1u) {
                if (point_box_dist2(p, cb) < best) {
                    for (var q = b_start; q < b_end; q = q + 1u) {
                        best = min(best, gap_dist2(p, q));
                    }
                }
            }
        }
    }
    best = reduce_min(lid, best);
    if (lid == 0u && best < start) {
        atomicMin(&best2[t.k], bitcast<u32>(best));
    }
}
