//! Random-weight model shapes for measuring speed without a trained model
//! (`gqa bench --preset`, and the page's speed presets).

use crate::config::Config;
use crate::error::{GqaError, Result};

/// Random-weight shapes for measuring speed without a trained model.
/// (name, hidden, ffn, layers, heads, vocab, context)
pub const PRESETS: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
    ("tiny", 128, 384, 4, 8, 512, 2048),
    ("15m", 384, 1024, 8, 8, 4096, 2048),
    ("110m", 768, 2048, 12, 12, 32000, 2048),
    ("500m", 1280, 3456, 24, 16, 32000, 2048),
    ("1b", 2048, 5632, 16, 32, 32000, 2048),
];

/// The config of a preset, as MHA (G = H).
pub fn preset(name: &str) -> Result<Config> {
    let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
    let &(_, d, f, l, h, v, ctx) = PRESETS
        .iter()
        .find(|p| p.0 == name)
        .ok_or_else(|| GqaError::Invalid(format!("unknown preset '{name}': choose one of {names:?}")))?;
    let mut c = Config::new(d, f, l, h, h, v, ctx);
    c.tie_word_embeddings = false;
    c.validate()?;
    Ok(c)
}

