//! The GPU engine: the CPU engine's forward pass (cpu.rs), kernel by kernel, recorded
//! into one compute pass and one queue submission per call.
//!
//! Shapes: T new tokens (at most `max_batch` per submission), dim = hidden_size,
//! H = n_heads query heads, G = n_kv_heads key/value heads, group size H/G,
//! hd = head_dim, ffn = intermediate_size. Activations are (T, stride) f32 with
//! stride = the width rounded up to 8 (the padding stays zero).
//!
//! ```text
//! embed -> L x [ rms_norm -> q,k,v (matvec | matmul) -> rope(q), rope(k) -> kv_store
//!                -> attention (G x splits x T workgroups) -> attention_merge -> wo -> add
//!                rms_norm -> gate, up -> swiglu -> down -> add ]
//!       -> rms_norm -> lm head (matvec) -> argmax | logits read back
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use web_time::Instant;

use super::context::GpuContext;
use super::memory::{Allocator, GpuBuffer};
use super::pipelines::{variant, Kernel, Pipelines, Variant, PARAMS_BYTES};
use super::weights::{f32_bytes, pad_cols, GpuMatrix};
use crate::config::Config;
use crate::error::{GqaError, Result};
use crate::model::Model;
use crate::rng::Rng;
use crate::session::Logits;
use crate::tensor::DType;

/// Positions one attention workgroup covers (as the CPU engine's chunks); longer
/// contexts are split and merged by max and log-sum-exp.
pub const ATTENTION_SPLIT: usize = 256;

/// Workgroup-memory capacities of attention.wgsl (in f32), and its accumulators.
const ATT_KV_TILE: usize = 2048;
const ATT_SCORES: usize = 1024;
const ATT_WG: usize = 128;
const ATT_MAX_GROUP: usize = ATT_WG;
const ATT_MAX_PAIRS: usize = 4096;

#[derive(Clone, Debug, PartialEq)]
pub struct GpuOptions {
    /// KV cache element type: f32, or f16 packed two per u32.
    pub kv_dtype: DType,
    /// Most tokens one submission processes (longer prompts take several).
    pub max_batch: usize,
    /// Reduce matvec with subgroupAdd when the adapter has subgroups.
    pub use_subgroups: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions { kv_dtype: DType::F32, max_batch: 64, use_subgroups: true }
    }
}

/// Timing of the forward passes since the engine was made (or `take_timing`).
#[derive(Clone, Debug, Default)]
pub struct Timing {
    pub forwards: usize,
    /// Wall time of forward calls (record, submit, wait, read back).
    pub wall_s: f64,
    /// GPU time inside the compute passes, when the adapter has timestamp queries.
    pub kernel_s: Option<f64>,
}

/// Sizes derived from the config, in elements.
#[derive(Clone, Debug)]
struct Dims {
    dim: usize,
    dim_pad: usize,
    q_pad: usize,
    kv_pad: usize,
    ffn_pad: usize,
    vocab: usize,
    hd: usize,
    n_heads: usize,
    n_kv_heads: usize,
    group: usize,
    capacity: usize,
    n_splits_max: usize,
    tile: usize,
    /// attention.wgsl: invocations per query head (softmax) and per output element.
    lanes_h: usize,
    lanes_p: usize,
    eps: f32,
}

