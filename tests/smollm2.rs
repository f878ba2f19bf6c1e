//! SmolLM2-135M-Instruct from its GGUF file (Q4_1 blocks, a Q8_0 embedding that is also
//! the output head) against a naive f64 forward pass written here from the formats'
//! descriptions: its own block dequantizer, llama.cpp's interleaved RoPE applied to the
//! file's q/k rows as they are (the engine reorders them at load), no KV cache.
//!
//! At G = 3 (the model as trained), G = 9 (each key/value head repeated: MHA with
//! nothing else changed) and G = 1 (the heads mean-pooled, Algorithm 4), the engine's
//! logits at 64 positions of a ChatML prompt are within 1e-4 of each position's largest
//! |logit|; G = 9 equals G = 3 within 1e-5 of it.

mod common;

use gqa::backend::{EngineOptions, Logits};
use gqa::convert::{convert, Method};
use gqa::cpu::CpuEngine;
use gqa::gguf::{Gguf, TensorInfo};
use gqa::matmul::QuantActivations;
use gqa::tokenizer::chat::{chatml_prompt, ChatMessage};

const SMOLLM2: &str = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
const POSITIONS: usize = 64;

/// An f16's value, from its bits (IEEE 754 half: 1 sign, 5 exponent, 10 mantissa bits).
fn f16(lo: u8, hi: u8) -> f64 {
    let bits = u16::from_le_bytes([lo, hi]);
    let (sign, exp, man) = (if bits >> 15 == 1 { -1.0 } else { 1.0 }, (bits >> 10) & 31, (bits & 1023) as f64);
    sign * match exp {
        0 => man * 2f64.powi(-24),
        31 => panic!("an f16 scale is inf or NaN"),
        e => (1.0 + man / 1024.0) * 2f64.powi(e as i32 - 15),
    }
}

/// Every weight of `t`, row-major as stored. Q4_1: blocks of 32 weights in 20 bytes,
/// scale d and minimum m (f16), 16 bytes of 4-bit codes q; weight j is q_j d + m, the
/// low nibbles holding weights 0-15 and the high ones 16-31. Q8_0: 34 bytes, d (f16)
/// and 32 signed bytes q, weight q_j d.
fn weights(t: &TensorInfo) -> Vec<f64> {
    let b = t.bytes;
    match t.ty.name().unwrap() {
        "F32" => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        "Q4_1" => b
            .chunks_exact(20)
            .flat_map(|k| {
                let (d, m) = (f16(k[0], k[1]), f16(k[2], k[3]));
                let low = k[4..].iter().map(move |q| (q & 15) as f64 * d + m);
                low.chain(k[4..].iter().map(move |q| (q >> 4) as f64 * d + m)).collect::<Vec<_>>()
            })
            .collect(),
        "Q8_0" => b.chunks_exact(34).flat_map(|k| k[2..].iter().map(move |&q| q as i8 as f64 * f16(k[0], k[1]))).collect(),
        other => panic!("{}: {other} is not in this file", t.name),
    }
}

struct Layer {
    attn_norm: Vec<f64>,
    wq: Vec<f64>,
    wk: Vec<f64>,
    wv: Vec<f64>,
    wo: Vec<f64>,
    ffn_norm: Vec<f64>,
    gate: Vec<f64>,
    up: Vec<f64>,
    down: Vec<f64>,
}

/// The model as the file states it, in f64.
struct Reference {
    dim: usize,
    heads: usize,
    kv_heads: usize,
    hd: usize,
    eps: f64,
    theta: f64,
    embed: Vec<f64>, // (vocab, dim), also the output head (tied)
    layers: Vec<Layer>,
    norm: Vec<f64>,
}

