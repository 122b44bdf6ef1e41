// K3: exact DBSCAN (the definitions of src/geometry/dbscan.rs) for a batch of jobs (one object's points each, say),
// each with its own eps and min_points: core points have at least min_points neighbours within eps (themselves
// included); core points within eps are in one cluster; a border point joins the cluster of its nearest core point
// (ties: the lower original index). The grid is the CPU reference's, built on the device: `cell_of` bins each point
// into a cell of its job of side eps/sqrt(3), a little shrunk (floor of the coordinate times the job's inverse side,
// in double precision, as the reference bins), so any two points of a cell are within eps and every neighbour lies in
// the 5 x 5 x 5 block of cells around a point; `claim_cells` gives each occupied cell (job, x, y, z) a slot of an
// open-addressing hash table (linear probing, claimed by compare-and-swap) and counts its points; `scan_counts`
// (scan.cuh) places the slots' points; `scatter_points` writes every point into its cell's range (in any order within
// the cell: nothing below depends on it). Each neighbour cell is then one hash probe. `count_neighbours` takes a cell
// of min_points points or more as all core, as the reference does. Clusters are the trees of a lock-free union-find
// over the core points, a forest of sorted positions, joined cell by cell as the reference joins them (`unite`: each
// core point to its cell's first core point, and each pair of neighbouring cells with a pair of core points within
// eps, unless already joined; `flatten`): each core point's label ends as the sorted position of its cluster's point
// of smallest batch index; `unsort` writes labels and core flags back in batch order, one word per point (the flag in
// the label's top bit), each label renamed to that smallest batch index, the canonical name the host then numbers
// 0, 1, ... per job. The result does not depend on the order of the points within a cell nor on any schedule. Needs
// common.cuh and scan.cuh (prepended by the host).

#define NONE 0xffffffffu
// The largest finite float (every point is finite, but in a chunk `cell_of` refused, whose labels are thrown away).
#define FLT_BIG 3.402823466e38f

// Keep in sync with `DbscanParams` in src/backend/layout.rs (32 bytes). `cells`: the hash table's slots, a power of
// two at least twice the points.
struct Params {
    u32 points;
    u32 cells;
    u32 jobs;
    u32 pad0, pad1, pad2, pad3, pad4;
};
static_assert(sizeof(Params) == 32, "Params must match DbscanParams (32 bytes)");

// Keep in sync with `DbscanJobParams` in src/backend/layout.rs (16 bytes): the squared radius, the core threshold and
// 1 / the cell side.
struct Job {
    float eps2;
    u32 min_points;
    double inv_side;
};
static_assert(sizeof(Job) == 16, "Job must match DbscanJobParams (16 bytes)");

// The sorted points (by cell); (x, y, z, job) of each sorted point's cell (x, y, z: the cell's integer coordinates,
// two's complement); each sorted point's batch index; each slot's owner (0: empty; else 1 + the batch index of a
// point of the slot's cell); each slot's first sorted point (slots + 1 entries); (x, y, z, job) of each point's cell
// in batch order (the owners' cells).
struct Grid {
    const float* __restrict__ points;
    const u32* __restrict__ cell_xyz;
    const u32* __restrict__ original;
    const u32* __restrict__ owner;
    const u32* __restrict__ start;
    const u32* __restrict__ cell_b;
};

__device__ __forceinline__ float dist2(const float* __restrict__ p, u32 i, u32 j) {
    const float dx = p[3u * i] - p[3u * j];
    const float dy = p[3u * i + 1u] - p[3u * j + 1u];
    const float dz = p[3u * i + 2u] - p[3u * j + 2u];
    return dx * dx + dy * dy + dz * dz;
}

// The first slot to probe for cell (x, y, z) of job `job`.
__device__ __forceinline__ u32 cell_hash(u32 x, u32 y, u32 z, u32 job, u32 slots) {
    u32 h = x * 0x9e3779b1u ^ y * 0x85ebca77u ^ z * 0xc2b2ae3du ^ job * 0x27d4eb2fu;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return h & (slots - 1u);
}

// Whether point b's cell (batch order) is (x, y, z, job).
__device__ __forceinline__ bool is_cell(const u32* __restrict__ cell_b, u32 b, u32 x, u32 y, u32 z, u32 job) {
    return cell_b[4u * b] == x && cell_b[4u * b + 1u] == y && cell_b[4u * b + 2u] == z && cell_b[4u * b + 3u] == job;
}

// The sorted points of cell (x, y, z) of job `job` as [start, end), empty when no point lies in it.
__device__ __forceinline__ uint2 cell_range(const Grid& g, const Params& p, u32 x, u32 y, u32 z, u32 job) {
    u32 s = cell_hash(x, y, z, job, p.cells);
    while (true) {
        const u32 o = g.owner[s];
        if (o == 0u) return make_uint2(0u, 0u);
        if (is_cell(g.cell_b, o - 1u, x, y, z, job)) return make_uint2(g.start[s], g.start[s + 1u]);
        s = (s + 1u) & (p.cells - 1u);
    }
}