/// The largest power of two <= n (n >= 1).
fn floor_pow2(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

impl Dims {
    fn new(c: &Config, capacity: usize) -> Result<Dims> {
        let (hd, n_heads, n_kv_heads) = (c.head_dim(), c.n_heads(), c.n_kv_heads());
        let group = c.group_size();
        if group > ATT_MAX_GROUP || group * hd > ATT_MAX_PAIRS || hd > ATT_KV_TILE {
            return Err(GqaError::Backend(format!(
                "the GPU attention kernel handles group size <= {ATT_MAX_GROUP}, head_dim <= {ATT_KV_TILE} and group x head_dim <= {ATT_MAX_PAIRS}; this model has group {group}, head_dim {hd}"
            )));
        }
        let tile = 128.min(ATT_KV_TILE / hd).min(ATT_SCORES / group).max(1);
        Ok(Dims {
            dim: c.hidden_size,
            dim_pad: pad_cols(c.hidden_size),
            q_pad: pad_cols(n_heads * hd),
            kv_pad: pad_cols(n_kv_heads * hd),
            ffn_pad: pad_cols(c.intermediate_size),
            vocab: c.vocab_size,
            hd,
            n_heads,
            n_kv_heads,
            group,
            capacity,
            n_splits_max: capacity.div_ceil(ATTENTION_SPLIT),
            tile,
            lanes_h: (ATT_WG / group).min(8),
            lanes_p: floor_pow2((ATT_WG / (group * hd)).max(1)),
            eps: c.rms_norm_eps,
        })
    }
}

struct Layer {
    input_norm: GpuBuffer,
    wq: GpuMatrix,
    wk: GpuMatrix,
    wv: GpuMatrix,
    wo: GpuMatrix,
    post_norm: GpuBuffer,
    gate: GpuMatrix,
    up: GpuMatrix,
    down: GpuMatrix,
    /// (G, capacity, hd) each, f32 or packed f16.
    k_cache: GpuBuffer,
    v_cache: GpuBuffer,
}

/// Everything allocated for one model: weights, KV cache, activations.
struct Resident {
    dims: Dims,
    embed: GpuMatrix,
    /// `None`: tied to `embed`.
    lm_head: Option<GpuMatrix>,
    norm: GpuBuffer,
    layers: Vec<Layer>,
    rope_table: GpuBuffer, // (capacity, hd/2) of (cos, sin)
    tokens: GpuBuffer,     // (B) u32
    x: GpuBuffer,          // (B, dim_pad) residual stream
    xb: GpuBuffer,         // (B, dim_pad) normed
    q: GpuBuffer,          // (B, q_pad)
    k: GpuBuffer,          // (B, kv_pad)
    v: GpuBuffer,          // (B, kv_pad)
    att: GpuBuffer,        // (B, q_pad) attention output
    proj: GpuBuffer,       // (B, dim_pad) wo / down output
    gate: GpuBuffer,       // (B, ffn_pad)
    up: GpuBuffer,         // (B, ffn_pad)
    partial: GpuBuffer,    // (B, H, n_splits_max, 2 + hd)
    logits: GpuBuffer,     // (B, vocab)
    argmax: GpuBuffer,     // (4) u32
    timestamps: GpuBuffer, // 2 x u64, resolved queries
    readback: GpuBuffer,   // MAP_READ: [timestamps 16 B | argmax 16 B | logits]
    params: GpuBuffer,     // one slot per dispatch
}

const READ_ARGMAX: u64 = 16;
const READ_LOGITS: u64 = 32;

impl Resident {
    fn kv_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.k_cache.bytes() + l.v_cache.bytes()).sum()
    }
}

/// One dispatch: a kernel, its buffers (bindings 1..), parameters and workgroup counts.
struct Op {
    kernel: Kernel,
    variant: Variant,
    buffers: Vec<wgpu::Buffer>,
    params: [u32; 16],
    groups: [u32; 3],
}

/// What a submission reads back.
#[derive(Clone, Copy, PartialEq)]
enum Want {
    Nothing,
    Argmax,
    Logits { rows: usize },
}

pub struct GpuEngine {
    ctx: GpuContext,
    pipelines: Pipelines,
    bind_groups: HashMap<(Kernel, Vec<wgpu::Buffer>), wgpu::BindGroup>,
    alloc: Allocator,
    options: GpuOptions,
    model: Model,
    capacity: usize,
    res: Option<Resident>,
    query_set: Option<wgpu::QuerySet>,
    pos: usize,
    submissions: u64,
    /// Shared so a front end can read it while the engine is borrowed (bench).
    timing: Arc<Mutex<Timing>>,
}

