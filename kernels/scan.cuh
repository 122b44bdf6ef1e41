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

// scan_run over the whole of `counts`: launch with grid 1 and 1024 threads. For a few thousand counts (the host
// takes the tiled scan below for more: one block keeps too few loads in flight to stream a large table).
extern "C" __global__ void __launch_bounds__(SCAN_THREADS)
scan_counts(const u32* __restrict__ counts, u32* __restrict__ offsets, u32 n) {
    scan_run(counts, offsets, n);
}

// The tiled prefix sum, for many counts: tiles of SCAN_TILE counts, one block of BLOCK threads each, read and
// written coalesced (thread t takes counts base + k * BLOCK + t, k < SCAN_ITEMS). Three launches on one stream, no
// communication between the blocks of a launch:
//   scan_tile_sums    tile_sums[b] = the sum of tile b's counts;
//   scan_counts       over tile_sums (one block): each tile's first offset, the total last;
//   scan_tiles_apply  each tile's offsets from its first one, and offsets[n] = the total.
// Integer sums, so the offsets are the serial ones, as scan_counts' (whatever the tiling).
#define SCAN_ITEMS 16u
#define SCAN_TILE (BLOCK * SCAN_ITEMS)

// Grid ceil(n / SCAN_TILE), BLOCK threads.
extern "C" __global__ void scan_tile_sums(const u32* __restrict__ counts, u32 n, u32* __restrict__ tile_sums) {
    const u64 base = (u64)blockIdx.x * SCAN_TILE;
    u32 local = 0;
    for (u32 k = 0; k < SCAN_ITEMS; ++k) {
        const u64 i = base + k * BLOCK + threadIdx.x;
        if (i < n) local += counts[i];
    }
    u32 total;
    block_scan(local, &total);
    if (threadIdx.x == 0) tile_sums[blockIdx.x] = total;
}

// Grid and block as scan_tile_sums'; tile_offsets: scan_counts over its tile sums (gridDim.x + 1 entries).
extern "C" __global__ void scan_tiles_apply(const u32* __restrict__ counts, u32 n, const u32* __restrict__ tile_offsets,
                                            u32* __restrict__ offsets) {
    const u64 base = (u64)blockIdx.x * SCAN_TILE;
    u32 running = tile_offsets[blockIdx.x];
    for (u32 k = 0; k < SCAN_ITEMS; ++k) {
        const u64 i = base + k * BLOCK + threadIdx.x;
        const u32 c = i < n ? counts[i] : 0u;
        u32 total;
        const u32 inclusive = block_scan(c, &total);
        if (i < n) offsets[i] = running + inclusive - c;
        running += total;
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) offsets[n] = tile_offsets[gridDim.x];
}
