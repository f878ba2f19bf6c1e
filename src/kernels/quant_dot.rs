//! Row dot products on GGUF weight rows kept as their bytes (the formats of
//! [`crate::quant`]): `out[i] = row i . x` with x in f32 and each weight
//! dequantized in registers, never in memory.
//!
//! Decoding is bound by memory bandwidth, and 4-bit rows are an eighth of f32
//! ones, so the kernel keeps the arithmetic per byte low: a block's codes are
//! widened to f32 lanes and multiplied with x unscaled, and the block's scale
//! (and offset) is applied once per block: `d Σ q x + m Σ x`, where Σ x over
//! the block is summed once for the four rows that share each activation load.
//! Like [`super::dot`], four rows at a time, then one, the next rows asked for
//! while these are read.

use super::simd::{dispatch, Kernel, Lanes};
use crate::quant::{q4_k_scale_min, Format};

/// `out[i] = row i . x` for consecutive rows of `cols` weights in `format`,
/// their bytes in `w` (whole rows, any alignment).
pub fn rows_dot_quant(format: Format, w: &[u8], cols: usize, x: &[f32], out: &mut [f32]) {
    let row = format.row_bytes(cols).unwrap_or_else(|| panic!("{} rows of {cols}: not whole blocks", format.name()));
    assert!(x.len() >= cols && w.len() >= out.len() * row, "rows_dot_quant shapes");
    dispatch(QuantDot { format, w, cols, x, out })
}

/// [`rows_dot_quant`]'s arguments.
struct QuantDot<'a> {
    format: Format,
    w: &'a [u8],
    cols: usize,
    x: &'a [f32],
    out: &'a mut [f32],
}

impl Kernel for QuantDot<'_> {
    type Output = ();
    #[inline(always)]
    fn run<V: Lanes>(self) {
        let (w, cols, x, out) = (self.w, self.cols, self.x, self.out);
        match self.format {
            Format::F32 => rows::<V, F32Elems>(w, cols, x, out),
            Format::F16 => rows::<V, F16Elems>(w, cols, x, out),
            Format::BF16 => rows::<V, Bf16Elems>(w, cols, x, out),
            Format::Q4_0 => rows::<V, Q4_0>(w, cols, x, out),
            Format::Q4_1 => rows::<V, Q4_1>(w, cols, x, out),
            Format::Q5_0 => rows::<V, Q5_0>(w, cols, x, out),
            Format::Q8_0 => rows::<V, Q8_0>(w, cols, x, out),
            Format::Q4_K => rows::<V, Q4K>(w, cols, x, out),
            Format::Q6_K => rows::<V, Q6K>(w, cols, x, out),
        }
    }
}

/// How the row kernel reads one format: a row is whole blocks of `WEIGHTS`
/// weights in `BYTES` bytes (or, for plain elements, a vector's worth at a time
/// with a scalar tail).
trait Blocks {
    const WEIGHTS: usize;
    const BYTES: usize;
    /// `acc[r] += block r . x[..WEIGHTS]` for R rows' blocks at `w[r]`.
    ///
    /// # Safety
    /// `w[r]..w[r] + BYTES` and `x..x + WEIGHTS` must be readable.
    unsafe fn dot<V: Lanes, const R: usize>(w: [*const u8; R], x: *const f32, acc: &mut [V; R]);
    /// The rest of a row shorter than a block (plain elements only).
    fn tail(_w: &[u8], _x: &[f32]) -> f32 {
        0.0
    }
}

/// The bytes of one row's block, as a slice for its scalar fields.
///
/// # Safety
/// `p..p + B::BYTES` must be readable.
#[inline(always)]
unsafe fn block<'a, B: Blocks>(p: *const u8) -> &'a [u8] {
    std::slice::from_raw_parts(p, B::BYTES)
}

/// Row length in bytes, and the weights of a row that whole blocks cover.
#[inline(always)]
fn layout<V: Lanes, B: Blocks>(cols: usize) -> (usize, usize) {
    let weights = if B::WEIGHTS == 1 { V::N } else { B::WEIGHTS };
    let bytes = if B::WEIGHTS == 1 { cols * B::BYTES } else { cols / B::WEIGHTS * B::BYTES };
    (bytes, cols / weights * weights)
}

