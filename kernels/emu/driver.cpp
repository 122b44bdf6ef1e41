// The host side of the CUDA emulator (see README.md beside this file): the part of the CUDA driver API that cudarc
// and src/backend/cuda.rs call, implemented on the CPU, built as a `libcuda.so` that the CUDA backend loads instead
// of NVIDIA's when its folder comes first on LD_LIBRARY_PATH. It runs the kernels of kernels/ compiled for the host
// from the very same source (cuda_emu.h); NVRTC still compiles that source to PTX, and a module's PTX is matched to
// the emulated module with the same entry points. It is a correctness tool, not a GPU: no timing it gives means
// anything, and the device says so in its name.
//
// - Memory: device memory is host memory; every allocation is filled with 0xff bytes (as uninitialised device
//   memory may hold anything: a kernel that reads a buffer nobody wrote reads NaNs and 0xffffffff), and copies and
//   memsets are checked against the allocation they touch.
// - Streams and events: stream-ordered work is queued and runs as late as a GPU may run it, when the host or another
//   stream must see it; races with other streams' queued work, and host writes to page-locked memory a queued copy
//   still reads, fail the call (see "Streams" below; `SPATIALSYNTH_CUDA_EMU_STREAMS=immediate`: every call
//   completes before it returns).
// - Kernels: each block runs on one OS thread, blocks spread over `SPATIALSYNTH_CUDA_EMU_THREADS` threads (default:
//   all cores). Each CUDA thread is a fiber with its own stack; `__syncthreads` (with its count) waits for every live
//   thread of the block, a warp shuffle for every live lane of the warp. Threads that wait at different barriers
//   (a barrier inside divergent code) are reported as a failed launch (CUDA_ERROR_LAUNCH_FAILED), not hung.
#include "cuda_emu.h"

#include <sys/mman.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace emu {
// The running thread's coordinates; the scheduler sets them before each switch to a fiber.
thread_local Coordinates tl_coordinates;
Coordinates& coordinates() { return tl_coordinates; }
}  // namespace emu

// ---------------------------------------------------------------------------------------------------------------
// Fibers: a minimal context switch (callee-saved registers and the stack pointer). The SSE and x87 control words are
// not switched: neither the kernels nor the scheduler change them, so every fiber runs with its OS thread's (saving
// and loading them made up about four fifths of the switch's samples, and 5% of the emulator's run of the parity
// tests: `stmxcsr`, `ldmxcsr` and `fldcw` are slow instructions).

#if defined(__x86_64__)
extern "C" void emu_switch(void** save_sp, void* load_sp);
asm(R"(
    .text
    .globl emu_switch
    .hidden emu_switch
    .type emu_switch, @function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size emu_switch, .-emu_switch
)");
#else
#error "the CUDA emulator's fibers are written for x86-64"
#endif

namespace {

constexpr size_t kStack = 64 * 1024;
constexpr size_t kGuard = 4096;
constexpr unsigned kMaxThreads = 1024;
// An NVIDIA GPU's launch limits (besides kMaxThreads and max_grid_yz): reported by cuDeviceGetAttribute, enforced
// by cuLaunchKernel.
constexpr unsigned kMaxBlockX = 1024, kMaxBlockY = 1024, kMaxBlockZ = 64;
constexpr unsigned kMaxGridX = 2147483647u;
// The part of a fiber's stack that fiber_main's own frame lies in (it never returns: see initial_sp).
constexpr size_t kTopOfStack = 4096;

enum State { kRunnable, kWaitBlock, kWaitWarp, kDone };

// The order in which the threads of a block run between barriers (`SPATIALSYNTH_CUDA_EMU_SCHEDULE`): `shuffled`
// (the default: a new pseudo-random order at every barrier, from `SPATIALSYNTH_CUDA_EMU_SEED`, the launch and the
// block), `forward` or `reverse`. A kernel whose result depends on the order (a read of shared memory or of another
// thread's output without a barrier between) gives wrong answers under some orders, as it may on a GPU.
enum Schedule { kForward, kReverse, kShuffled };

struct Fiber {
    void* sp = nullptr;
    char* stack = nullptr;
    State state = kRunnable;
    // How many block barriers and warp synchronisations (two per shuffle) this thread has passed: every thread that
    // a barrier opens for must have passed the same number (else they wait at different barriers).
    unsigned block_barriers = 0;
    unsigned warp_syncs = 0;
    unsigned linear = 0;
    emu::uint3 tid{0, 0, 0};
};

struct Block {
    Fiber* fibers = nullptr;
    unsigned n = 0;
    // The kernel, bound to its launch's arguments.
    const std::function<void()>* kernel = nullptr;
    void* scheduler_sp = nullptr;
    unsigned arrivals = 0;
    unsigned count = 0;
    unsigned result = 0;
    unsigned slots[kMaxThreads];
    // Each warp's last warp-wide result (`warp_all`), and the lanes' synchronisation count it is for.
    unsigned warp_result[kMaxThreads / 32];
    unsigned warp_result_for[kMaxThreads / 32];
    std::string error;
    Schedule schedule = kShuffled;
    uint64_t schedule_seed = 0;
};

thread_local Block* tl_block = nullptr;
thread_local Fiber* tl_fiber = nullptr;

// Fiber stacks (with a guard page below each), in sets of up to 1024: a worker takes a set for a launch and gives it
// back, so launches reuse the same mappings (and the fibers' records, kept off the worker's stack).
struct StackSet {
    std::vector<char*> stacks;
    std::unique_ptr<Fiber[]> fibers{new Fiber[kMaxThreads]};
    std::unique_ptr<unsigned[]> order{new unsigned[kMaxThreads]};
    // Per stack: whether the last fiber run on it may have left frames behind that never returned (it had not
    // finished when its block failed): their AddressSanitizer red zones are still poisoned. A fiber that finished
    // left only fiber_main's frame, at the top of its stack.
    std::vector<unsigned char> abandoned_frames;
    char* get(unsigned i) {
        while (stacks.size() <= i) {
            void* p = mmap(nullptr, kStack + kGuard, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (p == MAP_FAILED) return nullptr;
            mprotect(p, kGuard, PROT_NONE);
            stacks.push_back(static_cast<char*>(p) + kGuard);
            abandoned_frames.push_back(1);
        }
        return stacks[i];
    }
};

std::mutex g_stack_lock;
std::vector<StackSet*>& free_stack_sets() {
    static std::vector<StackSet*> sets;
    return sets;
}

StackSet* take_stacks() {
    std::lock_guard<std::mutex> lock(g_stack_lock);
    auto& sets = free_stack_sets();
    if (sets.empty()) return new StackSet();
    StackSet* s = sets.back();
    sets.pop_back();
    return s;
}

void give_back_stacks(StackSet* s) {
    std::lock_guard<std::mutex> lock(g_stack_lock);
    free_stack_sets().push_back(s);
}

thread_local StackSet* tl_stacks = nullptr;

// The scheduler's own code (initial_sp, resume, release, run_block, and the barrier and the shuffle) is not
// instrumented: AddressSanitizer is there to check the kernels' accesses, not the scheduler's reads of its own fiber
// records (with the multiplicative draw in run_block's shuffle, about 4% off the emulator's run of the parity tests).
#if defined(__SANITIZE_ADDRESS__)
#define EMU_SCHEDULER __attribute__((no_sanitize_address))
#else
#define EMU_SCHEDULER
#endif

[[noreturn]] void fiber_main() {
    Block* b = tl_block;
    Fiber* f = tl_fiber;
    (*b->kernel)();
    f->state = kDone;
    void* unused;
    emu_switch(&unused, b->scheduler_sp);
    std::abort();
}

// The first stack of a fiber: emu_switch pops six registers and returns into fiber_main.
EMU_SCHEDULER void* initial_sp(char* stack, bool abandoned_frames) {
#if defined(__SANITIZE_ADDRESS__)
    // The last block's fibers never returned from fiber_main (and, when that block failed, from deeper frames):
    // their red zones are still poisoned. Unpoisoning the whole stack for every fiber of every block wrote 8 KiB of
    // shadow each time: about a sixth of the time of the scene-graph parity test on the emulator.
    if (abandoned_frames) {
        ASAN_UNPOISON_MEMORY_REGION(stack, kStack);
    } else {
        ASAN_UNPOISON_MEMORY_REGION(stack + kStack - kTopOfStack, kTopOfStack);
    }
#else
    (void)abandoned_frames;
#endif
    uintptr_t top = reinterpret_cast<uintptr_t>(stack + kStack) & ~uintptr_t(15);
    auto* words = reinterpret_cast<uint64_t*>(top);
    words[-1] = 0;                                              // fiber_main's "return address" (never used)
    words[-2] = reinterpret_cast<uint64_t>(&fiber_main);        // emu_switch's ret
    for (int r = 3; r <= 8; ++r) words[-r] = 0;                 // rbp, rbx, r12..r15
    return &words[-8];
}

EMU_SCHEDULER void resume(Block* b, Fiber* f) {
    tl_fiber = f;
    emu::tl_coordinates.thread_idx = f->tid;
    emu_switch(&b->scheduler_sp, f->sp);
}

// Makes the threads [begin, end) that wait in `state` runnable; false when they have not all passed the same number
// of synchronisations (`passed`): they wait at different barriers.
EMU_SCHEDULER bool release(Fiber* fibers, unsigned begin, unsigned end, State state, unsigned Fiber::*passed) {
    unsigned seen = ~0u;
    for (unsigned t = begin; t < end; ++t) {
        if (fibers[t].state != state) continue;
        if (seen != ~0u && fibers[t].*passed != seen) return false;
        seen = fibers[t].*passed;
        fibers[t].state = kRunnable;
    }
    return true;
}

// Runs one block to completion; false (with `b->error`) when its threads wait at barriers that can never open.
EMU_SCHEDULER bool run_block(Block* b) {
    StackSet* stacks = tl_stacks;
    Fiber* fibers = stacks->fibers.get();
    b->fibers = fibers;
    const emu::uint3 dim = emu::tl_coordinates.block_dim;
    for (unsigned t = 0; t < b->n; ++t) {
        Fiber& f = fibers[t];
        f.linear = t;
        f.tid = emu::uint3{t % dim.x, (t / dim.x) % dim.y, t / (dim.x * dim.y)};
        f.stack = stacks->get(t);
        if (f.stack == nullptr) {
            b->error = "no memory for the fibers' stacks";
            return false;
        }
        f.sp = initial_sp(f.stack, stacks->abandoned_frames[t]);
        stacks->abandoned_frames[t] = 1;  // until this fiber finishes
        f.state = kRunnable;
        f.block_barriers = 0;
        f.warp_syncs = 0;
    }
    for (unsigned w = 0; w < kMaxThreads / 32; ++w) b->warp_result_for[w] = 0;  // no lane has synced yet
    tl_block = b;
    unsigned live = b->n;
    unsigned* order = stacks->order.get();
    for (unsigned t = 0; t < b->n; ++t) order[t] = t;
    uint64_t rng = b->schedule_seed * 0x9e3779b97f4a7c15ull + 1;
    while (true) {
        // The order in which the runnable threads run up to their next barrier: see `Schedule`.
        if (b->schedule == kReverse) {
            for (unsigned t = 0; t < b->n; ++t) order[t] = b->n - 1 - t;
        } else if (b->schedule == kShuffled) {
            for (unsigned t = b->n; t > 1; --t) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                // A draw in [0, t) by multiplication (Lemire), not a 64-bit division per thread per barrier.
                const unsigned j = unsigned(((rng >> 32) * t) >> 32);
                const unsigned swapped = order[t - 1];  // (std::swap would be an instrumented call here)
                order[t - 1] = order[j];
                order[j] = swapped;
            }
        }
        for (unsigned k = 0; k < b->n; ++k) {
            const unsigned t = order[k];
            if (fibers[t].state == kRunnable) {
                resume(b, &fibers[t]);
                if (fibers[t].state == kDone) {
                    --live;
                    stacks->abandoned_frames[t] = 0;
                }
            }
        }
        if (live == 0) return b->error.empty();
        bool released = false;
        if (b->arrivals == live) {
            // Every live thread is at __syncthreads: open it (exited threads do not count, as on sm_70 and later).
            b->result = b->count;
            b->arrivals = 0;
            b->count = 0;
            if (!release(fibers, 0, b->n, kWaitBlock, &Fiber::block_barriers)) {
                b->error = "threads of the block wait at different __syncthreads (a barrier in divergent code)";
                return false;
            }
            released = true;
        } else {
            for (unsigned w = 0; w < b->n; w += 32) {
                const unsigned end = w + 32 < b->n ? w + 32 : b->n;
                unsigned waiting = 0, lanes = 0;
                for (unsigned t = w; t < end; ++t) {
                    if (fibers[t].state == kDone) continue;
                    ++lanes;
                    waiting += fibers[t].state == kWaitWarp;
                }
                if (lanes > 0 && waiting == lanes) {
                    if (!release(fibers, w, end, kWaitWarp, &Fiber::warp_syncs)) {
                        b->error = "lanes of a warp are at different shuffles (a shuffle in divergent code)";
                        return false;
                    }
                    released = true;
                }
            }
        }
        if (!released) {
            char what[160];
            std::snprintf(what, sizeof what,
                          "deadlock: of %u live threads, %u wait at __syncthreads and the rest at warp shuffles "
                          "(a barrier in divergent code)",
                          live, b->arrivals);
            b->error = what;
            return false;
        }
    }
}

}  // namespace

