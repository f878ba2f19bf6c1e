//! Quantized weights on the GPU: matrices stored in a GGUF format (built with the
//! test-only reference quantizer, src/quant/reference.rs) are uploaded as their bytes
//! and decoded inside matvec, matmul and the embedding lookup (shaders/quant.wgsl).
//! The GPU engine's logits must equal the CPU engine's (which reads the same bytes
//! with its own decoder, kernels/quant_dot.rs) within the f32 tolerance of tests/gpu.rs,
//! 1e-4: both multiply by the same dequantized values, in a different order.
//!
//! Ignored where build.rs finds no Vulkan driver; under CI a missing adapter fails.

mod common;

#[allow(dead_code)]
#[path = "../src/quant/reference.rs"]
mod reference;

use common::{max_abs_diff, test_model};
use gqa::backend::{Backend, EngineOptions, Logits};
use gqa::cpu::CpuEngine;
use gqa::gpu::{GpuContext, GpuEngine, GpuOptions};
use gqa::matmul::QuantActivations;
use gqa::model::Model;
use gqa::quant::Format;
use gqa::sampler::argmax;
use gqa::tensor::{KvDType, Matrix};
use gqa::Config;

const TOL: f32 = 1e-4;

fn device() -> GpuContext {
    pollster::block_on(GpuContext::new())
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter (a Vulkan driver; mesa-vulkan-drivers has lavapipe): {e}"))
}

fn options(use_subgroups: bool) -> GpuOptions {
    GpuOptions { kv_dtype: KvDType::F32, max_batch: 24, use_subgroups, ..GpuOptions::default() }
}

/// `m`'s values quantized to `format` by the reference quantizer.
fn quantize(m: &Matrix, format: Format) -> Matrix {
    Matrix::quantized(m.rows, m.cols, format, reference::quantize(format, &m.to_f32_vec())).unwrap()
}

/// A random model (tests/common's test_model) with the embedding (and classifier) in
/// `embed` and every block matrix in `blocks`.
fn quantized_model(config: &Config, seed: u64, embed: Format, blocks: Format) -> Model {
    quantize_model(test_model(config, seed), embed, blocks)
}

fn quantize_model(mut m: Model, embed: Format, blocks: Format) -> Model {
    m.embed = quantize(&m.embed, embed);
    if let Some(h) = &m.lm_head {
        m.lm_head = Some(quantize(h, embed));
    }
    for b in &mut m.blocks {
        for w in [&mut b.attn.wq, &mut b.attn.wk, &mut b.attn.wv, &mut b.attn.wo, &mut b.mlp.gate, &mut b.mlp.up, &mut b.mlp.down] {
            *w = quantize(w, blocks);
        }
    }
    m
}

/// Rows of 64 and 96 weights (Q4_0, Q4_1, Q5_0, Q8_0: 2 and 3 blocks; BF16, F16, F32),
/// untied classifier.
fn small() -> Config {
    let mut c = Config::new(64, 96, 2, 8, 2, 97, 256);
    c.tie_word_embeddings = false;
    c
}

/// Rows of 256 and 512 weights (Q4_K, Q6_K: 1 and 2 super-blocks).
fn k_quants() -> Config {
    let mut c = Config::new(256, 512, 2, 8, 2, 97, 256);
    c.tie_word_embeddings = false;
    c
}

/// Prefill `prompt` on both engines (the matmul, in batches of max_batch), compare every
/// position's logits, then decode `steps` greedy tokens (matvec) comparing each step's
/// logits and the GPU's own argmax. Returns the largest difference.
fn prefill_then_decode(cpu: &mut CpuEngine, gpu: &mut GpuEngine, prompt: &[u32], steps: usize, tol: f32, what: &str) -> f32 {
    let vocab = cpu.model().config.vocab_size;
    let expected = cpu.forward(prompt, Logits::All).unwrap();
    let got = gpu.forward(prompt, Logits::All).unwrap();
    assert_eq!(got.len(), expected.len(), "{what}: prefill logits");
    let spread = expected.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(spread > 0.1, "{what}: logits too small to tell decoders apart ({spread})");
    let mut worst = 0.0f32;
    for t in 0..prompt.len() {
        let d = max_abs_diff(&got[t * vocab..(t + 1) * vocab], &expected[t * vocab..(t + 1) * vocab]);
        assert!(d <= tol, "{what}: prefill position {t}: GPU vs CPU logits differ by {d} (tolerance {tol})");
        worst = worst.max(d);
    }
    let mut token = argmax(&expected[(prompt.len() - 1) * vocab..]);
    for step in 0..steps {
        let expected = cpu.forward(&[token], Logits::Last).unwrap();
        let got = gpu.forward(&[token], Logits::Last).unwrap();
        let d = max_abs_diff(&got, &expected);
        assert!(d <= tol, "{what}: decode step {step}: GPU vs CPU logits differ by {d} (tolerance {tol})");
        worst = worst.max(d);
        token = argmax(&expected);
        assert_eq!(argmax(&got), token, "{what}: decode step {step}: greedy tokens differ");
    }
    worst
}

