//! Generation on the GPU engine without blocking, for the browser page (where the
//! synchronous [`Backend`](crate::backend::Backend) calls cannot wait on the GPU),
//! driving the same [`Generation`] as the session: the same stop rules and statistics. Each
//! step reads back only its token: greedy decoding takes the argmax on the GPU, sampling
//! draws there (sample.wgsl) from the session's seeded stream.

use super::engine::GpuEngine;
use crate::error::Result;
use crate::generation::{Action, GenerateParams, Generation, Stats};

impl GpuEngine {
    /// Run the prompt (BOS included by the caller), then generate up to
    /// `params.max_tokens` ids; `on_token` sees each and returns false to stop.
    pub async fn generate_ids_async(
        &mut self,
        prompt: &[u32],
        params: &GenerateParams,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<(Vec<u32>, Stats)> {
        let capacity = self.capacity();
        let mut g = Generation::new(&self.model().config, params, prompt, capacity)?;
        self.reset();
        let mut generated = Vec::new();
        let stop_reason = loop {
            let tokens = match g.action(self.pos(), capacity) {
                Action::Token(id) => {
                    generated.push(id);
                    if on_token(id) {
                        continue;
                    }
                    break "stopped";
                }
                Action::End(reason) => break reason,
                Action::Forward(tokens) => tokens.to_vec(),
            };
            let next = if g.greedy() {
                self.forward_argmax_async(&tokens).await?
            } else {
                let (sampler, u) = g.next_draw();
                self.forward_sample_async(&tokens, &sampler, u).await?
            };
            g.sampled(next);
        };
        let stats = g.stats(self, stop_reason);
        Ok((generated, stats))
    }
}
