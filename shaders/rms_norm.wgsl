// RMSNorm of rows of x:  out[t, i] = w[i] * (x[in_row0 + t, i] / sqrt(mean(x^2) + eps))
//
// x: (T, stride) f32, w: (dim) f32, out: (T, stride) f32.
// One workgroup of 256 invocations per row; a tree reduction sums the squares.
// Dispatch: (rows, 1, 1).

struct Params {
    dim: u32,
    stride: u32,   // f32 per row of x and out
    in_row0: u32,  // first row of x to normalize (the last token only, for the LM head)
    eps: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let x_row = (p.in_row0 + wid.x) * p.stride;
    let out_row = wid.x * p.stride;
    var sum = 0.0;
    for (var i = lid; i < p.dim; i += 256u) {
        let v = x[x_row + i];
        sum += v * v;
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if lid < s {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    let inv = 1.0 / sqrt(partial[0] / f32(p.dim) + p.eps);
    for (var i = lid; i < p.dim; i += 256u) {
        out[out_row + i] = w[i] * (x[x_row + i] * inv);
    }
}
