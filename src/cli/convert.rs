//! `gqa convert`: convert a model to G key/value heads and write a Hugging Face folder,
//! or a GGUF file for llama.cpp.

use std::path::PathBuf;

use clap::Args;

use gqa::bench;
use gqa::convert::convert;
use gqa::{GqaError, Result};

use super::{need_tokenizer, open, ModelArgs};

#[derive(Args)]
pub struct ConvertArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output: a folder for `hf` (config.json, model.safetensors, tokenizer.json), a
    /// file for `gguf`.
    #[arg(long, short)]
    pub out: PathBuf,
    /// `hf`: a Hugging Face folder; `gguf`: one llama.cpp GGUF file with the tokenizer
    /// (f32 or f16 weights, by --dtype).
    #[arg(long, default_value = "hf")]
    pub format: String,
    /// Seed for the `random` method.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: ConvertArgs) -> Result<()> {
    let gguf = match a.format.as_str() {
        "hf" => false,
        "gguf" => true,
        other => return Err(GqaError::Invalid(format!("unknown format '{other}': use hf or gguf"))),
    };
    let (model, tokenizer) = open(&a.model)?;
    let groups = a.model.groups.unwrap_or(model.config.n_kv_heads());
    let converted = convert(&model, groups, a.model.method, a.seed)?;
    let dtype = a.model.dtype.unwrap_or(model.dtype());
    if gguf {
        let t = need_tokenizer(tokenizer, &a.model.model)?;
        let name = format!("gqa-lab {}", bench::label(converted.config.n_heads(), groups));
        let bytes = gqa::gguf::to_gguf(&converted, &t, dtype, &name)?;
        std::fs::write(&a.out, bytes).map_err(|e| GqaError::io(a.out.display(), e))?;
    } else {
        gqa::hf::save_hf_dir(&converted, &a.out, dtype)?;
        if let Some(t) = tokenizer {
            let path = a.out.join("tokenizer.json");
            std::fs::write(&path, t.to_json()?).map_err(|e| GqaError::io(path.display(), e))?;
        }
    }
    eprintln!(
        "wrote {} with G = {} ({}, method {}), {:?} weights",
        a.out.display(),
        groups,
        bench::label(converted.config.n_heads(), groups),
        a.model.method,
        dtype
    );
    Ok(())
}
