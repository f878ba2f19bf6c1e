//! The GPU engine: the CPU engine's forward pass (cpu/mod.rs), kernel by kernel, on the
//! resident buffers of one model (resident.rs), recorded (graph.rs) into one compute
//! pass and one queue submission per call (submit.rs).
//!
//! Shapes: T new tokens (at most `max_batch` per submission), dim = hidden_size,
//! H = n_heads query heads, G = n_kv_heads key/value heads, group size H/G,
//! hd = head_dim, ffn = intermediate_size. Activations are (T, stride) f32 with
//! stride = the width rounded up to 8 (the padding stays zero).

use super::context::GpuContext;
use super::options::GpuOptions;
use super::graph::{record, sample, SampleParams, Want};
use super::memory::Allocator;
use super::resident::Resident;
use super::submit::Submitter;
use crate::backend::{AttentionWeights, Backend, Logits};
use crate::config::kv_cache_bytes_checked;
use crate::error::{GqaError, Result};
use crate::model::Model;
use crate::sampler::{sample_with, SamplerConfig};
use crate::tensor::KvDType;

pub struct GpuEngine {
    pub(super) ctx: GpuContext,
    pub(super) alloc: Allocator,
    pub(super) options: GpuOptions,
    model: Model,
    capacity: usize,
    /// `None` only when the last `set_model` failed: every call then says so.
    pub(super) res: Option<Resident>,
    pub(super) pos: usize,
    pub(super) submit: Submitter,
    /// The attention probe is on; the context its record covers (None: nothing yet).
    probe: bool,
    probe_ctx: Option<usize>,
}

impl GpuEngine {
    /// An engine on the first GPU adapter, with a KV cache of `capacity` positions.
    pub async fn new_async(model: Model, capacity: usize, options: GpuOptions) -> Result<GpuEngine> {
        let ctx = GpuContext::new().await?;
        GpuEngine::with_context(ctx, model, capacity, options)
    }

    /// An engine on a device already opened.
    pub fn with_context(ctx: GpuContext, model: Model, capacity: usize, options: GpuOptions) -> Result<GpuEngine> {
        if options.max_batch == 0 {
            return Err(GqaError::Invalid("max_batch must be at least 1".into()));
        }
        let submit = Submitter::new(&ctx);
        let mut engine = GpuEngine {
            ctx,
            alloc: Allocator::default(),
            options,
            model: model.clone(),
            capacity,
            res: None,
            pos: 0,
            submit,
            probe: false,
            probe_ctx: None,
        };
        engine.set_model(model)?;
        Ok(engine)
    }

