// K5: relations for every ordered pair (a, b), a != b, of every frame of a batch, a-major within each frame.
// The WGSL twin of src/geometry/relations.rs `relate`; keep the record layouts in sync with `ObjectSummary`
// (96 bytes) and `RelationRecord` (80 bytes) there. `gap_m` is not computed here (the host fills it from the
// exact closest-surface search); it is written as NaN, like the CPU's `relate`.

struct ObjectSummary {
    centroid: array<f32, 3>,
    sigma_m: f32,
    aabb_min: array<f32, 3>,
    yaw_rad: f32,
    aabb_max: array<f32, 3>,
    volume_m3: f32,
    obb_center: array<f32, 3>,
    distance_to_camera_m: f32,
    size: array<f32, 3>,
    median_depth_m: f32,
    points: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

struct RelationRecord {
    a: u32,
    b: u32,
    clock_hour: u32,
    pad: u32,
    left_m: f32,
    left_gap_m: f32,
    above_m: f32,
    above_gap_m: f32,
    front_m: f32,
    front_gap_m: f32,
    taller_m: f32,
    wider_m: f32,
    bigger_log_ratio: f32,
    distance_m: f32,
    horizontal_distance_m: f32,
    vertical_distance_m: f32,
    gap_m: f32,
    bearing_deg: f32,
    clock_margin_deg: f32,
    sigma_m: f32,
}

// One frame of the batch: its objects are objects[object_offset ..][.. object_count], its pairs are
// out[pair_offset ..][.. object_count * (object_count - 1)].
struct FrameRange {
    object_offset: u32,
    object_count: u32,
    pair_offset: u32,
    pad: u32,
}

struct Params {
    frames: u32,
    pairs: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> objects: array<ObjectSummary>;
@group(0) @binding(1) var<storage, read> frames: array<FrameRange>;
// The records as 16-byte words, RECORD_WORDS a record (RelationRecord's fields in order).
@group(0) @binding(2) var<storage, read_write> out: array<vec4<u32>>;
@group(0) @binding(3) var<uniform> params: Params;

const MIN_VOLUME_M3: f32 = 1e-9;

// Rust's f32::round: halves away from zero (WGSL's round() goes to even).
fn round_away(x: f32) -> f32 {
    return sign(x) * floor(abs(x) + 0.5);
}

fn ln_volume(v: f32) -> f32 {
    return log(max(v, MIN_VOLUME_M3));
}

const RECORD_WORDS: u32 = 5u;
// Records staged at a time: half a workgroup's (10,240 bytes, within WebGPU's default 16,384 bytes of workgroup
// storage).
const STAGED: u32 = 128u;
var<workgroup> staged: array<vec4<u32>, STAGED * RECORD_WORDS>;

// Record k of the batch (k < params.pairs): pair k's frame by binary search, then its relations.
fn relation_of(k: u32) -> RelationRecord {
    // The frame holding pair k: the last frame whose pair_offset <= k (binary search).
    var lo = 0u;
    var hi = params.frames;
    while (hi - lo > 1u) {
        let mid = (lo + hi) / 2u;
        if (frames[mid].pair_offset <= k) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let f = frames[lo];
    let local = k - f.pair_offset;
    let n = f.object_count;
    let i = local / (n - 1u);
    let jj = local % (n - 1u);
    let j = select(jj, jj + 1u, jj >= i);
    let a = objects[f.object_offset + i];
    let b = objects[f.object_offset + j];

    let d = array<f32, 3>(b.centroid[0] - a.centroid[0], b.centroid[1] - a.centroid[1], b.centroid[2] - a.centroid[2]);
    let h2 = d[0] * d[0] + d[1] * d[1];
    var bearing = degrees(atan2(d[0], d[1]));
    if (bearing <= -180.0) {
        bearing = bearing + 360.0;
    }
    let hour_f = round_away(bearing / 30.0);
    let clock_margin = 15.0 - abs(bearing - 30.0 * hour_f);
    let hour = ((i32(hour_f) % 12) + 12) % 12;
    let clock_hour = select(u32(hour), 12u, hour == 0);

    var r: RelationRecord;
    r.a = i;
    r.b = j;
    r.clock_hour = clock_hour;
    r.pad = 0u;
    r.left_m = d[0];
    r.left_gap_m = b.aabb_min[0] - a.aabb_max[0];
    r.above_m = a.centroid[2] - b.centroid[2];
    r.above_gap_m = a.aabb_min[2] - b.aabb_max[2];
    r.front_m = d[1];
    r.front_gap_m = b.aabb_min[1] - a.aabb_max[1];
    r.taller_m = a.size[2] - b.size[2];
    r.wider_m = a.size[0] - b.size[0];
    r.bigger_log_ratio = ln_volume(a.volume_m3) - ln_volume(b.volume_m3);
    r.distance_m = sqrt(h2 + d[2] * d[2]);
    r.horizontal_distance_m = sqrt(h2);
    r.vertical_distance_m = abs(d[2]);
    // gap_m: a quiet NaN, written as its bits by stage_record (no float NaN is made here).
    r.bearing_deg = bearing;
    r.clock_margin_deg = clock_margin;
    r.sigma_m = sqrt(a.sigma_m * a.sigma_m + b.sigma_m * b.sigma_m);
    return r;
}

// A record into staged[at .. at + RECORD_WORDS], in RelationRecord's field order.
fn stage_record(at: u32, r: RelationRecord) {
    staged[at] = vec4<u32>(r.a, r.b, r.clock_hour, r.pad);
    staged[at + 1u] = bitcast<vec4<u32>>(vec4<f32>(r.left_m, r.left_gap_m, r.above_m, r.above_gap_m));
    staged[at + 2u] = bitcast<vec4<u32>>(vec4<f32>(r.front_m, r.front_gap_m, r.taller_m, r.wider_m));
    staged[at + 3u] = bitcast<vec4<u32>>(
        vec4<f32>(r.bigger_log_ratio, r.distance_m, r.horizontal_distance_m, r.vertical_distance_m),
    );
    // gap_m is not computed here: a quiet NaN's bits, as the CPU's `relate` writes (the host fills it in later).
    staged[at + 4u] = vec4<u32>(
        0x7fc00000u,
        bitcast<u32>(r.bearing_deg),
        bitcast<u32>(r.clock_margin_deg),
        bitcast<u32>(r.sigma_m),
    );
}

// One invocation per pair (k = the workgroup's first pair + its index). A record written where it is computed would
// go out as 20 scalar stores 80 bytes apart across the invocations; instead the workgroup's records are staged in
// workgroup memory, half a workgroup at a time, and written out as 16-byte words by consecutive invocations (as the
// CUDA twin does, with all 256 at once).
@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) t: u32,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let first = (group.y * groups.x + group.x) * 256u;
    let k = first + t;
    var r: RelationRecord;
    if (k < params.pairs) {
        r = relation_of(k);
    }
    // The workgroup's records (the same in every invocation).
    let live = select(0u, min(params.pairs - first, 256u), first < params.pairs);
    for (var half = 0u; half < 256u / STAGED; half = half + 1u) {
        let base = half * STAGED;
        if (t / STAGED == half && k < params.pairs) {
            stage_record((t % STAGED) * RECORD_WORDS, r);
        }
        workgroupBarrier();
        let n = select(0u, min(live - base, STAGED), live > base);
        for (var w = t; w < n * RECORD_WORDS; w = w + 256u) {
            out[(first + base) * RECORD_WORDS + w] = staged[w];
        }
        workgroupBarrier();
    }
}
