//! The paper's recipe at small scale (GQA paper, Algorithms 4 and 5):
//!
//! 1. train a byte-level BPE tokenizer on train.txt;
//! 2. pretrain an MHA base (H = 8 query heads) from scratch, on short windows
//!    and then, for its last steps, on long ones (the models' context);
//! 3. for G in {4, 2, 1} and each conversion method (mean, first, random),
//!    convert the base (Algorithm 4) and uptrain it for alpha = 5% of the base's
//!    steps (Algorithm 5); mean also gets alpha = 10%; every conversion is also
//!    scored as converted (alpha = 0);
//! 4. evaluate every variant on val.txt with short windows (the old protocol)
//!    and long ones (loss, perplexity, KL and top-1 agreement against the base)
//!    and time CPU decoding at the short and the long context;
//! 5. ship the base and the mean-pooled, 5%-uptrained GQA-4, GQA-2 and MQA as f16
//!    Hugging Face folders with `results.json` beside them.
//!
//! Every stage writes its result into the work folder and is skipped when the
//! result is already there, so the command resumes where it stopped.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::data::TokenStream;
use super::optim::AdamWParams;
use super::scoring::{Evaluation, Protocol, Variant, VariantResult};
use super::tokenizer_train::train_bpe;
use super::trainer::{train, write_json, RunState, TrainSpec};
use crate::bench;
use crate::config::Config;
use crate::convert::{convert, Method};
use crate::error::{GqaError, Result};
use crate::generation::GenerateParams;
use crate::hf;
use crate::loader::read_text;
use crate::model::Model;
use crate::sampler::SamplerConfig;
use crate::session::Session;
use crate::tensor::DType;
use crate::tokenizer::Tokenizer;

/// Model sizes to choose the base from: (name, hidden, ffn, layers). H = 8 always.
pub const SIZES: &[(&str, usize, usize, usize)] =
    &[("s", 128, 384, 6), ("m", 192, 512, 6), ("l", 256, 704, 6)];

/// Query heads of the base (MHA: G = H).
pub const N_HEADS: usize = 8;
/// The prompt whose continuations are shown for every shipped model.
pub const PROMPT: &str = "Once upon a time";

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecipeArgs {
    /// Folder with train.txt and val.txt.
    pub data: PathBuf,
    /// Where the shipped models and results.json go.
    pub out: PathBuf,
    /// Checkpoints, logs and intermediate results.
    pub work: PathBuf,
    pub size: String,
    pub vocab_size: usize,
    /// Short training windows, and the window of the short evaluation.
    pub seq_len: usize,
    /// Long training windows: the models' context, and the long evaluation's window.
    pub long_seq_len: usize,
    pub batch_size: usize,
    /// Base steps on short windows, then `long_steps` on long windows, each
    /// followed by one more on short windows.
    pub base_steps: usize,
    pub long_steps: usize,
    pub lr: f64,
    pub seed: u64,
    /// Tokens of val.txt scored per variant (0 = all).
    pub eval_tokens: usize,
    /// Tokens of val.txt in the long evaluation (its first window's first half is not scored).
    pub eval_long_tokens: usize,
}

/// A shipped model's greedy and sampled continuations of [`PROMPT`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sample {
    pub model: String,
    pub prompt: String,
    pub greedy: String,
    pub sampled: String,
    pub sampler: String,
}

/// results.json, beside the shipped models (rendered by `gqa train --recipe table`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Results {
    pub data: String,
    pub license: String,
    pub tokenizer: String,
    pub base_config: Config,
    pub args: RecipeArgs,
    pub base_spec: TrainSpec,
    pub uptrain: String,
    pub eval_text: String,
    pub eval_long_text: String,
    pub eval_bytes: usize,
    pub variants: Vec<VariantResult>,
    pub samples: Vec<Sample>,
    pub shipped: Vec<(String, String)>,
}

/// Hyperparameters shared by pretraining and uptraining; `steps`, `warmup` and
/// the number of steps on long windows differ. The last `2 * long_steps` steps
/// alternate long and short windows.
fn spec(args: &RecipeArgs, steps: usize, long_steps: usize, warmup: usize, seed: u64) -> TrainSpec {
    TrainSpec {
        steps,
        warmup,
        batch_size: args.batch_size,
        long_from: steps - (2 * long_steps).min(steps),
        long_batch_size: (args.batch_size * args.seq_len / args.long_seq_len).max(1),
        lr: args.lr,
        min_lr: args.lr / 10.0,
        adamw: AdamWParams { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 },
        clip: 1.0,
        seed,
        eval_every: (steps / 20).clamp(10, 50),
        eval_windows: 64,
        checkpoint_secs: 180,
    }
}

/// The base config of size `name`: MHA, tied embeddings, `context` positions.
pub fn base_config(name: &str, vocab_size: usize, context: usize) -> Result<Config> {
    let &(_, d, f, l) = SIZES
        .iter()
        .find(|s| s.0 == name)
        .ok_or_else(|| GqaError::Invalid(format!("unknown size '{name}': use s, m or l")))?;
    let mut c = Config::new(d, f, l, N_HEADS, N_HEADS, vocab_size, context);
    c.tie_word_embeddings = true;
    c.validate()?;
    Ok(c)
}

