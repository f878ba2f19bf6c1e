//! `gqa bench`: decode tokens/s for every G at several contexts, against this
//! machine's memory bandwidth.

use std::path::PathBuf;

use clap::Args;

use gqa::backend::{Backend, BackendKind};
use gqa::bench::{self, BenchReport};
use gqa::config::kv_cache_bytes;
use gqa::convert::group_choices;
use gqa::model::Model;
use gqa::tensor::DType;
use gqa::{loader, GqaError, Result};

use super::{bar, human_bytes, parse_dtype, EngineArgs};

#[derive(Args)]
pub struct BenchArgs {
    /// A random-weight shape: tiny, 15m, 110m, 500m, 1b (ignored with --model or --dim).
    #[arg(long, default_value = "15m")]
    pub preset: String,
    /// A real model instead of random weights.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Explicit shape instead of a preset: hidden size ...
    #[arg(long, requires_all = ["layers", "heads"])]
    pub dim: Option<usize>,
    /// ... layers ...
    #[arg(long)]
    pub layers: Option<usize>,
    /// ... query heads H ...
    #[arg(long)]
    pub heads: Option<usize>,
    /// ... MLP size (default 8/3 x dim, rounded up to a multiple of 32) ...
    #[arg(long)]
    pub ffn: Option<usize>,
    /// ... and vocabulary size.
    #[arg(long, default_value_t = 4096)]
    pub vocab: usize,
    /// Context lengths to decode at (default: 128, 512, 2048, those within the
    /// model's context, or the model's context if none is).
    #[arg(long, value_delimiter = ',')]
    pub contexts: Option<Vec<usize>>,
    /// G values (default: every divisor of H).
    #[arg(long, value_delimiter = ',')]
    pub groups: Option<Vec<usize>>,
    /// Weights in memory: f32 or f16 (default: a model's as stored, f32 for random weights).
    #[arg(long, value_parser = parse_dtype)]
    pub dtype: Option<DType>,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Decode steps timed per case in each round (median taken).
    #[arg(long, default_value_t = 24)]
    pub steps: usize,
    /// Interleaved rounds over all cases (median over rounds reported).
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Engine: cpu, or gpu (wgpu; without a GPU adapter it says why and uses the CPU).
    #[arg(long, default_value = "cpu")]
    pub backend: BackendKind,
    /// Print the report as JSON (on the GPU with its profile: adapter, copy bandwidth,
    /// per-kernel time, fixed cost and read-back per token).
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file (the Markdown still goes to stdout).
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

pub fn run(a: BenchArgs) -> Result<()> {
    if let Some(t) = a.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
            .map_err(|e| GqaError::Invalid(format!("cannot start {t} threads: {e}")))?;
    }
    let start = std::time::Instant::now();
    let base = match (&a.model, a.dim) {
        (Some(path), _) => {
            let model = loader::load(path, None)?.0;
            match a.dtype {
                Some(d) => model.to_dtype(d),
                None => model,
            }
        }
        (None, Some(dim)) => {
            let ffn = a.ffn.unwrap_or_else(|| (dim * 8 / 3).div_ceil(32) * 32);
            let heads = a.heads.unwrap_or(8);
            let ctx = a.contexts.iter().flatten().copied().max().unwrap_or(2048);
            random_model(gqa::Config::new(dim, ffn, a.layers.unwrap_or(1), heads, heads, a.vocab, ctx), &a)?
        }
        (None, None) => {
            // Random weights know no context limit: the preset's grows to the contexts asked.
            let mut config = bench::preset(&a.preset)?;
            let longest = a.contexts.iter().flatten().copied().max().unwrap_or(0);
            config.max_position_embeddings = config.max_position_embeddings.max(longest);
            random_model(config, &a)?
        }
    };
    let groups = a.groups.clone().unwrap_or_else(|| group_choices(&base.config));
    let limit = base.config.max_position_embeddings;
    let contexts = a.contexts.clone().unwrap_or_else(|| {
        let within: Vec<usize> = [128, 512, 2048].into_iter().filter(|&c| c <= limit).collect();
        if within.is_empty() { vec![limit] } else { within }
    });
    let capacity = contexts.iter().copied().max().unwrap_or(1);
    if capacity > limit {
        return Err(GqaError::PromptTooLong { prompt: capacity, context: limit });
    }
    eprintln!(
        "{:.1}M params ({}) loaded or created in {:.0} ms; measuring memory bandwidth, then {} G x {} contexts ...",
        base.config.n_params() as f64 / 1e6,
        base.storage(),
        start.elapsed().as_secs_f64() * 1e3,
        groups.len(),
        contexts.len()
    );
    let (mut backend, fallback, gpu_timing) = gqa::gpu::report::bench_backend(a.backend, base.clone(), capacity, a.engine.options())?;
    if let Some(why) = fallback {
        eprintln!("{why}");
    }
    let kv_bytes = backend.kv_bytes_allocated() as u64; // for the base's G, before run() swaps models
    let kv_dtype = backend.kv_dtype();
    let mut timings = Vec::new();
    let bar = bar((a.rounds * groups.len() * contexts.len()) as u64, "cases");
    let (bandwidth, rows, convert_memory) = bench::run(&mut backend, &base, &groups, &contexts, a.steps, a.rounds, &mut |d, _| {
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
        dtype: base.storage(),
        kv_dtype: kv_dtype.name().into(),
        copy_gb_s: bandwidth.copy / 1e9,
        read_gb_s: bandwidth.read / 1e9,
        convert_memory,
        weight_bytes: base.weight_bytes() as u64,
        kv_cache_bytes: kv_bytes,
        rows,
    };
    // On the GPU: where the time goes, case by case (gpu/report.rs).
    let gpu_profile = match backend.gpu() {
        Some(gpu) => {
            eprintln!("profiling each case on the GPU ...");
            Some(gqa::gpu::report::profile(gpu, &base, &report.rows, &timings, a.steps)?)
        }
        None => None,
    };
    #[derive(serde::Serialize)]
    struct Output<'a> {
        #[serde(flatten)]
        report: &'a BenchReport,
        #[serde(skip_serializing_if = "Option::is_none")]
        gpu: Option<gqa::gpu::report::GpuProfile>,
    }
    let out = Output { report: &report, gpu: gpu_profile.clone() };
    let json = serde_json::to_string_pretty(&out).expect("report serializes");
    if let Some(path) = &a.json_out {
        std::fs::write(path, &json).map_err(|e| GqaError::io(path.display(), e))?;
    }
    if a.json {
        println!("{json}");
    } else {
        print!("{}", bench::markdown(&report));
        if let Some(p) = &gpu_profile {
            print!("{}", gqa::gpu::report::markdown(p));
        }
        let c = &base.config;
        println!(
            "\nKV cache ({}) at context {}: MHA {} vs MQA {}",
            kv_dtype.name(),
            capacity,
            human_bytes(kv_cache_bytes(c, c.n_heads(), capacity, kv_dtype)),
            human_bytes(kv_cache_bytes(c, 1, capacity, kv_dtype))
        );
    }
    Ok(())
}

/// A random-weight model of `config`, once its sizes and the KV cache for its longest
/// context (at the precision the engine will use) are known to fit: nothing large is
/// allocated before.
fn random_model(config: gqa::Config, a: &BenchArgs) -> Result<Model> {
    config.validate()?;
    let options = a.engine.options();
    let kv_dtype = if a.backend == BackendKind::Gpu { options.gpu_kv_dtype() } else { options.cpu_kv_dtype() };
    gqa::config::kv_cache_bytes_checked(&config, config.n_kv_heads(), config.max_position_embeddings, kv_dtype)?;
    Model::random(&config, 1, a.dtype.unwrap_or(DType::F32))
}
