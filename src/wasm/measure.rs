//! What the page measures on a [`WebSession`]: the attention probe, quality against the
//! unconverted model, logits (tests) and decode speed. Each runs on the engine in use,
//! the GPU through its async methods.

use serde::Serialize;
use wasm_bindgen::prelude::*;
use web_time::Instant;

use super::{js_error, to_js, WebSession};
use crate::backend::{Backend, EngineOptions, Logits};
use crate::bench::{decode_timing, median, DecodeCase};
use crate::cpu::CpuEngine;
use crate::eval::{evaluate, Reference};

/// The attention probe's record of one layer for the page: the weights of every query
/// head over the positions the last token attended to, and each position's token.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AttentionView {
    layer: usize,
    n_heads: usize,
    n_kv_heads: usize,
    n_ctx: usize,
    /// (n_heads, n_ctx) row-major; each row sums to 1.
    weights: Vec<f32>,
    /// The text of each position's token (its id without a tokenizer).
    tokens: Vec<String>,
}

#[wasm_bindgen(js_class = Session)]
impl WebSession {
    /// Record the attention weights of each generated token from now on (off by
    /// default; it costs nothing then). `attention(layer)` reads the last one.
    #[wasm_bindgen(js_name = setAttentionProbe)]
    pub fn set_attention_probe(&mut self, on: bool) -> Result<(), JsError> {
        self.session.backend().set_attention_probe(on).map_err(js_error)?;
        self.probe = on;
        Ok(())
    }

    /// The attention probe's record for `layer`: `{layer, nHeads, nKvHeads, nCtx,
    /// weights, tokens}` for the last token the engine ran (null while the probe is off or
    /// before a generation with it on).
    pub async fn attention(&mut self, layer: usize) -> Result<JsValue, JsError> {
        let record = match self.session.engine().gpu() {
            Some(gpu) => gpu.attention_async(layer).await,
            None => self.session.backend().attention(layer),
        }
        .map_err(js_error)?;
        let Some(w) = record else { return Ok(JsValue::NULL) };
        let tokenizer = self.session.tokenizer();
        let tokens = (0..w.n_ctx)
            .map(|i| match self.context_ids.get(i) {
                Some(&id) => tokenizer.and_then(|t| t.token_to_piece(id)).unwrap_or_else(|| id.to_string()),
                None => "?".into(),
            })
            .collect();
        let n_kv_heads = self.session.model().config.n_kv_heads();
        to_js(&AttentionView { layer, n_heads: w.n_heads, n_kv_heads, n_ctx: w.n_ctx, weights: w.weights, tokens })
    }

    /// How much converting to the current G changed the model, on `ids` (e.g. text the
    /// unconverted model generated): perplexity, and KL divergence and top-1 agreement
    /// against the unconverted model, as a plain object (see `eval::EvalReport`).
    /// Runs on the CPU engine (a copy of it, with the same KV precision, while WebGPU
    /// is in use), against a second engine for the unconverted model with an f32 KV
    /// cache: the reference is f32 MHA (or the base's own G). Ends a generation in
    /// progress first (it reuses the KV cache).
    #[wasm_bindgen(js_name = qualityVsBase)]
    pub fn quality_vs_base(&mut self, ids: Vec<u32>) -> Result<JsValue, JsError> {
        self.end_generation();
        let capacity = self.session.backend().capacity();
        if ids.len() < 2 || capacity < 2 {
            return Err(JsError::new(&format!(
                "quality needs at least 2 tokens and a KV cache of at least 2 positions; got {} tokens and {capacity} positions",
                ids.len()
            )));
        }
        let window = ids.len().min(capacity);
        let mut base = CpuEngine::new(self.session.base().clone(), window).map_err(js_error)?;
        let mut cpu_copy;
        let model: &mut dyn Backend = if self.uses_gpu() {
            let options = EngineOptions { kv_dtype: Some(self.session.backend().kv_dtype()), ..Default::default() };
            cpu_copy = CpuEngine::with_options(self.session.model().clone(), window, options).map_err(js_error)?;
            &mut cpu_copy
        } else {
            self.session.backend()
        };
        let report = evaluate(model, Reference::Backend(&mut base), &ids, window, 0, None, &mut |_, _| {}).map_err(js_error)?;
        to_js(&report)
    }

    /// The last position's logits after running `tokens` from an empty cache, on the
    /// engine in use (tests). Ends a generation in progress first.
    pub async fn logits(&mut self, tokens: Vec<u32>) -> Result<Vec<f32>, JsError> {
        self.end_generation();
        match self.session.engine().gpu() {
            Some(gpu) => {
                gpu.reset();
                gpu.forward_async(&tokens, Logits::Last).await.map_err(js_error)
            }
            None => {
                let backend = self.session.backend();
                backend.reset();
                backend.forward(&tokens, Logits::Last).map_err(js_error)
            }
        }
    }

    /// Decode speed at a given context on the engine in use, measured as `gqa bench`
    /// measures it (see `bench::DecodeCase`): `steps` decode steps ending at position
    /// `context` after synthetic positions and an untimed warm-up step. Resolves to tokens/s.
    /// Ends a generation in progress first (it refills the cache).
    #[wasm_bindgen(js_name = decodeSpeed)]
    pub async fn decode_speed(&mut self, context: usize, steps: usize) -> Result<f64, JsError> {
        self.end_generation();
        let seconds_per_token = match self.session.engine().gpu() {
            Some(gpu) => {
                // The same case as `DecodeCase::round`, with the GPU's async steps.
                let case = DecodeCase::new(context, steps, gpu.capacity()).map_err(js_error)?;
                case.prepare(gpu).map_err(js_error)?;
                gpu.forward_argmax_async(&[case.token(0)]).await.map_err(js_error)?; // warm-up, not timed
                let mut times = Vec::with_capacity(steps);
                for i in 1..steps {
                    let start = Instant::now();
                    gpu.forward_argmax_async(&[case.token(i)]).await.map_err(js_error)?;
                    times.push(start.elapsed().as_secs_f64());
                }
                median(&mut times)
            }
            None => decode_timing(self.session.backend(), context, steps, 1).map_err(js_error)?,
        };
        Ok(1.0 / seconds_per_token.max(1e-12))
    }
}
