//! The browser API: what the page's Web Worker (www/worker.js) calls, via wasm-bindgen.
//!
//! A [`WebSession`] (JS: `Session`) wraps the library's [`Session`]: load a model from
//! bytes, convert it to G, choose the engine (CPU SIMD, or WebGPU through the GPU
//! engine's async methods), then generate: on the CPU step by step (`start`, then
//! `nextToken` until it says `done`) so the worker can yield between tokens and receive
//! Stop; on either engine with `generate` and a per-token JS callback.
//! Every error reaches JS as an `Error` with the library's message; results are plain
//! JS objects (serde-wasm-bindgen).

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use web_time::Instant;

use crate::config::{default_capacity, divisors, kv_cache_bytes};
use crate::convert::Method;
use crate::backend::open::open_async;
use crate::backend::{Backend, BackendKind, EngineOptions, Logits};
use crate::bench::{decode_timing, median, DecodeCase};
use crate::cpu::CpuEngine;
use crate::error::GqaError;
use crate::eval::{evaluate, Reference};
use crate::generation::{GenerateParams, Stats};
use crate::gpu::GpuEngine;
use crate::model::Model;
use crate::sampler::SamplerConfig;
use crate::session::Session;
use crate::tensor::{DType, KvDType};
use crate::tokenizer::{TextStream, Tokenizer};

/// The message of the last panic, for the worker to show: after a panic (or an
/// allocation failure, which aborts without one) the module cannot be used again.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

#[wasm_bindgen(start)]
fn init() {
    std::panic::set_hook(Box::new(|info| {
        console_error_panic_hook::hook(info);
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(info.to_string());
        }
    }));
}

/// Why the module stopped, after a call threw `RuntimeError: unreachable`: the panic
/// message, or `undefined` when there was none (then memory ran out).
#[wasm_bindgen(js_name = lastPanic)]
pub fn last_panic() -> Option<String> {
    LAST_PANIC.lock().ok().and_then(|last| last.clone())
}

/// A KV-cache precision named by the page: "f32", "f16", "int8", or "" for each
/// engine's default.
fn parse_kv_dtype(name: &str) -> Result<Option<KvDType>, JsError> {
    match name {
        "" => Ok(None),
        _ => KvDType::parse(name).map(Some).ok_or_else(|| JsError::new(&format!("unknown KV dtype '{name}': use f32, f16 or int8"))),
    }
}

/// A library error as a JS `Error` carrying its message.
fn js_error(e: GqaError) -> JsError {
    JsError::new(&e.to_string())
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    value.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| JsError::new(&e.to_string()))
}

/// The threaded module's pool: `initThreadPool(n)` starts n Web Workers for rayon
/// (wasm-bindgen-rayon); call it once, after `init()`, before any other call.
#[cfg(feature = "threads")]
pub use wasm_bindgen_rayon::init_thread_pool;

/// Threads the CPU engine splits its work across: the pool's size in the threaded
/// module, 1 in the single-thread one.
#[wasm_bindgen]
pub fn threads() -> usize {
    crate::kernels::threads()
}

/// The SIMD the CPU engine uses here ("simd128" when built with +simd128).
#[wasm_bindgen(js_name = simdName)]
pub fn simd_name() -> String {
    crate::kernels::simd_name().to_string()
}

/// Whether this browser (or runtime) offers WebGPU, and if not, why.
#[wasm_bindgen(js_name = webgpuStatus)]
pub async fn webgpu_status() -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct Status {
        available: bool,
        /// The browser's fallback adapter (software rendering, e.g. SwiftShader):
        /// usually slower than the CPU engine.
        software: bool,
        reason: String,
    }
    let status = match crate::gpu::GpuContext::new().await {
        Ok(ctx) => Status {
            available: true,
            software: ctx.info.device_type == wgpu::DeviceType::Cpu,
            reason: ctx.describe(),
        },
        Err(e) => Status { available: false, software: false, reason: e.to_string() },
    };
    to_js(&status)
}

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

/// What the page needs to know about the loaded model and the current G.
#[derive(Serialize)]
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
    /// The G the model converts to: divisors of the loaded key/value heads.
    group_choices: Vec<usize>,
    has_tokenizer: bool,
}

/// One step of a generation, for JS: a token and its text, or the end with the
/// text held back until then.
#[derive(Serialize)]
struct Piece {
    id: Option<u32>,
    text: String,
    done: bool,
}

#[wasm_bindgen(js_name = Session)]
pub struct WebSession {
    /// The base model, the tokenizer, the engine in use (the CPU engine, or the
    /// WebGPU engine, whose generation is async) and the step-wise generation.
    session: Session,
    /// Statistics of the last generation on the GPU (it runs outside the session).
    gpu_stats: Option<Stats>,
    /// The KV-cache precision asked for (unset: each engine's default).
    options: EngineOptions,
    stream: Option<TextStream>,
    /// The attention probe is on (kept across engine changes).
    probe: bool,
    /// The ids of the last generation (prompt, then generated): the positions the
    /// attention probe's weights refer to.
    context_ids: Vec<u32>,
}

