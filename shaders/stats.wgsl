// K4: per-object reductions for the statistics of src/geometry/stats.rs `summarize`, one workgroup per object,
// every object of a batch in one dispatch. `block_scan` comes from scan.wgsl and the reductions from reduce.wgsl,
// which the host prepends.
//   - sums of the canonical coordinates relative to the object's first point (f32; fixed strides, then a fixed
//     tree, so the same bits on every run), combined in f64 with the first point on the host: the centroid, within
//     a tolerance of the CPU's f64 sum;
//   - the axis-aligned box (min / max: exact);
//   - the median camera depth: the (n/2)-th smallest value in `f32::total_cmp` order, found exactly by a 4-pass
//     radix select on order-preserving keys (workgroup histograms of 256 bins);
//   - hull candidates of the horizontal footprint (Akl-Toussaint): every point that is not strictly inside the
//     16-gon of the extreme points in the 16 directions of src/geometry/obb.rs `POLYGON_DIRECTIONS` (`direction`),
//     by a margin that covers f32 rounding, so no hull vertex is ever dropped. Each object's candidates go to one
//     compact list, at an offset claimed with one atomicAdd on `candidate_total`, so the host reads back only the
//     candidates. It builds the hull and the minimum-area rectangle from them with the CPU reference's f64 code:
//     the same hull, so the very same oriented box.

struct ObjectRange {
    offset: u32,
    count: u32,
}

// Keep in sync with `GpuObjectStats` in src/backend/layout.rs (64 bytes).
struct ObjectStats {
    sum_x: f32,
    sum_y: f32,
    sum_z: f32,
    points: u32,
    lo_x: f32,
    lo_y: f32,
    lo_z: f32,
    median_bits: u32,
    hi_x: f32,
    hi_y: f32,
    hi_z: f32,
    candidates: u32,
    candidate_offset: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

// Keep in sync with `StatsParams` in src/backend/gpu.rs (16 bytes).
struct Params {
    objects: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> points: array<f32>;
@group(0) @binding(1) var<storage, read> depth_bits: array<u32>;
@group(0) @binding(2) var<storage, read> objects: array<ObjectRange>;
@group(0) @binding(3) var<storage, read_write> stats: array<ObjectStats>;
// Every object's hull candidates (indices within the object, ascending), each object's at its candidate_offset.
@group(0) @binding(4) var<storage, read_write> candidates: array<u32>;
@group(0) @binding(5) var<uniform> params: Params;
// How many candidates are listed (zero before the dispatch).
@group(0) @binding(6) var<storage, read_write> candidate_total: atomic<u32>;

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> sel_prefix: u32;
var<workgroup> sel_k: u32;
var<workgroup> written: u32;
var<workgroup> listed_at: u32;
var<workgroup> edges: u32;
var<workgroup> poly_x: array<f32, 16>;
var<workgroup> poly_y: array<f32, 16>;
var<workgroup> range: ObjectRange;

// The order of `f32::total_cmp` as unsigned keys.
fn order_key(bits: u32) -> u32 {
    if ((bits & 0x80000000u) != 0u) {
        return ~bits;
    }
    return bits | 0x80000000u;
}

fn key_bits(key: u32) -> u32 {
    if ((key & 0x80000000u) != 0u) {
        return key ^ 0x80000000u;
    }
    return ~key;
}

fn px(i: u32) -> f32 {
    return points[3u * i];
}
fn py(i: u32) -> f32 {
    return points[3u * i + 1u];
}
fn pz(i: u32) -> f32 {
    return points[3u * i + 2u];
}

// The hull filter's direction d (0..16), counter-clockwise from -y: (0, -1), (1, -2), (1, -1), (2, -1), each turned
// by d / 4 quarter turns, as `POLYGON_DIRECTIONS` in src/geometry/obb.rs.
fn direction(d: u32) -> vec2<f32> {
    let k = d & 3u;
    let a = f32((k + 1u) >> 1u);
    let b = select(-1.0, -2.0, k == 1u);
    switch (d >> 2u) {
        case 0u: { return vec2<f32>(a, b); }
        case 1u: { return vec2<f32>(-b, a); }
        case 2u: { return vec2<f32>(-a, -b); }
        default: { return vec2<f32>(b, -a); }
    }
}

// Twice the signed area of (o, a, p): positive when p is left of o -> a.
fn cross2(ox: f32, oy: f32, ax: f32, ay: f32, x: f32, y: f32) -> f32 {
    return (ax - ox) * (y - oy) - (ay - oy) * (x - ox);
}

@compute @workgroup_size(256)
fn summarize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let o = wid.y * groups.x + wid.x;
    if (lid == 0u) {
        if (o < params.objects) {
            range = objects[o];
        } else {
            range = ObjectRange(0u, 0u);
        }
    }
    let r = workgroupUniformLoad(&range);
    let start = r.offset;
    let n = r.count;
    if (n == 0u) {
        return;
    }

