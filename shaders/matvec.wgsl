// Matrix-vector product for decoding (T new tokens, usually 1):
//   y[t, y_offset + r] = sum_c W[r, c] * x[t, c]      for r < rows (one part of W)
//
// W: (rows, cols_pad) row-major. f32 weights are one per u32, f16 weights two per u32
//    (expanded with unpack2x16float, so the shader-f16 feature is not needed). Rows are
//    read as vec4<u32>: 4 f32 or 8 f16 values per load; cols_pad is a multiple of 8.
// x: (T, x_stride) f32, read as vec4<f32>; columns past cols are zero.
// y: (T, y_stride) f32.
//
// One workgroup of 256 invocations computes ROWS_PER_WG = 8 rows, 32 invocations per
// row, each summing a strided slice of the row; a workgroup tree reduction finishes.
// Dispatch: (ceil(rows / 8), T, 1).

override WEIGHTS_F16: bool = false;

const ROWS_PER_WG: u32 = 8u;
const THREADS_PER_ROW: u32 = 32u;

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

var<workgroup> partial: array<f32, 256>;

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

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r_local = lid / THREADS_PER_ROW;
    let lane = lid % THREADS_PER_ROW;
    let row = wid.x * ROWS_PER_WG + r_local;
    let t = wid.y;

    var sum = 0.0;
    if row < p.rows {
        let w_row = row * p.row_vec4s;
        let x_row = t * p.x_stride4;
        for (var i = lane; i < p.row_vec4s; i += THREADS_PER_ROW) {
            sum += dot_chunk(w_row + i, x_row, i);
        }
    }
    partial[lid] = sum;
    workgroupBarrier();
    for (var s = THREADS_PER_ROW / 2u; s > 0u; s >>= 1u) {
        if lane < s {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    if lane == 0u && row < p.rows {
        y[t * p.y_stride + p.y_offset + row] = partial[lid];
    }
}