    pub fn context(&self) -> &GpuContext {
        &self.ctx
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn reset(&mut self) {
        self.pos = 0;
        self.probe_ctx = None;
    }

    pub fn name(&self) -> String {
        format!(
            "gpu ({}; {} matvec{}; kv {:?})",
            self.ctx.describe(),
            if self.uses_subgroups() { "subgroup" } else { "workgroup" },
            if self.ctx.timestamps { "; timestamps" } else { "" },
            self.options.kv_dtype
        )
        .to_lowercase()
    }

    /// Whether matvec runs its subgroup variant.
    pub fn uses_subgroups(&self) -> bool {
        self.ctx.subgroups && self.options.use_subgroups
    }

    /// Queue submissions so far (one per forward call of at most max_batch tokens).
    pub fn submissions(&self) -> u64 {
        self.submit.submissions
    }

    /// Bytes in live GPU buffers (this engine's own accounting).
    pub fn allocated_bytes(&self) -> u64 {
        self.alloc.live_bytes()
    }

    /// Bytes of the weight matrices on the device, in their storage format (a
    /// quantized matrix takes its GGUF bytes, see weights.rs).
    pub fn weight_bytes_allocated(&self) -> u64 {
        self.res.as_ref().map_or(0, |r| r.weight_bytes())
    }

    pub fn kv_bytes_allocated(&self) -> usize {
        self.res.as_ref().map_or(0, |r| r.kv_bytes() as usize)
    }

    /// Replace the model. The old buffers (weights, a KV cache of the old G heads,
    /// activations) are freed first, then the new ones allocated; the context restarts.
    /// If allocation fails, the engine holds no model and says so on every call.
    pub fn set_model(&mut self, model: Model) -> Result<()> {
        let context = model.config.max_position_embeddings;
        if self.capacity == 0 || self.capacity > context {
            return Err(GqaError::Invalid(format!(
                "KV cache capacity {} must be between 1 and the context {context}",
                self.capacity
            )));
        }
        kv_cache_bytes_checked(&model.config, model.config.n_kv_heads(), self.capacity, self.options.kv_dtype)?;
        // Free before allocating, so switching G keeps memory flat.
        self.res = None;
        self.submit.clear();
        self.pos = 0;
        self.model = model;
        self.probe_ctx = None;
        let mut res = Resident::new(&self.ctx, &self.alloc, &self.model, &self.options, self.capacity)?;
        res.set_probe(&self.ctx, &self.alloc, self.probe)?;
        self.res = Some(res);
        Ok(())
    }

    /// The resident buffers, or the error that the last `set_model` left none.
    fn resident(&self) -> Result<&Resident> {
        self.res.as_ref().ok_or_else(not_loaded)
    }

    /// Fill positions 0..len of the KV cache with random values (the same values the
    /// CPU engine's `fill_synthetic` uses), for benchmarks at long context.
    pub fn fill_synthetic(&mut self, len: usize, seed: u64) -> Result<()> {
        if len >= self.capacity {
            return Err(GqaError::ContextFull { pos: len, context: self.capacity });
        }
        self.resident()?.fill_synthetic(&self.ctx.queue, self.options.kv_dtype, len, seed);
        self.reset();
        self.pos = len;
        Ok(())
    }

    /// Run `tokens` at positions pos.. (appending to the KV cache) and return logits
    /// as the CPU engine does: (vocab) for `Logits::Last`, (T x vocab) for `Logits::All`.
    pub async fn forward_async(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>> {
        self.check(tokens)?;
        let vocab = self.model.config.vocab_size;
        let mut out = Vec::with_capacity(if which == Logits::All { tokens.len() * vocab } else { vocab });
        let chunks: Vec<&[u32]> = tokens.chunks(self.options.max_batch).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            let want = match which {
                Logits::All => Want::Logits { rows: chunk.len() },
                Logits::Last if last => Want::Logits { rows: 1 },
                Logits::Last => Want::Nothing,
            };
            let bytes = self.run_chunk(chunk, want).await?;
            // Read back as bytes with no alignment promise: decode each f32 on its own.
            out.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
        }
        Ok(out)
    }

    /// Run `tokens` and return the greedy next token, computed on the GPU: only its
    /// 4 bytes are read back.
    pub async fn forward_argmax_async(&mut self, tokens: &[u32]) -> Result<u32> {
        self.check(tokens)?;
        let chunks: Vec<&[u32]> = tokens.chunks(self.options.max_batch).collect();
        let mut next = 0;
        for (i, chunk) in chunks.iter().enumerate() {
            let want = if i + 1 == chunks.len() { Want::Argmax } else { Want::Nothing };
            let bytes = self.run_chunk(chunk, want).await?;
            if want == Want::Argmax {
                next = u32::from_le_bytes(bytes[..4].try_into().unwrap());
            }
        }
        Ok(next)
    }

    /// Run `tokens` and sample the next token on the GPU with `sampler` and the
    /// uniform draw `u` (sample.wgsl): only the token and a status, 8 bytes, are read
    /// back. When the rule reaches past the GPU's ranked candidates, the logits are read
    /// back and sampled on the CPU with the same `u`.
    pub async fn forward_sample_async(&mut self, tokens: &[u32], sampler: &SamplerConfig, u: f32) -> Result<u32> {
        sampler.check()?;
        if sampler.greedy() {
            return self.forward_argmax_async(tokens).await;
        }
        if !(0.0..1.0).contains(&u) {
            return Err(GqaError::Invalid(format!("the uniform draw must be in [0, 1), got {u}")));
        }
        self.check(tokens)?;
        let params = SampleParams::new(sampler, u);
        let chunks: Vec<&[u32]> = tokens.chunks(self.options.max_batch).collect();
        let mut read = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let want = if i + 1 == chunks.len() { Want::Sample(params) } else { Want::Nothing };
            read = self.run_chunk(chunk, want).await?;
        }
        self.sampled(&read, sampler, u).await
    }

