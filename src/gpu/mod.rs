//! The GPU backend: the same forward pass as the CPU engine (cpu.rs), on wgpu, with
//! one WGSL file per kernel in shaders/. Natively it runs on Vulkan (lavapipe works,
//! CPU-emulated); in the browser on WebGPU. Everything that waits on the GPU is async
//! (no blocking poll on wasm); native front ends use the blocking [`Backend`] impl.
//!
//! - [`context`]: adapter, device, features (subgroups, timestamps), limits, read-back.
//! - [`pipelines`]: the kernels, their bind group layouts and pipelines.
//! - [`memory`]: buffers with allocation accounting.
//! - [`weights`]: matrices padded, packed (f16 two per u32) and split to fit bindings.
//! - [`engine`]: [`GpuEngine`], recording one submission per forward call.
//! - [`generate`]: `GpuEngine::generate_ids_async`, the session's generation loop, async.
//! - `report` (native): the GPU side of `gqa bench` (time inside and outside kernels).
//!
//! [`Backend`]: crate::session::Backend

pub mod context;
pub mod engine;
pub mod generate;
pub mod memory;
pub mod pipelines;
#[cfg(not(target_arch = "wasm32"))]
pub mod report;
pub mod weights;

pub use context::GpuContext;
pub use engine::{GpuEngine, GpuOptions, Timing};

use crate::error::{GqaError, Result};
#[cfg(not(target_arch = "wasm32"))]
use crate::{
    model::Model,
    session::{Backend, Session},
    tokenizer::Tokenizer,
};

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

/// A backend for `model` with a KV cache of `capacity` positions: the GPU engine when
/// asked for and a device exists; otherwise the CPU engine, with the reason the GPU
/// was not used (no adapter, no WebGPU in this browser...). Errors about the model
/// itself on the GPU (e.g. a tensor larger than the binding limit) are returned.
/// Native only: in the browser the page drives [`GpuEngine`]'s async methods directly.
#[cfg(not(target_arch = "wasm32"))]
pub async fn backend_async(kind: BackendKind, model: Model, capacity: usize) -> Result<(Box<dyn Backend>, Option<String>)> {
    if kind == BackendKind::Gpu {
        match GpuContext::new().await {
            Ok(ctx) => {
                let engine = GpuEngine::with_context(ctx, model, capacity, GpuOptions::default())?;
                return Ok((Box::new(engine), None));
            }
            Err(e) => {
                let engine = crate::cpu::CpuEngine::new(model, capacity)?;
                return Ok((Box::new(engine), Some(format!("GPU backend unavailable, using the CPU: {e}"))));
            }
        }
    }
    Ok((Box::new(crate::cpu::CpuEngine::new(model, capacity)?), None))
}

/// A session on `kind` (see [`backend_async`]); the string says why it fell back to the CPU.
#[cfg(not(target_arch = "wasm32"))]
pub async fn session_async(
    kind: BackendKind,
    base: Model,
    tokenizer: Option<Tokenizer>,
    capacity: Option<usize>,
) -> Result<(Session, Option<String>)> {
    let capacity = capacity.unwrap_or(base.config.max_position_embeddings);
    let (backend, fallback) = backend_async(kind, base.clone(), capacity).await?;
    Ok((Session::new(base, tokenizer, backend)?, fallback))
}

/// [`session_async`], blocking (native front ends).
#[cfg(not(target_arch = "wasm32"))]
pub fn session(
    kind: BackendKind,
    base: Model,
    tokenizer: Option<Tokenizer>,
    capacity: Option<usize>,
) -> Result<(Session, Option<String>)> {
    pollster::block_on(session_async(kind, base, tokenizer, capacity))
}
