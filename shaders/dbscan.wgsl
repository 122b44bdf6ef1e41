// K3: exact DBSCAN (the definitions of src/geometry/dbscan.rs) for a batch of jobs (one object's points each, say),
// each with its own eps and min_points: core points have at least min_points neighbours within eps (themselves
// included); core points within eps are in one cluster; a border point joins the cluster of its nearest core point
// (ties: the lower original index). The host bins each job's points into the CPU reference's cells (side eps/sqrt(3),
// a little shrunk: any two points of a cell are within eps) and stacks the jobs along z with two empty layers between
// them (`DbscanGrid` in src/backend/pack.rs), so every neighbour lies in the 5 x 5 x 5 block of cells around a point
// and no block reaches another job; points are sorted by cell, then by batch index (the occupied cells listed in
// (z, y, x) order), so each row of five neighbour cells is one run of points, found by binary search
// (`neighbour_row`), and a cell by one binary search (`find_cell`). A cell of min_points points or more is all core
// without a distance test, as on the CPU.
// Clusters are the trees of a lock-free union-find over the core points, a forest of sorted positions, joined cell by
// cell as the CPU reference joins them (`unite`: each core point to its cell's first core point, and neighbouring cells
// when some pair of their core points is within eps; `flatten`): each core point's label ends as the sorted position
// of its cluster's point of smallest batch index, which the host renames to that batch index and then numbers 0, 1,
// ... per job (the names kernels/dbscan.cu gives).

// Keep in sync with `DbscanParams` in src/backend/layout.rs (32 bytes).
struct Params {
    points: u32,
    cells: u32,
    jobs: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
    pad3: u32,
    pad4: u32,
}

// Keep in sync with `DbscanJobParams` in src/backend/layout.rs (16 bytes).
struct Job {
    eps2: f32,
    min_points: u32,
    pad0: u32,
    pad1: u32,
}

@group(0) @binding(0) var<storage, read> points: array<f32>;
// (x, y, z, job) of each sorted point (cell coordinates relative to the job's lowest, at least 1, z stacked by job),
// then the coordinates (x, y, z) of each occupied cell.
@group(0) @binding(1) var<storage, read> cell_xyz: array<u32>;
// Occupied cell -> first point; cells + 1 entries.
@group(0) @binding(2) var<storage, read> cell_start: array<u32>;
// Sorted position -> batch index.
@group(0) @binding(3) var<storage, read> original: array<u32>;
@group(0) @binding(4) var<storage, read_write> core: array<u32>;
// Sorted position -> label: NONE for noise; for a core point, its parent's sorted position in the union-find forest
// (its own at a root), then its root's; a border point takes its nearest core point's.
@group(0) @binding(5) var<storage, read_write> labels: array<atomic<u32>>;
@group(0) @binding(6) var<uniform> params: Params;
@group(0) @binding(7) var<storage, read> jobs: array<Job>;

const NONE: u32 = 0xffffffffu;

fn point(i: u32) -> vec3<f32> {
    return vec3<f32>(points[3u * i], points[3u * i + 1u], points[3u * i + 2u]);
}

fn dist2(a: vec3<f32>, b: vec3<f32>) -> f32 {
    let d = a - b;
    return d.x * d.x + d.y * d.y + d.z * d.z;
}

// (z, y, x) order of cell coordinates: -1, 0, 1.
fn compare(ax: u32, ay: u32, az: u32, bx: u32, by: u32, bz: u32) -> i32 {
    if (az != bz) { return select(1, -1, az < bz); }
    if (ay != by) { return select(1, -1, ay < by); }
    if (ax != bx) { return select(1, -1, ax < bx); }
    return 0;
}

// Sorted point i's cell (x, y, z), loaded once per invocation for `neighbour_row`.
fn cell_of(i: u32) -> vec3<u32> {
    return vec3<u32>(cell_xyz[4u * i], cell_xyz[4u * i + 1u], cell_xyz[4u * i + 2u]);
}

// The first listed cell at or after (x, y, z) in (z, y, x) order (params.cells if none).
fn lower_bound(x: u32, y: u32, z: u32) -> u32 {
    var lo = 0u;
    var hi = params.cells;
    let base = 4u * params.points;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        let at = base + 3u * mid;
        if (compare(cell_xyz[at], cell_xyz[at + 1u], cell_xyz[at + 2u], x, y, z) < 0) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    return lo;
}

