//! The engine a [`WebSession`] runs on, CPU SIMD or WebGPU, and its KV-cache precision.
//! Every change opens a new engine for the current model at the same capacity and goes
//! through [`WebSession::run_on`], which carries the attention probe over.

use wasm_bindgen::prelude::*;

use super::{js_error, memory, parse_kv_dtype, WebSession};
use crate::backend::engine::Engine;
use crate::backend::{Backend, BackendKind, EngineOptions};
use crate::cpu::CpuEngine;
use crate::kv_fit;

#[wasm_bindgen(js_class = Session)]
impl WebSession {
    /// Run on WebGPU from now on. Resolves to the adapter's description; rejects with
    /// the reason when this browser has no WebGPU or the model does not fit the device
    /// (the CPU engine stays in use).
    #[wasm_bindgen(js_name = useGpu)]
    pub async fn use_gpu(&mut self) -> Result<String, JsError> {
        let engine = self.open_gpu(self.options).await?;
        self.run_on(engine, self.options)?;
        Ok(self.session.backend().name())
    }

    /// Run on the CPU engine (WASM SIMD) from now on, e.g. after the GPU was lost.
    #[wasm_bindgen(js_name = useCpu)]
    pub fn use_cpu(&mut self) -> Result<(), JsError> {
        if self.uses_gpu() {
            let engine = self.open_cpu(self.options)?;
            self.run_on(engine, self.options)?;
        }
        Ok(())
    }

    /// Whether the WebGPU engine is in use.
    #[wasm_bindgen(js_name = usesGpu)]
    pub fn uses_gpu(&mut self) -> bool {
        self.session.engine().gpu().is_some()
    }

    /// Keep the KV cache in `name` ("f32", "f16", "int8", or "" for each engine's default) from
    /// now on: the engine in use is opened again with it (the context restarts). On an
    /// error (an unknown name, a GPU that cannot hold it) the engine in use stays.
    #[wasm_bindgen(js_name = setKvDtype)]
    pub async fn set_kv_dtype(&mut self, name: &str) -> Result<(), JsError> {
        let options = EngineOptions { kv_dtype: parse_kv_dtype(name)?, ..Default::default() };
        let engine = if self.uses_gpu() {
            self.open_gpu(options).await?
        } else {
            // In this tab's memory (a GPU's cache is not): the room the CPU cache in use
            // leaves once the new one replaces it.
            let config = self.session.base().config.clone();
            let backend = self.session.backend();
            let room = memory::room() + backend.kv_bytes_allocated() as u64;
            let fit = kv_fit::fit(&config, backend.capacity(), options.cpu_kv_dtype(), room).map_err(|e| JsError::new(&e))?;
            if let Some(why) = fit.why {
                return Err(JsError::new(&format!("{why}; the KV cache stays {}", backend.kv_dtype().name())));
            }
            self.open_cpu(options)?
        };
        self.run_on(engine, options)?;
        self.kv_why = None;
        Ok(())
    }

    /// Split the CPU engine's work across threads from `bytes` of work (weights once
    /// per token, or cache read) per operation, instead of its default (2 MiB in the browser);
    /// 0 splits everything. The logits do not change. For tests and measurements;
    /// it holds until the CPU engine is opened again (backend or KV precision change).
    #[wasm_bindgen(js_name = setMinParallelBytes)]
    pub fn set_min_parallel_bytes(&mut self, bytes: usize) -> Result<(), JsError> {
        match self.session.engine() {
            Engine::Cpu(cpu) => {
                cpu.set_min_parallel_bytes(bytes);
                Ok(())
            }
            Engine::Gpu(_) => Err(JsError::new("the parallel threshold is a setting of the CPU engine; this session runs on the GPU")),
        }
    }
}

impl WebSession {
    /// A CPU engine for the current model, at the capacity in use.
    fn open_cpu(&mut self, options: EngineOptions) -> Result<Engine, JsError> {
        let capacity = self.session.backend().capacity();
        let cpu = CpuEngine::with_options(self.session.model().clone(), capacity, options).map_err(js_error)?;
        Ok(Engine::Cpu(cpu))
    }

    /// A WebGPU engine for the current model, at the capacity in use, or why there is none.
    async fn open_gpu(&mut self, options: EngineOptions) -> Result<Engine, JsError> {
        let capacity = self.session.backend().capacity();
        // Float matrices in the base's precision: the CPU engine may hold f32 copies of f16
        // weights (see cpu::WASM_WIDEN_MAX_BYTES), which f16 holds exactly. Block-quantized
        // ones stay in their blocks: the shaders decode them (shaders/quant.wgsl).
        let model = self.session.model().floats_to(self.session.base().dtype());
        let opened = Engine::open_async(BackendKind::Gpu, model, capacity, options).await.map_err(js_error)?;
        match opened.fallback {
            Some(why) => Err(JsError::new(&why)),
            None => Ok(opened.engine),
        }
    }

    /// Run on `engine`, opened with `options`, from now on, with the attention probe as
    /// it was; the generation in progress, its text and the GPU's statistics end.
    fn run_on(&mut self, mut engine: Engine, options: EngineOptions) -> Result<(), JsError> {
        engine.set_attention_probe(self.probe).map_err(js_error)?;
        self.options = options;
        self.stream = None;
        self.gpu_stats = None;
        self.session.set_engine(engine);
        Ok(())
    }
}
