// The tiled prefix sum, for many counts (the twin of kernels/scan.cuh's): one workgroup keeps too few loads in flight
// for a large table, so the host takes this beyond 8,192 counts. Tiles of SCAN_TILE counts, one workgroup each, read
// and written coalesced (invocation lid takes counts tile * SCAN_TILE + k * 256 + lid, k < SCAN_ITEMS):
//   scan_tile_sums    tile_sums[tile] = the sum of its counts;
//   scan_tile_starts  one workgroup: each tile's first offset into tile_starts, then the total;
//   scan_tiles_apply  each count's offset from its tile's first one, and the total last.
// Integer sums: the offsets are a one-workgroup scan's whatever the tiling. Prepended (after scan.wgsl, whose
// block_scan it uses) to the shaders that scan large tables, which supply (WGSL has neither includes nor pointer
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

// One workgroup: each invocation sums a contiguous run of tile sums, the runs are scanned together, then each writes
// its run's starts.
@compute @workgroup_size(256)
fn scan_tile_starts(@builtin(local_invocation_index) lid: u32) {
    let tiles = scan_tiles();
    let per = (tiles + 255u) / 256u;
    let first = min(lid * per, tiles);
    let end = min(first + per, tiles);
    var local = 0u;
    for (var b = first; b < end; b = b + 1u) {
        local = local + tile_sums[b];
    }
    let inclusive = block_scan(lid, local);
    var running = inclusive - local;
    for (var b = first; b < end; b = b + 1u) {
        tile_starts[b] = running;
        running = running + tile_sums[b];
    }
    if (lid == 255u) {
        tile_starts[tiles] = inclusive;
    }
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
