//! The KV cache, sized for G key/value heads (never expanded to H).
//!
//! Layout: layer x kv_head x position x head_dim, so the attention kernel
//! streams one contiguous block per KV head and reads it once for all H/G
//! query heads of its group.

use crate::config::Config;
use crate::error::{GqaError, Result};
use crate::rng::Rng;

#[derive(Clone, Debug)]
pub struct KvCache {
    n_layers: usize,
    n_kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    k: Vec<f32>, // (layers, G, capacity, head_dim)
    v: Vec<f32>, // (layers, G, capacity, head_dim)
}

impl KvCache {
    /// A cache for `capacity` positions (at most the model's context).
    pub fn new(config: &Config, capacity: usize) -> Result<KvCache> {
        if capacity == 0 || capacity > config.max_position_embeddings {
            return Err(GqaError::Invalid(format!(
                "KV cache capacity {capacity} must be between 1 and the context {}",
                config.max_position_embeddings
            )));
        }
        let len = config.num_hidden_layers * config.n_kv_heads() * capacity * config.head_dim();
        Ok(KvCache {
            n_layers: config.num_hidden_layers,
            n_kv_heads: config.n_kv_heads(),
            head_dim: config.head_dim(),
            capacity,
            k: vec![0.0; len],
            v: vec![0.0; len],
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes allocated: what the key and value buffers hold room for (f32).
    pub fn bytes(&self) -> usize {
        (self.k.capacity() + self.v.capacity()) * std::mem::size_of::<f32>()
    }

    fn offset(&self, layer: usize, head: usize) -> usize {
        (layer * self.n_kv_heads + head) * self.capacity * self.head_dim
    }

    /// Store the keys and values (each G x head_dim) of one position.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        for h in 0..self.n_kv_heads {
            let at = self.offset(layer, h) + pos * hd;
            self.k[at..at + hd].copy_from_slice(&k[h * hd..(h + 1) * hd]);
            self.v[at..at + hd].copy_from_slice(&v[h * hd..(h + 1) * hd]);
        }
    }

    /// Keys and values of one head for positions 0..len: each (len x head_dim).
    pub fn head(&self, layer: usize, head: usize, len: usize) -> (&[f32], &[f32]) {
        let at = self.offset(layer, head);
        let end = at + len * self.head_dim;
        (&self.k[at..end], &self.v[at..end])
    }

    /// Fill positions 0..len with random values (for benchmarks at long context).
    pub fn fill_synthetic(&mut self, len: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        for layer in 0..self.n_layers {
            for h in 0..self.n_kv_heads {
                let at = self.offset(layer, h);
                for x in &mut self.k[at..at + len * self.head_dim] {
                    *x = rng.normal();
                }
                for x in &mut self.v[at..at + len * self.head_dim] {
                    *x = rng.normal();
                }
            }
        }
    }
}
