//! GGUF, llama.cpp's model file format (versions 2 and 3): what the reader and the
//! export share.
//!
//! Layout, all little endian:
//! ```text
//! magic "GGUF", u32 version, u64 tensor count, u64 metadata count
//! metadata:     per key: string key, u32 value type, the value
//! tensor infos: per tensor: string name, u32 n_dims, n_dims x u64 dims (innermost
//!               first), u32 tensor type, u64 offset into the data section
//! padding to `general.alignment` (default 32), then the data section: each
//! tensor's bytes at its offset, itself a multiple of the alignment
//! ```
//! A string is a u64 byte length and that many UTF-8 bytes; an array is a u32
//! element type, a u64 count and the elements (arrays may hold arrays).
//!
//! * [`format`]: the constants and type ids that reading and writing share.
//! * [`read`]: parses a file held in memory, borrowing from its bytes; its metadata
//!   values are [`value`]s.
//! * [`export`]: writes a model of this crate as a file llama.cpp runs.
//! * [`llama`]: the `llama.*` metadata as this crate's [`Config`](crate::config::Config).
//! * [`model`]: a llama-architecture file's tensors as this crate's [`Model`](crate::model::Model).

mod cursor;
pub mod export;
pub mod format;
pub mod llama;
pub mod model;
pub mod read;
pub mod value;

pub use export::to_gguf;
pub use format::{token_type, TensorType, ValueType};
pub use llama::llama_config;
pub use model::llama_model;
pub use read::{Gguf, TensorInfo};
pub use value::{Array, Value};