// The cell k of the 5 x 5 x 5 block around cell (x, y, z) (k = 25 (dz + 2) + 5 (dy + 2) + dx + 2; 62 is the centre,
// and k > 62 are the offsets that follow it in (z, y, x) order) as a range of sorted points. `cell_of` keeps cell
// coordinates within 2^31 - 4 of 0, so c - 2 and c + 2 never wrap.
__device__ __forceinline__ uint2 block_cell(const Grid& g, const Params& p, uint4 c, u32 k) {
    return cell_range(g, p, c.x + k % 5u - 2u, c.y + (k / 5u) % 5u - 2u, c.z + k / 25u - 2u, c.w);
}

// Sorted point i's cell (x, y, z, job).
__device__ __forceinline__ uint4 cell_at(const Grid& g, u32 i) {
    return make_uint4(g.cell_xyz[4u * i], g.cell_xyz[4u * i + 1u], g.cell_xyz[4u * i + 2u], g.cell_xyz[4u * i + 3u]);
}

// The first core point of a range of sorted points, NONE if it has none.
__device__ __forceinline__ u32 first_core(const u32* __restrict__ core, uint2 r) {
    for (u32 j = r.x; j < r.y; ++j)
        if (core[j] == 1u) return j;
    return NONE;
}

// The batch's points gathered from the objects' points K1 left on the device (`grouped`: x, y, z each): point i is
// grouped point `index[i]`, so the host sends a word per point instead of three. Batch order, as the host would have
// packed them.
extern "C" __global__ void gather_points(const float* __restrict__ grouped, const u32* __restrict__ index,
                                         const Params p, float* __restrict__ points_b) {
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.points) return;
    const unsigned long long s = 3ull * index[i];
    points_b[3ull * i] = grouped[s];
    points_b[3ull * i + 1ull] = grouped[s + 1ull];
    points_b[3ull * i + 2ull] = grouped[s + 2ull];
}

// Each point's cell and job (batch order), and the points' check, which the host does not make (it would read every
// point again): a coordinate that is not finite, or a cell coordinate beyond 2^31 - 4 either way (a neighbour two
// cells on must not wrap), sets `*refused` (zeroed by the host, which then names the job as its own checks would)
// and is binned at 0 on that axis, so that every launch after this one stays within its tables (the labels are
// thrown away).
// The test is the host's (src/backend/pack.rs, dbscan_range_refusal): |floor(v x inv)| <= 2^31 - 4 in double precision,
// false for NaN. `job_start`: each job's first batch index (jobs + 1 entries; no job is empty).
extern "C" __global__ void cell_of(const float* __restrict__ points_b, const u32* __restrict__ job_start,
                                  const Job* __restrict__ jobs, const Params p, u32* __restrict__ cell_b,
                                  u32* refused) {
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.points) return;
    u32 lo = 0, hi = p.jobs;
    while (lo + 1u < hi) {
        const u32 mid = (lo + hi) / 2u;
        if (job_start[mid] <= i) lo = mid; else hi = mid;
    }
    const double inv = jobs[lo].inv_side;
    bool bad = false;
    for (u32 k = 0; k < 3u; ++k) {
        const double c = floor((double)points_b[3u * i + k] * inv);
        const bool fits = fabs(c) <= 2147483644.0;
        bad |= !fits;
        cell_b[4u * i + k] = fits ? (u32)(int)c : 0u;
    }
    cell_b[4u * i + 3u] = lo;
    if (bad) atomicOr(refused, 1u);
}

// Each point's slot (the first slot of its probe sequence that is empty or holds its cell; an empty one is claimed by
// compare-and-swap) and each slot's point count. `owner` and `count` zeroed by the host; `cell_b` from `cell_of`.
extern "C" __global__ void claim_cells(const u32* __restrict__ cell_b, const Params p, u32* owner,
                                      u32* __restrict__ count, u32* __restrict__ slot_b) {
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.points) return;
    const u32 x = cell_b[4u * i], y = cell_b[4u * i + 1u], z = cell_b[4u * i + 2u], job = cell_b[4u * i + 3u];
    u32 s = cell_hash(x, y, z, job, p.cells);
    while (true) {
        u32 o = ((volatile u32*)owner)[s];
        if (o == 0u) {
            o = atomicCAS(&owner[s], 0u, i + 1u);
            if (o == 0u) break;
        }
        if (is_cell(cell_b, o - 1u, x, y, z, job)) break;
        s = (s + 1u) & (p.cells - 1u);
    }
    slot_b[i] = s;
    atomicAdd(&count[s], 1u);
}

