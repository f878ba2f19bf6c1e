//! Row dot products on GGUF block-quantized rows against int8 activations:
//! the fast path beside [`super::quant_dot`]'s exact one, as llama.cpp
//! computes them. x is quantized once per mat-vec into blocks of 32 int8 with
//! an f32 scale ([`super::int8_acts`]); each block of weights then meets its 32
//! activations in integers: a weight's 4-, 5-, 6- or 8-bit code times an int8,
//! summed in i32 lanes (`maddubs` + `madd` on AVX2, `vpdpbusd` with AVX-512
//! VNNI, `i32x4.dot_i16x8` on wasm), and the sum is scaled once:
//!
//! `block = d_w d_x Σ q_w q_x + m_w (d_x Σ q_x)`,
//!
//! where the weight is `d_w q_w + m_w` (Q4_0: m = -8 d; Q5_0: m = -16 d;
//! Q8_0: m = 0; Q4_K per sub-block of 32: d sc, -dmin m; Q6_K per sub-block of
//! 16: d sc, -32 d sc, its two sub-blocks meeting one activation block). The
//! codes are unsigned (0..=63) but Q8_0's, which are signed.
//!
//! Compared with the exact path, no weight is widened to f32: a block of 32
//! costs a few integer instructions instead of 32 conversions and multiply-adds,
//! for an error that activation quantization explains (each x_j moves by at
//! most half its block's step, d_x / 2). Only the block formats have this path.

use super::int8_acts::{Int8Block, Int8Row, BLOCK};
use super::quant_dot::{fours_then_ones, prefetch_ahead};
use super::simd::{dispatch, Kernel, Lanes};
use crate::quant::{q4_k_scale_min, Format};

/// `out[i] = row i . x` for consecutive rows of `cols` weights in `format` (a
/// block format), their bytes in `w` (whole rows, any alignment), x quantized.
pub fn rows_dot_int8(format: Format, w: &[u8], cols: usize, x: Int8Row, out: &mut [f32]) {
    assert!(format.block_weights() >= BLOCK, "{}: no int8 path (not block-quantized)", format.name());
    let row = format.row_bytes(cols).unwrap_or_else(|| panic!("{} rows of {cols}: not whole blocks", format.name()));
    assert!(x.q.len() >= cols && x.blocks.len() >= cols / BLOCK && w.len() >= out.len() * row, "rows_dot_int8 shapes");
    dispatch(Int8Dot { format, w, cols, x, out })
}

/// [`rows_dot_int8`]'s arguments.
struct Int8Dot<'a> {
    format: Format,
    w: &'a [u8],
    cols: usize,
    x: Int8Row<'a>,
    out: &'a mut [f32],
}

impl Kernel for Int8Dot<'_> {
    type Output = ();
    #[inline(always)]
    fn run<V: Lanes>(self) {
        let (w, cols, x, out) = (self.w, self.cols, self.x, self.out);
        match self.format {
            Format::Q4_0 => rows::<V, Q4_0>(w, cols, x, out),
            Format::Q4_1 => rows::<V, Q4_1>(w, cols, x, out),
            Format::Q5_0 => rows::<V, Q5_0>(w, cols, x, out),
            Format::Q8_0 => rows::<V, Q8_0>(w, cols, x, out),
            Format::Q4_K => rows::<V, Q4K>(w, cols, x, out),
            Format::Q6_K => rows::<V, Q6K>(w, cols, x, out),
            Format::F32 | Format::F16 | Format::BF16 => unreachable!("checked by rows_dot_int8"),
        }
    }
}

