//! Matrix products on [`Matrix`] weights, built on the row dot kernels: the
//! rows of one or several stacked matrices are split into tasks across threads
//! (where the caller says the work pays for it), each task streaming its rows once.
//! On block-quantized weights the input meets the weights in f32 (the exact path,
//! the default) or first quantized to int8 (see [`QuantActivations`]).

use crate::kernels::{for_chunks, rows_dot_int8, rows_dot_quant, rows_dot_slice, swiglu_gate, threads, Int8Row, Int8Rows};
use crate::tensor::{Data, Matrix};

/// How a product on block-quantized weights (Q4_0 ... Q6_K) treats its input.
/// Other weights always meet the f32 input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QuantActivations {
    /// f32 activations, each weight dequantized in registers: the exact path, and
    /// the default: the int8 path's logits move enough to flip near-ties (on SmolLM2
    /// its top-1 agrees with this path's at 98% of val.txt's positions, about as
    /// often as llama.cpp's own does; tests/smollm2.rs), which changes answers.
    #[default]
    Exact,
    /// Activations quantized to int8 per block of 32 (ggml's Q8_0) once per
    /// product and input, then integer dot products per block, as llama.cpp
    /// does: 1.4-1.9 times faster on 4-bit blocks, each input value off by at
    /// most half its block's step (max |x| / 254).
    Int8,
}

/// What [`matmul`] keeps between calls: how it treats activations on quantized
/// weights, and its buffers (decoding allocates nothing).
#[derive(Clone, Debug, Default)]
pub struct MatmulScratch {
    pub activations: QuantActivations,
    /// A batch's transposed output (see [`by_rows`]).
    tmp: Vec<f32>,
    /// The input quantized to int8, when [`QuantActivations::Int8`] applies.
    int8: Int8Rows,
}

impl MatmulScratch {
    pub fn new(activations: QuantActivations) -> MatmulScratch {
        MatmulScratch { activations, ..MatmulScratch::default() }
    }

    /// The input x (rows of `cols`) of a product on `ws` as the row kernels
    /// take it, row by row: quantized here, once, where int8 activations are
    /// asked for and any of `ws` is block-quantized. And the batch buffer.
    fn inputs<'a>(&'a mut self, ws: &[&Matrix], x: &'a [f32], cols: usize) -> (&'a mut Vec<f32>, impl Fn(usize) -> Input<'a> + Sync + 'a) {
        assert_eq!(x.len() % cols.max(1), 0, "matmul input length");
        let int8 = self.activations == QuantActivations::Int8 && ws.iter().any(|w| w.format().block_weights() > 1);
        if int8 {
            self.int8.quantize(x, cols);
        }
        let q = &self.int8;
        (&mut self.tmp, move |t: usize| Input { x: &x[t * cols..(t + 1) * cols], int8: int8.then(|| q.row(t)) })
    }
}

/// One input row as the row kernels take it: f32, and its int8 blocks where
/// the product uses them.
#[derive(Clone, Copy)]
struct Input<'a> {
    x: &'a [f32],
    int8: Option<Int8Row<'a>>,
}

/// `out[i] = w.row(r0 + i) . x` for consecutive rows of one matrix.
#[inline]
fn rows_dot(w: &Matrix, r0: usize, x: Input, out: &mut [f32]) {
    let c = w.cols;
    match &w.data {
        Data::F32(d) => rows_dot_slice(&d[r0 * c..], c, x.x, out),
        Data::F16(d) => rows_dot_slice(&d[r0 * c..], c, x.x, out),
        Data::Quantized { format, bytes } => {
            let row = format.row_bytes(c).expect("whole blocks (checked when built)");
            match x.int8 {
                Some(q) if format.block_weights() > 1 => rows_dot_int8(*format, &bytes[r0 * row..], c, q, out),
                _ => rows_dot_quant(*format, &bytes[r0 * row..], c, x.x, out),
            }
        }
    }
}

/// [`rows_dot`] over the matrices `ws` stacked on top of each other.
fn stacked_rows_dot(ws: &[&Matrix], mut r0: usize, x: Input, mut out: &mut [f32]) {
    for w in ws {
        if out.is_empty() {
            return;
        }
        if r0 < w.rows {
            let n = out.len().min(w.rows - r0);
            let (here, rest) = out.split_at_mut(n);
            rows_dot(w, r0, x, here);
            out = rest;
            r0 = 0;
        } else {
            r0 -= w.rows;
        }
    }
    assert!(out.is_empty(), "rows beyond the stacked matrices");
}