// Every point at its cell's range (`start` from `scan_counts` over the slots' counts; `cursor` zeroed by the host):
// the sorted points, their cells and their batch indices.
extern "C" __global__ void scatter_points(const float* __restrict__ points_b, const u32* __restrict__ cell_b,
                                         const u32* __restrict__ slot_b, const u32* __restrict__ start,
                                         const Params p, u32* __restrict__ cursor, float* __restrict__ points,
                                         u32* __restrict__ cell_xyz, u32* __restrict__ original) {
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.points) return;
    const u32 s = slot_b[i];
    const u32 at = start[s] + atomicAdd(&cursor[s], 1u);
    for (u32 k = 0; k < 3u; ++k) points[3u * at + k] = points_b[3u * i + k];
    for (u32 k = 0; k < 4u; ++k) cell_xyz[4u * at + k] = cell_b[4u * i + k];
    original[at] = i;
}

extern "C" __global__ void count_neighbours(
    const float* __restrict__ points, const u32* __restrict__ cell_xyz, const u32* __restrict__ original,
    const u32* __restrict__ owner, const u32* __restrict__ start, const u32* __restrict__ cell_b,
    const Job* __restrict__ jobs, const Params p, u32* __restrict__ core, u32* __restrict__ labels) {
    const Grid g{points, cell_xyz, original, owner, start, cell_b};
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.points) return;
    const Job job = jobs[cell_xyz[4u * i + 3u]];
    // The neighbours within eps counted up to min_points (the count stops there, as the CPU reference's does). The
    // points of the point's own cell are all neighbours (the cell's diagonal is under eps): a cell of min_points
    // points or more is all core without a distance test, as on the CPU.
    const uint4 c = cell_at(g, i);
    const uint2 own = cell_range(g, p, c.x, c.y, c.z, c.w);
    // Then the 26 adjacent cells, where most neighbours lie, before the 98 of the outer shell.
    u32 count = own.y - own.x;
    for (u32 k = 0; k < 250u && count < job.min_points; ++k) {
        const u32 b = k % 125u, dx = b % 5u, dy = (b / 5u) % 5u, dz = b / 25u;
        const bool outer = dx % 4u == 0u || dy % 4u == 0u || dz % 4u == 0u;
        if (b == 62u || outer != (k >= 125u)) continue;
        const uint2 r = block_cell(g, p, c, b);
        for (u32 j = r.x; j < r.y && count < job.min_points; ++j) count += dist2(g.points, i, j) <= job.eps2 ? 1u : 0u;
    }
    const bool is_core = count >= job.min_points;
    core[i] = is_core ? 1u : 0u;
    labels[i] = is_core ? i : NONE;
}

// Union-find over the core points (a forest in `labels`, indexed by sorted position: a core point's label is its
// parent's sorted position, a root's is its own). A root is only ever hooked under a root of smaller batch index, so
// each tree's root is the point of smallest batch index of its points.

// The root of sorted position x's tree. Path halving: each visited node's label skips to its grandparent, an
// ancestor, so the forest stays a forest whatever the interleaving. Roots are never written here (only `hook`
// changes a root's label, by compare-and-swap).
__device__ __forceinline__ u32 find_root(volatile u32* labels, u32 x) {
    while (true) {
        const u32 parent = labels[x];
        if (parent == x) return x;
        const u32 grand = labels[parent];
        if (grand != parent) labels[x] = grand;
        x = grand;
    }
}

// Joins the trees of sorted positions a and b: the root of larger batch index is hooked under the other by
// compare-and-swap; when another thread hooked it first, the join is retried from the new roots (lock free: a failed
// swap means another join succeeded).
__device__ __forceinline__ void hook(u32* labels, const u32* __restrict__ original, u32 a, u32 b) {
    volatile u32* v = labels;
    while (true) {
        a = find_root(v, a);
        b = find_root(v, b);
        if (a == b) return;
        if (original[a] > original[b]) {
            const u32 t = a;
            a = b;
            b = t;
        }
        if (atomicCAS(&labels[b], b, a) == b) return;
    }
}