#[inline(always)]
fn rows<V: Lanes, B: Blocks>(w: &[u8], cols: usize, x: &[f32], out: &mut [f32]) {
    let (row, _) = layout::<V, B>(cols);
    fours_then_ones(out, |i, o| rows_block::<V, B, 4>(&w[i * row..], cols, x, o), |i, o| rows_block::<V, B, 1>(&w[i * row..], cols, x, o));
}

/// `out` four rows at a time (`four(first row, outputs)`), then the rest one
/// at a time: the row kernels' split (each row is summed in the same order
/// either way; this one and `quant_dot_int8`'s).
#[inline(always)]
pub(super) fn fours_then_ones(out: &mut [f32], mut four: impl FnMut(usize, &mut [f32; 4]), mut one: impl FnMut(usize, &mut [f32; 1])) {
    let done = out.len() / 4 * 4;
    let mut quads = out.chunks_exact_mut(4);
    for (i, o) in (&mut quads).enumerate() {
        four(4 * i, o.try_into().unwrap());
    }
    for (i, o) in quads.into_remainder().iter_mut().enumerate() {
        one(done + i, std::slice::from_mut(o).try_into().unwrap());
    }
}

/// Ask for the cache lines that begin in bytes `at..at + bytes` of each of
/// the R rows at `starts`, R rows on (the next call's rows): rows are
/// streamed once, and the hardware prefetcher alone leaves the core waiting.
/// A hint, never faults.
#[inline(always)]
pub(super) fn prefetch_ahead<V: Lanes, const R: usize>(starts: [*const u8; R], row: usize, at: usize, bytes: usize) {
    let mut line = at.next_multiple_of(64);
    while line < at + bytes {
        for p in starts {
            V::prefetch(p.wrapping_add(R * row + line));
        }
        line += 64;
    }
}

/// R rows against x, block by block, each activation load serving R rows, the
/// next call's rows asked for on the way.
#[inline(always)]
fn rows_block<V: Lanes, B: Blocks, const R: usize>(w: &[u8], cols: usize, x: &[f32], out: &mut [f32; R]) {
    let (row, whole) = layout::<V, B>(cols);
    assert!(w.len() >= R * row && x.len() >= cols);
    let (step, bytes) = if B::WEIGHTS == 1 { (V::N, V::N * B::BYTES) } else { (B::WEIGHTS, B::BYTES) };
    let starts: [*const u8; R] = std::array::from_fn(|r| w[r * row..].as_ptr());
    let mut acc = [V::zero(); R];
    for (b, c) in (0..whole).step_by(step).enumerate() {
        let at = b * bytes;
        prefetch_ahead::<V, R>(starts, row, at, bytes);
        // SAFETY: block b of each row ends by `row` bytes in (within w), and
        // its weights by `whole` <= cols (within x).
        unsafe { B::dot::<V, R>(starts.map(|p| p.add(at)), x.as_ptr().add(c), &mut acc) };
    }
    let tail = whole / step * bytes; // where a row's tail begins
    for (r, (acc, o)) in acc.iter().zip(out.iter_mut()).enumerate() {
        *o = acc.sum() + B::tail(&w[r * row + tail..(r + 1) * row], &x[whole..cols]);
    }
}

/// Plain elements: f32, f16 or bf16 weights, N at a time, loaded unaligned.
macro_rules! elements {
    ($name:ident, $bytes:expr, $load:ident, $scalar:expr) => {
        struct $name;
        impl Blocks for $name {
            const WEIGHTS: usize = 1;
            const BYTES: usize = $bytes;
            #[inline(always)]
            unsafe fn dot<V: Lanes, const R: usize>(w: [*const u8; R], x: *const f32, acc: &mut [V; R]) {
                let xv = V::load(x);
                for r in 0..R {
                    acc[r] = V::$load(w[r] as _).mul_add(xv, acc[r]);
                }
            }
            fn tail(w: &[u8], x: &[f32]) -> f32 {
                let scalar: fn(&[u8]) -> f32 = $scalar;
                w.chunks_exact($bytes).zip(x).map(|(w, x)| scalar(w) * x).sum()
            }
        }
    };
}

elements!(F32Elems, 4, load, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
elements!(F16Elems, 2, load_f16, |b| crate::quant::f16_at(b, 0));
elements!(Bf16Elems, 2, load_bf16, |b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16));

