//! The CPU engine: the whole forward pass, top to bottom, for a batch of new
//! tokens (a prompt prefill, or one token while decoding).
//!
//! Shapes: T new tokens, dim = hidden_size, H query heads, G key/value heads,
//! hd = head_dim, group size H/G, ffn = intermediate_size.
//!
//! A decode step has no fixed costs beyond the bytes it must read: the buffers
//! live in the engine (allocated once per model and batch size), RoPE angles
//! come from a table, and work is split across threads only where it is large
//! enough to pay for waking them, in few regions per layer (q/k/v together,
//! gate/up together, all attention tasks together).
//!
//! The attention algorithm itself (chunks of the cache, their merge, the probe)
//! is in [`attention`].

mod attention;

use crate::backend::{AttentionWeights, Backend, EngineOptions, Logits};
use attention::{attention_task_len, attention_weights, grouped_attention, ATTENTION_CHUNK};
use crate::config::{kv_cache_bytes, Config};
use crate::error::{GqaError, Result};
use crate::kernels::{on_pool, threads};
use crate::matmul::{matmul, matmul_swiglu, MatmulScratch, QuantActivations};
use crate::kv_cache::KvCache;
use crate::model::{Block, Model};
use crate::rope::RopeTable;
use crate::sampler::argmax;
use crate::tensor::{DType, KvDType, Matrix};

/// Bytes of work below which an operation runs on the calling thread: a matrix
/// product counts its weights' bytes once per token it computes (see
/// [`product_work`]), attention the cache bytes it reads once per query head
/// ([`layer_attention_work`]). Waking the other
/// threads costs tens of microseconds natively, the time one core takes to
/// stream a few hundred KiB.
#[cfg(not(target_arch = "wasm32"))]
pub const MIN_PARALLEL_BYTES: usize = 256 << 10;
/// In the browser a hand-off between Web Workers costs several times more, so
/// work is split from 2 MiB (below it, 2 threads were slower than one on the
/// shipped base: docs/BENCHMARKS.md).
#[cfg(target_arch = "wasm32")]
pub const MIN_PARALLEL_BYTES: usize = 2 << 20;

/// In the wasm build, f16 weights whose f32 copy takes at most this many bytes are
/// widened to f32 once, when the engine takes the model. simd128 has no f16
/// conversion instruction: converting each weight as it is read (a dozen integer
/// and float operations per four) costs more time than the bytes it saves, even
/// from memory (docs/BENCHMARKS.md). Larger models stay f16, for the tab's
/// memory. Natively F16C converts in the load, and f16 stays f16.
pub const WASM_WIDEN_MAX_BYTES: usize = 256 << 20;

/// The weights this engine computes with (see [`WASM_WIDEN_MAX_BYTES`]), and the
/// model they were widened from, if they were. `previous` is the engine's last such
/// pair: its widened matrices are reused wherever the new model shares them, so that
/// a change of G widens only the new wk and wv.
fn engine_weights(model: Model, previous: Option<(&Model, &Model)>) -> (Model, Option<Model>) {
    let widen = cfg!(target_arch = "wasm32") && model.dtype() == DType::F16 && 2 * model.weight_bytes() <= WASM_WIDEN_MAX_BYTES;
    if !widen {
        return (model, None);
    }
    let widened = match previous {
        Some((from, done)) => model.to_dtype_reusing(DType::F32, from, done),
        None => model.to_dtype(DType::F32),
    };
    (widened, Some(model))
}

pub struct CpuEngine {
    model: Model,
    /// The model as given, where `model` is its widened copy (wasm, f16).
    source: Option<Model>,
    cache: KvCache,
    /// cos/sin of every position the cache can hold.
    rope: RopeTable,
    scratch: Scratch,
    /// See [`MIN_PARALLEL_BYTES`] and [`CpuEngine::set_min_parallel_bytes`].
    min_parallel_bytes: usize,
    /// Positions already in the KV cache (the context used).
    pos: usize,
    /// The attention probe: when on, each layer's weights for the last token of the
    /// last forward pass (see [`Backend::attention`]).
    probe: Option<Vec<AttentionWeights>>,
}

/// The buffers of one forward pass, sized for `batch` tokens and grown when a
/// longer prompt comes; decoding allocates nothing.
#[derive(Default)]
struct Scratch {
    batch: usize,
    x: Vec<f32>,      // (T, dim) the residual stream
    xb: Vec<f32>,     // (T, dim) a sublayer's normed input
    qkv: Vec<f32>,    // (T, H*hd + 2*G*hd) each token's query | key | value
    att: Vec<f32>,    // (T, H*hd) attention output
    hb: Vec<f32>,     // (T, ffn) silu(gate) * up
    proj: Vec<f32>,   // (T, dim) output of wo and of down
    logits: Vec<f32>, // (T, vocab)
    /// The matrix products' buffers, and how they treat activations on
    /// quantized weights (`EngineOptions::quant_activations`).
    matmul: MatmulScratch,
    /// One [`attention_task_len`] slot per (KV head, chunk) attention task.
    attention: Vec<f32>,
}

