//! `gqa check-gpu`: the GPU engine against the CPU engine on one model, as the tests
//! do on lavapipe, for a real GPU: for every G the base can be pooled to and every KV
//! precision, a prefill and greedy decode steps (optionally after a synthetic
//! context, to reach long splits) compare logits; then the GPU's sampler against the
//! CPU's on those logits.
//!
//! Tolerances, as tests/gpu.rs justifies them: with an f32 KV cache both engines do the
//! same f32 arithmetic in another order, 1e-4 x max(1, largest |logit|); an f16 cache
//! rounds each key and value to 11 bits, 2e-3 x the largest |logit|. With int8 both
//! engines quantize the same keys and values by the same rule; they differ only where an
//! element lies within float rounding of the boundary between two codes and one engine
//! stores it one step (its head's max |x| / 127) away, in a few elements at most: the
//! f16 tolerance, 2e-3 x the largest |logit|, covers that. Greedy tokens must agree
//! wherever the CPU's two best logits are further apart than twice the tolerance.

use serde::Serialize;

use super::engine::GpuEngine;
use super::options::GpuOptions;
use crate::backend::{Backend, EngineOptions, Logits};
use crate::convert::{convert, group_choices, Method};
use crate::cpu::CpuEngine;
use crate::error::Result;
use crate::model::Model;
use crate::rng::Rng;
use crate::sampler::{argmax, sample_with, SamplerConfig};
use crate::tensor::KvDType;

/// One G and KV precision.
#[derive(Clone, Debug, Serialize)]
pub struct CheckRow {
    pub n_kv_heads: usize,
    pub kv_dtype: String,
    /// Synthetic positions before the prompt.
    pub filled: usize,
    /// Logits compared: the prompt's rows and the decode steps.
    pub positions: usize,
    pub max_abs_diff: f32,
    pub tolerance: f32,
    /// Decode steps whose greedy token differs where the CPU's top two are apart.
    pub greedy_mismatches: usize,
    pub pass: bool,
}

/// The GPU sampler against `sample_with` on the rows' last logits.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SamplingCheck {
    pub draws: usize,
    /// Draws within 2e-5 of a boundary between two tokens (either token is right).
    pub near_boundary: usize,
    pub mismatches: usize,
    /// Tokens the GPU left to the CPU (the rule reached past its candidates).
    pub cpu_fallbacks: usize,
    pub pass: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub adapter: String,
    pub rows: Vec<CheckRow>,
    pub sampling: SamplingCheck,
    pub pass: bool,
}

/// Check `base` (and its conversions) on the GPU against the CPU: `filled` synthetic
/// positions, a short prompt, then `steps` greedy decode steps.
pub fn check(base: &Model, filled: usize, steps: usize) -> Result<CheckReport> {
    let c = &base.config;
    let prompt: Vec<u32> = std::iter::once(c.bos_token_id).chain((1..8).map(|i| (i * 37 % c.vocab_size) as u32)).collect();
    let capacity = filled + prompt.len() + steps + 1;
    let mut rows = Vec::new();
    let mut sampling = SamplingCheck::default();
    let mut adapter = String::new();
    for kv_dtype in KvDType::ALL {
        let options = GpuOptions { kv_dtype, ..GpuOptions::default() };
        let mut gpu = GpuEngine::new(base.clone(), capacity, options)?;
        adapter = gpu.context().describe();
        for g in group_choices(c) {
            let model = convert(base, g, Method::Mean, 0)?;
            gpu.set_model(model.clone())?;
            let mut cpu = CpuEngine::with_options(model, capacity, EngineOptions { kv_dtype: Some(kv_dtype), ..Default::default() })?;
            if filled > 0 {
                cpu.fill_synthetic(filled, 7)?;
                gpu.fill_synthetic(filled, 7)?;
            }
            let mut worst = 0.0f32;
            let mut tolerance = 0.0f32;
            let mut mismatches = 0;
            let mut compare = |expected: &[f32], got: &[f32]| {
                let tol = tolerance_for(kv_dtype, expected);
                tolerance = tolerance.max(tol);
                let d = expected.iter().zip(got).fold(0.0f32, |a, (x, y)| a.max((x - y).abs()));
                worst = worst.max(d);
                d <= tol
            };
            let mut ok = true;
            let vocab = c.vocab_size;
            let expected = cpu.forward(&prompt, Logits::All)?;
            let got = gpu.forward(&prompt, Logits::All)?;
            for (e, g) in expected.chunks(vocab).zip(got.chunks(vocab)) {
                ok &= compare(e, g);
            }
            let mut last = expected[expected.len() - vocab..].to_vec();
            for _ in 0..steps {
                let token = argmax(&last);
                let expected = cpu.forward(&[token], Logits::Last)?;
                let got = gpu.forward(&[token], Logits::Last)?;
                ok &= compare(&expected, &got);
                let tol = tolerance_for(kv_dtype, &expected);
                let mut sorted = expected.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                if vocab > 1 && sorted[0] - sorted[1] > 2.0 * tol && argmax(&got) != argmax(&expected) {
                    mismatches += 1;
                }
                last = expected;
            }
            rows.push(CheckRow {
                n_kv_heads: g,
                kv_dtype: kv_dtype.name().into(),
                filled,
                positions: prompt.len() + steps,
                max_abs_diff: worst,
                tolerance,
                greedy_mismatches: mismatches,
                pass: ok && mismatches == 0,
            });
            check_sampling(&mut gpu, &last, g as u64, &mut sampling)?;
        }
    }
    // Near-boundary draws are expected to be rare; many would mean a wrong rule.
    sampling.pass = sampling.mismatches == 0 && sampling.near_boundary * 10 <= sampling.draws;
    let pass = sampling.pass && rows.iter().all(|r| r.pass);
    Ok(CheckReport { adapter, rows, sampling, pass })
}