/// How the row kernel reads one format: a row is whole blocks of `WEIGHTS`
/// weights in `BYTES` bytes.
trait Blocks {
    const WEIGHTS: usize;
    const BYTES: usize;
    /// `acc[r] + offset[r] += block r . x` for R rows' blocks at `w[r]`, their
    /// activations' codes at `q` and their `WEIGHTS / 32` blocks in `x`: the
    /// products in `acc`, the offset terms (one number per block) in `offset`.
    ///
    /// # Safety
    /// `w[r]..w[r] + BYTES` and `q..q + WEIGHTS` must be readable.
    unsafe fn dot<V: Lanes, const R: usize>(w: [*const u8; R], q: *const i8, x: &[Int8Block], acc: &mut [V; R], offset: &mut [f32; R]);
}

#[inline(always)]
fn rows<V: Lanes, B: Blocks>(w: &[u8], cols: usize, x: Int8Row, out: &mut [f32]) {
    let row = cols / B::WEIGHTS * B::BYTES;
    fours_then_ones(out, |i, o| rows_block::<V, B, 4>(&w[i * row..], cols, x, o), |i, o| rows_block::<V, B, 1>(&w[i * row..], cols, x, o));
}

/// R rows against x, block by block, each activation load serving R rows, the
/// next call's rows asked for on the way.
#[inline(always)]
fn rows_block<V: Lanes, B: Blocks, const R: usize>(w: &[u8], cols: usize, x: Int8Row, out: &mut [f32; R]) {
    let (row, blocks) = (cols / B::WEIGHTS * B::BYTES, cols / B::WEIGHTS);
    assert!(w.len() >= R * row && x.q.len() >= cols && x.blocks.len() >= cols / BLOCK);
    let starts: [*const u8; R] = std::array::from_fn(|r| w[r * row..].as_ptr());
    let (mut acc, mut offset) = ([V::zero(); R], [0.0; R]);
    for b in 0..blocks {
        let at = b * B::BYTES;
        prefetch_ahead::<V, R>(starts, row, at, B::BYTES);
        let c = b * B::WEIGHTS;
        // SAFETY: block b of each row ends by `row` bytes in (within w), and
        // its weights by cols (within x's codes).
        unsafe { B::dot::<V, R>(starts.map(|p| p.add(at)), x.q.as_ptr().add(c), &x.blocks[c / BLOCK..], &mut acc, &mut offset) };
    }
    for ((acc, offset), o) in acc.iter().zip(offset).zip(out.iter_mut()) {
        *o = acc.sum() + offset;
    }
}

/// The f16 at byte `i` of a block.
#[inline(always)]
unsafe fn f16_field<V: Lanes>(p: *const u8, i: usize) -> f32 {
    V::f16_to_f32(u16::from_le_bytes([*p.add(i), *p.add(i + 1)]))
}

/// Q4_0, Q4_1 and Q5_0 share one body: 32 codes in the nibbles of the 16
/// bytes at `QS` (and Q5_0's fifth bits in the u32 at byte 2); `scale` gives
/// the block's (d, m) from its bytes.
#[inline(always)]
unsafe fn nibble_block<V: Lanes, const R: usize, const QS: usize, const FIFTH: bool>(
    w: [*const u8; R],
    q: *const i8,
    x: &[Int8Block],
    acc: &mut [V; R],
    offset: &mut [f32; R],
    scale: impl Fn(*const u8) -> (f32, f32),
) {
    let (xq, xb) = (V::load_bytes(q as *const u8), x[0]);
    for r in 0..R {
        let mut codes = V::load_nibbles(w[r].add(QS));
        if FIFTH {
            let qh = u32::from_le((w[r].add(2) as *const u32).read_unaligned());
            codes = V::or_shifted(codes, V::bytes_from_bits(qh), 4);
        }
        let (d, m) = scale(w[r]);
        acc[r] = V::dot_bytes(codes, xq).mul_add(V::splat(d * xb.d), acc[r]);
        offset[r] += m * xb.sum;
    }
}