    /// Sample one row of `logits` on the device, as a decode step does after its LM
    /// head (the same kernel and fallback): for checks against the CPU sampler.
    pub async fn sample_async(&mut self, logits: &[f32], sampler: &SamplerConfig, u: f32) -> Result<u32> {
        sampler.check()?;
        let vocab = self.model.config.vocab_size;
        if logits.len() != vocab || sampler.greedy() || !(0.0..1.0).contains(&u) {
            return Err(GqaError::Invalid(format!(
                "sampling on the GPU takes {vocab} logits, a temperature > 0 and u in [0, 1); got {} logits, temperature {}, u {u}",
                logits.len(),
                sampler.temperature
            )));
        }
        let res = self.res.as_mut().ok_or_else(not_loaded)?;
        self.ctx.queue.write_buffer(&res.logits, 0, bytemuck::cast_slice(logits));
        let mut ops = Vec::new();
        let params = SampleParams::new(sampler, u);
        sample(&mut ops, res, params);
        let read = self.submit.run(&self.ctx, &self.alloc, res, &ops, &[], Want::Sample(params)).await?;
        self.sampled(&read, sampler, u).await
    }

    /// The token sample.wgsl read back (token, status); status 1: the rule reached past
    /// the GPU's candidates, so the logits are read back and sampled here.
    async fn sampled(&mut self, read: &[u8], sampler: &SamplerConfig, u: f32) -> Result<u32> {
        let word = |i: usize| u32::from_le_bytes(read[4 * i..4 * i + 4].try_into().unwrap());
        if word(1) == 0 {
            return Ok(word(0));
        }
        let res = self.res.as_ref().ok_or_else(not_loaded)?;
        let bytes = self.submit.fetch_logits(&self.ctx, res).await?;
        let logits: Vec<f32> = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Ok(sample_with(sampler, &logits, u))
    }

    /// Turn the attention probe on (its buffers allocated) or off (freed).
    pub fn set_attention_probe(&mut self, on: bool) -> Result<()> {
        self.probe = on;
        self.probe_ctx = None;
        match self.res.as_mut() {
            Some(res) => res.set_probe(&self.ctx, &self.alloc, on),
            None => Ok(()),
        }
    }