    // Sums (relative to the first point), box, and for the hull filter below each invocation's extreme point in each
    // direction (its lowest index on ties), in one pass over the points (a pass a direction read them 16 more times).
    let rx = px(start);
    let ry = py(start);
    let rz = pz(start);
    var s = vec3<f32>(0.0);
    var lo = vec3<f32>(3.4e38);
    var hi = vec3<f32>(-3.4e38);
    var best: array<f32, 16>;
    var best_i: array<u32, 16>;
    for (var d = 0u; d < 16u; d = d + 1u) {
        best[d] = 3.4e38;
        best_i[d] = 0xffffffffu;
    }
    for (var i = lid; i < n; i = i + 256u) {
        let p = vec3<f32>(px(start + i), py(start + i), pz(start + i));
        s = s + (p - vec3<f32>(rx, ry, rz));
        lo = min(lo, p);
        hi = max(hi, p);
        for (var d = 0u; d < 16u; d = d + 1u) {
            let dir = direction(d);
            let key = -(dir.x * p.x + dir.y * p.y);
            if (key < best[d]) {
                best[d] = key;
                best_i[d] = i;
            }
        }
    }
    let sum_x = reduce_sum(lid, s.x);
    let sum_y = reduce_sum(lid, s.y);
    let sum_z = reduce_sum(lid, s.z);
    let lo_x = reduce_min(lid, lo.x);
    let lo_y = reduce_min(lid, lo.y);
    let lo_z = reduce_min(lid, lo.z);
    let hi_x = -reduce_min(lid, -hi.x);
    let hi_y = -reduce_min(lid, -hi.y);
    let hi_z = -reduce_min(lid, -hi.z);

    // Median depth: radix select of the (n/2)-th smallest key, 8 bits per pass from the top.
    if (lid == 0u) {
        sel_prefix = 0u;
        sel_k = n / 2u;
    }
    for (var round = 0u; round < 4u; round = round + 1u) {
        let shift = 24u - 8u * round;
        atomicStore(&hist[lid], 0u);
        workgroupBarrier();
        let prefix = sel_prefix;
        var mask = 0u;
        if (round > 0u) {
            mask = 0xffffffffu << (shift + 8u);
        }
        for (var i = lid; i < n; i = i + 256u) {
            let key = order_key(depth_bits[start + i]);
            if ((key & mask) == prefix) {
                atomicAdd(&hist[(key >> shift) & 255u], 1u);
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            var k = sel_k;
            var cum = 0u;
            for (var b = 0u; b < 256u; b = b + 1u) {
                let c = atomicLoad(&hist[b]);
                if (k < cum + c) {
                    sel_prefix = prefix | (b << shift);
                    sel_k = k - cum;
                    break;
                }
                cum = cum + c;
            }
        }
        workgroupBarrier();
    }
    let median_key = sel_prefix;

    // Hull candidates: the extreme point in each direction (lowest index on ties: the invocations' extremes from the
    // first pass, reduced), the polygon of those points with repeats dropped, then the conservative filter: a point
    // is dropped when it is left of every edge by the margin. (Any closed chain of the points would do: a point left
    // of each of its edges is inside their hull.)
    for (var d = 0u; d < 16u; d = d + 1u) {
        let q = reduce_argmin(lid, best[d], best_i[d]);
        // No finite key (not from real points): any point will do.
        let at = start + select(0u, q, q < n);
        if (lid == 0u) {
            poly_x[d] = px(at);
            poly_y[d] = py(at);
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        var m = 0u;
        for (var d = 0u; d < 16u; d = d + 1u) {
            let x = poly_x[d];
            let y = poly_y[d];
            if (m == 0u || x != poly_x[m - 1u] || y != poly_y[m - 1u]) {
                poly_x[m] = x;
                poly_y[m] = y;
                m = m + 1u;
            }
        }
        while (m > 1u && poly_x[0] == poly_x[m - 1u] && poly_y[0] == poly_y[m - 1u]) {
            m = m - 1u;
        }
        // Fewer than 3 distinct points: no filter.
        edges = select(m, 0u, m < 3u);
        written = 0u;
    }
    let m = workgroupUniformLoad(&edges);
    // f32 rounding of each cross product is below 1e-6 (span_x + span_y)^2: a point dropped by this margin is
    // strictly inside the polygon (and so the hull) in exact arithmetic too.
    let span = (hi_x - lo_x) + (hi_y - lo_y);
    let margin = 4e-6 * span * span;
    // Twice: count the candidates and claim their place in the list, then write them there in point order.
    for (var round = 0u; round < 2u; round = round + 1u) {
        if (round == 1u) {
            if (lid == 0u) {
                listed_at = atomicAdd(&candidate_total, written);
                written = 0u;
            }
            workgroupBarrier();
        }
        let at = select(0u, listed_at, round == 1u);
        for (var base = 0u; base < n; base = base + 256u) {
            let i = base + lid;
            var keep = false;
            if (i < n) {
                let x = px(start + i);
                let y = py(start + i);
                var inside = m > 0u;
                for (var e = 0u; e < m; e = e + 1u) {
                    let f = select(e + 1u, 0u, e + 1u == m);
                    if (!(cross2(poly_x[e], poly_y[e], poly_x[f], poly_y[f], x, y) > margin)) {
                        inside = false;
                    }
                }
                keep = !inside;
            }
            let before = written;
            let rank = block_scan(lid, select(0u, 1u, keep));
            if (round == 1u && keep) {
                candidates[at + before + rank - 1u] = i;
            }
            if (lid == 255u) {
                written = before + rank;
            }
            workgroupBarrier();
        }
    }

    if (lid == 0u) {
        stats[o] = ObjectStats(sum_x, sum_y, sum_z, n, lo_x, lo_y, lo_z, key_bits(median_key), hi_x, hi_y, hi_z,
                               written, listed_at, 0u, 0u, 0u);
    }
}
