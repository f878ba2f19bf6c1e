// The matrix-vector product of matvec.wgsl (also after matvec_common.wgsl: same
// bindings, same dispatch, same result up to summation order), reduced with subgroupAdd
// instead of workgroup memory.
// Used when the adapter has the SUBGROUP feature.
//
// Each subgroup computes whole rows (so no assumption about how subgroups map onto the
// workgroup): subgroup s takes rows s, s + n_subgroups, ... of the workgroup's 8 rows,
// its lanes summing a strided slice of the row. Dispatch: (ceil(rows / 8), T, 1).

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
                var sum = 0.0;
            for (var i = sg_lane; i < p.row_chunks; i += sg_size) {
                sum += dot_chunk(row, x_row, i);
            }
            let total = subgroupAdd(sum);
            if sg_lane == 0u {
                y[t * p.y_stride + p.y_offset + row] = total;
            }
        }
    }
}