namespace emu {

EMU_SCHEDULER unsigned syncthreads_count(int predicate) {
    Block* b = tl_block;
    Fiber* f = tl_fiber;
    b->arrivals += 1;
    b->count += predicate ? 1u : 0u;
    f->state = kWaitBlock;
    f->block_barriers += 1;
    emu_switch(&f->sp, b->scheduler_sp);
    return b->result;
}

EMU_SCHEDULER unsigned lane_id() { return tl_fiber->linear & 31u; }

// Waits for every live lane of the calling warp (a warp synchronisation: two of them around each warp operation, the
// second so that nobody writes its slot again before every lane has read).
EMU_SCHEDULER void warp_sync(Block* b, Fiber* f) {
    f->state = kWaitWarp;
    f->warp_syncs += 1;
    emu_switch(&f->sp, b->scheduler_sp);
}

EMU_SCHEDULER unsigned shuffle(unsigned value, int source) {
    Block* b = tl_block;
    Fiber* f = tl_fiber;
    b->slots[f->linear] = value;
    warp_sync(b, f);
    unsigned result = value;
    const unsigned base = f->linear & ~31u;
    if (source >= 0 && source < 32 && base + source < b->n) {
        if (b->fibers[base + source].state == kDone) {
            if (b->error.empty()) b->error = "a warp shuffle read a lane that has exited";
        } else {
            result = b->slots[base + source];
        }
    }
    warp_sync(b, f);
    return result;
}

// A warp-wide operation over every live lane's value (a vote, a sum): every lane posts its value, then each reads them
// all (a lane that has exited is an error, as a full-mask operation that waits for it is on a GPU), then the warp
// syncs again before anyone posts anew. `combine(acc, lane, value)` folds one lane's value into `acc`, which starts as
// `init`. The first lane to read folds them for the whole warp; the others take its result.
template <typename Combine>
EMU_SCHEDULER unsigned warp_all(unsigned value, const char* what, unsigned init, Combine combine) {
    Block* b = tl_block;
    Fiber* f = tl_fiber;
    b->slots[f->linear] = value;
    warp_sync(b, f);
    const unsigned warp = f->linear >> 5;
    if (b->warp_result_for[warp] != f->warp_syncs) {
        unsigned acc = init;
        const unsigned base = f->linear & ~31u;
        for (unsigned lane = 0; lane < 32u && base + lane < b->n; ++lane) {
            if (b->fibers[base + lane].state == kDone) {
                if (b->error.empty()) b->error = std::string("a warp ") + what + " counted a lane that has exited";
            } else {
                acc = combine(acc, lane, b->slots[base + lane]);
            }
        }
        b->warp_result[warp] = acc;
        b->warp_result_for[warp] = f->warp_syncs;
    }
    const unsigned result = b->warp_result[warp];
    warp_sync(b, f);
    return result;
}

EMU_SCHEDULER unsigned ballot(unsigned predicate) {
    return warp_all(predicate, "ballot", 0u, [](unsigned acc, unsigned lane, unsigned v) {
        return v != 0u ? acc | (1u << lane) : acc;
    });
}

EMU_SCHEDULER unsigned warp_sum(unsigned value) {
    return warp_all(value, "sum", 0u, [](unsigned acc, unsigned, unsigned v) { return acc + v; });
}

EMU_SCHEDULER unsigned warp_min(unsigned value) {
    return warp_all(value, "min", 0xffffffffu, [](unsigned acc, unsigned, unsigned v) { return v < acc ? v : acc; });
}

}  // namespace emu

// ---------------------------------------------------------------------------------------------------------------
// Modules: every emulated module registers its entry points; cuModuleLoadData finds the one whose entry points are
// those of the PTX.

namespace {

struct Module {
    std::string file;
    std::map<std::string, emu::Entry> entries;
};

std::vector<Module>& registry() {
    static std::vector<Module> modules;
    return modules;
}

struct Function {
    std::string module;
    std::string name;
    emu::Entry entry;
    // The most threads a block may have: the PTX's `.maxntid` (`__launch_bounds__`), else the device's limit.
    unsigned long long max_threads;
};

// A loaded module: its emulated module and each entry point's most threads a block (from the PTX).
struct Loaded {
    Module* module;
    std::map<std::string, unsigned long long> max_threads;
};

}  // namespace

emu::Registrar::Registrar(const char* file, const char* const* names, const Entry* entries, int count) {
    Module m;
    m.file = file;
    for (int i = 0; i < count; ++i) m.entries[names[i]] = entries[i];
    registry().push_back(m);
}

// ---------------------------------------------------------------------------------------------------------------
// The driver API (the subset cudarc calls), with the CUDA 13 names and ABI.

typedef int CUresult;
typedef int CUdevice;
typedef unsigned long long CUdeviceptr;
typedef void* CUcontext;
typedef void* CUmodule;
typedef void* CUfunction;
typedef void* CUstream;
typedef void* CUevent;
typedef void* CUmemoryPool;

enum : int {
    CUDA_SUCCESS = 0,
    CUDA_ERROR_INVALID_VALUE = 1,
    CUDA_ERROR_OUT_OF_MEMORY = 2,
    CUDA_ERROR_INVALID_DEVICE = 101,
    CUDA_ERROR_INVALID_CONTEXT = 201,
    CUDA_ERROR_INVALID_IMAGE = 200,
    CUDA_ERROR_INVALID_HANDLE = 400,
    CUDA_ERROR_ILLEGAL_STATE = 401,
    CUDA_ERROR_NOT_FOUND = 500,
    CUDA_ERROR_ILLEGAL_ADDRESS = 700,
    CUDA_ERROR_MISALIGNED_ADDRESS = 716,
    CUDA_ERROR_LAUNCH_FAILED = 719,
    CUDA_ERROR_NOT_SUPPORTED = 801,
};