impl Scratch {
    fn new(c: &Config, capacity: usize) -> Scratch {
        let tasks = c.n_kv_heads() * capacity.div_ceil(ATTENTION_CHUNK);
        Scratch { attention: vec![0.0; tasks * attention_task_len(c)], ..Scratch::default() }
    }

    /// Make room for a batch of `t` tokens.
    fn grow(&mut self, c: &Config, t: usize) {
        if t <= self.batch {
            return;
        }
        let (dim, q_dim, kv_dim) = (c.hidden_size, c.n_heads() * c.head_dim(), c.n_kv_heads() * c.head_dim());
        self.batch = t;
        self.x.resize(t * dim, 0.0);
        self.xb.resize(t * dim, 0.0);
        self.qkv.resize(t * (q_dim + 2 * kv_dim), 0.0);
        self.att.resize(t * q_dim, 0.0);
        self.hb.resize(t * c.intermediate_size, 0.0);
        self.proj.resize(t * dim, 0.0);
        self.logits.resize(t * c.vocab_size, 0.0);
    }
}

impl CpuEngine {
    /// An engine whose KV cache holds `capacity` positions (G heads each, f32).
    pub fn new(model: Model, capacity: usize) -> Result<CpuEngine> {
        CpuEngine::with_options(model, capacity, EngineOptions::default())
    }

    /// An engine whose KV cache holds `capacity` positions in `options.kv_dtype` (f32 when unset).
    pub fn with_options(model: Model, capacity: usize, options: EngineOptions) -> Result<CpuEngine> {
        CpuEngine::open(model, None, capacity, options)
    }

