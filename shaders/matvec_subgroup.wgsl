// The matrix-vector product of matvec.wgsl (same bindings, same dispatch, same result
// up to summation order), reduced with subgroupAdd instead of workgroup memory.
// Used when the adapter has the SUBGROUP feature.
//
// Each subgroup computes whole rows (so no assumption about how subgroups map onto the
// workgroup): subgroup s takes rows s, s + n_subgroups, ... of the workgroup's 8 rows,
// its lanes summing a strided slice of the row. Dispatch: (ceil(rows / 8), T, 1).

override WEIGHTS_F16: bool = false;

const ROWS_PER_WG: u32 = 8u;

struct Params {
    rows: u32,
    row_vec4s: u32,
    x_stride4: u32,
    y_stride: u32,
    y_offset: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

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
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(num_subgroups) n_sg: u32,
    @builtin(subgroup_size) sg_size: u32,
    @builtin(subgroup_invocation_id) sg_lane: u32,
) {
    let t = wid.y;
    let x_row = t * p.x_stride4;
    for (var r = sg_id; r < ROWS_PER_WG; r += n_sg) {
        let row = wid.x * ROWS_PER_WG + r;
        if row < p.rows {
            let w_row = row * p.row_vec4s;
            var sum = 0.0;
            for (var i = sg_lane; i < p.row_vec4s; i += sg_size) {
                sum += dot_chunk(w_row + i, x_row, i);
            }
            let total = subgroupAdd(sum);
            if sg_lane == 0u {
                y[t * p.y_stride + p.y_offset + row] = total;
            }
        }
    }
}
