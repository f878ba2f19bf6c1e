//! The CPU engine against the naive reference forward pass in tests/common.

mod common;

use common::{max_abs_diff, reference_logits, reference_logits_int8_kv, small_config, test_model};
use gqa::backend::{EngineOptions, Logits};
use gqa::cpu::CpuEngine;
use gqa::tensor::{DType, KvDType};

fn tokens(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 37 + 11) % vocab) as u32).collect()
}

/// Tolerance of the logits against the f64 reference (which keeps keys and
/// values exact), by KV-cache precision. With an f32 cache the engine differs
/// from it only by f32 rounding in sums of a few hundred terms: 1e-3.
///
/// An f16 cache rounds every key and value to 11 significant bits, a relative
/// error of at most u = 2^-11. Per layer, the attention output (a convex
/// combination of values) moves by u relative from the values, and by about
/// 2u |s| from the scores s = q.k/sqrt(hd) moving by u |s| in the softmax
/// exponent (|s| ~ 1-2 for these weights): ~5u relative. The rest of the
/// network carries that into the logits in proportion to their scale
/// (max |logit|), once per layer (2): 10u x max |logit|, plus the f32 1e-3.
/// (Measured: about 1.2u x max |logit|.)
fn tolerance(kv_dtype: KvDType, logits: &[f32]) -> f32 {
    match kv_dtype {
        KvDType::F32 => 1e-3,
        KvDType::F16 => 1e-3 + 10.0 * 2f32.powi(-11) * logits.iter().fold(0.0f32, |a, &b| a.max(b.abs())),
        KvDType::I8 => unreachable!("see int8_kv_cache_matches_its_reference"),
    }
}

/// Decode `n` tokens one at a time through a cache of `capacity` positions in
/// `kv_dtype` and compare the logits with the reference at every position; returns
/// the reference's logits.
fn decode_against_reference(kv_dtype: KvDType, g: usize, seed: u64, n: usize, capacity: usize) -> Vec<Vec<f32>> {
    let model = test_model(&small_config(g), seed);
    let toks = tokens(n, model.config.vocab_size);
    let expected = reference_logits(&model, &toks);
    let mut engine = CpuEngine::with_options(model, capacity, EngineOptions { kv_dtype: Some(kv_dtype), ..Default::default() }).unwrap();
    for (t, &tok) in toks.iter().enumerate() {
        let logits = engine.forward(&[tok], Logits::Last).unwrap();
        let (d, tol) = (max_abs_diff(&logits, &expected[t]), tolerance(kv_dtype, &expected[t]));
        assert!(d < tol, "{kv_dtype:?} KV, G={g} position {t}: max abs diff {d} (tolerance {tol})");
    }
    expected
}

/// Decoding token by token through the KV cache gives the reference logits at
/// every position, for every G (MHA, GQA, MQA) with f32 and f16 KV caches (int8: see below).
#[test]
fn decode_matches_reference_for_every_g_and_kv_dtype() {
    for kv_dtype in [KvDType::F32, KvDType::F16] {
        for g in [8, 4, 2, 1] {
            let expected = decode_against_reference(kv_dtype, g, 3 + g as u64, 20, 64);
            // The logits vary enough that the comparison means something.
            let spread = expected[5].iter().fold(0.0f32, |a, &b| a.max(b.abs()));
            assert!(spread > 1.0, "reference logits too flat ({spread})");
        }
    }
}

/// Decoding past the cache's first 256-position block, into a shorter last block
/// (capacity 300: blocks of 256 and 44 positions, keys transposed and values one
/// row per position in each), matches the reference at every position, for MHA,
/// GQA and MQA and both KV precisions: the store and the attention kernels must
/// agree on where each position of each block lives.
#[test]
fn decode_across_cache_blocks_matches_reference() {
    for kv_dtype in [KvDType::F32, KvDType::F16] {
        for g in [8, 2, 1] {
            decode_against_reference(kv_dtype, g, 30 + g as u64, 300, 300);
        }
    }
}

