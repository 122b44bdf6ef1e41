// K2: scores of ground-plane hypotheses: for each hypothesis, the number of points of the scoring subsample within
// the inlier band (and, with normals, whose normal agrees with the plane's). The WGSL twin of `score_hypotheses`
// in src/geometry/ransac.rs. The hypotheses themselves (the counter-based draws of src/geometry/rng.rs and the
// plane through the three points, in f64) are built by the host, so every backend scores the very same planes;
// the O(hypotheses x samples) counting runs here, one workgroup per hypothesis.

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

struct Params {
    hypotheses: u32,
    samples: u32,
    threshold: f32,
    // Cosine of the normal-agreement angle.
    min_cos: f32,
    // 1: test normals too.
    use_normals: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<storage, read> hypotheses: array<Hypothesis>;
@group(0) @binding(1) var<storage, read> samples: array<f32>;
@group(0) @binding(2) var<storage, read> normals: array<f32>;
@group(0) @binding(3) var<storage, read_write> scores: array<u32>;
@group(0) @binding(4) var<uniform> params: Params;

var<workgroup> total: atomic<u32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let h = wid.y * groups.x + wid.x;
    if (lid == 0u) {
        atomicStore(&total, 0u);
    }
    workgroupBarrier();
    if (h < params.hypotheses && hypotheses[h].admissible == 1u) {
        let hy = hypotheses[h];
        var count = 0u;
        for (var i = lid; i < params.samples; i = i + 256u) {
            let x = samples[3u * i];
            let y = samples[3u * i + 1u];
            let z = samples[3u * i + 2u];
            if (abs(hy.a * x + hy.b * y + hy.c * z + hy.d) > params.threshold) {
                continue;
            }
            if (params.use_normals == 1u) {
                let m = abs(hy.a * normals[3u * i] + hy.b * normals[3u * i + 1u] + hy.c * normals[3u * i + 2u]);
                if (!(m >= params.min_cos)) {
                    continue;
                }
            }
            count = count + 1u;
        }
        atomicAdd(&total, count);
    }
    workgroupBarrier();
    if (lid == 0u && h < params.hypotheses) {
        scores[h] = atomicLoad(&total);
    }
}
