//! What the GPU engine keeps resident for one model: the sizes derived from its
//! config, the uploaded weights, the KV cache of G heads, the activations and the
//! read-back buffers, each checked against the device's limits before allocation.

use super::context::GpuContext;
use super::memory::{Allocator, GpuBuffer};
use super::weights::{f32_bytes, pad_cols, GpuMatrix};
use super::options::GpuOptions;
use crate::config::Config;
use crate::error::{GqaError, Result};
use crate::model::Model;
use crate::rng::Rng;
use crate::kv_cache::{synthetic_i8, SYNTHETIC_I8_SCALE};
use crate::tensor::KvDType;

/// The positions one attention workgroup covers (a split) range over powers of two
/// from MIN_SPLIT to MAX_SPLIT; the splits are merged by max and log-sum-exp.
pub const MIN_SPLIT: usize = 32;
pub const MAX_SPLIT: usize = 1024;

/// Workgroup-memory capacities of attention.wgsl (in f32), and its accumulators.
const ATT_KV_TILE: usize = 2048;
const ATT_SCORES: usize = 1024;
const ATT_WG: usize = 128;
const ATT_MAX_GROUP: usize = ATT_WG;
const ATT_MAX_PAIRS: usize = 4096;

/// Sizes derived from the config, in elements.
#[derive(Clone, Debug)]
pub struct Dims {
    pub dim: usize,
    pub dim_pad: usize,
    pub q_pad: usize,
    pub kv_pad: usize,
    pub ffn_pad: usize,
    pub vocab: usize,
    pub hd: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub group: usize,
    pub capacity: usize,
    /// Workgroups a dispatch needs to fill this device (`GpuContext::target_workgroups`).
    pub target_workgroups: usize,
    /// A split length fixed by the options (tests), instead of `attention_split`'s choice.
    pub forced_split: Option<usize>,
    /// The most (token, split) pairs of one call: the attention partials hold H x this.
    pub max_split_rows: usize,
    pub tile: usize,
    /// attention.wgsl: invocations per query head (softmax) and per output element.
    pub lanes_h: usize,
    pub lanes_p: usize,
    pub eps: f32,
}

/// The largest power of two <= n (n >= 1).
fn floor_pow2(n: usize) -> usize {
    1 << (usize::BITS - 1 - n.leading_zeros())
}

impl Dims {
    pub fn new(c: &Config, capacity: usize, max_batch: usize, target_workgroups: usize, forced_split: Option<usize>) -> Result<Dims> {
        let (hd, n_heads, n_kv_heads) = (c.head_dim(), c.n_heads(), c.n_kv_heads());
        let group = c.group_size();
        if group > ATT_MAX_GROUP || group * hd > ATT_MAX_PAIRS || hd > ATT_KV_TILE {
            return Err(GqaError::Backend(format!(
                "the GPU attention kernel handles group size <= {ATT_MAX_GROUP}, head_dim <= {ATT_KV_TILE} and group x head_dim <= {ATT_MAX_PAIRS}; this model has group {group}, head_dim {hd}"
            )));
        }
        let tile = 128.min(ATT_KV_TILE / hd).min(ATT_SCORES / group).max(1);
        if forced_split == Some(0) {
            return Err(GqaError::Invalid("the attention split must be at least 1 position".into()));
        }
        // attention_split keeps T x splits below 2 x target / G, unless the splits are
        // already the longest; a forced split allows any T x ceil(capacity / split).
        let split_rows = |split: usize| max_batch * capacity.div_ceil(split);
        let max_split_rows = match forced_split {
            Some(split) => split_rows(split),
            None => split_rows(MIN_SPLIT).min((2 * target_workgroups).div_ceil(n_kv_heads).max(split_rows(MAX_SPLIT))),
        };        Ok(Dims {
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
            target_workgroups,
            forced_split,
            max_split_rows,
            tile,
            lanes_h: (ATT_WG / group).min(8),
            lanes_p: floor_pow2((ATT_WG / (group * hd)).max(1)),
            eps: c.rms_norm_eps,
        })
    }

