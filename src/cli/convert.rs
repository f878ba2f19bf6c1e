//! `gqa convert`: convert a model to G key/value heads and write a Hugging Face folder.

use std::path::PathBuf;

use clap::Args;

use gqa::bench;
use gqa::convert::convert;
use gqa::{GqaError, Result};

use super::{open, ModelArgs};

#[derive(Args)]
pub struct ConvertArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Output folder (config.json, model.safetensors, tokenizer.json).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Seed for the `random` method.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(a: ConvertArgs) -> Result<()> {
    let (model, tokenizer) = open(&a.model)?;
    let groups = a.model.groups.unwrap_or(model.config.n_kv_heads());
    let converted = convert(&model, groups, a.model.method, a.seed)?;
    let dtype = a.model.dtype.unwrap_or(model.dtype());
    gqa::hf::save_hf_dir(&converted, &a.out, dtype)?;
    if let Some(t) = tokenizer {
        let path = a.out.join("tokenizer.json");
        std::fs::write(&path, t.to_json()?).map_err(|e| GqaError::io(path.display(), e))?;
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
