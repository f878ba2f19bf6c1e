//! The KV cache, sized for G key/value heads (never expanded to H), stored in
//! f32 or f16 (half the bytes per decode step; the attention kernels convert
//! f16 rows as they read them).
//!
//! Layout: layer x kv_head x block x head_dim x position in block: each
//! head's keys and values are stored in blocks of [`BLOCK`] positions, each
//! block transposed (row d holding dimension d of the block's positions). The
//! attention kernel reads one block as head_dim contiguous rows, once for all
//! H/G query heads of its group, and vectorizes along positions (see
//! kernels.rs). A block is one contiguous piece of memory (16 KiB for head_dim
//! 16 in f32): rows a whole context apart would share cache sets and evict
//! each other while the kernel reads all of them at once.

use half::f16;

use crate::config::{kv_cache_bytes_checked, Config};
use crate::error::{GqaError, Result};
use crate::rng::Rng;
use crate::tensor::DType;

/// Keys and values, each (layers, G, head_dim, capacity), in the cache's precision.
#[derive(Clone, Debug)]
enum Store {
    F32 { k: Vec<f32>, v: Vec<f32> },
    F16 { k: Vec<f16>, v: Vec<f16> },
}

/// Positions per block of the cache, and per attention task.
pub const BLOCK: usize = 256;

/// The keys and values of one block of one head, each (head_dim x len), row d
/// at `d * len`, where len is [`BLOCK`] or, for the last block, what remains
/// of the capacity.
pub enum BlockKv<'a> {
    F32(&'a [f32], &'a [f32]),
    F16(&'a [f16], &'a [f16]),
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
    pub fn new(config: &Config, capacity: usize, dtype: DType) -> Result<KvCache> {
        if capacity == 0 || capacity > config.max_position_embeddings {
            return Err(GqaError::Invalid(format!(
                "KV cache capacity {capacity} must be between 1 and the context {}",
                config.max_position_embeddings
            )));
        }
        // Elements in each of k and v; checked against the memory budget before allocating.
        let len = kv_cache_bytes_checked(config, config.n_kv_heads(), capacity, dtype.size())? / (2 * dtype.size());
        let store = match dtype {
            DType::F32 => Store::F32 { k: vec![0.0; len], v: vec![0.0; len] },
            DType::F16 => Store::F16 { k: vec![f16::ZERO; len], v: vec![f16::ZERO; len] },
        };
        Ok(KvCache { n_layers: config.num_hidden_layers, n_kv_heads: config.n_kv_heads(), head_dim: config.head_dim(), capacity, store })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn dtype(&self) -> DType {
        match self.store {
            Store::F32 { .. } => DType::F32,
            Store::F16 { .. } => DType::F16,
        }
    }

    /// Bytes allocated: what the key and value buffers hold room for.
    pub fn bytes(&self) -> usize {
        match &self.store {
            Store::F32 { k, v } => (k.capacity() + v.capacity()) * std::mem::size_of::<f32>(),
            Store::F16 { k, v } => (k.capacity() + v.capacity()) * std::mem::size_of::<f16>(),
        }
    }

    /// Where block `block` of a head starts, and its row length.
    fn block_at(&self, layer: usize, head: usize, block: usize) -> (usize, usize) {
        let head_start = (layer * self.n_kv_heads + head) * self.capacity * self.head_dim;
        let row_len = BLOCK.min(self.capacity - block * BLOCK);
        (head_start + block * BLOCK * self.head_dim, row_len)
    }

    /// Index of dimension d of position pos of a head.
    fn index(&self, layer: usize, head: usize, pos: usize, d: usize) -> usize {
        let (start, row_len) = self.block_at(layer, head, pos / BLOCK);
        start + d * row_len + pos % BLOCK
    }

    /// Store the keys and values (each G x head_dim) of one position.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        for h in 0..self.n_kv_heads {
            let (src_k, src_v) = (&k[h * hd..(h + 1) * hd], &v[h * hd..(h + 1) * hd]);
            for d in 0..hd {
                let at = self.index(layer, h, pos, d);
                match &mut self.store {
                    Store::F32 { k, v } => {
                        k[at] = src_k[d];
                        v[at] = src_v[d];
                    }
                    Store::F16 { k, v } => {
                        k[at] = f16::from_f32(src_k[d]);
                        v[at] = f16::from_f32(src_v[d]);
                    }
                }
            }
        }
    }

    /// Keys and values of block `block` (positions block * BLOCK..) of one
    /// head, and the block's row length (see [`BlockKv`]).
    pub fn block(&self, layer: usize, head: usize, block: usize) -> (BlockKv<'_>, usize) {
        let (start, row_len) = self.block_at(layer, head, block);
        let range = start..start + self.head_dim * row_len;
        let kv = match &self.store {
            Store::F32 { k, v } => BlockKv::F32(&k[range.clone()], &v[range]),
            Store::F16 { k, v } => BlockKv::F16(&k[range.clone()], &v[range]),
        };
        (kv, row_len)
    }

    /// Fill positions 0..len with random values (for benchmarks at long context).
    pub fn fill_synthetic(&mut self, len: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        let mut values = vec![0.0f32; len];
        for layer in 0..self.n_layers {
            for h in 0..self.n_kv_heads {
                for d in 0..self.head_dim {
                    for half in 0..2 {
                        values.iter_mut().for_each(|x| *x = rng.normal());
                        // Row d of each block holds that block's stretch of positions.
                        for (block, part) in values.chunks(BLOCK).enumerate() {
                            let (start, row_len) = self.block_at(layer, h, block);
                            let range = start + d * row_len..start + d * row_len + part.len();
                            match &mut self.store {
                                Store::F32 { k, v } => [k, v][half][range].copy_from_slice(part),
                                Store::F16 { k, v } => {
                                    [k, v][half][range].iter_mut().zip(part).for_each(|(d, &s)| *d = f16::from_f32(s))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
