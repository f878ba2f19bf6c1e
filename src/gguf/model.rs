//! A llama-architecture GGUF file as this crate's [`Model`]: llama.cpp's tensor names
//! (listed in [`export`](super::export)), block-quantized matrices kept in their blocks.
//!
//! Every tensor is checked first (present, shaped as the config says, of a type this
//! crate computes with), so a bad file is refused before any weight is copied. q and k
//! rows are reordered once, here, from llama.cpp's interleaved RoPE pairs to the
//! engine's rotate_half layout (rows move whole: quantized rows keep their bytes).

use half::f16;

use super::llama::llama_config;
use super::read::{Gguf, TensorInfo};
use crate::config::Config;
use crate::error::{GqaError, Result};
use crate::model::{Attention, Block, Mlp, Model};
use crate::quant::{self, Format};
use crate::rope::interleaved_to_rotate_half;
use crate::tensor::{Data, Matrix};

/// The model in `gguf` (see the module doc).
pub fn llama_model(gguf: &Gguf) -> Result<Model> {
    let config = llama_config(gguf)?;
    // Each block has 9 tensors: a block count the file cannot hold is refused before
    // anything is built from it.
    let needed = config.num_hidden_layers.saturating_mul(9).saturating_add(2);
    if needed > gguf.tensors().len() {
        return Err(GqaError::Gguf(format!(
            "llama.block_count is {}, so the model needs {needed} tensors, but the file has {}",
            config.num_hidden_layers,
            gguf.tensors().len()
        )));
    }
    let shapes = tensor_shapes(&config);
    for (name, shape) in &shapes {
        check(gguf.tensor(name)?, shape)?;
    }
    let (hd, [d, f, q, kv, v]) = (config.head_dim(), dims(&config));
    let matrix = |name: &str, rows: usize, cols: usize| matrix(gguf.tensor(name)?, rows, cols);
    let vector = |name: &str| vector(gguf.tensor(name)?);
    let blocks = (0..config.num_hidden_layers)
        .map(|i| {
            let name = |part: &str| format!("blk.{i}.{part}.weight");
            Ok(Block {
                input_norm: vector(&name("attn_norm"))?.into(),
                attn: Attention {
                    wq: interleaved_to_rotate_half(&matrix(&name("attn_q"), q, d)?, hd),
                    wk: interleaved_to_rotate_half(&matrix(&name("attn_k"), kv, d)?, hd),
                    wv: matrix(&name("attn_v"), kv, d)?,
                    wo: matrix(&name("attn_output"), d, q)?,
                },
                post_attention_norm: vector(&name("ffn_norm"))?.into(),
                mlp: Mlp {
                    gate: matrix(&name("ffn_gate"), f, d)?,
                    up: matrix(&name("ffn_up"), f, d)?,
                    down: matrix(&name("ffn_down"), d, f)?,
                },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let lm_head = match config.tie_word_embeddings {
        true => None,
        false => Some(matrix("output.weight", v, d)?),
    };
    let embed = matrix("token_embd.weight", v, d)?;
    Ok(Model { embed, blocks, norm: vector("output_norm.weight")?.into(), lm_head, config })
}

/// [dim, ffn, H*hd, G*hd, vocab]
fn dims(c: &Config) -> [usize; 5] {
    [c.hidden_size, c.intermediate_size, c.n_heads() * c.head_dim(), c.n_kv_heads() * c.head_dim(), c.vocab_size]
}

/// Every tensor the model needs, with its GGUF dims (innermost first: a (rows, cols)
/// matrix is [cols, rows]).
fn tensor_shapes(c: &Config) -> Vec<(String, Vec<usize>)> {
    let [d, f, q, kv, v] = dims(c);
    let mut shapes = vec![("token_embd.weight".to_string(), vec![d, v]), ("output_norm.weight".into(), vec![d])];
    if !c.tie_word_embeddings {
        shapes.push(("output.weight".into(), vec![d, v]));
    }
    for i in 0..c.num_hidden_layers {
        let parts = [
            ("attn_norm", vec![d]),
            ("attn_q", vec![d, q]),
            ("attn_k", vec![d, kv]),
            ("attn_v", vec![d, kv]),
            ("attn_output", vec![q, d]),
            ("ffn_norm", vec![d]),
            ("ffn_gate", vec![d, f]),
            ("ffn_up", vec![d, f]),
            ("ffn_down", vec![f, d]),
        ];
        shapes.extend(parts.into_iter().map(|(part, dims)| (format!("blk.{i}.{part}.weight"), dims)));
    }
    shapes
}

/// `t` has the dims the config implies (the reader already checked that its bytes are
/// there and whole blocks of its type). A token embedding of another height than the
/// tokenizer's vocabulary is named as such.
fn check(t: &TensorInfo, dims: &[usize]) -> Result<()> {
    if t.dims == dims {
        return Ok(());
    }
    let what = match t.name {
        "token_embd.weight" | "output.weight" => " (dim x the tokenizer's vocabulary: the vocabulary does not match the embedding)",
        _ => "",
    };
    Err(GqaError::Gguf(format!("tensor '{}' has dims {:?}; the model's metadata means {dims:?}{what}", t.name, t.dims)))
}

/// A matrix of `rows` x `cols` from `t`: f32 and f16 as such, block formats kept in
/// their blocks.
fn matrix(t: &TensorInfo, rows: usize, cols: usize) -> Result<Matrix> {
    let format = format(t)?;
    Ok(match format {
        Format::F32 => Matrix::from_f32(rows, cols, t.bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()),
        Format::F16 => {
            let values: Vec<f16> = t.bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]])).collect();
            Matrix { rows, cols, data: Data::F16(values.into()) }
        }
        _ => Matrix::quantized(rows, cols, format, t.bytes.to_vec())?,
    })
}

/// A norm's weights, as f32 whatever the file stores.
fn vector(t: &TensorInfo) -> Result<Vec<f32>> {
    let mut out = vec![0.0; t.dims[0]];
    quant::dequantize(format(t)?, t.bytes, &mut out);
    Ok(out)
}

fn format(t: &TensorInfo) -> Result<Format> {
    t.ty.format().ok_or_else(|| GqaError::Gguf(format!("tensor '{}' has type {}, which this crate does not compute with", t.name, t.ty)))
}