    /// The split length for `t` new tokens attending to `n_ctx` positions: the longest
    /// split (fewer partial results to merge) that still launches `target_workgroups`
    /// attention workgroups (G x splits x T), so that a decode step at batch 1 fills the
    /// device even with one KV head; 32 positions at least, 1024 at most.
    pub fn attention_split(&self, n_ctx: usize, t: usize) -> usize {
        if let Some(split) = self.forced_split {
            return split;
        }
        let workgroups = |split: usize| self.n_kv_heads * n_ctx.div_ceil(split) * t;
        let mut split = MIN_SPLIT;
        while split < MAX_SPLIT && workgroups(2 * split) >= self.target_workgroups {
            split *= 2;
        }
        split
    }
}

pub struct Layer {
    pub input_norm: GpuBuffer,
    pub wq: GpuMatrix,
    pub wk: GpuMatrix,
    pub wv: GpuMatrix,
    pub wo: GpuMatrix,
    pub post_norm: GpuBuffer,
    pub gate: GpuMatrix,
    pub up: GpuMatrix,
    pub down: GpuMatrix,
    /// (G, capacity, hd) each, f32 or packed f16.
    pub k_cache: GpuBuffer,
    pub v_cache: GpuBuffer,
}

/// Everything allocated for one model: weights, KV cache, activations.
pub struct Resident {
    pub dims: Dims,
    pub embed: GpuMatrix,
    /// `None`: tied to `embed`.
    pub lm_head: Option<GpuMatrix>,
    pub norm: GpuBuffer,
    pub layers: Vec<Layer>,
    pub rope_table: GpuBuffer, // (capacity, hd/2) of (cos, sin)
    pub tokens: GpuBuffer,     // (B) u32
    pub x: GpuBuffer,          // (B, dim_pad) residual stream
    pub xb: GpuBuffer,         // (B, dim_pad) normed
    pub q: GpuBuffer,          // (B, q_pad)
    pub k: GpuBuffer,          // (B, kv_pad)
    pub v: GpuBuffer,          // (B, kv_pad)
    pub att: GpuBuffer,        // (B, q_pad) attention output
    pub proj: GpuBuffer,       // (B, dim_pad) wo / down output
    pub gate: GpuBuffer,       // (B, ffn_pad)
    pub up: GpuBuffer,         // (B, ffn_pad)
    pub partial: GpuBuffer,    // (T, H, n_splits, 2 + hd) with T x n_splits <= max_split_rows
    pub logits: GpuBuffer,     // (B, vocab)
    pub argmax: GpuBuffer,     // (4) u32
    pub timestamps: GpuBuffer, // 2 x u64, resolved queries
    pub readback: GpuBuffer,   // MAP_READ: [timestamps 16 B | argmax 16 B | logits]
    pub params: GpuBuffer,     // one slot per dispatch
    /// The attention probe, while it is on: (layers, H, capacity) weights of the last
    /// token, and a MAP_READ buffer for one layer's (H, capacity).
    pub probe: Option<(GpuBuffer, GpuBuffer)>,
}

/// Offsets in the read-back buffer.
pub const READ_ARGMAX: u64 = 16;
pub const READ_LOGITS: u64 = 32;