/// Matrices from this many bytes are split into 16 tasks per thread where they
/// are split at all, smaller ones into 4 (see [`tasks`]).
const FINE_SPLIT_BYTES: usize = 2 << 20;

/// Tasks to split a matrix of `bytes` into: one when serial, else 4 or 16 per
/// thread. Threads share the memory bandwidth, so when one has run out of tasks
/// the other reads its last one at about half the rate of both: on a large
/// matrix the last task must be short. Each task costs a hand-off, so a small
/// matrix keeps 4 per thread (docs/BENCHMARKS.md has the runs that set both).
fn tasks(bytes: usize, parallel: bool) -> usize {
    match (parallel, bytes >= FINE_SPLIT_BYTES) {
        (false, _) => 1,
        (true, true) => 16 * threads(),
        (true, false) => 4 * threads(),
    }
}

/// At most this many inputs of a batch meet a task's rows together: a tile of them stays in
/// the core's cache while the rows pass (64 inputs of 576 or 1536 values take 147 or 393 KB,
/// within a core's L2), instead of the whole batch streaming from further away for every row.
/// Each tile decodes every block-quantized row once more, so a batch is cut into as few
/// tiles as this allows, of equal size: a chat prompt of a few dozen tokens is one tile.
const TILE: usize = 64;

/// `out[t][r]` for a batch x (n x cols): out (n x rows). Rows are split into `tasks`
/// (see [`tasks`]; one when serial). With one input, `one(first, out)` fills a task's
/// consecutive rows first..; with several, `batch(r, inputs, out)` fills row r's output
/// for a tile of inputs (at most [`TILE`]), so each task takes its rows for the whole batch
/// and every weight row is read from memory once per call. A batch is computed
/// transposed (rows x n, in `tmp`) so that each task owns whole rows, then transposed into
/// `out`.
fn by_rows<F, G>(rows: usize, n: usize, out: &mut [f32], tmp: &mut Vec<f32>, tasks: usize, one: F, batch: G)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
    G: Fn(usize, std::ops::Range<usize>, &mut [f32]) + Sync + Send,
{
    assert_eq!(out.len(), n * rows, "matmul output length");
    let (parallel, rows_per_task) = (tasks > 1, rows.div_ceil(tasks).next_multiple_of(4));
    if n == 1 {
        // One input: a task's outputs are consecutive rows.
        return for_chunks(out, rows_per_task, parallel, one);
    }
    tmp.resize(rows * n, 0.0);
    let tile = n.div_ceil(n.div_ceil(TILE));
    for_chunks(tmp, rows_per_task * n, parallel, |first, chunk| {
        for t0 in (0..n).step_by(tile) {
            let inputs = t0..(t0 + tile).min(n);
            for (i, o_row) in chunk.chunks_exact_mut(n).enumerate() {
                batch(first / n + i, inputs.clone(), &mut o_row[inputs.clone()]);
            }
        }
    });
    for r in 0..rows {
        for t in 0..n {
            out[t * rows + r] = tmp[r * n + t];
        }
    }
}

thread_local! {
    /// A weight row decoded to f32 (see [`row_batch`]), and a second one for SwiGLU's up.
    static ROWS: std::cell::RefCell<[Vec<f32>; 2]> = std::cell::RefCell::default();
}

/// Row r of `w` times the inputs `ts` of the batch `x` (n x cols): `out[i] = w.row(r) .
/// x_t` for the i-th t. On the exact path a block-quantized row is decoded to f32 once per
/// tile, then the f32 kernel takes the inputs as its rows and the decoded row as its
/// vector: a prompt's prefill decodes each 4-bit weight once per tile of tokens, not per token.
fn row_batch<'a>(w: &Matrix, r: usize, x: &[f32], ts: std::ops::Range<usize>, input: &impl Fn(usize) -> Input<'a>, out: &mut [f32]) {
    let decode_once = matches!(w.data, Data::Quantized { .. }) && input(0).int8.is_none();
    if !decode_once {
        for (t, o) in ts.zip(out.iter_mut()) {
            rows_dot(w, r, input(t), std::slice::from_mut(o));
        }
        return;
    }
    ROWS.with(|rows| {
        let row = &mut rows.borrow_mut()[0];
        row.resize(w.cols, 0.0);
        w.row_into(r, row);
        rows_dot_slice(&x[ts.start * w.cols..ts.end * w.cols], w.cols, row, out);
    })
}

