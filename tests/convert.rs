//! Algorithm 4 (mean / first / random pooling of key/value heads).

mod common;

use common::{max_abs_diff, small_config, test_model};
use gqa::convert::{convert, Method};
use gqa::cpu::CpuEngine;
use gqa::model::Model;
use gqa::backend::Logits;
use gqa::tensor::{DType, Matrix};

fn logits(model: Model, toks: &[u32]) -> Vec<f32> {
    CpuEngine::new(model, 32).unwrap().forward(toks, Logits::All).unwrap()
}

const TOKS: [u32; 10] = [1, 5, 9, 33, 2, 70, 71, 8, 8, 40];

#[test]
fn same_g_is_the_identity() {
    for method in [Method::Mean, Method::First, Method::Random] {
        let model = test_model(&small_config(4), 2);
        let same = convert(&model, 4, method, 1).unwrap();
        assert_eq!(same, model);
        assert_eq!(logits(same, &TOKS), logits(model, &TOKS)); // bit-identical
    }
}

/// Set every key/value head within a group of `groups` to the same values.
fn with_identical_heads_per_group(model: &Model, groups: usize) -> Model {
    let mut m = model.clone();
    let n_kv = m.config.n_kv_heads();
    let r = n_kv / groups;
    for b in &mut m.blocks {
        for w in [&mut b.attn.wk, &mut b.attn.wv] {
            let head_len = w.rows / n_kv * w.cols;
            let mut v = w.to_f32_vec();
            for head in 0..n_kv {
                let src = (head / r) * r; // the group's first head
                let copy = v[src * head_len..(src + 1) * head_len].to_vec();
                v[head * head_len..(head + 1) * head_len].copy_from_slice(&copy);
            }
            *w = Matrix::from_f32(w.rows, w.cols, v);
        }
    }
    m
}

/// When the heads of each group are already equal, mean-pooling loses nothing:
/// the G model gives the same logits as the MHA model.
#[test]
fn mean_of_identical_heads_reproduces_logits() {
    for g in [4, 2, 1] {
        let mha = with_identical_heads_per_group(&test_model(&small_config(8), 7), g);
        let gqa_model = convert(&mha, g, Method::Mean, 0).unwrap();
        let d = max_abs_diff(&logits(gqa_model, &TOKS), &logits(mha.clone(), &TOKS));
        assert!(d < 1e-4, "G={g}: {d}");
        // ... while on a model with distinct heads, pooling does change the logits.
        let plain = test_model(&small_config(8), 7);
        let d = max_abs_diff(&logits(convert(&plain, g, Method::Mean, 0).unwrap(), &TOKS), &logits(plain, &TOKS));
        assert!(d > 1e-2, "G={g}: pooling distinct heads changed nothing ({d})");
    }
}

#[test]
fn config_and_shapes_follow_g() {
    let model = test_model(&small_config(8), 3);
    let hd = model.config.head_dim();
    for g in [8, 4, 2, 1] {
        for method in [Method::Mean, Method::First, Method::Random] {
            let m = convert(&model, g, method, 5).unwrap();
            assert_eq!(m.config.n_kv_heads(), g);
            assert_eq!(m.config.n_heads(), 8);
            for b in &m.blocks {
                assert_eq!((b.attn.wk.rows, b.attn.wk.cols), (g * hd, 64));
                assert_eq!((b.attn.wv.rows, b.attn.wv.cols), (g * hd, 64));
            }
            // Queries, outputs and MLPs are untouched.
            for (b, o) in m.blocks.iter().zip(&model.blocks) {
                assert_eq!(b.attn.wq, o.attn.wq);
                assert_eq!(b.attn.wo, o.attn.wo);
                assert_eq!(b.mlp, o.mlp);
            }
        }
    }
}

