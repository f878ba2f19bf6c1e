//! `gqa bench`: decode speed for every G at several context lengths, related to
//! its physical limit. A decode step streams the weights once plus the whole KV
//! cache of G heads; dividing those bytes by the step time gives an effective
//! bandwidth, which we compare with this machine's measured copy bandwidth.

use serde::Serialize;
use web_time::Instant;

use crate::backend::Backend;
use crate::config::kv_cache_bytes;
use crate::convert::{convert, Method};
use crate::error::{GqaError, Result};
use crate::kernels::{for_chunks, rows_dot_slice, threads};
use crate::model::Model;
use crate::tensor::KvDType;

pub use crate::presets::{preset, PRESETS};

/// This machine's memory bandwidth in bytes per second, measured with as many
/// threads as decoding uses ([`threads`]) on a buffer far larger than the caches.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Bandwidth {
    /// A large copy, counting bytes read plus bytes written (the STREAM convention).
    pub copy: f64,
    /// A large read-only sweep (what a decode step does with weights and cache).
    pub read: f64,
}

/// Measure [`Bandwidth`] on `bytes`-sized buffers; the median of `reps` runs each.
pub fn bandwidth(bytes: usize, reps: usize) -> Bandwidth {
    let n = bytes / 4;
    // Both buffers are written first, so no page is first touched while timed.
    let src = vec![1.0f32; n];
    let mut dst = vec![2.0f32; n];
    let n_threads = threads();
    let chunk = n.div_ceil(n_threads).max(1);
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
    let parallel = n_threads > 1;
    let copy_s = time(&mut || for_chunks(&mut dst, chunk, parallel, |first, d| d.copy_from_slice(&src[first..first + d.len()])));
    // Read as the decode kernels read weights: each thread's part as rows of
    // COLS, four rows at a time, against a vector that stays in cache. One
    // partial sum per thread.
    const COLS: usize = 1024;
    let ones = vec![1.0f32; COLS];
    let mut sums = vec![0.0f32; n_threads];
    let read_s = time(&mut || {
        for_chunks(&mut sums, 1, parallel, |i, s| {
            let part = &src[(i * chunk).min(n)..((i + 1) * chunk).min(n)];
            let mut out = [0.0f32; 64];
            for block in part.chunks(64 * COLS) {
                let rows = &mut out[..block.len() / COLS];
                rows_dot_slice(block, COLS, &ones, rows);
                s[0] += rows.iter().sum::<f32>();
            }
        })
    });
    std::hint::black_box((&dst, &sums));
    Bandwidth { copy: 2.0 * bytes as f64 / copy_s, read: bytes as f64 / read_s }
}

/// How every decode speed in this crate is measured (`gqa bench`, and the page's
/// `decodeSpeed` through [`decode_timing`]): the KV cache holds `context - steps`
/// synthetic positions, one untimed warm-up step runs, then `steps - 1` timed
/// steps end at position `context`. One round gives the median time of its steps.
#[derive(Clone, Copy, Debug)]
pub struct DecodeCase {
    pub context: usize,
    pub steps: usize,
}

impl DecodeCase {
    /// A case for a backend whose KV cache holds `capacity` positions.
    pub fn new(context: usize, steps: usize, capacity: usize) -> Result<DecodeCase> {
        if context > capacity || context <= steps || steps < 2 {
            return Err(GqaError::Invalid(format!(
                "context {context} must be above the {steps} timed steps (at least 2) and at most the KV capacity {capacity}"
            )));
        }
        Ok(DecodeCase { context, steps })
    }

    /// Empty the cache, then fill it with the synthetic positions before the steps.
    pub fn prepare(&self, backend: &mut dyn Backend) -> Result<()> {
        backend.reset();
        backend.fill_synthetic(self.context - self.steps, 7)
    }

    /// The token fed at step `i` (0 is the warm-up).
    pub fn token(&self, i: usize) -> u32 {
        (i % 7) as u32 + 1
    }

    /// One round on a blocking backend: the median seconds per timed step. Each
    /// step is a greedy decode step (the next token, not the logits, comes back).
    pub fn round(&self, backend: &mut dyn Backend) -> Result<f64> {
        self.prepare(backend)?;
        backend.forward_argmax(&[self.token(0)])?; // warm-up step, not timed
        let mut times = (1..self.steps)
            .map(|i| {
                let start = Instant::now();
                backend.forward_argmax(&[self.token(i)]).map(|_| start.elapsed().as_secs_f64())
            })
            .collect::<Result<Vec<f64>>>()?;
        Ok(median(&mut times))
    }

    /// Bytes one timed step reads: the weights, and the KV cache of `model`'s G
    /// heads in `kv_dtype`, at the average timed position.
    pub fn bytes(&self, model: &Model, kv_dtype: KvDType) -> (usize, usize) {
        let kv = kv_cache_bytes(&model.config, model.config.n_kv_heads(), self.context - self.steps / 2, kv_dtype);
        (model.weight_bytes_per_token(), kv)
    }
}

/// Seconds per decode step on `backend` at `context`: the median over `rounds`
/// rounds of [`DecodeCase::round`].
pub fn decode_timing(backend: &mut dyn Backend, context: usize, steps: usize, rounds: usize) -> Result<f64> {
    let case = DecodeCase::new(context, steps, backend.capacity())?;
    let mut times = (0..rounds.max(1)).map(|_| case.round(backend)).collect::<Result<Vec<f64>>>()?;
    Ok(median(&mut times))
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub label: String,
    /// Time to convert the base model to this G (mean pooling), in memory.
    pub convert_ms: f64,
    pub context: usize,
    pub ms_per_token: f64,
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
    pub kv_dtype: String,
    pub copy_gb_s: f64,
    pub read_gb_s: f64,
    /// Peak resident memory while converting the base to every G (Linux).
    pub convert_memory: Option<ConvertMemory>,
    /// Bytes of the base model's weights and of the engine's KV cache.
    pub weight_bytes: u64,
    pub kv_cache_bytes: u64,
    pub rows: Vec<BenchRow>,
}