/// The f16 at byte `i` of a block.
#[inline(always)]
fn f16_field<V: Lanes>(b: &[u8], i: usize) -> f32 {
    V::f16_to_f32(u16::from_le_bytes([b[i], b[i + 1]]))
}

/// Q4_0, Q4_1 and Q5_0 share one body: 32 codes, weight j (0..16) in the low
/// nibble of byte j of the 16 at `QS`, weight j + 16 in its high nibble (and
/// Q5_0's fifth bits in the u32 at byte 2); the block is `d Σ q x + m Σ x`.
#[inline(always)]
unsafe fn nibble_block<V: Lanes, const R: usize, const QS: usize, const FIFTH: bool>(
    w: [*const u8; R],
    x: *const f32,
    acc: &mut [V; R],
    scale: impl Fn(&[u8]) -> (f32, f32),
) {
    let (mut s, mut sx) = ([V::zero(); R], V::zero());
    for v in (0..16).step_by(V::N) {
        let (x0, x1) = (V::load(x.add(v)), V::load(x.add(16 + v)));
        sx = sx.add(x0).add(x1);
        for r in 0..R {
            let q = w[r].add(QS + v);
            let (mut q0, mut q1) = (V::load_u8_bits(q, 0, 0xf), V::load_u8_bits(q, 4, 0xf));
            if FIFTH {
                let qh = u32::from_le((w[r].add(2) as *const u32).read_unaligned());
                q0 = V::unpack_bits(qh, v as u32).mul_add(V::splat(16.0), q0);
                q1 = V::unpack_bits(qh, 16 + v as u32).mul_add(V::splat(16.0), q1);
            }
            s[r] = q1.mul_add(x1, q0.mul_add(x0, s[r]));
        }
    }
    for r in 0..R {
        let (d, m) = scale(std::slice::from_raw_parts(w[r], QS));
        acc[r] = sx.mul_add(V::splat(m), s[r].mul_add(V::splat(d), acc[r]));
    }
}

/// Q4_0: f16 d, 16 bytes of nibbles; weight d (q - 8).
struct Q4_0;
impl Blocks for Q4_0 {
    const WEIGHTS: usize = Format::Q4_0.block_weights();
    const BYTES: usize = Format::Q4_0.block_bytes();
    #[inline(always)]
    unsafe fn dot<V: Lanes, const R: usize>(w: [*const u8; R], x: *const f32, acc: &mut [V; R]) {
        nibble_block::<V, R, 2, false>(w, x, acc, |b| {
            let d = f16_field::<V>(b, 0);
            (d, -8.0 * d)
        })
    }
}

/// Q4_1: f16 d, f16 m, 16 bytes of nibbles; weight d q + m.
struct Q4_1;
impl Blocks for Q4_1 {
    const WEIGHTS: usize = Format::Q4_1.block_weights();
    const BYTES: usize = Format::Q4_1.block_bytes();
    #[inline(always)]
    unsafe fn dot<V: Lanes, const R: usize>(w: [*const u8; R], x: *const f32, acc: &mut [V; R]) {
        nibble_block::<V, R, 4, false>(w, x, acc, |b| (f16_field::<V>(b, 0), f16_field::<V>(b, 2)))
    }
}

/// Q5_0: f16 d, u32 of fifth bits, 16 bytes of nibbles; weight d (q - 16).
struct Q5_0;
impl Blocks for Q5_0 {
    const WEIGHTS: usize = Format::Q5_0.block_weights();
    const BYTES: usize = Format::Q5_0.block_bytes();
    #[inline(always)]
    unsafe fn dot<V: Lanes, const R: usize>(w: [*const u8; R], x: *const f32, acc: &mut [V; R]) {
        nibble_block::<V, R, 6, true>(w, x, acc, |b| {
            let d = f16_field::<V>(b, 0);
            (d, -16.0 * d)
        })
    }
}

