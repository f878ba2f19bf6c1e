//! Training (feature `train`): the candle model against the inference engine,
//! gradients, a few optimizer steps, the tokenizer trainer, and the shipped
//! models in www/models. Run with `cargo test --release --features train --test train`.
#![cfg(feature = "train")]

mod common;

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use gqa::config::Config;
use gqa::cpu::CpuEngine;
use gqa::hf;
use gqa::model::Model;
use gqa::backend::Logits;
use gqa::tensor::DType;
use gqa::train::data::TokenStream;
use gqa::train::model::TrainModel;
use gqa::train::optim::{lr_at, AdamW, AdamWParams};
use gqa::train::tokenizer_train::train_bpe;

fn tiny_config(n_kv_heads: usize) -> Config {
    let mut c = Config::new(32, 48, 2, 4, n_kv_heads, 40, 32);
    c.tie_word_embeddings = true;
    c
}

/// A model whose norms are not all 1, so the norm weights matter too.
fn tiny_model(n_kv_heads: usize, seed: u64) -> Model {
    let mut m = Model::random(&tiny_config(n_kv_heads), seed, DType::F32).unwrap();
    for (i, b) in m.blocks.iter_mut().enumerate() {
        for (j, w) in b.input_norm.iter_mut().chain(b.post_attention_norm.iter_mut()).enumerate() {
            *w = 1.0 + 0.1 * (((i * 31 + j * 7) % 11) as f32 - 5.0) / 5.0;
        }
    }
    m
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gqa-train-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn ids(rows: &[Vec<u32>]) -> Tensor {
    let t = rows[0].len();
    Tensor::from_vec(rows.concat(), (rows.len(), t), &Device::Cpu).unwrap()
}

/// Logits of the candle model and of the CPU engine for the same sequences.
fn max_logit_diff(model: &Model, seqs: &[Vec<u32>]) -> f32 {
    let tm = TrainModel::from_model(model).unwrap();
    let logits = tm.forward(&ids(seqs)).unwrap().to_vec3::<f32>().unwrap(); // (B, T, V)
    let mut engine = CpuEngine::new(model.clone(), model.config.max_position_embeddings).unwrap();
    let mut worst = 0.0f32;
    for (seq, rows) in seqs.iter().zip(&logits) {
        engine.reset();
        let out = engine.forward(seq, Logits::All).unwrap();
        let flat: Vec<f32> = rows.concat();
        assert_eq!(out.len(), flat.len());
        worst = out.iter().zip(&flat).map(|(a, b)| (a - b).abs()).fold(worst, f32::max);
    }
    worst
}

fn sequences(vocab: u32, len: usize) -> Vec<Vec<u32>> {
    (0..3u32).map(|s| (0..len as u32).map(|i| (i * 7 + s * 13 + i * i) % vocab).collect()).collect()
}

#[test]
fn training_model_matches_engine_after_a_checkpoint_round_trip() {
    for g in [4, 2, 1] {
        let model = tiny_model(g, 3 + g as u64);
        let dir = temp_dir(&format!("roundtrip-{g}"));
        hf::save_hf_dir(&model, &dir, DType::F32).unwrap();
        let loaded = hf::load_hf_dir(&dir).unwrap();
        let diff = max_logit_diff(&loaded, &sequences(40, 32));
        assert!(diff <= 1e-4, "G = {g}: max |logit diff| {diff}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn shipped_models_match_between_training_and_engine() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models");
    for name in ["mha", "gqa-4", "gqa-2", "mqa"] {
        let dir = root.join(name);
        // f16 on disk; both sides compute in f32 from the same values.
        let model = hf::load_hf_dir(&dir).unwrap().to_dtype(DType::F32);
        let vocab = model.config.vocab_size as u32;
        let diff = max_logit_diff(&model, &sequences(vocab, 64));
        assert!(diff <= 1e-4, "{name}: max |logit diff| {diff}");
    }
}

#[test]
fn every_parameter_gets_a_gradient() {
    let tm = TrainModel::from_model(&tiny_model(2, 5)).unwrap();
    let seqs = sequences(40, 17);
    let x = ids(&seqs.iter().map(|s| s[..16].to_vec()).collect::<Vec<_>>());
    let y = ids(&seqs.iter().map(|s| s[1..].to_vec()).collect::<Vec<_>>());
    let grads = tm.loss(&x, &y).unwrap().backward().unwrap();
    for (name, var) in tm.named_vars() {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{name} has no gradient"));
        let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(norm > 0.0 && norm.is_finite(), "{name}: gradient norm^2 {norm}");
    }
}

#[test]
fn gradients_match_finite_differences() {
    let model = tiny_model(2, 9);
    let tm = TrainModel::from_model(&model).unwrap();
    let seqs = sequences(40, 17);
    let x = ids(&seqs.iter().map(|s| s[..16].to_vec()).collect::<Vec<_>>());
    let y = ids(&seqs.iter().map(|s| s[1..].to_vec()).collect::<Vec<_>>());
    let grads = tm.loss(&x, &y).unwrap().backward().unwrap();
    let loss_of = |m: &Model| -> f64 {
        TrainModel::from_model(m).unwrap().loss(&x, &y).unwrap().to_scalar::<f32>().unwrap() as f64
    };
    // (parameter, element) pairs: a K projection (grouped), an MLP matrix, a norm.
    let named = tm.named_vars();
    for (name, index) in [("layers.0.wk", 5usize), ("layers.1.gate", 17), ("layers.0.input_norm", 3), ("embed", 70)] {
        let var = &named.iter().find(|(n, _)| n == name).unwrap().1;
        let analytic = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[index] as f64;
        let h = 1e-2f32;
        let nudge = |delta: f32| {
            let mut m = model.clone();
            let flat = element(&mut m, name, index);
            *flat += delta;
            loss_of(&m)
        };
        let numeric = (nudge(h) - nudge(-h)) / (2.0 * h as f64);
        let tol = 2e-3 + 0.05 * analytic.abs();
        assert!((analytic - numeric).abs() <= tol, "{name}[{index}]: analytic {analytic:.6} numeric {numeric:.6}");
    }
}

/// A mutable reference to element `index` of the parameter called `name`.
fn element<'a>(m: &'a mut Model, name: &str, index: usize) -> &'a mut f32 {
    let f32s = |mat: &'a mut gqa::tensor::Matrix| match &mut mat.data {
        gqa::tensor::Data::F32(v) => &mut v[index],
        _ => unreachable!("f32 model"),
    };
    match name {
        "embed" => f32s(&mut m.embed),
        "layers.0.wk" => f32s(&mut m.blocks[0].attn.wk),
        "layers.1.gate" => f32s(&mut m.blocks[1].mlp.gate),
        "layers.0.input_norm" => &mut m.blocks[0].input_norm[index],
        _ => unreachable!(),
    }
}