#[test]
fn mean_and_first_pick_the_right_rows() {
    let model = test_model(&small_config(8), 4);
    let hd = model.config.head_dim();
    let head_len = hd * 64;
    let old = model.blocks[1].attn.wk.to_f32_vec();
    let mean = convert(&model, 2, Method::Mean, 0).unwrap().blocks[1].attn.wk.to_f32_vec();
    let first = convert(&model, 2, Method::First, 0).unwrap().blocks[1].attn.wk.to_f32_vec();
    for j in 0..2 {
        for i in 0..head_len {
            let group: Vec<f32> = (0..4).map(|h| old[(j * 4 + h) * head_len + i]).collect();
            let expected = group.iter().sum::<f32>() / 4.0;
            assert!((mean[j * head_len + i] - expected).abs() < 1e-6);
            assert_eq!(first[j * head_len + i], group[0]);
        }
    }
}

#[test]
fn random_is_seeded_and_fresh() {
    let model = test_model(&small_config(8), 4);
    let a = convert(&model, 2, Method::Random, 11).unwrap();
    let b = convert(&model, 2, Method::Random, 11).unwrap();
    let c = convert(&model, 2, Method::Random, 12).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.blocks[0].attn.wk, c.blocks[0].attn.wk);
    let v = a.blocks[0].attn.wk.to_f32_vec();
    let std = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
    assert!((std - 0.02).abs() < 0.002, "random init std {std}");
}

#[test]
fn g_that_does_not_divide_is_a_clear_error() {
    let model = test_model(&small_config(8), 1);
    for g in [0, 3, 5, 16] {
        let err = convert(&model, g, Method::Mean, 0).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, gqa::GqaError::BadGroups { .. }), "{msg}");
        assert!(msg.contains("must divide") && msg.contains("[1, 2, 4, 8]"), "{msg}");
    }
    // From GQA-4: down to a divisor of 4 (pooled), or up to 8 (repeated).
    let g4 = convert(&model, 4, Method::Mean, 0).unwrap();
    assert_eq!(convert(&g4, 2, Method::Mean, 0).unwrap().config.n_kv_heads(), 2);
    assert_eq!(convert(&g4, 8, Method::Mean, 0).unwrap().config.n_kv_heads(), 8);
    let msg = convert(&g4, 3, Method::Mean, 0).unwrap_err().to_string();
    assert!(msg.contains("[1, 2, 4, 8]"), "{msg}");
    assert!("median".parse::<Method>().unwrap_err().to_string().contains("mean, first or random"));
}

/// Above a model's own key/value heads, each is repeated for the query heads that
/// shared it: the same logits (the cost of MHA, nothing else changed), in f32, f16 and
/// quantized storage alike (rows are copied as stored).
#[test]
fn more_heads_repeat_each_one_and_keep_the_logits() {
    let toks = [1, 5, 9, 2, 7, 3, 11, 4];
    let base = test_model(&small_config(2), 5);
    let quantized = {
        let mut m = base.clone();
        for b in &mut m.blocks {
            let to_q8 = |w: &Matrix| {
                let bytes = w.to_f32_vec().chunks(32).flat_map(q8_0_block).collect();
                Matrix::quantized(w.rows, w.cols, gqa::quant::Format::Q8_0, bytes).unwrap()
            };
            (b.attn.wk, b.attn.wv) = (to_q8(&b.attn.wk), to_q8(&b.attn.wv));
        }
        m
    };
    for model in [base.clone(), base.to_dtype(DType::F16), quantized] {
        let native = logits(model.clone(), &toks);
        for g in [4, 8] {
            let more = convert(&model, g, Method::Mean, 0).unwrap();
            assert_eq!(more.config.n_kv_heads(), g);
            assert_eq!(more.blocks[0].attn.wk.format(), model.blocks[0].attn.wk.format());
            assert_eq!(more.blocks[0].attn.wk.bytes(), g / 2 * model.blocks[0].attn.wk.bytes());
            // Head j of the new K projection is old head j / (g / 2).
            let (old, new, head) = (model.blocks[1].attn.wk.to_f32_vec(), more.blocks[1].attn.wk.to_f32_vec(), 8 * 64);
            for j in 0..g {
                assert_eq!(new[j * head..][..head], old[(j / (g / 2)) * head..][..head], "G = {g}, head {j}");
            }
            let diff = max_abs_diff(&native, &logits(more, &toks));
            assert!(diff <= 1e-5, "G = {g}: {diff}");
        }
    }
}

