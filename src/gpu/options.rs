//! The GPU engine's settings: KV-cache precision, batch size, subgroup use, attention split.

use crate::tensor::KvDType;

#[derive(Clone, Debug, PartialEq)]
pub struct GpuOptions {
    /// KV cache element type: f16 packed two per u32 (the default: half the bytes per
    /// position, which decoding at long context reads every token), or f32.
    pub kv_dtype: KvDType,
    /// Most tokens one submission processes (longer prompts take several).
    pub max_batch: usize,
    /// Reduce matvec with subgroupAdd when the adapter has subgroups.
    pub use_subgroups: bool,
    /// Positions per attention split; `None` chooses per call from the context, G and
    /// the adapter (`Dims::attention_split`). Set for tests of every split shape.
    pub attention_split: Option<usize>,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions { kv_dtype: KvDType::F16, max_batch: 64, use_subgroups: true, attention_split: None }
    }
}
