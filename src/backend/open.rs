//! Choosing an engine: the GPU engine when asked for and a device exists, otherwise
//! the CPU engine, with the reason the GPU was not used. Every front end (the CLI,
//! `gqa bench`, the page) opens its backend here.

use super::{Backend, BackendKind, EngineOptions};
use crate::cpu::CpuEngine;
use crate::error::Result;
use crate::gpu::{GpuContext, GpuEngine, GpuOptions};
use crate::model::Model;

/// An opened backend, and why it is the CPU when the GPU was asked for.
pub struct Opened {
    pub backend: Box<dyn Backend>,
    /// No GPU adapter, no WebGPU in this browser...: the CPU engine runs instead.
    pub fallback: Option<String>,
}

/// A backend of `kind` for `model` with a KV cache of `capacity` positions in
/// `options.kv_dtype` (each engine's default when unset). Errors
/// about the model itself on the GPU (e.g. a tensor larger than the binding limit)
/// are returned, not turned into a fallback.
pub async fn open_async(kind: BackendKind, model: Model, capacity: usize, options: EngineOptions) -> Result<Opened> {
    let fallback = match kind {
        BackendKind::Cpu => None,
        BackendKind::Gpu => match GpuContext::new().await {
            Ok(ctx) => {
                let engine = GpuEngine::with_context(ctx, model, capacity, GpuOptions { kv_dtype: options.gpu_kv_dtype(), ..GpuOptions::default() })?;
                return Ok(Opened { backend: Box::new(engine), fallback: None });
            }
            Err(e) => Some(format!("GPU backend unavailable, using the CPU: {e}")),
        },
    };
    Ok(Opened { backend: Box::new(CpuEngine::with_options(model, capacity, options)?), fallback })
}

/// [`open_async`], blocking (native front ends).
#[cfg(not(target_arch = "wasm32"))]
pub fn open(kind: BackendKind, model: Model, capacity: usize, options: EngineOptions) -> Result<Opened> {
    pollster::block_on(open_async(kind, model, capacity, options))
}
