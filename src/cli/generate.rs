//! `gqa generate`: stream generated text to stdout; speed and KV-cache memory to stderr.

use std::io::Write;

use clap::Args;

use gqa::backend::BackendKind;
use gqa::bench;
use gqa::generation::GenerateParams;
use gqa::sampler::SamplerConfig;
use gqa::session::Session;
use gqa::Result;

use super::{human_bytes, need_tokenizer, open, EngineArgs, ModelArgs};

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Text to continue (BOS is added in front).
    #[arg(long, short, default_value = "")]
    pub prompt: String,
    /// Tokens to generate.
    #[arg(short = 'n', long, default_value_t = 256)]
    pub max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, short, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this probability (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Seed for sampling and for the `random` conversion method.
    #[arg(long, short, default_value_t = 0)]
    pub seed: u64,
    /// KV-cache positions (prompt + generated tokens); default min(the model's context, 4096).
    #[arg(long)]
    pub context: Option<usize>,
    /// Print the statistics as JSON on stderr.
    #[arg(long)]
    pub json: bool,
    /// Engine: cpu, or gpu (wgpu; without a GPU adapter it says why and uses the CPU).
    #[arg(long, default_value = "cpu")]
    pub backend: BackendKind,
}

pub fn run(a: GenerateArgs) -> Result<()> {
    let (model, tokenizer) = open(&a.model)?;
    let tokenizer = need_tokenizer(tokenizer, &a.model.model)?;
    let (mut session, fallback) = Session::open(a.backend, model, Some(tokenizer), a.context, a.engine.options())?;
    if let Some(why) = fallback {
        eprintln!("{why}");
    }
    if let Some(g) = a.model.groups {
        session.set_groups(g, a.model.method, a.seed)?;
    }
    let params = GenerateParams {
        max_tokens: a.max_tokens,
        sampler: SamplerConfig { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, seed: a.seed },
    };
    let mut stdout = std::io::stdout().lock();
    // The prompt first, then the continuation as it streams.
    let _ = stdout.write_all(a.prompt.as_bytes());
    session.generate(&a.prompt, &params, &mut |piece| {
        // Stop quietly if stdout is closed (e.g. piped into `head`).
        stdout.write_all(piece.as_bytes()).and_then(|_| stdout.flush()).is_ok()
    })?;
    let _ = writeln!(stdout);
    let s = session.stats();
    if a.json {
        eprintln!("{}", serde_json::to_string_pretty(s).expect("stats serialize"));
    } else {
        eprintln!(
            "[{}] {} (G = {} of H = {}): prefill {} tokens in {:.1} ms, decode {} tokens at {:.1} tok/s",
            s.backend,
            bench::label(s.n_heads, s.n_kv_heads),
            s.n_kv_heads,
            s.n_heads,
            s.prompt_tokens,
            s.prefill_ms,
            s.generated_tokens,
            s.decode_tok_s
        );
        eprintln!(
            "KV cache ({}) at {} positions: {} for G = {} vs {} for MHA ({:.2}x smaller); weights {}",
            s.kv_dtype,
            s.context_used,
            human_bytes(s.kv_bytes),
            s.n_kv_heads,
            human_bytes(s.kv_bytes_mha),
            s.kv_bytes_mha as f64 / s.kv_bytes.max(1) as f64,
            human_bytes(s.weight_bytes)
        );
    }
    Ok(())
}
