//! Open a model the way users have it on disk: a Hugging Face folder
//! (config.json + model.safetensors + tokenizer.json), a llama2.c checkpoint
//! (.bin, with its tokenizer.bin), or a GGUF file (weights and tokenizer in one).

use std::path::{Path, PathBuf};

use crate::error::{GqaError, Result};
use crate::model::Model;
use crate::tokenizer::Tokenizer;

/// Load a model and, where one is found, its tokenizer. `tokenizer` overrides
/// the default: tokenizer.json in a Hugging Face folder; for a llama2.c .bin,
/// tokenizer.bin or tok{vocab}.bin beside it; a GGUF file's own.
pub fn load(model: &Path, tokenizer: Option<&Path>) -> Result<(Model, Option<Tokenizer>)> {
    let model_is_dir = model.is_dir();
    if !model_is_dir && is_gguf(model)? {
        let (loaded, own) = load_gguf(&read(model)?)?;
        let tok = match tokenizer {
            Some(p) => checked(load_tokenizer(p, loaded.config.vocab_size)?, loaded.config.vocab_size)?,
            None => own,
        };
        return Ok((loaded, Some(tok)));
    }
    let loaded = if model_is_dir {
        crate::hf::load_hf_dir(model)?
    } else if model.extension().is_some_and(|e| e == "safetensors") {
        let dir = model.parent().unwrap_or(Path::new("."));
        let config = read_text(&dir.join("config.json"))?;
        crate::hf::load_hf(&config, &read(model)?)?
    } else {
        crate::llama2c::load_llama2c(&read(model)?)?
    };
    let vocab = loaded.config.vocab_size;
    let tokenizer_path = match tokenizer {
        Some(p) => Some(p.to_path_buf()),
        None => default_tokenizer(model, model_is_dir, vocab),
    };
    let tok = match tokenizer_path {
        Some(p) => Some(checked(load_tokenizer(&p, vocab)?, vocab)?),
        None => None,
    };
    Ok((loaded, tok))
}

/// `t`, if its ids fit in the model's vocabulary of `vocab`.
fn checked(t: Tokenizer, vocab: usize) -> Result<Tokenizer> {
    match t.vocab_size() > vocab {
        true => Err(GqaError::VocabMismatch { model: vocab, tokenizer: t.vocab_size() }),
        false => Ok(t),
    }
}

/// A GGUF file's model and tokenizer. The tokenizer's end-of-generation tokens (EOS,
/// and the chat markers llama.cpp also stops at) become the config's EOS ids.
pub fn load_gguf(bytes: &[u8]) -> Result<(Model, Tokenizer)> {
    let gguf = crate::gguf::Gguf::read(bytes)?;
    let tokenizer = crate::tokenizer::gguf::GgufTokenizer::from_gguf(&gguf)?;
    let mut model = crate::gguf::llama_model(&gguf)?;
    model.config.eos_token_id = crate::config::TokenIds::Many(tokenizer.end_of_generation);
    Ok((model, tokenizer.tokenizer))
}

/// Whether `path` is a GGUF file: its name ends in .gguf, or it starts with the magic.
fn is_gguf(path: &Path) -> Result<bool> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf")) {
        return Ok(true);
    }
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| GqaError::io(path.display(), e))?;
    Ok(std::io::Read::read_exact(&mut file, &mut magic).is_ok() && &magic == crate::gguf::format::MAGIC)
}

/// A tokenizer.json, or a llama2.c tokenizer.bin (any other extension).
pub fn load_tokenizer(path: &Path, vocab_size: usize) -> Result<Tokenizer> {
    let bytes = read(path)?;
    if path.extension().is_some_and(|e| e == "json") {
        Tokenizer::from_json(&bytes)
    } else {
        Tokenizer::from_llama2c(&bytes, vocab_size)
    }
}

fn default_tokenizer(model: &Path, model_is_dir: bool, vocab: usize) -> Option<PathBuf> {
    let dir = if model_is_dir { model } else { model.parent().unwrap_or(Path::new(".")) };
    let candidates = [dir.join("tokenizer.json"), dir.join("tokenizer.bin"), dir.join(format!("tok{vocab}.bin"))];
    candidates.into_iter().find(|p| p.is_file())
}

pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| GqaError::io(path.display(), e))
}

pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| GqaError::io(path.display(), e))
}
