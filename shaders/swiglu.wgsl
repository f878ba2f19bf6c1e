// SwiGLU gate, in place: gate[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + exp(-x)).
// gate, up: (T, stride) f32, n = T * stride elements (zero padding stays zero).
// Dispatch: (ceil(n / 256), 1, 1).

struct Params {
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if i < p.n {
        let g = gate[i];
        gate[i] = g / (1.0 + exp(-g)) * up[i];
    }
}
