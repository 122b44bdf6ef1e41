// Shared by every CUDA kernel of spatialsynth. NVRTC compiles each module from one string: src/backend/cuda.rs
// prepends this file (and rng.cuh or scan.cuh where a kernel uses them) to the kernel's own file, as
// src/backend/gpu.rs does for the WGSL twins. Compiled with --fmad=false (see `compile_options` in
// src/backend/cuda.rs): every f32 expression is rounded as written, so the device computes the same bits as the
// CPU reference wherever the operations are IEEE (add, mul, div, sqrt).

typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;

// Threads per block of every kernel that uses a block-wide scan or reduction (launch with exactly this many).
#define BLOCK 256
// Threads per block of the one-block scans (scan.cuh's scan_counts, group.cu's scan_frames).
#define SCAN_THREADS 1024
// A kernel launched with more than 256 threads a block declares its block, `__launch_bounds__(SCAN_THREADS)`: the
// compiler then keeps its registers within what such a block can have (64 a thread at 1,024 threads; a block of 256
// threads can have the most a thread may use, 255). A kernel compiled without the bound could need more and fail
// every launch on the GPU (CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES) while compiling cleanly. The PTX says it
// (`.maxntid`): tests/cuda_kernels.rs checks it against the block the backend launches with (`block_of` in
// src/backend/cuda.rs), the backend checks every kernel's limit as the driver reports it when it loads the kernels,
// and the CPU emulator refuses a launch of more threads than the bound. The kernels of BLOCK threads declare none: a
// bound changes ptxas's register heuristics (with `__launch_bounds__(BLOCK)` sample_normals drops to 32 registers
// and spills on sm_80, summarize rises to 48 on sm_90: BENCHMARKS.md), and any kernel fits a block of 256.

// The sum of `v` over the 32 lanes of a warp, for lane 0 (every lane gets it from sm_80 on: one `__reduce_add_sync`;
// five shuffles before). Call from every lane.
__device__ __forceinline__ u32 warp_sum(u32 v) {
#if __CUDA_ARCH__ >= 800
    return __reduce_add_sync(0xffffffffu, v);
#else
    for (u32 o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
#endif
}