/// The attention probe's record of one layer for the page: the weights of every query
/// head over the positions the last token attended to, and each position's token.
#[derive(Serialize)]
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

    fn new(model: Model, tokenizer: Option<Tokenizer>, capacity: Option<usize>, kv_dtype: Option<String>) -> Result<WebSession, JsError> {
        let context = model.config.max_position_embeddings;
        let capacity = capacity.unwrap_or_else(|| default_capacity(&model.config)).min(context);
        let options = EngineOptions { kv_dtype: parse_kv_dtype(kv_dtype.as_deref().unwrap_or(""))? };
        let engine = CpuEngine::with_options(model.clone(), capacity, options).map_err(js_error)?;
        let session = Session::new(model, tokenizer, Box::new(engine)).map_err(js_error)?;
        Ok(WebSession { session, gpu_stats: None, options, stream: None, probe: false, context_ids: Vec::new() })
    }

    /// The model and current G, as a plain object (see `Info`).
    pub fn info(&mut self) -> Result<JsValue, JsError> {
        let base_kv_heads = self.session.base().config.n_kv_heads();
        let has_tokenizer = self.session.tokenizer().is_some();
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
            group_choices: divisors(base_kv_heads),
            has_tokenizer,
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

    /// Run on WebGPU from now on. Resolves to the adapter's description; rejects with
    /// the reason when this browser has no WebGPU or the model does not fit the device
    /// (the CPU engine stays in use).
    #[wasm_bindgen(js_name = useGpu)]
    pub async fn use_gpu(&mut self) -> Result<String, JsError> {
        let capacity = self.session.backend().capacity();
        // In the base's precision: the CPU engine may hold f32 copies of f16 weights
        // (see cpu::WASM_WIDEN_MAX_BYTES), which f16 holds exactly.
        let model = self.session.model().to_dtype(self.session.base().dtype());
        let opened = open_async(BackendKind::Gpu, model, capacity, self.options).await.map_err(js_error)?;
        if let Some(why) = opened.fallback {
            return Err(JsError::new(&why));
        }
        let mut backend = opened.backend;
        backend.set_attention_probe(self.probe).map_err(js_error)?;
        let name = backend.name();
        self.stream = None;
        self.session.set_backend(backend);
        Ok(name)
    }

    /// Split the CPU engine's work across threads from `bytes` of work (weights or
    /// cache read) per operation, instead of its default (2 MiB in the browser);
    /// 0 splits everything. The logits do not change. For tests and measurements;
    /// it holds until the CPU engine is opened again (backend or KV precision change).
    #[wasm_bindgen(js_name = setMinParallelBytes)]
    pub fn set_min_parallel_bytes(&mut self, bytes: usize) -> Result<(), JsError> {
        match self.session.backend().as_any_mut().downcast_mut::<CpuEngine>() {
            Some(cpu) => {
                cpu.set_min_parallel_bytes(bytes);
                Ok(())
            }
            None => Err(JsError::new("the parallel threshold is a setting of the CPU engine; this session runs on the GPU")),
        }
    }

    /// Run on the CPU engine (WASM SIMD) from now on, e.g. after the GPU was lost.
    #[wasm_bindgen(js_name = useCpu)]
    pub fn use_cpu(&mut self) -> Result<(), JsError> {
        if self.uses_gpu() {
            let capacity = self.session.backend().capacity();
            let mut engine = CpuEngine::with_options(self.session.model().clone(), capacity, self.options).map_err(js_error)?;
            engine.set_attention_probe(self.probe).map_err(js_error)?;
            self.stream = None;
            self.gpu_stats = None;
            self.session.set_backend(Box::new(engine));
        }
        Ok(())
    }

    /// Keep the KV cache in `name` ("f32", "f16", "int8", or "" for each engine's default) from
    /// now on: the engine in use is opened again with it (the context restarts). On an
    /// error (an unknown name, a GPU that cannot hold it) the engine in use stays.
    #[wasm_bindgen(js_name = setKvDtype)]
    pub async fn set_kv_dtype(&mut self, name: &str) -> Result<(), JsError> {
        let options = EngineOptions { kv_dtype: parse_kv_dtype(name)? };
        let capacity = self.session.backend().capacity();
        let model = self.session.model().clone();
        let mut backend: Box<dyn crate::backend::Backend> = if self.uses_gpu() {
            let opened = open_async(BackendKind::Gpu, model, capacity, options).await.map_err(js_error)?;
            if let Some(why) = opened.fallback {
                return Err(JsError::new(&why));
            }
            opened.backend
        } else {
            Box::new(CpuEngine::with_options(model, capacity, options).map_err(js_error)?)
        };
        backend.set_attention_probe(self.probe).map_err(js_error)?;
        self.options = options;
        self.stream = None;
        self.gpu_stats = None;
        self.session.set_backend(backend);
        Ok(())
    }

    /// Record the attention weights of each generated token from now on (off by
    /// default; it costs nothing then). `attention(layer)` reads the last one.
    #[wasm_bindgen(js_name = setAttentionProbe)]
    pub fn set_attention_probe(&mut self, on: bool) -> Result<(), JsError> {
        self.session.backend().set_attention_probe(on).map_err(js_error)?;
        self.probe = on;
        Ok(())
    }

    /// The attention probe's record for `layer`: `{layer, n_heads, n_kv_heads, n_ctx,
    /// weights, tokens}` for the last token the engine ran (null while the probe is off or
    /// before a generation with it on).
    pub async fn attention(&mut self, layer: usize) -> Result<JsValue, JsError> {
        let record = match self.gpu() {
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

    /// Whether the WebGPU engine is in use.
    #[wasm_bindgen(js_name = usesGpu)]
    pub fn uses_gpu(&mut self) -> bool {
        self.gpu().is_some()
    }

    /// The WebGPU engine, when it is the backend in use.
    fn gpu(&mut self) -> Option<&mut GpuEngine> {
        self.session.backend().as_any_mut().downcast_mut::<GpuEngine>()
    }

    /// Start generating from `prompt` (BOS is added) with `params`
    /// ({maxTokens, temperature, topP, topK, seed}): runs the prefill.
    /// On the CPU engine only; on WebGPU use `generate`.
    pub fn start(&mut self, prompt: &str, params: JsValue) -> Result<(), JsError> {
        if self.uses_gpu() {
            return Err(JsError::new("start/nextToken run on the CPU engine; on WebGPU use generate"));
        }
        let params = generate_params(params)?;
        let ids = self.prompt_ids(prompt)?;
        self.stream = self.session.text_stream(&ids).ok();
        self.session.start(&ids, &params).map_err(js_error)?;
        self.context_ids = ids;
        Ok(())
    }

    /// How many positions `prompt` takes in the KV cache: BOS + its tokens (just
    /// BOS without a tokenizer). The page sizes a generation to a context with it.
    #[wasm_bindgen(js_name = promptTokens)]
    pub fn prompt_tokens(&self, prompt: &str) -> Result<usize, JsError> {
        Ok(self.prompt_ids(prompt)?.len())
    }

    /// BOS + the encoded prompt; BOS only for random-weight presets (no tokenizer).
    fn prompt_ids(&self, prompt: &str) -> Result<Vec<u32>, JsError> {
        if self.session.tokenizer().is_some() {
            self.session.prompt_ids(prompt).map_err(js_error)
        } else {
            Ok(vec![self.session.base().config.bos_token_id])
        }
    }

    /// The next token as `{id, text, done: false}`, or `{id: undefined, text, done: true}`
    /// when the generation has ended (`text`: what the decoder held back).
    #[wasm_bindgen(js_name = nextToken)]
    pub fn next_token(&mut self) -> Result<JsValue, JsError> {
        to_js(&self.step()?)
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

    /// Generate in one call, on the backend in use: `onToken(text, id)` sees every
    /// token and returns false to stop. Resolves to the statistics (`stats()`).
    /// (On the CPU the worker uses `start`/`nextToken` instead, to yield between tokens.)
    pub async fn generate(&mut self, prompt: &str, params: JsValue, on_token: js_sys::Function) -> Result<JsValue, JsError> {
        let params = generate_params(params)?;
        let ids = self.prompt_ids(prompt)?;
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
        let generated = match self.gpu() {
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

    /// Before a probe reuses the KV cache: end the generation (the next `nextToken`
    /// says done) and drop its text stream, so it never continues on other keys.
    fn end_generation(&mut self) {
        self.session.stop();
        self.stream = None;
    }

    /// The statistics of the current or last generation, as a plain object.
    pub fn stats(&self) -> Result<JsValue, JsError> {
        match &self.gpu_stats {
            Some(stats) => to_js(stats),
            None => to_js(self.session.stats()),
        }
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
            let options = EngineOptions { kv_dtype: Some(self.session.backend().kv_dtype()) };
            cpu_copy = CpuEngine::with_options(self.session.model().clone(), window, options).map_err(js_error)?;
            &mut cpu_copy
        } else {
            self.session.backend()
        };
        let report = evaluate(model, Reference::Backend(&mut base), &ids, window, 0, None, &mut |_, _| {}).map_err(js_error)?;
        to_js(&report)
    }

    /// The last position's logits after running `tokens` from an empty cache, on the
    /// backend in use (tests). Ends a generation in progress first.
    pub async fn logits(&mut self, tokens: Vec<u32>) -> Result<Vec<f32>, JsError> {
        self.end_generation();
        match self.gpu() {
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

    /// Decode speed at a given context on the backend in use, measured as `gqa bench`
    /// measures it (see `bench::DecodeCase`): `steps` decode steps ending at position
    /// `context` after synthetic positions and an untimed warm-up step. Resolves to tokens/s.
    /// Ends a generation in progress first (it refills the cache).
    #[wasm_bindgen(js_name = decodeSpeed)]
    pub async fn decode_speed(&mut self, context: usize, steps: usize) -> Result<f64, JsError> {
        self.end_generation();
        let seconds_per_token = match self.gpu() {
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