fn ceil_div(a: usize, b: usize) -> u32 {
    a.div_ceil(b) as u32
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
        let query_set = ctx.timestamps.then(|| {
            ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("forward timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            })
        });
        let mut engine = GpuEngine {
            ctx,
            pipelines: Pipelines::new(),
            bind_groups: HashMap::new(),
            alloc: Allocator::default(),
            options,
            model: model.clone(),
            capacity,
            res: None,
            query_set,
            pos: 0,
            submissions: 0,
            timing: Arc::default(),
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
        self.submissions
    }

    /// Bytes in live GPU buffers (this engine's own accounting).
    pub fn allocated_bytes(&self) -> u64 {
        self.alloc.live_bytes()
    }

    /// wgpu's allocator report (Vulkan): (allocated, reserved) bytes; None elsewhere.
    pub fn allocator_report(&self) -> Option<(u64, u64)> {
        let _ = self.ctx.device.poll(wgpu::PollType::Poll);
        self.ctx.device.generate_allocator_report().map(|r| (r.total_allocated_bytes, r.total_reserved_bytes))
    }

    pub fn kv_bytes_allocated(&self) -> usize {
        self.res.as_ref().map_or(0, |r| r.kv_bytes() as usize)
    }

    /// The timing since the last call.
    pub fn take_timing(&self) -> Timing {
        std::mem::take(&mut *self.timing.lock().unwrap())
    }

    /// A handle on the timing record (take it with `std::mem::take`).
    pub fn timing_handle(&self) -> Arc<Mutex<Timing>> {
        self.timing.clone()
    }

    /// Replace the model. The old buffers (weights, a KV cache of the old G heads,
    /// activations) are freed first, then the new ones allocated; the context restarts.
    pub fn set_model(&mut self, model: Model) -> Result<()> {
        let c = &model.config;
        if self.capacity == 0 || self.capacity > c.max_position_embeddings {
            return Err(GqaError::Invalid(format!(
                "KV cache capacity {} must be between 1 and the context {}",
                self.capacity, c.max_position_embeddings
            )));
        }
        let dims = Dims::new(c, self.capacity)?;
        // Free before allocating, so switching G keeps memory flat.
        self.res = None;
        self.bind_groups.clear();
        self.pos = 0;
        self.model = model;
        let res = self.allocate(dims)?;
        self.res = Some(res);
        Ok(())
    }

    fn allocate(&mut self, dims: Dims) -> Result<Resident> {
        let (ctx, alloc, m) = (&self.ctx, &self.alloc, &self.model);
        let c = &m.config;
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let vector = |name: &str, v: &[f32]| alloc.with_data(&ctx.device, name, &f32_bytes(v), storage);
        let kv_elem = self.options.kv_dtype.size() as u64;
        let kv_bytes = (dims.n_kv_heads * dims.capacity * dims.hd) as u64 * kv_elem;
        if kv_bytes > ctx.max_binding() {
            return Err(GqaError::Backend(format!(
                "the KV cache of one layer (G = {} heads x {} positions x head_dim {}) is {kv_bytes} bytes, more than this GPU's max storage buffer binding of {} bytes; use a smaller context or an f16 KV cache",
                dims.n_kv_heads,
                dims.capacity,
                dims.hd,
                ctx.max_binding()
            )));
        }
        let mut layers = Vec::with_capacity(m.blocks.len());
        for (i, b) in m.blocks.iter().enumerate() {
            let mat = |name: &str, w| GpuMatrix::upload(ctx, alloc, &format!("model.layers.{i}.{name}.weight"), w);
            layers.push(Layer {
                input_norm: vector("input_norm", &b.input_norm),
                wq: mat("self_attn.q_proj", &b.attn.wq)?,
                wk: mat("self_attn.k_proj", &b.attn.wk)?,
                wv: mat("self_attn.v_proj", &b.attn.wv)?,
                wo: mat("self_attn.o_proj", &b.attn.wo)?,
                post_norm: vector("post_attention_norm", &b.post_attention_norm),
                gate: mat("mlp.gate_proj", &b.mlp.gate)?,
                up: mat("mlp.up_proj", &b.mlp.up)?,
                down: mat("mlp.down_proj", &b.mlp.down)?,
                k_cache: alloc.zeroed(&ctx.device, "k_cache", kv_bytes, storage),
                v_cache: alloc.zeroed(&ctx.device, "v_cache", kv_bytes, storage),
            });
        }
        let embed = GpuMatrix::upload(ctx, alloc, "model.embed_tokens.weight", &m.embed)?;
        let lm_head = match &m.lm_head {
            Some(h) => Some(GpuMatrix::upload(ctx, alloc, "lm_head.weight", h)?),
            None => None,
        };

        // RoPE angles of every position, from the CPU engine's Rope: (capacity, hd/2) of (cos, sin).
        let rope = crate::cpu::Rope::new(dims.hd, c.rope_theta);
        let mut table = Vec::with_capacity(dims.capacity * dims.hd);
        for pos in 0..dims.capacity {
            let (cos, sin) = rope.angles(pos);
            table.extend(cos.iter().zip(&sin).flat_map(|(c, s)| [*c, *s]));
        }

        let b = self.options.max_batch as u64;
        let act = |name: &str, width: usize| alloc.zeroed(&ctx.device, name, b * width as u64 * 4, storage);
        let zeroed = |name: &str, bytes: u64, usage| alloc.zeroed(&ctx.device, name, bytes, usage);
        let read_bytes = READ_LOGITS + b * dims.vocab as u64 * 4;
        for (name, bytes) in [
            ("logits", b * dims.vocab as u64 * 4),
            ("attention partials", b * (dims.n_heads * dims.n_splits_max * (2 + dims.hd)) as u64 * 4),
        ] {
            if bytes > ctx.max_binding() {
                return Err(GqaError::Backend(format!(
                    "the {name} buffer for {b} tokens per batch is {bytes} bytes, more than this GPU's max storage buffer binding of {} bytes; use a smaller max_batch",
                    ctx.max_binding()
                )));
            }
        }
        Ok(Resident {
            embed,
            lm_head,
            norm: vector("norm", &m.norm),
            layers,
            rope_table: vector("rope_table", &table),
            tokens: zeroed("tokens", b * 4, storage),
            x: act("x", dims.dim_pad),
            xb: act("xb", dims.dim_pad),
            q: act("q", dims.q_pad),
            k: act("k", dims.kv_pad),
            v: act("v", dims.kv_pad),
            att: act("att", dims.q_pad),
            proj: act("proj", dims.dim_pad),
            gate: act("gate", dims.ffn_pad),
            up: act("up", dims.ffn_pad),
            partial: act("partial", dims.n_heads * dims.n_splits_max * (2 + dims.hd)),
            logits: act("logits", dims.vocab),
            argmax: zeroed("argmax", 16, storage),
            timestamps: zeroed("timestamps", 16, wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            readback: zeroed("readback", read_bytes, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
            params: zeroed("params", 256 * 64, wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST),
            dims,
        })
    }

    /// Fill positions 0..len of the KV cache with random values (the same values the
    /// CPU engine's `fill_synthetic` uses), for benchmarks at long context.
    pub fn fill_synthetic(&mut self, len: usize, seed: u64) -> Result<()> {
        if len >= self.capacity {
            return Err(GqaError::ContextFull { pos: len, context: self.capacity });
        }
        let res = self.res.as_ref().expect("model resident");
        let d = &res.dims;
        let elem = self.options.kv_dtype.size();
        let mut rng = Rng::new(seed);
        for layer in &res.layers {
            for h in 0..d.n_kv_heads {
                let offset = (h * d.capacity * d.hd * elem) as u64;
                for cache in [&layer.k_cache, &layer.v_cache] {
                    let values: Vec<f32> = (0..len * d.hd).map(|_| rng.normal()).collect();
                    let bytes = match self.options.kv_dtype {
                        DType::F32 => f32_bytes(&values),
                        DType::F16 => values.iter().flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes()).collect(),
                    };
                    if !bytes.is_empty() {
                        self.ctx.queue.write_buffer(cache, offset, &bytes);
                    }
                }
            }
        }
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
            out.extend_from_slice(bytemuck::cast_slice::<u8, f32>(&bytes));
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

    /// One submission: record the forward pass of at most max_batch tokens, submit,
    /// and read back what `want` asks for (its bytes).
    async fn run_chunk(&mut self, tokens: &[u32], want: Want) -> Result<Vec<u8>> {
        let start = Instant::now();
        let ops = self.record(tokens, want);
        self.pos += tokens.len();

        // The parameter slots: grow the buffer if this pass has more dispatches than it
        // holds (bind groups refer to it, so they are rebuilt).
        let slot = (self.ctx.limits.min_uniform_buffer_offset_alignment as u64).max(256);
        let needed = ops.len() as u64 * slot;
        let res = self.res.as_mut().expect("model resident");
        if needed > res.params.bytes() {
            res.params = self.alloc.zeroed(
                &self.ctx.device,
                "params",
                needed.next_power_of_two(),
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            );
            self.bind_groups.clear();
        }
        let mut params = vec![0u8; needed as usize];
        // Pipelines and bind groups, cached across calls.
        for (i, op) in ops.iter().enumerate() {
            params[i * slot as usize..i * slot as usize + 64].copy_from_slice(bytemuck::cast_slice(&op.params));
            self.pipelines.get(&self.ctx, op.kernel, op.variant);
            let key = (op.kernel, op.buffers.clone());
            if !self.bind_groups.contains_key(&key) {
                let res = self.res.as_ref().expect("model resident");
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &res.params,
                        offset: 0,
                        size: wgpu::BufferSize::new(PARAMS_BYTES),
                    }),
                }];
                for (j, b) in op.buffers.iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry { binding: j as u32 + 1, resource: b.as_entire_binding() });
                }
                let layout = self.pipelines.layout(&self.ctx, op.kernel);
                let bg = self.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout,
                    entries: &entries,
                });
                self.bind_groups.insert(key, bg);
            }
        }
        let res = self.res.as_ref().expect("model resident");
        let queue = &self.ctx.queue;
        queue.write_buffer(&res.tokens, 0, bytemuck::cast_slice(tokens));
        queue.write_buffer(&res.params, 0, &params);

        let mut encoder = self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("forward") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes: self.query_set.as_ref().map(|qs| wgpu::ComputePassTimestampWrites {
                    query_set: qs,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                }),
            });
            for (i, op) in ops.iter().enumerate() {
                let pipeline = self.pipelines.cached(op.kernel, op.variant);
                pass.set_pipeline(pipeline);
                let bg = &self.bind_groups[&(op.kernel, op.buffers.clone())];
                pass.set_bind_group(0, bg, &[(i as u64 * slot) as u32]);
                pass.dispatch_workgroups(op.groups[0], op.groups[1], op.groups[2]);
            }
        }
        let mut read_len = 0;
        if let Some(qs) = &self.query_set {
            encoder.resolve_query_set(qs, 0..2, &res.timestamps, 0);
            encoder.copy_buffer_to_buffer(&res.timestamps, 0, &res.readback, 0, 16);
            read_len = 16;
        }
        match want {
            Want::Nothing => {}
            Want::Argmax => {
                encoder.copy_buffer_to_buffer(&res.argmax, 0, &res.readback, READ_ARGMAX, 4);
                read_len = READ_ARGMAX + 4;
            }
            Want::Logits { rows } => {
                let bytes = (rows * res.dims.vocab * 4) as u64;
                encoder.copy_buffer_to_buffer(&res.logits, 0, &res.readback, READ_LOGITS, bytes);
                read_len = READ_LOGITS + bytes;
            }
        }
        queue.submit([encoder.finish()]);
        self.submissions += 1;

        let mut out = Vec::new();
        if read_len > 0 {
            let bytes = self.ctx.read(&res.readback, read_len).await?;
            if self.query_set.is_some() {
                let t0 = u64::from_le_bytes(bytes[0..8].try_into().unwrap());
                let t1 = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
                let ns = t1.saturating_sub(t0) as f64 * self.ctx.queue.get_timestamp_period() as f64;
                *self.timing.lock().unwrap().kernel_s.get_or_insert(0.0) += ns * 1e-9;
            }
            match want {
                Want::Nothing => {}
                Want::Argmax => out = bytes[READ_ARGMAX as usize..READ_ARGMAX as usize + 4].to_vec(),
                Want::Logits { .. } => out = bytes[READ_LOGITS as usize..].to_vec(),
            }
        }
        let mut timing = self.timing.lock().unwrap();
        timing.forwards += 1;
        timing.wall_s += start.elapsed().as_secs_f64();
        Ok(out)
    }

    /// The dispatches of one forward pass over `tokens` at the current position.
    fn record(&self, tokens: &[u32], want: Want) -> Vec<Op> {
        let res = self.res.as_ref().expect("model resident");
        let d = &res.dims;
        let t_new = tokens.len();
        let pos0 = self.pos as u32;
        let kv_variant = variant(DType::F32, self.options.kv_dtype);
        let plain = Variant { weights_f16: false, kv_f16: false };
        let mut ops = Vec::new();
        let op = &mut ops;
        let n = t_new as u32;
        let subgroups = self.uses_subgroups();

        // x = embed[tokens]: one dispatch per part of the table.
        for part in &res.embed.parts {
            push(
                op,
                Kernel::Embed,
                variant(res.embed.dtype, DType::F32),
                &[&res.tokens, &part.buffer, &res.x],
                &[d.dim as u32, res.embed.row_u32s() as u32, part.row0 as u32, part.rows as u32, d.dim_pad as u32],
                [ceil_div(d.dim, 64), n, 1],
            );
        }

        let eps = d.eps.to_bits();
        let half = (d.hd / 2) as u32;
        let n_splits = (self.pos + t_new).div_ceil(ATTENTION_SPLIT) as u32;
        let scale = (1.0 / (d.hd as f32).sqrt()).to_bits();
        for layer in &res.layers {
            // ---- attention: x += wo(attention(rope(wq xb), rope(wk xb), wv xb)) ----
            push(op, Kernel::RmsNorm, plain, &[&res.x, &layer.input_norm, &res.xb], &[d.dim as u32, d.dim_pad as u32, 0, eps], [n, 1, 1]);
            linear(op, subgroups, &layer.wq, &res.xb, &res.q, d.q_pad, t_new); // (T, H*hd)
            linear(op, subgroups, &layer.wk, &res.xb, &res.k, d.kv_pad, t_new); // (T, G*hd)
            linear(op, subgroups, &layer.wv, &res.xb, &res.v, d.kv_pad, t_new); // (T, G*hd)
            for (buf, heads, stride) in [(&res.q, d.n_heads, d.q_pad), (&res.k, d.n_kv_heads, d.kv_pad)] {
                push(
                    op,
                    Kernel::Rope,
                    plain,
                    &[&res.rope_table, buf],
                    &[n, heads as u32, half, stride as u32, pos0],
                    [ceil_div(t_new * heads * d.hd / 2, 64), 1, 1],
                );
            }
            push(
                op,
                Kernel::KvStore,
                kv_variant,
                &[&res.k, &res.v, &layer.k_cache, &layer.v_cache],
                &[n, d.n_kv_heads as u32, d.hd as u32, d.kv_pad as u32, pos0, d.capacity as u32],
                [ceil_div(t_new * d.n_kv_heads * d.hd / 2, 64), 1, 1],
            );
            push(
                op,
                Kernel::Attention,
                kv_variant,
                &[&res.q, &layer.k_cache, &layer.v_cache, &res.partial],
                &[
                    d.group as u32,
                    d.hd as u32,
                    d.capacity as u32,
                    pos0,
                    d.q_pad as u32,
                    ATTENTION_SPLIT as u32,
                    n_splits,
                    d.tile as u32,
                    d.n_heads as u32,
                    scale,
                    d.lanes_h as u32,
                    d.lanes_p as u32,
                ],
                [d.n_kv_heads as u32, n_splits, n],
            );
            push(
                op,
                Kernel::AttentionMerge,
                plain,
                &[&res.partial, &res.att],
                &[d.n_heads as u32, n_splits, d.hd as u32, d.q_pad as u32],
                [d.n_heads as u32, n, 1],
            );
            linear(op, subgroups, &layer.wo, &res.att, &res.proj, d.dim_pad, t_new); // (T, dim)
            push(op, Kernel::Add, plain, &[&res.x, &res.proj], &[n * d.dim_pad as u32], [ceil_div(t_new * d.dim_pad, 256), 1, 1]);

            // ---- feed-forward: x += down(silu(gate xb) * up xb) ----
            push(op, Kernel::RmsNorm, plain, &[&res.x, &layer.post_norm, &res.xb], &[d.dim as u32, d.dim_pad as u32, 0, eps], [n, 1, 1]);
            linear(op, subgroups, &layer.gate, &res.xb, &res.gate, d.ffn_pad, t_new); // (T, ffn)
            linear(op, subgroups, &layer.up, &res.xb, &res.up, d.ffn_pad, t_new); // (T, ffn)
            push(op, Kernel::Swiglu, plain, &[&res.gate, &res.up], &[n * d.ffn_pad as u32], [ceil_div(t_new * d.ffn_pad, 256), 1, 1]);
            linear(op, subgroups, &layer.down, &res.gate, &res.proj, d.dim_pad, t_new); // (T, dim)
            push(op, Kernel::Add, plain, &[&res.x, &res.proj], &[n * d.dim_pad as u32], [ceil_div(t_new * d.dim_pad, 256), 1, 1]);
        }

        // ---- final norm and LM head, for the rows wanted ----
        let rows = match want {
            Want::Nothing => return ops,
            Want::Argmax => 1,
            Want::Logits { rows } => rows,
        };
        let in_row0 = (t_new - rows) as u32;
        push(op, Kernel::RmsNorm, plain, &[&res.x, &res.norm, &res.xb], &[d.dim as u32, d.dim_pad as u32, in_row0, eps], [rows as u32, 1, 1]);
        let classifier = res.lm_head.as_ref().unwrap_or(&res.embed);
        linear(op, subgroups, classifier, &res.xb, &res.logits, d.vocab, rows); // (rows, vocab)
        if want == Want::Argmax {
            push(op, Kernel::Argmax, plain, &[&res.logits, &res.argmax], &[d.vocab as u32, 0], [1, 1, 1]);
        }
        ops
    }
}