namespace {

const char kDeviceName[] = "spatialsynth CUDA emulator (CPU, not a GPU)";
int g_context_tag;
int g_pool_tag;

std::mutex g_memory_lock;
std::map<uintptr_t, size_t>& allocations() {
    static std::map<uintptr_t, size_t> a;
    return a;
}

// cuda.h's CU_MEMHOSTALLOC_WRITECOMBINED.
constexpr unsigned kHostAllocWriteCombined = 0x04;

// Page-locked host allocations (cuMemHostAlloc): start -> (bytes, flags).
std::map<uintptr_t, std::pair<size_t, unsigned>>& host_allocations() {
    static std::map<uintptr_t, std::pair<size_t, unsigned>> a;
    return a;
}

// The flags of the page-locked allocation holding host range [p, p + n), or -1 if it is pageable memory; -2 if it
// starts in a page-locked allocation but runs past its end.
long long host_range_flags(const void* p, size_t n) {
    std::lock_guard<std::mutex> lock(g_memory_lock);
    auto& a = host_allocations();
    const uintptr_t q = reinterpret_cast<uintptr_t>(p);
    auto it = a.upper_bound(q);
    if (it == a.begin()) return -1;
    --it;
    if (q >= it->first + it->second.first) return -1;
    return q + n <= it->first + it->second.first ? static_cast<long long>(it->second.second) : -2;
}

// Whether [p, p + n) lies within one allocation.
bool device_range(CUdeviceptr p, size_t n) {
    std::lock_guard<std::mutex> lock(g_memory_lock);
    auto& a = allocations();
    auto it = a.upper_bound(static_cast<uintptr_t>(p));
    if (it == a.begin()) return false;
    --it;
    return p >= it->first && p + n <= it->first + it->second;
}

void complain(const char* call, const char* what) { std::fprintf(stderr, "cuda emulator: %s: %s\n", call, what); }

// The calling thread's current context, as NVIDIA's driver keeps it: a stack per thread (cuCtxPushCurrent,
// cuCtxPopCurrent; cuCtxSetCurrent replaces its top, or pops it when given none), empty on a new thread. Retaining
// the primary context makes nothing current. Plain arrays: a thread's storage with no destructor, so that another
// thread-local's destructor (Rust's included) may still call the driver as its thread ends.
constexpr unsigned kContextDepth = 16;
thread_local CUcontext tl_contexts[kContextDepth];
thread_local unsigned tl_context_depth = 0;

// The emulator's rule, stricter than NVIDIA's driver: every call that works in a context needs one current on the
// calling thread, or fails with CUDA_ERROR_INVALID_CONTEXT and a line naming it. The driver itself needs one for
// allocations, the creation of streams, events and modules, and synchronous copies, but takes it from the handle
// for some calls on a stream (asynchronous copies, memsets and frees). With `SPATIALSYNTH_CUDA_EMU_CONTEXT=report`
// each such call is named once and runs, to list them all.
CUresult need_context(const char* call) {
    if (tl_context_depth > 0) return CUDA_SUCCESS;
    static const bool report = [] {
        const char* s = std::getenv("SPATIALSYNTH_CUDA_EMU_CONTEXT");
        return s != nullptr && std::strcmp(s, "report") == 0;
    }();
    if (report) {
        static std::mutex lock;
        static std::set<std::string> named;
        std::lock_guard<std::mutex> guard(lock);
        if (named.insert(call).second) complain(call, "called on a thread with no current context (report only)");
        return CUDA_SUCCESS;
    }
    complain(call,
             "called on a thread with no current context (CUDA_ERROR_INVALID_CONTEXT: bind the context to the thread "
             "first, cuCtxSetCurrent; a driver call that follows an earlier error can show this too, where cudarc "
             "returned that error instead of binding)");
    return CUDA_ERROR_INVALID_CONTEXT;
}

// Returns from the calling function with CUDA_ERROR_INVALID_CONTEXT when its thread has no current context.
#define NEED_CONTEXT(call)                                           \
    do {                                                             \
        const CUresult context_result_ = need_context(call);         \
        if (context_result_ != CUDA_SUCCESS) return context_result_; \
    } while (0)

// ---------------------------------------------------------------------------------------------------------------
// Streams. By default (`SPATIALSYNTH_CUDA_EMU_STREAMS` unset or `deferred`) every stream-ordered call (a launch, an
// asynchronous copy or memset, a stream-ordered free, an event record, a wait on an event, a host function) is
// queued on its stream and runs only when something must see its effect: a synchronisation of its stream, of the
// context or of an event recorded after it, or a queued op of another stream that waits on such an event when that
// op runs. As late as a GPU may run it, in its stream's order. So host code that reads a read-back before it
// synchronises, reuses or frees a page-locked buffer that a copy still uses, or a stream that reads another's output
// without waiting on its event, gets wrong answers or an error here, as it may on a GPU (where the emulator's
// immediate mode, `immediate`, finishes every call before it returns and hides all three).

bool deferred_streams() {
    static const bool deferred = [] {
        const char* s = std::getenv("SPATIALSYNTH_CUDA_EMU_STREAMS");
        return s == nullptr || std::strcmp(s, "immediate") != 0;
    }();
    return deferred;
}

// A device buffer an op uses (its allocation's start), and whether the op may write it.
struct Access {
    uintptr_t buffer;
    bool writes;
};

struct Op {
    uint64_t seq;
    std::function<CUresult()> run;
    // What it is (a kernel's name, a call's), for the messages.
    std::string what;
    // The device buffers it uses: an op of another stream that uses one of them too, one of the two writing it,
    // must be ordered after it by an event (see `race`).
    std::vector<Access> device;
    // The page-locked host bytes the op reads or writes, if any: cuMemFreeHost refuses them while it waits.
    uintptr_t host = 0;
    size_t host_bytes = 0;
};

std::atomic<uint64_t> g_stream_ids{0};

struct StreamState {
    // A number no other stream of the process has (an address may be reused once a stream is gone).
    uint64_t id = ++g_stream_ids;
    std::deque<Op> queue;
    uint64_t next = 1;  // the next op's number
    // For each other stream (by id), the last of its ops that this stream's next op is ordered after by the waits
    // queued here so far (with what the waited streams were ordered after when their events were recorded, so chains
    // of waits count).
    std::map<uint64_t, uint64_t> after;
    // Destroyed by the host with work still queued: the work still runs (cuStreamDestroy does not wait for it).
    bool destroyed = false;
};
using StreamRef = std::shared_ptr<StreamState>;

struct EventState {
    StreamRef stream;  // where it was last recorded (none before its first record)
    uint64_t seq = 0;  // that record's op
    // What that stream was ordered after when the event was recorded.
    std::map<uint64_t, uint64_t> after;
    std::chrono::steady_clock::time_point at = std::chrono::steady_clock::now();
};
struct Event {
    std::shared_ptr<EventState> state = std::make_shared<EventState>();
};

// Held while a queue changes and while its ops run (recursive: an op that waits on an event runs another stream's
// ops, a host function may call the driver).
std::recursive_mutex g_stream_lock;
// The first error of a queued op: every later synchronisation returns it (a failed kernel leaves a CUDA context
// unusable too).
CUresult g_sticky = CUDA_SUCCESS;

std::map<StreamState*, StreamRef>& streams() {
    static std::map<StreamState*, StreamRef> s;
    return s;
}

// The NULL stream (also CU_STREAM_LEGACY and CU_STREAM_PER_THREAD, handles 1 and 2) is one more stream here. cudarc's
// streams are non-blocking: they do not synchronise with it.
StreamRef find_stream(void* handle) {
    static StreamRef null_stream = [] {
        auto s = std::make_shared<StreamState>();
        streams()[s.get()] = s;
        return s;
    }();
    if (reinterpret_cast<uintptr_t>(handle) <= 2) return null_stream;
    auto it = streams().find(static_cast<StreamState*>(handle));
    return it == streams().end() ? nullptr : it->second;
}

// Runs `s`'s queued ops up to op `upto` (g_stream_lock held; the caller holds a reference to `s`). After an error
// nothing runs any more (a faulted CUDA context runs no more work): the ops are dropped.
CUresult run_until(StreamState* s, uint64_t upto) {
    while (!s->queue.empty() && s->queue.front().seq <= upto) {
        Op op = std::move(s->queue.front());
        s->queue.pop_front();
        if (g_sticky != CUDA_SUCCESS) continue;
        const CUresult r = op.run();
        if (r != CUDA_SUCCESS && g_sticky == CUDA_SUCCESS) g_sticky = r;
    }
    if (s->destroyed && s->queue.empty()) streams().erase(s);
    return g_sticky;
}

// Destroyed streams whose work is still queued, oldest first. Their work runs when something waits for it (an
// event, a context synchronisation) or, past `kDetached` of them, the oldest's runs (each holds its buffers'
// stream-ordered frees). Until then a free of a buffer that work uses, on another stream, is a race (`race`).
constexpr size_t kDetached = 16;
std::deque<StreamRef>& detached() {
    static std::deque<StreamRef> d;
    return d;
}

// Runs everything `handle` has queued.
CUresult drain(void* handle) {
    std::lock_guard<std::recursive_mutex> lock(g_stream_lock);
    StreamRef s = find_stream(handle);
    if (!s) return CUDA_ERROR_INVALID_HANDLE;
    return run_until(s.get(), UINT64_MAX);
}

// Runs everything every stream has queued.
CUresult drain_all() {
    std::lock_guard<std::recursive_mutex> lock(g_stream_lock);
    std::vector<StreamRef> all;
    for (auto& kv : streams()) all.push_back(kv.second);
    for (auto& s : all) run_until(s.get(), UINT64_MAX);
    return g_sticky;
}

// The start of the device allocation holding `p` (or ending at it), 0 when none does.
uintptr_t buffer_of(uintptr_t p) {
    std::lock_guard<std::mutex> lock(g_memory_lock);
    auto& a = allocations();
    auto it = a.upper_bound(p);
    if (it == a.begin()) return 0;
    --it;
    return p <= it->first + it->second ? it->first : 0;
}

// Whether an op `what` of stream `s` that uses `device` races work queued on another stream: an op there that uses
// one of the same buffers, one of the two writing it, with no wait queued on `s` since (an event recorded after that
// op) to order them. Such work is still running as far as the host knows (it has not synchronised anything that
// waits for it: else it would have run and left its queue), so a GPU may run the two in either order, or at once. A
// race is said on stderr and fails the call (and every later synchronisation). `g_stream_lock` held.
CUresult race(StreamState* s, const char* what, const std::vector<Access>& device) {
    if (device.empty()) return CUDA_SUCCESS;
    for (auto& kv : streams()) {
        StreamState* other = kv.first;
        if (other == s) continue;
        auto ordered = s->after.find(other->id);
        const uint64_t upto = ordered == s->after.end() ? 0 : ordered->second;
        for (const Op& op : other->queue) {
            if (op.seq <= upto) continue;
            for (const Access& a : op.device) {
                for (const Access& b : device) {
                    if (a.buffer != b.buffer || !(a.writes || b.writes)) continue;
                    char message[512];
                    std::snprintf(message, sizeof message,
                                  "races %s queued on another stream: both use the device buffer at %#llx, %s, and "
                                  "no event orders them (wait on an event recorded after it, or synchronise its "
                                  "stream, first)",
                                  op.what.c_str(), (unsigned long long)a.buffer,
                                  a.writes && b.writes ? "both write it"
                                  : a.writes           ? "that one writes it"
                                                       : "this one writes it");
                    complain(what, message);
                    if (g_sticky == CUDA_SUCCESS) g_sticky = CUDA_ERROR_ILLEGAL_STATE;
                    return CUDA_ERROR_ILLEGAL_STATE;
                }
            }
        }
    }
    return CUDA_SUCCESS;
}

// Checks an op that runs now on `handle`'s behalf (a copy into pageable memory) for races: as `submit`.
CUresult check_race(void* handle, const char* what, const std::vector<Access>& device) {
    if (!deferred_streams()) return CUDA_SUCCESS;
    std::lock_guard<std::recursive_mutex> lock(g_stream_lock);
    StreamRef s = find_stream(handle);
    if (!s) return CUDA_ERROR_INVALID_HANDLE;
    return race(s.get(), what, device);
}

// Queues `run` on `handle` (runs it now in immediate mode). `what`: what it is; `device`: the device buffers it
// uses (checked for races with other streams' queued work); `host`: the page-locked bytes it uses.
CUresult submit(void* handle, std::string what, std::function<CUresult()> run, std::vector<Access> device = {},
                const void* host = nullptr, size_t host_bytes = 0) {
    if (!deferred_streams()) return run();
    std::lock_guard<std::recursive_mutex> lock(g_stream_lock);
    StreamRef s = find_stream(handle);
    if (!s) return CUDA_ERROR_INVALID_HANDLE;
    if (CUresult r = race(s.get(), what.c_str(), device)) return r;
    s->queue.push_back(
        Op{s->next++, std::move(run), std::move(what), std::move(device), reinterpret_cast<uintptr_t>(host), host_bytes});
    return CUDA_SUCCESS;
}

// Whether a queued op still uses host bytes [p, p + n).
bool host_in_use(const void* p, size_t n) {
    std::lock_guard<std::recursive_mutex> lock(g_stream_lock);
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    for (auto& kv : streams()) {
        for (const Op& op : kv.second->queue) {
            if (op.host_bytes > 0 && op.host < a + n && a < op.host + op.host_bytes) return true;
        }
    }
    return false;
}

// A digest of host bytes: a queued copy from page-locked memory compares the source's digest when it runs with the
// one when it was queued (the host must not write a buffer that a copy still reads).
uint64_t digest(const void* p, size_t n) {
    const auto* b = static_cast<const unsigned char*>(p);
    uint64_t h = 0xcbf29ce484222325ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        std::memcpy(&w, b + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; ++i) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

Schedule emulator_schedule() {
    const char* s = std::getenv("SPATIALSYNTH_CUDA_EMU_SCHEDULE");
    if (s != nullptr && std::strcmp(s, "forward") == 0) return kForward;
    if (s != nullptr && std::strcmp(s, "reverse") == 0) return kReverse;
    return kShuffled;
}

uint64_t emulator_seed() {
    const char* s = std::getenv("SPATIALSYNTH_CUDA_EMU_SEED");
    return s != nullptr ? std::strtoull(s, nullptr, 10) : 1;
}

std::atomic<uint64_t> g_launches{0};

// The CPU time the emulator spends doing the device's work (kernels, copies, memsets, allocations and their 0xff
// fill, frees) and its own bookkeeping: every driver call's time on its calling thread, and the time of the threads
// that run a launch's blocks besides it. `emulator_cpu_s` in the statistics: the process's CPU time less this is
// what the host side of a run costs (its own work, without the GPU's), which a GPU host's cores must supply.
std::atomic<uint64_t> g_emulator_cpu_ns{0};
thread_local int tl_meter_depth = 0;

uint64_t thread_cpu_ns() {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return uint64_t(t.tv_sec) * 1000000000ull + uint64_t(t.tv_nsec);
}

// Counts the calling thread's CPU time while it lives into g_emulator_cpu_ns (the outermost meter of a thread only:
// a driver call that makes another is counted once).
struct CpuMeter {
    uint64_t start = 0;
    CpuMeter() {
        if (tl_meter_depth++ == 0) start = thread_cpu_ns();
    }
    ~CpuMeter() {
        if (--tl_meter_depth == 0) g_emulator_cpu_ns += thread_cpu_ns() - start;
    }
    CpuMeter(const CpuMeter&) = delete;
    CpuMeter& operator=(const CpuMeter&) = delete;
};

// What the process asked of the device, written as JSON at exit to the file named by
// `SPATIALSYNTH_CUDA_EMU_STATS` (when set): launches per kernel, bytes and calls of each copy direction, stream
// synchronisations and allocations. Deterministic counts (unlike times), for comparing how host code drives the
// device.
struct Stats {
    std::mutex lock;
    std::map<std::string, uint64_t> launches;
    std::atomic<uint64_t> htod_bytes{0}, htod_copies{0}, dtoh_bytes{0}, dtoh_copies{0}, dtod_bytes{0};
    // Copies from or to page-locked host memory; read-backs into write-combined memory (slow for the host to read).
    std::atomic<uint64_t> htod_pinned_bytes{0}, dtoh_pinned_bytes{0}, dtoh_write_combined_bytes{0};
    std::atomic<uint64_t> stream_syncs{0}, event_syncs{0}, allocations{0}, allocated_bytes{0};
    // Event records and waits on events (cudarc's event tracking makes two or three of them per buffer per launch).
    std::atomic<uint64_t> event_records{0}, event_waits{0};
    // Device frees (cuMemFree, cuMemFreeAsync): with the counts above, every driver call the backend makes per frame.
    std::atomic<uint64_t> frees{0};
    // Device memsets (cudarc's alloc_zeros is an allocation and a memset) and their bytes.
    std::atomic<uint64_t> memsets{0}, memset_bytes{0};
    // Page-locked host allocations (cuMemHostAlloc: pinning is dear on a GPU) and their bytes.
    std::atomic<uint64_t> pinned_allocations{0}, pinned_allocated_bytes{0};
    // Page-locked allocations refused (SPATIALSYNTH_CUDA_EMU_PINNED_LIMIT), as a host out of lockable memory does.
    std::atomic<uint64_t> pinned_refusals{0};
    // The default memory pool's release threshold, as the host last set it (cuMemPoolSetAttribute).
    std::atomic<uint64_t> pool_release_threshold{0};
    ~Stats() {
        const char* path = std::getenv("SPATIALSYNTH_CUDA_EMU_STATS");
        if (path == nullptr || *path == 0) return;
        FILE* f = std::fopen(path, "w");
        if (f == nullptr) return;
        std::fprintf(f, "{\"launches\": {");
        bool first = true;
        for (auto& kv : launches) {
            std::fprintf(f, "%s\"%s\": %llu", first ? "" : ", ", kv.first.c_str(), (unsigned long long)kv.second);
            first = false;
        }
        std::fprintf(f,
                     "}, \"htod_bytes\": %llu, \"htod_copies\": %llu, \"dtoh_bytes\": %llu, \"dtoh_copies\": %llu, "
                     "\"dtod_bytes\": %llu, \"stream_syncs\": %llu, \"event_syncs\": %llu, \"allocations\": %llu, "
                     "\"allocated_bytes\": %llu, \"htod_pinned_bytes\": %llu, \"dtoh_pinned_bytes\": %llu, "
                     "\"dtoh_write_combined_bytes\": %llu, \"pinned_allocations\": %llu, "
                     "\"pinned_allocated_bytes\": %llu, \"pool_release_threshold\": %llu, \"memsets\": %llu, "
                     "\"memset_bytes\": %llu, \"event_records\": %llu, \"event_waits\": %llu, \"frees\": %llu, "
                     "\"pinned_refusals\": %llu, \"emulator_cpu_s\": %.3f}\n",
                     (unsigned long long)htod_bytes, (unsigned long long)htod_copies, (unsigned long long)dtoh_bytes,
                     (unsigned long long)dtoh_copies, (unsigned long long)dtod_bytes,
                     (unsigned long long)stream_syncs, (unsigned long long)event_syncs,
                     (unsigned long long)allocations, (unsigned long long)allocated_bytes,
                     (unsigned long long)htod_pinned_bytes, (unsigned long long)dtoh_pinned_bytes,
                     (unsigned long long)dtoh_write_combined_bytes, (unsigned long long)pinned_allocations,
                     (unsigned long long)pinned_allocated_bytes, (unsigned long long)pool_release_threshold,
                     (unsigned long long)memsets, (unsigned long long)memset_bytes,
                     (unsigned long long)event_records, (unsigned long long)event_waits,
                     (unsigned long long)frees, (unsigned long long)pinned_refusals,
                     double(g_emulator_cpu_ns.load()) * 1e-9);
        std::fclose(f);
    }
};
Stats g_stats;

// One line per copy and launch, with the calling thread, to the file named by `SPATIALSYNTH_CUDA_EMU_TRACE` (when
// set): which step's copies are which.
void trace(const char* kind, unsigned long long bytes, const std::string& name) {
    static const char* path = std::getenv("SPATIALSYNTH_CUDA_EMU_TRACE");
    if (path == nullptr || *path == 0) return;
    static std::mutex lock;
    static FILE* f = std::fopen(path, "w");
    if (f == nullptr) return;
    std::lock_guard<std::mutex> guard(lock);
    std::fprintf(f, "%zu %s %llu %s\n", std::hash<std::thread::id>{}(std::this_thread::get_id()), kind, bytes,
                 name.c_str());
    std::fflush(f);
}

unsigned emulator_threads() {
    if (const char* s = std::getenv("SPATIALSYNTH_CUDA_EMU_THREADS")) {
        const int n = std::atoi(s);
        if (n > 0) return static_cast<unsigned>(n);
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw > 0 ? hw : 1;
}

}  // namespace

extern "C" {

CUresult cuInit(unsigned) { return CUDA_SUCCESS; }
CUresult cuDriverGetVersion(int* version) {
    const CpuMeter meter;
    *version = 13000;
    return CUDA_SUCCESS;
}
CUresult cuDeviceGetCount(int* count) {
    const CpuMeter meter;
    *count = 1;
    return CUDA_SUCCESS;
}
CUresult cuDeviceGet(CUdevice* device, int ordinal) {
    const CpuMeter meter;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *device = 0;
    return CUDA_SUCCESS;
}
CUresult cuDeviceGetName(char* name, int len, CUdevice) {
    const CpuMeter meter;
    if (len <= 0) return CUDA_ERROR_INVALID_VALUE;
    std::snprintf(name, static_cast<size_t>(len), "%s", kDeviceName);
    return CUDA_SUCCESS;
}
CUresult cuDeviceTotalMem_v2(size_t* bytes, CUdevice) {
    const CpuMeter meter;
    *bytes = size_t(8) << 30;
    return CUDA_SUCCESS;
}
CUresult cuDeviceGetUuid(unsigned char* uuid, CUdevice) {
    const CpuMeter meter;
    std::memset(uuid, 0x5e, 16);
    return CUDA_SUCCESS;
}
CUresult cuDeviceGetUuid_v2(unsigned char* uuid, CUdevice d) { return cuDeviceGetUuid(uuid, d); }
// The grid's limit along y and z: 65,535 as on every NVIDIA GPU, or SPATIALSYNTH_CUDA_EMU_MAX_GRID_YZ (1 to 65,535),
// so that a test reaches the host's launches in parts with small batches. Reported and enforced alike.
static unsigned max_grid_yz() {
    static const unsigned limit = [] {
        const char* s = std::getenv("SPATIALSYNTH_CUDA_EMU_MAX_GRID_YZ");
        const unsigned long v = s ? std::strtoul(s, nullptr, 10) : 0;
        return v >= 1 && v <= 65535 ? unsigned(v) : 65535u;
    }();
    return limit;
}

CUresult cuDeviceGetAttribute(int* value, int attribute, CUdevice) {
    const CpuMeter meter;
    switch (attribute) {
        case 1: *value = (int)kMaxThreads; break;  // max threads per block
        case 2: *value = (int)kMaxBlockX; break;   // max block dim x
        case 3: *value = (int)kMaxBlockY; break;   // max block dim y
        case 4: *value = (int)kMaxBlockZ; break;   // max block dim z
        case 5: *value = (int)kMaxGridX; break;    // max grid dim x
        case 6: case 7: *value = (int)max_grid_yz(); break; // max grid dim y, z
        case 8: *value = 48 * 1024; break;     // shared memory per block
        case 10: *value = 32; break;           // warp size
        case 16: *value = 1; break;            // multiprocessors
        case 36: *value = 0; break;            // memory clock (kHz): no figure from an emulator
        case 37: *value = 0; break;            // memory bus width
        case 75: *value = 9; break;            // compute capability 9.0: the kernels are compiled for compute_90
        case 76: *value = 0; break;
        case 115: *value = 1; break;           // memory pools: cuMemAllocAsync (allocated and freed at once here)
        default: *value = 0; break;
    }
    return CUDA_SUCCESS;
}
CUresult cuDevicePrimaryCtxRetain(CUcontext* ctx, CUdevice) {
    const CpuMeter meter;
    *ctx = &g_context_tag;
    return CUDA_SUCCESS;
}
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return CUDA_SUCCESS; }
CUresult cuCtxSetCurrent(CUcontext ctx) {
    const CpuMeter meter;
    if (ctx == nullptr) {
        // None: the top of the stack goes (nothing happens to an empty one), as NVIDIA's driver does.
        if (tl_context_depth > 0) tl_context_depth -= 1;
        return CUDA_SUCCESS;
    }
    if (ctx != &g_context_tag) {
        complain("cuCtxSetCurrent", "not the primary context");
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    if (tl_context_depth == 0) tl_context_depth = 1;
    tl_contexts[tl_context_depth - 1] = ctx;
    return CUDA_SUCCESS;
}
// The scheduling flags (how a waiting host thread waits): kept and reported, nothing else (the emulator runs the
// device's work on the waiting thread).
static unsigned g_context_flags = 0;
CUresult cuCtxSetFlags(unsigned flags) {
    const CpuMeter meter;
    NEED_CONTEXT("cuCtxSetFlags");
    const unsigned sched = flags & 0x7u;  // AUTO 0, SPIN 1, YIELD 2, BLOCKING_SYNC 4: one of them
    if (sched != 0u && sched != 1u && sched != 2u && sched != 4u) return CUDA_ERROR_INVALID_VALUE;
    g_context_flags = flags;
    return CUDA_SUCCESS;
}
CUresult cuCtxGetFlags(unsigned* flags) {
    NEED_CONTEXT("cuCtxGetFlags");
    *flags = g_context_flags;
    return CUDA_SUCCESS;
}
CUresult cuCtxGetCurrent(CUcontext* ctx) {
    const CpuMeter meter;
    *ctx = tl_context_depth > 0 ? tl_contexts[tl_context_depth - 1] : nullptr;
    return CUDA_SUCCESS;
}
CUresult cuCtxGetDevice(CUdevice* device) {
    const CpuMeter meter;
    NEED_CONTEXT("cuCtxGetDevice");
    *device = 0;
    return CUDA_SUCCESS;
}
CUresult cuCtxPushCurrent_v2(CUcontext ctx) {
    const CpuMeter meter;
    if (ctx != &g_context_tag) {
        complain("cuCtxPushCurrent", "not the primary context");
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    if (tl_context_depth == kContextDepth) {
        complain("cuCtxPushCurrent", "more contexts pushed than the emulator keeps (16)");
        return CUDA_ERROR_INVALID_VALUE;
    }
    tl_contexts[tl_context_depth++] = ctx;
    return CUDA_SUCCESS;
}
CUresult cuCtxPopCurrent_v2(CUcontext* ctx) {
    const CpuMeter meter;
    if (tl_context_depth == 0) {
        complain("cuCtxPopCurrent", "no context is current on this thread");
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    tl_context_depth -= 1;
    if (ctx) *ctx = tl_contexts[tl_context_depth];
    return CUDA_SUCCESS;
}
CUresult cuCtxSynchronize() {
    const CpuMeter meter;
    NEED_CONTEXT("cuCtxSynchronize");
    return drain_all();
}

CUresult cuGetErrorName(CUresult error, const char** name) {
    const CpuMeter meter;
    switch (error) {
        case CUDA_SUCCESS: *name = "CUDA_SUCCESS"; break;
        case CUDA_ERROR_INVALID_VALUE: *name = "CUDA_ERROR_INVALID_VALUE"; break;
        case CUDA_ERROR_OUT_OF_MEMORY: *name = "CUDA_ERROR_OUT_OF_MEMORY"; break;
        case CUDA_ERROR_INVALID_DEVICE: *name = "CUDA_ERROR_INVALID_DEVICE"; break;
        case CUDA_ERROR_INVALID_CONTEXT: *name = "CUDA_ERROR_INVALID_CONTEXT"; break;
        case CUDA_ERROR_INVALID_IMAGE: *name = "CUDA_ERROR_INVALID_IMAGE"; break;
        case CUDA_ERROR_INVALID_HANDLE: *name = "CUDA_ERROR_INVALID_HANDLE"; break;
        case CUDA_ERROR_ILLEGAL_STATE: *name = "CUDA_ERROR_ILLEGAL_STATE"; break;
        case CUDA_ERROR_ILLEGAL_ADDRESS: *name = "CUDA_ERROR_ILLEGAL_ADDRESS"; break;
        case CUDA_ERROR_MISALIGNED_ADDRESS: *name = "CUDA_ERROR_MISALIGNED_ADDRESS"; break;
        case CUDA_ERROR_NOT_FOUND: *name = "CUDA_ERROR_NOT_FOUND"; break;
        case CUDA_ERROR_LAUNCH_FAILED: *name = "CUDA_ERROR_LAUNCH_FAILED"; break;
        case CUDA_ERROR_NOT_SUPPORTED: *name = "CUDA_ERROR_NOT_SUPPORTED"; break;
        default: *name = "CUDA_ERROR_UNKNOWN"; break;
    }
    return CUDA_SUCCESS;
}
CUresult cuGetErrorString(CUresult error, const char** text) {
    const CpuMeter meter;
    switch (error) {
        case CUDA_ERROR_LAUNCH_FAILED:
            *text = "the emulated kernel failed (the emulator printed why on stderr)";
            return CUDA_SUCCESS;
        case CUDA_ERROR_INVALID_VALUE:
            *text = "invalid argument (the emulator printed which on stderr)";
            return CUDA_SUCCESS;
        case CUDA_ERROR_ILLEGAL_STATE:
            *text = "the host raced a queued operation (the emulator printed which on stderr)";
            return CUDA_SUCCESS;
        case CUDA_ERROR_ILLEGAL_ADDRESS:
            *text = "a kernel was given a pointer to no live device buffer (the emulator printed which on stderr)";
            return CUDA_SUCCESS;
        case CUDA_ERROR_MISALIGNED_ADDRESS:
            *text = "a kernel was given a misaligned pointer (the emulator printed which on stderr)";
            return CUDA_SUCCESS;
        case CUDA_ERROR_INVALID_CONTEXT:
            *text = "no CUDA context is current on the calling thread (the emulator printed which call on stderr)";
            return CUDA_SUCCESS;
        default:
            return cuGetErrorName(error, text);
    }
}

// Streams and events (see "Streams" above): queued, or finished before the call returns in immediate mode.
CUresult cuStreamCreate(CUstream* stream, unsigned) {
    const CpuMeter meter;
    NEED_CONTEXT("cuStreamCreate");
    std::lock_guard<std::recursive_mutex> lock(g_stream_lock);
    auto s = std::make_shared<StreamState>();
    streams()[s.get()] = s;
    *stream = s.get();
    return CUDA_SUCCESS;
}
CUresult cuStreamCreateWithPriority(CUstream* stream, unsigned flags, int) { return cuStreamCreate(stream, flags); }
CUresult cuStreamDestroy_v2(CUstream stream) {
    const CpuMeter meter;
    NEED_CONTEXT("cuStreamDestroy_v2");
    // A stream's queued work still runs after it is destroyed, as late as before (see `detached`).
    std::lock_guard<std::recursive_mutex> lock(g_stream_lock);
    if (reinterpret_cast<uintptr_t>(stream) <= 2) return CUDA_ERROR_INVALID_HANDLE;
    StreamRef s = find_stream(stream);
    if (!s || s->destroyed) return CUDA_ERROR_INVALID_HANDLE;
    if (!deferred_streams() || s->queue.empty()) {
        streams().erase(s.get());
        return CUDA_SUCCESS;
    }
    s->destroyed = true;
    auto& d = detached();
    d.push_back(s);
    while (d.size() > kDetached) {
        StreamRef oldest = d.front();
        d.pop_front();
        run_until(oldest.get(), UINT64_MAX);
    }
    return CUDA_SUCCESS;
}
CUresult cuStreamSynchronize(CUstream stream) {
    const CpuMeter meter;
    NEED_CONTEXT("cuStreamSynchronize");
    g_stats.stream_syncs += 1;
    return drain(stream);
}
CUresult cuStreamQuery(CUstream stream) {
    const CpuMeter meter;
    NEED_CONTEXT("cuStreamQuery");
    return drain(stream);
}
CUresult cuStreamWaitEvent(CUstream stream, CUevent event, unsigned) {
    const CpuMeter meter;
    NEED_CONTEXT("cuStreamWaitEvent");
    g_stats.event_waits += 1;
    if (!deferred_streams()) return CUDA_SUCCESS;
    std::lock_guard<std::recursive_mutex> lock(g_stream_lock);
    const std::shared_ptr<EventState>& e = static_cast<Event*>(event)->state;
    // The work before the event's latest record (an event never recorded has none).
    StreamRef waited = e->stream;
    const uint64_t seq = e->seq;
    StreamRef s = find_stream(stream);
    if (!s) return CUDA_ERROR_INVALID_HANDLE;
    if (!waited || waited == s) return CUDA_SUCCESS;
    // What `s` is ordered after from here on: the waited stream's ops up to the record, and what they were ordered
    // after then.
    for (auto& kv : e->after) {
        if (kv.first != s->id) s->after[kv.first] = std::max(s->after[kv.first], kv.second);
    }
    s->after[waited->id] = std::max(s->after[waited->id], seq);
    return submit(stream, "cuStreamWaitEvent", [waited, seq] { return run_until(waited.get(), seq); });
}
CUresult cuStreamIsCapturing(CUstream, int* status) {
    const CpuMeter meter;
    NEED_CONTEXT("cuStreamIsCapturing");
    *status = 0;
    return CUDA_SUCCESS;
}
CUresult cuCtxGetStreamPriorityRange(int* least, int* greatest) {
    const CpuMeter meter;
    NEED_CONTEXT("cuCtxGetStreamPriorityRange");
    if (least) *least = 0;
    if (greatest) *greatest = 0;
    return CUDA_SUCCESS;
}
CUresult cuLaunchHostFunc(CUstream stream, void (*fn)(void*), void* data) {
    const CpuMeter meter;
    NEED_CONTEXT("cuLaunchHostFunc");
    return submit(stream, "cuLaunchHostFunc", [fn, data] {
        fn(data);
        return CUDA_SUCCESS;
    });
}
CUresult cuEventCreate(CUevent* event, unsigned) {
    const CpuMeter meter;
    NEED_CONTEXT("cuEventCreate");
    *event = new Event();
    return CUDA_SUCCESS;
}
CUresult cuEventRecord(CUevent event, CUstream stream) {
    const CpuMeter meter;
    NEED_CONTEXT("cuEventRecord");
    g_stats.event_records += 1;
    const std::shared_ptr<EventState> e = static_cast<Event*>(event)->state;
    if (!deferred_streams()) {
        e->at = std::chrono::steady_clock::now();
        return CUDA_SUCCESS;
    }
    std::lock_guard<std::recursive_mutex> lock(g_stream_lock);
    StreamRef s = find_stream(stream);
    if (!s) return CUDA_ERROR_INVALID_HANDLE;
    const uint64_t seq = s->next;
    e->stream = s;
    e->seq = seq;
    e->after = s->after;
    // (The op holds the event's state, not the handle: an event may be destroyed before it completes.)
    return submit(stream, "cuEventRecord", [e, seq] {
        if (e->seq == seq) e->at = std::chrono::steady_clock::now();
        return CUDA_SUCCESS;
    });
}
// Runs the work before `event`'s latest record.
static CUresult complete(CUevent event) {
    std::lock_guard<std::recursive_mutex> lock(g_stream_lock);
    const std::shared_ptr<EventState>& e = static_cast<Event*>(event)->state;
    return e->stream ? run_until(e->stream.get(), e->seq) : g_sticky;
}
CUresult cuEventSynchronize(CUevent event) {
    const CpuMeter meter;
    NEED_CONTEXT("cuEventSynchronize");
    g_stats.event_syncs += 1;
    return complete(event);
}
CUresult cuEventQuery(CUevent event) {
    const CpuMeter meter;
    NEED_CONTEXT("cuEventQuery");
    return complete(event);
}
CUresult cuEventElapsedTime(float* ms, CUevent start, CUevent end) {
    const CpuMeter meter;
    NEED_CONTEXT("cuEventElapsedTime");
    if (CUresult r = complete(start)) return r;
    if (CUresult r = complete(end)) return r;
    *ms = std::chrono::duration<float, std::milli>(static_cast<Event*>(end)->state->at -
                                                   static_cast<Event*>(start)->state->at)
              .count();
    return CUDA_SUCCESS;
}
CUresult cuEventElapsedTime_v2(float* ms, CUevent start, CUevent end) { return cuEventElapsedTime(ms, start, end); }
CUresult cuEventDestroy_v2(CUevent event) {
    const CpuMeter meter;
    NEED_CONTEXT("cuEventDestroy_v2");
    delete static_cast<Event*>(event);
    return CUDA_SUCCESS;
}

// Memory.
static CUresult allocate_device(CUdeviceptr* ptr, size_t bytes);
CUresult cuMemAlloc_v2(CUdeviceptr* ptr, size_t bytes) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemAlloc_v2");
    return allocate_device(ptr, bytes);
}
static CUresult allocate_device(CUdeviceptr* ptr, size_t bytes) {
    if (bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    void* p = nullptr;
    // Exactly `bytes` (no rounding): under AddressSanitizer the first byte past the buffer is a red zone.
    if (posix_memalign(&p, 256, bytes) != 0 || p == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    std::memset(p, 0xff, bytes);
    {
        std::lock_guard<std::mutex> lock(g_memory_lock);
        allocations()[reinterpret_cast<uintptr_t>(p)] = bytes;
    }
    g_stats.allocations += 1;
    g_stats.allocated_bytes += bytes;
    *ptr = reinterpret_cast<CUdeviceptr>(p);
    return CUDA_SUCCESS;
}
// Stream-ordered allocation: the memory is there at once, but as far as other streams go it is the allocating
// stream's until that stream gets there (an op that writes it, for `race`): another stream that uses it before
// then, unordered, may find it not yet allocated on a GPU.
CUresult cuMemAllocAsync(CUdeviceptr* ptr, size_t bytes, CUstream stream) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemAllocAsync");
    if (CUresult r = allocate_device(ptr, bytes)) return r;
    return submit(stream, "cuMemAllocAsync", [] { return CUDA_SUCCESS; }, {Access{uintptr_t(*ptr), true}});
}
static CUresult free_device(const char* call, CUdeviceptr ptr) {
    {
        std::lock_guard<std::mutex> lock(g_memory_lock);
        if (allocations().erase(static_cast<uintptr_t>(ptr)) != 1) {
            complain(call, "not an allocation (or freed twice)");
            return CUDA_ERROR_INVALID_VALUE;
        }
    }
    std::free(reinterpret_cast<void*>(ptr));
    return CUDA_SUCCESS;
}
CUresult cuMemFree_v2(CUdeviceptr ptr) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemFree_v2");
    g_stats.frees += 1;
    // (cuMemFree may wait for the device: queued work that uses the buffer runs first.)
    if (CUresult r = drain_all()) return r;
    return free_device("cuMemFree", ptr);
}
// Stream-ordered free: the buffer goes when its stream gets there (another stream that uses it must have been made
// to wait for that point; after it, its kernels find the pointer dead and its copies fail).
CUresult cuMemFreeAsync(CUdeviceptr ptr, CUstream stream) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemFreeAsync");
    g_stats.frees += 1;
    {
        std::lock_guard<std::mutex> lock(g_memory_lock);
        if (allocations().count(static_cast<uintptr_t>(ptr)) != 1) {
            complain("cuMemFreeAsync", "not an allocation");
            return CUDA_ERROR_INVALID_VALUE;
        }
    }
    return submit(stream, "cuMemFreeAsync", [ptr] { return free_device("cuMemFreeAsync", ptr); },
                  {Access{uintptr_t(ptr), true}});
}
// The default memory pool: one handle; of its attributes only the release threshold (4) is kept (nothing is pooled:
// a freed buffer goes at once when its free runs).
CUresult cuDeviceGetDefaultMemPool(CUmemoryPool* pool, CUdevice device) {
    const CpuMeter meter;
    if (pool == nullptr || device != 0) return CUDA_ERROR_INVALID_VALUE;
    *pool = &g_pool_tag;
    return CUDA_SUCCESS;
}
CUresult cuMemPoolSetAttribute(CUmemoryPool pool, int attribute, void* value) {
    const CpuMeter meter;
    if (pool != &g_pool_tag || value == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (attribute != 4) return CUDA_ERROR_NOT_SUPPORTED;
    g_stats.pool_release_threshold = *static_cast<const uint64_t*>(value);
    return CUDA_SUCCESS;
}
CUresult cuMemPoolGetAttribute(CUmemoryPool pool, int attribute, void* value) {
    const CpuMeter meter;
    if (pool != &g_pool_tag || value == nullptr) return CUDA_ERROR_INVALID_VALUE;
    if (attribute != 4) return CUDA_ERROR_NOT_SUPPORTED;
    *static_cast<uint64_t*>(value) = g_stats.pool_release_threshold;
    return CUDA_SUCCESS;
}
// The most bytes of page-locked memory held at once (SPATIALSYNTH_CUDA_EMU_PINNED_LIMIT; unset: no limit): an
// allocation past it is refused with CUDA_ERROR_OUT_OF_MEMORY, as NVIDIA's driver refuses one the host cannot lock.
static size_t pinned_limit() {
    static const size_t limit = []() -> size_t {
        const char* s = std::getenv("SPATIALSYNTH_CUDA_EMU_PINNED_LIMIT");
        if (s == nullptr || *s == 0) return SIZE_MAX;
        char* end = nullptr;
        const unsigned long long v = std::strtoull(s, &end, 10);
        if (end == s || *end != 0 || *s == '-') {
            std::fprintf(stderr, "cuda emulator: SPATIALSYNTH_CUDA_EMU_PINNED_LIMIT=%s is not a number of bytes\n", s);
            std::abort();
        }
        return static_cast<size_t>(v);
    }();
    return limit;
}
CUresult cuMemHostAlloc(void** p, size_t bytes, unsigned flags) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemHostAlloc");
    std::lock_guard<std::mutex> lock(g_memory_lock);
    size_t held = 0;
    for (const auto& a : host_allocations()) held += a.second.first;
    if (bytes > pinned_limit() || held > pinned_limit() - bytes) {
        g_stats.pinned_refusals += 1;
        *p = nullptr;
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    *p = std::malloc(bytes > 0 ? bytes : 1);
    if (*p == nullptr) return CUDA_ERROR_OUT_OF_MEMORY;
    g_stats.pinned_allocations += 1;
    g_stats.pinned_allocated_bytes += bytes;
    host_allocations()[reinterpret_cast<uintptr_t>(*p)] = {bytes, flags};
    return CUDA_SUCCESS;
}
CUresult cuMemAllocHost_v2(void** p, size_t bytes) { return cuMemHostAlloc(p, bytes, 0); }
CUresult cuMemFreeHost(void* p) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemFreeHost");
    size_t bytes = 0;
    {
        std::lock_guard<std::mutex> lock(g_memory_lock);
        auto it = host_allocations().find(reinterpret_cast<uintptr_t>(p));
        if (it == host_allocations().end()) {
            complain("cuMemFreeHost", "not a page-locked allocation");
            return CUDA_ERROR_INVALID_VALUE;
        }
        bytes = it->second.first;
    }
    if (host_in_use(p, bytes > 0 ? bytes : 1)) {
        complain("cuMemFreeHost",
                 "a queued copy still uses this page-locked memory (synchronise its stream, or an event recorded "
                 "after the copy, before freeing it)");
        // (cudarc drops pinned buffers in `Drop`, where an error is only kept: every later synchronisation fails.)
        std::lock_guard<std::recursive_mutex> lock(g_stream_lock);
        if (g_sticky == CUDA_SUCCESS) g_sticky = CUDA_ERROR_ILLEGAL_STATE;
        return CUDA_ERROR_ILLEGAL_STATE;
    }
    {
        std::lock_guard<std::mutex> lock(g_memory_lock);
        host_allocations().erase(reinterpret_cast<uintptr_t>(p));
    }
    std::free(p);
    return CUDA_SUCCESS;
}
CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemGetInfo_v2");
    *free_bytes = size_t(8) << 30;
    *total = size_t(8) << 30;
    return CUDA_SUCCESS;
}

// Copies and memsets: checked and counted when called; the bytes move when they run (the device side is checked
// again then: a stream-ordered free may have run in between).
static CUresult check_device(const char* call, CUdeviceptr p, size_t n, const char* what) {
    if (device_range(p, n)) return CUDA_SUCCESS;
    complain(call, what);
    return CUDA_ERROR_INVALID_VALUE;
}
// The page-locked flags of host range [p, p + n) (-1: pageable), counting the copy; -2 when refused.
static long long count_host_copy(const char* call, const void* p, size_t n, bool htod) {
    const long long flags = host_range_flags(p, n);
    if (flags == -2) {
        complain(call, htod ? "the source runs past the end of its page-locked allocation"
                            : "the destination runs past the end of its page-locked allocation");
        return -2;
    }
    if (htod) {
        if (flags >= 0) g_stats.htod_pinned_bytes += n;
        g_stats.htod_bytes += n;
        g_stats.htod_copies += 1;
        trace("htod", n, "");
    } else {
        if (flags >= 0) g_stats.dtoh_pinned_bytes += n;
        if (flags >= 0 && (flags & kHostAllocWriteCombined) != 0) g_stats.dtoh_write_combined_bytes += n;
        g_stats.dtoh_bytes += n;
        g_stats.dtoh_copies += 1;
        trace("dtoh", n, "");
    }
    return flags;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemcpyHtoD_v2");
    const char* call = "cuMemcpyHtoD";
    if (CUresult r = check_device(call, dst, n, "the destination is not within one allocation")) return r;
    if (count_host_copy(call, src, n, true) == -2) return CUDA_ERROR_INVALID_VALUE;
    // On the NULL stream, which cudarc's non-blocking streams do not wait for, nor it for them.
    if (CUresult r = check_race(nullptr, call, {Access{buffer_of(dst), true}})) return r;
    if (CUresult r = drain(nullptr)) return r;  // (the NULL stream's work first)
    std::memcpy(reinterpret_cast<void*>(dst), src, n);
    return CUDA_SUCCESS;
}
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, CUstream stream) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemcpyHtoDAsync_v2");
    const char* call = "cuMemcpyHtoDAsync";
    if (CUresult r = check_device(call, dst, n, "the destination is not within one allocation")) return r;
    const long long flags = count_host_copy(call, src, n, true);
    if (flags == -2) return CUDA_ERROR_INVALID_VALUE;
    if (!deferred_streams()) {
        std::memcpy(reinterpret_cast<void*>(dst), src, n);
        return CUDA_SUCCESS;
    }
    auto write = [call, dst, n](const void* from) -> CUresult {
        if (CUresult r = check_device(call, dst, n, "the destination was freed before the copy ran")) return r;
        std::memcpy(reinterpret_cast<void*>(dst), from, n);
        return CUDA_SUCCESS;
    };
    if (flags < 0) {
        // Pageable memory: the driver stages it before the call returns (the caller may free it at once).
        auto staged = std::make_shared<std::vector<unsigned char>>(static_cast<const unsigned char*>(src),
                                                                   static_cast<const unsigned char*>(src) + n);
        return submit(stream, call, [write, staged] { return write(staged->data()); }, {Access{buffer_of(dst), true}});
    }
    // Page-locked memory is read when the copy runs: the host must leave it alone until then.
    const uint64_t queued = digest(src, n);
    return submit(
        stream, call,
        [write, call, src, n, queued]() -> CUresult {
            if (digest(src, n) != queued) {
                complain(call,
                         "the host wrote the page-locked source after the copy was queued and before it ran (wait "
                         "for the copy, by its stream or an event, before writing the buffer again)");
                return CUDA_ERROR_ILLEGAL_STATE;
            }
            return write(src);
        },
        {Access{buffer_of(dst), true}}, src, n);
}
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemcpyDtoH_v2");
    const char* call = "cuMemcpyDtoH";
    if (CUresult r = check_device(call, src, n, "the source is not within one allocation")) return r;
    if (count_host_copy(call, dst, n, false) == -2) return CUDA_ERROR_INVALID_VALUE;
    if (CUresult r = check_race(nullptr, call, {Access{buffer_of(src), false}})) return r;
    if (CUresult r = drain(nullptr)) return r;
    std::memcpy(dst, reinterpret_cast<const void*>(src), n);
    return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, CUstream stream) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemcpyDtoHAsync_v2");
    const char* call = "cuMemcpyDtoHAsync";
    if (CUresult r = check_device(call, src, n, "the source is not within one allocation")) return r;
    const long long flags = count_host_copy(call, dst, n, false);
    if (flags == -2) return CUDA_ERROR_INVALID_VALUE;
    const std::vector<Access> device{Access{buffer_of(src), false}};
    if (flags < 0 || !deferred_streams()) {
        // Into pageable memory the call returns once the copy is done: after the stream's earlier work.
        if (CUresult r = check_race(stream, call, device)) return r;
        if (CUresult r = drain(stream)) return r;
        std::memcpy(dst, reinterpret_cast<const void*>(src), n);
        return CUDA_SUCCESS;
    }
    // Into page-locked memory: nothing the host may read until the copy has run (0xff bytes: NaNs, 0xffffffff),
    // unless a queued copy still reads those bytes (one queued before on this stream, say).
    if (!host_in_use(dst, n)) std::memset(dst, 0xff, n);
    return submit(
        stream, call,
        [call, dst, src, n]() -> CUresult {
            if (CUresult r = check_device(call, src, n, "the source was freed before the copy ran")) return r;
            std::memcpy(dst, reinterpret_cast<const void*>(src), n);
            return CUDA_SUCCESS;
        },
        device, dst, n);
}
static CUresult copy_device(const char* call, CUdeviceptr dst, CUdeviceptr src, size_t n) {
    if (!device_range(dst, n) || !device_range(src, n)) {
        complain(call, "a side is not within one allocation");
        return CUDA_ERROR_INVALID_VALUE;
    }
    std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n);
    return CUDA_SUCCESS;
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemcpyDtoD_v2");
    const std::vector<Access> device{Access{buffer_of(src), false}, Access{buffer_of(dst), true}};
    if (CUresult r = check_race(nullptr, "cuMemcpyDtoD", device)) return r;
    if (CUresult r = drain(nullptr)) return r;
    g_stats.dtod_bytes += n;
    return copy_device("cuMemcpyDtoD", dst, src, n);
}
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream stream) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemcpyDtoDAsync_v2");
    const char* call = "cuMemcpyDtoDAsync";
    if (CUresult r = check_device(call, dst, n, "the destination is not within one allocation")) return r;
    if (CUresult r = check_device(call, src, n, "the source is not within one allocation")) return r;
    g_stats.dtod_bytes += n;
    return submit(stream, call, [call, dst, src, n] { return copy_device(call, dst, src, n); },
                  {Access{buffer_of(src), false}, Access{buffer_of(dst), true}});
}
// Fills `n` words of `width` bytes (1 or 4) at `dst` with `value`.
static CUresult fill_device(const char* call, CUdeviceptr dst, unsigned value, size_t n, size_t width) {
    if (CUresult r = check_device(call, dst, n * width, "the destination is not within one allocation")) return r;
    if (width == 1) {
        std::memset(reinterpret_cast<void*>(dst), int(value & 0xff), n);
    } else {
        auto* words = reinterpret_cast<unsigned*>(dst);
        for (size_t i = 0; i < n; ++i) words[i] = value;
    }
    return CUDA_SUCCESS;
}
static CUresult memset_async(const char* call, CUdeviceptr dst, unsigned value, size_t n, size_t width,
                             CUstream stream) {
    if (CUresult r = check_device(call, dst, n * width, "the destination is not within one allocation")) return r;
    g_stats.memsets += 1;
    g_stats.memset_bytes += n * width;
    return submit(stream, call, [=] { return fill_device(call, dst, value, n, width); }, {Access{buffer_of(dst), true}});
}
CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char value, size_t n) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemsetD8_v2");
    if (CUresult r = check_race(nullptr, "cuMemsetD8", {Access{buffer_of(dst), true}})) return r;
    if (CUresult r = drain(nullptr)) return r;
    g_stats.memsets += 1;
    g_stats.memset_bytes += n * 1;
    return fill_device("cuMemsetD8", dst, value, n, 1);
}
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char value, size_t n, CUstream stream) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemsetD8Async");
    return memset_async("cuMemsetD8Async", dst, value, n, 1, stream);
}
CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned value, size_t n) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemsetD32_v2");
    if (CUresult r = check_race(nullptr, "cuMemsetD32", {Access{buffer_of(dst), true}})) return r;
    if (CUresult r = drain(nullptr)) return r;
    g_stats.memsets += 1;
    g_stats.memset_bytes += n * 4;
    return fill_device("cuMemsetD32", dst, value, n, 4);
}
CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned value, size_t n, CUstream stream) {
    const CpuMeter meter;
    NEED_CONTEXT("cuMemsetD32Async");
    return memset_async("cuMemsetD32Async", dst, value, n, 4, stream);
}

