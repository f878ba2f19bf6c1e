//! The seam between a session and an engine: the [`Backend`] trait, which the CPU
//! engine (cpu/) and the GPU engine (gpu/) implement, and [`Engine`](engine::Engine)
//! (in `engine.rs`), either of the two: what a session holds, opened for every front
//! end by [`Engine::open`](engine::Engine::open), the one place that chooses an engine.
//!
//! Dependencies run one way: engines implement this trait; generation and the
//! session drive it; front ends (CLI, bench, the page) open one.

pub mod engine;

use crate::error::{GqaError, Result};
use crate::matmul::QuantActivations;
use crate::model::Model;
use crate::sampler::SamplerConfig;
use crate::tensor::KvDType;

/// Which logits a forward pass returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last token's: (vocab).
    Last,
    /// Every new token's: (T x vocab), for evaluation.
    All,
}

/// Which engine a front end asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Cpu,
    Gpu,
}

impl std::str::FromStr for BackendKind {
    type Err = GqaError;
    fn from_str(s: &str) -> Result<BackendKind> {
        match s {
            "cpu" => Ok(BackendKind::Cpu),
            "gpu" => Ok(BackendKind::Gpu),
            _ => Err(GqaError::Invalid(format!("unknown backend '{s}': use cpu or gpu"))),
        }
    }
}

/// What an engine is opened with besides the model and its KV capacity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineOptions {
    /// Precision of the KV cache: f32, f16 (half the bytes per position) or int8; `None`
    /// takes the engine's default, f32 on the CPU and f16 on the GPU.
    pub kv_dtype: Option<KvDType>,
    /// On block-quantized weights (a GGUF file's Q4_1 ...), the CPU engine's activations:
    /// f32, exact (the default), or int8 per block with integer dot products, as llama.cpp.
    pub quant_activations: QuantActivations,
}

impl EngineOptions {
    /// The KV precision asked for, else the CPU engine's default (f32: its f16 cache
    /// costs a conversion per element read, as fast as f32 only where bytes dominate).
    pub fn cpu_kv_dtype(&self) -> KvDType {
        self.kv_dtype.unwrap_or(KvDType::F32)
    }

    /// The KV precision asked for, else the GPU engine's default (f16: half the bytes,
    /// converted for free by `unpack2x16float`).
    pub fn gpu_kv_dtype(&self) -> KvDType {
        self.kv_dtype.unwrap_or(KvDType::F16)
    }
}

/// The attention probe's record for one layer: the softmax weights of each query head
/// over the positions its token attended to.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionWeights {
    pub n_heads: usize,
    /// Positions 0..n_ctx (the token's own included).
    pub n_ctx: usize,
    /// (n_heads, n_ctx) row-major; each row sums to 1.
    pub weights: Vec<f32>,
}

/// An engine that runs one model with a KV cache.
pub trait Backend {
    fn name(&self) -> String;
    fn model(&self) -> &Model;
    /// Replace the model (e.g. another G); the KV cache is reallocated and cleared.
    fn set_model(&mut self, model: Model) -> Result<()>;
    /// Run new tokens at the current position, appending to the KV cache.
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>>;
    /// Run new tokens and return the greedy next token (argmax of the last logits).
    /// The GPU engine computes it there and reads back only the token.
    fn forward_argmax(&mut self, tokens: &[u32]) -> Result<u32> {
        Ok(crate::sampler::argmax(&self.forward(tokens, Logits::Last)?))
    }
    /// Run new tokens and sample the next token from the last logits with `sampler`
    /// and the uniform draw `u` (the sampler's seeded stream). The GPU engine samples
    /// there and reads back only the token.
    fn forward_sample(&mut self, tokens: &[u32], sampler: &SamplerConfig, u: f32) -> Result<u32> {
        Ok(crate::sampler::sample_with(sampler, &self.forward(tokens, Logits::Last)?, u))
    }
    /// Positions in the KV cache.
    fn pos(&self) -> usize;
    /// Positions the KV cache can hold.
    fn capacity(&self) -> usize;
    fn reset(&mut self);
    /// Fill the first `len` positions with random keys/values (benchmarks).
    fn fill_synthetic(&mut self, len: usize, seed: u64) -> Result<()>;
    /// Bytes the KV cache has allocated.
    fn kv_bytes_allocated(&self) -> usize;
    /// Precision of the KV cache.
    fn kv_dtype(&self) -> KvDType;
    /// Record, from now on, the attention weights of each forward pass's last token
    /// (off by default, and then it costs nothing).
    fn set_attention_probe(&mut self, on: bool) -> Result<()>;
    /// The last token's attention weights in `layer`, recorded by the probe: None when
    /// the probe is off or no forward pass ran since it was turned on.
    fn attention(&mut self, layer: usize) -> Result<Option<AttentionWeights>>;
}
