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