/// Q4_0: f16 d, 16 bytes of nibbles; weight d (q - 8).
struct Q4_0;
impl Blocks for Q4_0 {
    const WEIGHTS: usize = Format::Q4_0.block_weights();
    const BYTES: usize = Format::Q4_0.block_bytes();
    #[inline(always)]
    unsafe fn dot<V: Lanes, const R: usize>(w: [*const u8; R], q: *const i8, x: &[Int8Block], acc: &mut [V; R], offset: &mut [f32; R]) {
        nibble_block::<V, R, 2, false>(w, q, x, acc, offset, |b| {
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
    unsafe fn dot<V: Lanes, const R: usize>(w: [*const u8; R], q: *const i8, x: &[Int8Block], acc: &mut [V; R], offset: &mut [f32; R]) {
        nibble_block::<V, R, 4, false>(w, q, x, acc, offset, |b| (f16_field::<V>(b, 0), f16_field::<V>(b, 2)))
    }
}

/// Q5_0: f16 d, u32 of fifth bits, 16 bytes of nibbles; weight d (q - 16).
struct Q5_0;
impl Blocks for Q5_0 {
    const WEIGHTS: usize = Format::Q5_0.block_weights();
    const BYTES: usize = Format::Q5_0.block_bytes();
    #[inline(always)]
    unsafe fn dot<V: Lanes, const R: usize>(w: [*const u8; R], q: *const i8, x: &[Int8Block], acc: &mut [V; R], offset: &mut [f32; R]) {
        nibble_block::<V, R, 6, true>(w, q, x, acc, offset, |b| {
            let d = f16_field::<V>(b, 0);
            (d, -16.0 * d)
        })
    }
}

/// Q8_0: f16 d, 32 int8; weight d q (signed codes, no offset).
struct Q8_0;
impl Blocks for Q8_0 {
    const WEIGHTS: usize = Format::Q8_0.block_weights();
    const BYTES: usize = Format::Q8_0.block_bytes();
    #[inline(always)]
    unsafe fn dot<V: Lanes, const R: usize>(w: [*const u8; R], q: *const i8, x: &[Int8Block], acc: &mut [V; R], _: &mut [f32; R]) {
        let xq = V::load_bytes(q as *const u8);
        for r in 0..R {
            let d = f16_field::<V>(w[r], 0) * x[0].d;
            acc[r] = V::dot_i8(V::load_bytes(w[r].add(2)), xq).mul_add(V::splat(d), acc[r]);
        }
    }
}

/// Q4_K: 8 sub-blocks of 32, each `d sc_j q - dmin m_j` (see
/// [`crate::quant::q4_k_scale_min`]); sub-blocks 2p and 2p + 1 in the low and
/// high nibbles of the 32 bytes of pair p. Sub-block j meets activation block j.
struct Q4K;
impl Blocks for Q4K {
    const WEIGHTS: usize = Format::Q4_K.block_weights();
    const BYTES: usize = Format::Q4_K.block_bytes();
    #[inline(always)]
    unsafe fn dot<V: Lanes, const R: usize>(w: [*const u8; R], q: *const i8, x: &[Int8Block], acc: &mut [V; R], offset: &mut [f32; R]) {
        let head: [(f32, f32, &[u8]); R] =
            std::array::from_fn(|r| (f16_field::<V>(w[r], 0), f16_field::<V>(w[r], 2), std::slice::from_raw_parts(w[r].add(4), 12)));
        for (j, xb) in x.iter().take(8).enumerate() {
            let xq = V::load_bytes(q.add(32 * j) as *const u8);
            for r in 0..R {
                let (d, dmin, scales) = head[r];
                let (sc, m) = q4_k_scale_min(j, scales);
                let codes = V::load_byte_fields(w[r].add(16 + 32 * (j / 2)), 4 * (j as u32 % 2), 0xf);
                acc[r] = V::dot_bytes(codes, xq).mul_add(V::splat(d * sc as f32 * xb.d), acc[r]);
                offset[r] -= dmin * m as f32 * xb.sum;
            }
        }
    }
}

/// Q6_K: 16 sub-blocks of 16, each `d sc_j (q - 32)`, q's low nibble in `ql`
/// and high bit pair in `qh` (see [`crate::quant::dequantize_q6_k`]). Weights
/// 32k..32k + 32 (quarter k % 4 of half k / 4) are sub-blocks 2k and 2k + 1:
/// one activation block, its two halves scaled apart in integers.
struct Q6K;
impl Blocks for Q6K {
    const WEIGHTS: usize = Format::Q6_K.block_weights();
    const BYTES: usize = Format::Q6_K.block_bytes();
    #[inline(always)]
    unsafe fn dot<V: Lanes, const R: usize>(w: [*const u8; R], q: *const i8, x: &[Int8Block], acc: &mut [V; R], offset: &mut [f32; R]) {
        let d: [f32; R] = std::array::from_fn(|r| f16_field::<V>(w[r], 208));
        for (k, xb) in x.iter().take(8).enumerate() {
            let (h, quarter) = (k / 4, k % 4);
            let (ql, low_shift) = (64 * h + 32 * (quarter % 2), 4 * (quarter as u32 / 2));
            let (qh, high_shift) = (128 + 32 * h, 2 * quarter as u32);
            let xq = V::load_bytes(q.add(32 * k) as *const u8);
            for r in 0..R {
                let low = V::load_byte_fields(w[r].add(ql), low_shift, 0xf);
                let codes = V::or_shifted(low, V::load_byte_fields(w[r].add(qh), high_shift, 3), 4);
                let (s0, s1) = (*w[r].add(192 + 2 * k) as i8 as i32, *w[r].add(193 + 2 * k) as i8 as i32);
                let dd = d[r] * xb.d;
                acc[r] = V::dot_bytes_halves(codes, xq, s0, s1).mul_add(V::splat(dd), acc[r]);
                // The -32 of every code: -32 sc Σ q_x per half, in integers.
                offset[r] += dd * (-32 * (s0 * xb.half_sums[0] + s1 * xb.half_sums[1])) as f32;
            }
        }
    }
}

/// Each block format's int8 kernel, on every instruction set this machine
/// has, against f64 sums: of the reference dequantizer's weights times the
/// activations quantized as described (to f32's rounding), and times the
/// activations themselves (within the error quantizing them explains).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::int8_acts::Int8Rows;
    use crate::kernels::randn;
    use crate::kernels::simd::{run_on, Isa};
    use crate::quant::reference::{dequantize_f64, known_blocks, offsets_f64, quantize};

    fn rows_on(isa: Isa, format: Format, w: &[u8], cols: usize, x: Int8Row, rows: usize) -> Vec<f32> {
        let mut out = vec![f32::NAN; rows];
        run_on(isa, Int8Dot { format, w, cols, x, out: &mut out });
        out
    }

    /// x as llama.cpp quantizes activations, from the description: per block
    /// of 32, d = max |x| / 127 (f32) and q = round(x * (1 / d)), halves to
    /// even. Returns each value d q and its block's step d, in f64.
    fn quantized_reference(x: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let (mut values, mut steps) = (Vec::new(), Vec::new());
        for block in x.chunks(32) {
            let d = block.iter().map(|v| v.abs()).fold(0.0f32, f32::max) / 127.0;
            for &v in block {
                let q = if d == 0.0 { 0.0 } else { (v * (1.0 / d)).round_ties_even() };
                values.push(d as f64 * q as f64);
                steps.push(d as f64);
            }
        }
        (values, steps)
    }

    /// Rows 1..=9 (each remainder of four, and more than one block of four),
    /// rows of 1, 2, 3 and 5 blocks, each block format, and the hand-built
    /// blocks of `crate::quant` (Q8_0's code -128 among them).
    ///
    /// Against the quantized activations x~ the kernel computes the same sum,
    /// only in f32: a rounding per block for the scale product, the product
    /// and each of the two accumulations, and a few for the lanes' sum, each
    /// at most 2^-24 of Σ (|w| + 2 |offset|) |x~| (offsets counted twice as
    /// in the exact path's bound): (4 blocks + 16) 2^-24 of that, about 1e-6.
    /// Against x itself, each x_j is off by at most d_j / 2: the error is
    /// within Σ |w_j| d_j / 2 more.
    #[test]
    fn int8_rows_dot_matches_f64_of_quantized_and_of_exact_activations() {
        let mut cases: Vec<(Format, Vec<u8>, usize, usize)> = Vec::new();
        for format in Format::ALL.into_iter().filter(|f| f.block_weights() >= BLOCK) {
            for (k, blocks) in [1, 2, 3, 5].into_iter().enumerate() {
                let cols = blocks * format.block_weights();
                cases.push((format, quantize(format, &randn(9 * cols, 10 + k as u64)), cols, 9));
            }
        }
        for (format, bytes) in known_blocks().into_iter().filter(|(f, _)| f.block_weights() >= BLOCK) {
            cases.push((format, bytes.clone(), bytes.len() / format.block_bytes() * format.block_weights(), 1));
        }
        let mut xq = Int8Rows::default();
        for (c, (format, w, cols, rows)) in cases.into_iter().enumerate() {
            let (weights, offsets) = (dequantize_f64(format, &w), offsets_f64(format, &w));
            let x: Vec<f32> = randn(cols, 20 + c as u64).iter().map(|v| 3.0 * v).collect();
            xq.quantize(&x, cols);
            let (xr, steps) = quantized_reference(&x);
            for isa in Isa::all_available() {
                for n in 1..=rows {
                    let got = rows_on(isa, format, &w, cols, xq.row(0), n);
                    for (r, got) in got.iter().enumerate() {
                        let (w, o) = (&weights[r * cols..(r + 1) * cols], &offsets[r * cols..(r + 1) * cols]);
                        let sum = |f: &dyn Fn(usize) -> f64| (0..cols).map(f).sum::<f64>();
                        let (on_xr, on_x) = (sum(&|j| w[j] * xr[j]), sum(&|j| w[j] * x[j] as f64));
                        let terms = sum(&|j| (w[j].abs() + 2.0 * o[j]) * xr[j].abs());
                        let rounding = (4.0 * (cols / BLOCK) as f64 + 16.0) * f64::powi(2.0, -24) * terms;
                        let quantizing = sum(&|j| w[j].abs() * steps[j] / 2.0);
                        let name = format!("{isa:?} {} cols={cols} rows={n} r={r}", format.name());
                        let got = *got as f64;
                        assert!((got - on_xr).abs() <= rounding, "{name}: {got} vs {on_xr} (tol {rounding:e})");
                        assert!((got - on_x).abs() <= rounding + quantizing, "{name}: {got} vs exact {on_x} (tol {:e})", rounding + quantizing);
                    }
                }
            }
        }
    }

    /// The dispatched entry point is the best instruction set's kernel, on rows
    /// that begin at an odd address; the formats without blocks are refused.
    #[test]
    fn entry_point_dispatches_and_reads_unaligned_rows() {
        let mut xq = Int8Rows::default();
        for format in Format::ALL {
            let cols = 2 * format.block_weights().max(BLOCK);
            let w = quantize(format, &randn(5 * cols, 3));
            let shifted = [vec![0u8], w.clone()].concat();
            xq.quantize(&randn(cols, 4), cols);
            let mut out = vec![0.0; 5];
            let call = || rows_dot_int8(format, &shifted[1..], cols, xq.row(0), &mut out.clone());
            if format.block_weights() < BLOCK {
                assert!(std::panic::catch_unwind(call).is_err(), "{}", format.name());
                continue;
            }
            rows_dot_int8(format, &shifted[1..], cols, xq.row(0), &mut out);
            assert_eq!(out, rows_on(Isa::best(), format, &w, cols, xq.row(0), 5), "{}", format.name());
        }
    }
}
