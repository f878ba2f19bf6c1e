//! GGUF export (src/gguf/export.rs), read back by a reader written here from the format's
//! description (not the writer's code): header, metadata, tensor names, shapes, types,
//! aligned offsets and data. The q/k row reordering is checked by what it is for: with
//! llama.cpp's interleaved RoPE on the exported rows, every attention score equals the
//! one this crate's rotate_half RoPE gives on its own rows.

mod common;

use std::collections::HashMap;

use gqa::convert::{convert, Method};
use gqa::model::Model;
use gqa::tensor::{DType, Matrix};
use gqa::tokenizer::Tokenizer;

#[derive(Debug, PartialEq)]
enum Value {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
    I32(i32),
}

struct TensorInfo {
    dims: Vec<u64>,
    ggml_type: u32,
    offset: u64,
}

struct Gguf {
    metadata: HashMap<String, Value>,
    tensors: Vec<(String, TensorInfo)>,
    data_start: usize,
    bytes: Vec<u8>,
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        s
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().unwrap())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take(8).try_into().unwrap())
    }
    fn string(&mut self) -> String {
        let n = self.u64() as usize;
        String::from_utf8(self.take(n).to_vec()).unwrap()
    }
    fn value(&mut self, ty: u32) -> Value {
        match ty {
            4 => Value::U32(self.u32()),
            5 => Value::I32(self.u32() as i32),
            6 => Value::F32(f32::from_bits(self.u32())),
            7 => Value::Bool(self.take(1)[0] != 0),
            8 => Value::Str(self.string()),
            9 => {
                let (elem, n) = (self.u32(), self.u64());
                Value::Array((0..n).map(|_| self.value(elem)).collect())
            }
            other => panic!("value type {other} is not one the export writes"),
        }
    }
}

fn read(bytes: Vec<u8>) -> Gguf {
    let mut r = Reader { bytes: &bytes, pos: 0 };
    assert_eq!(r.take(4), b"GGUF");
    assert_eq!(r.u32(), 3, "version");
    let (n_tensors, n_kv) = (r.u64(), r.u64());
    let metadata = (0..n_kv)
        .map(|_| {
            let key = r.string();
            let ty = r.u32();
            (key, r.value(ty))
        })
        .collect();
    let tensors = (0..n_tensors)
        .map(|_| {
            let name = r.string();
            let n_dims = r.u32();
            let dims = (0..n_dims).map(|_| r.u64()).collect();
            (name, TensorInfo { dims, ggml_type: r.u32(), offset: r.u64() })
        })
        .collect();
    let data_start = r.pos.next_multiple_of(32);
    Gguf { metadata, tensors, data_start, bytes }
}

