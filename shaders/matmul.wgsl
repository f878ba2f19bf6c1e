// Batched matrix product for prefill (T > 1 new tokens), after quant.wgsl:
//   y[t, y_offset + r] = sum_c W[r, c] * x[t, c]      for r < rows, t < n_tokens
//
// Same bindings and layouts as matvec (matvec_common.wgsl): W rows of row_bytes bytes
// in the weights' format, decoded 8 weights at a time by quant.wgsl; x (T, x_stride)
// f32; y (T, y_stride) f32.
// A 16 x 16 workgroup computes a tile of 16 tokens x 16 rows, staging 32-column slices
// of W (decoded) and x in workgroup memory so each weight is decoded once per 16 tokens.
// Dispatch: (ceil(rows / 16), ceil(T / 16), 1).

const TILE: u32 = 16u; // rows, and tokens, per workgroup
const KT: u32 = 32u;   // columns per step: 4 chunks of 8 weights per row

struct Params {
    rows: u32,
    row_bytes: u32,  // bytes per row of W
    x_stride: u32,   // f32 per row of x
    y_stride: u32,
    y_offset: u32,
    n_tokens: u32,
    cols: u32,       // columns to sum over (a multiple of 8)
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> w_tile: array<array<f32, 33>, 16>; // [row][col], padded against bank conflicts
var<workgroup> x_tile: array<array<f32, 33>, 16>; // [token][col]

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(local_invocation_id) li: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row0 = wid.x * TILE;
    let tok0 = wid.y * TILE;
    // Computing: invocation (li.x, li.y) owns output (token tok0 + li.y, row row0 + li.x).
    var acc = 0.0;
    for (var c0 = 0u; c0 < p.cols; c0 += KT) {
        // Weights: invocations 0..64 decode one chunk each (row lid / 4, chunk lid % 4).
        if lid < TILE * KT / 8u {
            let r = lid / 4u;
            let c = (lid % 4u) * 8u;
            var v = Eight(vec4<f32>(0.0), vec4<f32>(0.0));
            if row0 + r < p.rows && c0 + c < p.cols {
                v = weights8((row0 + r) * p.row_bytes, c0 + c);
            }
            for (var k = 0u; k < 4u; k++) {
                w_tile[r][c + k] = v.lo[k];
                w_tile[r][c + 4u + k] = v.hi[k];
            }
        }
        // Activations: invocation (li.x, li.y) loads columns li.x and li.x + 16 of token li.y.
        let tok = tok0 + li.y;
        for (var h = 0u; h < KT; h += TILE) {
            let col = c0 + h + li.x;
            var xv = 0.0;
            if tok < p.n_tokens && col < p.cols {
                xv = x[tok * p.x_stride + col];
            }
            x_tile[li.y][h + li.x] = xv;
        }
        workgroupBarrier();
        for (var k = 0u; k < KT; k++) {
            acc += w_tile[li.x][k] * x_tile[li.y][k];
        }
        workgroupBarrier();
    }
    let row = row0 + li.x;
    let t = tok0 + li.y;
    if row < p.rows && t < p.n_tokens {
        y[t * p.y_stride + p.y_offset + row] = acc;
    }
}
