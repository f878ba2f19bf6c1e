//! `gqa bench`: decode speed for every G at several context lengths, related to
//! its physical limit. A decode step streams the weights once plus the whole KV
//! cache of G heads; dividing those bytes by the step time gives an effective
//! bandwidth, which we compare with this machine's measured copy bandwidth.

use serde::Serialize;
use web_time::Instant;

use crate::config::kv_cache_bytes;
use crate::convert::{convert, Method};
use crate::error::{GqaError, Result};
use crate::model::Model;
use crate::backend::{Backend, Logits};

pub use crate::presets::{preset, PRESETS};

/// This machine's memory bandwidth in bytes per second, measured with the
/// same threads as decoding on a buffer far larger than the caches.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Bandwidth {
    /// A large copy, counting bytes read plus bytes written (the STREAM convention).
    pub copy: f64,
    /// A large read-only sweep (what a decode step does with weights and cache).
    pub read: f64,
}

/// Measure [`Bandwidth`] on `bytes`-sized buffers; the median of `reps` runs each.
pub fn bandwidth(bytes: usize, reps: usize) -> Bandwidth {
    use rayon::prelude::*;
    let n = bytes / 4;
    // Both buffers are written first, so no page is first touched while timed.
    let src = vec![1.0f32; n];
    let mut dst = vec![2.0f32; n];
    let chunk = n.div_ceil(rayon::current_num_threads()).max(1);
    let time = |f: &mut dyn FnMut()| {
        let mut t: Vec<f64> = (0..reps.max(1))
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64()
            })
            .collect();
        median(&mut t)
    };
    let copy_s = time(&mut || dst.par_chunks_mut(chunk).zip(src.par_chunks(chunk)).for_each(|(d, s)| d.copy_from_slice(s)));
    let mut sum = 0.0;
    let read_s = time(&mut || sum += src.par_chunks(chunk).map(|c| crate::kernels::dot(c, c)).sum::<f32>());
    std::hint::black_box((&dst, sum));
    Bandwidth { copy: 2.0 * bytes as f64 / copy_s, read: bytes as f64 / read_s }
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
    /// Effective bandwidth over the measured read bandwidth.
    pub read_roofline: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub backend: String,
    pub threads: usize,
    pub params: u128,
    pub dtype: String,
    pub copy_gb_s: f64,
    pub read_gb_s: f64,
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
/// values. All cases are measured in `rounds` interleaved rounds, each
/// starting with a memory-bandwidth measurement, so a slow spell of a shared
/// machine hits every G and the bandwidth alike; each figure is the median
/// over rounds. Returns the bandwidth and one row per (G, context).
/// `progress(done, total)` counts cases.
#[allow(clippy::too_many_arguments)]
pub fn run(
    backend: &mut dyn Backend,
    base: &Model,
    groups: &[usize],
    contexts: &[usize],
    steps: usize,
    rounds: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Bandwidth, Vec<BenchRow>)> {
    let rounds = rounds.max(1);
    let total = rounds * groups.len() * contexts.len();
    for &ctx in contexts {
        if ctx > backend.capacity() || ctx <= steps || steps < 2 {
            return Err(GqaError::Invalid(format!(
                "context {ctx} must be above the {steps} timed steps (at least 2) and at most the KV capacity {}",
                backend.capacity()
            )));
        }
    }
    // step_times[g][c]: one median step time per round.
    let mut step_times = vec![vec![Vec::new(); contexts.len()]; groups.len()];
    let mut convert_ms = vec![Vec::new(); groups.len()];
    // Per G: the converted config and the weight bytes a step streams.
    let mut shapes = Vec::with_capacity(groups.len());
    let (mut copy, mut read) = (Vec::new(), Vec::new());
    let mut done = 0;
    for _ in 0..rounds {
        let bw = bandwidth(256 << 20, 5);
        copy.push(bw.copy);
        read.push(bw.read);
        for (gi, &g) in groups.iter().enumerate() {
            let start = Instant::now();
            let model = convert(base, g, Method::Mean, 0)?;
            convert_ms[gi].push(start.elapsed().as_secs_f64() * 1e3);
            if shapes.len() == gi {
                shapes.push((model.config.clone(), model.weight_bytes_per_token()));
            }
            let vocab = model.config.vocab_size;
            backend.set_model(model)?;
            for (ci, &ctx) in contexts.iter().enumerate() {
                backend.reset();
                backend.fill_synthetic(ctx - steps, 7)?;
                backend.forward(&[1], Logits::Last)?; // warm-up step, not timed
                let mut times: Vec<f64> = (0..steps - 1)
                    .map(|i| {
                        let start = Instant::now();
                        backend.forward(&[(i % vocab) as u32], Logits::Last).map(|_| start.elapsed().as_secs_f64())
                    })
                    .collect::<Result<_>>()?;
                step_times[gi][ci].push(median(&mut times));
                done += 1;
                progress(done, total);
            }
        }
    }
    let bandwidth = Bandwidth { copy: median(&mut copy), read: median(&mut read) };
    let mut rows = Vec::new();
    for (gi, &g) in groups.iter().enumerate() {
        let (config, weight_bytes) = (&shapes[gi].0, shapes[gi].1);
        for (ci, &ctx) in contexts.iter().enumerate() {
            let tok_s = 1.0 / median(&mut step_times[gi][ci]);
            // The cache is read at the average timed position.
            let kv_bytes = kv_cache_bytes(config, g, ctx - steps / 2, 4);
            let bytes = weight_bytes + kv_bytes;
            let rate = bytes as f64 * tok_s;
            rows.push(BenchRow {
                n_heads: config.n_heads(),
                n_kv_heads: g,
                label: label(config.n_heads(), g),
                convert_ms: median(&mut convert_ms[gi]),
                context: ctx,
                decode_tok_s: tok_s,
                weight_bytes_per_token: weight_bytes,
                kv_bytes_per_token: kv_bytes,
                bytes_per_token: bytes,
                effective_gb_s: rate / 1e9,
                roofline: rate / bandwidth.copy,
                read_roofline: rate / bandwidth.read,
            });
        }
    }
    Ok((bandwidth, rows))
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
        "backend {}, {} threads, {:.1}M params ({}), memory bandwidth: copy {:.2} GB/s (read + write), read {:.2} GB/s\n\n",
        report.backend,
        report.threads,
        report.params as f64 / 1e6,
        report.dtype,
        report.copy_gb_s,
        report.read_gb_s
    );
    s += "| G | context | tok/s | MB/token (weights + KV) | effective GB/s | of copy bw | of read bw | convert ms |\n|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in &report.rows {
        s += &format!(
            "| {} ({}) | {} | {:.1} | {:.2} + {:.2} | {:.2} | {:.0}% | {:.0}% | {:.1} |\n",
            r.label,
            r.n_kv_heads,
            r.context,
            r.decode_tok_s,
            r.weight_bytes_per_token as f64 / 1e6,
            r.kv_bytes_per_token as f64 / 1e6,
            r.effective_gb_s,
            r.roofline * 100.0,
            r.read_roofline * 100.0,
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
