//! The KV cache, sized for G key/value heads (never expanded to H), stored in
//! f32, f16 (half the bytes per decode step; the attention kernels convert f16
//! rows as they read them) or int8 (a quarter, plus one f32 scale per position
//! and head for the keys and one for the values; see [`quantize_i8`]).
//!
//! Layout: layer x kv_head x block: each head's keys and values are stored in
//! blocks of [`BLOCK`] positions, one buffer per layer and head. A buffer's
//! memory is reserved when the cache is made and written only block by block
//! as positions are stored: opening an engine with a long context touches none
//! of it (SmolLM2's 8192 positions in f16 are 189 MB). A key block is transposed (head_dim rows, row
//! d holding dimension d of the block's positions), so that the scores q . k
//! vectorize along positions; a value block is one row per position (len x
//! head_dim), so that the weighted sum of values vectorizes along head_dim and
//! needs no horizontal sums (see kernels/attention.rs). Either is read once per token for
//! all H/G query heads of its group. A block is one contiguous piece of memory
//! (16 KiB for head_dim 16 in f32): rows a whole context apart would share
//! cache sets and evict each other while the kernel reads all of them at once.

use half::f16;

use crate::config::{kv_cache_bytes_checked, Config};
use crate::error::{GqaError, Result};
use crate::rng::Rng;
use crate::tensor::KvDType;

/// Keys and values in the cache's precision, one buffer per layer and head (layer * G +
/// head), each (blocks, head_dim, block), the last block as long as what remains of the
/// capacity; int8's scales, one buffer per layer and head of (capacity). Each holds the
/// blocks in use so far (see [`KvCache::grow_to`]) and has room for all.
#[derive(Clone, Debug)]
enum Store {
    F32 { k: Heads<f32>, v: Heads<f32> },
    F16 { k: Heads<f16>, v: Heads<f16> },
    I8 { k: Heads<i8>, v: Heads<i8>, k_scale: Heads<f32>, v_scale: Heads<f32> },
}

/// One buffer per layer and head.
type Heads<T> = Vec<Vec<T>>;

/// `heads` empty buffers with room for `len` elements each, or an error in words when the
/// memory is not there: in a browser tab an allocation that fails must not abort the
/// module (and lose the loaded model). Reserved only: pages are written as positions come.
fn reserved<T>(heads: usize, len: usize) -> Result<Heads<T>> {
    (0..heads)
        .map(|_| {
            let mut head = Vec::new();
            head.try_reserve_exact(len).map_err(|_| {
                GqaError::Invalid(format!("out of memory: the KV cache could not get {} MiB more", (len * std::mem::size_of::<T>()) >> 20))
            })?;
            Ok(head)
        })
        .collect()
}

/// Symmetric int8 quantization of one head's keys or values at one position:
/// `scale = max |x| / 127` and `q[d] = round(x[d] / scale)` (ties to even, as WGSL's
/// `round`), so that `scale * q[d]` is within `scale / 2` of `x[d]`. An all-zero
/// vector gets scale 0. Returns the scale; writes q through `out(d, q)`.
pub fn quantize_i8(x: &[f32], mut out: impl FnMut(usize, i8)) -> f32 {
    let scale = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
    for (d, &v) in x.iter().enumerate() {
        out(d, if scale > 0.0 { code(v, scale) } else { 0 });
    }
    scale
}

/// x / scale rounded to the nearest integer (ties to even), within -127..=127.
fn code(x: f32, scale: f32) -> i8 {
    (x / scale).round_ties_even().clamp(-127.0, 127.0) as i8
}

/// The scale of the synthetic int8 cache (`fill_synthetic`): its values are drawn from
/// a standard normal, so 4 / 127 covers them to 4 sigma (beyond is clamped).
pub const SYNTHETIC_I8_SCALE: f32 = 4.0 / 127.0;

/// An int8 element of the synthetic cache.
pub fn synthetic_i8(x: f32) -> i8 {
    code(x, SYNTHETIC_I8_SCALE)
}

/// Positions per block of the cache, and per attention task.
pub const BLOCK: usize = 256;

