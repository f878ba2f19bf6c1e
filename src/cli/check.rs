//! `gqa check-gpu`: the GPU engine and sampler against the CPU's on one model, for
//! every G and both KV precisions (gpu/check.rs); exits non-zero on a mismatch.

use std::path::PathBuf;

use clap::Args;

use gqa::gpu::check::{check, markdown};
use gqa::model::Model;
use gqa::tensor::{DType, KvDType};
use gqa::{loader, GqaError, Result};

use super::parse_dtype;

#[derive(Args)]
pub struct CheckArgs {
    /// A model (Hugging Face folder, .safetensors or llama2.c .bin) instead of a preset.
    #[arg(long, short)]
    pub model: Option<PathBuf>,
    /// A random-weight shape: tiny, 15m, 110m, 500m, 1b (ignored with --model).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Weights in memory: f32 or f16 (default: as stored; presets f32).
    #[arg(long, value_parser = parse_dtype)]
    pub dtype: Option<DType>,
    /// Synthetic positions in the KV cache before the prompt, to check long contexts
    /// (a preset's context grows to hold them; a model's must already).
    #[arg(long, default_value_t = 0)]
    pub context: usize,
    /// Greedy decode steps compared after the prompt.
    #[arg(long, default_value_t = 32)]
    pub steps: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file (the Markdown still goes to stdout).
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

pub fn run(a: CheckArgs) -> Result<()> {
    let base = match &a.model {
        Some(path) => loader::load(path, None)?.0,
        None => {
            let mut config = gqa::bench::preset(&a.preset)?;
            let needed = a.context.saturating_add(a.steps).saturating_add(9);
            config.max_position_embeddings = config.max_position_embeddings.max(needed);
            config.validate()?;
            // Both engines hold a KV cache, at most f32: refused before any allocation.
            gqa::config::kv_cache_bytes_checked(&config, config.n_kv_heads(), needed, KvDType::F32)?;
            Model::random(&config, 1, DType::F32)?
        }
    };
    let base = match a.dtype {
        Some(d) => base.to_dtype(d),
        None => base,
    };
    let limit = base.config.max_position_embeddings;
    if a.context.saturating_add(a.steps).saturating_add(9) > limit {
        return Err(GqaError::Invalid(format!(
            "--context {} plus the 8-token prompt and {} steps exceeds the model's context of {limit} positions",
            a.context, a.steps
        )));
    }
    let report = check(&base, a.context, a.steps)?;
    let json = serde_json::to_string_pretty(&report).expect("report serializes");
    if let Some(path) = &a.json_out {
        std::fs::write(path, &json).map_err(|e| GqaError::io(path.display(), e))?;
    }
    if a.json {
        println!("{json}");
    } else {
        print!("{}", markdown(&report));
    }
    if report.pass {
        Ok(())
    } else {
        Err(GqaError::Backend("the GPU engine disagrees with the CPU engine beyond the tolerance (see the report)".into()))
    }
}
