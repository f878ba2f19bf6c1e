// Embedding lookup, after quant.wgsl: x[t, c] = E[tokens[t] - row0, c] for the tokens
// inside this part of E (rows row0 .. row0 + rows; a large table is split into parts,
// one dispatch each).
//
// tokens: (T) u32. E: rows of row_bytes bytes in the weights' format (quant.wgsl).
// x: (T, x_stride) f32. One invocation per (t, 8-column chunk); dim is a multiple of 8
// or the row's padding (zero) fills x's padding. Dispatch: (ceil(dim / 512), T, 1).

struct Params {
    dim: u32,
    row_bytes: u32, // bytes per row of E
    row0: u32,
    rows: u32,
    x_stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = 8u * gid.x;
    let t = gid.y;
    let tok = tokens[t];
    if c >= p.dim || tok < p.row0 || tok >= p.row0 + p.rows {
        return;
    }
    let v = weights8((tok - p.row0) * p.row_bytes, c);
    let out = t * p.x_stride + c;
    for (var k = 0u; k < 4u; k++) {
        x[out + k] = v.lo[k];
        x[out + 4u + k] = v.hi[k];
    }
}