/// An int8 KV cache against the reference that rounds its keys and values to int8
/// itself (`common::reference_logits_int8_kv`, in f64), for every G, decoding token
/// by token.
///
/// The tolerance: the two round the same values by the same rule, so they agree to
/// the f32 1e-3 above, except where an element's x / scale lies within float
/// rounding (about 1e-4: x / scale is up to 127, computed from f32 sums) of a
/// half-integer, and the engine rounds it to the other neighbour: one element moves
/// by one step (its head's max |x| / 127). Rounding moves every element of every
/// key and value by up to half a step, so one such flip moves the logits by less
/// than the whole int8 rounding does: at those positions the bound is the
/// reference's own distance from the exact (unrounded) reference there. Flips are
/// rare (about 1e-4 of elements are that close to a boundary), so at most one
/// position in ten may need it. (Measured: 1e-6 to 3e-6 at positions without a
/// flip; two positions of 80 with one, 6e-4 and 1.2e-2; the int8 rounding itself
/// moves the logits by 0.06-0.08 at a largest |logit| of 5-6.)
#[test]
fn int8_kv_cache_matches_its_reference() {
    let (mut positions, mut flipped) = (0, 0);
    for g in [8, 4, 2, 1] {
        let model = test_model(&small_config(g), 3 + g as u64);
        let toks = tokens(20, model.config.vocab_size);
        let expected = reference_logits_int8_kv(&model, &toks);
        let exact = reference_logits(&model, &toks);
        let rounding = (0..toks.len()).map(|t| max_abs_diff(&exact[t], &expected[t])).fold(0.0f32, f32::max);
        assert!(rounding > 1e-2, "G={g}: int8 rounding moved the reference's logits by only {rounding}: the test would not see it");
        let mut engine = CpuEngine::with_options(model, 64, EngineOptions { kv_dtype: Some(KvDType::I8), ..Default::default() }).unwrap();
        for (t, &tok) in toks.iter().enumerate() {
            let logits = engine.forward(&[tok], Logits::Last).unwrap();
            let d = max_abs_diff(&logits, &expected[t]);
            positions += 1;
            if d > 1e-3 {
                flipped += 1;
                let bound = max_abs_diff(&exact[t], &expected[t]);
                assert!(d < bound, "G={g} position {t}: max abs diff {d}, more than int8 rounding itself moves the logits ({bound})");
            }
        }
    }
    assert!(flipped * 10 <= positions, "{flipped} of {positions} positions past 1e-3: more than rare rounding flips");
}

/// The int8 cache past its first 256-position block, into a shorter last one (capacity
/// 300): keys, values and their scales of the second block are where the attention reads
/// them. One prefill of 270 tokens, its last logits against the int8 reference, with
/// the same allowance for a rare rounding flip as above.
#[test]
fn int8_kv_cache_across_blocks_matches_its_reference() {
    let model = test_model(&small_config(2), 41);
    let toks = tokens(270, model.config.vocab_size);
    let expected = reference_logits_int8_kv(&model, &toks);
    let exact = reference_logits(&model, &toks);
    let mut engine = CpuEngine::with_options(model, 300, EngineOptions { kv_dtype: Some(KvDType::I8), ..Default::default() }).unwrap();
    let logits = engine.forward(&toks, Logits::Last).unwrap();
    let (d, bound) = (max_abs_diff(&logits, &expected[269]), max_abs_diff(&exact[269], &expected[269]));
    assert!(bound > 1e-2, "int8 rounding moved the reference's logits by only {bound}: the test would not see it");
    assert!(d <= 1e-3 || d < bound, "max abs diff {d} at position 269, more than int8 rounding itself moves the logits ({bound})");
}

/// Splitting work across threads changes nothing: each output is computed by the
/// same code whichever thread runs it. Forced serial vs forced parallel (on 4
/// threads), for a prefill crossing the 256-position attention chunks and the
/// decode steps after it, with both KV precisions: bit-identical logits. Also
/// called from outside any pool, as the CLI and the page's worker call it: the
/// pass then moves onto the global pool's threads (`kernels::on_pool`).
#[test]
fn serial_and_parallel_paths_agree_exactly() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    // Another test may have started the global pool first; it needs 2 threads or more.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(2).build_global();
    assert!(rayon::current_num_threads() >= 2, "the global pool has one thread: nothing would be split");
    for kv_dtype in KvDType::ALL {
        let model = test_model(&small_config(2), 17);
        let toks = tokens(300, model.config.vocab_size);
        let run = |min_parallel_bytes: usize| {
            let mut engine = CpuEngine::with_options(model.clone(), 310, EngineOptions { kv_dtype: Some(kv_dtype), ..Default::default() }).unwrap();
            engine.set_min_parallel_bytes(min_parallel_bytes);
            let mut logits = engine.forward(&toks, Logits::All).unwrap();
            for &tok in &toks[..5] {
                logits.extend(engine.forward(&[tok], Logits::Last).unwrap());
            }
            logits
        };
        let serial = pool.install(|| run(usize::MAX));
        assert_eq!(serial, pool.install(|| run(0)), "{kv_dtype:?} KV: serial and parallel logits differ");
        assert_eq!(serial, run(0), "{kv_dtype:?} KV: called from outside the pool, the parallel logits differ");
    }
}

/// A batched prefill equals the token-by-token decode, including attention
/// spans that cross the 256-position chunk boundary (merged by max and sum).
#[test]
fn prefill_matches_decode_across_chunks() {
    let model = test_model(&small_config(2), 9);
    let toks = tokens(560, model.config.vocab_size);
    let mut batched = CpuEngine::new(model.clone(), 600).unwrap();
    let all = batched.forward(&toks, Logits::All).unwrap();
    let mut stepwise = CpuEngine::new(model, 600).unwrap();
    let vocab = 97;
    for (t, &tok) in toks.iter().enumerate() {
        let logits = stepwise.forward(&[tok], Logits::Last).unwrap();
        let d = max_abs_diff(&logits, &all[t * vocab..(t + 1) * vocab]);
        assert!(d < 1e-3, "position {t}: prefill vs decode differ by {d}");
    }
    assert_eq!(batched.pos(), 560);
}

