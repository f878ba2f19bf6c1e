// The device's copy bandwidth, as `gqa bench --backend gpu` reports it: dst = src,
// 16 bytes per load and store, every invocation striding over the whole buffer.
// Dispatch: (groups, 1, 1) of 256 invocations; stride = groups * 256.

struct Params {
    n: u32,       // vec4<u32> elements
    stride: u32,  // invocations in the dispatch
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var i = gid.x; i < p.n; i += p.stride) {
        dst[i] = src[i];
    }
}
