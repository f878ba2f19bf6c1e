//! `gqa bench`: decode speed for every G at several context lengths, related to
//! its physical limit. A decode step streams the weights once plus the whole KV
//! cache of G heads; dividing those bytes by the step time gives an effective
//! bandwidth, which we compare with this machine's measured copy bandwidth.

use serde::Serialize;
use web_time::Instant;

use crate::config::{kv_cache_bytes, Config};
use crate::convert::{convert, Method};
use crate::error::{GqaError, Result};
use crate::model::Model;
use crate::session::{Backend, Logits};

/// Random-weight shapes for measuring speed without a trained model.
/// (name, hidden, ffn, layers, heads, vocab, context)
pub const PRESETS: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
    ("tiny", 128, 384, 4, 8, 512, 2048),
    ("15m", 384, 1024, 8, 8, 4096, 2048),
    ("110m", 768, 2048, 12, 12, 32000, 2048),
    ("500m", 1280, 3456, 24, 16, 32000, 2048),
    ("1b", 2048, 5632, 16, 32, 32000, 2048),
];

/// The config of a preset, as MHA (G = H).
pub fn preset(name: &str) -> Result<Config> {
    let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
    let &(_, d, f, l, h, v, ctx) = PRESETS
        .iter()
        .find(|p| p.0 == name)
        .ok_or_else(|| GqaError::Invalid(format!("unknown preset '{name}': choose one of {names:?}")))?;
    let mut c = Config::new(d, f, l, h, h, v, ctx);
    c.tie_word_embeddings = false;
    c.validate()?;
    Ok(c)
}

/// Bytes per second of a large memory copy, counting bytes read plus written
/// (the STREAM convention), using the same threads as decoding. Median of `reps`.
pub fn copy_bandwidth(bytes: usize, reps: usize) -> f64 {
    let n = bytes / 4;
    let src = vec![1.0f32; n];
    let mut dst = vec![0.0f32; n];
    let chunk = n.div_ceil(rayon::current_num_threads()).max(1);
    let mut rates: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let start = Instant::now();
            use rayon::prelude::*;
            dst.par_chunks_mut(chunk).zip(src.par_chunks(chunk)).for_each(|(d, s)| d.copy_from_slice(s));
            2.0 * (n * 4) as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    std::hint::black_box(&dst);
    median(&mut rates)
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub label: String,
    /// Time to convert the base model to this G (mean pooling), in memory.
    pub convert_ms: f64,
    pub context: usize,
    pub decode_tok_s: f64,
    pub weight_bytes_per_token: usize,
    pub kv_bytes_per_token: usize,
    pub bytes_per_token: usize,
    pub effective_gb_s: f64,
    /// Effective bandwidth over the measured copy bandwidth.
    pub roofline: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub backend: String,
    pub threads: usize,
    pub params: u128,
    pub dtype: String,
    pub copy_gb_s: f64,
    pub rows: Vec<BenchRow>,
}

/// "MHA", "MQA" or "GQA-G".
pub fn label(n_heads: usize, n_kv_heads: usize) -> String {
    match n_kv_heads {
        g if g == n_heads => "MHA".into(),
        1 => "MQA".into(),
        g => format!("GQA-{g}"),
    }
}

/// Time `steps` decode steps ending at each context, for each G (from the
/// base model by mean-pooling). The KV cache before them holds synthetic
/// values. `progress(done, total)` counts (G, context) cases.
pub fn run(
    backend: &mut dyn Backend,
    base: &Model,
    groups: &[usize],
    contexts: &[usize],
    steps: usize,
    copy_bytes_per_s: f64,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<BenchRow>> {
    let total = groups.len() * contexts.len();
    let mut rows = Vec::new();
    for &g in groups {
        let start = Instant::now();
        let model = convert(base, g, Method::Mean, 0)?;
        let convert_ms = start.elapsed().as_secs_f64() * 1e3;
        let config = model.config.clone();
        let weight_bytes = model.weight_bytes_per_token();
        backend.set_model(model)?;
        for &ctx in contexts {
            if ctx > backend.capacity() || ctx <= steps {
                return Err(GqaError::Invalid(format!(
                    "context {ctx} must be above the {steps} timed steps and at most the KV capacity {}",
                    backend.capacity()
                )));
            }
            backend.reset();
            backend.fill_synthetic(ctx - steps, 7)?;
            backend.forward(&[1], Logits::Last)?; // warm-up step, not timed
            let mut times: Vec<f64> = (0..steps - 1)
                .map(|i| {
                    let start = Instant::now();
                    backend.forward(&[(i % config.vocab_size) as u32], Logits::Last).map(|_| start.elapsed().as_secs_f64())
                })
                .collect::<Result<_>>()?;
            let tok_s = 1.0 / median(&mut times);
            // Reading the cache at the average timed position.
            let kv_bytes = kv_cache_bytes(&config, g, ctx - steps / 2, 4);
            let bytes = weight_bytes + kv_bytes;
            let rate = bytes as f64 * tok_s;
            rows.push(BenchRow {
                n_heads: config.n_heads(),
                n_kv_heads: g,
                label: label(config.n_heads(), g),
                convert_ms,
                context: ctx,
                decode_tok_s: tok_s,
                weight_bytes_per_token: weight_bytes,
                kv_bytes_per_token: kv_bytes,
                bytes_per_token: bytes,
                effective_gb_s: rate / 1e9,
                roofline: rate / copy_bytes_per_s,
            });
            progress(rows.len(), total);
        }
    }
    Ok(rows)
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The table as Markdown (what README.md shows).
pub fn markdown(report: &BenchReport) -> String {
    let mut s = format!(
        "backend {}, {} threads, {:.1}M params ({}), copy bandwidth {:.2} GB/s\n\n",
        report.backend,
        report.threads,
        report.params as f64 / 1e6,
        report.dtype,
        report.copy_gb_s
    );
    s += "| G | context | tok/s | MB/token (weights + KV) | effective GB/s | of copy bw | convert ms |\n|---|---:|---:|---:|---:|---:|---:|\n";
    for r in &report.rows {
        s += &format!(
            "| {} ({}) | {} | {:.1} | {:.2} + {:.2} | {:.2} | {:.0}% | {:.1} |\n",
            r.label,
            r.n_kv_heads,
            r.context,
            r.decode_tok_s,
            r.weight_bytes_per_token as f64 / 1e6,
            r.kv_bytes_per_token as f64 / 1e6,
            r.effective_gb_s,
            r.roofline * 100.0,
            r.convert_ms
        );
    }
    // The paper's claim in one line per context: speed follows bytes.
    let contexts: Vec<usize> = report.rows.iter().map(|r| r.context).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    s += "\n| context | tok/s ratio MQA/MHA | bytes ratio MHA/MQA |\n|---:|---:|---:|\n";
    for ctx in contexts {
        let at: Vec<&BenchRow> = report.rows.iter().filter(|r| r.context == ctx).collect();
        let mha = at.iter().find(|r| r.n_kv_heads == r.n_heads);
        let mqa = at.iter().find(|r| r.n_kv_heads == 1);
        if let (Some(mha), Some(mqa)) = (mha, mqa) {
            s += &format!(
                "| {} | {:.3} | {:.3} |\n",
                ctx,
                mqa.decode_tok_s / mha.decode_tok_s,
                mha.bytes_per_token as f64 / mqa.bytes_per_token as f64
            );
        }
    }
    s
}
