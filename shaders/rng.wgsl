// The counter-based RNG of src/geometry/rng.rs (keep in sync): `lowbias32` and the draws built on it use only
// 32-bit wrapping integer arithmetic, so this computes the very same words as the CPU reference (pinned by the
// known values in its tests and by tests/parity.rs). WGSL has no includes: src/backend/gpu.rs prepends this file to
// the kernels that draw (ransac.wgsl).

fn lowbias32(v: u32) -> u32 {
    var x = v;
    x = x ^ (x >> 16u);
    x = x * 0x7feb352du;
    x = x ^ (x >> 15u);
    x = x * 0x846ca68bu;
    x = x ^ (x >> 16u);
    return x;
}

// The `draw`-th random word of `counter` in `stream` under `seed`.
fn draw_u32(seed: u32, stream: u32, counter: u32, draw: u32) -> u32 {
    let a = lowbias32(draw ^ 0x9e3779b9u);
    let b = lowbias32(counter ^ a);
    let c = lowbias32(stream ^ b);
    return lowbias32(seed ^ c);
}

// A uniformly distributed index in 0..n (modulo reduction); n > 0.
fn draw_index(seed: u32, stream: u32, counter: u32, draw: u32, n: u32) -> u32 {
    return draw_u32(seed, stream, counter, draw) % n;
}