/// One Q8_0 block (as ggml lays it out): the f16 scale max|x| / 127, then 32 signed bytes.
fn q8_0_block(x: &[f32]) -> Vec<u8> {
    let d = x.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
    let d16 = half::f16::from_f32(d);
    let inv = if d16.to_f32() == 0.0 { 0.0 } else { 1.0 / d16.to_f32() };
    d16.to_le_bytes().into_iter().chain(x.iter().map(|v| (v * inv).round() as i8 as u8)).collect()
}

/// Conversion builds new K and V projections and shares every other tensor with
/// the model it came from (no copy: the same memory); converting to the same G
/// shares everything.
#[test]
fn convert_shares_every_tensor_but_wk_and_wv() {
    let model = test_model(&small_config(8), 2);
    let same = |a: &gqa::tensor::Shared<Vec<f32>>, b: &gqa::tensor::Shared<Vec<f32>>| gqa::tensor::Shared::ptr_eq(a, b);
    for g in [8, 4, 1] {
        let m = convert(&model, g, Method::Mean, 0).unwrap();
        assert!(Matrix::shares(&m.embed, &model.embed) && same(&m.norm, &model.norm));
        assert!(Matrix::shares(m.lm_head.as_ref().unwrap(), model.lm_head.as_ref().unwrap()));
        for (b, o) in m.blocks.iter().zip(&model.blocks) {
            for (x, y) in [(&b.attn.wq, &o.attn.wq), (&b.attn.wo, &o.attn.wo), (&b.mlp.gate, &o.mlp.gate), (&b.mlp.up, &o.mlp.up), (&b.mlp.down, &o.mlp.down)] {
                assert!(Matrix::shares(x, y), "G={g}: a kept matrix was copied");
            }
            assert!(same(&b.input_norm, &o.input_norm) && same(&b.post_attention_norm, &o.post_attention_norm));
            let new_kv = !Matrix::shares(&b.attn.wk, &o.attn.wk) && !Matrix::shares(&b.attn.wv, &o.attn.wv);
            assert_eq!(new_kv, g != 8, "G={g}: wk/wv are new exactly when G changes");
        }
    }
}

#[test]
fn f16_models_stay_f16() {
    let model = test_model(&small_config(8), 1).to_dtype(DType::F16);
    let m = convert(&model, 2, Method::Mean, 0).unwrap();
    assert_eq!(m.blocks[0].attn.wk.dtype(), DType::F16);
}

/// The browser's CPU engine widens f16 weights to f32; after a change of G it widens
/// again only what the conversion made new (wk and wv) and shares the rest of its
/// previous widened copy. The result equals widening the converted model whole.
#[test]
fn widening_after_a_change_of_g_reuses_all_but_wk_and_wv() {
    let base = test_model(&small_config(4), 5).to_dtype(DType::F16);
    let widened_base = base.to_dtype(DType::F32);
    for groups in [4, 2, 1] {
        let converted = convert(&base, groups, Method::Mean, 1).unwrap();
        let widened = converted.to_dtype_reusing(DType::F32, &base, &widened_base);
        assert_eq!(widened, converted.to_dtype(DType::F32), "G = {groups}: not the converted model widened");
        let shared = |a: &Matrix, b: &Matrix| Matrix::shares(a, b);
        assert!(shared(&widened.embed, &widened_base.embed), "G = {groups}: the embedding was widened again");
        assert!(shared(widened.lm_head.as_ref().unwrap(), widened_base.lm_head.as_ref().unwrap()), "G = {groups}: the classifier was widened again");
        for (b, w) in widened.blocks.iter().zip(&widened_base.blocks) {
            for (m, old) in [(&b.attn.wq, &w.attn.wq), (&b.attn.wo, &w.attn.wo), (&b.mlp.gate, &w.mlp.gate), (&b.mlp.up, &w.mlp.up), (&b.mlp.down, &w.mlp.down)] {
                assert!(shared(m, old), "G = {groups}: a matrix the conversion keeps was widened again");
            }
            // G = H is the identity (convert shares wk and wv too); any other G makes them new.
            assert_eq!(shared(&b.attn.wk, &w.attn.wk), groups == 4, "G = {groups}: wk");
            assert_eq!(shared(&b.attn.wv, &w.attn.wv), groups == 4, "G = {groups}: wv");
        }
    }
}
