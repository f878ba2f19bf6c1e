//! The GPU engine against the CPU engine. Every test is ignored where build.rs finds
//! no Vulkan driver (tests/run.sh installs lavapipe, the CPU one); where there is one,
//! and always under CI, a missing GPU adapter fails them.
//!
//! Tolerances: with f32 weights (and with f16 weights, which both engines expand to
//! the same f32 values before multiplying) the engines do the same arithmetic in a
//! different order, so logits agree to 1e-4. An f16 KV cache rounds every key and
//! value to 11 significant bits (relative error <= 2^-11 = 4.9e-4); see
//! `f16_kv_cache_is_close`.

mod common;

use common::{max_abs_diff, shared, small_config, test_model};
use gqa::config::divisors;
use gqa::convert::{convert, Method};
use gqa::cpu::CpuEngine;
use gqa::gpu::{GpuContext, GpuEngine, GpuOptions};
use gqa::model::Model;
use gqa::sampler::argmax;
use gqa::backend::{Backend, Logits};
use gqa::tensor::{DType, KvDType};

/// A GPU device; without an adapter the test fails, naming what it needs.
fn device() -> GpuContext {
    pollster::block_on(GpuContext::new())
        .unwrap_or_else(|e| panic!("this test needs a GPU adapter (a Vulkan driver; mesa-vulkan-drivers has lavapipe): {e}"))
}

/// The GPU engine's options with an f32 KV cache, as the CPU engine's default: the
/// logits then agree to 1e-4. (The GPU's own default is f16, tested below.)
fn f32_kv() -> GpuOptions {
    GpuOptions { kv_dtype: KvDType::F32, ..GpuOptions::default() }
}

fn engine(model: Model, capacity: usize, options: GpuOptions) -> GpuEngine {
    GpuEngine::with_context(device(), model, capacity, options).unwrap()
}

/// Greedy decoding on both engines for `steps` tokens from `first`: the GPU logits
/// equal the CPU logits within `tol` at every step, and the GPU's own argmax (computed
/// on the GPU, read back alone) picks the same tokens. Returns the largest difference.
fn greedy_run(cpu: &mut CpuEngine, gpu: &mut GpuEngine, first: u32, steps: usize, tol: f32, what: &str) -> f32 {
    let mut token = first;
    let mut worst = 0.0f32;
    for step in 0..steps {
        let expected = cpu.forward(&[token], Logits::Last).unwrap();
        let before = gpu.submissions();
        let got = gpu.forward(&[token], Logits::Last).unwrap();
        assert_eq!(gpu.submissions(), before + 1, "{what}: one queue submission per decoded token");
        let d = max_abs_diff(&got, &expected);
        worst = worst.max(d);
        assert!(d <= tol, "{what} step {step}: GPU vs CPU logits differ by {d} (tolerance {tol})");
        let next = argmax(&expected);
        assert_eq!(argmax(&got), next, "{what} step {step}: greedy tokens differ");
        token = next;
    }
    worst
}

/// The GPU's argmax kernel agrees with the CPU sampler's argmax along a greedy run
/// (tokens only: 4 bytes read back per step).
fn greedy_tokens_on_gpu(gpu: &mut GpuEngine, first: u32, steps: usize) -> Vec<u32> {
    let mut out = vec![first];
    for _ in 0..steps {
        let next = gpu.forward_argmax(&[*out.last().unwrap()]).unwrap();
        out.push(next);
    }
    out
}

#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn random_model_matches_cpu_for_every_g() {
    let mut gpu = engine(test_model(&small_config(8), 1), 128, f32_kv());
    for g in divisors(8) {
        let model = test_model(&small_config(g), 11 + g as u64);
        let mut cpu = CpuEngine::new(model.clone(), 128).unwrap();
        // One engine for every G: set_model reallocates the KV cache for G heads.
        gpu.set_model(model).unwrap();
        let gpu = &mut gpu;
        let worst = greedy_run(&mut cpu, gpu, 1, 64, 1e-4, &format!("random G={g}"));
        println!("random model G={g}: max |GPU - CPU| over 64 greedy steps = {worst:.2e}");

        // The argmax-only path picks the same tokens.
        let mut cpu_tokens = vec![1u32];
        cpu.reset();
        for _ in 0..64 {
            let l = cpu.forward(&[*cpu_tokens.last().unwrap()], Logits::Last).unwrap();
            cpu_tokens.push(argmax(&l));
        }
        gpu.reset();
        assert_eq!(greedy_tokens_on_gpu(gpu, 1, 64), cpu_tokens, "G={g}: GPU argmax tokens");
    }
}

