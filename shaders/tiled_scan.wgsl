// The exclusive prefix sums of K1's block counts and the gaps' bucket counts (the twin of kernels/scan.cuh's): one
// workgroup up to 8,192 counts; beyond, where one workgroup keeps too few loads in flight for the table, the tiled
// scan: tiles of SCAN_TILE counts, one workgroup each, read and written coalesced (invocation lid takes counts
// tile * SCAN_TILE + k * 256 + lid, k < SCAN_ITEMS):
//   scan_one_group    up to 8,192 counts: one workgroup scans them all (the host takes the three below beyond);
//   scan_tile_sums    tile_sums[tile] = the sum of its counts;
//   scan_tile_starts  one workgroup: each tile's first offset into tile_starts, then the total;
//   scan_tiles_apply  each count's offset from its tile's first one, and the total last.
// Integer sums: the offsets are a one-workgroup scan's whatever the tiling. Prepended (after scan.wgsl, whose
// block_scan it uses) to the shaders that scan such tables, which supply (WGSL has neither includes nor pointer
// parameters) the bindings `tile_sums` and `tile_starts` and the functions scan_n() (how many counts), scan_count(i)
// and scan_set(i, offset) (i = scan_n(): the total).
const SCAN_ITEMS: u32 = 16u;
const SCAN_TILE: u32 = 4096u;
var<workgroup> scan_total: u32;

fn scan_tiles() -> u32 {
    return (scan_n() + SCAN_TILE - 1u) / SCAN_TILE;
}

// One workgroup per tile (over a two-dimensional grid).
@compute @workgroup_size(256)
fn scan_tile_sums(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                  @builtin(num_workgroups) groups: vec3<u32>) {
    let tile = wid.y * groups.x + wid.x;
    if (tile >= scan_tiles()) {
        return;
    }
    var local = 0u;
    for (var k = 0u; k < SCAN_ITEMS; k = k + 1u) {
        let i = tile * SCAN_TILE + k * 256u + lid;
        if (i < scan_n()) {
            local = local + scan_count(i);
        }
    }
    let inclusive = block_scan(lid, local);
    if (lid == 255u) {
        tile_sums[tile] = inclusive;
    }
}

// One workgroup scans n values: the tiles' sums into tile_starts (over_tiles), else the counts themselves through
// scan_count and scan_set. Each invocation sums a contiguous run of the values, the runs are scanned together, then
// each invocation writes its run's starts; the total goes last. (WGSL passes no buffers to a function: hence the flag.)
fn one_group_value(over_tiles: bool, b: u32) -> u32 {
    if (over_tiles) {
        return tile_sums[b];
    }
    return scan_count(b);
}

fn one_group_set(over_tiles: bool, b: u32, start: u32) {
    if (over_tiles) {
        tile_starts[b] = start;
    } else {
        scan_set(b, start);
    }
}

fn one_group_scan(lid: u32, n: u32, over_tiles: bool) {
    let per = (n + 255u) / 256u;
    let first = min(lid * per, n);
    let end = min(first + per, n);
    var local = 0u;
    for (var b = first; b < end; b = b + 1u) {
        local = local + one_group_value(over_tiles, b);
    }
    let inclusive = block_scan(lid, local);
    var running = inclusive - local;
    for (var b = first; b < end; b = b + 1u) {
        one_group_set(over_tiles, b, running);
        running = running + one_group_value(over_tiles, b);
    }
    if (lid == 255u) {
        one_group_set(over_tiles, n, inclusive);
    }
}

// Up to 8,192 counts (the host's SCAN_ONE_GROUP_MAX): one workgroup scans them all.
@compute @workgroup_size(256)
fn scan_one_group(@builtin(local_invocation_index) lid: u32) {
    one_group_scan(lid, scan_n(), false);
}

// One workgroup: each tile's first offset into tile_starts, then the total.
@compute @workgroup_size(256)
fn scan_tile_starts(@builtin(local_invocation_index) lid: u32) {
    one_group_scan(lid, scan_tiles(), true);
}

// One workgroup per tile, as scan_tile_sums.
@compute @workgroup_size(256)
fn scan_tiles_apply(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(num_workgroups) groups: vec3<u32>) {
    let tile = wid.y * groups.x + wid.x;
    let tiles = scan_tiles();
    if (tile >= tiles) {
        return;
    }
    var running = tile_starts[tile];
    for (var k = 0u; k < SCAN_ITEMS; k = k + 1u) {
        let i = tile * SCAN_TILE + k * 256u + lid;
        var c = 0u;
        if (i < scan_n()) {
            c = scan_count(i);
        }
        let inclusive = block_scan(lid, c);
        if (i < scan_n()) {
            scan_set(i, running + inclusive - c);
        }
        // The part's total, to every invocation (read by all before the next part's write).
        if (lid == 255u) {
            scan_total = inclusive;
        }
        workgroupBarrier();
        running = running + scan_total;
        workgroupBarrier();
    }
    if (tile == 0u && lid == 0u) {
        scan_set(scan_n(), tile_starts[tiles]);
    }
}