// Modules and functions.
CUresult cuModuleLoadData(CUmodule* module, const void* image) {
    const CpuMeter meter;
    NEED_CONTEXT("cuModuleLoadData");
    const std::string ptx(static_cast<const char*>(image));
    // Each entry point, with its declared block (`.maxntid` between its parameters and its body, from
    // `__launch_bounds__`; none: any block the device allows).
    std::map<std::string, unsigned long long> entries;
    for (size_t at = ptx.find(".entry "); at != std::string::npos; at = ptx.find(".entry ", at + 7)) {
        size_t start = at + 7;
        while (start < ptx.size() && ptx[start] == ' ') ++start;
        size_t end = start;
        while (end < ptx.size() && ptx[end] != '(' && ptx[end] != ' ' && ptx[end] != '\n') ++end;
        unsigned long long max_threads = kMaxThreads;
        const size_t params_end = ptx.find(')', end);
        const size_t body = params_end == std::string::npos ? std::string::npos : ptx.find('{', params_end);
        const size_t bound = params_end == std::string::npos ? std::string::npos : ptx.find(".maxntid", params_end);
        if (bound != std::string::npos && body != std::string::npos && bound < body) {
            // `.maxntid x` or `.maxntid x, y, z` (absent sizes are 1).
            unsigned x = 0, y = 1, z = 1;
            const int read = std::sscanf(ptx.c_str() + bound, ".maxntid %u , %u , %u", &x, &y, &z);
            if (read < 1 || x == 0 || y == 0 || z == 0) {
                complain("cuModuleLoadData", "an entry point's .maxntid is not one to three positive numbers");
                return CUDA_ERROR_INVALID_IMAGE;
            }
            max_threads = std::min<unsigned long long>((unsigned long long)x * y * z, kMaxThreads);
        }
        entries[ptx.substr(start, end - start)] = max_threads;
    }
    // The module whose registered entry points are all in the PTX (a module may hold more kernels than the backend
    // loads, e.g. scan.cuh's scan_counts in stats.cu); exactly one must match.
    Module* found = nullptr;
    for (Module& m : registry()) {
        bool all = !m.entries.empty();
        for (auto& e : m.entries) all = all && entries.count(e.first) == 1;
        if (!all) continue;
        if (found != nullptr) {
            complain("cuModuleLoadData", "the PTX's entry points match two emulated modules");
            return CUDA_ERROR_INVALID_IMAGE;
        }
        found = &m;
    }
    if (found == nullptr) {
        complain("cuModuleLoadData", "no emulated module has the PTX's entry points");
        return CUDA_ERROR_INVALID_IMAGE;
    }
    *module = new Loaded{found, std::move(entries)};
    return CUDA_SUCCESS;
}
CUresult cuModuleUnload(CUmodule module) {
    const CpuMeter meter;
    NEED_CONTEXT("cuModuleUnload");
    delete static_cast<Loaded*>(module);
    return CUDA_SUCCESS;
}
CUresult cuModuleGetFunction(CUfunction* function, CUmodule module, const char* name) {
    const CpuMeter meter;
    NEED_CONTEXT("cuModuleGetFunction");
    const Loaded* loaded = static_cast<const Loaded*>(module);
    const Module* m = loaded->module;
    auto it = m->entries.find(name);
    auto bound = loaded->max_threads.find(name);
    if (it == m->entries.end() || bound == loaded->max_threads.end()) return CUDA_ERROR_NOT_FOUND;
    *function = new Function{m->file, name, it->second, bound->second};
    return CUDA_SUCCESS;
}
// CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK (0): the declared block, as a GPU reports it when the registers allow it
// (they always do with `__launch_bounds__`); the other attributes (registers, memory sizes) are 0: the emulator has
// no registers.
CUresult cuFuncGetAttribute(int* value, int attribute, CUfunction function) {
    const CpuMeter meter;
    NEED_CONTEXT("cuFuncGetAttribute");
    *value = attribute == 0 ? int(static_cast<const Function*>(function)->max_threads) : 0;
    return CUDA_SUCCESS;
}
CUresult cuFuncSetAttribute(CUfunction, int, int) {
    NEED_CONTEXT("cuFuncSetAttribute");
    return CUDA_SUCCESS;
}
CUresult cuFuncSetCacheConfig(CUfunction, int) {
    NEED_CONTEXT("cuFuncSetCacheConfig");
    return CUDA_SUCCESS;
}

