// Block-wide reductions over BLOCK threads, for stats.cu: a fixed tree, so the same bits on
// every run. `red` (and `red_u`) are the caller's shared arrays of BLOCK entries. Call from every thread of the block
// (they have barriers); every thread gets the result.

__device__ float reduce_sum(float* red, float v) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (u32 step = BLOCK / 2; step > 0; step >>= 1) {
        if (threadIdx.x < step) red[threadIdx.x] = red[threadIdx.x] + red[threadIdx.x + step];
        __syncthreads();
    }
    const float r = red[0];
    __syncthreads();
    return r;
}

__device__ float reduce_min(float* red, float v) {
    red[threadIdx.x] = v;
    __syncthreads();
    for (u32 step = BLOCK / 2; step > 0; step >>= 1) {
        if (threadIdx.x < step) red[threadIdx.x] = fminf(red[threadIdx.x], red[threadIdx.x + step]);
        __syncthreads();
    }
    const float r = red[0];
    __syncthreads();
    return r;
}

// Smallest value, ties to the lowest index: returns the index.
__device__ u32 reduce_argmin(float* red, u32* red_u, float v, u32 i) {
    red[threadIdx.x] = v;
    red_u[threadIdx.x] = i;
    __syncthreads();
    for (u32 step = BLOCK / 2; step > 0; step >>= 1) {
        if (threadIdx.x < step) {
            const float ov = red[threadIdx.x + step];
            const u32 oi = red_u[threadIdx.x + step];
            if (ov < red[threadIdx.x] || (ov == red[threadIdx.x] && oi < red_u[threadIdx.x])) {
                red[threadIdx.x] = ov;
                red_u[threadIdx.x] = oi;
            }
        }
        __syncthreads();
    }
    const u32 r = red_u[0];
    __syncthreads();
    return r;
}

