//! GQA Lab: a small Llama-style decoder in which G, the number of key/value heads,
//! is a runtime choice (Ainslie et al. 2023, "GQA: Training Generalized Multi-Query
//! Transformer Models from Multi-Head Checkpoints"). MHA is G = H, MQA is G = 1.
//!
//! The same engine runs natively (the `gqa` CLI) and in the browser (wasm32).

pub mod backend;
pub mod bench;
pub mod config;
pub mod convert;
pub mod cpu;
pub mod error;
pub mod eval;
pub mod generation;
pub mod gguf;
pub mod gpu;
pub mod hf;
pub mod kernels;
pub mod kv_cache;
pub mod kv_fit;
pub mod llama2c;
pub mod loader;
pub mod matmul;
pub mod model;
pub mod presets;
pub mod quant;
pub mod rng;
pub mod rope;
pub mod sampler;
pub mod session;
pub mod tensor;
pub mod tokenizer;
#[cfg(feature = "train")] pub mod train;
/// The browser API (wasm-bindgen), used by the page's Web Worker.
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use config::{kv_cache_bytes, Config};
pub use error::{GqaError, Result};
pub use model::Model;
