//! Choosing the next token from logits: greedy, temperature, top-k, top-p.
//!
//! The random draws come from the crate's own seeded [`Rng`], so the same seed
//! and settings give the same tokens on every run, platform and backend.

use crate::error::{GqaError, Result};
use crate::rng::Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 means no limit.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches top_p; 1 means no limit.
    pub top_p: f32,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 }
    }
}

pub struct Sampler {
    config: SamplerConfig,
    rng: Rng,
}

impl SamplerConfig {
    /// The settings against their ranges.
    pub fn check(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(GqaError::Invalid(format!("temperature must be 0 or more, got {}", self.temperature)));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(GqaError::Invalid(format!("top_p must be in (0, 1], got {}", self.top_p)));
        }
        Ok(())
    }

    /// Greedy decoding (temperature 0): the argmax, no random draw.
    pub fn greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

impl Sampler {
    pub fn new(config: SamplerConfig) -> Result<Sampler> {
        config.check()?;
        let rng = Rng::new(config.seed);
        Ok(Sampler { config, rng })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// The next token id.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        if self.config.greedy() {
            return argmax(logits);
        }
        let u = self.next_uniform();
        sample_with(&self.config, logits, u)
    }

    /// The one uniform draw a sampled token consumes: an engine that samples on its
    /// own (the GPU) takes it from here, so the seeded stream stays the CPU's.
    pub fn next_uniform(&mut self) -> f32 {
        self.rng.uniform()
    }
}

/// The sampling rule, given the uniform draw `u` in [0, 1) (temperature > 0). The GPU
/// (shaders/sample.wgsl) follows it step by step.
pub fn sample_with(config: &SamplerConfig, logits: &[f32], u: f32) -> u32 {
    // Probabilities at this temperature, most likely first (ties: lower id first).
    let inv_t = 1.0 / config.temperature;
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut probs: Vec<(u32, f32)> =
        logits.iter().enumerate().map(|(i, &l)| (i as u32, ((l - max) * inv_t).exp())).collect();
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    // Only the candidates are sorted, never more of the vocabulary than needed:
    // with top-k the k most likely (a selection, then a sort of k); with top-p alone
    // those at or above (1 - top_p) / (n - 1) of the mass, as llama2.c does (a token
    // below that cannot be in the nucleus: all the tokens after it hold less than
    // 1 - top_p together), falling back to all when they do not reach top_p.
    let n = probs.len();
    let all: f32 = probs.iter().map(|p| p.1).sum();
    if config.top_k > 0 && config.top_k < n {
        probs.select_nth_unstable_by(config.top_k - 1, order);
        probs.truncate(config.top_k);
        probs.sort_by(order);
    } else if config.top_p < 1.0 && n > 1 {
        let cutoff = (1.0 - config.top_p) / (n - 1) as f32 * all;
        let mut candidates: Vec<(u32, f32)> = probs.iter().copied().filter(|p| p.1 >= cutoff).collect();
        let mass: f32 = candidates.iter().map(|p| p.1).sum();
        if mass >= config.top_p * all {
            candidates.sort_by(order);
            probs = candidates;
        } else {
            probs.sort_by(order);
        }
    } else {
        probs.sort_by(order);
    }
    // Top-k first, then top-p within what top-k kept (as Hugging Face does).
    let mut keep = probs.len();
    if config.top_k > 0 {
        keep = keep.min(config.top_k);
    }
    // The mass top-p is relative to: what top-k kept, else the whole vocabulary.
    let total: f32 = if config.top_k > 0 { probs[..keep].iter().map(|p| p.1).sum() } else { all };
    if config.top_p < 1.0 {
        let mut cumulative = 0.0;
        for (i, p) in probs[..keep].iter().enumerate() {
            cumulative += p.1 / total;
            if cumulative >= config.top_p {
                keep = i + 1;
                break;
            }
        }
    }
    let kept = &probs[..keep];
    let mass: f32 = kept.iter().map(|p| p.1).sum();
    let mut r = u * mass;
    for &(id, p) in kept {
        r -= p;
        if r < 0.0 {
            return id;
        }
    }
    kept[keep - 1].0
}

/// Index of the largest value (the first one on ties).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}
