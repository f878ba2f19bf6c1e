//! Loading a model into a [`WebSession`], what the page shows of it, and the G it is
//! converted to.

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::{js_error, memory, parse_kv_dtype, to_js, WebSession};
use crate::backend::EngineOptions;
use crate::config::{default_capacity, kv_cache_bytes};
use crate::convert::{group_choices, Method};
use crate::cpu::CpuEngine;
use crate::kv_fit;
use crate::model::Model;
use crate::session::Session;
use crate::tensor::{DType, KvDType};
use crate::tokenizer::chat::default_system_prompt;
use crate::tokenizer::Tokenizer;

/// What the page needs to know about the loaded model and the current G.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Info {
    backend: String,
    layers: usize,
    hidden: usize,
    n_heads: usize,
    /// Key/value heads of the model as loaded, and of the current conversion.
    base_kv_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    vocab: usize,
    context: usize,
    capacity: usize,
    params: f64,
    weight_bytes: usize,
    /// KV-cache precision ("f32", "f16" or "int8").
    kv_dtype: String,
    /// KV-cache bytes per position (at `kv_dtype`) for this G and for MHA (G = H); the page
    /// multiplies by the context used (see [`crate::config::kv_cache_bytes`]).
    kv_bytes_per_position: usize,
    kv_bytes_per_position_mha: usize,
    /// ... and for f32 MHA, the largest cache of all (the page's scale for G x precision).
    kv_bytes_per_position_mha_f32: usize,
    /// The G the model converts to (see [`group_choices`]).
    group_choices: Vec<usize>,
    has_tokenizer: bool,
    /// Whether the model chats (a ChatML template: `start`/`generate` take messages).
    chat: bool,
    /// What its template writes when a chat has no system message, if anything.
    default_system_prompt: Option<String>,
    /// Why the KV cache (capacity, precision) is not the one the page asked for, if not.
    kv_why: Option<String>,
}

#[wasm_bindgen(js_class = Session)]
impl WebSession {
    /// A Hugging Face model: config.json text, model.safetensors bytes and, optionally,
    /// tokenizer.json bytes. `capacity` limits the KV cache (default: min(the context, 4096));
    /// `kvDtype` is its precision, "f32" or "f16" (default: f32 on the CPU, f16 on WebGPU).
    #[wasm_bindgen(js_name = fromHf)]
    pub fn from_hf(
        config_json: &str,
        safetensors: &[u8],
        tokenizer_json: Option<Vec<u8>>,
        capacity: Option<usize>,
        kv_dtype: Option<String>,
    ) -> Result<WebSession, JsError> {
        let model = crate::hf::load_hf(config_json, safetensors).map_err(js_error)?;
        let tokenizer = tokenizer_json.map(|b| Tokenizer::from_json(&b)).transpose().map_err(js_error)?;
        WebSession::new(model, tokenizer, capacity, kv_dtype)
    }

    /// A llama2.c checkpoint (.bin) and, optionally, its tokenizer.bin (`capacity`
    /// and `kvDtype` as in `fromHf`).
    #[wasm_bindgen(js_name = fromLlama2c)]
    pub fn from_llama2c(
        checkpoint: &[u8],
        tokenizer_bin: Option<Vec<u8>>,
        capacity: Option<usize>,
        kv_dtype: Option<String>,
    ) -> Result<WebSession, JsError> {
        let model = crate::llama2c::load_llama2c(checkpoint).map_err(js_error)?;
        let vocab = model.config.vocab_size;
        let tokenizer = tokenizer_bin.map(|b| Tokenizer::from_llama2c(&b, vocab)).transpose().map_err(js_error)?;
        WebSession::new(model, tokenizer, capacity, kv_dtype)
    }

    /// A GGUF file (llama architecture), weights and tokenizer in one; block-quantized
    /// weights stay in their blocks (`capacity` and `kvDtype` as in `fromHf`).
    #[wasm_bindgen(js_name = fromGguf)]
    pub fn from_gguf(bytes: &[u8], capacity: Option<usize>, kv_dtype: Option<String>) -> Result<WebSession, JsError> {
        let (model, tokenizer) = crate::loader::load_gguf(bytes).map_err(js_error)?;
        WebSession::new(model, Some(tokenizer), capacity, kv_dtype)
    }

