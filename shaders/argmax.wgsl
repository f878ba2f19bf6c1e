// Greedy sampling on the GPU: result[0] = the index of the largest of logits[offset ..
// offset + n] (the first one on ties, NaN never wins), as the CPU sampler's argmax.
// One workgroup of 256 invocations. Dispatch: (1, 1, 1).

struct Params {
    n: u32,
    offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> result: array<u32>;

var<workgroup> best_value: array<f32, 256>;
var<workgroup> best_index: array<u32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    // Each invocation scans indices lid, lid + 256, ... in increasing order.
    var value = logits[p.offset];
    var index = 0u;
    for (var i = lid; i < p.n; i += 256u) {
        let v = logits[p.offset + i];
        if v > value || (index == 0u && i == 0u) {
            value = v;
            index = i;
        }
    }
    // Invocations that saw no index better than 0 report index 0 (the same value).
    best_value[lid] = value;
    best_index[lid] = index;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if lid < s {
            let v = best_value[lid + s];
            let j = best_index[lid + s];
            if v > best_value[lid] || (v == best_value[lid] && j < best_index[lid]) {
                best_value[lid] = v;
                best_index[lid] = j;
            }
        }
        workgroupBarrier();
    }
    if lid == 0u {
        result[0] = best_index[0];
    }
}