impl Resident {
    /// Bytes of the weight matrices (the norms aside).
    pub fn weight_bytes(&self) -> u64 {
        let blocks = self.layers.iter().flat_map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.gate, &l.up, &l.down]);
        blocks.chain([&self.embed]).chain(&self.lm_head).map(|m| m.bytes()).sum()
    }

    pub fn kv_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.k_cache.bytes() + l.v_cache.bytes()).sum()
    }

    /// Upload `m`'s weights and allocate its KV cache of `capacity` positions and the
    /// activations for `options.max_batch` tokens, checking every buffer against the
    /// device's binding limit first.
    pub fn new(ctx: &GpuContext, alloc: &Allocator, m: &Model, options: &GpuOptions, capacity: usize) -> Result<Resident> {
        let c = &m.config;
        let dims = Dims::new(c, capacity, options.max_batch, ctx.target_workgroups(), options.attention_split)?;
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let vector = |name: &str, v: &[f32]| alloc.with_data(&ctx.device, name, &f32_bytes(v), storage);
        if options.kv_dtype == KvDType::I8 && !dims.hd.is_multiple_of(4) {
            return Err(GqaError::Invalid(format!("an int8 KV cache on the GPU packs four elements per word: head_dim {} is not a multiple of 4; use f16 or f32", dims.hd)));
        }
        let kv_bytes = (dims.n_kv_heads * dims.capacity * options.kv_dtype.vector_bytes(dims.hd)) as u64;
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
        let rope = crate::rope::Rope::new(dims.hd, c.rope_theta);
        let mut table = Vec::with_capacity(dims.capacity * dims.hd);
        for pos in 0..dims.capacity {
            let (cos, sin) = rope.angles(pos);
            table.extend(cos.iter().zip(&sin).flat_map(|(c, s)| [*c, *s]));
        }

        let b = options.max_batch as u64;
        let act = |name: &str, width: usize| alloc.zeroed(&ctx.device, name, b * width as u64 * 4, storage);
        let zeroed = |name: &str, bytes: u64, usage| alloc.zeroed(&ctx.device, name, bytes, usage);
        let read_bytes = READ_LOGITS + b * dims.vocab as u64 * 4;
        for (name, bytes) in [
            ("logits", b * dims.vocab as u64 * 4),
            ("attention partials", (dims.n_heads * dims.max_split_rows * (2 + dims.hd)) as u64 * 4),
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
            partial: zeroed("partial", (dims.n_heads * dims.max_split_rows * (2 + dims.hd)) as u64 * 4, storage),
            logits: act("logits", dims.vocab),
            argmax: zeroed("argmax", 16, storage),
            timestamps: zeroed("timestamps", 16, wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            readback: zeroed("readback", read_bytes, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
            params: zeroed("params", 256 * 64, wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST),
            probe: None,
            dims,
        })
    }

    /// Allocate the attention probe's buffers (on) or free them (off), checked against
    /// the binding limit first.
    pub fn set_probe(&mut self, ctx: &GpuContext, alloc: &Allocator, on: bool) -> Result<()> {
        if !on {
            self.probe = None;
            return Ok(());
        }
        if self.probe.is_none() {
            let d = &self.dims;
            let layer_bytes = (d.n_heads * d.capacity * 4) as u64;
            let bytes = layer_bytes * self.layers.len() as u64;
            if bytes > ctx.max_binding() {
                return Err(GqaError::Backend(format!(
                    "the attention probe needs {bytes} bytes, more than this GPU's max storage buffer binding of {} bytes; use a smaller context",
                    ctx.max_binding()
                )));
            }
            let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
            let read = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
            self.probe = Some((alloc.zeroed(&ctx.device, "attention probe", bytes, storage), alloc.zeroed(&ctx.device, "probe read-back", layer_bytes, read)));
        }
        Ok(())
    }

    /// Fill positions 0..len of the KV cache with random values (the same values the
    /// CPU engine's `fill_synthetic` uses), for benchmarks at long context.
    pub fn fill_synthetic(&self, queue: &wgpu::Queue, kv_dtype: KvDType, len: usize, seed: u64) {
        let d = &self.dims;
        let mut rng = Rng::new(seed);
        for layer in &self.layers {
            for h in 0..d.n_kv_heads {
                let offset = (h * d.capacity * kv_dtype.vector_bytes(d.hd)) as u64;
                // The CPU cache's draw order (kv_cache.rs): for each head_dim row d,
                // the keys' then the values' positions; stored here (position, d).
                let mut kv = [vec![0.0f32; len * d.hd], vec![0.0f32; len * d.hd]];
                for i in 0..d.hd {
                    for values in kv.iter_mut() {
                        for pos in 0..len {
                            values[pos * d.hd + i] = rng.normal();
                        }
                    }
                }
                for (cache, values) in [&layer.k_cache, &layer.v_cache].into_iter().zip(&kv) {
                    let bytes = match kv_dtype {
                        KvDType::F32 => f32_bytes(values),
                        KvDType::F16 => values.iter().flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes()).collect(),
                        // One record per position: the scale, then the int8 elements.
                        KvDType::I8 => values
                            .chunks(d.hd)
                            .flat_map(|x| SYNTHETIC_I8_SCALE.to_le_bytes().into_iter().chain(x.iter().map(|&v| synthetic_i8(v) as u8)))
                            .collect(),
                    };
                    if !bytes.is_empty() {
                        queue.write_buffer(cache, offset, &bytes);
                    }
                }
            }
        }
    }
}
