//! Activations quantized to int8, the input of the fast quantized row dots
//! ([`super::quant_dot_int8`]), as llama.cpp quantizes them: blocks of 32
//! values, each block `x_j ≈ d q_j` with `d = max |x_j| / 127` and q_j int8
//! (ggml's Q8_0, with the scale kept in f32).
//!
//! Besides its scale, each block keeps the sums its weights' offsets need:
//! `d Σ q_j` (Q4_0, Q4_1, Q5_0 and Q4_K add an offset times the block's
//! sum), and Σ q_j over each half of 16 (Q6_K's offset, per sub-block of 16).
//! The K-quants' super-blocks of 256 read 8 of these blocks rather than one
//! block of 256 with one scale (ggml's Q8_K): a scale per 32 values quantizes
//! more finely, and one layout serves every format.

/// Values per activation block.
pub const BLOCK: usize = 32;

/// One block's scale and sums.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Int8Block {
    /// The scale: value j of the block is about `d q_j`.
    pub d: f32,
    /// `d Σ q_j`: the block's sum, as quantized.
    pub sum: f32,
    /// Σ q_j over values 0..16 and over 16..32.
    pub half_sums: [i32; 2],
}

/// A batch of activation rows, each quantized in blocks of [`BLOCK`]; the
/// buffers are kept and reused from one call to the next.
#[derive(Clone, Debug, Default)]
pub struct Int8Rows {
    cols: usize,
    q: Vec<i8>,
    blocks: Vec<Int8Block>,
}

/// One row of [`Int8Rows`]: `cols` codes and `cols / 32` blocks.
#[derive(Clone, Copy, Debug)]
pub struct Int8Row<'a> {
    pub q: &'a [i8],
    pub blocks: &'a [Int8Block],
}

impl Int8Rows {
    /// Quantize `x`, rows of `cols` values (a multiple of [`BLOCK`]).
    pub fn quantize(&mut self, x: &[f32], cols: usize) {
        assert!(cols.is_multiple_of(BLOCK) && x.len().is_multiple_of(cols.max(1)), "int8 activations: rows of {cols} are not whole blocks");
        self.cols = cols;
        self.q.resize(x.len(), 0);
        self.blocks.resize(x.len() / BLOCK, Int8Block::default());
        for ((x, q), b) in x.chunks_exact(BLOCK).zip(self.q.chunks_exact_mut(BLOCK)).zip(&mut self.blocks) {
            *b = quantize_block(x, q);
        }
    }

    /// Row `t` of the batch.
    pub fn row(&self, t: usize) -> Int8Row<'_> {
        let n = self.cols / BLOCK;
        Int8Row { q: &self.q[t * self.cols..(t + 1) * self.cols], blocks: &self.blocks[t * n..(t + 1) * n] }
    }
}

/// One block: q_j = round(x_j / d), as ggml's AVX2 `quantize_row_q8_0`
/// computes it (times the reciprocal of d, halves rounded to even), so
/// |x_j - d q_j| <= d / 2 and the largest |q_j| is 127. An all-zero block has
/// d = 0, q = 0.
fn quantize_block(x: &[f32], q: &mut [i8]) -> Int8Block {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer, halves
    // to even (|x / d| <= 127 leaves no bits below the units): the same as
    // `round_ties_even`, which without SSE4.1 is a libm call per value, where
    // this loop compiles to vector instructions.
    const ROUND: f32 = 12582912.0;
    for (q, x) in q.iter_mut().zip(x) {
        // The clamp only guards against the reciprocal's rounding: never -128.
        *q = ((x * inv + ROUND) - ROUND).clamp(-127.0, 127.0) as i8;
    }
    let half = |h: usize| q[16 * h..16 * h + 16].iter().map(|&q| q as i32).sum::<i32>();
    let half_sums = [half(0), half(1)];
    Int8Block { d, sum: d * (half_sums[0] + half_sums[1]) as f32, half_sums }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::randn;

    /// Each value within half a step of its code, the largest code 127, the
    /// sums those of the codes; a zero block stays zero; rows apart.
    #[test]
    fn blocks_round_to_the_nearest_step_and_keep_their_sums() {
        let mut x: Vec<f32> = randn(3 * 64, 1).iter().map(|v| 5.0 * v).collect();
        x[64..96].fill(0.0);
        let mut rows = Int8Rows::default();
        rows.quantize(&x, 64);
        for t in 0..3 {
            let row = rows.row(t);
            assert_eq!((row.q.len(), row.blocks.len()), (64, 2));
            for (k, b) in row.blocks.iter().enumerate() {
                let (x, q) = (&x[t * 64 + 32 * k..][..32], &row.q[32 * k..][..32]);
                if t == 1 && k == 0 {
                    assert_eq!((b.d, b.sum, b.half_sums, q.iter().all(|&q| q == 0)), (0.0, 0.0, [0, 0], true));
                    continue;
                }
                assert_eq!(q.iter().map(|q| q.unsigned_abs()).max(), Some(127));
                for (x, q) in x.iter().zip(q) {
                    assert!((x - b.d * *q as f32).abs() <= b.d * 0.5001, "{x} vs {} x {q}", b.d);
                }
                let sums = [q[..16].iter().map(|&q| q as i32).sum::<i32>(), q[16..].iter().map(|&q| q as i32).sum()];
                assert_eq!((b.half_sums, b.sum), (sums, b.d * (sums[0] + sums[1]) as f32));
            }
        }
        // Halves round to even (d = 1 here), and no code is -128.
        let mut ties = [0.0f32; 32];
        ties[..6].copy_from_slice(&[127.0, 2.5, 3.5, -2.5, 0.5, -127.0]);
        rows.quantize(&ties, 32);
        assert_eq!((rows.row(0).blocks[0].d, &rows.row(0).q[..6]), (1.0, &[127, 2, 4, -2, 0, -127][..]));
    }
}