/// Each engine's default KV precision, as opened for every front end: f16 on the GPU
/// (half the bytes), f32 on the CPU; an explicit choice wins on both.
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn gpu_kv_cache_defaults_to_f16() {
    use gqa::backend::engine::Engine;
    use gqa::backend::{BackendKind, EngineOptions};
    let model = test_model(&small_config(2), 3);
    for (kind, asked, expected) in [
        (BackendKind::Gpu, None, KvDType::F16),
        (BackendKind::Cpu, None, KvDType::F32),
        (BackendKind::Gpu, Some(KvDType::F32), KvDType::F32),
        (BackendKind::Cpu, Some(KvDType::F16), KvDType::F16),
        (BackendKind::Gpu, Some(KvDType::I8), KvDType::I8),
        (BackendKind::Cpu, Some(KvDType::I8), KvDType::I8),
    ] {
        let opened = Engine::open(kind, model.clone(), 64, EngineOptions { kv_dtype: asked, ..Default::default() }).unwrap();
        assert!(opened.fallback.is_none(), "{:?}", opened.fallback);
        let b = opened.engine;
        assert_eq!(b.kv_dtype(), expected, "{kind:?} asked {asked:?}");
        assert_eq!(b.kv_bytes_allocated(), gqa::kv_cache_bytes(&model.config, 2, 64, expected), "{kind:?} KV bytes");
    }
}

/// The split length chosen per call: the longest split (32..=1024 positions) that
/// still launches the device's target number of attention workgroups, and never
/// more (token, split) pairs than the partials buffer holds.
#[test]
fn attention_split_fills_the_device_within_the_partials() {
    use gqa::gpu::resident::{Dims, MAX_SPLIT, MIN_SPLIT};
    for target in [16, 256, 1024] {
        for g in divisors(8) {
            let c = gqa::config::Config::new(64, 96, 2, 8, g, 97, 20_000);
            for (capacity, batch) in [(20_000, 64), (3000, 8), (100, 1)] {
                let d = Dims::new(&c, capacity, batch, target, None).unwrap();
                for n_ctx in [1, 31, 33, 255, 256, 2048, 4097, 8192, 20_000] {
                    for t in [1, 7, batch] {
                        if n_ctx > capacity || t > batch || t > n_ctx {
                            continue;
                        }
                        let split = d.attention_split(n_ctx, t);
                        assert!(split.is_power_of_two() && (MIN_SPLIT..=MAX_SPLIT).contains(&split), "split {split}");
                        let workgroups = g * n_ctx.div_ceil(split) * t;
                        let at_min = g * n_ctx.div_ceil(MIN_SPLIT) * t;
                        let what = format!("target {target} G {g} ctx {n_ctx} T {t}: split {split}, {workgroups} workgroups");
                        // Enough workgroups whenever the shortest split gives enough ...
                        assert!(workgroups >= target.min(at_min), "{what}");
                        // ... with the longest split that does.
                        assert!(split == MAX_SPLIT || g * n_ctx.div_ceil(2 * split) * t < target, "{what}");
                        assert!(t * n_ctx.div_ceil(split) <= d.max_split_rows, "{what}: partials hold {}", d.max_split_rows);
                    }
                }
            }
        }
    }
}

/// Long contexts past 4096 positions, with the chosen splits and forced ones: see
/// `common::long_context_matches_cpu`, which the browser test runs on WebGPU too.
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn long_context_splits_match_cpu() {
    pollster::block_on(common::long_context_matches_cpu(&[None, Some(48), Some(1024)], &KvDType::ALL));
}

/// The workgroup-reduction matvec (used where the adapter has no subgroups, as in
/// browsers) gives the same logits as the subgroup variant and the CPU.
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn workgroup_matvec_matches_cpu() {
    let model = test_model(&small_config(4), 17);
    let options = GpuOptions { use_subgroups: false, ..f32_kv() };
    let mut gpu = engine(model.clone(), 128, options);
    assert!(!gpu.uses_subgroups());
    let mut cpu = CpuEngine::new(model, 128).unwrap();
    let worst = greedy_run(&mut cpu, &mut gpu, 1, 64, 1e-4, "workgroup matvec");
    println!("workgroup matvec: max diff {worst:.2e}");
}