/// Long context against the reference (few positions checked, the reference is slow).
#[test]
fn long_context_matches_reference() {
    let model = test_model(&small_config(4), 21);
    let toks = tokens(300, model.config.vocab_size);
    let expected = reference_logits(&model, &toks);
    let mut engine = CpuEngine::new(model, 300).unwrap();
    let all = engine.forward(&toks, Logits::All).unwrap();
    for t in [0, 255, 256, 257, 299] {
        let d = max_abs_diff(&all[t * 97..(t + 1) * 97], &expected[t]);
        assert!(d < 1e-3, "position {t}: diff {d}");
    }
}

/// f16 weights give logits close to the f32 model they were rounded from, and
/// exactly those of an f32 model holding the rounded values.
#[test]
fn f16_weights_match_rounded_f32() {
    let model = test_model(&small_config(4), 5);
    let f16 = model.to_dtype(DType::F16);
    let rounded = f16.to_dtype(DType::F32);
    let toks = tokens(12, 97);
    let mut a = CpuEngine::new(f16, 16).unwrap();
    let mut b = CpuEngine::new(rounded, 16).unwrap();
    let la = a.forward(&toks, Logits::All).unwrap();
    let lb = b.forward(&toks, Logits::All).unwrap();
    let d = max_abs_diff(&la, &lb);
    assert!(d < 1e-3, "f16 vs rounded f32 differ by {d}");
}

#[test]
fn context_overflow_and_bad_tokens_are_errors() {
    let model = test_model(&small_config(8), 1);
    let mut engine = CpuEngine::new(model, 4).unwrap();
    let err = engine.forward(&[1, 2, 3, 4, 5], Logits::Last).unwrap_err();
    assert!(matches!(err, gqa::GqaError::ContextFull { .. }), "{err}");
    let err = engine.forward(&[500], Logits::Last).unwrap_err();
    assert!(matches!(err, gqa::GqaError::BadToken { token: 500, .. }), "{err}");
    let err = engine.forward(&[], Logits::Last).unwrap_err();
    assert!(err.to_string().contains("at least one token"), "{err}");
    // Capacity beyond the model's context is refused before allocating.
    let err = CpuEngine::new(test_model(&small_config(8), 1), 1 << 40).err().unwrap();
    assert!(err.to_string().contains("capacity"), "{err}");
}

/// The KV cache holds G heads, not H, at its precision: the buffers it allocated
/// (`bytes` reads their capacity) and the formula every front end reports both equal
/// keys and values of 2 layers x G heads x 100 positions x head_dim 8 (and int8's scales).
#[test]
fn kv_cache_is_sized_for_g_and_dtype() {
    for kv_dtype in KvDType::ALL {
        for g in [8, 4, 2, 1] {
            let c = small_config(g);
            assert_eq!((c.num_hidden_layers, c.head_dim()), (2, 8));
            let engine = CpuEngine::with_options(test_model(&c, 1), 100, EngineOptions { kv_dtype: Some(kv_dtype), ..Default::default() }).unwrap();
            // One head's keys (or values) at one position: 8 elements, and int8's f32 scale.
            let vector = match kv_dtype {
                KvDType::F32 => 8 * 4,
                KvDType::F16 => 8 * 2,
                KvDType::I8 => 8 + 4,
            };
            let expected = 2 * (2 * g * 100) * vector;
            assert_eq!(engine.cache().bytes(), expected);
            assert_eq!(gqa::kv_cache_bytes(&c, g, 100, kv_dtype), expected);
        }
    }
}

/// The attention probe (off by default) records each layer's weights for the last token:
/// they sum to 1 per head and equal the naive f64 reference's, for every G; with an int8
/// cache, the int8 reference's within 1e-3: a key or value rounded to the neighbouring code
/// (see int8_kv_cache_matches_its_reference) moves a weight by far less than the int8
/// rounding itself, which moves these weights by 5e-3 to 3e-2 from the exact reference's.
/// (Measured: 1.2e-5 on the CPU, 1.0e-4 on lavapipe.)
#[test]
fn attention_probe_matches_reference() {
    let worst = common::probe_matches_reference(&mut |m| Box::new(CpuEngine::new(m, 320).unwrap()), false, 1e-5);
    println!("CPU attention probe: max |probe - reference| = {worst:.2e}");
    let int8 = EngineOptions { kv_dtype: Some(KvDType::I8), ..Default::default() };
    let worst = common::probe_matches_reference(&mut |m| Box::new(CpuEngine::with_options(m, 320, int8).unwrap()), true, 1e-3);
    println!("CPU attention probe, int8 KV: max |probe - int8 reference| = {worst:.2e}");
}