/// The text as token streams: train.txt in short and in long windows, and val.txt.
pub struct Streams {
    pub train: TokenStream,
    pub train_long: TokenStream,
    pub val: TokenStream,
}

/// The tokenizer (trained once, kept in the work folder) and the token streams.
pub fn prepare(args: &RecipeArgs) -> Result<(Tokenizer, Streams)> {
    if args.long_seq_len < args.seq_len {
        return Err(GqaError::Invalid(format!(
            "--long-seq-len ({}) must be at least --seq-len ({})",
            args.long_seq_len, args.seq_len
        )));
    }
    let train_text = read_text(&args.data.join("train.txt"))?;
    let val_text = read_text(&args.data.join("val.txt"))?;
    let path = args.work.join("tokenizer.json");
    let tokenizer = if path.exists() {
        Tokenizer::from_json(&std::fs::read(&path).map_err(|e| GqaError::io(path.display(), e))?)?
    } else {
        eprintln!("training a byte-level BPE tokenizer ({} tokens) on train.txt ...", args.vocab_size);
        let t = train_bpe(&train_text, args.vocab_size)?;
        std::fs::create_dir_all(&args.work).map_err(|e| GqaError::io(args.work.display(), e))?;
        std::fs::write(&path, t.to_json()?).map_err(|e| GqaError::io(path.display(), e))?;
        t
    };
    let stream = |text: &str| -> Result<TokenStream> {
        Ok(TokenStream { tokens: tokenizer.encode(text)?, bos: 1, seq_len: args.seq_len })
    };
    let (train, val) = (stream(&train_text)?, stream(&val_text)?);
    let train_long = TokenStream { tokens: train.tokens.clone(), bos: 1, seq_len: args.long_seq_len };
    eprintln!(
        "train.txt: {} bytes, {} tokens ({:.2} bytes/token); val.txt: {} tokens",
        train_text.len(),
        train.tokens.len(),
        train_text.len() as f64 / train.tokens.len() as f64,
        val.tokens.len()
    );
    Ok((tokenizer, Streams { train, train_long, val }))
}

/// The base's training: `base_steps` on short windows, then `long_steps` on
/// long ones interleaved with as many short ones.
fn base_spec(args: &RecipeArgs) -> TrainSpec {
    let steps = args.base_steps + 2 * args.long_steps;
    spec(args, steps, args.long_steps, (steps / 20).max(1), args.seed)
}

/// Train the base only, from a seeded random init.
pub fn train_base(args: &RecipeArgs, s: &Streams) -> Result<(Model, RunState)> {
    let config = base_config(&args.size, args.vocab_size, args.long_seq_len)?;
    let init = Model::random(&config, args.seed, DType::F32)?;
    eprintln!("base: {} ({:.2}M parameters)", bench::label(N_HEADS, N_HEADS), config.n_params() as f64 / 1e6);
    train(&init, &s.train, &s.train_long, &s.val, &base_spec(args), &args.work.join("base"), "base")
}

/// `gqa train --recipe sweep`: train every size for `args.base_steps` steps,
/// for choosing the base by tokens/s and validation loss.
pub fn sweep(args: &RecipeArgs) -> Result<()> {
    let (_, streams) = prepare(args)?;
    for &(name, ..) in SIZES {
        let a = RecipeArgs { size: name.into(), work: args.work.join(format!("sweep-{name}")), ..args.clone() };
        let (_, state) = train_base(&a, &streams)?;
        let params = base_config(name, args.vocab_size, args.seq_len)?.n_params();
        println!(
            "size {name}: {:.2}M params, {} steps, {:.0} tok/s, train {:.4} val {:.4} nats/token, {:.0} s",
            params as f64 / 1e6,
            state.step,
            state.tokens_seen as f64 / state.elapsed_s,
            state.last_train_loss,
            state.last_val_loss,
            state.elapsed_s
        );
    }
    Ok(())
}

/// The two evaluations of val.txt: BOS + its first `eval_tokens` tokens in
/// windows of `seq_len`, and BOS + the first `eval_long_tokens` of those (0 = all)
/// in windows of `long_seq_len`, only their second halves scored.
fn protocols(args: &RecipeArgs, bos: u32, val: &TokenStream) -> (Protocol, Protocol) {
    let mut ids = vec![bos];
    ids.extend_from_slice(&val.tokens);
    if args.eval_tokens > 0 {
        ids.truncate(args.eval_tokens + 1);
    }
    let long_len = match args.eval_long_tokens {
        0 => ids.len(),
        n => ids.len().min(n + 1),
    };
    let long = Protocol::new(ids[..long_len].to_vec(), args.long_seq_len, args.long_seq_len / 2);
    (Protocol::new(ids, args.seq_len, 0), long)
}

