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
//     quadrilateral of the extreme points in x + y and x - y, by a margin that covers f32 rounding, so no hull
//     vertex is ever dropped. The host builds the hull and the minimum-area rectangle from the candidates with the
//     CPU reference's f64 code: the same hull, so the very same oriented box.

struct ObjectRange {
    offset: u32,
    count: u32,
}

// Keep in sync with `GpuObjectStats` in src/backend/gpu.rs (48 bytes).
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
// Per object, at its offset: the indices (within the object, ascending) of its hull candidates.
@group(0) @binding(4) var<storage, read_write> candidates: array<u32>;
@group(0) @binding(5) var<uniform> params: Params;

var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> sel_prefix: u32;
var<workgroup> sel_k: u32;
var<workgroup> written: u32;
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

    // Sums (relative to the first point), box.
    let rx = px(start);
    let ry = py(start);
    let rz = pz(start);
    var s = vec3<f32>(0.0);
    var lo = vec3<f32>(3.4e38);
    var hi = vec3<f32>(-3.4e38);
    for (var i = lid; i < n; i = i + 256u) {
        let p = vec3<f32>(px(start + i), py(start + i), pz(start + i));
        s = s + (p - vec3<f32>(rx, ry, rz));
        lo = min(lo, p);
        hi = max(hi, p);
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

    // Hull candidates: the extreme points in x + y and x - y (lowest index on ties), then the conservative filter.
    var best_s_lo = 3.4e38;
    var best_s_lo_i = 0xffffffffu;
    var best_s_hi = 3.4e38;
    var best_s_hi_i = 0xffffffffu;
    var best_t_lo = 3.4e38;
    var best_t_lo_i = 0xffffffffu;
    var best_t_hi = 3.4e38;
    var best_t_hi_i = 0xffffffffu;
    for (var i = lid; i < n; i = i + 256u) {
        let sv = px(start + i) + py(start + i);
        let tv = px(start + i) - py(start + i);
        if (sv < best_s_lo) {
            best_s_lo = sv;
            best_s_lo_i = i;
        }
        if (-sv < best_s_hi) {
            best_s_hi = -sv;
            best_s_hi_i = i;
        }
        if (tv < best_t_lo) {
            best_t_lo = tv;
            best_t_lo_i = i;
        }
        if (-tv < best_t_hi) {
            best_t_hi = -tv;
            best_t_hi_i = i;
        }
    }
    // Counter-clockwise: min(x + y), max(x - y), max(x + y), min(x - y), as the CPU's `hull_candidates`.
    var q: array<u32, 4>;
    q[0] = start + reduce_argmin(lid, best_s_lo, best_s_lo_i);
    q[1] = start + reduce_argmin(lid, best_t_hi, best_t_hi_i);
    q[2] = start + reduce_argmin(lid, best_s_hi, best_s_hi_i);
    q[3] = start + reduce_argmin(lid, best_t_lo, best_t_lo_i);
    // f32 rounding of each cross product is below 1e-6 (span_x + span_y)^2: a point dropped by this margin is
    // strictly inside the quadrilateral (and so the hull) in exact arithmetic too.
    let span = (hi_x - lo_x) + (hi_y - lo_y);
    let margin = 4e-6 * span * span;
    if (lid == 0u) {
        written = 0u;
    }
    workgroupBarrier();
    for (var base = 0u; base < n; base = base + 256u) {
        let i = base + lid;
        var keep = false;
        if (i < n) {
            let x = px(start + i);
            let y = py(start + i);
            var inside = true;
            for (var e = 0u; e < 4u; e = e + 1u) {
                let a = q[e];
                let b = q[(e + 1u) % 4u];
                if (!(cross2(px(a), py(a), px(b), py(b), x, y) > margin)) {
                    inside = false;
                }
            }
            keep = !inside;
        }
        let before = written;
        let rank = block_scan(lid, select(0u, 1u, keep));
        if (keep) {
            candidates[start + before + rank - 1u] = i;
        }
        if (lid == 255u) {
            written = before + rank;
        }
        workgroupBarrier();
    }

    if (lid == 0u) {
        stats[o] = ObjectStats(sum_x, sum_y, sum_z, n, lo_x, lo_y, lo_z, key_bits(median_key), hi_x, hi_y, hi_z,
                               written);
    }
}
