// The device side of the CUDA emulator (see README.md beside this file): what the kernels of kernels/ use from CUDA
// C++, defined for a host C++17 compiler. Each module's source (common.cuh, its headers and its kernel file, exactly
// as NVRTC gets it) is compiled after this header inside a namespace of its own, with `extern "C"` removed (two
// modules define `scan_counts`). Every CUDA thread is a fiber; `__syncthreads` and the warp shuffles hand control
// back to the block's scheduler in driver.cpp, so barriers and shuffles have CUDA's semantics (a thread that reads
// a shuffle slot or shared memory before every thread has written it would read the wrong value, as on a GPU).
#pragma once

#include <math.h>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
// A kernel's declared block (the PTX's `.maxntid`, which driver.cpp reads and enforces at launch).
#define __launch_bounds__(...)
// Shared memory: one copy per OS thread, and an OS thread runs one block at a time, so every thread (fiber) of a
// block sees the same variable and no other block does.
#define __shared__ static thread_local
// The kernels are built as for compute_90, the compute capability the emulated device reports (cuDeviceGetAttribute):
// code under `#if __CUDA_ARCH__ >= 800` is the code that runs.
#define __CUDA_ARCH__ 900

namespace emu {

struct uint3 {
    unsigned x, y, z;
};

// The running thread's coordinates (set by the scheduler before each fiber switch).
struct Coordinates {
    uint3 thread_idx;
    uint3 block_idx;
    uint3 block_dim;
    uint3 grid_dim;
};
Coordinates& coordinates();

// Barriers (driver.cpp): the calling fiber waits until every live thread of its block (or warp) has arrived.
unsigned syncthreads_count(int predicate);
// The value of lane `source` of the calling warp (or the caller's own value when `source` is not a lane of it).
unsigned shuffle(unsigned value, int source);
unsigned ballot(unsigned predicate);
unsigned warp_sum(unsigned value);
unsigned warp_min(unsigned value);
unsigned lane_id();

// A launch bound to its arguments: cuLaunchKernel's argument pointers are read when it is called (as CUDA copies
// them then), and the kernel runs later, when its stream gets to it (driver.cpp). `pointers` holds the values of
// the pointer parameters, each with whether the kernel may write through it (not a pointer to const) and the
// alignment of what it points to: the driver checks them against the live device buffers when the kernel runs (and
// their alignment, which a GPU's loads and stores require), and against other streams' queued work.
struct PointerArg {
    uintptr_t value;
    bool writes;
    size_t align;
};
struct Bound {
    std::function<void()> run;
    std::vector<PointerArg> pointers;
};

// A kernel entry point: copies cuLaunchKernel's arguments into a Bound call of the kernel.
using Entry = Bound (*)(void** params);

// What a pointer parameter points to (`void` for the other parameters). A `T* __restrict` parameter is not
// std::is_pointer, hence the specialisations.
template <typename T>
struct pointee {
    using type = void;
};
template <typename T>
struct pointee<T*> {
    using type = T;
};
template <typename T>
struct pointee<T* __restrict> {
    using type = T;
};

template <typename T>
inline void note_pointer(const T& value, std::vector<PointerArg>& pointers) {
    using U = typename pointee<T>::type;
    if constexpr (!std::is_void<U>::value) {
        const bool writes = !std::is_const<U>::value;
        pointers.push_back(
            PointerArg{reinterpret_cast<uintptr_t>(static_cast<const volatile void*>(value)), writes, alignof(U)});
    }
}

template <typename... A, std::size_t... I>
inline Bound bind(void (*kernel)(A...), void** params, std::index_sequence<I...>) {
    auto args = std::make_tuple(*static_cast<std::remove_cv_t<std::remove_reference_t<A>>*>(params[I])...);
    Bound bound;
    std::apply([&](const auto&... a) { (note_pointer(a, bound.pointers), ...); }, args);
    bound.run = [kernel, args]() { std::apply(kernel, args); };
    return bound;
}

// Registers a module's entry points under its kernel file's name (driver.cpp matches cuModuleLoadData's PTX to it
// by its entry points).
struct Registrar {
    Registrar(const char* file, const char* const* names, const Entry* entries, int count);
};

}  // namespace emu

#define ENTRY(ns, name)                                                                                               \
    [](void** params) {                                                                                               \
        return emu::bind(&ns::name, params, std::make_index_sequence<emu::arity<decltype(ns::name)>::value>{});       \
    }

namespace emu {
template <typename F>
struct arity;
template <typename... A>
struct arity<void(A...)> {
    static constexpr std::size_t value = sizeof...(A);
};
}  // namespace emu

#define threadIdx (emu::coordinates().thread_idx)
#define blockIdx (emu::coordinates().block_idx)
#define blockDim (emu::coordinates().block_dim)
#define gridDim (emu::coordinates().grid_dim)

// Aligned as CUDA aligns them (a GPU loads a uint4 only from a 16-byte aligned address; the driver checks pointer
// arguments against their type's alignment).
struct alignas(8) uint2 {
    unsigned x, y;
};
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }

inline void __syncthreads() { emu::syncthreads_count(0); }
inline int __syncthreads_count(int predicate) { return (int)emu::syncthreads_count(predicate != 0); }

// Warp shuffles over the full warp (every kernel passes the full mask; width 32).
inline unsigned __shfl_up_sync(unsigned, unsigned value, unsigned delta) {
    const unsigned lane = emu::lane_id();
    return emu::shuffle(value, lane >= delta ? (int)(lane - delta) : -1);
}
inline unsigned __shfl_down_sync(unsigned, unsigned value, unsigned delta) {
    return emu::shuffle(value, (int)(emu::lane_id() + delta));
}

inline unsigned __ballot_sync(unsigned, int predicate) { return emu::ballot(predicate != 0 ? 1u : 0u); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline unsigned __reduce_add_sync(unsigned, unsigned value) { return emu::warp_sum(value); }
inline unsigned __reduce_min_sync(unsigned, unsigned value) { return emu::warp_min(value); }

// Global and shared atomics: real atomics (blocks may run on several OS threads).
inline unsigned atomicAdd(unsigned* address, unsigned value) {
    return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}
inline unsigned atomicSub(unsigned* address, unsigned value) {
    return __atomic_fetch_sub(address, value, __ATOMIC_RELAXED);
}
inline unsigned atomicOr(unsigned* address, unsigned value) {
    return __atomic_fetch_or(address, value, __ATOMIC_RELAXED);
}
inline unsigned atomicMin(unsigned* address, unsigned value) {
    unsigned old = __atomic_load_n(address, __ATOMIC_RELAXED);
    while (value < old &&
           !__atomic_compare_exchange_n(address, &old, value, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    return old;
}
inline unsigned atomicCAS(unsigned* address, unsigned compare, unsigned value) {
    __atomic_compare_exchange_n(address, &compare, value, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return compare;
}

// IEEE single precision as written (the emulator is compiled with -ffp-contract=off, as NVRTC's --fmad=false).
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline unsigned __float_as_uint(float f) {
    unsigned bits;
    std::memcpy(&bits, &f, sizeof bits);
    return bits;
}
inline float __uint_as_float(unsigned bits) {
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}
