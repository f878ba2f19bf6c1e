//! GGUF export (version 3; the layout is in the [module doc](super)), so that a model
//! converted to any G here runs in the llama.cpp ecosystem: `gqa convert --format gguf`.
//! Each tensor's data is aligned to 32 bytes.
//!
//! Names and shapes (GGUF lists dims innermost first: a (rows, cols) matrix is [cols, rows]):
//! ```text
//! token_embd.weight            [dim, vocab]       model.embed_tokens
//! blk.N.attn_norm.weight       [dim]              input_layernorm (f32)
//! blk.N.attn_q.weight          [dim, H*hd]        q_proj, rows permuted (below)
//! blk.N.attn_k.weight          [dim, G*hd]        k_proj, rows permuted (below)
//! blk.N.attn_v.weight          [dim, G*hd]        v_proj
//! blk.N.attn_output.weight     [H*hd, dim]        o_proj
//! blk.N.ffn_norm.weight        [dim]              post_attention_layernorm (f32)
//! blk.N.ffn_gate.weight        [dim, ffn]         gate_proj
//! blk.N.ffn_up.weight          [dim, ffn]         up_proj
//! blk.N.ffn_down.weight        [ffn, dim]         down_proj
//! output_norm.weight           [dim]              model.norm (f32)
//! output.weight                [dim, vocab]       lm_head, only when not tied
//! ```
//! RoPE: this crate rotates the two halves of each head (Hugging Face's rotate_half);
//! llama.cpp's llama architecture rotates interleaved pairs (2j, 2j+1). So the rows of
//! each q and k head are reordered: GGUF row 2j + s of a head is our row s * hd/2 + j
//! (as llama.cpp's own Hugging Face converter does); the scores q.k are unchanged.
//!
//! The tokenizer goes in too (`tokenizer.ggml.*`): a byte-level BPE tokenizer.json
//! (GPT-2 style, as the shipped family's) as the "gpt2" model with the "gpt-2"
//! pre-tokenizer, its tokens, their types and its merges.

use serde_json::Value;

use super::format::{token_type, TensorType, ValueType, DEFAULT_ALIGNMENT, MAGIC};
use crate::config::Config;
use crate::error::{GqaError, Result};
use crate::model::Model;
use crate::rope::rotate_half_to_interleaved;
use crate::tensor::{DType, Data, Matrix};
use crate::tokenizer::Tokenizer;

const VERSION: u32 = 3;
/// `general.file_type`: all f32, or f16 matrices with f32 norms.
const FILE_ALL_F32: u32 = 0;
const FILE_MOSTLY_F16: u32 = 1;

/// A metadata value (the types this export writes).
enum Meta {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(String),
    Strings(Vec<String>),
    I32s(Vec<i32>),
}

