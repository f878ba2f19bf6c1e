//! `gqa generate`: stream generated text to stdout; speed and KV-cache memory to stderr.

use std::io::Write;

use clap::Args;

use gqa::backend::BackendKind;
use gqa::bench;
use gqa::generation::GenerateParams;
use gqa::sampler::SamplerConfig;
use gqa::session::Session;
use gqa::tokenizer::chat::ChatMessage;
use gqa::Result;

use super::{human_bytes, need_tokenizer, open, EngineArgs, ModelArgs};

#[derive(Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Text to continue (BOS is added in front where the model wants it); with --chat,
    /// the user's message.
    #[arg(long, short, default_value = "")]
    pub prompt: String,
    /// Answer the prompt as a chat message, in the model's chat template (ChatML).
    #[arg(long)]
    pub chat: bool,
    /// With --chat (and `gqa chat`): the system message (default: the template's own, if any).
    #[arg(long)]
    pub system: Option<String>,
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

/// The session these arguments ask for: the model at G, on its engine.
pub fn open_session(a: &GenerateArgs) -> Result<Session> {
    let (model, tokenizer) = open(&a.model)?;
    let tokenizer = need_tokenizer(tokenizer, &a.model.model)?;
    let (mut session, fallback) = Session::open(a.backend, model, Some(tokenizer), a.context, a.engine.options())?;
    if let Some(why) = fallback {
        eprintln!("{why}");
    }
    if let Some(g) = a.model.groups {
        session.set_groups(g, a.model.method, a.seed)?;
    }
    Ok(session)
}

pub fn params(a: &GenerateArgs) -> GenerateParams {
    GenerateParams {
        max_tokens: a.max_tokens,
        sampler: SamplerConfig { temperature: a.temperature, top_k: a.top_k, top_p: a.top_p, seed: a.seed },
    }
}

/// The chat so far as messages: the system message given (or none: the template's).
pub fn system_messages(a: &GenerateArgs) -> Vec<ChatMessage> {
    a.system.iter().map(|s| ChatMessage::new("system", s)).collect()
}

/// `on_text` for streaming to stdout; false (stop) once stdout is closed (e.g. piped
/// into `head`).
pub fn print_piece(piece: &str) -> bool {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(piece.as_bytes()).and_then(|_| stdout.flush()).is_ok()
}

pub fn run(a: GenerateArgs) -> Result<()> {
    let mut session = open_session(&a)?;
    let params = params(&a);
    if a.chat {
        let mut messages = system_messages(&a);
        messages.push(ChatMessage::new("user", &a.prompt));
        session.chat(&messages, &params, &mut print_piece)?;
    } else {
        // The prompt first, then the continuation as it streams.
        print_piece(&a.prompt);
        session.generate(&a.prompt, &params, &mut print_piece)?;
    }
    println!();
    print_stats(&session, a.json);
    Ok(())
}

/// The last generation's speed and memory, on stderr.
pub fn print_stats(session: &Session, json: bool) {
    let s = session.stats();
    if json {
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
}
