//! The GPU engine's settings: KV-cache precision, batch size, subgroup use.

use crate::tensor::DType;

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