    /// The last token's attention weights in `layer` (attention_probe.wgsl), read back:
    /// None while the probe is off or before a forward pass with it on.
    pub async fn attention_async(&mut self, layer: usize) -> Result<Option<AttentionWeights>> {
        let layers = self.model.config.num_hidden_layers;
        if layer >= layers {
            return Err(GqaError::Invalid(format!("layer {layer} does not exist: the model has layers 0 to {}", layers - 1)));
        }
        let (Some(n_ctx), Some(res)) = (self.probe_ctx, self.res.as_ref()) else { return Ok(None) };
        let Some((buffer, read)) = &res.probe else { return Ok(None) };
        let (h, capacity) = (res.dims.n_heads, res.dims.capacity);
        let bytes = (h * capacity * 4) as u64;
        let mut encoder = self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("probe") });
        encoder.copy_buffer_to_buffer(buffer, layer as u64 * bytes, read, 0, bytes);
        self.ctx.queue.submit([encoder.finish()]);
        let data = self.ctx.read(read, bytes).await?;
        let all: Vec<f32> = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let weights = all.chunks_exact(capacity).flat_map(|row| row[..n_ctx].to_vec()).collect();
        Ok(Some(AttentionWeights { n_heads: h, n_ctx, weights }))
    }

    fn check(&self, tokens: &[u32]) -> Result<()> {
        let vocab = self.model.config.vocab_size;
        if tokens.is_empty() {
            return Err(GqaError::Invalid("forward needs at least one token".into()));
        }
        if self.pos + tokens.len() > self.capacity {
            return Err(GqaError::ContextFull { pos: self.pos + tokens.len(), context: self.capacity });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(GqaError::BadToken { token: bad, vocab });
        }
        Ok(())
    }

    /// One submission: record the forward pass of at most max_batch tokens at the
    /// current position, submit it, and read back what `want` asks for (its bytes).
    async fn run_chunk(&mut self, tokens: &[u32], want: Want) -> Result<Vec<u8>> {
        let subgroups = self.uses_subgroups();
        let res = self.res.as_mut().ok_or_else(not_loaded)?;
        let ops = record(res, self.pos, tokens.len(), want, self.options.kv_dtype, subgroups);
        self.pos += tokens.len();
        if res.probe.is_some() && want != Want::Nothing {
            self.probe_ctx = Some(self.pos);
        }
        self.submit.run(&self.ctx, &self.alloc, res, &ops, tokens, want).await
    }
}

pub(super) fn not_loaded() -> GqaError {
    GqaError::Backend("no model is loaded on the GPU (the last model change failed); load or convert a model again".into())
}

/// The blocking [`Backend`]: native front ends block on the async methods. In the
/// browser nothing may block, so there the forward passes say to use the async ones
/// (the page's wasm API does).
impl Backend for GpuEngine {
    fn name(&self) -> String {
        GpuEngine::name(self)
    }
    fn model(&self) -> &Model {
        GpuEngine::model(self)
    }
    fn set_model(&mut self, model: Model) -> Result<()> {
        GpuEngine::set_model(self, model)
    }
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>> {
        block_on(self.forward_async(tokens, which))
    }
    fn forward_argmax(&mut self, tokens: &[u32]) -> Result<u32> {
        block_on(self.forward_argmax_async(tokens))
    }
    fn forward_sample(&mut self, tokens: &[u32], sampler: &SamplerConfig, u: f32) -> Result<u32> {
        block_on(self.forward_sample_async(tokens, sampler, u))
    }
    fn pos(&self) -> usize {
        GpuEngine::pos(self)
    }
    fn capacity(&self) -> usize {
        GpuEngine::capacity(self)
    }
    fn reset(&mut self) {
        GpuEngine::reset(self)
    }
    fn fill_synthetic(&mut self, len: usize, seed: u64) -> Result<()> {
        GpuEngine::fill_synthetic(self, len, seed)
    }
    fn kv_bytes_allocated(&self) -> usize {
        GpuEngine::kv_bytes_allocated(self)
    }
    fn kv_dtype(&self) -> KvDType {
        self.options.kv_dtype
    }
    fn set_attention_probe(&mut self, on: bool) -> Result<()> {
        GpuEngine::set_attention_probe(self, on)
    }
    fn attention(&mut self, layer: usize) -> Result<Option<AttentionWeights>> {
        block_on(self.attention_async(layer))
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn block_on<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    pollster::block_on(f)
}

#[cfg(target_arch = "wasm32")]
fn block_on<T>(_: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    Err(GqaError::Backend("on WebGPU the forward pass is async: use forward_async / generate".into()))
}

#[cfg(not(target_arch = "wasm32"))]
impl GpuEngine {
    /// `new_async`, blocking.
    pub fn new(model: Model, capacity: usize, options: GpuOptions) -> Result<GpuEngine> {
        pollster::block_on(GpuEngine::new_async(model, capacity, options))
    }
}
