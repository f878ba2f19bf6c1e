//! `gqa train`: the model family's training recipe (feature `train`).

use std::path::PathBuf;

use clap::Args;

use gqa::train::recipe::{self, RecipeArgs};
use gqa::train::tables;
use gqa::{GqaError, Result};

#[derive(Args)]
pub struct TrainArgs {
    /// `paper`: the whole recipe (tokenizer, base, conversions, uptraining, table, shipped models);
    /// `sweep`: train each base size for --base-steps steps to compare tokens/s and val loss;
    /// `table`: print --out/results.json as Markdown (the tables of docs/MODEL_CARD.md).
    #[arg(long, default_value = "paper")]
    recipe: String,
    /// Folder with train.txt and val.txt (read in place, never copied).
    #[arg(long, default_value = "../shared/data/tinystories")]
    data: PathBuf,
    /// Where the shipped models and results.json go.
    #[arg(long, default_value = "www/models")]
    out: PathBuf,
    /// Checkpoints, logs and intermediate results (rerun the same command to resume).
    #[arg(long, default_value = "target/train-paper")]
    work: PathBuf,
    /// Base size: s (dim 128), m (dim 192) or l (dim 256); 6 layers, 8 heads.
    #[arg(long, default_value = "s")]
    size: String,
    #[arg(long, default_value_t = 2048)]
    vocab_size: usize,
    /// Short training window, BOS included (also the short evaluation's window).
    #[arg(long, default_value_t = 256)]
    seq_len: usize,
    /// Long training window: the models' context (also the long evaluation's window).
    #[arg(long, default_value_t = 2048)]
    long_seq_len: usize,
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// Pretraining steps of the base on short windows before the long phase;
    /// uptraining takes alpha of all base steps.
    #[arg(long, default_value_t = 700)]
    base_steps: usize,
    /// Further base steps on long windows (the same tokens per step: fewer windows),
    /// each followed by one more step on short windows.
    #[arg(long, default_value_t = 40)]
    long_steps: usize,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1234)]
    seed: u64,
    /// Tokens of val.txt scored per variant, from its start (0 = all).
    #[arg(long, default_value_t = 16384)]
    eval_tokens: usize,
    /// Tokens of val.txt in the long-window evaluation (windows of --long-seq-len,
    /// second halves scored), from its start (0 = as many as --eval-tokens).
    #[arg(long, default_value_t = 8192)]
    eval_long_tokens: usize,
}

pub fn run(a: TrainArgs) -> Result<()> {
    let args = RecipeArgs {
        data: a.data,
        out: a.out,
        work: a.work,
        size: a.size,
        vocab_size: a.vocab_size,
        seq_len: a.seq_len,
        long_seq_len: a.long_seq_len,
        batch_size: a.batch_size,
        base_steps: a.base_steps,
        long_steps: a.long_steps,
        lr: a.lr,
        seed: a.seed,
        eval_tokens: a.eval_tokens,
        eval_long_tokens: a.eval_long_tokens,
    };
    match a.recipe.as_str() {
        "paper" => recipe::paper(&args),
        "sweep" => recipe::sweep(&args),
        "table" => tables::markdown(&args.out).map(|md| print!("{md}")),
        other => Err(GqaError::Invalid(format!("unknown recipe '{other}': use paper, sweep or table"))),
    }
}
