// The attention probe, dispatched only while it is on: for the last token of a forward
// pass (row `row` of q), the softmax weights of every query head over positions 0..n_ctx,
// into probe[h * capacity + j] from probe_base (this layer's block). Query head h reads
// key/value head h / group, as attention.wgsl does; the weights are computed plainly
// (scores, max, exp, sum), for the page to show, not for speed.
//
// q: (T, q_stride) f32. k_cache: (G, capacity) records of head_dim elements (kv_format.wgsl).
// probe: (layers, H, capacity) f32. One workgroup of 256 per query head. Dispatch: (H, 1, 1).

const WG: u32 = 256u;

struct Params {
    head_dim: u32,
    capacity: u32,
    group: u32,
    q_stride: u32,
    row: u32,
    n_ctx: u32,
    probe_base: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k_cache: array<u32>;
@group(0) @binding(3) var<storage, read_write> probe: array<f32>;

var<workgroup> red: array<f32, WG>;

// Element e of the key cache (kv_format.wgsl).
fn key(e: u32) -> f32 {
    return kv_decode(k_cache[kv_word(e, p.head_dim)], k_cache[kv_scale_word(e, p.head_dim)], e);
}

fn reduce(lid: u32, v: f32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if lid < s {
            red[lid] = select(red[lid] + red[lid + s], max(red[lid], red[lid + s]), is_max);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let hd = p.head_dim;
    let q_base = p.row * p.q_stride + h * hd;
    let k_base = (h / p.group) * p.capacity * hd;
    let out = p.probe_base + h * p.capacity;
    // Each invocation keeps to positions lid, lid + WG, ...: scores, then exp, then the division.
    var m = -3.4e38;
    for (var j = lid; j < p.n_ctx; j += WG) {
        var s = 0.0;
        for (var d = 0u; d < hd; d++) {
            s += q[q_base + d] * key(k_base + j * hd + d);
        }
        s *= p.scale;
        probe[out + j] = s;
        m = max(m, s);
    }
    m = reduce(lid, m, true);
    var l = 0.0;
    for (var j = lid; j < p.n_ctx; j += WG) {
        let e = exp(probe[out + j] - m);
        probe[out + j] = e;
        l += e;
    }
    l = reduce(lid, l, false);
    for (var j = lid; j < p.n_ctx; j += WG) {
        probe[out + j] /= l;
    }
}