/// `gqa train --recipe paper`: everything, resumable.
pub fn paper(args: &RecipeArgs) -> Result<()> {
    let (tokenizer, streams) = prepare(args)?;
    let (base, base_state) = train_base(args, &streams)?;
    let (short, long) = protocols(args, base.config.bos_token_id, &streams.val);
    let mut evaluation = Evaluation::new(&args.work, &base, &tokenizer, short, long)?;
    let mut variants = vec![evaluation.score(&base, "base", None, &base_state)?];
    let mut plan = Vec::new();
    for alpha_pct in [5, 10] {
        for method in [Method::Mean, Method::First, Method::Random] {
            for groups in [4, 2, 1] {
                if alpha_pct == 5 || method == Method::Mean {
                    plan.push(Variant { groups, method, alpha_pct });
                }
            }
        }
    }
    // As converted (alpha = 0): no training, scored first since it is cheap.
    for method in [Method::Mean, Method::First, Method::Random] {
        for groups in [4, 2, 1] {
            let v = Variant { groups, method, alpha_pct: 0 };
            let model = convert(&base, groups, method, args.seed)?;
            variants.push(evaluation.score(&model, &v.name(), Some(v), &RunState::default())?);
        }
    }
    for v in plan {
        let start = convert(&base, v.groups, v.method, args.seed)?;
        // The base's mix of short and long windows, scaled by alpha.
        let steps = (base_state.step * v.alpha_pct).div_ceil(100);
        let long_steps = (args.long_steps * v.alpha_pct).div_ceil(100);
        let spec = spec(args, steps, long_steps, (steps / 10).max(1), args.seed + 1);
        let (model, state) =
            train(&start, &streams.train, &streams.train_long, &streams.val, &spec, &args.work.join(v.name()), &v.name())?;
        variants.push(evaluation.score(&model, &v.name(), Some(v), &state)?);
    }

    // Ship the base and the mean-pooled, 5%-uptrained GQA-4, GQA-2 and MQA.
    let mut shipped = Vec::new();
    let mut samples = Vec::new();
    for (folder, run) in [("mha", "base"), ("gqa-4", "g4-mean-a5"), ("gqa-2", "g2-mean-a5"), ("mqa", "g1-mean-a5")] {
        let model = if run == "base" { base.clone() } else { hf::load_hf_dir(&args.work.join(run).join("final"))? };
        let dir = args.out.join(folder);
        hf::save_hf_dir(&model, &dir, DType::F16)?;
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, tokenizer.to_json()?).map_err(|e| GqaError::io(path.display(), e))?;
        samples.push(sample(folder, &model.to_dtype(DType::F16), &tokenizer)?);
        shipped.push((folder.to_string(), run.to_string()));
    }
    let results = Results {
        data: "TinyStories subset: train.txt (training, tokenizer) and val.txt (evaluation only)".into(),
        license: "data: CDLA-Sharing-1.0 (TinyStories); weights: the project's own results".into(),
        tokenizer: format!("byte-level BPE, {} tokens, trained on train.txt with the tokenizers crate", tokenizer.vocab_size()),
        base_config: base.config.clone(),
        args: args.clone(),
        base_spec: base_spec(args),
        uptrain: "same optimizer and data, fresh AdamW state, warmup 10% of the run's steps to the base's peak lr, cosine to lr/10; \
                  the last 2 x alpha x long_steps steps alternate long and short windows"
            .into(),
        eval_text: format!(
            "BOS + the first {} tokens of val.txt, windows of {} advancing by half",
            evaluation.short.ids.len() - 1,
            args.seq_len
        ),
        eval_long_text: format!(
            "BOS + the first {} of those tokens, windows of {} advancing by half, only each window's second half scored",
            evaluation.long.ids.len() - 1,
            args.long_seq_len
        ),
        eval_bytes: evaluation.bytes,
        variants,
        samples,
        shipped,
    };
    write_json(&args.out.join("results.json"), &results)?;
    write_json(&args.work.join("results.json"), &results)?;
    eprintln!("wrote {}", args.out.join("results.json").display());
    Ok(())
}

/// Greedy and sampled continuations of [`PROMPT`] (128 tokens each).
fn sample(name: &str, model: &Model, tokenizer: &Tokenizer) -> Result<Sample> {
    let run = |sampler: SamplerConfig| -> Result<String> {
        let mut s = Session::cpu(model.clone(), Some(tokenizer.clone()), None)?;
        let text = s.generate(PROMPT, &GenerateParams { max_tokens: 128, sampler }, &mut |_| true)?;
        Ok(format!("{PROMPT}{text}"))
    };
    let sampled = SamplerConfig { temperature: 0.8, top_k: 0, top_p: 0.95, seed: 42 };
    Ok(Sample {
        model: name.into(),
        prompt: PROMPT.into(),
        greedy: run(SamplerConfig { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 })?,
        sampled: run(sampled.clone())?,
        sampler: format!("temperature {}, top_p {}, seed {}", sampled.temperature, sampled.top_p, sampled.seed),
    })
}
