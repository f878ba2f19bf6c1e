//! Training data: the text as one token stream, cut into fixed-length windows.
//!
//! The text files are read from where they are (never copied). Stories are
//! separated by blank lines, as are paragraphs inside a story, so there is no
//! reliable document boundary: the file is encoded as one stream (newlines are
//! tokens) and every window starts with BOS, like a prompt in the engine, which
//! prepends BOS. No EOS is inserted.

use candle_core::{Device, Result, Tensor};

use crate::rng::Rng;

/// A token stream and the window shape cut from it.
pub struct TokenStream {
    pub tokens: Vec<u32>,
    pub bos: u32,
    /// Positions per window, BOS included.
    pub seq_len: usize,
}

/// One batch: inputs and next-token targets, both (B, T).
pub struct Batch {
    pub ids: Tensor,
    pub targets: Tensor,
}

impl TokenStream {
    /// The window at `offset`: input [BOS, t0 .. t(T-2)], targets [t0 .. t(T-1)].
    fn window(&self, offset: usize, ids: &mut Vec<u32>, targets: &mut Vec<u32>) {
        let text = &self.tokens[offset..offset + self.seq_len];
        ids.push(self.bos);
        ids.extend_from_slice(&text[..self.seq_len - 1]);
        targets.extend_from_slice(text);
    }

    fn batch(&self, offsets: &[usize]) -> Result<Batch> {
        let (mut ids, mut targets) = (Vec::new(), Vec::new());
        for &o in offsets {
            self.window(o, &mut ids, &mut targets);
        }
        let shape = (offsets.len(), self.seq_len);
        Ok(Batch {
            ids: Tensor::from_vec(ids, shape, &Device::Cpu)?,
            targets: Tensor::from_vec(targets, shape, &Device::Cpu)?,
        })
    }

    /// The training batch of `step`: `batch_size` windows at random offsets drawn
    /// from (seed, step) alone, so a resumed run sees exactly the same batches.
    pub fn train_batch(&self, seed: u64, step: usize, batch_size: usize) -> Result<Batch> {
        let mut rng = Rng::new(seed ^ (step as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let span = (self.tokens.len() - self.seq_len) as u64;
        let offsets: Vec<usize> = (0..batch_size).map(|_| (rng.next_u64() % span) as usize).collect();
        self.batch(&offsets)
    }

    /// Up to `max_windows` consecutive, non-overlapping windows from the start
    /// (for a fixed validation loss), in batches of `batch_size`.
    pub fn eval_batches(&self, max_windows: usize, batch_size: usize) -> Result<Vec<Batch>> {
        let n = (self.tokens.len() / self.seq_len).min(max_windows);
        let offsets: Vec<usize> = (0..n).map(|i| i * self.seq_len).collect();
        offsets.chunks(batch_size).map(|c| self.batch(c)).collect()
    }
}
