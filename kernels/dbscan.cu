// K3: exact DBSCAN (the definitions of src/geometry/dbscan.rs; the CUDA twin of shaders/dbscan.wgsl) for a batch of
// jobs (one object's points each, say), each with its own eps and min_points: core points have at least min_points
// neighbours within eps (themselves included); core points within eps are in one cluster; a border point joins the
// cluster of its nearest core point (ties: the lower original index). The host bins each job's points into cells of
// side a little over its eps and stacks the jobs along z with an empty layer between them (`DbscanGrid` in
// src/backend/pack.rs), so every neighbour lies in the 3 x 3 x 3 block of cells around a point and no block reaches
// another job; points are sorted by cell, then by batch index (the occupied cells listed in (z, y, x) order); each
// neighbour cell is found by binary search. Clusters are the trees of a lock-free union-find over the core points
// (`unite`: one neighbour scan, each pair of core points within eps joined once; `flatten`): each core point's label
// ends as the smallest batch index of its cluster, the canonical name the host then numbers 0, 1, ... per job.
// Needs common.cuh (prepended by the host).

#define NONE 0xffffffffu

// Keep in sync with `DbscanParams` in src/backend/layout.rs (32 bytes).
struct Params {
    u32 points;
    u32 cells;
    u32 jobs;
    u32 pad0, pad1, pad2, pad3, pad4;
};
static_assert(sizeof(Params) == 32, "Params must match DbscanParams (32 bytes)");

// Keep in sync with `DbscanJobParams` in src/backend/layout.rs (16 bytes).
struct Job {
    float eps2;
    u32 min_points;
    u32 pad0, pad1;
};
static_assert(sizeof(Job) == 16, "Job must match DbscanJobParams (16 bytes)");

// The sorted points; (x, y, z, job) of each sorted point (cell coordinates relative to the job's lowest, at least 1,
// z stacked by job) followed by the coordinates (x, y, z) of each occupied cell; the occupied cells' first points
// (cells + 1 entries); each sorted point's batch index.
struct Grid {
    const float* __restrict__ points;
    const u32* __restrict__ cell_xyz;
    const u32* __restrict__ cell_start;
    const u32* __restrict__ original;
};

__device__ __forceinline__ float dist2(const float* __restrict__ p, u32 i, u32 j) {
    const float dx = p[3u * i] - p[3u * j];
    const float dy = p[3u * i + 1u] - p[3u * j + 1u];
    const float dz = p[3u * i + 2u] - p[3u * j + 2u];
    return dx * dx + dy * dy + dz * dz;
}

// (z, y, x) order of cell coordinates: -1, 0, 1.
__device__ __forceinline__ int compare(u32 ax, u32 ay, u32 az, u32 bx, u32 by, u32 bz) {
    if (az != bz) return az < bz ? -1 : 1;
    if (ay != by) return ay < by ? -1 : 1;
    if (ax != bx) return ax < bx ? -1 : 1;
    return 0;
}

// The points of the occupied cell (x, y, z) as [start, end), empty when the cell is not occupied.
__device__ __forceinline__ uint2 cell_range(const Grid& g, const Params& p, u32 x, u32 y, u32 z) {
    u32 lo = 0, hi = p.cells;
    const u32* __restrict__ cells = g.cell_xyz + 4u * p.points;
    while (lo < hi) {
        const u32 mid = (lo + hi) / 2u;
        const int c = compare(cells[3u * mid], cells[3u * mid + 1u], cells[3u * mid + 2u], x, y, z);
        if (c == 0) return make_uint2(g.cell_start[mid], g.cell_start[mid + 1u]);
        if (c < 0) lo = mid + 1u; else hi = mid;
    }
    return make_uint2(0u, 0u);
}

// Visits every point j in the 3 x 3 x 3 cells around point i's cell (coordinates are at least 1: c - 1 never wraps).
template <typename F>
__device__ __forceinline__ void for_neighbour_cells(const Grid& g, const Params& p, u32 i, F visit) {
    const u32 cx = g.cell_xyz[4u * i], cy = g.cell_xyz[4u * i + 1u], cz = g.cell_xyz[4u * i + 2u];
    for (u32 z = cz - 1u; z <= cz + 1u; ++z)
        for (u32 y = cy - 1u; y <= cy + 1u; ++y)
            for (u32 x = cx - 1u; x <= cx + 1u; ++x) {
                const uint2 r = cell_range(g, p, x, y, z);
                for (u32 j = r.x; j < r.y; ++j) visit(j);
            }
}

