// The counter-based RNG of src/geometry/rng.rs (keep in sync, and with shaders/rng.wgsl): `lowbias32` and the
// draws built on it use only 32-bit wrapping integer arithmetic, so this computes the very same words as the CPU
// reference (pinned by the known values in its tests and by the parity tests).

__device__ __forceinline__ u32 lowbias32(u32 x) {
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

// The `draw`-th random word of `counter` in `stream` under `seed`.
__device__ __forceinline__ u32 draw_u32(u32 seed, u32 stream, u32 counter, u32 draw) {
    u32 a = lowbias32(draw ^ 0x9e3779b9u);
    u32 b = lowbias32(counter ^ a);
    u32 c = lowbias32(stream ^ b);
    return lowbias32(seed ^ c);
}

// A uniformly distributed index in 0..n (modulo reduction); n > 0.
__device__ __forceinline__ u32 draw_index(u32 seed, u32 stream, u32 counter, u32 draw, u32 n) {
    return draw_u32(seed, stream, counter, draw) % n;
}
