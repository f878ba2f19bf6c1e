//! Shared test helpers: a deliberately naive reference forward pass (no KV
//! cache, key/value heads expanded to H with repeat_kv, plain softmax, f64
//! accumulation), written independently of the engine's kernels.
#![allow(dead_code)]

use gqa::model::Model;
use gqa::Config;

/// `rel` in the shared fixtures folder: `../shared`, or `$GQA_SHARED_DIR` when it
/// was set for the build (see build.rs). A test that calls this is marked
/// `#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]`,
/// so it runs only where build.rs found the fixtures, and always under CI, where a
/// missing file fails it here, named.
pub fn shared(rel: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("GQA_SHARED_DIR")).join(rel);
    assert!(path.exists(), "this test needs the shared fixtures, but {} is missing", path.display());
    path
}

pub fn small_config(n_kv_heads: usize) -> Config {
    let mut c = Config::new(64, 96, 2, 8, n_kv_heads, 97, 600);
    c.tie_word_embeddings = false;
    c
}

fn matvec(w: &gqa::tensor::Matrix, x: &[f64]) -> Vec<f64> {
    let v = w.to_f32_vec();
    (0..w.rows).map(|r| (0..w.cols).map(|c| v[r * w.cols + c] as f64 * x[c]).sum()).collect()
}

fn rms_norm(x: &[f64], w: &[f32], eps: f32) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (ms + eps as f64).sqrt();
    x.iter().zip(w).map(|(v, w)| v * inv * *w as f64).collect()
}

/// rotate_half RoPE on one head vector.
fn rope(x: &mut [f64], pos: usize, theta: f32) {
    let hd = x.len();
    let half = hd / 2;
    let orig = x.to_vec();
    for i in 0..half {
        let freq = 1.0 / (theta as f64).powf(2.0 * i as f64 / hd as f64);
        let (c, s) = ((pos as f64 * freq).cos(), (pos as f64 * freq).sin());
        x[i] = orig[i] * c - orig[i + half] * s;
        x[i + half] = orig[i + half] * c + orig[i] * s;
    }
}

/// Logits (T x vocab) for every position of `tokens`, recomputing everything.
pub fn reference_logits(model: &Model, tokens: &[u32]) -> Vec<Vec<f32>> {
    reference(model, tokens, false).0
}

/// The logits of the reference whose keys and values pass through int8 as the paper's
/// open question would store them, computed here independently of the engine: each
/// head's vector x at each position becomes s * round(x / s), s = max |x| / 127, with
/// x / s rounded to the nearest integer, ties to even.
pub fn reference_logits_int8_kv(model: &Model, tokens: &[u32]) -> Vec<Vec<f32>> {
    reference(model, tokens, true).0
}

/// The last token's attention weights in each layer, (H x T) row-major, in f64; with
/// `int8_kv`, the keys and values rounded as in `reference_logits_int8_kv`.
pub fn reference_attention(model: &Model, tokens: &[u32], int8_kv: bool) -> Vec<Vec<f64>> {
    reference(model, tokens, int8_kv).1
}

/// Round each head_dim-long head vector of x to int8 and back (see `reference_logits_int8_kv`).
fn int8_round_trip(x: &mut [f64], hd: usize) {
    for head in x.chunks_mut(hd) {
        let s = head.iter().fold(0.0f64, |m, v| m.max(v.abs())) / 127.0;
        if s > 0.0 {
            head.iter_mut().for_each(|v| *v = (*v / s).round_ties_even() * s);
        }
    }
}