impl Meta {
    /// The value's GGUF type and the value (an array: its element type, count, elements).
    fn write(&self, out: &mut Vec<u8>) {
        let put_type = |out: &mut Vec<u8>, ty: ValueType| put_u32(out, ty as u32);
        match self {
            Meta::U32(v) => {
                put_type(out, ValueType::U32);
                put_u32(out, *v);
            }
            Meta::F32(v) => {
                put_type(out, ValueType::F32);
                out.extend(v.to_le_bytes());
            }
            Meta::Bool(v) => {
                put_type(out, ValueType::Bool);
                out.push(*v as u8);
            }
            Meta::Str(s) => {
                put_type(out, ValueType::String);
                put_str(out, s);
            }
            Meta::Strings(items) => {
                put_type(out, ValueType::Array);
                put_type(out, ValueType::String);
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|s| put_str(out, s));
            }
            Meta::I32s(items) => {
                put_type(out, ValueType::Array);
                put_type(out, ValueType::I32);
                out.extend((items.len() as u64).to_le_bytes());
                items.iter().for_each(|v| out.extend(v.to_le_bytes()));
            }
        }
    }
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend(v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

/// One tensor: its GGUF name, dims (innermost first), type and little-endian bytes.
struct Tensor {
    name: String,
    dims: Vec<u64>,
    ty: TensorType,
    bytes: Vec<u8>,
}

/// `m` in `dtype`, or, if it is block-quantized, in its own blocks (bytes as they are).
fn matrix(name: String, m: &Matrix, dtype: DType) -> Tensor {
    let dims = vec![m.cols as u64, m.rows as u64];
    if let Data::Quantized { format, bytes } = &m.data {
        return Tensor { name, dims, ty: TensorType(format.ggml_type()), bytes: bytes.to_vec() };
    }
    let values = m.to_f32_vec();
    let (ty, bytes) = match dtype {
        DType::F32 => (TensorType::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        DType::F16 => (TensorType::F16, values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect()),
    };
    Tensor { name, dims, ty, bytes }
}

fn norm(name: String, values: &[f32]) -> Tensor {
    Tensor { name, dims: vec![values.len() as u64], ty: TensorType::F32, bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect() }
}

/// The model's metadata under `llama.*` and `general.*`.
fn model_metadata(c: &Config, dtype: DType, name: &str) -> Vec<(String, Meta)> {
    let file_type = if dtype == DType::F16 { FILE_MOSTLY_F16 } else { FILE_ALL_F32 };
    [
        ("general.architecture", Meta::Str("llama".into())),
        ("general.name", Meta::Str(name.into())),
        ("general.file_type", Meta::U32(file_type)),
        ("general.alignment", Meta::U32(DEFAULT_ALIGNMENT as u32)),
        ("llama.vocab_size", Meta::U32(c.vocab_size as u32)),
        ("llama.context_length", Meta::U32(c.max_position_embeddings as u32)),
        ("llama.embedding_length", Meta::U32(c.hidden_size as u32)),
        ("llama.block_count", Meta::U32(c.num_hidden_layers as u32)),
        ("llama.feed_forward_length", Meta::U32(c.intermediate_size as u32)),
        ("llama.rope.dimension_count", Meta::U32(c.head_dim() as u32)),
        ("llama.rope.freq_base", Meta::F32(c.rope_theta)),
        ("llama.attention.head_count", Meta::U32(c.n_heads() as u32)),
        ("llama.attention.head_count_kv", Meta::U32(c.n_kv_heads() as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Meta::F32(c.rms_norm_eps)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The tokenizer's metadata: a byte-level BPE tokenizer.json as llama.cpp's "gpt2" model.
fn tokenizer_metadata(tokenizer: &Tokenizer, c: &Config) -> Result<Vec<(String, Meta)>> {
    let refuse = |why: String| GqaError::Invalid(format!("GGUF export needs a byte-level BPE tokenizer (GPT-2 style): {why}"));
    let json: Value = serde_json::from_str(&tokenizer.to_json()?).map_err(|e| refuse(e.to_string()))?;
    let model = &json["model"];
    // A GGUF file's own tokenizer (its pre-tokenizer's regexes and byte level in sequence)
    // goes back under its own pre-tokenizer name.
    let byte_level = json["pre_tokenizer"]["type"] == "ByteLevel" || tokenizer.gguf_pre.is_some();
    if model["type"] != "BPE" || !byte_level {
        return Err(refuse(format!("this one is {} with pre-tokenizer {}", model["type"], json["pre_tokenizer"]["type"])));
    }
    let n = tokenizer.vocab_size().max(c.vocab_size);
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut types = vec![token_type::NORMAL; n];
    let vocab = model["vocab"].as_object().ok_or_else(|| refuse("no vocab".into()))?;
    let added = json["added_tokens"].as_array().map(Vec::as_slice).unwrap_or_default();
    let entries = vocab.iter().map(|(piece, id)| (piece.as_str(), id.as_u64(), false));
    let specials = added.iter().map(|t| (t["content"].as_str().unwrap_or(""), t["id"].as_u64(), t["special"] == true));
    for (piece, id, special) in entries.chain(specials) {
        let id = id.filter(|&i| (i as usize) < n).ok_or_else(|| refuse(format!("token '{piece}' has no id below {n}")))? as usize;
        tokens[id] = Some(piece.to_string());
        if special {
            types[id] = token_type::CONTROL;
        }
    }
    // llama.cpp needs a string for every id: ids the tokenizer never produces get a placeholder.
    let tokens: Vec<String> = tokens.into_iter().enumerate().map(|(i, t)| t.unwrap_or_else(|| format!("[PAD{i}]"))).collect();
    let merges = model["merges"]
        .as_array()
        .ok_or_else(|| refuse("no merges".into()))?
        .iter()
        .map(|m| match m {
            Value::String(s) => Ok(s.clone()),
            Value::Array(pair) if pair.len() == 2 => Ok(format!("{} {}", pair[0].as_str().unwrap_or(""), pair[1].as_str().unwrap_or(""))),
            other => Err(refuse(format!("a merge is {other}"))),
        })
        .collect::<Result<Vec<_>>>()?;
    let mut metadata: Vec<(String, Meta)> = [
        ("tokenizer.ggml.model", Meta::Str("gpt2".into())),
        ("tokenizer.ggml.pre", Meta::Str(tokenizer.gguf_pre.clone().unwrap_or_else(|| "gpt-2".into()))),
        ("tokenizer.ggml.tokens", Meta::Strings(tokens)),
        ("tokenizer.ggml.token_type", Meta::I32s(types)),
        ("tokenizer.ggml.merges", Meta::Strings(merges)),
        ("tokenizer.ggml.bos_token_id", Meta::U32(c.bos_token_id)),
        ("tokenizer.ggml.add_bos_token", Meta::Bool(tokenizer.add_bos())),
        ("tokenizer.ggml.add_eos_token", Meta::Bool(false)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(&eos) = c.eos_ids().first() {
        metadata.push(("tokenizer.ggml.eos_token_id".into(), Meta::U32(eos)));
    }
    if let Some(template) = tokenizer.chat_template() {
        metadata.push(("tokenizer.chat_template".into(), Meta::Str(template.into())));
    }
    Ok(metadata)
}

/// `model` (with `tokenizer`) as a GGUF file: f32 and f16 matrices in `dtype`, block-quantized
/// ones in their blocks (a converted SmolLM2 keeps its Q4_1), norms in f32.
pub fn to_gguf(model: &Model, tokenizer: &Tokenizer, dtype: DType, name: &str) -> Result<Vec<u8>> {
    let c = &model.config;
    let hd = c.head_dim();
    let mut metadata = model_metadata(c, dtype, name);
    metadata.extend(tokenizer_metadata(tokenizer, c)?);

    let mut tensors = vec![matrix("token_embd.weight".into(), &model.embed, dtype)];
    for (i, b) in model.blocks.iter().enumerate() {
        let name = |part: &str| format!("blk.{i}.{part}.weight");
        tensors.extend([
            norm(name("attn_norm"), &b.input_norm),
            matrix(name("attn_q"), &rotate_half_to_interleaved(&b.attn.wq, hd), dtype),
            matrix(name("attn_k"), &rotate_half_to_interleaved(&b.attn.wk, hd), dtype),
            matrix(name("attn_v"), &b.attn.wv, dtype),
            matrix(name("attn_output"), &b.attn.wo, dtype),
            norm(name("ffn_norm"), &b.post_attention_norm),
            matrix(name("ffn_gate"), &b.mlp.gate, dtype),
            matrix(name("ffn_up"), &b.mlp.up, dtype),
            matrix(name("ffn_down"), &b.mlp.down, dtype),
        ]);
    }
    tensors.push(norm("output_norm.weight".into(), &model.norm));
    if let Some(head) = &model.lm_head {
        tensors.push(matrix("output.weight".into(), head, dtype));
    }

    let mut out = Vec::new();
    out.extend(MAGIC);
    out.extend(VERSION.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend((metadata.len() as u64).to_le_bytes());
    for (key, value) in &metadata {
        put_str(&mut out, key);
        value.write(&mut out);
    }
    let mut offset = 0usize;
    for t in &tensors {
        put_str(&mut out, &t.name);
        put_u32(&mut out, t.dims.len() as u32);
        t.dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
        put_u32(&mut out, t.ty.0);
        out.extend((offset as u64).to_le_bytes());
        offset = (offset + t.bytes.len()).next_multiple_of(DEFAULT_ALIGNMENT);
    }
    for t in &tensors {
        out.resize(out.len().next_multiple_of(DEFAULT_ALIGNMENT), 0);
        out.extend(&t.bytes);
    }
    Ok(out)
}