// Runs a launch's blocks (when its stream gets to it).
static CUresult run_launch(const std::string& name, const emu::Bound& bound, unsigned gx, unsigned gy, unsigned gz,
                           unsigned bx, unsigned by, unsigned bz, uint64_t launch_seed) {
    // Every pointer argument still points into a live device buffer (a stream-ordered free that ran before the
    // kernel, on its stream or another, leaves it dangling).
    for (const auto& pointer : bound.pointers) {
        const uintptr_t p = pointer.value;
        if (p != 0 && buffer_of(p) == 0) {
            complain(name.c_str(),
                     "a pointer argument is in no live device buffer when the kernel runs (freed before it, on its "
                     "stream or on one that did not wait for the kernel)");
            return CUDA_ERROR_ILLEGAL_ADDRESS;
        }
        // A GPU loads and stores a value only at an address aligned to its size: a misaligned pointer argument (a
        // buffer of words passed at an odd offset as a pointer to 8-byte values, say) faults there.
        if (p % pointer.align != 0) {
            char why[160];
            std::snprintf(why, sizeof why, "a pointer argument (%#llx) is not aligned to its type's %zu bytes",
                          (unsigned long long)p, pointer.align);
            complain(name.c_str(), why);
            return CUDA_ERROR_MISALIGNED_ADDRESS;
        }
    }
    const unsigned long long threads = (unsigned long long)bx * by * bz;
    const unsigned long long blocks = (unsigned long long)gx * gy * gz;
    std::atomic<unsigned long long> next{0};
    // The environment is read once per process.
    static const Schedule schedule = emulator_schedule();
    static const unsigned threads_max = emulator_threads();
    std::mutex error_lock;
    std::string error;
    auto worker = [&]() {
        auto block = std::make_unique<Block>();
        tl_stacks = take_stacks();
        struct GiveBack {
            ~GiveBack() { give_back_stacks(tl_stacks); }
        } give_back;
        emu::tl_coordinates.block_dim = emu::uint3{bx, by, bz};
        emu::tl_coordinates.grid_dim = emu::uint3{gx, gy, gz};
        while (true) {
            const unsigned long long k = next.fetch_add(1);
            if (k >= blocks) return;
            {
                std::lock_guard<std::mutex> lock(error_lock);
                if (!error.empty()) return;
            }
            emu::tl_coordinates.block_idx =
                emu::uint3{unsigned(k % gx), unsigned((k / gx) % gy), unsigned(k / ((unsigned long long)gx * gy))};
            Block& b = *block;
            b.n = unsigned(threads);
            b.kernel = &bound.run;
            b.arrivals = 0;
            b.count = 0;
            b.error.clear();
            b.schedule = schedule;
            b.schedule_seed = launch_seed * 0x100000001b3ull + k;
            if (!run_block(&b)) {
                std::lock_guard<std::mutex> lock(error_lock);
                if (error.empty()) {
                    char where[96];
                    std::snprintf(where, sizeof where, "block (%u, %u, %u): ", emu::tl_coordinates.block_idx.x,
                                  emu::tl_coordinates.block_idx.y, emu::tl_coordinates.block_idx.z);
                    error = where + b.error;
                }
                return;
            }
        }
    };
    const unsigned long long pool = std::min<unsigned long long>(threads_max, blocks);
    std::vector<std::thread> helpers;
    for (unsigned long long i = 1; i < pool; ++i) {
        helpers.emplace_back([&worker] {
            const CpuMeter meter;  // (the calling thread's share is its driver call's)
            worker();
        });
    }
    worker();
    for (auto& h : helpers) h.join();
    if (!error.empty()) {
        complain(name.c_str(), error.c_str());
        return CUDA_ERROR_LAUNCH_FAILED;
    }
    return CUDA_SUCCESS;
}