/// The CPU engine on its exact path (f32 activations), which the GPU's kernels compute too.
fn exact_cpu(model: Model, capacity: usize) -> gqa::Result<CpuEngine> {
    let options = EngineOptions { quant_activations: QuantActivations::Exact, ..Default::default() };
    CpuEngine::with_options(model, capacity, options)
}

fn prompt(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 37 + 11) % vocab) as u32).collect()
}

/// Every format, in the embedding, the classifier and every block matrix: prefill and
/// decode match the CPU, with the subgroup and the workgroup matvec.
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn every_format_matches_cpu() {
    let cases = [
        (Format::Q4_0, small()),
        (Format::Q4_1, small()),
        (Format::Q5_0, small()),
        (Format::Q8_0, small()),
        (Format::BF16, small()),
        (Format::F16, small()),
        (Format::F32, small()),
        (Format::Q4_K, k_quants()),
        (Format::Q6_K, k_quants()),
    ];
    let mut engines = [true, false].map(|s| (s, GpuEngine::with_context(device(), test_model(&small(), 1), 64, options(s)).unwrap()));
    for (i, (format, config)) in cases.into_iter().enumerate() {
        let model = quantized_model(&config, 40 + i as u64, format, format);
        for (subgroups, gpu) in &mut engines {
            gpu.set_model(model.clone()).unwrap();
            let mut cpu = exact_cpu(model.clone(), 64).unwrap();
            let what = format!("{} ({} matvec)", format.name(), if *subgroups { "subgroup" } else { "workgroup" });
            let worst = prefill_then_decode(&mut cpu, gpu, &prompt(30, config.vocab_size), 8, TOL, &what);
            println!("{what}: max |GPU - CPU| = {worst:.2e}");
        }
    }
}

/// SmolLM2-135M-Instruct's mix, scaled down: a tied Q8_0 embedding (also the LM head),
/// Q4_1 block matrices with rows of 192 and 512 weights (6 and 16 blocks: 34-byte
/// Q8_0 blocks at every alignment), G = 2 of 6 heads. Greedy tokens from the GPU's own
/// argmax equal the CPU's.
///
/// Longer rows and larger logits (up to ~9) than the other tests: measured on lavapipe,
/// each engine is within 5e-5 of the f64 reference forward pass (tests/common), so they
/// may differ by up to 1e-4 and, a few decode steps on, slightly more (1.2e-4 seen).
/// Hence: GPU within 1e-4 of the f64 reference over a 60-token prefill, and within
/// 2e-4 of the CPU along prefill and decode. A wrong decoder is off by 1e-2 or more.
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn smollm2_mix_matches_cpu() {
    let mut config = Config::new(192, 512, 2, 6, 2, 211, 128);
    config.tie_word_embeddings = false;
    // Tied to test_model's LM head (std 0.2, so the logits are as large as in the
    // other tests: its embedding, std 1, would make them 5 times larger).
    let mut model = test_model(&config, 7);
    model.config.tie_word_embeddings = true;
    model.embed = model.lm_head.take().unwrap();
    let model = quantize_model(model, Format::Q8_0, Format::Q4_1);
    let mut cpu = exact_cpu(model.clone(), 128).unwrap();
    let mut gpu = GpuEngine::with_context(device(), model.clone(), 128, options(true)).unwrap();

    let toks = prompt(60, 211);
    let got = gpu.forward(&toks, Logits::All).unwrap();
    for (t, expected) in common::reference_logits(&model, &toks).iter().enumerate() {
        let d = max_abs_diff(&got[t * 211..(t + 1) * 211], expected);
        assert!(d <= TOL, "position {t}: GPU vs the f64 reference: logits differ by {d} (tolerance {TOL})");
    }
    gpu.reset();
    let worst = prefill_then_decode(&mut cpu, &mut gpu, &toks[..40], 16, 2.0 * TOL, "q8_0 embedding + q4_1 blocks");
    println!("SmolLM2 mix: max |GPU - CPU| = {worst:.2e}");

    // The argmax-only path picks the CPU's greedy tokens.
    cpu.reset();
    gpu.reset();
    let (mut cpu_tok, mut gpu_tok) = (3u32, 3u32);
    for step in 0..16 {
        cpu_tok = argmax(&cpu.forward(&[cpu_tok], Logits::Last).unwrap());
        gpu_tok = gpu.forward_argmax(&[gpu_tok]).unwrap();
        assert_eq!(gpu_tok, cpu_tok, "step {step}: GPU argmax token");
    }
}

