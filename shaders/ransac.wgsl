// K2: the ground-plane RANSAC of src/geometry/ransac.rs on the device, from the frame's cloud uploaded once:
//   gather_samples  the strided scoring subsample (its indices come from the host: 64-bit index arithmetic);
//   draw            the three points of every hypothesis, by the counter-based RNG of rng.wgsl (which the host
//                   prepends): the same indices as the CPU reference. The host builds each plane from the three
//                   points in f64 (`plane_through`, shared with the CPU), so every backend tests the very same planes;
//   score           per hypothesis, the subsample points within the inlier band (and, with normals, whose normal
//                   agrees with the plane's), one workgroup per hypothesis;
//   sample_supports the refinement's support among the subsample (a 0/1 mask), for one plane;
//   count_inliers   the final inlier count over all points, for one plane.
// The winner (highest score, lowest index on ties), the connected-support test and the 3x3 eigen-solve of the
// refinement run on the host, the same code for every backend (`fit_from_scores_on`).

// Keep in sync with `GpuHypothesis` in src/backend/gpu.rs (32 bytes).
struct Hypothesis {
    a: f32,
    b: f32,
    c: f32,
    d: f32,
    // 0: inadmissible (scores 0).
    admissible: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

// Keep in sync with `RansacParamsGpu` in src/backend/gpu.rs (32 bytes).
struct Params {
    hypotheses: u32,
    samples: u32,
    threshold: f32,
    // Cosine of the normal-agreement angle.
    min_cos: f32,
    // 1: test normals too.
    use_normals: u32,
    // Points in the cloud.
    points: u32,
    seed: u32,
    frame_key: u32,
}

// One plane's support test. Keep in sync with `GpuSupport` in src/backend/gpu.rs (32 bytes) and `Support` in
// src/geometry/ransac.rs.
struct SupportTest {
    a: f32,
    b: f32,
    c: f32,
    d: f32,
    threshold: f32,
    min_cos: f32,
    use_normals: u32,
    pad: u32,
}

@group(0) @binding(0) var<storage, read> hypotheses: array<Hypothesis>;
@group(0) @binding(1) var<storage, read_write> samples: array<f32>;
@group(0) @binding(2) var<storage, read> normals: array<f32>;
@group(0) @binding(3) var<storage, read_write> scores: array<u32>;
@group(0) @binding(4) var<uniform> params: Params;
@group(0) @binding(5) var<storage, read> cloud: array<f32>;
@group(0) @binding(6) var<storage, read> sample_index: array<u32>;
@group(0) @binding(7) var<storage, read_write> triples: array<u32>;
@group(0) @binding(8) var<storage, read_write> corners: array<f32>;
@group(0) @binding(9) var<storage, read_write> mask: array<u32>;
@group(0) @binding(10) var<storage, read_write> count: atomic<u32>;
@group(0) @binding(11) var<uniform> test: SupportTest;

var<workgroup> total: atomic<u32>;

// The same expression, in the same order, as `Support::test` on the CPU.
fn supports(a: f32, b: f32, c: f32, d: f32, threshold: f32, x: f32, y: f32, z: f32) -> bool {
    return !(abs(a * x + b * y + c * z + d) > threshold);
}

fn normal_agrees(a: f32, b: f32, c: f32, min_cos: f32, i: u32) -> bool {
    let m = abs(a * normals[3u * i] + b * normals[3u * i + 1u] + c * normals[3u * i + 2u]);
    return m >= min_cos;
}

fn linear(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * groups.x + wid.x) * 256u + lid;
}

@compute @workgroup_size(256)
fn gather_samples(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let s = linear(wid, groups, lid);
    if (s < params.samples) {
        let i = sample_index[s];
        samples[3u * s] = cloud[3u * i];
        samples[3u * s + 1u] = cloud[3u * i + 1u];
        samples[3u * s + 2u] = cloud[3u * i + 2u];
    }
}

@compute @workgroup_size(256)
fn draw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let h = linear(wid, groups, lid);
    if (h >= params.hypotheses || params.points < 3u) {
        return;
    }
    for (var d = 0u; d < 3u; d = d + 1u) {
        let i = draw_index(params.seed, params.frame_key, h, d, params.points);
        triples[3u * h + d] = i;
        corners[9u * h + 3u * d] = cloud[3u * i];
        corners[9u * h + 3u * d + 1u] = cloud[3u * i + 1u];
        corners[9u * h + 3u * d + 2u] = cloud[3u * i + 2u];
    }
}

@compute @workgroup_size(256)
fn score(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let h = wid.y * groups.x + wid.x;
    if (lid == 0u) {
        atomicStore(&total, 0u);
    }
    workgroupBarrier();
    if (h < params.hypotheses && hypotheses[h].admissible == 1u) {
        let hy = hypotheses[h];
        var n = 0u;
        for (var i = lid; i < params.samples; i = i + 256u) {
            if (!supports(hy.a, hy.b, hy.c, hy.d, params.threshold, samples[3u * i], samples[3u * i + 1u],
                          samples[3u * i + 2u])) {
                continue;
            }
            if (params.use_normals == 1u && !normal_agrees(hy.a, hy.b, hy.c, params.min_cos, i)) {
                continue;
            }
            n = n + 1u;
        }
        atomicAdd(&total, n);
    }
    workgroupBarrier();
    if (lid == 0u && h < params.hypotheses) {
        scores[h] = atomicLoad(&total);
    }
}

@compute @workgroup_size(256)
fn sample_supports(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let i = linear(wid, groups, lid);
    if (i >= params.samples) {
        return;
    }
    var ok = supports(test.a, test.b, test.c, test.d, test.threshold, samples[3u * i], samples[3u * i + 1u],
                      samples[3u * i + 2u]);
    if (ok && test.use_normals == 1u) {
        ok = normal_agrees(test.a, test.b, test.c, test.min_cos, i);
    }
    mask[i] = select(0u, 1u, ok);
}

@compute @workgroup_size(256)
fn count_inliers(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    if (lid == 0u) {
        atomicStore(&total, 0u);
    }
    workgroupBarrier();
    let i = linear(wid, groups, lid);
    if (i < params.points
        && supports(test.a, test.b, test.c, test.d, test.threshold, cloud[3u * i], cloud[3u * i + 1u],
                    cloud[3u * i + 2u])) {
        atomicAdd(&total, 1u);
    }
    workgroupBarrier();
    if (lid == 0u) {
        // Counts are order-independent: the sum is exact whatever the schedule.
        atomicAdd(&count, atomicLoad(&total));
    }
}
