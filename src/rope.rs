//! Rotary position embedding (RoPE): the one home of its angles, used by the CPU
//! engine, the GPU engine's table and the training model, and the reordering of q/k
//! rows between RoPE layouts that file formats need.

use crate::tensor::Matrix;

/// Rotary position embedding in Hugging Face's rotate_half layout: within each
/// head, element i pairs with element i + hd/2 and rotates by pos * theta^(-2i/hd).
pub struct Rope {
    inv_freq: Vec<f32>, // (hd/2)
}

impl Rope {
    pub fn new(head_dim: usize, theta: f32) -> Rope {
        let inv_freq = (0..head_dim / 2).map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32)).collect();
        Rope { inv_freq }
    }

    /// cos and sin of every pair's angle at `pos`: (hd/2) each.
    pub fn angles(&self, pos: usize) -> (Vec<f32>, Vec<f32>) {
        self.inv_freq.iter().map(|f| ((pos as f32 * f).cos(), (pos as f32 * f).sin())).unzip()
    }
}

/// cos and sin of every position an engine can reach, computed once per model
/// and KV capacity instead of once per token.
pub struct RopeTable {
    half: usize,
    cos: Vec<f32>, // (positions, hd/2)
    sin: Vec<f32>, // (positions, hd/2)
}

impl RopeTable {
    pub fn new(head_dim: usize, theta: f32, positions: usize) -> RopeTable {
        let rope = Rope::new(head_dim, theta);
        let (cos, sin) = (0..positions).map(|pos| rope.angles(pos)).fold((Vec::new(), Vec::new()), |(mut c, mut s), (pc, ps)| {
            c.extend(pc);
            s.extend(ps);
            (c, s)
        });
        RopeTable { half: head_dim / 2, cos, sin }
    }

    /// Rotate every head (hd values each) of `x` in place by the angles of `pos`.
    pub fn apply(&self, x: &mut [f32], pos: usize) {
        let half = self.half;
        let (cos, sin) = (&self.cos[pos * half..(pos + 1) * half], &self.sin[pos * half..(pos + 1) * half]);
        for head in x.chunks_exact_mut(2 * half) {
            let (a, b) = head.split_at_mut(half);
            for i in 0..half {
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * cos[i] - x2 * sin[i];
                b[i] = x2 * cos[i] + x1 * sin[i];
            }
        }
    }
}

/// The rows of a q or k projection (`w`: heads of `head_dim` rows each) reordered from
/// the interleaved-pair RoPE layout of llama2.c and llama.cpp, which rotates
/// (x[2i], x[2i+1]) by frequency i, to the engine's rotate_half layout, which rotates
/// (x[i], x[i + hd/2]). New rows i and i + hd/2 of a head are old rows 2i and 2i+1: the
/// same pair, rotated by the same frequency. q and k are reordered alike, so every
/// score q.k, and so the model's output, is unchanged. This is the `permute` of Hugging
/// Face's convert_llama_weights_to_hf.py. Rows are moved whole, so a quantized matrix
/// stays exactly as it was, row for row.
pub fn interleaved_to_rotate_half(w: &Matrix, head_dim: usize) -> Matrix {
    let half = head_dim / 2;
    w.select_rows((0..w.rows).map(|r| {
        let (head, j) = (r / head_dim, r % head_dim);
        head * head_dim + if j < half { 2 * j } else { 2 * (j - half) + 1 }
    }))
}

/// The inverse of [`interleaved_to_rotate_half`]: interleaved row 2i + s of a head is
/// rotate_half row s * hd/2 + i (as llama.cpp's Hugging Face converter writes them).
pub fn rotate_half_to_interleaved(w: &Matrix, head_dim: usize) -> Matrix {
    let half = head_dim / 2;
    w.select_rows((0..w.rows).map(|r| {
        let (head, j) = (r / head_dim, r % head_dim);
        head * head_dim + (j % 2) * half + j / 2
    }))
}