/// [`row_batch`] for row r of the matrices `ws` stacked on top of each other.
fn stacked_row_batch<'a>(ws: &[&Matrix], mut r: usize, x: &[f32], ts: std::ops::Range<usize>, input: &impl Fn(usize) -> Input<'a>, out: &mut [f32]) {
    for w in ws {
        if r < w.rows {
            return row_batch(w, r, x, ts, input, out);
        }
        r -= w.rows;
    }
    panic!("a row beyond the stacked matrices");
}

/// `out = x [W1; W2; ...]^T`: x (n x cols), out (n x R) where R is the rows of
/// all the matrices (same cols) stacked, so each output row is [W1 x_t | W2 x_t | ...].
/// One call (one parallel region) computes e.g. q, k and v together.
/// `scratch` says how quantized weights meet x, and holds buffers reused between calls.
pub fn matmul(ws: &[&Matrix], x: &[f32], n: usize, out: &mut [f32], scratch: &mut MatmulScratch, parallel: bool) {
    let (rows, cols) = (ws.iter().map(|w| w.rows).sum(), ws[0].cols);
    assert!(ws.iter().all(|w| w.cols == cols), "stacked matrices need equal columns");
    assert_eq!(x.len(), n * cols, "matmul input length");
    let tasks = tasks(ws.iter().map(|w| w.bytes()).sum(), parallel);
    let (tmp, input) = scratch.inputs(ws, x, cols);
    by_rows(rows, n, out, tmp, tasks, |r0, o| stacked_rows_dot(ws, r0, input(0), o), |r, ts, o| stacked_row_batch(ws, r, x, ts, &input, o));
}

/// SwiGLU's first half in one pass: `out = silu(x gate^T) * (x up^T)`,
/// x (n x dim), out (n x ffn); rows of gate and of up are read together.
pub fn matmul_swiglu(gate: &Matrix, up: &Matrix, x: &[f32], n: usize, out: &mut [f32], scratch: &mut MatmulScratch, parallel: bool) {
    assert_eq!((gate.rows, gate.cols), (up.rows, up.cols), "gate and up shapes");
    let cols = gate.cols;
    assert_eq!(x.len(), n * cols, "matmul input length");
    let tasks = tasks(gate.bytes() + up.bytes(), parallel);
    let (tmp, input) = scratch.inputs(&[gate, up], x, cols);
    let one = |r0: usize, o: &mut [f32]| {
        let x = input(0);
        let mut u = [0.0f32; 16];
        for (i, o) in o.chunks_mut(16).enumerate() {
            let u = &mut u[..o.len()];
            rows_dot(gate, r0 + 16 * i, x, o);
            rows_dot(up, r0 + 16 * i, x, u);
            swiglu_gate(o, u);
        }
    };
    let batch = |r: usize, ts: std::ops::Range<usize>, o: &mut [f32]| {
        let mut u = ROWS.with(|rows| std::mem::take(&mut rows.borrow_mut()[1]));
        u.resize(o.len(), 0.0);
        row_batch(gate, r, x, ts.clone(), &input, o);
        row_batch(up, r, x, ts, &input, &mut u);
        swiglu_gate(o, &u);
        ROWS.with(|rows| rows.borrow_mut()[1] = u);
    };
    by_rows(gate.rows, n, out, tmp, tasks, one, batch);
}

