//! Importing llama2.c checkpoints: the stories260K fixture (ignored when ../shared is
//! absent), small files built here, and malformed input.

mod common;

use std::time::{Duration, Instant};

use gqa::llama2c::load_llama2c;
use gqa::tensor::Matrix;
use gqa::{GqaError, Model};

fn fixture() -> Vec<u8> {
    std::fs::read(common::shared("fixtures/llama2c/stories260K.bin")).unwrap()
}

fn header(fields: [i32; 7]) -> Vec<u8> {
    fields.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn llama2c_error(bytes: &[u8]) -> String {
    match load_llama2c(bytes) {
        Err(GqaError::Llama2c(msg)) => msg,
        other => panic!("expected a Llama2c error, got {other:?}"),
    }
}

/// The new row order within a head: [0, 2, 4, ..., 1, 3, 5, ...].
fn perm(hs: usize) -> Vec<usize> {
    (0..hs).step_by(2).chain((1..hs).step_by(2)).collect()
}

fn matvec(m: &Matrix, x: &[f32]) -> Vec<f32> {
    let mut row = vec![0.0; m.cols];
    (0..m.rows)
        .map(|r| {
            m.row_into(r, &mut row);
            row.iter().zip(x).map(|(a, b)| a * b).sum()
        })
        .collect()
}

/// The angle of rotation pair `i` at position `pos`: pos * 10000^(-2i/hs).
fn rope_angle(pos: usize, i: usize, hs: usize) -> f32 {
    pos as f32 * 10000f32.powf(-((2 * i) as f32) / hs as f32)
}

/// llama2.c's RoPE: rotate pairs (x[2i], x[2i+1]) by rope_angle.
fn rope_interleaved(x: &mut [f32], pos: usize) {
    let hs = x.len();
    for i in 0..hs / 2 {
        let (s, c) = rope_angle(pos, i, hs).sin_cos();
        let (a, b) = (x[2 * i], x[2 * i + 1]);
        x[2 * i] = a * c - b * s;
        x[2 * i + 1] = a * s + b * c;
    }
}

/// Hugging Face's rotate_half RoPE: rotate pairs (x[i], x[i + hs/2]) by the same angles.
fn rope_half(x: &mut [f32], pos: usize) {
    let hs = x.len();
    for i in 0..hs / 2 {
        let (s, c) = rope_angle(pos, i, hs).sin_cos();
        let (a, b) = (x[i], x[i + hs / 2]);
        x[i] = a * c - b * s;
        x[i + hs / 2] = a * s + b * c;
    }
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn fixture_header_and_sizes() {
    let bytes = fixture();
    let m = load_llama2c(&bytes).unwrap();
    let c = &m.config;
    assert_eq!(c.hidden_size, 64);
    assert_eq!(c.num_hidden_layers, 5);
    assert_eq!(c.n_heads(), 8);
    assert_eq!(c.n_kv_heads(), 4);
    assert_eq!(c.vocab_size, 512);
    assert_eq!(c.max_position_embeddings, 512);
    let hidden = i32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
    assert_eq!(c.intermediate_size, hidden);
    // vocab_size is positive in the header: the classifier is shared.
    assert!(c.tie_word_embeddings);
    assert!(m.lm_head.is_none());
    assert_eq!(m.blocks.len(), 5);

    // Every float of the file is accounted for: weights plus the skipped freq_cis.
    let mut floats = m.embed.rows * m.embed.cols + m.norm.len();
    for b in &m.blocks {
        floats += b.input_norm.len() + b.post_attention_norm.len();
        for w in [&b.attn.wq, &b.attn.wk, &b.attn.wv, &b.attn.wo, &b.mlp.gate, &b.mlp.up, &b.mlp.down] {
            floats += w.rows * w.cols;
        }
    }
    let freq_cis = c.max_position_embeddings * c.head_dim(); // real + imag, seq * hs/2 each
    assert_eq!(28 + 4 * (floats + freq_cis), bytes.len());
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn fixture_rows_of_wq_and_wk_are_permuted_per_head() {
    let bytes = fixture();
    let m = load_llama2c(&bytes).unwrap();
    let (d, l, v) = (64, 5, 512);
    let (h, g, hs) = (8, 4, 8);
    // Offsets (in floats, after the 28-byte header) computed from run.c's layout.
    let raw = f32s(&bytes[28..]);
    let wq_at = v * d + l * d; // after token_embedding_table and rms_att_weight
    let wk_at = wq_at + l * h * hs * d;
    let wv_at = wk_at + l * g * hs * d;
    let p = perm(hs);
    assert_eq!(p, [0, 2, 4, 6, 1, 3, 5, 7]);
    for (layer, block) in m.blocks.iter().enumerate() {
        for (w, at, heads) in [(&block.attn.wq, wq_at, h), (&block.attn.wk, wk_at, g)] {
            let raw_w = &raw[at + layer * heads * hs * d..][..heads * hs * d];
            let loaded = w.to_f32_vec();
            for head in 0..heads {
                for (j, &from) in p.iter().enumerate() {
                    let new = head * hs + j;
                    let old = head * hs + from;
                    assert_eq!(
                        loaded[new * d..][..d],
                        raw_w[old * d..][..d],
                        "layer {layer} head {head} row {j}"
                    );
                }
            }
        }
        // wv is not rotated, so it is not permuted.
        assert_eq!(block.attn.wv.to_f32_vec(), raw[wv_at + layer * g * hs * d..][..g * hs * d]);
    }
    // The embedding is the first table, unchanged.
    assert_eq!(m.embed.to_f32_vec(), raw[..v * d]);
}

/// The permutation preserves attention scores: llama2.c's interleaved RoPE on the raw
/// weights and rotate_half RoPE on the imported weights give the same q.k.
#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn fixture_attention_scores_match_llama2c_rope() {
    let bytes = fixture();
    let m = load_llama2c(&bytes).unwrap();
    let (d, l, v, h, g, hs) = (64, 5, 512, 8, 4, 8);
    let raw = f32s(&bytes[28..]);
    let wq_at = v * d + l * d;
    let wk_at = wq_at + l * h * hs * d;
    let raw_wq = Matrix::from_f32(h * hs, d, raw[wq_at..][..h * hs * d].to_vec());
    let raw_wk = Matrix::from_f32(g * hs, d, raw[wk_at..][..g * hs * d].to_vec());
    let x = m.embed.to_f32_vec()[7 * d..8 * d].to_vec();
    let y = m.embed.to_f32_vec()[42 * d..43 * d].to_vec();
    let (q_raw, k_raw) = (matvec(&raw_wq, &x), matvec(&raw_wk, &y));
    let (q_new, k_new) = (matvec(&m.blocks[0].attn.wq, &x), matvec(&m.blocks[0].attn.wk, &y));
    for (qpos, kpos) in [(0, 0), (5, 3), (300, 17)] {
        for head in 0..h {
            let kv = head / (h / g);
            let mut qa = q_raw[head * hs..][..hs].to_vec();
            let mut ka = k_raw[kv * hs..][..hs].to_vec();
            rope_interleaved(&mut qa, qpos);
            rope_interleaved(&mut ka, kpos);
            let mut qb = q_new[head * hs..][..hs].to_vec();
            let mut kb = k_new[kv * hs..][..hs].to_vec();
            rope_half(&mut qb, qpos);
            rope_half(&mut kb, kpos);
            let a: f32 = qa.iter().zip(&ka).map(|(p, q)| p * q).sum();
            let b: f32 = qb.iter().zip(&kb).map(|(p, q)| p * q).sum();
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "head {head} pos {qpos}/{kpos}: {a} vs {b}");
        }
    }
}

/// A complete synthetic checkpoint whose every float is its own index, so each table
/// can be located; `vocab` negative makes it untied.
fn synthetic(dim: i32, hidden: i32, layers: i32, heads: i32, kv_heads: i32, vocab: i32, seq: i32) -> Vec<u8> {
    let (d, f, l, v, s) =
        (dim as usize, hidden as usize, layers as usize, vocab.unsigned_abs() as usize, seq as usize);
    let hs = d / heads as usize;
    let (q, kv) = (heads as usize * hs, kv_heads as usize * hs);
    let floats = v * d
        + l * (2 * d + 2 * q * d + 2 * kv * d + 3 * f * d)
        + d
        + s * hs
        + if vocab < 0 { v * d } else { 0 };
    let mut bytes = header([dim, hidden, layers, heads, kv_heads, vocab, seq]);
    bytes.extend((0..floats).flat_map(|i| (i as f32).to_le_bytes()));
    bytes
}

#[test]
fn synthetic_untied_checkpoint_reads_wcls_from_the_end() {
    let bytes = synthetic(8, 12, 2, 2, 1, -10, 6);
    let m = load_llama2c(&bytes).unwrap();
    assert!(!m.config.tie_word_embeddings);
    assert_eq!(m.config.n_kv_heads(), 1);
    let floats = (bytes.len() - 28) / 4;
    let head = m.lm_head.as_ref().expect("untied classifier");
    assert_eq!((head.rows, head.cols), (10, 8));
    let expected: Vec<f32> = (floats - 80..floats).map(|i| i as f32).collect();
    assert_eq!(head.to_f32_vec(), expected);
    // rms_final sits right before freq_cis (6 positions x hs 4) and wcls.
    let final_at = floats - 80 - 6 * 4 - 8;
    assert_eq!(*m.norm, (final_at..final_at + 8).map(|i| i as f32).collect::<Vec<_>>());
    // w1 is gate, w3 is up, w2 is down: after wo (2 x 8x8) and rms_ffn (2 x 8).
    let w1_at = 80 + 16 + 2 * 64 + 2 * 2 * 32 + 2 * 64 + 16;
    assert_eq!(m.blocks[0].mlp.gate.to_f32_vec()[0], w1_at as f32);
    assert_eq!(m.blocks[0].mlp.down.to_f32_vec()[0], (w1_at + 2 * 96) as f32);
    assert_eq!(m.blocks[0].mlp.up.to_f32_vec()[0], (w1_at + 4 * 96) as f32);
    assert_eq!((m.blocks[1].mlp.down.rows, m.blocks[1].mlp.down.cols), (8, 12));
}

#[test]
fn synthetic_tied_checkpoint_loads() {
    let m: Model = load_llama2c(&synthetic(8, 12, 1, 2, 2, 10, 6)).unwrap();
    assert!(m.config.tie_word_embeddings);
    assert!(m.lm_head.is_none());
}

#[test]
fn empty_file() {
    assert!(llama2c_error(&[]).contains("empty"));
}

#[test]
fn truncated_header() {
    let msg = llama2c_error(&header([64, 172, 5, 8, 4, 512, 512])[..10]);
    assert!(msg.contains("10 bytes") && msg.contains("header"), "{msg}");
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn truncated_weights() {
    let bytes = fixture();
    let msg = llama2c_error(&bytes[..bytes.len() - 5]);
    assert!(msg.contains("truncated"), "{msg}");
    assert!(msg.contains(&bytes.len().to_string()) && msg.contains(&(bytes.len() - 5).to_string()), "{msg}");
}

#[test]
fn truncated_synthetic_weights() {
    let bytes = synthetic(8, 12, 2, 2, 1, 10, 6);
    assert!(llama2c_error(&bytes[..bytes.len() - 4]).contains("truncated"));
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn extra_bytes() {
    let mut bytes = fixture();
    bytes.extend([0u8; 12]);
    let msg = llama2c_error(&bytes);
    assert!(msg.contains("12 extra bytes"), "{msg}");
}

#[test]
fn zero_dim() {
    let msg = llama2c_error(&header([0, 172, 5, 8, 4, 512, 512]));
    assert!(msg.contains("dim is 0"), "{msg}");
}

#[test]
fn negative_n_layers() {
    let msg = llama2c_error(&header([64, 172, -5, 8, 4, 512, 512]));
    assert!(msg.contains("n_layers is -5"), "{msg}");
}

#[test]
fn zero_vocab() {
    assert!(llama2c_error(&header([64, 172, 5, 8, 4, 0, 512])).contains("vocab_size is 0"));
}

#[test]
fn n_kv_heads_not_dividing_n_heads() {
    match load_llama2c(&header([64, 172, 5, 8, 3, 512, 512])) {
        Err(e @ GqaError::HeadsNotDivisible { n_heads: 8, n_kv_heads: 3 }) => {
            assert!(e.to_string().contains("not divisible"))
        }
        other => panic!("expected HeadsNotDivisible, got {other:?}"),
    }
}

#[test]
fn n_heads_not_dividing_dim() {
    let msg = llama2c_error(&header([64, 172, 5, 7, 7, 512, 512]));
    assert!(msg.contains("not divisible by n_heads 7"), "{msg}");
}

#[test]
fn absurd_sizes_fail_fast_without_allocating() {
    let start = Instant::now();
    for fields in [
        [1 << 30, 172, 5, 8, 4, 512, 512],
        [64, i32::MAX, i32::MAX, 8, 4, i32::MIN + 1, 512],
        [1 << 30, 1 << 30, 1 << 30, 1 << 3, 1, 1 << 30, 1 << 10],
    ] {
        let msg = llama2c_error(&header(fields));
        assert!(msg.contains("parameters") && msg.contains("supported"), "{msg}");
    }
    let msg = llama2c_error(&header([64, 172, 5, 8, 4, 512, i32::MAX]));
    assert!(msg.contains("max_position_embeddings"), "{msg}");
    assert!(start.elapsed() < Duration::from_secs(1));
}
