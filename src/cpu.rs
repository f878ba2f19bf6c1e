//! The CPU engine: the whole forward pass, top to bottom, for a batch of new
//! tokens (a prompt prefill, or one token while decoding).
//!
//! Shapes: T new tokens, dim = hidden_size, H query heads, G key/value heads,
//! hd = head_dim, group size H/G, ffn = intermediate_size.

use crate::config::Config;
use crate::error::{GqaError, Result};
use crate::kernels::{attention_scores, attention_values, axpy, exp_shifted_sum, matmul, par_map};
use crate::kv_cache::KvCache;
use crate::model::Model;
use crate::backend::{Backend, Logits};
use crate::rope::Rope;

pub struct CpuEngine {
    model: Model,
    cache: KvCache,
    /// Positions already in the KV cache (the context used).
    pos: usize,
}

impl CpuEngine {
    /// An engine whose KV cache holds `capacity` positions (G heads each).
    pub fn new(model: Model, capacity: usize) -> Result<CpuEngine> {
        let cache = KvCache::new(&model.config, capacity)?;
        Ok(CpuEngine { model, cache, pos: 0 })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn config(&self) -> &Config {
        &self.model.config
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// Forget the context (the cache is overwritten from position 0).
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    /// Swap in a model (e.g. after converting to another G); the KV cache is
    /// reallocated for its G heads and the context starts over.
    pub fn set_model(&mut self, model: Model) -> Result<()> {
        self.cache = KvCache::new(&model.config, self.cache.capacity())?;
        self.model = model;
        self.pos = 0;
        Ok(())
    }

    /// Pretend `len` positions were already decoded, with random keys/values
    /// (benchmarks decode at long context without a long prefill).
    pub fn fill_synthetic(&mut self, len: usize, seed: u64) -> Result<()> {
        if len >= self.cache.capacity() {
            return Err(GqaError::ContextFull { pos: len, context: self.cache.capacity() });
        }
        self.cache.fill_synthetic(len, seed);
        self.pos = len;
        Ok(())
    }

    /// Run `tokens` through the model at positions pos..pos+T, appending their
    /// keys and values to the cache. Returns logits (see [`Logits`]).
    pub fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>> {
        let c = &self.model.config;
        let (t_new, dim, vocab) = (tokens.len(), c.hidden_size, c.vocab_size);
        if t_new == 0 {
            return Err(GqaError::Invalid("forward needs at least one token".into()));
        }
        if self.pos + t_new > self.cache.capacity() {
            return Err(GqaError::ContextFull { pos: self.pos + t_new, context: self.cache.capacity() });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(GqaError::BadToken { token: bad, vocab });
        }
        let (n_heads, n_kv_heads, hd) = (c.n_heads(), c.n_kv_heads(), c.head_dim());
        let (q_dim, kv_dim, ffn) = (n_heads * hd, n_kv_heads * hd, c.intermediate_size);
        let eps = c.rms_norm_eps;
        // RoPE angles of each new position, computed once for all layers.
        let rope = Rope::new(hd, c.rope_theta);
        let angles: Vec<_> = (0..t_new).map(|t| rope.angles(self.pos + t)).collect();

        // x: (T, dim) the residual stream, starting from the token embeddings.
        let mut x = vec![0.0f32; t_new * dim];
        for (t, &tok) in tokens.iter().enumerate() {
            self.model.embed.row_into(tok as usize, &mut x[t * dim..(t + 1) * dim]);
        }
        let mut xb = vec![0.0f32; t_new * dim];
        let (mut q, mut k, mut v) = (vec![0.0; t_new * q_dim], vec![0.0; t_new * kv_dim], vec![0.0; t_new * kv_dim]);
        let mut att = vec![0.0f32; t_new * q_dim];
        let mut proj = vec![0.0f32; t_new * dim];
        let (mut gate, mut up) = (vec![0.0f32; t_new * ffn], vec![0.0f32; t_new * ffn]);

        for (layer, block) in self.model.blocks.iter().enumerate() {
            // ---- attention: x += wo(attention(rope(wq xb), rope(wk xb), wv xb)) ----
            rms_norm_rows(&x, &block.input_norm, eps, &mut xb);
            matmul(&block.attn.wq, &xb, t_new, &mut q); // (T, H*hd)
            matmul(&block.attn.wk, &xb, t_new, &mut k); // (T, G*hd)
            matmul(&block.attn.wv, &xb, t_new, &mut v); // (T, G*hd)
            for t in 0..t_new {
                let pos = self.pos + t;
                Rope::apply(&mut q[t * q_dim..(t + 1) * q_dim], &angles[t]);
                Rope::apply(&mut k[t * kv_dim..(t + 1) * kv_dim], &angles[t]);
                self.cache.store(layer, pos, &k[t * kv_dim..(t + 1) * kv_dim], &v[t * kv_dim..(t + 1) * kv_dim]);
            }
            for t in 0..t_new {
                // Causal: the token at pos attends to positions 0..=pos.
                let n_ctx = self.pos + t + 1;
                grouped_attention(c, &self.cache, layer, n_ctx, &q[t * q_dim..(t + 1) * q_dim], &mut att[t * q_dim..(t + 1) * q_dim]);
            }
            matmul(&block.attn.wo, &att, t_new, &mut proj); // (T, dim)
            add_into(&mut x, &proj);

            // ---- feed-forward: x += down(silu(gate xb) * up xb) ----
            rms_norm_rows(&x, &block.post_attention_norm, eps, &mut xb);
            matmul(&block.mlp.gate, &xb, t_new, &mut gate); // (T, ffn)
            matmul(&block.mlp.up, &xb, t_new, &mut up); // (T, ffn)
            for (g, u) in gate.iter_mut().zip(&up) {
                *g = silu(*g) * u;
            }
            matmul(&block.mlp.down, &gate, t_new, &mut proj); // (T, dim)
            add_into(&mut x, &proj);
        }
        self.pos += t_new;

        // ---- final norm and classifier ----
        let rows = match which {
            Logits::Last => &x[(t_new - 1) * dim..],
            Logits::All => &x[..],
        };
        let n_out = rows.len() / dim;
        let mut normed = vec![0.0f32; rows.len()];
        rms_norm_rows(rows, &self.model.norm, eps, &mut normed);
        let mut logits = vec![0.0f32; n_out * vocab];
        matmul(self.model.classifier(), &normed, n_out, &mut logits); // (n_out, vocab)
        Ok(logits)
    }
}

impl Backend for CpuEngine {
    fn name(&self) -> String {
        format!("cpu ({})", crate::kernels::simd_name())
    }
    fn model(&self) -> &Model {
        CpuEngine::model(self)
    }
    fn set_model(&mut self, model: Model) -> Result<()> {
        CpuEngine::set_model(self, model)
    }
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>> {
        CpuEngine::forward(self, tokens, which)
    }
    fn pos(&self) -> usize {
        CpuEngine::pos(self)
    }
    fn capacity(&self) -> usize {
        self.cache.capacity()
    }
    fn reset(&mut self) {
        CpuEngine::reset(self)
    }
    fn fill_synthetic(&mut self, len: usize, seed: u64) -> Result<()> {
        CpuEngine::fill_synthetic(self, len, seed)
    }
    fn kv_bytes_allocated(&self) -> usize {
        self.cache.bytes()
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

/// Positions one attention task covers; longer contexts are split into chunks
/// that run in parallel and are merged by their softmax maxima and sums.
const ATTENTION_CHUNK: usize = 256;

/// Attention of one token's H query heads over `n_ctx` cached positions.
///
/// Each task takes one KV head g and a chunk of positions, and computes all
/// H/G query heads of g's group together: every key and value row is read
/// from memory once per token, not H/G times. q and out are (H*hd).
fn grouped_attention(c: &Config, cache: &KvCache, layer: usize, n_ctx: usize, q: &[f32], out: &mut [f32]) {
    let (hd, n_kv_heads, group) = (c.head_dim(), c.n_kv_heads(), c.group_size());
    let scale = 1.0 / (hd as f32).sqrt();
    let n_chunks = n_ctx.div_ceil(ATTENTION_CHUNK);

    // partials[g * n_chunks + j], over chunk j of KV head g: for each query head
    // of the group its (max score, sum of exp), and the unnormalized outputs (H/G, hd).
    let partials = par_map(n_kv_heads * n_chunks, |task| {
        let (g, chunk) = (task / n_chunks, task % n_chunks);
        let start = chunk * ATTENTION_CHUNK;
        let end = (start + ATTENTION_CHUNK).min(n_ctx);
        let (keys, values) = cache.head(layer, g, end);
        let (keys, values) = (&keys[start * hd..], &values[start * hd..]); // (len, hd)
        let group_q = &q[g * group * hd..(g + 1) * group * hd]; // (H/G, hd)

        // scores (H/G, len): one pass over the keys for all heads of the group.
        let len = end - start;
        let mut scores = vec![0.0f32; group * len];
        attention_scores(keys, group_q, hd, scale, &mut scores);
        // Softmax numerators, with each head's max and sum kept for the merge.
        let stats: Vec<(f32, f32)> = scores
            .chunks_exact_mut(len)
            .map(|row| {
                let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                (m, exp_shifted_sum(row, m))
            })
            .collect();
        // acc (H/G, hd): one pass over the values for all heads of the group.
        let mut acc = vec![0.0f32; group * hd];
        attention_values(values, &scores, hd, &mut acc);
        (stats, acc)
    });

    // Merge the chunks of each group: softmax over all positions.
    for g in 0..n_kv_heads {
        for r in 0..group {
            let parts = &partials[g * n_chunks..(g + 1) * n_chunks];
            let m = parts.iter().fold(f32::NEG_INFINITY, |a, p| a.max(p.0[r].0));
            let l: f32 = parts.iter().map(|p| p.0[r].1 * (p.0[r].0 - m).exp()).sum();
            let head = g * group + r;
            let o = &mut out[head * hd..(head + 1) * hd];
            o.fill(0.0);
            for (stats, acc) in parts {
                axpy((stats[r].0 - m).exp() / l, &acc[r * hd..(r + 1) * hd], o);
            }
        }
    }
}

/// RMSNorm of each row of x (rows of w.len()): x / sqrt(mean(x^2) + eps) * w.
pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, xv), wv) in or.iter_mut().zip(xr).zip(w) {
            *o = wv * (xv * inv);
        }
    }
}

fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}