/// Append one dispatch to `ops`.
fn push(ops: &mut Vec<Op>, kernel: Kernel, variant: Variant, buffers: &[&GpuBuffer], params: &[u32], groups: [u32; 3]) {
    let mut p = [0u32; 16];
    p[..params.len()].copy_from_slice(params);
    let buffers = buffers.iter().map(|b| wgpu::Buffer::clone(b)).collect();
    ops.push(Op { kernel, variant, buffers, params: p, groups });
}

/// y (T, y_stride) = x (T, x_stride) W^T, part by part: matvec (or its subgroup
/// variant) for one token, the tiled matmul for a batch of `n_tokens`.
fn linear(ops: &mut Vec<Op>, subgroups: bool, w: &GpuMatrix, x: &GpuBuffer, y: &GpuBuffer, y_stride: usize, n_tokens: usize) {
    let x_stride = pad_cols(w.cols);
    let v = variant(w.dtype, DType::F32);
    for part in &w.parts {
        let (rows, row0) = (part.rows as u32, part.row0 as u32);
        if n_tokens == 1 {
            let kernel = if subgroups { Kernel::MatvecSubgroup } else { Kernel::Matvec };
            let params = [rows, (w.row_u32s() / 4) as u32, (x_stride / 4) as u32, y_stride as u32, row0];
            push(ops, kernel, v, &[&part.buffer, x, y], &params, [ceil_div(part.rows, 8), 1, 1]);
        } else {
            let params =
                [rows, w.row_u32s() as u32, x_stride as u32, y_stride as u32, row0, n_tokens as u32, x_stride as u32];
            push(ops, Kernel::Matmul, v, &[&part.buffer, x, y], &params, [ceil_div(part.rows, 16), ceil_div(n_tokens, 16), 1]);
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    //! The synchronous [`Backend`] for native front ends: block on the async methods.
    use super::*;
    use crate::session::Backend;

    impl GpuEngine {
        /// `new_async`, blocking.
        pub fn new(model: Model, capacity: usize, options: GpuOptions) -> Result<GpuEngine> {
            pollster::block_on(GpuEngine::new_async(model, capacity, options))
        }
    }

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
            pollster::block_on(self.forward_async(tokens, which))
        }
        fn forward_argmax(&mut self, tokens: &[u32]) -> Result<u32> {
            pollster::block_on(self.forward_argmax_async(tokens))
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
    }
}
