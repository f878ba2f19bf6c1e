//! The CPU engine against the naive reference forward pass in tests/common.

mod common;

use common::{max_abs_diff, reference_logits, small_config, test_model};
use gqa::cpu::CpuEngine;
use gqa::backend::Logits;
use gqa::tensor::DType;

fn tokens(n: usize, vocab: usize) -> Vec<u32> {
    (0..n).map(|i| ((i * 37 + 11) % vocab) as u32).collect()
}

/// Decoding token by token through the KV cache gives the reference logits at
/// every position, for every G (MHA, GQA, MQA).
#[test]
fn decode_matches_reference_for_every_g() {
    for g in [8, 4, 2, 1] {
        let model = test_model(&small_config(g), 3 + g as u64);
        let toks = tokens(20, model.config.vocab_size);
        let expected = reference_logits(&model, &toks);
        let mut engine = CpuEngine::new(model, 64).unwrap();
        for (t, &tok) in toks.iter().enumerate() {
            let logits = engine.forward(&[tok], Logits::Last).unwrap();
            let d = max_abs_diff(&logits, &expected[t]);
            assert!(d < 1e-3, "G={g} position {t}: max abs diff {d}");
        }
        // The logits vary enough that the comparison means something.
        let spread = expected[5].iter().fold(0.0f32, |a, &b| a.max(b.abs()));
        assert!(spread > 1.0, "reference logits too flat ({spread})");
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

/// The KV cache holds G heads, not H: the buffers it allocated (`bytes` reads their
/// capacity) and the formula every front end reports both equal keys and values of
/// 2 layers x G heads x 100 positions x head_dim 8, in f32.
#[test]
fn kv_cache_is_sized_for_g() {
    for g in [8, 4, 2, 1] {
        let c = small_config(g);
        assert_eq!((c.num_hidden_layers, c.head_dim()), (2, 8));
        let engine = CpuEngine::new(test_model(&c, 1), 100).unwrap();
        let expected = 2 * (2 * g * 100 * 8) * 4;
        assert_eq!(engine.cache().bytes(), expected);
        assert_eq!(gqa::kv_cache_bytes(&c, g, 100, 4), expected);
    }
}
