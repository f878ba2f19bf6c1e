//! Sampling: greedy is argmax, seeds reproduce, top-k / top-p cut where they
//! should, and draws follow the softmax distribution.

use gqa::sampler::{argmax, Sampler, SamplerConfig};

fn cfg(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> SamplerConfig {
    SamplerConfig { temperature, top_k, top_p, seed }
}

const LOGITS: [f32; 6] = [1.0, 3.0, 0.5, 2.5, -1.0, 3.0];

#[test]
fn greedy_is_first_argmax() {
    let mut s = Sampler::new(cfg(0.0, 0, 1.0, 0)).unwrap();
    assert_eq!(s.sample(&LOGITS), 1);
    assert_eq!(argmax(&[0.0, -1.0]), 0);
}

#[test]
fn same_seed_same_tokens() {
    let draw = |seed| {
        let mut s = Sampler::new(cfg(1.0, 0, 0.9, seed)).unwrap();
        (0..50).map(|_| s.sample(&LOGITS)).collect::<Vec<_>>()
    };
    assert_eq!(draw(3), draw(3));
    assert_ne!(draw(3), draw(4));
}

#[test]
fn top_k_and_top_p_restrict_the_candidates() {
    let mut k1 = Sampler::new(cfg(1.0, 1, 1.0, 9)).unwrap();
    let mut k2 = Sampler::new(cfg(5.0, 2, 1.0, 9)).unwrap();
    let mut p_small = Sampler::new(cfg(1.0, 0, 0.01, 9)).unwrap();
    for _ in 0..200 {
        assert_eq!(k1.sample(&LOGITS), 1);
        assert!([1, 5].contains(&k2.sample(&LOGITS)));
        assert_eq!(p_small.sample(&LOGITS), 1);
    }
}

/// Empirical frequencies match softmax(logits / T) within sampling error.
#[test]
fn draws_follow_softmax() {
    let t = 0.7f32;
    let z: f32 = LOGITS.iter().map(|l| (l / t).exp()).sum();
    let expected: Vec<f64> = LOGITS.iter().map(|l| ((l / t).exp() / z) as f64).collect();
    let n = 40_000;
    let mut counts = [0usize; 6];
    let mut s = Sampler::new(cfg(t, 0, 1.0, 1)).unwrap();
    for _ in 0..n {
        counts[s.sample(&LOGITS) as usize] += 1;
    }
    for i in 0..6 {
        let p = counts[i] as f64 / n as f64;
        let sigma = (expected[i] * (1.0 - expected[i]) / n as f64).sqrt();
        assert!((p - expected[i]).abs() < 5.0 * sigma + 1e-4, "token {i}: {p} vs {}", expected[i]);
    }
}

#[test]
fn bad_settings_are_errors() {
    for (c, word) in [
        (cfg(-1.0, 0, 1.0, 0), "temperature"),
        (cfg(f32::NAN, 0, 1.0, 0), "temperature"),
        (cfg(1.0, 0, 0.0, 0), "top_p"),
        (cfg(1.0, 0, 1.5, 0), "top_p"),
    ] {
        let err = Sampler::new(c).err().unwrap().to_string();
        assert!(err.contains(word), "{err}");
    }
}

/// Top-p applies to the distribution that top-k left: with k = 2 the two
/// tied leaders hold all the mass, so p = 0.5 keeps exactly one of them.
#[test]
fn top_p_is_relative_to_what_top_k_kept() {
    let mut s = Sampler::new(cfg(1.0, 2, 0.5, 4)).unwrap();
    for _ in 0..100 {
        assert_eq!(s.sample(&LOGITS), 1);
    }
}

/// The candidates the sampler draws from equal a naive reference's: every token
/// sorted by probability in f64, the top k, then the smallest prefix holding top_p of
/// their mass. Random logits over 500 tokens; every draw must be a candidate, and every
/// candidate holding at least 2% of the candidates' mass must be drawn.
#[test]
fn candidates_equal_a_full_sort_reference() {
    let mut rng = gqa::rng::Rng::new(5);
    for case in 0..24 {
        let logits: Vec<f32> = (0..500).map(|_| 3.0 * rng.normal()).collect();
        let (t, top_k, top_p) = ([0.7f32, 1.0, 1.5][case % 3], [0usize, 5, 50, 0][case % 4], [1.0f32, 0.9, 0.5, 0.05][case / 6]);
        let max = logits.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
        let mut p: Vec<(usize, f64)> = logits.iter().enumerate().map(|(i, &l)| (i, ((l as f64 - max) / t as f64).exp())).collect();
        p.sort_by(|a, b| b.1.total_cmp(&a.1));
        if top_k > 0 {
            p.truncate(top_k);
        }
        let total: f64 = p.iter().map(|x| x.1).sum();
        let mut keep = p.len();
        let mut cumulative = 0.0;
        for (i, x) in p.iter().enumerate() {
            cumulative += x.1 / total;
            if cumulative >= top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        let nucleus = &p[..keep];
        let mass: f64 = nucleus.iter().map(|x| x.1).sum();
        let mut s = Sampler::new(cfg(t, top_k, top_p, case as u64)).unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3000 {
            let id = s.sample(&logits) as usize;
            assert!(nucleus.iter().any(|x| x.0 == id), "case {case}: drew {id}, not a candidate");
            seen.insert(id);
        }
        for x in nucleus.iter().filter(|x| x.1 / mass >= 0.02) {
            assert!(seen.contains(&x.0), "case {case}: candidate {} ({:.3} of the mass) never drawn", x.0, x.1 / mass);
        }
    }
}