/// Resident memory of this process around the conversions of [`run`], in
/// bytes (Linux): before them, and the peak while they ran.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ConvertMemory {
    pub resident_before: u64,
    pub peak: u64,
}

/// (VmRSS, VmHWM) of this process in bytes, where /proc says (Linux).
fn resident() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Restart VmHWM from the current resident size (Linux; a no-op elsewhere).
fn reset_peak_resident() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// "MHA", "MQA" or "GQA-G".
pub fn label(n_heads: usize, n_kv_heads: usize) -> String {
    match n_kv_heads {
        g if g == n_heads => "MHA".into(),
        1 => "MQA".into(),
        g => format!("GQA-{g}"),
    }
}

/// Time decode steps ending at each context (see [`DecodeCase`]), for each G
/// (from the base model by mean-pooling). All cases are measured in `rounds`
/// interleaved rounds, each starting with a memory-bandwidth measurement, so a
/// slow spell of a shared machine hits every G and the bandwidth alike; each
/// figure is the median over rounds. Returns the bandwidth and one row per
/// (G, context). `progress(done, total)` counts cases.
#[allow(clippy::too_many_arguments)]
pub fn run(
    backend: &mut dyn Backend,
    base: &Model,
    groups: &[usize],
    contexts: &[usize],
    steps: usize,
    rounds: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Bandwidth, Vec<BenchRow>, Option<ConvertMemory>)> {
    let rounds = rounds.max(1);
    let total = rounds * groups.len() * contexts.len();
    let cases = contexts.iter().map(|&ctx| DecodeCase::new(ctx, steps, backend.capacity())).collect::<Result<Vec<_>>>()?;
    // Convert each G once (the time is reported; the models share all but
    // wk/wv, and the peak resident memory while they are made is measured).
    reset_peak_resident();
    let resident_before = resident();
    let mut models = Vec::with_capacity(groups.len());
    for &g in groups {
        let start = Instant::now();
        let model = convert(base, g, Method::Mean, 0)?;
        models.push((model, start.elapsed().as_secs_f64() * 1e3));
    }
    let convert_memory = resident_before.zip(resident()).map(|((before, _), (_, peak))| ConvertMemory { resident_before: before, peak });
    // step_times[g][c]: one median step time per round.
    let mut step_times = vec![vec![Vec::new(); contexts.len()]; groups.len()];
    let (mut copy, mut read) = (Vec::new(), Vec::new());
    let mut done = 0;
    for _ in 0..rounds {
        let bw = bandwidth(256 << 20, 5);
        copy.push(bw.copy);
        read.push(bw.read);
        for (gi, (model, _)) in models.iter().enumerate() {
            backend.set_model(model.clone())?;
            for (ci, case) in cases.iter().enumerate() {
                step_times[gi][ci].push(case.round(backend)?);
                done += 1;
                progress(done, total);
            }
        }
    }
    let bandwidth = Bandwidth { copy: median(&mut copy), read: median(&mut read) };
    let kv_dtype = backend.kv_dtype();
    let mut rows = Vec::new();
    for (gi, (model, convert_ms)) in models.iter().enumerate() {
        let c = &model.config;
        for (ci, case) in cases.iter().enumerate() {
            let step_s = median(&mut step_times[gi][ci]);
            let (weight_bytes, kv_bytes) = case.bytes(model, kv_dtype);
            let bytes = weight_bytes + kv_bytes;
            let rate = bytes as f64 / step_s;
            rows.push(BenchRow {
                n_heads: c.n_heads(),
                n_kv_heads: c.n_kv_heads(),
                label: label(c.n_heads(), c.n_kv_heads()),
                convert_ms: *convert_ms,
                context: case.context,
                ms_per_token: step_s * 1e3,
                decode_tok_s: 1.0 / step_s,
                weight_bytes_per_token: weight_bytes,
                kv_bytes_per_token: kv_bytes,
                bytes_per_token: bytes,
                effective_gb_s: rate / 1e9,
                roofline: rate / bandwidth.copy,
                read_roofline: rate / bandwidth.read,
            });
        }
    }
    Ok((bandwidth, rows, convert_memory))
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
        "backend {}, {} threads, {:.1}M params ({} weights, {} KV cache), memory bandwidth with {} threads: copy {:.2} GB/s (read + write), read {:.2} GB/s\n\n",
        report.backend,
        report.threads,
        report.params as f64 / 1e6,
        report.dtype,
        report.kv_dtype,
        report.threads,
        report.copy_gb_s,
        report.read_gb_s
    );
    s += "| G | context | ms/token | tok/s | MB/token (weights + KV) | effective GB/s | of copy bw | of read bw | convert ms |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in &report.rows {
        s += &format!(
            "| {} ({}) | {} | {:.3} | {:.1} | {:.2} + {:.2} | {:.2} | {:.0}% | {:.0}% | {:.1} |\n",
            r.label,
            r.n_kv_heads,
            r.context,
            r.ms_per_token,
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
    if let Some(m) = report.convert_memory {
        let held = (report.weight_bytes + report.kv_cache_bytes) as f64;
        s += &format!(
            "\nConverting to every G: resident {:.1} MiB before, peak {:.1} MiB; weights + KV cache {:.1} MiB (peak = {:.2}x that)\n",
            m.resident_before as f64 / MIB,
            m.peak as f64 / MIB,
            held / MIB,
            m.peak as f64 / held
        );
    }
    s
}

const MIB: f64 = (1u64 << 20) as f64;
