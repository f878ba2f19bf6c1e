//! The session API the CLI and the page share: conversion, streaming,
//! stopping, seeds and statistics.

mod common;

use common::{small_config, test_model};
use gqa::backend::{BackendKind, EngineOptions};
use gqa::convert::Method;
use gqa::sampler::SamplerConfig;
use gqa::generation::GenerateParams;
use gqa::session::Session;
use gqa::tensor::KvDType;

fn params(n: usize, temperature: f32, seed: u64) -> GenerateParams {
    GenerateParams { max_tokens: n, sampler: SamplerConfig { temperature, top_k: 0, top_p: 0.95, seed } }
}

fn session() -> Session {
    let mut c = small_config(8);
    c.max_position_embeddings = 64;
    Session::cpu(test_model(&c, 2), None, None).unwrap()
}

#[test]
fn same_seed_same_tokens_and_different_seed_differs() {
    let mut s = session();
    let run = |s: &mut Session, seed| s.generate_ids(&[1, 40, 41], &params(30, 1.0, seed), &mut |_| true).unwrap();
    let a = run(&mut s, 5);
    let b = run(&mut s, 5);
    let c = run(&mut s, 6);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn the_callback_can_stop_generation() {
    let mut s = session();
    let mut seen = 0;
    let ids = s
        .generate_ids(&[1, 7], &params(50, 1.0, 1), &mut |_| {
            seen += 1;
            seen < 5
        })
        .unwrap();
    assert_eq!(ids.len(), 5);
    assert_eq!(s.stats().stop_reason, "stopped");
}

/// A 60-token prompt in a 64-position cache: the prefill fills 60 positions and
/// yields token 1; tokens 1 to 4 each take one more position; token 5 comes from
/// the forward pass that fills position 64, and running it would need a 65th.
/// (This seed samples no end-of-sequence token on the way, checked too.)
#[test]
fn generation_stops_at_the_context_end() {
    let mut s = session();
    let ids = s.generate_ids(&[1; 60], &params(100, 1.0, 3), &mut |_| true).unwrap();
    let st = s.stats();
    assert!(ids.iter().all(|&id| id != 1 && id != 2), "an end-of-sequence id in {ids:?}");
    assert_eq!((st.stop_reason.as_str(), ids.len(), st.generated_tokens), ("context", 5, 5));
    assert_eq!(st.context_used, 64);
}

#[test]
fn switching_g_reallocates_the_cache_for_g_heads() {
    let mut s = session();
    for g in [8, 4, 2, 1, 2, 8] {
        s.set_groups(g, Method::Mean, 0).unwrap();
        s.generate_ids(&[1, 3, 4], &params(8, 0.0, 0), &mut |_| true).unwrap();
        let st = s.stats();
        assert_eq!(st.n_kv_heads, g);
        let c = &s.model().config;
        assert_eq!(st.kv_bytes_allocated, gqa::kv_cache_bytes(c, g, 64, KvDType::F32));
        assert_eq!(st.kv_bytes, gqa::kv_cache_bytes(c, g, st.context_used, KvDType::F32));
        assert_eq!(st.kv_bytes_mha, gqa::kv_cache_bytes(c, 8, st.context_used, KvDType::F32));
    }
    assert!(s.set_groups(3, Method::Mean, 0).is_err());
    // A failed conversion leaves the running model as it was.
    assert_eq!(s.model().config.n_kv_heads(), 8);
}

/// With an f16 or int8 KV cache (an engine option), every KV byte count in the
/// statistics is at that precision (int8 with its scales), and stays so across
/// conversions.
#[test]
fn f16_and_int8_kv_cache_stats_count_their_bytes() {
    let mut c = small_config(8);
    c.max_position_embeddings = 64;
    for kv in [KvDType::F16, KvDType::I8] {
        let options = EngineOptions { kv_dtype: Some(kv), ..Default::default() };
        let (mut s, _) = Session::open(BackendKind::Cpu, test_model(&c, 2), None, None, options).unwrap();
        for g in [8, 2] {
            s.set_groups(g, Method::Mean, 0).unwrap();
            s.generate_ids(&[1, 3, 4], &params(8, 0.0, 0), &mut |_| true).unwrap();
            let st = s.stats();
            assert_eq!(st.kv_dtype, kv.name());
            assert_eq!(st.kv_bytes_allocated, gqa::kv_cache_bytes(&c, g, 64, kv));
            assert_eq!(st.kv_bytes, gqa::kv_cache_bytes(&c, g, st.context_used, kv));
            assert_eq!(st.kv_bytes_mha, gqa::kv_cache_bytes(&c, 8, st.context_used, kv));
        }
    }
}

#[test]
fn bad_prompts_are_errors() {
    let mut s = session();
    let err = s.generate_ids(&[], &params(4, 0.0, 0), &mut |_| true).unwrap_err();
    assert!(err.to_string().contains("at least one token"), "{err}");
    let err = s.generate_ids(&[1; 65], &params(4, 0.0, 0), &mut |_| true).unwrap_err();
    assert!(matches!(err, gqa::GqaError::PromptTooLong { prompt: 65, context: 64 }), "{err}");
    let err = s.generate("hello", &params(4, 0.0, 0), &mut |_| true).unwrap_err();
    assert!(err.to_string().contains("no tokenizer"), "{err}");
}

#[test]
fn step_wise_generation_gives_the_same_tokens_and_can_stop() {
    let mut s = session();
    let p = params(12, 1.0, 9);
    let all = s.generate_ids(&[1, 40, 41], &p, &mut |_| true).unwrap();
    s.start(&[1, 40, 41], &p).unwrap();
    let mut steps = Vec::new();
    while let Some(id) = s.next_token().unwrap() {
        steps.push(id);
        assert_eq!(s.stats().stop_reason, "running");
        assert_eq!(s.stats().generated_tokens, steps.len());
    }
    assert_eq!(steps, all);
    assert!(!s.is_generating());
    // After the end, and without a start, there is nothing more.
    assert_eq!(s.next_token().unwrap(), None);

    s.start(&[1, 40, 41], &p).unwrap();
    s.next_token().unwrap().unwrap();
    s.stop();
    assert_eq!(s.next_token().unwrap(), None);
    assert_eq!(s.stats().stop_reason, "stopped");
    assert_eq!(s.stats().generated_tokens, 1);

    // Changing G ends a generation in progress; a bad start leaves none running.
    s.start(&[1, 40, 41], &p).unwrap();
    s.set_groups(4, Method::Mean, 0).unwrap();
    assert_eq!(s.next_token().unwrap(), None);
    assert!(s.start(&[], &p).is_err());
    assert!(!s.is_generating());
}

/// A session holds its engine as an `Engine`: a front end reaches the CPU or GPU
/// engine inside by its variant.
#[test]
fn the_engine_inside_is_reachable_by_variant() {
    use gqa::backend::engine::Engine;
    let mut s = session();
    assert!(matches!(s.engine(), Engine::Cpu(_)));
    assert!(s.engine().gpu().is_none());
}