/// The tolerance for logits `expected` (see the module's doc): 1e-4 x max(1, largest
/// |logit|) with an f32 KV cache, 2e-3 x the largest |logit| with f16 or int8.
fn tolerance_for(kv_dtype: KvDType, expected: &[f32]) -> f32 {
    let scale = expected.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
    if kv_dtype == KvDType::F32 { 1e-4 * scale.max(1.0) } else { 2e-3 * scale }
}

/// Sample `logits` on the GPU and the CPU with the same settings and draws.
fn check_sampling(gpu: &mut GpuEngine, logits: &[f32], seed: u64, out: &mut SamplingCheck) -> Result<()> {
    let mut rng = Rng::new(seed);
    for (temperature, top_k, top_p) in [(1.0, 0, 1.0), (0.8, 40, 1.0), (1.0, 0, 0.9), (0.7, 50, 0.95)] {
        let cfg = SamplerConfig { temperature, top_k, top_p, seed };
        for _ in 0..10 {
            let u = rng.uniform();
            drop(gpu.take_timing());
            let got = pollster::block_on(gpu.sample_async(logits, &cfg, u))?;
            out.cpu_fallbacks += gpu.take_timing().sample_fallbacks;
            let expected = sample_with(&cfg, logits, u);
            out.draws += 1;
            if [u - 2e-5, u + 2e-5].iter().all(|&v| sample_with(&cfg, logits, v.clamp(0.0, 0.99999)) == expected) {
                out.mismatches += (got != expected) as usize;
            } else {
                out.near_boundary += 1;
            }
        }
    }
    Ok(())
}

/// The report as Markdown.
pub fn markdown(r: &CheckReport) -> String {
    let mut s = format!("GPU vs CPU on {}\n\n| G | KV | synthetic context | positions | max abs diff | tolerance | greedy mismatches | pass |\n|---:|---|---:|---:|---:|---:|---:|---|\n", r.adapter);
    for row in &r.rows {
        s += &format!(
            "| {} | {} | {} | {} | {:.2e} | {:.2e} | {} | {} |\n",
            row.n_kv_heads,
            row.kv_dtype,
            row.filled,
            row.positions,
            row.max_abs_diff,
            row.tolerance,
            row.greedy_mismatches,
            if row.pass { "yes" } else { "NO" }
        );
    }
    let sm = &r.sampling;
    s += &format!(
        "\nSampling: {} draws, {} mismatches, {} within 2e-5 of a boundary, {} left to the CPU: {}\n",
        sm.draws,
        sm.mismatches,
        sm.near_boundary,
        sm.cpu_fallbacks,
        if sm.pass { "pass" } else { "FAIL" }
    );
    s
}
