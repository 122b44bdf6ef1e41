// Shared by the kernels that place outputs by prefix sums (unproject.wgsl, group.wgsl, stats.wgsl): WGSL has no
// includes, so src/backend/gpu.rs prepends this file to each of them when it builds their modules.

var<workgroup> scan: array<u32, 256>;

// Inclusive prefix sum (Hillis-Steele) of `value` over the 256 invocations of a workgroup: invocation `lid` gets
// the sum of the values of invocations 0..=lid. Call from uniform control flow (it has barriers).
fn block_scan(lid: u32, value: u32) -> u32 {
    scan[lid] = value;
    workgroupBarrier();
    for (var step = 1u; step < 256u; step = step * 2u) {
        var add = 0u;
        if (lid >= step) {
            add = scan[lid - step];
        }
        workgroupBarrier();
        scan[lid] = scan[lid] + add;
        workgroupBarrier();
    }
    let result = scan[lid];
    workgroupBarrier();
    return result;
}
