//! The KV cache, sized for G key/value heads (never expanded to H), stored in
//! f32 or f16 (half the bytes per decode step; the attention kernels convert
//! f16 rows as they read them).
//!
//! Layout: layer x kv_head x head_dim x position: each head's keys and values
//! are stored transposed, row d holding dimension d of every position. The
//! attention kernel reads one head's block of positions as head_dim long,
//! contiguous rows, once for all H/G query heads of its group, and vectorizes
//! along positions (see kernels.rs).

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

/// The keys and values of one head, each (head_dim x capacity): position p of
/// row d at `d * capacity + p`.
pub enum HeadKv<'a> {
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

    fn offset(&self, layer: usize, head: usize) -> usize {
        (layer * self.n_kv_heads + head) * self.capacity * self.head_dim
    }

    /// Store the keys and values (each G x head_dim) of one position.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let (hd, cap) = (self.head_dim, self.capacity);
        for h in 0..self.n_kv_heads {
            let at = self.offset(layer, h) + pos;
            let (src_k, src_v) = (&k[h * hd..(h + 1) * hd], &v[h * hd..(h + 1) * hd]);
            for d in 0..hd {
                match &mut self.store {
                    Store::F32 { k, v } => {
                        k[at + d * cap] = src_k[d];
                        v[at + d * cap] = src_v[d];
                    }
                    Store::F16 { k, v } => {
                        k[at + d * cap] = f16::from_f32(src_k[d]);
                        v[at + d * cap] = f16::from_f32(src_v[d]);
                    }
                }
            }
        }
    }

    /// Keys and values of one head, each (head_dim x capacity).
    pub fn head(&self, layer: usize, head: usize) -> HeadKv<'_> {
        let range = self.offset(layer, head)..self.offset(layer, head) + self.head_dim * self.capacity;
        match &self.store {
            Store::F32 { k, v } => HeadKv::F32(&k[range.clone()], &v[range]),
            Store::F16 { k, v } => HeadKv::F16(&k[range.clone()], &v[range]),
        }
    }

    /// Fill positions 0..len with random values (for benchmarks at long context).
    pub fn fill_synthetic(&mut self, len: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        let mut values = vec![0.0f32; len];
        for layer in 0..self.n_layers {
            for h in 0..self.n_kv_heads {
                for d in 0..self.head_dim {
                    let at = self.offset(layer, h) + d * self.capacity;
                    let range = at..at + len;
                    for half in 0..2 {
                        values.iter_mut().for_each(|x| *x = rng.normal());
                        match &mut self.store {
                            Store::F32 { k, v } => [k, v][half][range.clone()].copy_from_slice(&values),
                            Store::F16 { k, v } => {
                                [k, v][half][range.clone()].iter_mut().zip(&values).for_each(|(d, &s)| *d = f16::from_f32(s))
                            }
                        }
                    }
                }
            }
        }
    }
}