/// Q8_0: f16 d, 32 int8; weight d q.
struct Q8_0;
impl Blocks for Q8_0 {
    const WEIGHTS: usize = Format::Q8_0.block_weights();
    const BYTES: usize = Format::Q8_0.block_bytes();
    #[inline(always)]
    unsafe fn dot<V: Lanes, const R: usize>(w: [*const u8; R], x: *const f32, acc: &mut [V; R]) {
        let mut s = [V::zero(); R];
        for v in (0..32).step_by(V::N) {
            let xv = V::load(x.add(v));
            for r in 0..R {
                s[r] = V::load_i8(w[r].add(2 + v) as *const i8).mul_add(xv, s[r]);
            }
        }
        for r in 0..R {
            acc[r] = s[r].mul_add(V::splat(f16_field::<V>(block::<Self>(w[r]), 0)), acc[r]);
        }
    }
}

/// Q4_K: 8 sub-blocks of 32, each `d sc_j Σ q x - dmin m_j Σ x`; sub-blocks
/// 2p and 2p + 1 in the low and high nibbles of the 32 bytes of pair p.
struct Q4K;
impl Blocks for Q4K {
    const WEIGHTS: usize = Format::Q4_K.block_weights();
    const BYTES: usize = Format::Q4_K.block_bytes();
    #[inline(always)]
    unsafe fn dot<V: Lanes, const R: usize>(w: [*const u8; R], x: *const f32, acc: &mut [V; R]) {
        let head: [(f32, f32, &[u8]); R] = std::array::from_fn(|r| {
            let b = block::<Self>(w[r]);
            (f16_field::<V>(b, 0), f16_field::<V>(b, 2), &b[4..16])
        });
        for j in 0..8 {
            let (qs, shift, x) = (16 + 32 * (j / 2), 4 * (j as u32 % 2), x.add(32 * j));
            let (mut s, mut sx) = ([V::zero(); R], V::zero());
            for v in (0..32).step_by(V::N) {
                let xv = V::load(x.add(v));
                sx = sx.add(xv);
                for r in 0..R {
                    s[r] = V::load_u8_bits(w[r].add(qs + v), shift, 0xf).mul_add(xv, s[r]);
                }
            }
            for r in 0..R {
                let (d, dmin, scales) = head[r];
                let (sc, m) = q4_k_scale_min(j, scales);
                acc[r] = sx.mul_add(V::splat(-dmin * m as f32), s[r].mul_add(V::splat(d * sc as f32), acc[r]));
            }
        }
    }
}

/// Q6_K: 16 sub-blocks of 16, each `d sc_j (Σ q x - 32 Σ x)`, q's low nibble
/// in `ql` and high bit pair in `qh` (see [`crate::quant::dequantize_q6_k`]).
struct Q6K;
impl Blocks for Q6K {
    const WEIGHTS: usize = Format::Q6_K.block_weights();
    const BYTES: usize = Format::Q6_K.block_bytes();
    #[inline(always)]
    unsafe fn dot<V: Lanes, const R: usize>(w: [*const u8; R], x: *const f32, acc: &mut [V; R]) {
        let d: [f32; R] = std::array::from_fn(|r| f16_field::<V>(block::<Self>(w[r]), 208));
        for j in 0..16 {
            // Sub-block j: half h, quarter k of it, sixteen t of the quarter.
            let (h, k, t) = (j / 8, (j % 8) / 2, j % 2);
            let l = 16 * t; // position in the quarter's 32
            let (ql, low_shift) = (64 * h + 32 * (k % 2) + l, 4 * (k as u32 / 2));
            let (qh, high_shift) = (128 + 32 * h + l, 2 * k as u32);
            let x = x.add(16 * j);
            let (mut s, mut sx) = ([V::zero(); R], V::zero());
            for v in (0..16).step_by(V::N) {
                let xv = V::load(x.add(v));
                sx = sx.add(xv);
                for r in 0..R {
                    let low = V::load_u8_bits(w[r].add(ql + v), low_shift, 0xf);
                    let q = V::load_u8_bits(w[r].add(qh + v), high_shift, 3).mul_add(V::splat(16.0), low);
                    s[r] = q.mul_add(xv, s[r]);
                }
            }
            for r in 0..R {
                let dsc = d[r] * *w[r].add(192 + j) as i8 as f32;
                acc[r] = sx.mul_add(V::splat(-32.0 * dsc), s[r].mul_add(V::splat(dsc), acc[r]));
            }
        }
    }
}

