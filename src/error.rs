//! One error type for everything a user can get wrong. Every message says what was
//! expected and what was found, in words a user understands.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum GqaError {
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },

    #[error("config.json is invalid: {0}")]
    Config(String),

    #[error("safetensors file is invalid: {0}")]
    Safetensors(String),

    #[error("GGUF file is invalid: {0}")]
    Gguf(String),

    #[error("tensor '{0}' is missing from the checkpoint")]
    MissingTensor(String),

    #[error("tensor '{name}' has shape {found:?}, but config.json implies {expected:?}")]
    ShapeMismatch { name: String, expected: Vec<usize>, found: Vec<usize> },

    #[error("tensor '{name}' has dtype {dtype}; supported dtypes are F32, F16 and BF16")]
    UnsupportedDtype { name: String, dtype: String },

    #[error("llama2.c checkpoint is invalid: {0}")]
    Llama2c(String),

    #[error("tokenizer is invalid: {0}")]
    Tokenizer(String),

    #[error("the model has vocab_size {model}, but the tokenizer has {tokenizer} tokens")]
    VocabMismatch { model: usize, tokenizer: usize },

    #[error(
        "num_attention_heads ({n_heads}) is not divisible by num_key_value_heads ({n_kv_heads})"
    )]
    HeadsNotDivisible { n_heads: usize, n_kv_heads: usize },

    #[error(
        "cannot convert to G = {groups} key/value heads: G must divide the model's current {n_kv_heads} key/value heads, or be a multiple of them that divides the query heads (choose one of {choices:?})"
    )]
    BadGroups { groups: usize, n_kv_heads: usize, choices: Vec<usize> },

    #[error("the prompt has {prompt} tokens, but the context holds {context} (max_position_embeddings)")]
    PromptTooLong { prompt: usize, context: usize },

    #[error("position {pos} is outside the context of {context} tokens")]
    ContextFull { pos: usize, context: usize },

    #[error("token id {token} is outside the vocabulary of {vocab} tokens")]
    BadToken { token: u32, vocab: usize },

    #[error("invalid argument: {0}")]
    Invalid(String),

    #[error("backend error: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, GqaError>;

impl GqaError {
    pub fn io(path: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        GqaError::Io { path: path.to_string(), reason: err.to_string() }
    }
}