impl Reference {
    fn read(g: &Gguf) -> Reference {
        let t = |name: &str| weights(g.tensor(name).unwrap());
        let uint = |key: &str| g.uint(key).unwrap() as usize;
        let (dim, heads) = (uint("llama.embedding_length"), uint("llama.attention.head_count"));
        let layers = (0..uint("llama.block_count"))
            .map(|i| {
                let t = |part: &str| t(&format!("blk.{i}.{part}.weight"));
                Layer {
                    attn_norm: t("attn_norm"),
                    wq: t("attn_q"),
                    wk: t("attn_k"),
                    wv: t("attn_v"),
                    wo: t("attn_output"),
                    ffn_norm: t("ffn_norm"),
                    gate: t("ffn_gate"),
                    up: t("ffn_up"),
                    down: t("ffn_down"),
                }
            })
            .collect();
        assert!(g.tensor("output.weight").is_err(), "SmolLM2's output head is its embedding");
        Reference {
            dim,
            heads,
            kv_heads: uint("llama.attention.head_count_kv"),
            hd: dim / heads,
            eps: g.float("llama.attention.layer_norm_rms_epsilon").unwrap() as f64,
            theta: g.float("llama.rope.freq_base").unwrap() as f64,
            embed: t("token_embd.weight"),
            layers,
            norm: t("output_norm.weight"),
        }
    }

    /// The model with its key/value heads mean-pooled into one (each head's rows are in
    /// the same order, so pooling the file's rows pools the heads).
    fn pooled_to_one(mut self) -> Reference {
        let head = self.hd * self.dim;
        let mean = |w: &[f64]| (0..head).map(|i| w.chunks_exact(head).map(|h| h[i]).sum::<f64>() / (w.len() / head) as f64).collect();
        for l in &mut self.layers {
            (l.wk, l.wv) = (mean(&l.wk), mean(&l.wv));
        }
        self.kv_heads = 1;
        self
    }

