// Embedding lookup: x[t, c] = E[tokens[t] - row0, c] for the tokens inside this part of E
// (rows row0 .. row0 + rows; a large table is split into parts, one dispatch each).
//
// tokens: (T) u32. E: (rows, cols_pad), f32 one per u32 or f16 two per u32.
// x: (T, x_stride) f32. One invocation per (t, c). Dispatch: (ceil(dim / 64), T, 1).

override WEIGHTS_F16: bool = false;

struct Params {
    dim: u32,
    row_u32s: u32,  // u32 per row of E
    row0: u32,
    rows: u32,
    x_stride: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<u32>;
@group(0) @binding(3) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    let tok = tokens[t];
    if c >= p.dim || tok < p.row0 || tok >= p.row0 + p.rows {
        return;
    }
    let row = (tok - p.row0) * p.row_u32s;
    var value: f32;
    if WEIGHTS_F16 {
        let pair = unpack2x16float(table[row + c / 2u]);
        value = select(pair.x, pair.y, (c & 1u) == 1u);
    } else {
        value = bitcast<f32>(table[row + c]);
    }
    x[t * p.x_stride + c] = value;
}