// Row `row` (0 to 24, in sorted order) of the 5 x 5 x 5 cells around the cell c = (x, y, z): the points of the
// occupied cells (x - 2 .. x + 2, y', z') as one [start, end), with y' = y - 2 + row % 5 and z' = z - 2 + row / 5.
// Cells are listed in (z, y, x) order and points sorted by cell, so a row of five cells is one run of points, and the
// rows' runs come in row order. One binary search for the first listed cell at or after (x - 2, y', z'), then at most
// five steps along the list. Coordinates are at least 2 (the host offsets them), so c - 2 never wraps.
fn neighbour_row(c: vec3<u32>, row: u32) -> vec2<u32> {
    let x = c.x;
    let y = c.y - 2u + row % 5u;
    let z = c.z - 2u + row / 5u;
    let lo = lower_bound(x - 2u, y, z);
    let base = 4u * params.points;
    var end = lo;
    while (end < params.cells && cell_xyz[base + 3u * end + 2u] == z && cell_xyz[base + 3u * end + 1u] == y
        && cell_xyz[base + 3u * end] <= x + 2u) {
        end = end + 1u;
    }
    return vec2<u32>(cell_start[lo], cell_start[end]);
}

// The points of cell (x, y, z) as [start, end), empty if it is not occupied.
fn find_cell(x: u32, y: u32, z: u32) -> vec2<u32> {
    let at = lower_bound(x, y, z);
    let base = 4u * params.points;
    if (at < params.cells && compare(cell_xyz[base + 3u * at], cell_xyz[base + 3u * at + 1u],
        cell_xyz[base + 3u * at + 2u], x, y, z) == 0) {
        return vec2<u32>(cell_start[at], cell_start[at + 1u]);
    }
    return vec2<u32>(0u, 0u);
}

// The first core point of a run of sorted points, NONE if it has none.
fn first_core(r: vec2<u32>) -> u32 {
    for (var j = r.x; j < r.y; j = j + 1u) {
        if (core[j] == 1u) {
            return j;
        }
    }
    return NONE;
}

// Whether each point is a core point: its neighbours within eps counted up to min_points (the count stops there, as
// the CPU reference's does). The points of its own cell are all neighbours (a cell of min_points points or more is
// all core without a distance test, as on the CPU); then the nine rows through the 3 x 3 cells around it in y and z,
// where most neighbours lie, then the sixteen outer rows.
@compute @workgroup_size(256)
fn count_neighbours(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.points) {
        return;
    }
    let p = point(i);
    let c = cell_of(i);
    let job = jobs[cell_xyz[4u * i + 3u]];
    let own = find_cell(c.x, c.y, c.z);
    var count = own.y - own.x;
    for (var k = 0u; k < 50u && count < job.min_points; k = k + 1u) {
        let row = k % 25u;
        let outer = row % 5u == 0u || row % 5u == 4u || row / 5u == 0u || row / 5u == 4u;
        if (outer != (k >= 25u)) {
            continue;
        }
        let r = neighbour_row(c, row);
        for (var j = r.x; j < r.y && count < job.min_points; j = j + 1u) {
            if ((j < own.x || j >= own.y) && dist2(p, point(j)) <= job.eps2) {
                count = count + 1u;
            }
        }
    }
    core[i] = select(0u, 1u, count >= job.min_points);
    atomicStore(&labels[i], select(NONE, i, count >= job.min_points));
}

// The root of sorted position x's tree (a root is only ever hooked under a root of smaller batch index, so each
// tree's root is the point of smallest batch index). Path halving: each visited node's label skips to its grandparent,
// an ancestor, so the forest stays a forest whatever the interleaving; roots are only written by `hook`'s exchange.
fn find_root(start: u32) -> u32 {
    var x = start;
    var parent = atomicLoad(&labels[x]);
    while (parent != x) {
        let grand = atomicLoad(&labels[parent]);
        if (grand != parent) {
            atomicStore(&labels[x], grand);
        }
        x = grand;
        parent = atomicLoad(&labels[x]);
    }
    return x;
}

// Joins the trees of sorted positions a and b: the root of larger batch index is hooked under the other by
// compare-and-exchange, retried from the new roots when another invocation changed them first (or the weak exchange
// failed).
fn hook(a0: u32, b0: u32) {
    var a = a0;
    var b = b0;
    loop {
        a = find_root(a);
        b = find_root(b);
        if (a == b) {
            return;
        }
        if (original[a] > original[b]) {
            let t = a;
            a = b;
            b = t;
        }
        if (atomicCompareExchangeWeak(&labels[b], b, a).exchanged) {
            return;
        }
    }
}

