//! The GPU backend: the same forward pass as the CPU engine (cpu/mod.rs), on wgpu, with
//! one WGSL file per kernel in shaders/. Natively it runs on Vulkan (lavapipe works,
//! CPU-emulated); in the browser on WebGPU. Everything that waits on the GPU is async
//! (no blocking poll on wasm); native front ends use the blocking [`Backend`] impl.
//!
//! - [`context`]: adapter, device, features (subgroups, timestamps), limits, read-back.
//! - [`pipelines`]: the kernels, their bind group layouts and pipelines.
//! - [`memory`]: buffers with allocation accounting.
//! - [`weights`]: matrices in their storage format (quantized ones as their GGUF bytes,
//!   decoded by shaders/quant.wgsl), split to fit bindings.
//! - [`resident`]: what one model keeps on the device (weights, KV cache, activations).
//! - [`graph`]: a forward pass recorded as a list of dispatches.
//! - [`submit`]: uniforms, bind groups, one submission, timestamps and read-back.
//! - [`options`]: [`GpuOptions`], the engine's settings.
//! - [`engine`]: [`GpuEngine`], the engine over those parts.
//! - [`generate`]: `GpuEngine::generate_ids_async`, the session's generation loop, async.
//! - [`measure`]: the engine measured: timing record, per-dispatch profile, fixed cost,
//!   copy bandwidth.
//! - `report` (native): the GPU side of `gqa bench`: per-kernel time, fixed cost,
//!   read-back and the device's copy bandwidth.
//! - `check` (native): `gqa check-gpu`, the GPU engine and sampler against the CPU's.
//!
//! [`Backend`]: crate::backend::Backend

#[cfg(not(target_arch = "wasm32"))]
pub mod check;
pub mod context;
pub mod engine;
pub mod generate;
pub mod graph;
pub mod measure;
pub mod memory;
pub mod options;
pub mod pipelines;
#[cfg(not(target_arch = "wasm32"))]
pub mod report;
pub mod resident;
pub mod submit;
pub mod weights;

pub use context::GpuContext;
pub use engine::GpuEngine;
pub use options::GpuOptions;
pub use submit::Timing;
