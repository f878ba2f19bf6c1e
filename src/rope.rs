//! Rotary position embedding (RoPE): the one home of its angles, used by the CPU
//! engine, the GPU engine's table and the training model.

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

    /// Rotate every head of `x` in place by the angles of one position.
    pub fn apply(x: &mut [f32], (cos, sin): &(Vec<f32>, Vec<f32>)) {
        let half = cos.len();
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