/// SmolLM2's own file (Q4_1 blocks, its Q8_0 embedding as the output head, 30 layers,
/// 49,152 logits): the GPU engine against the CPU's, prefill and decode, within 1e-5 of
/// the largest |logit| (about 20 here), at its native G = 3 and as MHA (G = 9).
#[test]
#[cfg_attr(not(all(has_vulkan, has_shared)), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe) and ../shared")]
fn smollm2_file_on_the_gpu_matches_the_cpu() {
    let path = common::shared("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    let (model, _) = gqa::loader::load_gguf(&std::fs::read(path).unwrap()).unwrap();
    let toks = [1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198];
    for g in [3, 9] {
        let model = gqa::convert::convert(&model, g, gqa::convert::Method::Mean, 0).unwrap();
        let mut cpu = exact_cpu(model.clone(), 32).unwrap();
        let mut gpu = GpuEngine::with_context(device(), model, 32, options(true)).unwrap();
        let scale = cpu.forward(&toks, Logits::Last).unwrap().iter().fold(0.0f32, |m, v| m.max(v.abs()));
        cpu.reset();
        let worst = prefill_then_decode(&mut cpu, &mut gpu, &toks, 4, 1e-5 * scale, &format!("SmolLM2 at G = {g}"));
        println!("SmolLM2 file, G = {g}: max |GPU - CPU| = {worst:.2e} (largest |logit| {scale:.1})");
    }
}

/// Quantized matrices stay quantized on the device: the weights take their GGUF bytes
/// (each buffer rounded up to 16 bytes), not f32, and the engine says so.
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn quantized_weights_take_their_own_bytes() {
    let config = small();
    for format in [Format::Q4_1, Format::Q8_0, Format::Q6_K] {
        let config = if format == Format::Q6_K { k_quants() } else { config.clone() };
        let model = quantized_model(&config, 3, format, format);
        let gpu = GpuEngine::with_context(device(), model.clone(), 64, options(true)).unwrap();
        let b = &model.blocks[0];
        let matrices = [&model.embed, model.lm_head.as_ref().unwrap()]
            .into_iter()
            .chain(model.blocks.iter().flat_map(|b| [&b.attn.wq, &b.attn.wk, &b.attn.wv, &b.attn.wo, &b.mlp.gate, &b.mlp.up, &b.mlp.down]));
        let expected: u64 = matrices.map(|m| m.bytes().div_ceil(16) as u64 * 16).sum();
        assert_eq!(gpu.weight_bytes_allocated(), expected, "{}: weight bytes on the GPU", format.name());
        let f32_bytes = 4 * (b.attn.wq.rows * b.attn.wq.cols) as u64;
        assert!(b.attn.wq.bytes() as u64 * 3 < f32_bytes, "{}: the test's matrices are quantized", format.name());
    }
}


/// Quantized tensors larger than a storage binding are split by rows, each part its own
/// buffer starting at a row's first block (whatever the alignment in the whole tensor):
/// with 2 KiB bindings the Q8_0 / Q5_0 embedding and LM head (97 rows of 68 / 44 bytes)
/// and the MLP matrices come in several parts, and the logits still match.
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn split_quantized_tensors_match_cpu() {
    for format in [Format::Q8_0, Format::Q5_0] {
        let model = quantized_model(&small(), 21, format, format);
        let mut ctx = device();
        ctx.limits.max_storage_buffer_binding_size = 2 << 10;
        let options = GpuOptions { max_batch: 4, ..options(true) };
        let mut gpu = GpuEngine::with_context(ctx, model.clone(), 32, options).unwrap();
        let mut cpu = exact_cpu(model.clone(), 32).unwrap();
        let worst = prefill_then_decode(&mut cpu, &mut gpu, &prompt(10, 97), 8, TOL, &format!("{} split", format.name()));
        println!("{} in 2 KiB parts: max |GPU - CPU| = {worst:.2e}", format.name());
    }
}