/// Batched prefill (the tiled matmul, several submissions of max_batch tokens, and
/// attention spans crossing the 256-position split) equals the CPU's logits for
/// every position.
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn prefill_matches_cpu_across_batches_and_splits() {
    let model = test_model(&small_config(2), 9);
    let mut gpu = engine(model.clone(), 600, GpuOptions { max_batch: 48, ..f32_kv() });
    let mut cpu = CpuEngine::new(model, 600).unwrap();
    let toks: Vec<u32> = (0..300).map(|i| ((i * 37 + 11) % 97) as u32).collect();
    let expected = cpu.forward(&toks, Logits::All).unwrap();
    let got = gpu.forward(&toks, Logits::All).unwrap();
    assert_eq!(got.len(), expected.len());
    for t in 0..toks.len() {
        let d = max_abs_diff(&got[t * 97..(t + 1) * 97], &expected[t * 97..(t + 1) * 97]);
        assert!(d <= 1e-4, "position {t}: prefill logits differ by {d}");
    }
    // Decoding continues from the prefilled cache.
    let worst = greedy_run(&mut cpu, &mut gpu, 5, 8, 1e-4, "after prefill");
    println!("prefill then decode: max diff {worst:.2e}");
}

/// f16 weights (packed two per u32, expanded with unpack2x16float): both engines
/// multiply by the same f32 values, so the f32 tolerance holds, for every G.
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn f16_weights_match_cpu() {
    let mut gpu = engine(test_model(&small_config(8), 1).to_dtype(DType::F16), 128, f32_kv());
    for g in divisors(8) {
        let model = test_model(&small_config(g), 5 + g as u64).to_dtype(DType::F16);
        gpu.set_model(model.clone()).unwrap();
        let mut cpu = CpuEngine::new(model.clone(), 128).unwrap();
        let worst = greedy_run(&mut cpu, &mut gpu, 1, 64, 1e-4, &format!("f16 weights G={g}"));
        println!("f16 weights G={g}: max diff {worst:.2e}");
        // Prefill path (matmul) with f16 weights.
        cpu.reset();
        gpu.reset();
        let toks: Vec<u32> = (0..40).map(|i| ((i * 13 + 3) % 97) as u32).collect();
        let d = max_abs_diff(&gpu.forward(&toks, Logits::All).unwrap(), &cpu.forward(&toks, Logits::All).unwrap());
        assert!(d <= 1e-4, "f16 prefill G={g} differs by {d}");
    }
}

/// An f16 KV cache rounds keys and values (relative 2^-11). The logits then move by
/// about that relative amount times their size: we require max |diff| <= 2e-3 x
/// max |logit| and identical greedy tokens wherever the CPU's top two logits are
/// further apart than that bound.
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn f16_kv_cache_is_close() {
    let options = GpuOptions { kv_dtype: KvDType::F16, ..f32_kv() };
    let mut gpu = engine(test_model(&small_config(8), 1), 128, options);
    for g in divisors(8) {
        let model = test_model(&small_config(g), 8 + g as u64);
        gpu.set_model(model.clone()).unwrap();
        assert_eq!(gpu.kv_bytes_allocated(), gqa::kv_cache_bytes(&model.config, g, 128, KvDType::F16), "f16 KV cache bytes");
        let mut cpu = CpuEngine::new(model, 128).unwrap();
        let mut token = 1;
        let mut worst_rel = 0.0f32;
        for step in 0..64 {
            let expected = cpu.forward(&[token], Logits::Last).unwrap();
            let got = gpu.forward(&[token], Logits::Last).unwrap();
            let scale = expected.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
            let d = max_abs_diff(&got, &expected);
            worst_rel = worst_rel.max(d / scale);
            assert!(d <= 2e-3 * scale, "G={g} step {step}: f16 KV logits differ by {d} (scale {scale})");
            let mut sorted = expected.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            if sorted[0] - sorted[1] > 4e-3 * scale {
                assert_eq!(argmax(&got), argmax(&expected), "G={g} step {step}: greedy token");
            }
            token = argmax(&expected);
        }
        println!("f16 KV cache G={g}: max |diff| / max |logit| = {worst_rel:.2e}");
    }
}