    /// A random-weight speed preset (`tiny`, `15m`, `110m`, `500m`; see presets.rs), generated
    /// here from `seed`, with f16 weights when `f16` is true (`capacity` and `kvDtype` as in
    /// `fromHf`). It has no tokenizer: the generated text shows token ids.
    #[wasm_bindgen(js_name = fromPreset)]
    pub fn from_preset(name: &str, seed: u32, f16: bool, capacity: Option<usize>, kv_dtype: Option<String>) -> Result<WebSession, JsError> {
        let config = crate::presets::preset(name).map_err(js_error)?;
        let dtype = if f16 { DType::F16 } else { DType::F32 };
        let model = Model::random(&config, seed as u64, dtype).map_err(js_error)?;
        WebSession::new(model, None, capacity, kv_dtype)
    }

    /// A session on the CPU engine; the page moves it to WebGPU with `useGpu`. Its KV
    /// cache is the one asked for when that fits this tab's memory, else the nearest that
    /// does (see `kv_fit`; `info().kvWhy` says why).
    fn new(model: Model, tokenizer: Option<Tokenizer>, capacity: Option<usize>, kv_dtype: Option<String>) -> Result<WebSession, JsError> {
        let context = model.config.max_position_embeddings;
        let capacity = capacity.unwrap_or_else(|| default_capacity(&model.config)).min(context);
        let mut options = EngineOptions { kv_dtype: parse_kv_dtype(kv_dtype.as_deref().unwrap_or(""))?, ..Default::default() };
        let fit = kv_fit::fit(&model.config, capacity, options.cpu_kv_dtype(), memory::room()).map_err(|e| JsError::new(&e))?;
        if fit.why.is_some() {
            options.kv_dtype = Some(fit.dtype);
        }
        let engine = CpuEngine::with_options(model.clone(), fit.capacity, options).map_err(js_error)?;
        let session = Session::new(model, tokenizer, engine).map_err(js_error)?;
        Ok(WebSession { session, gpu_stats: None, options, stream: None, probe: false, kv_why: fit.why, context_ids: Vec::new() })
    }

    /// The model and current G, as a plain object (see `Info`).
    pub fn info(&mut self) -> Result<JsValue, JsError> {
        let base_kv_heads = self.session.base().config.n_kv_heads();
        let tokenizer = self.session.tokenizer();
        let has_tokenizer = tokenizer.is_some();
        let chat = tokenizer.is_some_and(|t| t.is_chatml());
        let default_system_prompt = tokenizer.and_then(|t| t.chat_template()).and_then(default_system_prompt).map(String::from);
        let backend = self.session.backend();
        let (name, capacity, kv_dtype) = (backend.name(), backend.capacity(), backend.kv_dtype());
        let model = self.session.model();
        let c = &model.config;
        to_js(&Info {
            backend: name,
            layers: c.num_hidden_layers,
            hidden: c.hidden_size,
            n_heads: c.n_heads(),
            base_kv_heads,
            n_kv_heads: c.n_kv_heads(),
            head_dim: c.head_dim(),
            vocab: c.vocab_size,
            context: c.max_position_embeddings,
            capacity,
            params: c.n_params() as f64,
            weight_bytes: model.weight_bytes(),
            kv_dtype: kv_dtype.name().into(),
            kv_bytes_per_position: kv_cache_bytes(c, c.n_kv_heads(), 1, kv_dtype),
            kv_bytes_per_position_mha: kv_cache_bytes(c, c.n_heads(), 1, kv_dtype),
            kv_bytes_per_position_mha_f32: kv_cache_bytes(c, c.n_heads(), 1, KvDType::F32),
            group_choices: group_choices(&self.session.base().config),
            has_tokenizer,
            chat,
            default_system_prompt,
            kv_why: self.kv_why.clone(),
        })
    }

    /// Convert the loaded model to `groups` key/value heads with `method`
    /// (mean, first or random; `seed` drives random). Ends a generation in progress.
    #[wasm_bindgen(js_name = setGroups)]
    pub fn set_groups(&mut self, groups: usize, method: &str, seed: u32) -> Result<(), JsError> {
        let method: Method = method.parse().map_err(js_error)?;
        self.stream = None;
        self.session.set_groups(groups, method, seed as u64).map_err(js_error)
    }
}
