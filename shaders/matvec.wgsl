// Matrix-vector product for decoding (T new tokens, usually 1), after matvec_common.wgsl:
//   y[t, y_offset + r] = sum_c W[r, c] * x[t, c]      for r < rows (one part of W)
//
// One workgroup of 256 invocations computes ROWS_PER_WG = 8 rows, 32 invocations per
// row, each summing a strided slice of the row; a workgroup tree reduction finishes.
// Dispatch: (ceil(rows / 8), T, 1).

const THREADS_PER_ROW: u32 = 32u;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r_local = lid / THREADS_PER_ROW;
    let lane = lid % THREADS_PER_ROW;
    let row = wid.x * ROWS_PER_WG + r_local;
    let t = wid.y;

    var sum = 0.0;
    if row < p.rows {
        let x_row = t * p.x_stride4;
        for (var i = lane; i < p.row_chunks; i += THREADS_PER_ROW) {
            sum += dot_chunk(row, x_row, i);
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
