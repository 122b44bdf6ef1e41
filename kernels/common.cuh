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
