//! Hugging Face Llama checkpoints: `config.json` plus `model.safetensors`.
//!
//! Tensor names and shapes (hd = head_dim, H = n_heads, G = n_kv_heads, N = layer):
//! ```text
//! model.embed_tokens.weight                       (vocab, dim)
//! model.layers.N.input_layernorm.weight           (dim)
//! model.layers.N.self_attn.q_proj.weight          (H*hd, dim)
//! model.layers.N.self_attn.k_proj.weight          (G*hd, dim)
//! model.layers.N.self_attn.v_proj.weight          (G*hd, dim)
//! model.layers.N.self_attn.o_proj.weight          (dim, H*hd)
//! model.layers.N.post_attention_layernorm.weight  (dim)
//! model.layers.N.mlp.gate_proj.weight             (ffn, dim)
//! model.layers.N.mlp.up_proj.weight               (ffn, dim)
//! model.layers.N.mlp.down_proj.weight             (dim, ffn)
//! model.norm.weight                               (dim)
//! lm_head.weight                                  (vocab, dim), only when not tied
//! ```
//! The parsing works on byte slices (browser and CLI alike); [`load_hf_dir`] and
//! [`save_hf_dir`] add the file system around it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use half::{bf16, f16};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensorError, SafeTensors, View};

use crate::config::Config;
use crate::error::{GqaError, Result};
use crate::model::{Attention, Block, Mlp, Model};
use crate::tensor::{DType, Data, Matrix, Shared};

const EMBED: &str = "model.embed_tokens.weight";
const FINAL_NORM: &str = "model.norm.weight";
const LM_HEAD: &str = "lm_head.weight";

// The parts of layer N, named `model.layers.N.<part>.weight`.
const INPUT_NORM: &str = "input_layernorm";
const Q_PROJ: &str = "self_attn.q_proj";
const K_PROJ: &str = "self_attn.k_proj";
const V_PROJ: &str = "self_attn.v_proj";
const O_PROJ: &str = "self_attn.o_proj";
const POST_NORM: &str = "post_attention_layernorm";
const GATE_PROJ: &str = "mlp.gate_proj";
const UP_PROJ: &str = "mlp.up_proj";
const DOWN_PROJ: &str = "mlp.down_proj";

fn layer_name(layer: usize, part: &str) -> String {
    format!("model.layers.{layer}.{part}.weight")
}

/// Parse a Hugging Face Llama checkpoint: the text of `config.json` and the bytes
/// of `model.safetensors` (which may be unaligned).
///
/// Every tensor the config implies is checked (present, shape, dtype) before any
/// weight is converted. Matrices stay f16 when the file stores them all as F16;
/// otherwise (F32, BF16 or a mix) they load as f32. Norms are always f32.
/// Tensors the engine does not use (e.g. `rotary_emb.inv_freq`) are ignored, as is
/// `lm_head.weight` when `tie_word_embeddings` is set.
pub fn load_hf(config_json: &str, safetensors: &[u8]) -> Result<Model> {
    let config = Config::from_json(config_json)?;
    let st = SafeTensors::deserialize(safetensors).map_err(|e| describe(e, safetensors))?;

    // Check everything first. The list is produced lazily, so an absurd layer count
    // stops at the first missing tensor instead of building a huge list.
    let mut all_f16 = true;
    for (name, shape) in expected_tensors(&config) {
        let view = tensor(&st, &name)?;
        if view.shape() != shape.as_slice() {
            return Err(GqaError::ShapeMismatch { name, expected: shape, found: view.shape().to_vec() });
        }
        check_dtype(&name, view.dtype())?;
        if shape.len() == 2 {
            all_f16 &= view.dtype() == Dtype::F16;
        }
    }
    let dtype = if all_f16 { DType::F16 } else { DType::F32 };

    let matrix = |name: &str| -> Result<Matrix> {
        let view = tensor(&st, name)?;
        let (rows, cols) = (view.shape()[0], view.shape()[1]);
        let data = match dtype {
            DType::F16 => {
                Data::F16(view.data().chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>().into())
            }
            DType::F32 => Data::F32(values_f32(name, &view)?.into()),
        };
        Ok(Matrix { rows, cols, data })
    };
    let norm = |name: &str| values_f32(name, &tensor(&st, name)?).map(Shared::from);

    let blocks = (0..config.num_hidden_layers)
        .map(|i| {
            let m = |part: &str| matrix(&layer_name(i, part));
            Ok(Block {
                input_norm: norm(&layer_name(i, INPUT_NORM))?,
                attn: Attention { wq: m(Q_PROJ)?, wk: m(K_PROJ)?, wv: m(V_PROJ)?, wo: m(O_PROJ)? },
                post_attention_norm: norm(&layer_name(i, POST_NORM))?,
                mlp: Mlp { gate: m(GATE_PROJ)?, up: m(UP_PROJ)?, down: m(DOWN_PROJ)? },
            })
        })
        .collect::<Result<Vec<Block>>>()?;
    let lm_head = if config.tie_word_embeddings { None } else { Some(matrix(LM_HEAD)?) };
    Ok(Model { embed: matrix(EMBED)?, blocks, norm: norm(FINAL_NORM)?, lm_head, config })
}