/// Switching G 100 times keeps GPU memory flat: the old weights and KV cache are
/// freed before the new ones are allocated (our accounting and wgpu's allocator).
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn switching_g_keeps_memory_flat() {
    let base = test_model(&small_config(8), 3);
    let mut gpu = engine(base.clone(), 256, f32_kv());
    let models: Vec<Model> = divisors(8).iter().map(|&g| convert(&base, g, Method::Mean, 0).unwrap()).collect();
    let mut by_g = vec![None; models.len()];
    let mut reports: Vec<Vec<u64>> = vec![Vec::new(); models.len()];
    for i in 0..100 {
        let which = i % models.len();
        gpu.set_model(models[which].clone()).unwrap();
        gpu.forward(&[1, 2, 3], Logits::Last).unwrap();
        let g = models[which].config.n_kv_heads();
        assert_eq!(gpu.kv_bytes_allocated(), gqa::kv_cache_bytes(&models[which].config, g, 256, KvDType::F32), "KV cache holds G = {g} heads");
        let live = gpu.allocated_bytes();
        match by_g[which] {
            None => by_g[which] = Some(live),
            Some(before) => assert_eq!(live, before, "switch {i} (G = {g}): live GPU bytes {live} vs {before} before"),
        }
        if let Some((allocated, _reserved)) = gpu.allocator_report() {
            reports[which].push(allocated);
        }
    }
    println!("{}: live GPU bytes per G {:?}", gpu.name(), by_g);
    for (which, r) in reports.iter().enumerate() {
        if let (Some(first), Some(last)) = (r.first(), r.last()) {
            let g = models[which].config.n_kv_heads();
            println!("G = {g}: wgpu allocator {first} bytes at the first switch, {last} at the last");
            assert!(*last <= first + (256 << 10), "G = {g}: wgpu allocator grew from {first} to {last} bytes");
        }
    }
}

/// Tensors larger than a storage binding are split by rows (same logits); what cannot
/// be split is refused with an error that names the limit and the tensor.
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn binding_limit_splits_or_refuses() {
    let model = test_model(&small_config(8), 4);
    let mut ctx = device();
    // 16 KiB bindings: the embedding, LM head and MLP matrices (~25 KB) split in two.
    ctx.limits.max_storage_buffer_binding_size = 16 << 10;
    let mut gpu = GpuEngine::with_context(ctx, model.clone(), 64, GpuOptions { max_batch: 8, ..f32_kv() }).unwrap();
    let mut cpu = CpuEngine::new(model.clone(), 64).unwrap();
    greedy_run(&mut cpu, &mut gpu, 1, 16, 1e-4, "split tensors");

    let mut ctx = device();
    ctx.limits.max_storage_buffer_binding_size = 8 << 10;
    let err = GpuEngine::with_context(ctx, model.clone(), 64, GpuOptions { max_batch: 8, ..f32_kv() }).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("KV cache") && msg.contains("8192"), "{msg}");

    let mut ctx = device();
    ctx.limits.max_storage_buffer_binding_size = 200;
    let small = convert(&model, 1, Method::Mean, 0).unwrap();
    let err = GpuEngine::with_context(ctx, small, 4, GpuOptions { max_batch: 1, ..f32_kv() }).err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("model.layers.0.self_attn.q_proj.weight") && msg.contains("200"), "{msg}");
}

/// The same model with each KV head repeated to `n_kv_heads` heads (repeat_kv).
fn repeat_kv(model: &Model, n_kv_heads: usize) -> Model {
    let mut m = model.clone();
    let (hd, old) = (model.config.head_dim(), model.config.n_kv_heads());
    let rep = n_kv_heads / old;
    for b in &mut m.blocks {
        for w in [&mut b.attn.wk, &mut b.attn.wv] {
            let v = w.to_f32_vec();
            let rows: Vec<f32> = (0..n_kv_heads).flat_map(|h| v[(h / rep) * hd * w.cols..(h / rep + 1) * hd * w.cols].to_vec()).collect();
            *w = w.like(n_kv_heads * hd, w.cols, rows);
        }
    }
    m.config.num_key_value_heads = Some(n_kv_heads);
    m
}

