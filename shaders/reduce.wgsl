// Workgroup-wide reductions over 256 invocations, shared by stats.wgsl and gaps.wgsl (the host prepends this file):
// a fixed tree, so the same bits on every run. Call from uniform control flow (they have barriers); every invocation
// gets the result.

var<workgroup> red_f: array<f32, 256>;
var<workgroup> red_u: array<u32, 256>;

fn reduce_sum(lid: u32, v: f32) -> f32 {
    red_f[lid] = v;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step = step / 2u) {
        if (lid < step) {
            red_f[lid] = red_f[lid] + red_f[lid + step];
        }
        workgroupBarrier();
    }
    let r = red_f[0];
    workgroupBarrier();
    return r;
}

// Smallest value, ties to the lowest index: returns the index.
fn reduce_argmin(lid: u32, v: f32, i: u32) -> u32 {
    red_f[lid] = v;
    red_u[lid] = i;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step = step / 2u) {
        if (lid < step) {
            let ov = red_f[lid + step];
            let oi = red_u[lid + step];
            if (ov < red_f[lid] || (ov == red_f[lid] && oi < red_u[lid])) {
                red_f[lid] = ov;
                red_u[lid] = oi;
            }
        }
        workgroupBarrier();
    }
    let r = red_u[0];
    workgroupBarrier();
    return r;
}

fn reduce_min(lid: u32, v: f32) -> f32 {
    red_f[lid] = v;
    workgroupBarrier();
    for (var step = 128u; step > 0u; step = step / 2u) {
        if (lid < step) {
            red_f[lid] = min(red_f[lid], red_f[lid + step]);
        }
        workgroupBarrier();
    }
    let r = red_f[0];
    workgroupBarrier();
    return r;
}

