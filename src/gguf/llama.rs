//! The shape of a llama-architecture GGUF model, read from its metadata (llama.cpp's
//! `llama.*` keys) into this crate's [`Config`].

use super::read::Gguf;
use crate::config::{Config, TokenIds};
use crate::error::{GqaError, Result};

/// The model's [`Config`]: sizes from `llama.*`, the vocabulary size from the
/// tokenizer's token list, and tied embeddings when the file has no `output.weight`
/// (llama.cpp then uses `token_embd.weight` as the output head).
pub fn llama_config(gguf: &Gguf) -> Result<Config> {
    let architecture = gguf.str("general.architecture")?;
    if architecture != "llama" {
        return Err(GqaError::Gguf(format!("the model's architecture is '{architecture}'; only 'llama' is supported")));
    }
    let size = |key: &str| -> Result<usize> {
        let value = gguf.uint(key)?;
        usize::try_from(value).map_err(|_| GqaError::Gguf(format!("metadata key '{key}' is {value}, too large")))
    };
    let token_id = |key: &str| -> Result<u32> {
        let value = gguf.uint(key)?;
        u32::try_from(value).map_err(|_| GqaError::Gguf(format!("metadata key '{key}' is {value}, not a token id")))
    };
    let n_heads = size("llama.attention.head_count")?;
    // llama.cpp's default: without the key, every query head has its own key/value head.
    let n_kv_heads = gguf.optional("llama.attention.head_count_kv", size)?;
    let vocab_size = gguf.array("tokenizer.ggml.tokens")?.len();
    let mut config = Config::new(
        size("llama.embedding_length")?,
        size("llama.feed_forward_length")?,
        size("llama.block_count")?,
        n_heads,
        n_kv_heads.unwrap_or(n_heads),
        vocab_size,
        size("llama.context_length")?,
    );
    config.rms_norm_eps = gguf.float("llama.attention.layer_norm_rms_epsilon")?;
    // llama.cpp's default base when the key is absent.
    config.rope_theta = gguf.optional("llama.rope.freq_base", |k| gguf.float(k))?.unwrap_or(10000.0);
    config.tie_word_embeddings = gguf.tensor("output.weight").is_err();
    if let Some(bos) = gguf.optional("tokenizer.ggml.bos_token_id", token_id)? {
        config.bos_token_id = bos;
    }
    if let Some(eos) = gguf.optional("tokenizer.ggml.eos_token_id", token_id)? {
        config.eos_token_id = TokenIds::One(eos);
    }
    // What this crate's engines do not implement is refused here, not run wrongly.
    if let Some(rope_dims) = gguf.optional("llama.rope.dimension_count", size)? {
        if rope_dims != config.head_dim() {
            return Err(GqaError::Gguf(format!(
                "llama.rope.dimension_count is {rope_dims}, but RoPE over only part of a head (head_dim {}) is not supported",
                config.head_dim()
            )));
        }
    }
    if let Some(scaling) = gguf.get("llama.rope.scaling.type").filter(|v| v.as_str() != Some("none")) {
        return Err(GqaError::Gguf(format!("RoPE scaling ({scaling:?}) is not supported; only plain RoPE is")));
    }
    config.validate().map_err(|e| match e {
        GqaError::Config(why) => GqaError::Gguf(format!("the model's llama.* metadata is invalid: {why}")),
        other => other,
    })?;
    Ok(config)
}
