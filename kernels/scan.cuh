// Block-wide prefix sums, shared by the kernels that place outputs by prefix sums (unproject.cu, group.cu,
// stats.cu): stable output order without atomic compaction (DESIGN.md, decision 3).

// Inclusive prefix sum of `value` over the threads of a block (blockDim.x a multiple of 32, at most 1024): thread
// t gets the sum of the values of threads 0..=t, and `*total` the sum over the block. Warp shuffles, then the
// warps' sums. Call from every thread of the block (it has barriers).
__device__ u32 block_scan(u32 value, u32* total) {
    __shared__ u32 warp_sums[32];
    const u32 lane = threadIdx.x & 31u;
    const u32 warp = threadIdx.x >> 5;
    const u32 warps = blockDim.x >> 5;
    u32 v = value;
    for (u32 o = 1; o < 32; o <<= 1) {
        u32 t = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v += t;
    }
    if (lane == 31u) warp_sums[warp] = v;
    __syncthreads();
    if (warp == 0) {
        u32 s = lane < warps ? warp_sums[lane] : 0u;
        for (u32 o = 1; o < 32; o <<= 1) {
            u32 t = __shfl_up_sync(0xffffffffu, s, o);
            if (lane >= o) s += t;
        }
        if (lane < warps) warp_sums[lane] = s;
    }
    __syncthreads();
    const u32 result = v + (warp > 0 ? warp_sums[warp - 1] : 0u);
    *total = warp_sums[warps - 1];
    __syncthreads();
    return result;
}

// block_scan of a flag (1 or 0) per thread, by ballot: thread t gets how many of threads 0..=t are flagged, and
// `*total` how many of the block are. One warp ballot and two barriers, against block_scan's ten shuffles and three
// barriers (the ranks are the same). Call from every thread of the block (blockDim.x a multiple of 32, at most 1024;
// it has barriers).
__device__ u32 block_rank(bool flag, u32* total) {
    __shared__ u32 warp_counts[32];
    const u32 lane = threadIdx.x & 31u;
    const u32 warp = threadIdx.x >> 5;
    const u32 warps = blockDim.x >> 5;
    const u32 ballot = __ballot_sync(0xffffffffu, flag);
    if (lane == 0u) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    u32 before = 0, all = 0;
    for (u32 w = 0; w < warps; ++w) {
        const u32 c = warp_counts[w];
        if (w < warp) before += c;
        all += c;
    }
    *total = all;
    __syncthreads();  // warp_counts is read by every thread before the next call writes it
    // Lanes 0..=lane (for lane 31, 2 << 31 wraps to 0 and the mask is every lane).
    return before + __popc(ballot & ((2u << lane) - 1u));
}

// Exclusive prefix sum of `n` counts into `offsets` (n + 1 entries: the offsets, then the total), by the calling
// block (1024 threads at most, a multiple of 32; every thread calls it): each thread sums a contiguous run of counts,
// the runs' sums are scanned together, then each thread writes its run's offsets. The runs are in order, so the
// result is the serial one.
__device__ void scan_run(const u32* __restrict__ counts, u32* __restrict__ offsets, u32 n) {
    const u32 per = (n + blockDim.x - 1) / blockDim.x;
    const u32 start = min(threadIdx.x * per, n);
    const u32 end = min(start + per, n);
    u32 local = 0;
    for (u32 b = start; b < end; ++b) local += counts[b];
    u32 total;
    const u32 inclusive = block_scan(local, &total);
    u32 running = inclusive - local;
    for (u32 b = start; b < end; ++b) {
        offsets[b] = running;
        running += counts[b];
    }
    if (threadIdx.x == 0) offsets[n] = total;
}

// scan_run over the whole of `counts`: launch with grid 1 and 1024 threads.
extern "C" __global__ void __launch_bounds__(SCAN_THREADS)
scan_counts(const u32* __restrict__ counts, u32* __restrict__ offsets, u32 n) {
    scan_run(counts, offsets, n);
}
