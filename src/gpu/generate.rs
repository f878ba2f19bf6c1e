//! Generation on the GPU engine without blocking, for the browser page (where the
//! synchronous [`Backend`](crate::session::Backend) calls cannot wait on the GPU): the
//! same loop, stop rules and statistics as `Session::generate_ids`. Greedy decoding
//! reads back one token per step (argmax on the GPU); sampling reads back the logits.

use web_time::Instant;

use super::engine::GpuEngine;
use crate::config::kv_cache_bytes;
use crate::error::{GqaError, Result};
use crate::sampler::Sampler;
use crate::session::{GenerateParams, Logits, Stats};

impl GpuEngine {
    /// Run the prompt (BOS included by the caller), then generate up to
    /// `params.max_tokens` ids; `on_token` sees each and returns false to stop.
    // `..Default::default()` keeps this compiling when Stats gains fields.
    #[allow(clippy::needless_update)]
    pub async fn generate_ids_async(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<(Vec<u32>, Stats)> {
        let capacity = self.capacity();
        if prompt.is_empty() {
            return Err(GqaError::Invalid("the prompt needs at least one token (BOS)".into()));
        }
        if prompt.len() > capacity {
            return Err(GqaError::PromptTooLong { prompt: prompt.len(), context: capacity });
        }
        let mut sampler = Sampler::new(params.sampler.clone())?;
        let greedy = params.sampler.temperature == 0.0;
        let config = self.model().config.clone();
        let stop_ids: Vec<u32> = std::iter::once(config.bos_token_id).chain(config.eos_ids()).collect();

        self.reset();
        let start = Instant::now();
        let mut next = self.forward_and_sample(prompt, greedy, &mut sampler).await?;
        let prefill_s = start.elapsed().as_secs_f64();

        let decode_start = Instant::now();
        let mut generated = Vec::new();
        let mut stop_reason = "length";
        while generated.len() < params.max_tokens {
            if stop_ids.contains(&next) {
                stop_reason = "eos";
                break;
            }
            generated.push(next);
            if !on_token(next) {
                stop_reason = "stopped";
                break;
            }
            if generated.len() == params.max_tokens {
                break;
            }
            if self.pos() >= capacity {
                stop_reason = "context";
                break;
            }
            next = self.forward_and_sample(&[next], greedy, &mut sampler).await?;
        }
        let decode_s = decode_start.elapsed().as_secs_f64();
        let decode_steps = self.pos() - prompt.len();
        let used = self.pos();
        let stats = Stats {
            backend: self.name(),
            n_heads: config.n_heads(),
            n_kv_heads: config.n_kv_heads(),
            prompt_tokens: prompt.len(),
            generated_tokens: generated.len(),
            prefill_ms: prefill_s * 1e3,
            prefill_tok_s: prompt.len() as f64 / prefill_s.max(1e-9),
            decode_tok_s: if decode_steps > 0 { decode_steps as f64 / decode_s.max(1e-9) } else { 0.0 },
            context_used: used,
            context_max: capacity,
            kv_bytes: kv_cache_bytes(&config, config.n_kv_heads(), used, 4),
            kv_bytes_mha: kv_cache_bytes(&config, config.n_heads(), used, 4),
            kv_bytes_allocated: self.kv_bytes_allocated(),
            weight_bytes: self.model().weight_bytes(),
            stop_reason: stop_reason.into(),
            ..Default::default()
        };
        Ok((generated, stats))
    }

    async fn forward_and_sample(&mut self, tokens: &[u32], greedy: bool, sampler: &mut Sampler) -> Result<u32> {
        if greedy {
            self.forward_argmax_async(tokens).await
        } else {
            Ok(sampler.sample(&self.forward_async(tokens, Logits::Last).await?))
        }
    }
}