extern "C" __global__ void count_neighbours(
    const float* __restrict__ points, const u32* __restrict__ cell_xyz, const u32* __restrict__ cell_start,
    const u32* __restrict__ original, const Job* __restrict__ jobs, const Params p, u32* __restrict__ core,
    u32* __restrict__ labels) {
    const Grid g{points, cell_xyz, cell_start, original};
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.points) return;
    const Job job = jobs[cell_xyz[4u * i + 3u]];
    u32 count = 0;
    for_neighbour_cells(g, p, i, [&](u32 j) { count += dist2(g.points, i, j) <= job.eps2 ? 1u : 0u; });
    const bool is_core = count >= job.min_points;
    core[i] = is_core ? 1u : 0u;
    labels[i] = is_core ? g.original[i] : NONE;
}

// Union-find over the core points (a forest in `labels`, indexed by sorted position: a core point's label is its
// parent's batch index, a root's is its own). A root is only ever hooked under a smaller root, so each tree's root
// is the smallest batch index of its points, and labels only decrease. `position` maps a batch index to its sorted
// position.

// The root of batch index x's tree. Path halving: each visited node's label skips to its grandparent, an ancestor
// (a smaller batch index), so the forest stays a forest whatever the interleaving. Roots are never written here
// (only `hook` changes a root's label, by compare-and-swap).
__device__ __forceinline__ u32 find_root(volatile u32* labels, const u32* __restrict__ position, u32 x) {
    while (true) {
        const u32 parent = labels[position[x]];
        if (parent == x) return x;
        const u32 grand = labels[position[parent]];
        if (grand != parent) labels[position[x]] = grand;
        x = grand;
    }
}

// Joins the trees of batch indices a and b: the larger root is hooked under the smaller by compare-and-swap; when
// another thread hooked it first, the join is retried from the new roots (lock free: a failed swap means another
// join succeeded).
__device__ __forceinline__ void hook(u32* labels, const u32* __restrict__ position, u32 a, u32 b) {
    volatile u32* v = labels;
    while (true) {
        a = find_root(v, position, a);
        b = find_root(v, position, b);
        if (a == b) return;
        if (a > b) {
            const u32 t = a;
            a = b;
            b = t;
        }
        if (atomicCAS(&labels[position[b]], b, a) == b) return;
    }
}

// Every pair of core points within eps joined once (from the later of the two in sorted order): one neighbour scan
// in all, instead of one per round of label propagation.
extern "C" __global__ void unite(
    const float* __restrict__ points, const u32* __restrict__ cell_xyz, const u32* __restrict__ cell_start,
    const u32* __restrict__ original, const Job* __restrict__ jobs, const Params p, const u32* __restrict__ core,
    const u32* __restrict__ position, u32* labels) {
    const Grid g{points, cell_xyz, cell_start, original};
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.points || core[i] == 0u) return;
    const float eps2 = jobs[cell_xyz[4u * i + 3u]].eps2;
    const u32 me = g.original[i];
    for_neighbour_cells(g, p, i, [&](u32 j) {
        if (j < i && core[j] == 1u && dist2(g.points, i, j) <= eps2) hook(labels, position, me, g.original[j]);
    });
}

// Each core point's label becomes its tree's root (after `unite`, in a launch of its own). Read only but for the
// point's own label, which only ever becomes the root: a concurrent walk through it still finds the same root.
extern "C" __global__ void flatten(const u32* __restrict__ core, const u32* __restrict__ position, const Params p,
                                  u32* labels) {
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.points || core[i] == 0u) return;
    volatile u32* v = labels;
    u32 x = v[i];
    while (true) {
        const u32 parent = v[position[x]];
        if (parent == x) break;
        x = parent;
    }
    labels[i] = x;
}

extern "C" __global__ void assign_borders(
    const float* __restrict__ points, const u32* __restrict__ cell_xyz, const u32* __restrict__ cell_start,
    const u32* __restrict__ original, const Job* __restrict__ jobs, const Params p, const u32* __restrict__ core,
    u32* __restrict__ labels) {
    const Grid g{points, cell_xyz, cell_start, original};
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.points || core[i] == 1u) return;
    float best_d = jobs[cell_xyz[4u * i + 3u]].eps2;
    u32 best_index = NONE, best_label = NONE;
    for_neighbour_cells(g, p, i, [&](u32 j) {
        if (core[j] == 1u) {
            const float d = dist2(g.points, i, j);
            if (d < best_d || (d == best_d && g.original[j] < best_index)) {
                best_d = d;
                best_index = g.original[j];
                best_label = labels[j];
            }
        }
    });
    labels[i] = best_label;
}
