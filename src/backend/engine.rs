//! The engine a session runs: [`Engine`], the CPU engine or the GPU engine, and the
//! one place that opens one for a front end (the CLI, `gqa bench`, the page): the GPU
//! engine when asked for and a device exists, otherwise the CPU engine, with the reason
//! the GPU was not used.
//!
//! A front end that needs more than the [`Backend`] trait (the page drives the GPU
//! engine's async methods) matches on the variant.

use super::{AttentionWeights, Backend, BackendKind, EngineOptions, Logits};
use crate::cpu::CpuEngine;
use crate::error::Result;
use crate::gpu::{GpuContext, GpuEngine, GpuOptions};
use crate::model::Model;
use crate::sampler::SamplerConfig;
use crate::tensor::KvDType;

/// One of the two engines that implement [`Backend`].
pub enum Engine {
    Cpu(CpuEngine),
    Gpu(GpuEngine),
}

/// An opened engine, and why it is the CPU when the GPU was asked for.
pub struct Opened {
    pub engine: Engine,
    /// No GPU adapter, no WebGPU in this browser...: the CPU engine runs instead.
    pub fallback: Option<String>,
}

impl Engine {
    /// An engine of `kind` for `model` with a KV cache of `capacity` positions in
    /// `options.kv_dtype` (each engine's default when unset). Errors about the model
    /// itself on the GPU (e.g. a tensor larger than the binding limit) are returned,
    /// not turned into a fallback.
    pub async fn open_async(kind: BackendKind, model: Model, capacity: usize, options: EngineOptions) -> Result<Opened> {
        let fallback = match kind {
            BackendKind::Cpu => None,
            BackendKind::Gpu => match GpuContext::new().await {
                Ok(ctx) => {
                    let gpu_options = GpuOptions { kv_dtype: options.gpu_kv_dtype(), ..GpuOptions::default() };
                    let engine = GpuEngine::with_context(ctx, model, capacity, gpu_options)?;
                    return Ok(Opened { engine: Engine::Gpu(engine), fallback: None });
                }
                Err(e) => Some(format!("GPU backend unavailable, using the CPU: {e}")),
            },
        };
        Ok(Opened { engine: Engine::Cpu(CpuEngine::with_options(model, capacity, options)?), fallback })
    }

    /// [`Engine::open_async`], blocking (native front ends).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(kind: BackendKind, model: Model, capacity: usize, options: EngineOptions) -> Result<Opened> {
        pollster::block_on(Engine::open_async(kind, model, capacity, options))
    }

    /// The GPU engine, when it is the one in use.
    pub fn gpu(&mut self) -> Option<&mut GpuEngine> {
        match self {
            Engine::Gpu(gpu) => Some(gpu),
            Engine::Cpu(_) => None,
        }
    }

    /// The engine as the trait, for the calls both engines answer alike.
    fn backend(&self) -> &dyn Backend {
        match self {
            Engine::Cpu(cpu) => cpu,
            Engine::Gpu(gpu) => gpu,
        }
    }

    fn backend_mut(&mut self) -> &mut dyn Backend {
        match self {
            Engine::Cpu(cpu) => cpu,
            Engine::Gpu(gpu) => gpu,
        }
    }
}

impl From<CpuEngine> for Engine {
    fn from(cpu: CpuEngine) -> Engine {
        Engine::Cpu(cpu)
    }
}

impl From<GpuEngine> for Engine {
    fn from(gpu: GpuEngine) -> Engine {
        Engine::Gpu(gpu)
    }
}

impl Backend for Engine {
    fn name(&self) -> String {
        self.backend().name()
    }
    fn model(&self) -> &Model {
        self.backend().model()
    }
    fn set_model(&mut self, model: Model) -> Result<()> {
        self.backend_mut().set_model(model)
    }
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>> {
        self.backend_mut().forward(tokens, which)
    }
    fn forward_argmax(&mut self, tokens: &[u32]) -> Result<u32> {
        self.backend_mut().forward_argmax(tokens)
    }
    fn forward_sample(&mut self, tokens: &[u32], sampler: &SamplerConfig, u: f32) -> Result<u32> {
        self.backend_mut().forward_sample(tokens, sampler, u)
    }
    fn pos(&self) -> usize {
        self.backend().pos()
    }
    fn capacity(&self) -> usize {
        self.backend().capacity()
    }
    fn reset(&mut self) {
        self.backend_mut().reset()
    }
    fn fill_synthetic(&mut self, len: usize, seed: u64) -> Result<()> {
        self.backend_mut().fill_synthetic(len, seed)
    }
    fn kv_bytes_allocated(&self) -> usize {
        self.backend().kv_bytes_allocated()
    }
    fn kv_dtype(&self) -> KvDType {
        self.backend().kv_dtype()
    }
    fn set_attention_probe(&mut self, on: bool) -> Result<()> {
        self.backend_mut().set_attention_probe(on)
    }
    fn attention(&mut self, layer: usize) -> Result<Option<AttentionWeights>> {
        self.backend_mut().attention(layer)
    }
}
