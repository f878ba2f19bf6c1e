//! The rules of one generation, engine-free: the prompt, the sampler, the stop
//! rules (length, end of sequence, full context), the timers and the [`Stats`].
//! Whoever owns an engine asks [`Generation::action`] what to do next: the session
//! with blocking backends (session.rs), the GPU engine with async ones
//! (gpu/generate.rs).

use serde::Serialize;
use web_time::Instant;

use crate::config::{kv_cache_bytes, Config};
use crate::error::{GqaError, Result};
use crate::backend::Backend;
use crate::sampler::{Sampler, SamplerConfig};

#[derive(Clone, Debug, PartialEq)]
pub struct GenerateParams {
    /// Tokens to generate at most.
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
}

/// What the last generation did and cost; plain data for the CLI's `--json` and the page.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub backend: String,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_ms: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    pub context_used: usize,
    pub context_max: usize,
    /// KV cache bytes at the context used, for this G and for MHA (G = H), in
    /// the cache's precision (`kv_dtype`).
    pub kv_bytes: usize,
    pub kv_bytes_mha: usize,
    pub kv_bytes_allocated: usize,
    /// "f32" or "f16".
    pub kv_dtype: String,
    pub weight_bytes: usize,
    /// "length", "eos", "context" or "stopped".
    pub stop_reason: String,
}

/// A generation in progress: the prompt, the sampler, the stop rules and the
/// timers, but no engine. Whoever owns the engine asks [`Generation::action`]
/// what to do next and runs the forward passes it asks for, so the session
/// (blocking backends) and the GPU engine (async, in the browser) follow the
/// same rules.
pub struct Generation {
    prompt: Vec<u32>,
    sampler: Sampler,
    greedy: bool,
    stop_ids: Vec<u32>,
    max_tokens: usize,
    started: Instant,
    /// Seconds the prefill took, once it ran.
    prefill_s: Option<f64>,
    decode_start: Instant,
    generated: usize,
    /// A token sampled but not yet returned.
    pending: Option<u32>,
    /// The last token returned: the input of the next forward pass.
    last: [u32; 1],
}

/// What a generation needs next.
pub enum Action<'a> {
    /// Run these tokens through the model, then give the sampled token to
    /// [`Generation::sampled`] ([`Generation::choose`] samples from logits).
    Forward(&'a [u32]),
    /// The next generated token.
    Token(u32),
    /// The generation has ended: "length", "eos" or "context".
    End(&'static str),
}

impl Generation {
    /// Check the prompt (BOS included by the caller) against the KV capacity and
    /// the sampler settings against their ranges.
    pub fn new(config: &Config, params: &GenerateParams, prompt: &[u32], capacity: usize) -> Result<Generation> {
        if prompt.is_empty() {
            return Err(GqaError::Invalid("the prompt needs at least one token (BOS)".into()));
        }
        if prompt.len() > capacity {
            return Err(GqaError::PromptTooLong { prompt: prompt.len(), context: capacity });
        }
        Ok(Generation {
            prompt: prompt.to_vec(),
            sampler: Sampler::new(params.sampler.clone())?,
            greedy: params.sampler.temperature == 0.0,
            stop_ids: std::iter::once(config.bos_token_id).chain(config.eos_ids()).collect(),
            max_tokens: params.max_tokens,
            started: Instant::now(),
            prefill_s: None,
            decode_start: Instant::now(),
            generated: 0,
            pending: None,
            last: [0],
        })
    }

    /// The prompt's token ids (BOS included).
    pub fn prompt(&self) -> &[u32] {
        &self.prompt
    }

    /// Greedy decoding needs only the argmax (the GPU reads back one token).
    pub fn greedy(&self) -> bool {
        self.greedy
    }

    /// Run the forward pass this generation asked for on `backend` and return the
    /// chosen token: the argmax when greedy, else a draw from the sampler's seeded
    /// stream that the backend samples with (the GPU engine on the device).
    pub fn forward_next(&mut self, backend: &mut dyn Backend, tokens: &[u32]) -> Result<u32> {
        if self.greedy {
            return backend.forward_argmax(tokens);
        }
        let u = self.sampler.next_uniform();
        backend.forward_sample(tokens, self.sampler.config(), u)
    }

    /// The sampler's settings, and the uniform draw the next sampled token consumes
    /// (for engines that sample without blocking: the GPU engine in the browser).
    pub fn next_draw(&mut self) -> (SamplerConfig, f32) {
        (self.sampler.config().clone(), self.sampler.next_uniform())
    }

    /// The stop rules, in order: the prompt first; enough tokens; the end of
    /// sequence; a full context (checked before running the last token).
    /// `pos` and `capacity` are the engine's KV positions used and available.
    pub fn action(&mut self, pos: usize, capacity: usize) -> Action<'_> {
        if self.prefill_s.is_none() {
            return Action::Forward(&self.prompt);
        }
        if self.generated >= self.max_tokens {
            return Action::End("length");
        }
        match self.pending.take() {
            Some(next) if self.stop_ids.contains(&next) => Action::End("eos"),
            Some(next) => {
                self.generated += 1;
                self.last = [next];
                Action::Token(next)
            }
            None if pos >= capacity => Action::End("context"),
            None => Action::Forward(&self.last),
        }
    }

    /// The token sampled after the forward pass that [`Generation::action`] asked for.
    pub fn sampled(&mut self, token: u32) {
        if self.prefill_s.is_none() {
            self.prefill_s = Some(self.started.elapsed().as_secs_f64());
            self.decode_start = Instant::now();
        }
        self.pending = Some(token);
    }

    /// The statistics so far, of the generation on `backend`. Cheap (a few
    /// numbers and short strings): the session calls it after every token.
    pub fn stats(&self, backend: &dyn Backend, stop_reason: &str) -> Stats {
        let (model, pos, kv_dtype) = (backend.model(), backend.pos(), backend.kv_dtype());
        let config = &model.config;
        let prefill_s = self.prefill_s.unwrap_or(0.0);
        let decode_s = self.decode_start.elapsed().as_secs_f64();
        // Decode speed counts the forward passes after the prefill.
        let decode_steps = pos.saturating_sub(self.prompt.len());
        Stats {
            backend: backend.name(),
            n_heads: config.n_heads(),
            n_kv_heads: config.n_kv_heads(),
            prompt_tokens: self.prompt.len(),
            generated_tokens: self.generated,
            prefill_ms: prefill_s * 1e3,
            prefill_tok_s: self.prompt.len() as f64 / prefill_s.max(1e-9),
            decode_tok_s: if decode_steps > 0 { decode_steps as f64 / decode_s.max(1e-9) } else { 0.0 },
            context_used: pos,
            context_max: backend.capacity(),
            kv_bytes: kv_cache_bytes(config, config.n_kv_heads(), pos, kv_dtype),
            kv_bytes_mha: kv_cache_bytes(config, config.n_heads(), pos, kv_dtype),
            kv_bytes_allocated: backend.kv_bytes_allocated(),
            kv_dtype: kv_dtype.name().into(),
            weight_bytes: model.weight_bytes(),
            stop_reason: stop_reason.into(),
        }
    }
}
