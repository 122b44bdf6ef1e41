// K3: exact DBSCAN (the definitions of src/geometry/dbscan.rs) for a batch of jobs (one object's points each, say),
// each with its own eps and min_points: core points have at least min_points neighbours within eps (themselves
// included); core points within eps are in one cluster; a border point joins the cluster of its nearest core point
// (ties: the lower original index). The host bins each job's points into cells of side a little over its eps and
// stacks the jobs along z with an empty layer between them (`DbscanGrid` in src/backend/pack.rs), so every neighbour
// lies in the 3 x 3 x 3 block of cells around a point and no block reaches another job; points are sorted by cell,
// then by batch index (the occupied cells listed in (z, y, x) order), so each row of three neighbour cells is one run
// of points, found by binary search (`neighbour_row`).
// Clusters are the trees of a lock-free union-find over the core points, a forest of sorted positions (`unite`: one
// neighbour scan, each pair of core points within eps joined once; `flatten`): each core point's label ends as the
// sorted position of its cluster's point of smallest batch index, which the host renames to that batch index and then
// numbers 0, 1, ... per job (the names kernels/dbscan.cu gives).

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

// Row `row` (0 to 8, in sorted order) of the 3 x 3 x 3 cells around the cell c = (x, y, z): the points of
// the occupied cells (x - 1, y', z'), (x, y', z') and (x + 1, y', z') as one [start, end), with y' = y - 1 + row % 3
// and z' = z - 1 + row / 3. Cells are listed in (z, y, x) order and points sorted by cell, so a row of three cells is
// one run of points, and the rows' runs come in row order. One binary search for the first listed cell at or after
// (x - 1, y', z'), then at most three steps along the list. Coordinates are at least 1 (the host offsets them), so
// c - 1 never wraps.
fn neighbour_row(c: vec3<u32>, row: u32) -> vec2<u32> {
    let x = c.x;
    let y = c.y - 1u + row % 3u;
    let z = c.z - 1u + row / 3u;
    var lo = 0u;
    var hi = params.cells;
    let base = 4u * params.points;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        let at = base + 3u * mid;
        if (compare(cell_xyz[at], cell_xyz[at + 1u], cell_xyz[at + 2u], x - 1u, y, z) < 0) {
            lo = mid + 1u;
        } else {
            hi = mid;
        }
    }
    var end = lo;
    while (end < params.cells && cell_xyz[base + 3u * end + 2u] == z && cell_xyz[base + 3u * end + 1u] == y
        && cell_xyz[base + 3u * end] <= x + 1u) {
        end = end + 1u;
    }
    return vec2<u32>(cell_start[lo], cell_start[end]);
}

// Whether each point is a core point: its neighbours within eps counted up to min_points (the count stops there, as
// the CPU reference's does), its own row of cells first (where the nearest points lie).
@compute @workgroup_size(256)
fn count_neighbours(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.points) {
        return;
    }
    let p = point(i);
    let c = cell_of(i);
    let job = jobs[cell_xyz[4u * i + 3u]];
    var count = 0u;
    for (var k = 0u; k < 9u && count < job.min_points; k = k + 1u) {
        let r = neighbour_row(c, (k + 4u) % 9u);  // 4: the point's own row
        for (var j = r.x; j < r.y && count < job.min_points; j = j + 1u) {
            if (dist2(p, point(j)) <= job.eps2) {
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

// Every pair of core points within eps joined once (from the later of the two in sorted order). The 3 x 3 x 3 block
// is scanned as nine rows in sorted order, so the scan ends at the point itself. The scan and the joins are two
// loops, one inside the other: the inner one only looks for the next neighbour to join (a core point within eps
// whose parent is neither this point's root nor a parent already joined), and the joins run outside it. On a SIMD
// device that runs every branch of a loop for all its lanes (llvmpipe), the joins' loops and atomics then cost once
// per join, not once per neighbour looked at.
@compute @workgroup_size(256)
fn unite(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= params.points || core[i] == 0u) {
        return;
    }
    let p = point(i);
    let c = cell_of(i);
    let eps2 = jobs[cell_xyz[4u * i + 3u]].eps2;
    // The point's root, kept up to date, and the parent of the last neighbour joined (in this point's tree from then
    // on): a neighbour whose parent is either is already in this point's tree.
    var root = find_root(i);
    var known = root;
    var row = 0u;
    var range = neighbour_row(c, 0u);
    var j = range.x;
    loop {
        var found = NONE;
        loop {
            if (j >= i) {
                break;
            }
            if (j >= range.y) {
                row = row + 1u;
                if (row == 9u) {
                    break;
                }
                range = neighbour_row(c, row);
                j = range.x;
                continue;
            }
            if (core[j] == 1u && dist2(p, point(j)) <= eps2) {
                let pj = atomicLoad(&labels[j]);
                if (pj != root && pj != known) {
                    found = j;
                    known = pj;
                    j = j + 1u;
                    break;
                }
            }
            j = j + 1u;
        }
        if (found == NONE) {
            break;
        }
        let other = find_root(found);
        if (other != root) {
            hook(root, other);
            root = find_root(root);
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
    for (var row = 0u; row < 9u; row = row + 1u) {
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