/// Each format's row kernel against f64 sums of the reference dequantizer's
/// weights, on every instruction set this machine has.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::randn;
    use crate::kernels::simd::{run_on, Isa};
    use crate::quant::reference::{dequantize_f64, known_blocks, offsets_f64, quantize};

    fn rows_on(isa: Isa, format: Format, w: &[u8], cols: usize, x: &[f32], rows: usize) -> Vec<f32> {
        let mut out = vec![f32::NAN; rows];
        run_on(isa, QuantDot { format, w, cols, x, out: &mut out });
        out
    }

    /// Every format, rows 1..=9 (each remainder of four, and more than one
    /// block of four), rows of 1 to 5 blocks (plain elements: every vector
    /// tail), against f64. The bound is f32's: each sum is a chain of at most
    /// cols / 8 + 64 roundings (lanes of 8 or 16, two per sub-block of 16,
    /// the blocks' own sums and the lanes' sum), each off by at most 2^-24 of
    /// the terms' magnitude: |weight x| and the block offset's |m x| twice.
    #[test]
    fn quantized_rows_dot_matches_f64_for_every_format_and_tail() {
        for format in Format::ALL {
            let qk = format.block_weights();
            let lengths: Vec<usize> = if qk == 1 { vec![1, 7, 8, 9, 15, 16, 17, 31, 33, 100, 257] } else { vec![qk, 2 * qk, 3 * qk, 5 * qk] };
            for (k, &cols) in lengths.iter().enumerate() {
                let rows = 9;
                let values = randn(rows * cols, 10 + k as u64);
                let w = quantize(format, &values);
                let (weights, offsets) = (dequantize_f64(format, &w), offsets_f64(format, &w));
                let x = randn(cols, 20 + k as u64);
                for isa in Isa::all_available() {
                    for n in 1..=rows {
                        let got = rows_on(isa, format, &w, cols, &x, n);
                        for (r, got) in got.iter().enumerate() {
                            let row = r * cols..(r + 1) * cols;
                            let exact: f64 = weights[row.clone()].iter().zip(&x).map(|(w, x)| w * *x as f64).sum();
                            let terms: f64 = weights[row.clone()].iter().zip(&offsets[row]).zip(&x).map(|((w, o), x)| (w.abs() + 2.0 * o) * x.abs() as f64).sum();
                            let tol = (cols as f64 / 8.0 + 64.0) * f64::powi(2.0, -24) * terms;
                            let err = (*got as f64 - exact).abs();
                            assert!(err <= tol, "{isa:?} {} cols={cols} rows={n} r={r}: {got} vs {exact} (tol {tol:e})", format.name());
                        }
                    }
                }
            }
        }
    }

    /// The hand-built blocks (their weights stated in `crate::quant`'s tests)
    /// against each one-hot x: exactly the weight, on every instruction set;
    /// and all of them against x of ones: their sum.
    #[test]
    fn known_blocks_dot_one_hot_to_each_weight() {
        for (format, bytes) in known_blocks() {
            let n = bytes.len() / format.block_bytes() * format.block_weights();
            let mut weights = vec![0.0; n];
            crate::quant::dequantize(format, &bytes, &mut weights);
            for isa in Isa::all_available() {
                for (i, &wi) in weights.iter().enumerate() {
                    let mut x = vec![0.0; n];
                    x[i] = 1.0;
                    assert_eq!(rows_on(isa, format, &bytes, n, &x, 1)[0], wi, "{isa:?} {} weight {i}", format.name());
                }
                let sum: f64 = weights.iter().map(|&w| w as f64).sum();
                assert_eq!(rows_on(isa, format, &bytes, n, &vec![1.0; n], 1)[0] as f64, sum, "{isa:?} {} sum", format.name());
            }
        }
    }

    /// The dispatched entry point is the best instruction set's kernel, on rows
    /// that begin at an odd address.
    #[test]
    fn entry_point_dispatches_and_reads_unaligned_rows() {
        for format in Format::ALL {
            let cols = 2 * format.block_weights().max(16);
            let w = quantize(format, &randn(5 * cols, 3));
            let shifted = [vec![0u8], w.clone()].concat();
            let x = randn(cols, 4);
            let mut out = vec![0.0; 5];
            rows_dot_quant(format, &shifted[1..], cols, &x, &mut out);
            assert_eq!(out, rows_on(Isa::best(), format, &w, cols, &x, 5), "{}", format.name());
        }
    }
}
