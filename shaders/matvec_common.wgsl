// Shared by matvec.wgsl and matvec_subgroup.wgsl (prepended to each, after quant.wgsl,
// when the pipeline is built): the bindings and the dot product of one 8-weight chunk
// of a weight row.
//
// W: rows of row_bytes bytes in the weights' format (quant.wgsl), read as vec4<u32>.
// x: (T, x_stride) f32, read as vec4<f32>; x_stride and the columns W covers are
//    multiples of 8.
// y: (T, y_stride) f32.

const ROWS_PER_WG: u32 = 8u;

struct Params {
    rows: u32,       // rows of this part of W
    row_chunks: u32, // 8-weight chunks per row of W
    x_stride4: u32,  // vec4<f32> per row of x
    y_stride: u32,   // f32 per row of y
    y_offset: u32,   // first output row of this part
    row_bytes: u32,  // bytes per row of W
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// W[row, 8i..8i+8] dotted with the matching x.
fn dot_chunk(row: u32, x_row: u32, i: u32) -> f32 {
    let v = weights8(row * p.row_bytes, 8u * i);
    return dot(v.lo, x[x_row + 2u * i]) + dot(v.hi, x[x_row + 2u * i + 1u]);
}
