//! `gqa eval`: perplexity over a text file, optionally against the unconverted model.

use std::path::PathBuf;

use clap::Args;

use gqa::backend::{BackendKind, EngineOptions};
use gqa::bench;
use gqa::eval::{evaluate, Reference};
use gqa::session::Session;
use gqa::tensor::KvDType;
use gqa::{loader, Result};

use super::{bar, need_tokenizer, open, EngineArgs, ModelArgs};

#[derive(Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Plain text file to score.
    #[arg(long)]
    pub text: PathBuf,
    /// Window length in tokens (default: the model's context); windows advance by half.
    #[arg(long)]
    pub window: Option<usize>,
    /// Score only targets from token N on (BOS is token 0). `--score-from` = half
    /// the window gives every scored token at least half a window of context
    /// (docs/MODEL_CARD.md's long-context protocol: --window 2048 --score-from 1024).
    #[arg(long, default_value_t = 1)]
    pub score_from: usize,
    /// Score only the first N tokens of the text.
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Also compare with the unconverted model (with an f32 KV cache): KL divergence and
    /// top-1 agreement.
    #[arg(long)]
    pub vs_base: bool,
    /// Seed for the `random` method.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: EvalArgs) -> Result<()> {
    let (base, tokenizer) = open(&a.model)?;
    let tokenizer = need_tokenizer(tokenizer, &a.model.model)?;
    let text = loader::read_text(&a.text)?;
    // BOS first where the model's prompts start with it (not SmolLM2's).
    let bos: Vec<u32> = tokenizer.add_bos().then_some(base.config.bos_token_id).into_iter().collect();
    let mut ids = bos.clone();
    ids.extend(tokenizer.encode(&text)?);
    if let Some(n) = a.max_tokens {
        ids.truncate(n.saturating_add(bos.len())); // (BOS +) n tokens
    }
    let window = a.window.unwrap_or(base.config.max_position_embeddings);
    let groups = a.model.groups.unwrap_or(base.config.n_kv_heads());
    let capacity = window.min(base.config.max_position_embeddings);
    let cpu = |options| Session::open(BackendKind::Cpu, base.clone(), None, Some(capacity), options).map(|(s, _)| s);
    let mut model = cpu(a.engine.options())?;
    model.set_groups(groups, a.model.method, a.seed)?;
    // The reference keeps an f32 KV cache: KL is measured against the f32 base.
    let mut reference = if a.vs_base { Some(cpu(EngineOptions { kv_dtype: Some(KvDType::F32), ..Default::default() })?) } else { None };
    let bar = bar(ids.len() as u64 - 1, "tokens");
    let report = evaluate(
        model.backend(),
        reference.as_mut().map_or(Reference::None, |r| Reference::Backend(r.backend())),
        &ids,
        window,
        a.score_from,
        None,
        &mut |done, _| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
    } else {
        println!(
            "{} (G = {}, {}): {} tokens, {:.4} nats/token, perplexity {:.3}",
            bench::label(base.config.n_heads(), groups),
            groups,
            a.model.method,
            report.tokens,
            report.nats_per_token,
            report.perplexity
        );
        if let (Some(kl), Some(top1)) = (report.kl_vs_base, report.top1_agreement) {
            println!("vs the unconverted model: KL {:.5} nats/token, top-1 agreement {:.2}%", kl, top1 * 100.0);
        }
    }
    Ok(())
}