// Whether some core point of cell range a is within eps of some core point of cell range b (the CPU reference's
// test: each core point of the smaller cell against the other's core bounding box first, a lower bound of the
// distances (computed in the same order, and rounding is monotone), then against its core points).
__device__ bool cells_touch(const float* __restrict__ pts, const u32* __restrict__ core, uint2 a, uint2 b, float eps2) {
    if (a.y - a.x > b.y - b.x) {
        const uint2 t = a;
        a = b;
        b = t;
    }
    float lo[3] = {FLT_BIG, FLT_BIG, FLT_BIG}, hi[3] = {-FLT_BIG, -FLT_BIG, -FLT_BIG};
    for (u32 j = b.x; j < b.y; ++j) {
        if (core[j] != 1u) continue;
        for (u32 k = 0; k < 3u; ++k) {
            lo[k] = fminf(lo[k], pts[3u * j + k]);
            hi[k] = fmaxf(hi[k], pts[3u * j + k]);
        }
    }
    for (u32 i = a.x; i < a.y; ++i) {
        if (core[i] != 1u) continue;
        float d = 0.0f;
        for (u32 k = 0; k < 3u; ++k) {
            const float e = fmaxf(fmaxf(lo[k] - pts[3u * i + k], pts[3u * i + k] - hi[k]), 0.0f);
            d += e * e;
        }
        if (d > eps2) continue;
        for (u32 j = b.x; j < b.y; ++j)
            if (core[j] == 1u && dist2(pts, i, j) <= eps2) return true;
    }
    return false;
}

// The clusters, cell by cell as on the CPU: each core point joins its cell's first core point (a cell's points are
// all within eps), and each pair of neighbouring cells with core points is joined when some pair of their core points
// is within eps, unless the two are already one tree. A cell's 62 pairs with the cells that follow it in the block
// are dealt out over its points (the point k-th in its cell takes offsets 63 + k, 63 + k + size, ...): each pair is
// looked at once, and a thread takes ceil(62 / points of its cell) pairs at most (one in a cell of 62 points or more).
extern "C" __global__ void unite(
    const float* __restrict__ points, const u32* __restrict__ cell_xyz, const u32* __restrict__ original,
    const u32* __restrict__ owner, const u32* __restrict__ start, const u32* __restrict__ cell_b,
    const Job* __restrict__ jobs, const Params p, const u32* __restrict__ core, u32* labels) {
    const Grid g{points, cell_xyz, original, owner, start, cell_b};
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.points) return;
    const uint4 c = cell_at(g, i);
    const uint2 own = cell_range(g, p, c.x, c.y, c.z, c.w);
    const u32 a = first_core(core, own);
    if (a == NONE) return;
    if (core[i] == 1u && i != a) hook(labels, g.original, a, i);
    const float eps2 = jobs[c.w].eps2;
    volatile u32* v = labels;
    const u32 size = own.y - own.x;
    for (u32 k = 63u + (i - own.x); k < 125u; k += size) {
        const uint2 r = block_cell(g, p, c, k);
        const u32 b = first_core(core, r);
        if (b == NONE || find_root(v, a) == find_root(v, b)) continue;
        if (cells_touch(g.points, core, own, r, eps2)) hook(labels, g.original, a, b);
    }
}

// Each core point's label becomes its tree's root (after `unite`, in a launch of its own). Read only but for the
// point's own label, which only ever becomes the root: a concurrent walk through it still finds the same root.
extern "C" __global__ void flatten(const u32* __restrict__ core, const Params p, u32* labels) {
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.points || core[i] == 0u) return;
    volatile u32* v = labels;
    u32 x = v[i];
    while (true) {
        const u32 parent = v[x];
        if (parent == x) break;
        x = parent;
    }
    labels[i] = x;
}

extern "C" __global__ void assign_borders(
    const float* __restrict__ points, const u32* __restrict__ cell_xyz, const u32* __restrict__ original,
    const u32* __restrict__ owner, const u32* __restrict__ start, const u32* __restrict__ cell_b,
    const Job* __restrict__ jobs, const Params p, const u32* __restrict__ core, u32* __restrict__ labels) {
    const Grid g{points, cell_xyz, original, owner, start, cell_b};
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.points || core[i] == 1u) return;
    float best_d = jobs[cell_xyz[4u * i + 3u]].eps2;
    u32 best_index = NONE, best_label = NONE;
    const uint4 c = cell_at(g, i);
    for (u32 k = 0; k < 125u; ++k) {
        const uint2 r = block_cell(g, p, c, k);
        for (u32 j = r.x; j < r.y; ++j) {
            if (core[j] != 1u) continue;
            const float d = dist2(g.points, i, j);
            if (d < best_d || (d == best_d && g.original[j] < best_index)) {
                best_d = d;
                best_index = g.original[j];
                best_label = labels[j];
            }
        }
    }
    labels[i] = best_label;
}

// Labels and core flags in batch order, each label (a root's sorted position) renamed to the root's batch index.
extern "C" __global__ void unsort(const u32* __restrict__ original, const u32* __restrict__ core,
                                  const u32* __restrict__ labels, const Params p, u32* __restrict__ labels_b) {
    const u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.points) return;
    // Batch indices are below 2^26 (MAX_DBSCAN_POINTS in cuda.rs): the core flag goes in the top bit; noise (never a
    // core point) stays NONE.
    const u32 l = labels[i];
    labels_b[original[i]] = l == NONE ? NONE : (original[l] | (core[i] != 0u ? 0x80000000u : 0u));
}