/// The naive forward pass: the logits of every position and the last token's attention
/// weights in every layer; `int8_kv` rounds keys and values as they are cached.
fn reference(model: &Model, tokens: &[u32], int8_kv: bool) -> (Vec<Vec<f32>>, Vec<Vec<f64>>) {
    let mut last_attention = Vec::new();
    let c = &model.config;
    let (dim, hd, h, g) = (c.hidden_size, c.head_dim(), c.n_heads(), c.n_kv_heads());
    let rep = h / g;
    let mut xs: Vec<Vec<f64>> = tokens
        .iter()
        .map(|&t| {
            let e = model.embed.to_f32_vec();
            e[t as usize * dim..(t as usize + 1) * dim].iter().map(|&v| v as f64).collect()
        })
        .collect();
    for b in &model.blocks {
        let normed: Vec<Vec<f64>> = xs.iter().map(|x| rms_norm(x, &b.input_norm, c.rms_norm_eps)).collect();
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (pos, x) in normed.iter().enumerate() {
            let mut q = matvec(&b.attn.wq, x);
            let mut k = matvec(&b.attn.wk, x);
            for head in q.chunks_mut(hd) {
                rope(head, pos, c.rope_theta);
            }
            for head in k.chunks_mut(hd) {
                rope(head, pos, c.rope_theta);
            }
            let mut v = matvec(&b.attn.wv, x);
            if int8_kv {
                int8_round_trip(&mut k, hd);
                int8_round_trip(&mut v, hd);
            }
            // repeat_kv: query head i uses key/value head i / rep.
            let expand = |v: &[f64]| -> Vec<f64> { (0..h).flat_map(|i| v[(i / rep) * hd..(i / rep + 1) * hd].to_vec()).collect() };
            qs.push(q);
            ks.push(expand(&k));
            vs.push(expand(&v));
        }
        let n = xs.len();
        let mut weights = vec![0.0f64; h * n];
        for t in 0..n {
            let mut att = vec![0.0f64; h * hd];
            for head in 0..h {
                let r = head * hd..(head + 1) * hd;
                let scores: Vec<f64> = (0..=t)
                    .map(|s| qs[t][r.clone()].iter().zip(&ks[s][r.clone()]).map(|(a, b)| a * b).sum::<f64>() / (hd as f64).sqrt())
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = scores.iter().map(|s| (s - m).exp()).sum();
                for s in 0..=t {
                    let p = (scores[s] - m).exp() / z;
                    if t + 1 == n {
                        weights[head * n + s] = p;
                    }
                    for i in 0..hd {
                        att[head * hd + i] += p * vs[s][head * hd + i];
                    }
                }
            }
            let o = matvec(&b.attn.wo, &att);
            for (x, o) in xs[t].iter_mut().zip(o) {
                *x += o;
            }
        }
        last_attention.push(weights);
        for x in xs.iter_mut() {
            let n = rms_norm(x, &b.post_attention_norm, c.rms_norm_eps);
            let gate = matvec(&b.mlp.gate, &n);
            let up = matvec(&b.mlp.up, &n);
            let hidden: Vec<f64> = gate.iter().zip(&up).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            for (x, d) in x.iter_mut().zip(matvec(&b.mlp.down, &hidden)) {
                *x += d;
            }
        }
    }
    let logits = xs
        .iter()
        .map(|x| matvec(model.classifier(), &rms_norm(x, &model.norm, c.rms_norm_eps)).iter().map(|&v| v as f32).collect())
        .collect();
    (logits, last_attention)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// A random model with weights large enough that attention is far from
/// uniform and logits spread out (Model::random's std 0.02 is too gentle to
/// catch mistakes), and norm weights that are not all 1.
pub fn test_model(config: &Config, seed: u64) -> Model {
    let mut m = Model::random(config, seed, gqa::tensor::DType::F32).unwrap();
    let mut rng = gqa::rng::Rng::new(seed ^ 0xABCD);
    let scale = |w: &mut gqa::tensor::Matrix, s: f32| {
        if let gqa::tensor::Data::F32(d) = &mut w.data {
            d.iter_mut().for_each(|v| *v *= s);
        }
    };
    scale(&mut m.embed, 50.0);
    for b in &mut m.blocks {
        for w in [&mut b.attn.wq, &mut b.attn.wk] {
            scale(w, 12.0);
        }
        for w in [&mut b.attn.wv, &mut b.attn.wo, &mut b.mlp.gate, &mut b.mlp.up, &mut b.mlp.down] {
            scale(w, 6.0);
        }
        for n in b.input_norm.iter_mut().chain(b.post_attention_norm.iter_mut()) {
            *n = 0.5 + rng.uniform();
        }
    }
    if let Some(h) = &mut m.lm_head {
        scale(h, 10.0);
    }
    m
}

/// Sampling on the GPU (sample.wgsl) against the CPU sampler (`sample_with`) on the
/// same fixed logits and uniform draws: flat, peaked, tied and underflowing logits;
/// vocabularies below and above the GPU's 1024 ranked candidates; temperature alone,
/// top-k, top-p and both. The GPU's exp and sums may round differently from the
/// CPU's (a few f32 ulps per term, up to ~1e-5 of the mass over 3000 terms), so a
/// token may differ only where the draw lies that close to a boundary between two
/// tokens: wherever moving u by 2e-5 leaves the CPU's token unchanged, the tokens
/// must be equal, and such near-boundary draws must stay few (< 5%; a flat
/// 3000-token vocabulary puts a boundary every ~3e-4). Where the rule reaches past the
/// candidates (top-k 2000, a wide nucleus) the engine reads the logits back and
/// samples them on the CPU, and says so.
#[allow(dead_code)] // (not every test file samples)
pub async fn gpu_sampling_matches_cpu(draws: usize) {
    use gqa::rng::Rng;
    use gqa::sampler::{sample_with, SamplerConfig};
    let configs = [(1.0, 0, 1.0), (0.8, 40, 1.0), (1.0, 0, 0.9), (0.7, 50, 0.95), (1.5, 2000, 1.0), (1.0, 0, 0.5), (0.3, 1, 1.0)];
    let (mut checked, mut near) = (0, 0);
    for vocab in [97, 3000] {
        let model = test_model(&gqa::config::Config::new(16, 32, 1, 2, 1, vocab, 64), 2);
        let mut gpu = gqa::gpu::GpuEngine::new_async(model, 16, gqa::gpu::GpuOptions::default())
            .await
            .unwrap_or_else(|e| panic!("this test needs a GPU adapter: {e}"));
        let mut rng = Rng::new(vocab as u64);
        let mut fallbacks = 0;
        for shape in ["flat", "peaked", "tied", "underflow"] {
            let logits: Vec<f32> = (0..vocab)
                .map(|i| {
                    let x = rng.normal();
                    match shape {
                        "flat" => x,
                        "peaked" => 6.0 * x,
                        "tied" => (2.0 * x).round() / 2.0,
                        _ if i % 3 == 0 => -1e4,
                        _ => 3.0 * x,
                    }
                })
                .collect();
            for &(temperature, top_k, top_p) in &configs {
                let cfg = SamplerConfig { temperature, top_k, top_p, seed: 0 };
                for _ in 0..draws {
                    let u = rng.uniform();
                    drop(gpu.take_timing());
                    let got = gpu.sample_async(&logits, &cfg, u).await.unwrap();
                    let timing = gpu.take_timing();
                    fallbacks += timing.sample_fallbacks;
                    if timing.sample_fallbacks == 0 {
                        assert!(timing.read_bytes <= 64, "{} bytes read back for one sampled token", timing.read_bytes);
                    }
                    let expected = sample_with(&cfg, &logits, u);
                    let stable = [u - 2e-5, u + 2e-5].iter().all(|&v| sample_with(&cfg, &logits, v.clamp(0.0, 0.99999)) == expected);
                    checked += 1;
                    if stable {
                        assert_eq!(got, expected, "vocab {vocab}, {shape} logits, {cfg:?}, u {u}");
                    } else {
                        near += 1;
                    }
                }
            }
        }
        println!("vocab {vocab}: {fallbacks} tokens sampled on the CPU after the GPU's candidates ran out");
        if vocab < 1024 {
            assert_eq!(fallbacks, 0, "every token of a small vocabulary is a GPU candidate");
        } else {
            assert!(fallbacks > 0, "top-k 2000 reaches past the 1024 candidates");
        }
    }
    println!("{checked} draws, {near} within 2e-5 of a boundary");
    assert!(near * 20 <= checked, "{near} of {checked} draws near a boundary");
}

/// Long contexts (past 4096 positions) with the chosen splits and with forced ones,
/// for every G and each of `kv_dtypes`: decode logits equal the CPU engine's on the same
/// synthetic cache (1e-4 with f32 KV; with f16 or int8 KV, the bound of
/// `f16_kv_cache_is_close` relative to the largest logit: for int8 see `gqa check-gpu`'s
/// tolerances), and a prefill batch crossing split boundaries too.
pub async fn long_context_matches_cpu(splits: &[Option<usize>], kv_dtypes: &[gqa::tensor::KvDType]) {
    use gqa::backend::{EngineOptions, Logits};
    use gqa::config::divisors;
    use gqa::cpu::CpuEngine;
    use gqa::gpu::{GpuEngine, GpuOptions};
    use gqa::sampler::argmax;
    use gqa::tensor::KvDType;
    let capacity = 4700;
    let filled = 4600;
    for &kv_dtype in kv_dtypes {
        for g in divisors(8) {
            let model = test_model(&gqa::config::Config::new(64, 96, 2, 8, g, 97, capacity), 40 + g as u64);
            let mut cpu = CpuEngine::with_options(model.clone(), capacity, EngineOptions { kv_dtype: Some(kv_dtype), ..Default::default() }).unwrap();
            for &split in splits {
                let options = GpuOptions { kv_dtype, attention_split: split, max_batch: 16, ..GpuOptions::default() };
                let mut gpu = GpuEngine::new_async(model.clone(), capacity, options).await.unwrap_or_else(|e| panic!("this test needs a GPU adapter: {e}"));
                cpu.fill_synthetic(filled, 9).unwrap();
                gpu.fill_synthetic(filled, 9).unwrap();
                let what = format!("G={g} {kv_dtype:?} KV, split {split:?}");
                // A prefill of 20 tokens (two submissions of 16 and 4), then decode steps.
                let toks: Vec<u32> = (0..20).map(|i| ((i * 29 + 5) % 97) as u32).collect();
                let expected = cpu.forward(&toks, Logits::All).unwrap();
                let got = gpu.forward_async(&toks, Logits::All).await.unwrap();
                let scale = expected.iter().fold(0.0f32, |a, &b| a.max(b.abs()));
                let tol = if kv_dtype == KvDType::F32 { 1e-4 } else { 2e-3 * scale };
                let d = max_abs_diff(&got, &expected);
                assert!(d <= tol, "{what}: prefill logits differ by {d} (tolerance {tol})");
                let mut token = argmax(&expected[expected.len() - 97..]);
                for step in 0..4 {
                    let expected = cpu.forward(&[token], Logits::Last).unwrap();
                    let got = gpu.forward_async(&[token], Logits::Last).await.unwrap();
                    let d = max_abs_diff(&got, &expected);
                    assert!(d <= tol, "{what} step {step}: decode logits differ by {d} (tolerance {tol})");
                    token = argmax(&expected);
                }
            }
        }
    }
}

/// The attention probe of `backend` against the naive reference, for every G of an
/// 8-head model: each layer's weights for the last token (after a prefill, then after a
/// decode step) sum to 1 per head and equal the f64 reference's within `tol` (with
/// `int8_kv`, the reference that rounds keys and values to int8, for a backend opened with
/// an int8 cache); with the probe off there is no record. Returns the largest difference.
pub fn probe_matches_reference(open: &mut dyn FnMut(Model) -> Box<dyn gqa::backend::Backend>, int8_kv: bool, tol: f64) -> f64 {
    use gqa::backend::Logits;
    let mut worst = 0.0f64;
    for g in gqa::config::divisors(8) {
        let model = test_model(&small_config(g), 60 + g as u64);
        let mut backend = open(model.clone());
        let tokens: Vec<u32> = (0..300).map(|i| ((i * 13 + 7) % 97) as u32).collect();
        backend.forward(&tokens[..1], Logits::Last).unwrap();
        assert_eq!(backend.attention(0).unwrap(), None, "G={g}: no record while the probe is off");
        backend.reset();
        backend.set_attention_probe(true).unwrap();
        // A prefill of 299 tokens, then one decode step: the record is the last token's.
        for (len, run) in [(299, &tokens[..299]), (300, &tokens[299..])] {
            backend.forward(run, Logits::Last).unwrap();
            let expected = reference_attention(&model, &tokens[..len], int8_kv);
            for (layer, want) in expected.iter().enumerate() {
                let got = backend.attention(layer).unwrap().expect("a record while the probe is on");
                assert_eq!((got.n_heads, got.n_ctx), (8, len), "G={g} layer {layer}");
                for (h, row) in got.weights.chunks(len).enumerate() {
                    let sum: f64 = row.iter().map(|&w| w as f64).sum();
                    assert!((sum - 1.0).abs() < 1e-4, "G={g} layer {layer} head {h}: weights sum to {sum}");
                }
                let d = got.weights.iter().zip(want).fold(0.0f64, |a, (&x, &y)| a.max((x as f64 - y).abs()));
                assert!(d <= tol, "G={g} layer {layer}: probe vs reference differ by {d}");
                worst = worst.max(d);
            }
        }
        assert!(backend.attention(2).is_err(), "a layer past the model's is refused");
        backend.set_attention_probe(false).unwrap();
        backend.forward(&[1], Logits::Last).unwrap();
        assert_eq!(backend.attention(0).unwrap(), None, "G={g}: no record once the probe is off");
    }
    worst
}