/// The keys and values of one block of one head: keys (head_dim x len), row d
/// at `d * len`; values (len x head_dim), position p at `p * head_dim`. len is
/// [`BLOCK`] or, for the last block, what remains of the capacity.
pub enum BlockKv<'a> {
    F32(&'a [f32], &'a [f32]),
    F16(&'a [f16], &'a [f16]),
    /// Keys, values, and their scales (one per position of the block).
    I8 { k: &'a [i8], v: &'a [i8], k_scale: &'a [f32], v_scale: &'a [f32] },
}

#[derive(Clone, Debug)]
pub struct KvCache {
    n_layers: usize,
    n_kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    store: Store,
}

impl KvCache {
    /// A cache for `capacity` positions (at most the model's context) in `dtype`.
    pub fn new(config: &Config, capacity: usize, dtype: KvDType) -> Result<KvCache> {
        if capacity == 0 || capacity > config.max_position_embeddings {
            return Err(GqaError::Invalid(format!(
                "KV cache capacity {capacity} must be between 1 and the context {}",
                config.max_position_embeddings
            )));
        }
        // Checked against the memory budget before allocating.
        kv_cache_bytes_checked(config, config.n_kv_heads(), capacity, dtype)?;
        // Each head's elements in each of k and v, and its positions (scales): room
        // reserved, nothing written (see `grow_to`).
        let (heads, len) = (config.num_hidden_layers * config.n_kv_heads(), capacity * config.head_dim());
        let store = match dtype {
            KvDType::F32 => Store::F32 { k: reserved(heads, len)?, v: reserved(heads, len)? },
            KvDType::F16 => Store::F16 { k: reserved(heads, len)?, v: reserved(heads, len)? },
            KvDType::I8 => Store::I8 { k: reserved(heads, len)?, v: reserved(heads, len)?, k_scale: reserved(heads, capacity)?, v_scale: reserved(heads, capacity)? },
        };
        Ok(KvCache { n_layers: config.num_hidden_layers, n_kv_heads: config.n_kv_heads(), head_dim: config.head_dim(), capacity, store })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn dtype(&self) -> KvDType {
        match self.store {
            Store::F32 { .. } => KvDType::F32,
            Store::F16 { .. } => KvDType::F16,
            Store::I8 { .. } => KvDType::I8,
        }
    }

    /// Bytes allocated: what the key and value buffers (and scales) hold room for.
    pub fn bytes(&self) -> usize {
        fn held<T>(heads: &Heads<T>) -> usize {
            heads.iter().map(|v| v.capacity() * std::mem::size_of::<T>()).sum()
        }
        match &self.store {
            Store::F32 { k, v } => held(k) + held(v),
            Store::F16 { k, v } => held(k) + held(v),
            Store::I8 { k, v, k_scale, v_scale } => held(k) + held(v) + held(k_scale) + held(v_scale),
        }
    }

    /// The buffer of a layer's head, in each of `Store`'s lists.
    fn head_index(&self, layer: usize, head: usize) -> usize {
        layer * self.n_kv_heads + head
    }

    /// Where block `block` starts in a head's buffer, and its row length.
    fn block_at(&self, block: usize) -> (usize, usize) {
        (block * BLOCK * self.head_dim, BLOCK.min(self.capacity - block * BLOCK))
    }

    /// Make room in the buffers of a layer's heads for the blocks up to the one holding
    /// `pos`, zeroed.
    fn grow_to(&mut self, layer: usize, pos: usize) {
        let positions = ((pos / BLOCK + 1) * BLOCK).min(self.capacity);
        let (len, heads) = (positions * self.head_dim, self.head_index(layer, 0)..self.head_index(layer + 1, 0));
        match &mut self.store {
            Store::F32 { k, v } => [k, v].into_iter().for_each(|x| x[heads.clone()].iter_mut().for_each(|x| grow(x, len))),
            Store::F16 { k, v } => [k, v].into_iter().for_each(|x| x[heads.clone()].iter_mut().for_each(|x| grow(x, len))),
            Store::I8 { k, v, k_scale, v_scale } => {
                [k, v].into_iter().for_each(|x| x[heads.clone()].iter_mut().for_each(|x| grow(x, len)));
                [k_scale, v_scale].into_iter().for_each(|x| x[heads.clone()].iter_mut().for_each(|x| grow(x, positions)));
            }
        }
    }

    /// Where dimension 0 of position pos is stored in a head's key buffer, and where
    /// in its value buffer, and the key row length: key dimension d is `row_len * d`
    /// further on, value dimension d is d further on.
    fn position_at(&self, pos: usize) -> (usize, usize, usize) {
        let (start, row_len) = self.block_at(pos / BLOCK);
        (start + pos % BLOCK, start + pos % BLOCK * self.head_dim, row_len)
    }

    /// Store the keys and values (each G x head_dim) of one position.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        self.grow_to(layer, pos);
        let (at, v_at, row_len) = self.position_at(pos);
        for h in 0..self.n_kv_heads {
            let (src_k, src_v) = (&k[h * hd..(h + 1) * hd], &v[h * hd..(h + 1) * hd]);
            let i = self.head_index(layer, h);
            match &mut self.store {
                Store::F32 { k, v } => {
                    for d in 0..hd {
                        k[i][at + d * row_len] = src_k[d];
                    }
                    v[i][v_at..v_at + hd].copy_from_slice(src_v);
                }
                Store::F16 { k, v } => {
                    for d in 0..hd {
                        k[i][at + d * row_len] = f16::from_f32(src_k[d]);
                        v[i][v_at + d] = f16::from_f32(src_v[d]);
                    }
                }
                Store::I8 { k, v, k_scale, v_scale } => {
                    let (k, v) = (&mut k[i], &mut v[i]);
                    k_scale[i][pos] = quantize_i8(src_k, |d, q| k[at + d * row_len] = q);
                    v_scale[i][pos] = quantize_i8(src_v, |d, q| v[v_at + d] = q);
                }
            }
        }
    }

