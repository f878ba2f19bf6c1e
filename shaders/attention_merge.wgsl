// Merge the context splits of attention.wgsl for each (token, query head), by the
// splits' maxima and sums (log-sum-exp):
//   M = max_s m_s,  L = sum_s l_s exp(m_s - M),  out = sum_s out_s exp(m_s - M) / L.
// Empty splits have m = -1e30 and l = 0, so they weigh nothing.
//
// partial: (T, H, n_splits, 2 + head_dim) f32. out: (T, out_stride) f32, H heads per row.
// Workgroup (h, t) of 64 invocations over head_dim. Dispatch: (H, T, 1).

struct Params {
    n_heads: u32,
    n_splits: u32,
    head_dim: u32,
    out_stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> partial: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let t = wid.y;
    let stride = 2u + p.head_dim;
    let base = (t * p.n_heads + h) * p.n_splits * stride;
    var m = -1.0e30;
    for (var s = 0u; s < p.n_splits; s++) {
        m = max(m, partial[base + s * stride]);
    }
    var l = 0.0;
    for (var s = 0u; s < p.n_splits; s++) {
        l += partial[base + s * stride + 1u] * exp(partial[base + s * stride] - m);
    }
    for (var d = lid; d < p.head_dim; d += 64u) {
        var o = 0.0;
        for (var s = 0u; s < p.n_splits; s++) {
            o += exp(partial[base + s * stride] - m) / l * partial[base + s * stride + 2u + d];
        }
        out[t * p.out_stride + h * p.head_dim + d] = o;
    }
}