/// Every tensor `config` implies, with its shape, in checkpoint order.
fn expected_tensors(config: &Config) -> impl Iterator<Item = (String, Vec<usize>)> {
    let (d, f, v) = (config.hidden_size, config.intermediate_size, config.vocab_size);
    let hd = config.head_dim();
    let (q, kv) = (config.n_heads() * hd, config.n_kv_heads() * hd);
    let layers = (0..config.num_hidden_layers).flat_map(move |i| {
        [
            (INPUT_NORM, vec![d]),
            (Q_PROJ, vec![q, d]),
            (K_PROJ, vec![kv, d]),
            (V_PROJ, vec![kv, d]),
            (O_PROJ, vec![d, q]),
            (POST_NORM, vec![d]),
            (GATE_PROJ, vec![f, d]),
            (UP_PROJ, vec![f, d]),
            (DOWN_PROJ, vec![d, f]),
        ]
        .into_iter()
        .map(move |(part, shape)| (layer_name(i, part), shape))
    });
    std::iter::once((EMBED.to_string(), vec![v, d]))
        .chain(layers)
        .chain(std::iter::once((FINAL_NORM.to_string(), vec![d])))
        .chain((!config.tie_word_embeddings).then(|| (LM_HEAD.to_string(), vec![v, d])))
}

fn tensor<'a>(st: &SafeTensors<'a>, name: &str) -> Result<TensorView<'a>> {
    st.tensor(name).map_err(|_| GqaError::MissingTensor(name.to_string()))
}

fn check_dtype(name: &str, dtype: Dtype) -> Result<()> {
    match dtype {
        Dtype::F32 | Dtype::F16 | Dtype::BF16 => Ok(()),
        other => Err(GqaError::UnsupportedDtype { name: name.to_string(), dtype: other.to_string() }),
    }
}

/// A tensor's values as f32, read from little-endian bytes at any alignment.
fn values_f32(name: &str, view: &TensorView) -> Result<Vec<f32>> {
    let bytes = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => bytes.chunks_exact(2).map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        other => return Err(GqaError::UnsupportedDtype { name: name.to_string(), dtype: other.to_string() }),
    })
}

/// Say what is wrong with a safetensors file, with the sizes involved.
fn describe(err: SafeTensorError, bytes: &[u8]) -> GqaError {
    let len = bytes.len();
    // The file starts with the header's length as a little-endian u64.
    let header_len = match bytes.get(..8) {
        Some(b) => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        None => 0,
    };
    let after_len_field = len.saturating_sub(8);
    let msg = match err {
        SafeTensorError::HeaderTooSmall => format!(
            "the file is {len} bytes, too short to hold the 8-byte header length (empty or truncated file)"
        ),
        SafeTensorError::HeaderTooLarge => format!(
            "the header length field says {header_len} bytes, more than the 100 MB safetensors allows \
             (corrupt file, or not a safetensors file)"
        ),
        SafeTensorError::InvalidHeaderLength => format!(
            "the header length field says {header_len} bytes, but only {after_len_field} bytes follow it \
             (truncated file, or a header length larger than the file)"
        ),
        SafeTensorError::InvalidHeader(e) => format!("the header is not UTF-8 text: {e}"),
        SafeTensorError::InvalidHeaderDeserialization(e) | SafeTensorError::JsonError(e) => {
            format!("the header is not valid safetensors JSON: {e}")
        }
        SafeTensorError::InvalidOffset(name) => format!(
            "tensor '{name}' has data_offsets that do not start where the previous tensor ends \
             (overlapping, gapped or reversed offsets)"
        ),
        SafeTensorError::TensorInvalidInfo => {
            "a tensor's data_offsets span a different number of bytes than its shape and dtype need".into()
        }
        SafeTensorError::ValidationOverflow => {
            "a tensor's shape is so large that its size in bytes overflows".into()
        }
        SafeTensorError::MetadataIncompleteBuffer => format!(
            "the header's data_offsets do not end where the file ends ({} data bytes follow the header): \
             the file is truncated, has extra bytes, or its offsets point past the end",
            after_len_field.saturating_sub(header_len.try_into().unwrap_or(usize::MAX))
        ),
        other => other.to_string(),
    };
    GqaError::Safetensors(msg)
}