    /// [`CpuEngine::with_options`], reusing `previous` widened weights (see [`engine_weights`]).
    fn open(model: Model, previous: Option<(&Model, &Model)>, capacity: usize, options: EngineOptions) -> Result<CpuEngine> {
        let (model, source) = engine_weights(model, previous);
        let cache = KvCache::new(&model.config, capacity, options.cpu_kv_dtype())?;
        let c = &model.config;
        let rope = RopeTable::new(c.head_dim(), c.rope_theta, capacity);
        let mut scratch = Scratch::new(c, capacity);
        scratch.matmul.activations = options.quant_activations;
        Ok(CpuEngine { model, source, cache, rope, scratch, min_parallel_bytes: MIN_PARALLEL_BYTES, pos: 0, probe: None })
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    pub fn config(&self) -> &Config {
        &self.model.config
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    /// Split an operation across threads only from this many bytes of work
    /// (see [`MIN_PARALLEL_BYTES`]; 0: always, when there are several threads; `usize::MAX`: never). The
    /// result is the same either way: each output is computed by the same code.
    pub fn set_min_parallel_bytes(&mut self, bytes: usize) {
        self.min_parallel_bytes = bytes;
    }

    /// How products on block-quantized weights treat their input, as the engine was
    /// opened with (`EngineOptions::quant_activations`): [`QuantActivations::Exact`]
    /// (f32, the default) or [`QuantActivations::Int8`] (llama.cpp's way, faster).
    pub fn quant_activations(&self) -> QuantActivations {
        self.scratch.matmul.activations
    }

    /// Forget the context (the cache is overwritten from position 0).
    pub fn reset(&mut self) {
        self.pos = 0;
        if let Some(p) = &mut self.probe {
            p.clear();
        }
    }

    /// Swap in a model (e.g. after converting to another G); the KV cache is
    /// reallocated for its G heads and the context starts over.
    pub fn set_model(&mut self, model: Model) -> Result<()> {
        let capacity = self.cache.capacity();
        let options = EngineOptions { kv_dtype: Some(self.cache.dtype()), quant_activations: self.quant_activations() };
        let probe = self.probe.as_ref().map(|_| Vec::new());
        let previous = self.source.as_ref().map(|source| (source, &self.model));
        *self = CpuEngine { min_parallel_bytes: self.min_parallel_bytes, probe, ..CpuEngine::open(model, previous, capacity, options)? };
        Ok(())
    }

    /// Pretend `len` positions were already decoded, with random keys/values
    /// (benchmarks decode at long context without a long prefill).
    pub fn fill_synthetic(&mut self, len: usize, seed: u64) -> Result<()> {
        if len >= self.cache.capacity() {
            return Err(GqaError::ContextFull { pos: len, context: self.cache.capacity() });
        }
        self.cache.fill_synthetic(len, seed);
        self.reset();
        self.pos = len;
        Ok(())
    }

    /// Run `tokens` through the model at positions pos..pos+T, appending their
    /// keys and values to the cache. Returns logits (see [`Logits`]).
    pub fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>> {
        on_pool(self.splits_work(tokens.len()), || Ok(self.run(tokens, which)?.to_vec()))
    }

    /// [`CpuEngine::forward`] for greedy decoding: the argmax of the last logits.
    pub fn forward_argmax(&mut self, tokens: &[u32]) -> Result<u32> {
        on_pool(self.splits_work(tokens.len()), || Ok(argmax(self.run(tokens, Logits::Last)?)))
    }

    /// Whether a forward pass of `t_new` tokens splits any of its work across
    /// threads: its largest piece (a layer's q/k/v, gate/up or other product, the
    /// classifier on one token, or one layer's attention) reaches the threshold of `run`.
    fn splits_work(&self, t_new: usize) -> bool {
        let (c, m) = (&self.model.config, &self.model);
        let n_ctx = (self.pos + t_new).min(self.cache.capacity());
        let attention = layer_attention_work(c, &self.cache, n_ctx);
        let classifier = product_work(&[m.classifier()], 1);
        let largest = m.blocks.iter().flat_map(|b| block_work(b, t_new)).fold(attention.max(classifier), usize::max);
        threads() > 1 && largest >= self.min_parallel_bytes
    }

    /// The forward pass; the logits it returns live in the engine's scratch.
    fn run(&mut self, tokens: &[u32], which: Logits) -> Result<&[f32]> {
        let c = &self.model.config;
        let (t_new, dim, vocab) = (tokens.len(), c.hidden_size, c.vocab_size);
        if t_new == 0 {
            return Err(GqaError::Invalid("forward needs at least one token".into()));
        }
        if self.pos + t_new > self.cache.capacity() {
            return Err(GqaError::ContextFull { pos: self.pos + t_new, context: self.cache.capacity() });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(GqaError::BadToken { token: bad, vocab });
        }
        self.scratch.grow(&self.model.config, t_new);
        let CpuEngine { model, cache, rope, scratch, min_parallel_bytes, pos, probe, .. } = self;
        if let Some(p) = probe {
            p.clear();
        }
        let c = &model.config;
        let (q_dim, kv_dim) = (c.n_heads() * c.head_dim(), c.n_kv_heads() * c.head_dim());
        let qkv_dim = q_dim + 2 * kv_dim;
        let eps = c.rms_norm_eps;
        // Whether `bytes` of work (see MIN_PARALLEL_BYTES) run on several threads.
        let (n_threads, min_bytes) = (threads(), *min_parallel_bytes);
        let par = |bytes: usize| n_threads > 1 && bytes >= min_bytes;
        let Scratch { x, xb, qkv, att, hb, proj, logits, matmul: mm, attention, .. } = scratch;
        let (x, xb, proj) = (&mut x[..t_new * dim], &mut xb[..t_new * dim], &mut proj[..t_new * dim]);
        let (qkv, att, hb) = (&mut qkv[..t_new * qkv_dim], &mut att[..t_new * q_dim], &mut hb[..t_new * c.intermediate_size]);

        // x: (T, dim) the residual stream, starting from the token embeddings.
        for (row, &tok) in x.chunks_exact_mut(dim).zip(tokens) {
            model.embed.row_into(tok as usize, row);
        }
        for (layer, block) in model.blocks.iter().enumerate() {
            let (a, mlp) = (&block.attn, &block.mlp);
            // ---- attention: x += wo(attention(rope(wq xb), rope(wk xb), wv xb)) ----
            rms_norm_rows(x, &block.input_norm, eps, xb);
            let [qkv_bytes, wo_bytes, gate_up_bytes, down_bytes] = block_work(block, t_new);
            matmul(&[&a.wq, &a.wk, &a.wv], xb, t_new, qkv, mm, par(qkv_bytes)); // (T, H*hd | G*hd | G*hd)
            for (t, row) in qkv.chunks_exact_mut(qkv_dim).enumerate() {
                let (q, kv) = row.split_at_mut(q_dim);
                let (k, v) = kv.split_at_mut(kv_dim);
                rope.apply(q, *pos + t);
                rope.apply(k, *pos + t);
                cache.store(layer, *pos + t, k, v);
            }
            for (t, (row, out)) in qkv.chunks_exact(qkv_dim).zip(att.chunks_exact_mut(q_dim)).enumerate() {
                // Causal: the token at pos + t attends to positions 0..=pos + t.
                let n_ctx = *pos + t + 1;
                let work = layer_attention_work(c, cache, n_ctx);
                grouped_attention(c, cache, layer, n_ctx, &row[..q_dim], out, attention, par(work));
                if let (Some(p), true) = (probe.as_mut(), t + 1 == t_new) {
                    p.push(attention_weights(c, cache, layer, n_ctx, &row[..q_dim]));
                }
            }
            matmul(&[&a.wo], att, t_new, proj, mm, par(wo_bytes)); // (T, dim)
            add_into(x, proj);

            // ---- feed-forward: x += down(silu(gate xb) * up xb) ----
            rms_norm_rows(x, &block.post_attention_norm, eps, xb);
            matmul_swiglu(&mlp.gate, &mlp.up, xb, t_new, hb, mm, par(gate_up_bytes)); // (T, ffn)
            matmul(&[&mlp.down], hb, t_new, proj, mm, par(down_bytes)); // (T, dim)
            add_into(x, proj);
        }
        *pos += t_new;

        // ---- final norm and classifier ----
        let first = match which {
            Logits::Last => t_new - 1,
            Logits::All => 0,
        };
        let n_out = t_new - first;
        let normed = &mut xb[..n_out * dim];
        rms_norm_rows(&x[first * dim..], &model.norm, eps, normed);
        let logits = &mut logits[..n_out * vocab];
        let classifier = model.classifier();
        matmul(&[classifier], normed, n_out, logits, mm, par(product_work(&[classifier], n_out))); // (n_out, vocab)
        Ok(logits)
    }
}

impl Backend for CpuEngine {
    fn name(&self) -> String {
        format!("cpu ({})", crate::kernels::simd_name())
    }
    fn model(&self) -> &Model {
        CpuEngine::model(self)
    }
    fn set_model(&mut self, model: Model) -> Result<()> {
        CpuEngine::set_model(self, model)
    }
    fn forward(&mut self, tokens: &[u32], which: Logits) -> Result<Vec<f32>> {
        CpuEngine::forward(self, tokens, which)
    }
    fn forward_argmax(&mut self, tokens: &[u32]) -> Result<u32> {
        CpuEngine::forward_argmax(self, tokens)
    }
    fn pos(&self) -> usize {
        CpuEngine::pos(self)
    }
    fn capacity(&self) -> usize {
        self.cache.capacity()
    }
    fn reset(&mut self) {
        CpuEngine::reset(self)
    }
    fn fill_synthetic(&mut self, len: usize, seed: u64) -> Result<()> {
        CpuEngine::fill_synthetic(self, len, seed)
    }
    fn kv_bytes_allocated(&self) -> usize {
        self.cache.bytes()
    }
    fn set_attention_probe(&mut self, on: bool) -> Result<()> {
        self.probe = on.then(Vec::new);
        Ok(())
    }
    fn attention(&mut self, layer: usize) -> Result<Option<AttentionWeights>> {
        let layers = self.model.config.num_hidden_layers;
        if layer >= layers {
            return Err(GqaError::Invalid(format!("layer {layer} does not exist: the model has layers 0 to {}", layers - 1)));
        }
        Ok(self.probe.as_ref().and_then(|p| p.get(layer).cloned()))
    }
    fn kv_dtype(&self) -> KvDType {
        self.cache.dtype()
    }
}

/// The work of each matrix product of a block on `t` tokens, one parallel region each
/// in `run`: q/k/v together, wo, gate/up together, down (see [`product_work`]).
fn block_work(b: &Block, t: usize) -> [usize; 4] {
    let (a, f) = (&b.attn, &b.mlp);
    [product_work(&[&a.wq, &a.wk, &a.wv], t), product_work(&[&a.wo], t), product_work(&[&f.gate, &f.up], t), product_work(&[&f.down], t)]
}

/// The work of a product of the matrices `ws` with `t` tokens, in bytes: their bytes
/// once per token. Each weight meets every token in a multiply-add, so a prompt's
/// prefill does t times a decode step's arithmetic on the same weights, and splits
/// across threads even where a decode step's product is too small to.
fn product_work(ws: &[&Matrix], t: usize) -> usize {
    ws.iter().map(|w| w.bytes()).sum::<usize>().saturating_mul(t)
}

/// The work of one layer's attention at `n_ctx` positions: the cache bytes it reads,
/// once per query head that reads them (each does its own arithmetic on them). Bytes
/// alone would keep MQA's attention on one thread where MHA's, with the same
/// arithmetic, is split (SmolLM2 at 8192 positions: 2 MiB of f16 cache a layer).
fn layer_attention_work(c: &Config, cache: &KvCache, n_ctx: usize) -> usize {
    kv_cache_bytes(c, c.n_kv_heads(), n_ctx, cache.dtype()) / c.num_hidden_layers * c.group_size()
}

/// RMSNorm of each row of x (rows of w.len()): x / sqrt(mean(x^2) + eps) * w.
pub fn rms_norm_rows(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, xv), wv) in or.iter_mut().zip(xr).zip(w) {
            *o = wv * (xv * inv);
        }
    }
}

fn add_into(x: &mut [f32], y: &[f32]) {
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}