    /// Keys and values of block `block` (positions block * BLOCK..) of one
    /// head, and the block's row length (see [`BlockKv`]). The block must hold a
    /// stored position.
    pub fn block(&self, layer: usize, head: usize, block: usize) -> (BlockKv<'_>, usize) {
        let ((start, row_len), i) = (self.block_at(block), self.head_index(layer, head));
        let range = start..start + self.head_dim * row_len;
        let kv = match &self.store {
            Store::F32 { k, v } => BlockKv::F32(&k[i][range.clone()], &v[i][range]),
            Store::F16 { k, v } => BlockKv::F16(&k[i][range.clone()], &v[i][range]),
            Store::I8 { k, v, k_scale, v_scale } => {
                let scales = block * BLOCK..block * BLOCK + row_len;
                BlockKv::I8 { k: &k[i][range.clone()], v: &v[i][range], k_scale: &k_scale[i][scales.clone()], v_scale: &v_scale[i][scales] }
            }
        };
        (kv, row_len)
    }

    /// Fill positions 0..len with random values (for benchmarks at long context);
    /// int8 stores them at the fixed [`SYNTHETIC_I8_SCALE`].
    pub fn fill_synthetic(&mut self, len: usize, seed: u64) {
        if len == 0 {
            return;
        }
        for layer in 0..self.n_layers {
            self.grow_to(layer, len - 1);
        }
        if let Store::I8 { k_scale, v_scale, .. } = &mut self.store {
            for head in k_scale.iter_mut().chain(v_scale.iter_mut()) {
                head[..len].fill(SYNTHETIC_I8_SCALE);
            }
        }
        let mut rng = Rng::new(seed);
        let mut values = vec![0.0f32; len];
        let hd = self.head_dim;
        for layer in 0..self.n_layers {
            for h in 0..self.n_kv_heads {
                for d in 0..hd {
                    for half in 0..2 {
                        values.iter_mut().for_each(|x| *x = rng.normal());
                        let i = self.head_index(layer, h);
                        for (pos, &x) in values.iter().enumerate() {
                            let (k_at, v_at, row_len) = self.position_at(pos);
                            // Key dimension d of a block is a row; value dimension d a column.
                            let at = if half == 0 { k_at + d * row_len } else { v_at + d };
                            match &mut self.store {
                                Store::F32 { k, v } => [k, v][half][i][at] = x,
                                Store::F16 { k, v } => [k, v][half][i][at] = f16::from_f32(x),
                                Store::I8 { k, v, .. } => [k, v][half][i][at] = synthetic_i8(x),
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Lengthen `x` to `len` with zeros (never shortens it).
fn grow<T: Clone + Default>(x: &mut Vec<T>, len: usize) {
    if x.len() < len {
        x.resize(len, T::default());
    }
}