/// Serialize `model` as a Hugging Face `model.safetensors`: matrices in `dtype` and,
/// following Hugging Face, norms in the same dtype. `lm_head.weight` is written only
/// when the model is untied.
pub fn to_safetensors(model: &Model, dtype: DType) -> Result<Vec<u8>> {
    let mut tensors = vec![(EMBED.to_string(), OutTensor::matrix(&model.embed, dtype))];
    for (i, b) in model.blocks.iter().enumerate() {
        let name = |part: &str| layer_name(i, part);
        tensors.extend([
            (name(INPUT_NORM), OutTensor::norm(&b.input_norm, dtype)),
            (name(Q_PROJ), OutTensor::matrix(&b.attn.wq, dtype)),
            (name(K_PROJ), OutTensor::matrix(&b.attn.wk, dtype)),
            (name(V_PROJ), OutTensor::matrix(&b.attn.wv, dtype)),
            (name(O_PROJ), OutTensor::matrix(&b.attn.wo, dtype)),
            (name(POST_NORM), OutTensor::norm(&b.post_attention_norm, dtype)),
            (name(GATE_PROJ), OutTensor::matrix(&b.mlp.gate, dtype)),
            (name(UP_PROJ), OutTensor::matrix(&b.mlp.up, dtype)),
            (name(DOWN_PROJ), OutTensor::matrix(&b.mlp.down, dtype)),
        ]);
    }
    tensors.push((FINAL_NORM.to_string(), OutTensor::norm(&model.norm, dtype)));
    if let Some(head) = &model.lm_head {
        tensors.push((LM_HEAD.to_string(), OutTensor::matrix(head, dtype)));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(tensors, Some(metadata)).map_err(|e| GqaError::Safetensors(e.to_string()))
}

/// One tensor to write; its bytes are produced only when the serializer asks.
struct OutTensor<'a> {
    values: Values<'a>,
    shape: Vec<usize>,
    dtype: DType,
}

enum Values<'a> {
    Matrix(&'a Matrix),
    Norm(&'a [f32]),
}

impl<'a> OutTensor<'a> {
    fn matrix(m: &'a Matrix, dtype: DType) -> Self {
        OutTensor { values: Values::Matrix(m), shape: vec![m.rows, m.cols], dtype }
    }

    fn norm(v: &'a [f32], dtype: DType) -> Self {
        OutTensor { values: Values::Norm(v), shape: vec![v.len()], dtype }
    }
}

impl View for OutTensor<'_> {
    fn dtype(&self) -> Dtype {
        match self.dtype {
            DType::F32 => Dtype::F32,
            DType::F16 => Dtype::F16,
        }
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        let matrix = match self.values {
            Values::Matrix(m) => Cow::Borrowed(m),
            Values::Norm(v) => Cow::Owned(Matrix::from_f32(1, v.len(), v.to_vec())),
        };
        let bytes = match matrix.to_dtype(self.dtype).data {
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::Quantized { .. } => unreachable!("to_dtype stores f32 or f16"),
        };
        Cow::Owned(bytes)
    }

    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.dtype.size()
    }
}

/// Load `config.json` and `model.safetensors` from `dir`.
pub fn load_hf_dir(dir: &Path) -> Result<Model> {
    let config_path = dir.join("config.json");
    let config = std::fs::read_to_string(&config_path).map_err(|e| GqaError::io(config_path.display(), e))?;
    let weights_path = dir.join("model.safetensors");
    let weights = std::fs::read(&weights_path).map_err(|e| GqaError::io(weights_path.display(), e))?;
    load_hf(&config, &weights)
}

/// Write `config.json` and `model.safetensors` (matrices and norms in `dtype`) into
/// `dir`, creating it if needed.
pub fn save_hf_dir(model: &Model, dir: &Path, dtype: DType) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| GqaError::io(dir.display(), e))?;
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, model.config.to_json())
        .map_err(|e| GqaError::io(config_path.display(), e))?;
    let weights_path = dir.join("model.safetensors");
    std::fs::write(&weights_path, to_safetensors(model, dtype)?)
        .map_err(|e| GqaError::io(weights_path.display(), e))
}
