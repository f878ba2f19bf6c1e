//! The KV cache, sized for G key/value heads (never expanded to H), stored in
//! f32 or f16 (half the bytes per decode step; the attention kernels convert
//! f16 rows as they read them).
//!
//! Layout: layer x kv_head x position x head_dim, so the attention kernel
//! streams one contiguous block per KV head and reads it once for all H/G
//! query heads of its group.

use half::f16;

use crate::config::{kv_cache_bytes_checked, Config};
use crate::error::{GqaError, Result};
use crate::rng::Rng;
use crate::tensor::DType;

/// Keys and values, each (layers, G, capacity, head_dim), in the cache's precision.
#[derive(Clone, Debug)]
enum Store {
    F32 { k: Vec<f32>, v: Vec<f32> },
    F16 { k: Vec<f16>, v: Vec<f16> },
}

/// The keys and values of one head for positions 0..len, each (len x head_dim).
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
        let hd = self.head_dim;
        for h in 0..self.n_kv_heads {
            let at = self.offset(layer, h) + pos * hd;
            let (src_k, src_v) = (&k[h * hd..(h + 1) * hd], &v[h * hd..(h + 1) * hd]);
            match &mut self.store {
                Store::F32 { k, v } => {
                    k[at..at + hd].copy_from_slice(src_k);
                    v[at..at + hd].copy_from_slice(src_v);
                }
                Store::F16 { k, v } => {
                    for (dst, src) in [(&mut k[at..at + hd], src_k), (&mut v[at..at + hd], src_v)] {
                        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = f16::from_f32(s));
                    }
                }
            }
        }
    }

    /// Keys and values of one head for positions 0..len.
    pub fn head(&self, layer: usize, head: usize, len: usize) -> HeadKv<'_> {
        let range = self.offset(layer, head)..self.offset(layer, head) + len * self.head_dim;
        match &self.store {
            Store::F32 { k, v } => HeadKv::F32(&k[range.clone()], &v[range]),
            Store::F16 { k, v } => HeadKv::F16(&k[range.clone()], &v[range]),
        }
    }

    /// Fill positions 0..len with random values (for benchmarks at long context).
    pub fn fill_synthetic(&mut self, len: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        let mut values = vec![0.0f32; len * self.head_dim];
        for layer in 0..self.n_layers {
            for h in 0..self.n_kv_heads {
                let range = self.offset(layer, h)..self.offset(layer, h) + len * self.head_dim;
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