// Whether some core point of run a is within eps of some core point of run b (the CPU reference's test: each core
// point of the smaller run against the other's core bounding box first, then against its core points). The box test
// only skips work: it skips a point only when the box is farther than eps by a margin (the device may contract its
// arithmetic differently from the distance test's), and the distance test decides.
fn cells_touch(a0: vec2<u32>, b0: vec2<u32>, eps2: f32) -> bool {
    var a = a0;
    var b = b0;
    if (a.y - a.x > b.y - b.x) {
        a = b0;
        b = a0;
    }
    var lo = vec3<f32>(3.402823e38);
    var hi = vec3<f32>(-3.402823e38);
    for (var j = b.x; j < b.y; j = j + 1u) {
        if (core[j] == 1u) {
            let q = point(j);
            lo = min(lo, q);
            hi = max(hi, q);
        }
    }
    let margin = eps2 * 1.001;
    for (var i = a.x; i < a.y; i = i + 1u) {
        if (core[i] != 1u) {
            continue;
        }
        let p = point(i);
        let e = max(max(lo - p, p - hi), vec3<f32>(0.0));
        if (dot(e, e) > margin) {
            continue;
        }
        for (var j = b.x; j < b.y; j = j + 1u) {
            if (core[j] == 1u && dist2(p, point(j)) <= eps2) {
                return true;
            }
        }
    }
    return false;
}

// The clusters, cell by cell as on the CPU: each core point joins its cell's first core point (a cell's points are
// all within eps), and each pair of neighbouring cells with core points is joined when some pair of their core points
// is within eps, unless the two are already one tree. A cell's 62 pairs with the cells that follow it in the block
// ((z, y, x) order) are dealt out over its points (the point k-th in its cell takes offsets 63 + k, 63 + k + size,
// ...): each pair is looked at once, and an invocation takes ceil(62 / points of its cell) pairs at most.
@compute @workgroup_size(256)
fn unite(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.points) {
        return;
    }
    let c = cell_of(i);
    let own = find_cell(c.x, c.y, c.z);
    let a = first_core(own);
    if (a == NONE) {
        return;
    }
    if (core[i] == 1u && i != a) {
        hook(a, i);
    }
    let eps2 = jobs[cell_xyz[4u * i + 3u]].eps2;
    let size = own.y - own.x;
    for (var k = 63u + (i - own.x); k < 125u; k = k + size) {
        let r = find_cell(c.x + k % 5u - 2u, c.y + (k / 5u) % 5u - 2u, c.z + k / 25u - 2u);
        let b = first_core(r);
        if (b == NONE || find_root(a) == find_root(b)) {
            continue;
        }
        if (cells_touch(own, r, eps2)) {
            hook(a, b);
        }
    }
}

// Each core point's label becomes its tree's root (after `unite`, in a dispatch of its own). Read only but for the
// point's own label, which only ever becomes the root: a concurrent walk through it still finds the same root.
@compute @workgroup_size(256)
fn flatten(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.points || core[i] == 0u) {
        return;
    }
    var x = atomicLoad(&labels[i]);
    var parent = atomicLoad(&labels[x]);
    while (parent != x) {
        x = parent;
        parent = atomicLoad(&labels[x]);
    }
    atomicStore(&labels[i], x);
}

// Each border point's label: its nearest core point's (ties: the lower batch index), NONE for noise.
@compute @workgroup_size(256)
fn assign_borders(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.points || core[i] == 1u) {
        return;
    }
    let p = point(i);
    let c = cell_of(i);
    var best_d = jobs[cell_xyz[4u * i + 3u]].eps2;
    var best_index = NONE;
    var best_label = NONE;
    for (var row = 0u; row < 25u; row = row + 1u) {
        let r = neighbour_row(c, row);
        for (var j = r.x; j < r.y; j = j + 1u) {
            if (core[j] == 1u) {
                let d = dist2(p, point(j));
                if (d < best_d || (d == best_d && original[j] < best_index)) {
                    best_d = d;
                    best_index = original[j];
                    best_label = atomicLoad(&labels[j]);
                }
            }
        }
    }
    atomicStore(&labels[i], best_label);
}