impl Gguf {
    fn tensor(&self, name: &str) -> (&TensorInfo, Vec<f32>) {
        let (_, t) = self.tensors.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no tensor {name}"));
        let count: u64 = t.dims.iter().product();
        let at = self.data_start + t.offset as usize;
        let values = match t.ggml_type {
            0 => self.bytes[at..at + 4 * count as usize].chunks(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            1 => self.bytes[at..at + 2 * count as usize]
                .chunks(2)
                .map(|b| half::f16::from_le_bytes(b.try_into().unwrap()).to_f32())
                .collect(),
            other => panic!("tensor type {other}"),
        };
        (t, values)
    }
    fn u32(&self, key: &str) -> u32 {
        match self.metadata.get(key) {
            Some(Value::U32(v)) => *v,
            other => panic!("{key}: {other:?}"),
        }
    }
}

fn shipped_tokenizer() -> Tokenizer {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/www/models/mha/tokenizer.json");
    Tokenizer::from_json(&std::fs::read(path).expect("the shipped tokenizer")).unwrap()
}

/// A random model with the shipped tokenizer's vocabulary: H = 8, converted to G.
fn model(groups: usize) -> Model {
    let mut config = common::small_config(8);
    config.vocab_size = 2048;
    config.tie_word_embeddings = true;
    let base = Model::random(&config, 5, DType::F32).unwrap();
    convert(&base, groups, Method::Mean, 0).unwrap()
}

#[test]
fn gguf_export_reads_back_with_names_shapes_metadata_and_data() {
    let tokenizer = shipped_tokenizer();
    for (groups, dtype, tol) in [(8, DType::F32, 0.0), (2, DType::F16, 1e-3), (1, DType::F32, 0.0)] {
        let m = model(groups);
        let c = &m.config;
        let g = read(gqa::gguf::to_gguf(&m, &tokenizer, dtype, "test").unwrap());
        assert_eq!(g.metadata["general.architecture"], Value::Str("llama".into()));
        assert_eq!(g.u32("llama.attention.head_count") as usize, c.n_heads());
        assert_eq!(g.u32("llama.attention.head_count_kv") as usize, groups);
        assert_eq!(g.u32("llama.block_count") as usize, c.num_hidden_layers);
        assert_eq!(g.u32("llama.embedding_length") as usize, c.hidden_size);
        assert_eq!(g.u32("llama.feed_forward_length") as usize, c.intermediate_size);
        assert_eq!(g.u32("llama.context_length") as usize, c.max_position_embeddings);
        assert_eq!(g.u32("llama.rope.dimension_count") as usize, c.head_dim());
        assert_eq!(g.metadata["llama.rope.freq_base"], Value::F32(c.rope_theta));
        assert_eq!(g.metadata["tokenizer.ggml.model"], Value::Str("gpt2".into()));
        let Value::Array(tokens) = &g.metadata["tokenizer.ggml.tokens"] else { panic!("tokens") };
        assert_eq!(tokens.len(), 2048);
        for id in [0u32, 1, 2, 100, 2047] {
            assert_eq!(tokens[id as usize], Value::Str(tokenizer.token_to_piece(id).unwrap()), "token {id}");
        }
        let Value::Array(types) = &g.metadata["tokenizer.ggml.token_type"] else { panic!("types") };
        assert_eq!(types[..4], [Value::I32(3), Value::I32(3), Value::I32(3), Value::I32(1)], "<unk>, <s>, </s> are control tokens");
        assert!(matches!(&g.metadata["tokenizer.ggml.merges"], Value::Array(m) if m.len() > 1000));
        assert_eq!(g.u32("tokenizer.ggml.bos_token_id"), c.bos_token_id);

        // Tied embeddings: no output.weight; 2 + 9 per layer tensors.
        assert_eq!(g.tensors.len(), 2 + 9 * c.num_hidden_layers);
        assert!(g.tensors.iter().all(|(_, t)| t.offset % 32 == 0), "offsets aligned to 32");
        let (hd, kv_rows) = (c.head_dim(), groups * c.head_dim());
        let expect = |name: &str, m: &Matrix| {
            let (t, values) = g.tensor(name);
            assert_eq!(t.dims, [m.cols as u64, m.rows as u64], "{name}: dims innermost first");
            assert_eq!(t.ggml_type, if dtype == DType::F16 { 1 } else { 0 }, "{name}");
            values
        };
        let close = |a: &[f32], b: &[f32], what: &str| {
            let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
            assert!(d <= tol, "{what}: {d}");
        };
        let b = &m.blocks[1];
        close(&expect("token_embd.weight", &m.embed), &m.embed.to_f32_vec(), "embedding");
        close(&expect("blk.1.attn_v.weight", &b.attn.wv), &b.attn.wv.to_f32_vec(), "wv");
        close(&expect("blk.1.ffn_down.weight", &b.mlp.down), &b.mlp.down.to_f32_vec(), "down");
        assert_eq!(g.tensor("blk.1.attn_norm.weight").1, *b.input_norm, "norms stay f32");
        assert_eq!(g.tensor("blk.1.attn_k.weight").0.dims, [c.hidden_size as u64, kv_rows as u64]);

        // RoPE: scores from llama.cpp's interleaved rotation of the exported q and k
        // rows equal the scores from rotate_half on ours, at several distances.
        let q = expect("blk.1.attn_q.weight", &b.attn.wq);
        let k = expect("blk.1.attn_k.weight", &b.attn.wk);
        let x: Vec<f32> = (0..c.hidden_size).map(|i| ((i * 7 % 13) as f32 - 6.0) / 6.0).collect();
        let project = |w: &[f32], rows: usize| -> Vec<f64> {
            (0..rows).map(|r| (0..c.hidden_size).map(|j| w[r * c.hidden_size + j] as f64 * x[j] as f64).sum()).collect()
        };
        let (q_ours, k_ours) = (project(&b.attn.wq.to_f32_vec(), c.n_heads() * hd), project(&b.attn.wk.to_f32_vec(), kv_rows));
        let (q_gguf, k_gguf) = (project(&q, c.n_heads() * hd), project(&k, kv_rows));
        let angle = |pos: usize, pair: usize| pos as f64 * (c.rope_theta as f64).powf(-2.0 * pair as f64 / hd as f64);
        // rotate_half: element i pairs with i + hd/2; interleaved: 2j pairs with 2j + 1.
        let rotate = |v: &[f64], pos: usize, interleaved: bool| -> Vec<f64> {
            let mut out = v.to_vec();
            for j in 0..hd / 2 {
                let (a, bb) = if interleaved { (2 * j, 2 * j + 1) } else { (j, j + hd / 2) };
                let (s, co) = angle(pos, j).sin_cos();
                out[a] = v[a] * co - v[bb] * s;
                out[bb] = v[a] * s + v[bb] * co;
            }
            out
        };
        let group = c.n_heads() / groups;
        for (qp, kp) in [(0, 0), (5, 2), (300, 17), (1000, 999)] {
            for h in 0..c.n_heads() {
                let kh = h / group;
                let dot = |q: &[f64], k: &[f64], inter: bool| -> f64 {
                    let (qr, kr) = (rotate(&q[h * hd..(h + 1) * hd], qp, inter), rotate(&k[kh * hd..(kh + 1) * hd], kp, inter));
                    qr.iter().zip(&kr).map(|(a, b)| a * b).sum()
                };
                let (ours, theirs) = (dot(&q_ours, &k_ours, false), dot(&q_gguf, &k_gguf, true));
                let bound = 1e-9 + (tol as f64) * 50.0;
                assert!((ours - theirs).abs() <= bound * (1.0 + ours.abs()), "G = {groups}, head {h}, q at {qp}, k at {kp}: {ours} vs {theirs}");
            }
        }
    }
}

#[test]
#[cfg_attr(not(has_shared), ignore = "needs ../shared (the shared fixtures)")]
fn gguf_export_refuses_a_tokenizer_it_cannot_describe() {
    // A llama.cpp "gpt2" vocabulary needs a byte-level BPE; stories260K's llama2.c
    // tokenizer is not one.
    let tok = Tokenizer::from_llama2c(&std::fs::read(common::shared("fixtures/llama2c/tok512.bin")).unwrap(), 512).unwrap();
    let err = gqa::gguf::to_gguf(&model(8), &tok, DType::F32, "test").unwrap_err().to_string();
    assert!(err.contains("GGUF export needs a byte-level BPE tokenizer"), "{err}");
}

/// What the export writes, the loader reads back as the same model: the same logits,
/// f32 exactly, f16 as the f16 model, at G = 8 and 2 (q/k rows back in rotate_half
/// order, the tokenizer's ids the same).
#[test]
fn the_loader_reads_an_export_back_as_the_same_model() {
    let tokenizer = shipped_tokenizer();
    let toks = [1, 300, 2000, 7, 45, 45, 1024];
    for groups in [8, 2] {
        for dtype in [DType::F32, DType::F16] {
            let m = model(groups).to_dtype(dtype);
            let (back, tok) = gqa::loader::load_gguf(&gqa::gguf::to_gguf(&m, &tokenizer, dtype, "test").unwrap()).unwrap();
            assert_eq!(back.config.n_kv_heads(), groups);
            assert_eq!(back.blocks[0].attn.wq, m.blocks[0].attn.wq, "q rows reordered back");
            assert_eq!(back.blocks[1].attn.wk, m.blocks[1].attn.wk, "k rows reordered back");
            assert_eq!(logits(&back, &toks), logits(&m, &toks), "G = {groups}, {dtype:?}");
            assert_eq!(tok.encode("Once upon a time, 42 cats.").unwrap(), tokenizer.encode("Once upon a time, 42 cats.").unwrap());
        }
    }
}

fn logits(m: &Model, toks: &[u32]) -> Vec<f32> {
    let mut engine = gqa::cpu::CpuEngine::new(m.clone(), toks.len()).unwrap();
    engine.forward(toks, gqa::backend::Logits::All).unwrap()
}

/// `bytes` with `from` replaced by `to` (the same length) at its one occurrence.
fn patched(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let at: Vec<usize> = (0..bytes.len() - from.len()).filter(|&i| &bytes[i..i + from.len()] == from).collect();
    assert_eq!(at.len(), 1, "{:?} occurs {} times", String::from_utf8_lossy(from), at.len());
    let mut out = bytes.to_vec();
    out[at[0]..at[0] + to.len()].copy_from_slice(to);
    out
}

/// A u32 metadata value: its key (a u64 length and the bytes), the type 4, the value.
fn u32_entry(key: &str, value: u32) -> Vec<u8> {
    let mut e = (key.len() as u64).to_le_bytes().to_vec();
    e.extend(key.as_bytes());
    e.extend(4u32.to_le_bytes());
    e.extend(value.to_le_bytes());
    e
}

/// A file whose tensors do not make the model its metadata describes is refused, each
/// case in words that name the tensor or the key, before any weight is copied.
#[test]
fn the_loader_names_what_does_not_fit() {
    let m = model(2);
    let bytes = gqa::gguf::to_gguf(&m, &shipped_tokenizer(), DType::F32, "test").unwrap();
    let err = |bytes: Vec<u8>| gqa::loader::load_gguf(&bytes).err().expect("refused").to_string();

    let missing = err(patched(&bytes, b"blk.1.ffn_up.weight", b"blk.1.ffn_uq.weight"));
    assert!(missing.contains("blk.1.ffn_up.weight"), "{missing}");

    let c = &m.config;
    let blocks = err(patched(&bytes, &u32_entry("llama.block_count", 2), &u32_entry("llama.block_count", 40)));
    assert!(blocks.contains("llama.block_count is 40") && blocks.contains("tensors"), "{blocks}");
    let huge = err(patched(&bytes, &u32_entry("llama.block_count", 2), &u32_entry("llama.block_count", 1 << 30)));
    assert!(huge.contains("llama.* metadata") && huge.contains("parameters"), "{huge}");

    let ffn = c.intermediate_size as u32;
    let shape = err(patched(&bytes, &u32_entry("llama.feed_forward_length", ffn), &u32_entry("llama.feed_forward_length", ffn * 2)));
    assert!(shape.contains("blk.0.ffn_") && shape.contains("dims"), "{shape}");

    // An embedding of 2,047 rows beside a vocabulary of 2,048 tokens (its tensor info
    // says so: the name, 2 dims, dim and rows).
    let info = |rows: u64| {
        let mut info = 17u64.to_le_bytes().to_vec();
        info.extend(b"token_embd.weight");
        info.extend(2u32.to_le_bytes());
        info.extend((c.hidden_size as u64).to_le_bytes());
        info.extend(rows.to_le_bytes());
        info
    };
    let vocab = err(patched(&bytes, &info(2048), &info(2047)));
    assert!(vocab.contains("token_embd.weight") && vocab.contains("vocabulary does not match"), "{vocab}");
}