    /// Logits (T x vocab) at every position of `tokens`.
    fn logits(&self, tokens: &[u32]) -> Vec<Vec<f64>> {
        let (dim, hd, t_len) = (self.dim, self.hd, tokens.len());
        let mut x: Vec<Vec<f64>> = tokens.iter().map(|&id| self.embed[id as usize * dim..][..dim].to_vec()).collect();
        for l in &self.layers {
            let xn: Vec<Vec<f64>> = x.iter().map(|v| rms_norm(v, &l.attn_norm, self.eps)).collect();
            let mut q = matmul(&l.wq, &xn);
            let mut k = matmul(&l.wk, &xn);
            let v = matmul(&l.wv, &xn);
            for (pos, (q, k)) in q.iter_mut().zip(&mut k).enumerate() {
                q.chunks_exact_mut(hd).chain(k.chunks_exact_mut(hd)).for_each(|head| self.rope(head, pos));
            }
            let group = self.heads / self.kv_heads;
            let att: Vec<Vec<f64>> = (0..t_len)
                .map(|t| {
                    let mut out = vec![0.0; self.heads * hd];
                    for h in 0..self.heads {
                        let (qh, kv) = (&q[t][h * hd..][..hd], (h / group) * hd);
                        let scores: Vec<f64> = (0..=t).map(|s| dot(qh, &k[s][kv..kv + hd]) / (hd as f64).sqrt()).collect();
                        let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                        let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                        let total: f64 = e.iter().sum();
                        for (s, w) in e.iter().enumerate() {
                            for i in 0..hd {
                                out[h * hd + i] += w / total * v[s][kv + i];
                            }
                        }
                    }
                    out
                })
                .collect();
            add(&mut x, &matmul(&l.wo, &att));
            let xn: Vec<Vec<f64>> = x.iter().map(|v| rms_norm(v, &l.ffn_norm, self.eps)).collect();
            let (gate, up) = (matmul(&l.gate, &xn), matmul(&l.up, &xn));
            let hidden: Vec<Vec<f64>> = gate.iter().zip(&up).map(|(g, u)| g.iter().zip(u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect()).collect();
            add(&mut x, &matmul(&l.down, &hidden));
        }
        let xn: Vec<Vec<f64>> = x.iter().map(|v| rms_norm(v, &self.norm, self.eps)).collect();
        matmul(&self.embed, &xn)
    }

    /// llama.cpp's RoPE for the llama architecture: pairs (2i, 2i + 1) of a head rotate
    /// by pos * theta^(-2i / hd).
    fn rope(&self, head: &mut [f64], pos: usize) {
        for i in 0..self.hd / 2 {
            let angle = pos as f64 * self.theta.powf(-2.0 * i as f64 / self.hd as f64);
            let (c, s) = (angle.cos(), angle.sin());
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            (head[2 * i], head[2 * i + 1]) = (a * c - b * s, a * s + b * c);
        }
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// Each x (cols) times `w` (rows x cols, row-major): T x rows.
fn matmul(w: &[f64], xs: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let cols = xs[0].len();
    let mut out = vec![Vec::with_capacity(w.len() / cols); xs.len()];
    for row in w.chunks_exact(cols) {
        for (o, x) in out.iter_mut().zip(xs) {
            o.push(dot(row, x));
        }
    }
    out
}

fn rms_norm(x: &[f64], w: &[f64], eps: f64) -> Vec<f64> {
    let inv = 1.0 / (dot(x, x) / x.len() as f64 + eps).sqrt();
    x.iter().zip(w).map(|(x, w)| x * inv * w).collect()
}

fn add(x: &mut [Vec<f64>], y: &[Vec<f64>]) {
    x.iter_mut().zip(y).for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(x, y)| *x += y));
}

/// The first 64 ids of a ChatML conversation.
fn prompt(tokenizer: &gqa::tokenizer::Tokenizer) -> Vec<u32> {
    let chat = [
        ChatMessage::new("system", "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
        ChatMessage::new(
            "user",
            "Explain grouped-query attention to a student: why does decoding a token read every key and value in the cache, \
             and how does sharing one key/value head among several query heads make that cheaper?",
        ),
    ];
    let ids = tokenizer.encode(&chatml_prompt(&chat, true)).unwrap();
    assert!(ids.len() >= POSITIONS, "the prompt has {} tokens", ids.len());
    ids[..POSITIONS].to_vec()
}

/// The engine's logits at every position (T x vocab), on the exact path (f32
/// activations) or llama.cpp's (int8 activations per block, the default).
fn logits_with(model: gqa::model::Model, tokens: &[u32], quant_activations: QuantActivations) -> Vec<Vec<f32>> {
    let vocab = model.config.vocab_size;
    let options = EngineOptions { quant_activations, ..Default::default() };
    let mut engine = CpuEngine::with_options(model, tokens.len(), options).unwrap();
    engine.forward(tokens, Logits::All).unwrap().chunks_exact(vocab).map(|l| l.to_vec()).collect()
}

/// The engine's logits on the exact path.
fn engine_logits(model: gqa::model::Model, tokens: &[u32]) -> Vec<Vec<f32>> {
    logits_with(model, tokens, QuantActivations::Exact)
}

/// The largest difference at any position, relative to that position's largest |logit|.
fn relative_error(got: &[Vec<f32>], want: &[Vec<f64>]) -> f64 {
    got.iter()
        .zip(want)
        .map(|(g, w)| {
            let scale = w.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            g.iter().zip(w).map(|(g, w)| (*g as f64 - w).abs()).fold(0.0, f64::max) / scale
        })
        .fold(0.0, f64::max)
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn smollm2_logits_equal_an_f64_reference_at_g_3_9_and_1() {
    let bytes = std::fs::read(common::shared(SMOLLM2)).unwrap();
    let (model, tokenizer) = gqa::loader::load_gguf(&bytes).unwrap();
    assert_eq!((model.config.n_heads(), model.config.n_kv_heads()), (9, 3));
    let tokens = prompt(&tokenizer);
    let reference = Reference::read(&Gguf::read(&bytes).unwrap());

    let want = reference.logits(&tokens);
    let native = engine_logits(model.clone(), &tokens);
    let error = relative_error(&native, &want);
    eprintln!("G = 3: largest error {error:.2e} of the largest |logit|");
    assert!(error < 1e-4, "G = 3: {error:.2e}");

    let expanded = convert(&model, 9, Method::Mean, 0).unwrap();
    assert_eq!(expanded.blocks[0].attn.wk.rows, 9 * 64);
    let mha = engine_logits(expanded, &tokens);
    let error = relative_error(&mha, &want);
    let native_f64: Vec<Vec<f64>> = native.iter().map(|l| l.iter().map(|&v| v as f64).collect()).collect();
    let to_native = relative_error(&mha, &native_f64);
    eprintln!("G = 9 (repeated): {error:.2e} of the largest |logit|; from G = 3: {to_native:.2e}");
    assert!(error < 1e-4, "G = 9: {error:.2e}");
    assert!(to_native <= 1e-5, "G = 9 differs from G = 3 by {to_native:.2e} of the largest |logit|");

    let want = reference.pooled_to_one().logits(&tokens);
    let mqa = engine_logits(convert(&model, 1, Method::Mean, 0).unwrap(), &tokens);
    let error = relative_error(&mqa, &want);
    eprintln!("G = 1 (mean): {error:.2e} of the largest |logit|");
    assert!(error < 1e-4, "G = 1: {error:.2e}");
    // Pooling changes the model: G = 1's logits are not G = 3's.
    let moved = native.iter().flatten().zip(mqa.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(moved > 0.1, "G = 1 should differ from G = 3, by {moved}");
}

/// As llama.cpp answers it (greedy, the chat template): Paris, with the same text at
/// G = 3 and at G = 9, ending at `<|im_end|>`. A second turn that says only "that city"
/// is answered from the first (the history is in the prompt).
#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn smollm2_answers_paris_at_g_3_and_9_and_keeps_the_history() {
    let (model, tokenizer) = gqa::loader::load_gguf(&std::fs::read(common::shared(SMOLLM2)).unwrap()).unwrap();
    let mut session = gqa::session::Session::cpu(model, Some(tokenizer), Some(256)).unwrap();
    let params = gqa::generation::GenerateParams { max_tokens: 48, sampler: Default::default() };
    let question = ChatMessage::new("user", "What is the capital of France?");
    let reply = |session: &mut gqa::session::Session, chat: &[ChatMessage]| {
        let text = session.chat(chat, &params, &mut |_| true).unwrap();
        assert_eq!(session.stats().stop_reason, "eos", "{text:?} should end at <|im_end|>");
        text
    };
    let native = reply(&mut session, std::slice::from_ref(&question));
    session.set_groups(9, Method::Mean, 0).unwrap();
    let mha = reply(&mut session, std::slice::from_ref(&question));
    eprintln!("G = 3: {native:?}\nG = 9: {mha:?}");
    assert!(native.contains("Paris"), "{native:?}");
    assert_eq!(native, mha);

    session.set_groups(3, Method::Mean, 0).unwrap();
    let follow_up = [question, ChatMessage::new("assistant", &native), ChatMessage::new("user", "What is the most famous tower in that city?")];
    let second = reply(&mut session, &follow_up);
    eprintln!("second turn: {second:?}");
    assert!(second.contains("Paris"), "the second turn should know the city from the first: {second:?}");
}

/// Against llama.cpp on the same file, teacher-forced on the first 512 tokens of
/// val.txt (tests/fixtures/smollm2_llamacpp_val512.json, made by
/// scripts/llamacpp-teacher-forced.mjs): llama.cpp quantizes activations to 8 bits for its
/// dot products, so its logits differ slightly from these; its most likely next token
/// agrees with ours at >= 95% of positions, and its nats/token is within 0.03 of ours, on
/// both of our paths (f32 activations, and int8 ones as llama.cpp's); and the int8 path
/// agrees with the exact one about as often as llama.cpp does, within 0.01 nats/token.
#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn smollm2_agrees_with_llama_cpp_teacher_forced_on_val_txt() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smollm2_llamacpp_val512.json");
    let fixture: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let list = |key: &str| -> Vec<f64> { fixture[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect() };
    let ids: Vec<u32> = list("ids").iter().map(|&v| v as u32).collect();
    let (their_argmax, their_logprob) = (list("argmax"), list("logprob"));
    assert_eq!((ids.len(), their_argmax.len()), (512, 511));

    let (model, tokenizer) = gqa::loader::load_gguf(&std::fs::read(common::shared(SMOLLM2)).unwrap()).unwrap();
    let val = std::fs::read_to_string(common::shared("data/tinystories/val.txt")).unwrap();
    let start: String = val.chars().take(8000).collect();
    assert_eq!(tokenizer.encode(&start).unwrap()[..512], ids[..], "our tokenizer reads val.txt as llama.cpp did");

    let theirs = -their_logprob.iter().sum::<f64>() / 511.0;
    let mut argmaxes = Vec::new();
    let mut nats_of = Vec::new();
    for path in [QuantActivations::Exact, QuantActivations::Int8] {
        let logits = logits_with(model.clone(), &ids, path);
        let (mut agree, mut nats) = (0, 0.0);
        let ours: Vec<u32> = logits[..511].iter().map(|l| gqa::sampler::argmax(l)).collect();
        for (i, l) in logits[..511].iter().enumerate() {
            agree += usize::from(ours[i] == their_argmax[i] as u32);
            let max = l.iter().fold(f32::MIN, |m, &v| m.max(v)) as f64;
            let log_total = l.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
            nats -= l[ids[i + 1] as usize] as f64 - log_total;
        }
        let (agreement, nats) = (agree as f64 / 511.0, nats / 511.0);
        eprintln!("{path:?} activations: top-1 agreement with llama.cpp {:.1}% ({agree} of 511); nats/token: ours {nats:.5}, llama.cpp's {theirs:.5}", 100.0 * agreement);
        assert!(agreement >= 0.95, "{path:?}: top-1 agreement {agreement}");
        assert!((nats - theirs).abs() <= 0.03, "{path:?}: nats/token {nats} vs llama.cpp's {theirs}");
        argmaxes.push(ours);
        nats_of.push(nats);
    }
    // The int8 path against the exact one: as close as llama.cpp's own int8 arithmetic is
    // (its top-1 agrees with the exact path's at 97.8% of these positions), within 0.01
    // nats/token. Below 99% agreement it is not the default (see QuantActivations).
    let same = argmaxes[0].iter().zip(&argmaxes[1]).filter(|(a, b)| a == b).count();
    let with_llama_cpp = argmaxes[0].iter().zip(&their_argmax).filter(|(a, b)| **a == **b as u32).count();
    eprintln!(
        "int8 vs exact activations: top-1 agreement {same} of 511 (llama.cpp vs exact: {with_llama_cpp}), nats/token {:+.5}",
        nats_of[1] - nats_of[0]
    );
    assert!(same + 3 >= with_llama_cpp, "int8 vs exact top-1 agreement {same} of 511, below llama.cpp's {with_llama_cpp}");
    assert!((nats_of[1] - nats_of[0]).abs() <= 0.01, "int8 vs exact nats/token {} vs {}", nats_of[1], nats_of[0]);
}

/// SmolLM2 converted (G = 9 repeated, G = 1 pooled) and written as GGUF keeps its 4-bit
/// blocks, its tokenizer (the `smollm` pre-tokenizer, no BOS) and its chat template, and
/// reads back as the same model. (llama.cpp runs these files too: G = 9 answers Paris.)
#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn smollm2_converted_and_exported_reads_back_the_same() {
    let (model, tokenizer) = gqa::loader::load_gguf(&std::fs::read(common::shared(SMOLLM2)).unwrap()).unwrap();
    let toks = [1, 4093, 198, 1780, 314, 260];
    for g in [9, 1] {
        let converted = convert(&model, g, Method::Mean, 0).unwrap();
        let bytes = gqa::gguf::to_gguf(&converted, &tokenizer, gqa::tensor::DType::F32, "test").unwrap();
        let (back, tok) = gqa::loader::load_gguf(&bytes).unwrap();
        assert_eq!(back.blocks[0].mlp.up.format(), gqa::quant::Format::Q4_1, "G = {g}: blocks stay Q4_1");
        assert_eq!(engine_logits(back, &toks), engine_logits(converted, &toks), "G = {g}");
        let text = "<|im_start|>user\nIn 2024, 12345 cats<|im_end|>";
        assert_eq!(tok.encode(text).unwrap(), tokenizer.encode(text).unwrap());
        assert_eq!((tok.add_bos(), tok.chat_template()), (false, tokenizer.chat_template()));
    }
}
