//! Evaluation: loss against a naive f64 reference forward, the long-context
//! protocol's scored positions, and KL / top-1 against a reference engine equal
//! to the same against that engine's recorded log-probabilities.

mod common;

use common::{reference_logits, small_config, test_model};
use gqa::convert::{convert, Method};
use gqa::cpu::CpuEngine;
use gqa::eval::{evaluate, Reference};

/// Mean negative log-likelihood of targets `from..` of `ids`, each predicted from
/// all tokens before it, by the naive reference forward (f64, no KV cache).
fn reference_nll(model: &gqa::Model, ids: &[u32], from: usize) -> f64 {
    let logits = reference_logits(model, &ids[..ids.len() - 1]);
    let nll: f64 = (from..ids.len())
        .map(|t| {
            let row = &logits[t - 1];
            let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let log_sum = row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
            log_sum - row[ids[t] as usize] as f64
        })
        .sum();
    nll / (ids.len() - from) as f64
}

fn text(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| 1 + (i * 37 + i * i * 11) % 96).collect()
}

/// One window holding the whole text: every target from `score_from` on is scored,
/// with the loss of the reference forward.
#[test]
fn loss_matches_the_reference_forward_and_scores_from_where_asked() {
    let model = test_model(&small_config(4), 3);
    let ids = text(80);
    for score_from in [0, 1, 40] {
        let mut engine = CpuEngine::new(model.clone(), 128).unwrap();
        let r = evaluate(&mut engine, Reference::None, &ids, 128, score_from, None, &mut |_, _| {}).unwrap();
        let from = score_from.max(1);
        assert_eq!(r.tokens, ids.len() - from, "score_from {score_from}");
        let expected = reference_nll(&model, &ids, from);
        assert!((r.nats_per_token - expected).abs() < 1e-4, "score_from {score_from}: {} vs {expected}", r.nats_per_token);
        assert!(r.kl_vs_base.is_none() && r.top1_agreement.is_none());
    }
}

/// Windows of 32 advancing by 16 with score_from 16: every target from 16 on is
/// scored once, each with at least 16 tokens of context, so the loss equals the
/// reference's over each target's own window.
#[test]
fn long_protocol_scores_each_second_half_once() {
    let model = test_model(&small_config(2), 5);
    let ids = text(100);
    let mut engine = CpuEngine::new(model.clone(), 32).unwrap();
    let r = evaluate(&mut engine, Reference::None, &ids, 32, 16, None, &mut |_, _| {}).unwrap();
    assert_eq!(r.tokens, ids.len() - 16);
    // Windows start at 0, 16, 32, ...; target t is new in the one starting 16 before
    // the multiple of 16 at or below t (the first window: targets 16..32).
    let mut nll = 0.0;
    for t in 16..ids.len() {
        let start = (16 * (t / 16)).saturating_sub(16);
        let window = &ids[start..=t];
        nll += reference_nll(&model, window, window.len() - 1);
    }
    let expected = nll / (ids.len() - 16) as f64;
    assert!((r.nats_per_token - expected).abs() < 1e-4, "{} vs {expected}", r.nats_per_token);
}

/// KL and top-1 against the base engine equal those against the base's recorded
/// log-probabilities; the base against itself has KL 0 and agreement 1.
#[test]
fn recorded_reference_equals_running_the_reference() {
    let base = test_model(&small_config(8), 7);
    let variant = convert(&base, 2, Method::Mean, 0).unwrap();
    let ids = text(150);
    let (window, from) = (64, 32);
    let mut b = CpuEngine::new(base.clone(), window).unwrap();
    let mut recorded = Vec::new();
    let own = evaluate(&mut b, Reference::None, &ids, window, from, Some(&mut recorded), &mut |_, _| {}).unwrap();
    assert_eq!(recorded.len(), own.tokens * base.config.vocab_size);

    let mut v = CpuEngine::new(variant.clone(), window).unwrap();
    let mut b2 = CpuEngine::new(base.clone(), window).unwrap();
    let live = evaluate(&mut v, Reference::Backend(&mut b2), &ids, window, from, None, &mut |_, _| {}).unwrap();
    let mut v = CpuEngine::new(variant, window).unwrap();
    let cached = evaluate(&mut v, Reference::LogProbs(&recorded), &ids, window, from, None, &mut |_, _| {}).unwrap();
    assert_eq!(live.nats_per_token, cached.nats_per_token);
    assert_eq!(live.kl_vs_base, cached.kl_vs_base);
    assert_eq!(live.top1_agreement, cached.top1_agreement);
    assert!(live.kl_vs_base.unwrap() > 1e-3, "the mean-pooled variant differs from the base");

    let mut b3 = CpuEngine::new(base, window).unwrap();
    let same = evaluate(&mut b3, Reference::LogProbs(&recorded), &ids, window, from, None, &mut |_, _| {}).unwrap();
    assert!(same.kl_vs_base.unwrap().abs() < 1e-9 && same.top1_agreement == Some(1.0));

    // Too few recorded positions: an error, not a panic.
    let mut b4 = CpuEngine::new(test_model(&small_config(8), 7), window).unwrap();
    let err = evaluate(&mut b4, Reference::LogProbs(&recorded[..100]), &ids, window, from, None, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("fewer positions"), "{err}");
}
