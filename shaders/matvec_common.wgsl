// Shared by matvec.wgsl and matvec_subgroup.wgsl (prepended to each when the pipeline
// is built): the bindings and the dot product of one packed chunk of a weight row.
//
// W: (rows, cols_pad) row-major. f32 weights are one per u32, f16 weights two per u32
//    (expanded with unpack2x16float, so the shader-f16 feature is not needed). Rows are
//    read as vec4<u32>: 4 f32 or 8 f16 values per load; cols_pad is a multiple of 8.
// x: (T, x_stride) f32, read as vec4<f32>; columns past cols are zero.
// y: (T, y_stride) f32.

override WEIGHTS_F16: bool = false;

const ROWS_PER_WG: u32 = 8u;

struct Params {
    rows: u32,       // rows of this part of W
    row_vec4s: u32,  // vec4<u32> per row of W
    x_stride4: u32,  // vec4<f32> per row of x
    y_stride: u32,   // f32 per row of y
    y_offset: u32,   // first output row of this part
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

// W[row, 4i..4i+4] (f32) or W[row, 8i..8i+8] (f16) dotted with the matching x.
fn dot_chunk(w_index: u32, x_row: u32, i: u32) -> f32 {
    let packed = w[w_index];
    if WEIGHTS_F16 {
        let lo = vec4<f32>(unpack2x16float(packed.x), unpack2x16float(packed.y));
        let hi = vec4<f32>(unpack2x16float(packed.z), unpack2x16float(packed.w));
        return dot(lo, x[x_row + 2u * i]) + dot(hi, x[x_row + 2u * i + 1u]);
    }
    return dot(bitcast<vec4<f32>>(packed), x[x_row + i]);
}