/// stories260K (H = 8, G = 4): for every G dividing H, GPU logits equal
/// CPU logits along a 64-token greedy run; with its own G the GPU session reproduces
/// the reference 256-token greedy text.
#[test]
#[cfg_attr(
    not(all(has_vulkan, has_shared)),
    ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe) and ../shared (the shared fixtures)"
)]
fn stories260k_matches_cpu_and_reference_text() {
    let model_path = shared("fixtures/llama2c/stories260K.bin");
    let tok_path = shared("fixtures/llama2c/tok512.bin");
    let expected_path = shared("fixtures/llama2c/greedy_256.txt");
    let ctx = device();
    let (base, tokenizer) = gqa::loader::load(&model_path, Some(&tok_path)).unwrap();
    let capacity = base.config.max_position_embeddings;
    let mut gpu = GpuEngine::with_context(ctx, base.clone(), capacity, f32_kv()).unwrap();
    // G = 1, 2, 4 by pooling (Algorithm 4); G = 8 = H by repeating each KV head (an
    // equivalent MHA model: conversion cannot add heads).
    for g in base.config.group_choices() {
        let model = if g <= base.config.n_kv_heads() { convert(&base, g, Method::Mean, 0).unwrap() } else { repeat_kv(&base, g) };
        gpu.set_model(model.clone()).unwrap();
        let mut cpu = CpuEngine::new(model, capacity).unwrap();
        let worst = greedy_run(&mut cpu, &mut gpu, base.config.bos_token_id, 64, 1e-4, &format!("stories260K G={g}"));
        println!("stories260K G={g}: max |GPU - CPU| over 64 greedy steps = {worst:.2e}");
    }

    // f16 weights: both engines expand the same f16 values, so 1e-4 holds as well.
    let half = base.to_dtype(DType::F16);
    gpu.set_model(half.clone()).unwrap();
    let mut cpu = CpuEngine::new(half, capacity).unwrap();
    let worst = greedy_run(&mut cpu, &mut gpu, base.config.bos_token_id, 64, 1e-4, "stories260K f16 weights");
    println!("stories260K f16 weights: max |GPU - CPU| over 64 greedy steps = {worst:.2e}");

    gpu.set_model(base.clone()).unwrap();
    let mut session = gqa::session::Session::new(base, tokenizer, gpu).unwrap();
    let params = gqa::generation::GenerateParams { max_tokens: 256, sampler: Default::default() };
    let text = session.generate("", &params, &mut |_| true).unwrap();
    let expected = std::fs::read_to_string(expected_path).unwrap();
    assert_eq!(text.trim_end(), expected.trim_end(), "GPU greedy text differs from greedy_256.txt");
    assert!(session.stats().backend.starts_with("gpu"), "{}", session.stats().backend);
}

/// The async generation loop (what the page runs) gives the same ids and statistics
/// as the session on the same engine, greedy and sampled.
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn async_generate_matches_session() {
    let model = test_model(&small_config(2), 31);
    let gpu = engine(model.clone(), 64, f32_kv());
    let mut session = gqa::session::Session::new(model, None, gpu).unwrap();
    let prompt = [1u32, 7, 9];
    for sampler in [Default::default(), gqa::sampler::SamplerConfig { temperature: 0.9, top_p: 0.9, top_k: 0, seed: 3 }] {
        let params = gqa::generation::GenerateParams { max_tokens: 20, sampler };
        let mut streamed = Vec::new();
        let ids = session.generate_ids(&prompt, &params, &mut |id| {
            streamed.push(id);
            true
        }).unwrap();
        assert_eq!(streamed, ids);
        let expected_stats = session.stats().clone();
        let (ids_async, stats) = {
            let mut gpu2 = engine(session.model().clone(), 64, f32_kv());
            pollster::block_on(gpu2.generate_ids_async(&prompt, &params, &mut |_| true)).unwrap()
        };
        assert_eq!(ids_async, ids);
        // The CPU engine, sampling on the CPU from the same seed, picks the same ids (the
        // logits agree to 1e-4; see gpu_sampling_matches_cpu_sampler for the boundaries).
        let mut cpu = gqa::session::Session::cpu(session.model().clone(), None, Some(64)).unwrap();
        assert_eq!(cpu.generate_ids(&prompt, &params, &mut |_| true).unwrap(), ids, "CPU vs GPU ids, {:?}", params.sampler);
        assert_eq!(stats.context_used, expected_stats.context_used);
        assert_eq!(stats.stop_reason, expected_stats.stop_reason);
        assert_eq!(stats.generated_tokens, expected_stats.generated_tokens);
    }
}

/// Sampling on the GPU (sample.wgsl) against the CPU sampler on fixed logits: see
/// `common::gpu_sampling_matches_cpu`, which the browser test runs on WebGPU too.
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn gpu_sampling_matches_cpu_sampler() {
    pollster::block_on(common::gpu_sampling_matches_cpu(25));
}

/// The GPU's attention probe (attention_probe.wgsl), as the CPU's: each layer's weights
/// for the last token sum to 1 per head and equal the naive f64 reference's, every G; with
/// an int8 cache, the int8 reference's (the tolerance: tests/engine.rs).
#[test]
#[cfg_attr(not(has_vulkan), ignore = "needs a Vulkan driver (mesa-vulkan-drivers: lavapipe)")]
fn attention_probe_matches_reference() {
    let worst = common::probe_matches_reference(&mut |m| Box::new(engine(m, 320, f32_kv())), false, 1e-5);
    println!("GPU attention probe: max |probe - reference| = {worst:.2e}");
    let int8 = GpuOptions { kv_dtype: KvDType::I8, ..f32_kv() };
    let worst = common::probe_matches_reference(&mut |m| Box::new(engine(m, 320, int8.clone())), true, 1e-3);
    println!("GPU attention probe, int8 KV: max |probe - int8 reference| = {worst:.2e}");
}