// Checked, counted and its arguments copied when called (as CUDA copies them); run when its stream gets to it.
CUresult cuLaunchKernel(CUfunction function, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                        unsigned bz, unsigned shared_bytes, CUstream stream, void** params, void** extra) {
    const CpuMeter meter;
    NEED_CONTEXT("cuLaunchKernel");
    const Function* f = static_cast<const Function*>(function);
    const unsigned long long threads = (unsigned long long)bx * by * bz;
    const unsigned long long blocks = (unsigned long long)gx * gy * gz;
    const std::string name = f->module + " " + f->name;
    // The limits cuDeviceGetAttribute reports.
    const bool block_ok = bx <= kMaxBlockX && by <= kMaxBlockY && bz <= kMaxBlockZ && threads <= kMaxThreads;
    const bool grid_ok = gx <= kMaxGridX && gy <= max_grid_yz() && gz <= max_grid_yz();
    if (threads == 0 || blocks == 0 || !block_ok || !grid_ok) {
        complain(name.c_str(), "launch dimensions out of range");
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (threads > f->max_threads) {
        char why[160];
        std::snprintf(why, sizeof why, "a block of %llu threads, more than the kernel's __launch_bounds__ (%llu)",
                      threads, f->max_threads);
        complain(name.c_str(), why);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (shared_bytes != 0 || extra != nullptr) {
        complain(name.c_str(), "dynamic shared memory and `extra` are not emulated");
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    {
        std::lock_guard<std::mutex> lock(g_stats.lock);
        g_stats.launches[f->module + ":" + f->name] += 1;
    }
    trace("launch", 0, f->name);
    static const uint64_t seed = emulator_seed();
    const uint64_t launch_seed = seed * 1000003ull + g_launches.fetch_add(1);
    auto bound = std::make_shared<emu::Bound>(f->entry(params));
    std::vector<Access> device;
    for (const auto& pointer : bound->pointers) {
        if (const uintptr_t b = buffer_of(pointer.value)) device.push_back(Access{b, pointer.writes});
    }
    return submit(
        stream, "kernel " + name,
        [name, bound, gx, gy, gz, bx, by, bz, launch_seed] {
            return run_launch(name, *bound, gx, gy, gz, bx, by, bz, launch_seed);
        },
        std::move(device));
}

}  // extern "C"
