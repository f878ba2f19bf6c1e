// Batched matrix product for prefill (T > 1 new tokens):
//   y[t, y_offset + r] = sum_c W[r, c] * x[t, c]      for r < rows, t < n_tokens
//
// Same bindings and layouts as matvec.wgsl, read as scalars: W (rows, cols_pad) with
// f32 one per u32 or f16 two per u32; x (T, x_stride) f32; y (T, y_stride) f32.
// A 16 x 16 workgroup computes a tile of 16 tokens x 16 rows, staging 16-column slices
// of W and x in workgroup memory so each weight is loaded once per 16 tokens.
// Dispatch: (ceil(rows / 16), ceil(T / 16), 1).

override WEIGHTS_F16: bool = false;

const TILE: u32 = 16u;

struct Params {
    rows: u32,
    row_u32s: u32,   // u32 per row of W (cols_pad for f32, cols_pad / 2 for f16)
    x_stride: u32,   // f32 per row of x
    y_stride: u32,
    y_offset: u32,
    n_tokens: u32,
    cols: u32,       // cols_pad: columns to sum over
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> w_tile: array<array<f32, 17>, 16>; // [row][col], padded against bank conflicts
var<workgroup> x_tile: array<array<f32, 17>, 16>; // [token][col]

fn weight(row: u32, col: u32) -> f32 {
    if WEIGHTS_F16 {
        let pair = unpack2x16float(w[row * p.row_u32s + col / 2u]);
        return select(pair.x, pair.y, (col & 1u) == 1u);
    }
    return bitcast<f32>(w[row * p.row_u32s + col]);
}

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) li: vec3<u32>) {
    let row0 = wid.x * TILE;
    let tok0 = wid.y * TILE;
    // Loading: invocation (li.x, li.y) loads column li.x of tile row li.y.
    // Computing: invocation (li.x, li.y) owns output (token tok0 + li.y, row row0 + li.x).
    var acc = 0.0;
    for (var c0 = 0u; c0 < p.cols; c0 += TILE) {
        let col = c0 + li.x;
        let w_row = row0 + li.y;
        let x_tok = tok0 + li.y;
        var wv = 0.0;
        if w_row < p.rows && col < p.cols {
            wv = weight(w_row, col);
        }
        w_tile[li.y][li.x] = wv;
        var xv = 0.0;
        if x_tok < p.n_tokens && col < p.cols {
            xv = x[x_tok * p.x_stride + col];
        }
        x_tile[li.y][li.x] = xv;
        workgroupBarrier();
        for (var k = 0u; k < TILE; k++) {
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
