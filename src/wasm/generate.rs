//! Generation in a [`WebSession`]: step by step on the CPU (`start`, then `nextToken`),
//! or in one call on either engine (`generate`, with a per-token JS callback).

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use super::{js_error, to_js, WebSession};
use crate::generation::GenerateParams;
use crate::sampler::SamplerConfig;
use crate::tokenizer::chat::ChatMessage;

/// Sampling settings from JS; missing fields take the defaults below.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct JsParams {
    max_tokens: usize,
    temperature: f32,
    top_p: f32,
    top_k: usize,
    seed: u64,
}

impl Default for JsParams {
    fn default() -> Self {
        JsParams { max_tokens: 128, temperature: 0.8, top_p: 0.9, top_k: 0, seed: 1 }
    }
}

/// Sampling settings from JS ({maxTokens, temperature, topP, topK, seed}; missing: defaults).
fn generate_params(params: JsValue) -> Result<GenerateParams, JsError> {
    let p: JsParams = if params.is_undefined() || params.is_null() {
        JsParams::default()
    } else {
        serde_wasm_bindgen::from_value(params).map_err(|e| JsError::new(&format!("bad generation settings: {e}")))?
    };
    Ok(GenerateParams {
        max_tokens: p.max_tokens,
        sampler: SamplerConfig { temperature: p.temperature, top_p: p.top_p, top_k: p.top_k, seed: p.seed },
    })
}

/// One message of a chat from JS.
#[derive(Deserialize)]
struct JsMessage {
    role: String,
    content: String,
}

/// One step of a generation, for JS: a token and its text, or the end with the
/// text held back until then.
#[derive(Serialize)]
struct Piece {
    id: Option<u32>,
    text: String,
    done: bool,
}

#[wasm_bindgen(js_class = Session)]
impl WebSession {
    /// Start generating from `prompt` (see [`WebSession::prompt_ids`]) with `params`
    /// ({maxTokens, temperature, topP, topK, seed}): runs the prefill.
    /// On the CPU engine only; on WebGPU use `generate`.
    pub fn start(&mut self, prompt: JsValue, params: JsValue) -> Result<(), JsError> {
        if self.uses_gpu() {
            return Err(JsError::new("start/nextToken run on the CPU engine; on WebGPU use generate"));
        }
        let params = generate_params(params)?;
        let ids = self.prompt_ids(&prompt)?;
        self.stream = self.session.text_stream(&ids).ok();
        self.session.start(&ids, &params).map_err(js_error)?;
        self.context_ids = ids;
        Ok(())
    }

    /// The ids `prompt` (text or a chat) puts in the KV cache: the page sizes a
    /// generation to a context by their count, and measures quality on them.
    #[wasm_bindgen(js_name = promptIds)]
    pub fn prompt_token_ids(&self, prompt: JsValue) -> Result<Vec<u32>, JsError> {
        self.prompt_ids(&prompt)
    }

    /// The next token as `{id, text, done: false}`, or `{id: undefined, text, done: true}`
    /// when the generation has ended (`text`: what the decoder held back).
    #[wasm_bindgen(js_name = nextToken)]
    pub fn next_token(&mut self) -> Result<JsValue, JsError> {
        to_js(&self.step()?)
    }

    /// Generate in one call, on the engine in use: `onToken(text, id)` sees every
    /// token and returns false to stop. Resolves to the statistics (`stats()`).
    /// (On the CPU the worker uses `start`/`nextToken` instead, to yield between tokens.)
    pub async fn generate(&mut self, prompt: JsValue, params: JsValue, on_token: js_sys::Function) -> Result<JsValue, JsError> {
        let params = generate_params(params)?;
        let ids = self.prompt_ids(&prompt)?;
        let mut stream = self.session.text_stream(&ids).ok();
        let mut failure: Option<JsError> = None;
        let mut emit = |id: u32| -> bool {
            let text = match stream.as_mut() {
                Some(s) => match s.push(id) {
                    Ok(t) => t,
                    Err(e) => {
                        failure = Some(js_error(e));
                        return false;
                    }
                },
                None => format!(" {id}"),
            };
            match on_token.call2(&JsValue::NULL, &JsValue::from_str(&text), &JsValue::from(id)) {
                Ok(keep_going) => keep_going != JsValue::FALSE,
                Err(e) => {
                    failure = Some(JsError::new(&format!("the token callback threw: {e:?}")));
                    false
                }
            }
        };
        let generated = match self.session.engine().gpu() {
            Some(gpu) => {
                let (generated, stats) = gpu.generate_ids_async(&ids, &params, &mut emit).await.map_err(js_error)?;
                self.gpu_stats = Some(stats);
                generated
            }
            None => {
                let generated = self.session.generate_ids(&ids, &params, &mut emit).map_err(js_error)?;
                self.gpu_stats = None;
                generated
            }
        };
        self.context_ids = ids.into_iter().chain(generated).collect();
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some(rest) = stream.as_mut().map(|s| s.finish()).transpose().map_err(js_error)? {
            if !rest.is_empty() {
                let _ = on_token.call2(&JsValue::NULL, &JsValue::from_str(&rest), &JsValue::UNDEFINED);
            }
        }
        self.stats()
    }

    /// End the generation in progress; the next `nextToken` reports the end.
    pub fn stop(&mut self) {
        self.session.stop();
    }

    /// The statistics of the current or last generation, as a plain object.
    pub fn stats(&self) -> Result<JsValue, JsError> {
        match &self.gpu_stats {
            Some(stats) => to_js(stats),
            None => to_js(self.session.stats()),
        }
    }
}

impl WebSession {
    /// BOS + the encoded prompt; BOS only for random-weight presets (no tokenizer).
    /// The ids of a prompt: text to continue (BOS first where the model wants it; just
    /// BOS without a tokenizer), or a chat, a list of `{role, content}` messages, in the
    /// model's chat template with the assistant's turn opened.
    fn prompt_ids(&self, prompt: &JsValue) -> Result<Vec<u32>, JsError> {
        if let Some(text) = prompt.as_string() {
            return match self.session.tokenizer() {
                Some(_) => self.session.prompt_ids(&text).map_err(js_error),
                None => Ok(vec![self.session.base().config.bos_token_id]),
            };
        }
        let messages: Vec<JsMessage> = serde_wasm_bindgen::from_value(prompt.clone())
            .map_err(|e| JsError::new(&format!("a prompt is text or a list of {{role, content}} messages: {e}")))?;
        let messages: Vec<ChatMessage> = messages.iter().map(|m| ChatMessage::new(&m.role, &m.content)).collect();
        self.session.chat_ids(&messages).map_err(js_error)
    }

    fn step(&mut self) -> Result<Piece, JsError> {
        let id = self.session.next_token().map_err(js_error)?;
        self.context_ids.extend(id);
        let text = match (id, self.stream.as_mut()) {
            (Some(id), Some(stream)) => stream.push(id).map_err(js_error)?,
            (Some(id), None) => format!(" {id}"),
            (None, Some(stream)) => stream.finish().map_err(js_error)?,
            (None, None) => String::new(),
        };
        if id.is_none() {
            self.stream = None;
        }
        Ok(Piece { id, text, done: id.is_none() })
    }

    /// Before a measurement reuses the KV cache: end the generation (the next
    /// `nextToken` says done) and drop its text stream, so it never continues on other keys.
    pub(super) fn end_generation(&mut self) {
        self.session.stop();
        self.stream = None;
    }
}
