//! The browser API: what the page's Web Worker (www/worker.js) calls, via wasm-bindgen.
//!
//! A [`WebSession`] (JS: `Session`) wraps the library's [`Session`], by job:
//!
//! - `load.rs`: a model from bytes or a preset, what the page shows of it, and its G;
//! - `engine.rs`: the engine it runs on (CPU SIMD or WebGPU) and its KV precision,
//!   both (re)opened along one path;
//! - `generate.rs`: generation, on the CPU step by step (`start`, then `nextToken` until
//!   it says `done`) so the worker can yield between tokens and receive Stop, and on
//!   either engine with `generate` and a per-token JS callback;
//! - `memory.rs`: how much memory this tab has left, for the KV cache a model opens with;
//! - `measure.rs`: what the page measures: the attention probe, quality against the
//!   unconverted model, logits and decode speed.
//!
//! Every error reaches JS as an `Error` with the library's message; results are plain
//! JS objects (serde-wasm-bindgen). Names that cross to JS are camelCase; the library's
//! own reports (generation statistics, the quality report) keep the field names they
//! have in the CLI's JSON and in the shipped quality files.

mod engine;
mod generate;
mod load;
mod measure;
mod memory;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::backend::EngineOptions;
use crate::error::GqaError;
use crate::generation::Stats;
use crate::session::Session;
use crate::tensor::KvDType;
use crate::tokenizer::TextStream;

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

#[wasm_bindgen(js_name = Session)]
pub struct WebSession {
    /// The base model, the tokenizer, the engine in use and the step-wise generation.
    session: Session,
    /// Statistics of the last generation on the GPU (it runs outside the session).
    gpu_stats: Option<Stats>,
    /// The KV-cache precision asked for (unset: each engine's default).
    options: EngineOptions,
    /// The text of the step-wise generation in progress.
    stream: Option<TextStream>,
    /// The attention probe is on (kept across engine changes).
    probe: bool,
    /// Why the KV cache is not the one the page asked for (see `kv_fit`), if it is not.
    kv_why: Option<String>,
    /// The ids of the last generation (prompt, then generated): the positions the
    /// attention probe's weights refer to.
    context_ids: Vec<u32>,
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

/// A plain JS object (numbers, strings, arrays; no Maps).
fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    value.serialize(&serde_wasm_bindgen::Serializer::json_compatible()).map_err(|e| JsError::new(&e.to_string()))
}
