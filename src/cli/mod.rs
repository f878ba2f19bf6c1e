//! The `gqa` commands, one file each, and what they share: the model and engine
//! arguments, opening a model, progress bars and byte counts. The parser and the
//! dispatch are in main.rs.

pub mod bench;
pub mod chat;
pub mod check;
pub mod convert;
pub mod eval;
pub mod generate;
#[cfg(feature = "train")]
pub mod train;

use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use gqa::backend::EngineOptions;
use gqa::convert::Method;
use gqa::matmul::QuantActivations;
use gqa::model::Model;
use gqa::tensor::{DType, KvDType};
use gqa::tokenizer::Tokenizer;
use gqa::{loader, GqaError, Result};

#[derive(Args)]
pub struct ModelArgs {
    /// A Hugging Face folder, a model.safetensors (config.json beside it), a llama2.c .bin,
    /// or a GGUF file (its tokenizer inside).
    #[arg(long, short)]
    pub model: PathBuf,
    /// Tokenizer file: tokenizer.json, or a llama2.c tokenizer.bin
    /// (default: found beside the model).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Key/value heads G: a divisor of the model's key/value heads (pooled), or a multiple
    /// of them that divides the query heads (repeated) (default: keep them).
    #[arg(long, short)]
    pub groups: Option<usize>,
    /// How to build each grouped key/value head: mean, first or random.
    #[arg(long, default_value = "mean")]
    pub method: Method,
    /// Weights in memory: f32 or f16 (default: as stored, bf16 -> f32).
    #[arg(long, value_parser = parse_dtype)]
    pub dtype: Option<DType>,
}

/// Engine settings shared by generate, eval and bench.
#[derive(Args)]
pub struct EngineArgs {
    /// KV cache precision: f32, f16 (half the bytes per position), or int8 (a quarter,
    /// plus a scale per position and head) [default: f32 on the CPU, f16 on the GPU]
    #[arg(long, value_parser = parse_kv_dtype)]
    pub kv_dtype: Option<KvDType>,
    /// On 4/5/8-bit block weights (GGUF), the CPU's activations: exact f32, or int8 per block
    /// with integer dot products as llama.cpp computes (faster; flips near-ties more often).
    #[arg(long, default_value = "exact", value_parser = parse_activations)]
    pub activations: QuantActivations,
}

impl EngineArgs {
    pub fn options(&self) -> EngineOptions {
        EngineOptions { kv_dtype: self.kv_dtype, quant_activations: self.activations }
    }
}

pub fn parse_activations(s: &str) -> std::result::Result<QuantActivations, String> {
    match s {
        "int8" => Ok(QuantActivations::Int8),
        "exact" | "f32" => Ok(QuantActivations::Exact),
        _ => Err(format!("unknown activations '{s}': use int8 or exact")),
    }
}


/// The model as loaded (dtype applied) and its tokenizer.
pub fn open(args: &ModelArgs) -> Result<(Model, Option<Tokenizer>)> {
    let (model, tokenizer) = loader::load(&args.model, args.tokenizer.as_deref())?;
    let model = match args.dtype {
        Some(d) => model.to_dtype(d),
        None => model,
    };
    Ok((model, tokenizer))
}

pub fn need_tokenizer(t: Option<Tokenizer>, model: &Path) -> Result<Tokenizer> {
    t.ok_or_else(|| {
        GqaError::Tokenizer(format!(
            "no tokenizer found beside {}; pass --tokenizer (tokenizer.json or llama2.c tokenizer.bin)",
            model.display()
        ))
    })
}

pub fn parse_dtype(s: &str) -> std::result::Result<DType, String> {
    DType::parse(s).ok_or_else(|| format!("unknown dtype '{s}': use f32 or f16"))
}

pub fn parse_kv_dtype(s: &str) -> std::result::Result<KvDType, String> {
    KvDType::parse(s).ok_or_else(|| format!("unknown KV dtype '{s}': use f32, f16 or int8"))
}

pub fn bar(len: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {unit} [{{elapsed_precise}}, eta {{eta}}]"))
            .expect("valid template"),
    );
    bar
}

pub fn human_bytes(b: usize) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