/// `out = W x` for one vector: out (rows), x (cols), quantized weights on `activations`.
pub fn matvec(w: &Matrix, x: &[f32], out: &mut [f32], activations: QuantActivations, parallel: bool) {
    matmul(&[w], x, 1, out, &mut MatmulScratch::new(activations), parallel);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::randn;
    use crate::tensor::DType;

    fn f64_matmul(w: &[f32], rows: usize, cols: usize, x: &[f32], t: usize) -> Vec<f64> {
        (0..rows).map(|r| (0..cols).map(|c| w[r * cols + c] as f64 * x[t * cols + c] as f64).sum()).collect()
    }

    /// matmul over stacked matrices, matvec and the fused SwiGLU, serial and
    /// parallel, f32 and f16, against f64 loops.
    #[test]
    fn matvec_and_matmul_match_f64() {
        for (rows, cols, n) in [(1, 1, 1), (5, 33, 3), (64, 64, 7), (300, 70, 2), (17, 1000, 5)] {
            let w32 = Matrix::from_f32(rows, cols, randn(rows * cols, 1));
            let u32_ = Matrix::from_f32(rows, cols, randn(rows * cols, 3));
            for (w, u) in [(w32.clone(), u32_.clone()), (w32.to_dtype(DType::F16), u32_.to_dtype(DType::F16))] {
                let (wv, uv) = (w.to_f32_vec(), u.to_f32_vec());
                let x = randn(n * cols, 2);
                let tol = 1e-4 * (cols as f64).sqrt();
                for parallel in [false, true] {
                    let (mut stacked, mut swiglu, mut scratch) = (vec![0.0; n * 2 * rows], vec![0.0; n * rows], MatmulScratch::default());
                    matmul(&[&w, &u], &x, n, &mut stacked, &mut scratch, parallel);
                    matmul_swiglu(&w, &u, &x, n, &mut swiglu, &mut scratch, parallel);
                    for t in 0..n {
                        let mut one = vec![0.0; rows];
                        matvec(&w, &x[t * cols..(t + 1) * cols], &mut one, QuantActivations::Int8, parallel);
                        let (ew, eu) = (f64_matmul(&wv, rows, cols, &x, t), f64_matmul(&uv, rows, cols, &x, t));
                        for r in 0..rows {
                            let at = |v: &[f32], i: usize| v[i] as f64;
                            assert!((at(&stacked, t * 2 * rows + r) - ew[r]).abs() < tol, "matmul W {rows}x{cols} t={t} r={r}");
                            assert!((at(&stacked, t * 2 * rows + rows + r) - eu[r]).abs() < tol, "matmul U {rows}x{cols} t={t} r={r}");
                            assert!((at(&one, r) - ew[r]).abs() < tol, "matvec {rows}x{cols} r={r}");
                            let glu = ew[r] / (1.0 + (-ew[r]).exp()) * eu[r];
                            assert!((at(&swiglu, t * rows + r) - glu).abs() < tol * (1.0 + glu.abs()), "swiglu {rows}x{cols} t={t} r={r}");
                        }
                    }
                }
            }
        }
    }

    /// Quantized matrices (every GGUF format), stacked with an f32 one, in
    /// matmul, matvec and the fused SwiGLU, serial and parallel, on exact and on
    /// int8 activations, against f64 sums of the reference dequantizer's weights
    /// (bound as in the kernels' tests: on int8 activations, block formats are
    /// off by at most Σ |w_j| d_j / 2 more, d_j the step of x_j's block; the f32
    /// matrix and the formats without blocks stay exact).
    #[test]
    fn quantized_matrices_match_f64() {
        use crate::quant::reference::{dequantize_f64, offsets_f64, quantize};
        use crate::quant::Format;
        for format in Format::ALL {
            let (rows, cols, n) = (13, 2 * format.block_weights().max(32), 70); // n: more than a tile of inputs (two of 35)
            let (wb, ub) = (quantize(format, &randn(rows * cols, 5)), quantize(format, &randn(rows * cols, 6)));
            let w = Matrix::quantized(rows, cols, format, wb.clone()).unwrap();
            let u = Matrix::quantized(rows, cols, format, ub.clone()).unwrap();
            assert_eq!((w.bytes(), w.format(), w.dtype()), (wb.len(), format, DType::F32));
            let f = Matrix::from_f32(rows, cols, randn(rows * cols, 7));
            let (wv, uv, fv) = (dequantize_f64(format, &wb), dequantize_f64(format, &ub), f.to_f32_vec());
            let (wo, uo) = (offsets_f64(format, &wb), offsets_f64(format, &ub));
            let x = randn(n * cols, 8);
            let steps: Vec<f64> = x.chunks(32).flat_map(|b| [b.iter().fold(0.0f32, |a, v| a.max(v.abs())) as f64 / 127.0; 32]).collect();
            // (exact, bound) for row r of weights v (offsets o) against input t,
            // the bound widened by int8 activations where `int8`.
            let dot = |v: &[f64], o: &[f64], r: usize, t: usize, int8: bool| {
                let (v, o, x) = (&v[r * cols..(r + 1) * cols], &o[r * cols..(r + 1) * cols], &x[t * cols..(t + 1) * cols]);
                let exact: f64 = v.iter().zip(x).map(|(v, x)| v * *x as f64).sum();
                let terms: f64 = v.iter().zip(o).zip(x).map(|((v, o), x)| (v.abs() + 2.0 * o) * x.abs() as f64).sum();
                let quantizing: f64 = if int8 { v.iter().zip(&steps[t * cols..]).map(|(v, d)| v.abs() * d / 2.0).sum() } else { 0.0 };
                (exact, (cols as f64 / 8.0 + 64.0) * f64::powi(2.0, -24) * terms + 1e-6 + quantizing)
            };
            let fv64: Vec<f64> = fv.iter().map(|&v| v as f64).collect();
            let zeros = vec![0.0; rows * cols];
            for (activations, parallel) in [QuantActivations::Exact, QuantActivations::Int8].into_iter().flat_map(|a| [(a, false), (a, true)]) {
                let int8 = activations == QuantActivations::Int8 && format.block_weights() > 1;
                let (mut stacked, mut swiglu, mut scratch) = (vec![0.0; n * 3 * rows], vec![0.0; n * rows], MatmulScratch::new(activations));
                matmul(&[&w, &f, &u], &x, n, &mut stacked, &mut scratch, parallel);
                matmul_swiglu(&w, &u, &x, n, &mut swiglu, &mut scratch, parallel);
                for t in 0..n {
                    let mut one = vec![0.0; rows];
                    matvec(&w, &x[t * cols..(t + 1) * cols], &mut one, activations, parallel);
                    for r in 0..rows {
                        let name = format!("{} t={t} r={r} {activations:?} parallel={parallel}", format.name());
                        let ((ew, tw), (ef, tf), (eu, tu)) = (dot(&wv, &wo, r, t, int8), dot(&fv64, &zeros, r, t, false), dot(&uv, &uo, r, t, int8));
                        let got = |v: &[f32], i: usize| v[i] as f64;
                        assert!((got(&stacked, t * 3 * rows + r) - ew).abs() <= tw, "matmul W {name}");
                        assert!((got(&stacked, t * 3 * rows + rows + r) - ef).abs() <= tf, "matmul F {name}");
                        assert!((got(&stacked, t * 3 * rows + 2 * rows + r) - eu).abs() <= tu, "matmul U {name}");
                        assert!((got(&one, r) - ew).abs() <= tw, "matvec {name}");
                        // silu(a) b moves by at most 1.1 |da| |b| + |a| |db| (silu' < 1.1, |silu(a)| <= |a|).
                        let glu = ew / (1.0 + (-ew).exp()) * eu;
                        let moved = if int8 { 1.1 * tw * (eu.abs() + tu) + (ew.abs() + tw) * tu } else { 0.0 };
                        assert!((got(&swiglu, t * rows + r) - glu).abs() <= 1e-4 * (1.0 + glu.abs()) + moved, "swiglu {name}");
                    }
                }
            }
            // The embedding lookup and the copies dequantize as the reference does.
            let mut row = vec![0.0; cols];
            w.row_into(rows - 1, &mut row);
            assert!(row.iter().zip(&wv[(rows - 1) * cols..]).all(|(a, b)| (*a as f64 - b).abs() <= b.abs() * 1e-7));
            assert_eq!(w.to_dtype(DType::F32).to_f32_vec(), w.to_f32_vec());
            assert!(Matrix::shares(&w, &w.clone()) && !Matrix::shares(&w, &w.to_dtype(DType::F32)));
        }
        assert!(Matrix::quantized(2, 48, Format::Q4_0, vec![0; 2 * 18]).is_err(), "48 is not whole blocks of 32");
        assert!(Matrix::quantized(2, 64, Format::Q4_0, vec![0; 3 * 18]).is_err(), "wrong byte count");
    }
}
