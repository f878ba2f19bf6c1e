//! `gqa`: generate, convert, evaluate and benchmark Grouped-Query Attention
//! models from the command line. Native only; the page uses the same library.

#[cfg(target_arch = "wasm32")]
fn main() {}

// Training allocates many short-lived tensors; mimalloc makes it 2-3x faster.
#[cfg(feature = "train")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    cli::main()
}

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use std::io::Write;
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;

    use clap::{Args, Parser, Subcommand};
    use indicatif::{ProgressBar, ProgressStyle};

    use gqa::bench::{self, BenchReport};
    use gqa::config::{divisors, kv_cache_bytes};
    use gqa::convert::{convert, Method};
    use gqa::eval::evaluate;
    use gqa::model::Model;
    use gqa::sampler::SamplerConfig;
    use gqa::session::{GenerateParams, Session};
    use gqa::tensor::DType;
    use gqa::tokenizer::Tokenizer;
    use gqa::{loader, GqaError, Result};

    #[derive(Parser)]
    #[command(
        name = "gqa",
        version,
        about = "See Grouped-Query Attention: run a Llama-style model with G key/value heads",
        long_about = "Run a Llama-style decoder with G key/value heads for its H query heads \
(MHA: G = H, GQA: 1 < G < H, MQA: G = 1). A model is converted to G by pooling the key/value \
projection heads of each group (GQA paper, Algorithm 4). Models: a Hugging Face folder \
(config.json, model.safetensors, tokenizer.json) or a llama2.c checkpoint (.bin + tokenizer.bin)."
    )]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Stream generated text to stdout; speed and KV-cache memory go to stderr.
        Generate(GenerateArgs),
        /// Convert a model to G key/value heads and write a Hugging Face folder.
        Convert(ConvertArgs),
        /// Perplexity over a text file, optionally compared with the unconverted model.
        Eval(EvalArgs),
        /// Decode tokens/s for every G at several contexts, against this machine's memory bandwidth.
        Bench(BenchArgs),
        /// Train the model family: MHA base, converted and uptrained GQA variants, results table.
        #[cfg(feature = "train")]
        Train(super::train_cmd::TrainArgs),
    }

    #[derive(Args)]
    struct ModelArgs {
        /// A Hugging Face folder, a model.safetensors (config.json beside it), or a llama2.c .bin.
        #[arg(long, short)]
        model: PathBuf,
        /// Tokenizer file: tokenizer.json, or a llama2.c tokenizer.bin
        /// (default: found beside the model).
        #[arg(long)]
        tokenizer: Option<PathBuf>,
        /// Key/value heads G; must divide the model's key/value heads (default: keep them).
        #[arg(long, short)]
        groups: Option<usize>,
        /// How to build each grouped key/value head: mean, first or random.
        #[arg(long, default_value = "mean")]
        method: Method,
        /// Weights in memory: f32 or f16 (default: as stored, bf16 -> f32).
        #[arg(long, value_parser = parse_dtype)]
        dtype: Option<DType>,
    }

    #[derive(Args)]
    struct GenerateArgs {
        #[command(flatten)]
        model: ModelArgs,
        /// Text to continue (BOS is added in front).
        #[arg(long, short, default_value = "")]
        prompt: String,
        /// Tokens to generate.
        #[arg(short = 'n', long, default_value_t = 256)]
        max_tokens: usize,
        /// 0 = greedy.
        #[arg(long, short, default_value_t = 0.0)]
        temperature: f32,
        /// Nucleus sampling: keep the most likely tokens up to this probability (1 = off).
        #[arg(long, default_value_t = 1.0)]
        top_p: f32,
        /// Keep only the k most likely tokens (0 = off).
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        /// Seed for sampling and for the `random` conversion method.
        #[arg(long, short, default_value_t = 0)]
        seed: u64,
        /// Print the statistics as JSON on stderr.
        #[arg(long)]
        json: bool,
        /// Engine: cpu, or gpu (wgpu; without a GPU adapter it says why and uses the CPU).
        #[arg(long, default_value = "cpu")]
        backend: gqa::gpu::BackendKind,
    }

    #[derive(Args)]
    struct ConvertArgs {
        #[command(flatten)]
        model: ModelArgs,
        /// Output folder (config.json, model.safetensors, tokenizer.json).
        #[arg(long, short)]
        out: PathBuf,
        /// Seed for the `random` method.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    }

    #[derive(Args)]
    struct EvalArgs {
        #[command(flatten)]
        model: ModelArgs,
        /// Plain text file to score.
        #[arg(long)]
        text: PathBuf,
        /// Window length in tokens (default: the model's context); windows advance by half.
        #[arg(long)]
        window: Option<usize>,
        /// Score only the first N tokens of the text.
        #[arg(long)]
        max_tokens: Option<usize>,
        /// Also compare with the unconverted model: KL divergence and top-1 agreement.
        #[arg(long)]
        vs_base: bool,
        /// Seed for the `random` method.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        json: bool,
    }

    #[derive(Args)]
    struct BenchArgs {
        /// A random-weight shape: tiny, 15m, 110m, 500m, 1b (ignored with --model or --dim).
        #[arg(long, default_value = "15m")]
        preset: String,
        /// A real model instead of random weights.
        #[arg(long)]
        model: Option<PathBuf>,
        /// Explicit shape instead of a preset: hidden size ...
        #[arg(long, requires_all = ["layers", "heads"])]
        dim: Option<usize>,
        /// ... layers ...
        #[arg(long)]
        layers: Option<usize>,
        /// ... query heads H ...
        #[arg(long)]
        heads: Option<usize>,
        /// ... MLP size (default 8/3 x dim, rounded up to a multiple of 32) ...
        #[arg(long)]
        ffn: Option<usize>,
        /// ... and vocabulary size.
        #[arg(long, default_value_t = 4096)]
        vocab: usize,
        /// Context lengths to decode at.
        #[arg(long, value_delimiter = ',', default_values_t = [128, 512, 2048])]
        contexts: Vec<usize>,
        /// G values (default: every divisor of H).
        #[arg(long, value_delimiter = ',')]
        groups: Option<Vec<usize>>,
        /// Weights in memory: f32 or f16.
        #[arg(long, value_parser = parse_dtype, default_value = "f32")]
        dtype: DType,
        /// Decode steps timed per case in each round (median taken).
        #[arg(long, default_value_t = 24)]
        steps: usize,
        /// Interleaved rounds over all cases (median over rounds reported).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Engine: cpu, or gpu (wgpu; without a GPU adapter it says why and uses the CPU).
        #[arg(long, default_value = "cpu")]
        backend: gqa::gpu::BackendKind,
        #[arg(long)]
        json: bool,
    }

    fn parse_dtype(s: &str) -> std::result::Result<DType, String> {
        DType::parse(s).ok_or_else(|| format!("unknown dtype '{s}': use f32 or f16"))
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        let result = match cli.command {
            Command::Generate(a) => generate(a),
            Command::Convert(a) => convert_cmd(a),
            Command::Eval(a) => eval_cmd(a),
            Command::Bench(a) => bench_cmd(a),
            #[cfg(feature = "train")]
            Command::Train(a) => super::train_cmd::run(a),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// The model as loaded (dtype applied) and its tokenizer.
    fn open(args: &ModelArgs) -> Result<(Model, Option<Tokenizer>)> {
        let (model, tokenizer) = loader::load(&args.model, args.tokenizer.as_deref())?;
        let model = match args.dtype {
            Some(d) => model.to_dtype(d),
            None => model,
        };
        Ok((model, tokenizer))
    }

    fn need_tokenizer(t: Option<Tokenizer>, model: &Path) -> Result<Tokenizer> {
        t.ok_or_else(|| {
            GqaError::Tokenizer(format!(
                "no tokenizer found beside {}; pass --tokenizer (tokenizer.json or llama2.c tokenizer.bin)",
                model.display()
            ))
        })
    }

    fn generate(a: GenerateArgs) -> Result<()> {
        let (model, tokenizer) = open(&a.model)?;
        let tokenizer = need_tokenizer(tokenizer, &a.model.model)?;
        let (mut session, fallback) = gqa::gpu::session(a.backend, model, Some(tokenizer), None)?;
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
                "KV cache at {} positions: {} for G = {} vs {} for MHA ({:.2}x smaller); weights {}",
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

    fn convert_cmd(a: ConvertArgs) -> Result<()> {
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

    fn eval_cmd(a: EvalArgs) -> Result<()> {
        let (base, tokenizer) = open(&a.model)?;
        let tokenizer = need_tokenizer(tokenizer, &a.model.model)?;
        let text = loader::read_text(&a.text)?;
        let mut ids = vec![base.config.bos_token_id];
        ids.extend(tokenizer.encode(&text)?);
        if let Some(n) = a.max_tokens {
            ids.truncate(n + 1);
        }
        let window = a.window.unwrap_or(base.config.max_position_embeddings);
        let groups = a.model.groups.unwrap_or(base.config.n_kv_heads());
        let capacity = window.min(base.config.max_position_embeddings);
        let mut model = Session::cpu(base.clone(), None, Some(capacity))?;
        model.set_groups(groups, a.model.method, a.seed)?;
        let mut reference = if a.vs_base { Some(Session::cpu(base.clone(), None, Some(capacity))?) } else { None };
        let bar = bar(ids.len() as u64 - 1, "tokens");
        let report = evaluate(
            model.backend(),
            reference.as_mut().map(|r| r.backend()),
            &ids,
            window,
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

    fn bench_cmd(a: BenchArgs) -> Result<()> {
        if let Some(t) = a.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build_global()
                .map_err(|e| GqaError::Invalid(format!("cannot start {t} threads: {e}")))?;
        }
        let base = match (&a.model, a.dim) {
            (Some(path), _) => loader::load(path, None)?.0.to_dtype(a.dtype),
            (None, Some(dim)) => {
                let ffn = a.ffn.unwrap_or_else(|| (dim * 8 / 3).div_ceil(32) * 32);
                let heads = a.heads.unwrap_or(8);
                let ctx = a.contexts.iter().copied().max().unwrap_or(2048);
                let config = gqa::Config::new(dim, ffn, a.layers.unwrap_or(1), heads, heads, a.vocab, ctx);
                Model::random(&config, 1, a.dtype)?
            }
            (None, None) => Model::random(&bench::preset(&a.preset)?, 1, a.dtype)?,
        };
        let groups = a.groups.clone().unwrap_or_else(|| divisors(base.config.n_kv_heads()));
        let capacity = a.contexts.iter().copied().max().unwrap_or(1);
        if capacity > base.config.max_position_embeddings {
            return Err(GqaError::PromptTooLong { prompt: capacity, context: base.config.max_position_embeddings });
        }
        eprintln!(
            "measuring memory bandwidth; then {} G x {} contexts on {:.1}M params ({:?}) ...",
            groups.len(),
            a.contexts.len(),
            base.config.n_params() as f64 / 1e6,
            a.dtype
        );
        let (mut backend, fallback, gpu_timing) = gqa::gpu::report::bench_backend(a.backend, base.clone(), capacity)?;
        if let Some(why) = fallback {
            eprintln!("{why}");
        }
        let mut timings = Vec::new();
        let bar = bar((a.rounds * groups.len() * a.contexts.len()) as u64, "cases");
        let (bandwidth, rows) = bench::run(backend.as_mut(), &base, &groups, &a.contexts, a.steps, a.rounds, &mut |d, _| {
            bar.set_position(d as u64);
            if let Some(t) = &gpu_timing {
                timings.push(std::mem::take(&mut *t.lock().unwrap()));
            }
        })?;
        bar.finish_and_clear();
        let report = BenchReport {
            backend: backend.name(),
            threads: rayon::current_num_threads(),
            params: base.config.n_params(),
            dtype: format!("{:?}", a.dtype).to_lowercase(),
            copy_gb_s: bandwidth.copy / 1e9,
            read_gb_s: bandwidth.read / 1e9,
            rows,
        };
        if a.json {
            println!("{}", serde_json::to_string_pretty(&report).expect("report serializes"));
        } else {
            print!("{}", bench::markdown(&report));
            if gpu_timing.is_some() {
                print!("{}", gqa::gpu::report::timing_markdown(&report.rows, &timings));
            }
            let c = &base.config;
            println!(
                "\nKV cache at context {}: MHA {} vs MQA {}",
                capacity,
                human_bytes(kv_cache_bytes(c, c.n_heads(), capacity, 4)),
                human_bytes(kv_cache_bytes(c, 1, capacity, 4))
            );
        }
        Ok(())
    }

    fn bar(len: u64, unit: &str) -> ProgressBar {
        let bar = ProgressBar::new(len);
        bar.set_style(
            ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {unit} [{{elapsed_precise}}, eta {{eta}}]"))
                .expect("valid template"),
        );
        bar
    }

    fn human_bytes(b: usize) -> String {
        match b {
            b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
            b if b >= 1 << 20 => format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64),
            b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
            b => format!("{b} B"),
        }
    }
}

#[cfg(all(feature = "train", not(target_arch = "wasm32")))]
mod train_cmd {
    use std::path::PathBuf;

    use clap::Args;

    use gqa::train::recipe::{self, RecipeArgs};
    use gqa::{GqaError, Result};

    #[derive(Args)]
    pub struct TrainArgs {
        /// `paper`: the whole recipe (tokenizer, base, conversions, uptraining, table, shipped models);
        /// `sweep`: train each base size for --base-steps steps to compare tokens/s and val loss;
        /// `table`: print --out/results.json as Markdown.
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
        /// Training window (and the models' context), BOS included.
        #[arg(long, default_value_t = 256)]
        seq_len: usize,
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        /// Pretraining steps of the base; uptraining takes alpha of these.
        #[arg(long, default_value_t = 600)]
        base_steps: usize,
        /// Peak learning rate (AdamW).
        #[arg(long, default_value_t = 2e-3)]
        lr: f64,
        #[arg(long, default_value_t = 1234)]
        seed: u64,
        /// Tokens of val.txt scored per variant, from its start (0 = all).
        #[arg(long, default_value_t = 16384)]
        eval_tokens: usize,
    }

    pub fn run(a: TrainArgs) -> Result<()> {
        let args = RecipeArgs {
            data: a.data,
            out: a.out,
            work: a.work,
            size: a.size,
            vocab_size: a.vocab_size,
            seq_len: a.seq_len,
            batch_size: a.batch_size,
            base_steps: a.base_steps,
            lr: a.lr,
            seed: a.seed,
            eval_tokens: a.eval_tokens,
        };
        match a.recipe.as_str() {
            "paper" => recipe::paper(&args),
            "sweep" => recipe::sweep(&args),
            "table" => recipe::table(&args.out).map(|md| print!("{md}")),
            other => Err(GqaError::Invalid(format!("unknown recipe '{other}': use paper, sweep or table"))),
        }
    }
}