#[test]
fn a_few_adamw_steps_lower_the_loss() {
    let tm = TrainModel::from_model(&tiny_model(1, 11)).unwrap();
    // A learnable stream: a repeating pattern.
    let stream = TokenStream { tokens: (0..2000u32).map(|i| 3 + (i * 5 % 29)).collect(), bos: 1, seq_len: 16 };
    let params = AdamWParams { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 };
    let mut opt = AdamW::new(tm.named_vars(), params).unwrap();
    let loss_at = |step| {
        let b = stream.train_batch(7, step, 8).unwrap();
        tm.loss(&b.ids, &b.targets).unwrap().to_scalar::<f32>().unwrap()
    };
    let first = loss_at(0);
    for step in 0..30 {
        let b = stream.train_batch(7, step, 8).unwrap();
        let grads = tm.loss(&b.ids, &b.targets).unwrap().backward().unwrap();
        opt.step(&grads, lr_at(step, 30, 3, 1e-2, 1e-3), 1.0).unwrap();
    }
    let last = loss_at(100);
    assert!(last < first * 0.6, "loss {first} -> {last}");
}

#[test]
fn schedule_warms_up_then_decays() {
    assert!((lr_at(0, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
    assert!((lr_at(9, 100, 10, 1.0, 0.1) - 1.0).abs() < 1e-12);
    assert!((lr_at(100, 100, 10, 1.0, 0.1) - 0.1).abs() < 1e-12);
    assert!(lr_at(50, 100, 10, 1.0, 0.1) < lr_at(20, 100, 10, 1.0, 0.1));
}

#[test]
fn batches_are_bos_led_and_reproducible() {
    let stream = TokenStream { tokens: (10..500u32).collect(), bos: 1, seq_len: 8 };
    let a = stream.train_batch(3, 42, 4).unwrap();
    let b = stream.train_batch(3, 42, 4).unwrap();
    let (ai, at) = (a.ids.to_vec2::<u32>().unwrap(), a.targets.to_vec2::<u32>().unwrap());
    assert_eq!(ai, b.ids.to_vec2::<u32>().unwrap());
    for (x, y) in ai.iter().zip(&at) {
        assert_eq!(x[0], 1);
        assert_eq!(&x[1..], &y[..7], "targets are the inputs shifted by one");
    }
}

#[test]
fn bpe_tokenizer_round_trips_with_special_tokens_first() {
    let text = "Once upon a time, there was a little cat.\n\nThe cat liked to play. The dog liked the cat.\n".repeat(20);
    let tok = train_bpe(&text, 300).unwrap();
    assert_eq!(tok.token_to_piece(1).as_deref(), Some("<s>"));
    assert_eq!(tok.token_to_piece(2).as_deref(), Some("</s>"));
    let sample = "Once upon a time, the dog played. Ünïcode ✓\n";
    assert_eq!(tok.decode(&tok.encode(sample).unwrap()).unwrap(), sample);
    let reloaded = gqa::tokenizer::Tokenizer::from_json(tok.to_json().unwrap().as_bytes()).unwrap();
    assert_eq!(reloaded.encode(&text).unwrap(), tok.encode(&text).unwrap());
}

/// The shipped folders agree with results.json: each loads with its G, all together
/// fit in 40 MB, and each greedy sample (128 tokens after its prompt) is what the
/// naive reference forward (tests/common: f64, no KV cache) picks at every step.
#[test]
fn shipped_models_agree_with_results_json() {
    use gqa::sampler::argmax;
    use gqa::train::recipe::Results;

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("www/models");
    let text = std::fs::read_to_string(root.join("results.json")).expect("www/models/results.json is in the repository");
    let results: Results = serde_json::from_str(&text).unwrap();
    let mut bytes = 0;
    for (folder, g) in [("mha", 8), ("gqa-4", 4), ("gqa-2", 2), ("mqa", 1)] {
        let dir = root.join(folder);
        for f in std::fs::read_dir(&dir).unwrap() {
            bytes += f.unwrap().metadata().unwrap().len();
        }
        let model = hf::load_hf_dir(&dir).unwrap();
        assert_eq!(model.config.n_kv_heads(), g, "{folder}");
        assert_eq!(model.dtype(), DType::F16, "{folder}");
        let tokenizer =
            gqa::tokenizer::Tokenizer::from_json(&std::fs::read(dir.join("tokenizer.json")).unwrap()).unwrap();
        let sample = results.samples.iter().find(|s| s.model == folder).unwrap();

        // BOS + the prompt, as generation encodes it, then the sample's continuation.
        let continuation = sample.greedy.strip_prefix(sample.prompt.as_str()).expect("the sample starts with its prompt");
        let mut ids = vec![model.config.bos_token_id];
        ids.extend(tokenizer.encode(&sample.prompt).unwrap());
        let prompt_len = ids.len();
        ids.extend(tokenizer.encode(continuation).unwrap());
        assert_eq!(ids.len() - prompt_len, 128, "{folder}: the sample is 128 generated tokens");
        assert_eq!(tokenizer.decode(&ids).unwrap(), sample.greedy, "{folder}");

        let logits = common::reference_logits(&model, &ids);
        for t in prompt_len - 1..ids.len() - 1 {
            let (best, next) = (argmax(&logits[t]), ids[t + 1]);
            assert_eq!(best, next, "{folder}: generated token {}: the reference picks {best}", t + 1 - prompt_len);
        }
    }
    assert!(bytes <= 40 << 20, "shipped models take {bytes} bytes");
    let base = results.variants.iter().find(|v| v.name == "base").unwrap();
    assert!(base.nats_per_byte < 0.9, "base val loss {} nats/byte", base.nats_per_byte);
}
