//! Import llama2.c checkpoints (the legacy, version-0 format read by `run.c`).
//!
//! ```text
//! header: 7 x i32 LE: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, max_seq_len
//!         (vocab_size < 0: an untied classifier `wcls` follows at the end; > 0: shared)
//! then f32 LE, in this order (L = n_layers, hs = dim / n_heads, row-major (out, in)):
//!   token_embedding_table   (vocab, dim)
//!   rms_att_weight          L x (dim)
//!   wq                      L x (n_heads*hs, dim)
//!   wk, wv                  L x (n_kv_heads*hs, dim) each
//!   wo                      L x (dim, n_heads*hs)
//!   rms_ffn_weight          L x (dim)
//!   w1 = gate               L x (hidden_dim, dim)
//!   w2 = down               L x (dim, hidden_dim)
//!   w3 = up                 L x (hidden_dim, dim)
//!   rms_final_weight        (dim)
//!   freq_cis_real, freq_cis_imag   (max_seq_len * hs/2) each, unused (skipped)
//!   wcls                    (vocab, dim), only when untied
//! ```

use crate::config::Config;
use crate::error::{GqaError, Result};
use crate::model::{Attention, Block, Mlp, Model};
use crate::rope::interleaved_to_rotate_half;
use crate::tensor::Matrix;

const HEADER_BYTES: usize = 7 * 4;

fn bad(msg: String) -> GqaError {
    GqaError::Llama2c(msg)
}

/// Parse a llama2.c checkpoint. The header is validated and the exact file length
/// checked before anything is allocated; q and k rows are reordered into the
/// engine's RoPE layout (see [`interleaved_to_rotate_half`]).
pub fn load_llama2c(bytes: &[u8]) -> Result<Model> {
    let config = read_header(bytes)?;
    check_length(&config, bytes.len())?;

    let (d, f, l, v) =
        (config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size);
    let hs = config.head_dim();
    let (q, kv) = (config.n_heads() * hs, config.n_kv_heads() * hs);
    let mut r = Floats { rest: &bytes[HEADER_BYTES..] };

    let embed = Matrix::from_f32(v, d, r.take(v * d));
    let mut rms_att = r.per_layer(l, d);
    let mut wq = r.per_layer(l, q * d);
    let mut wk = r.per_layer(l, kv * d);
    let mut wv = r.per_layer(l, kv * d);
    let mut wo = r.per_layer(l, d * q);
    let mut rms_ffn = r.per_layer(l, d);
    let mut w1 = r.per_layer(l, f * d);
    let mut w2 = r.per_layer(l, d * f);
    let mut w3 = r.per_layer(l, f * d);
    let norm = r.take(d);
    r.skip(config.max_position_embeddings * hs); // freq_cis_real + freq_cis_imag
    let lm_head = (!config.tie_word_embeddings).then(|| Matrix::from_f32(v, d, r.take(v * d)));

    let take = |layers: &mut Vec<Vec<f32>>, i: usize| std::mem::take(&mut layers[i]);
    let blocks = (0..l)
        .map(|i| Block {
            input_norm: take(&mut rms_att, i).into(),
            attn: Attention {
                wq: interleaved_to_rotate_half(&Matrix::from_f32(q, d, take(&mut wq, i)), hs),
                wk: interleaved_to_rotate_half(&Matrix::from_f32(kv, d, take(&mut wk, i)), hs),
                wv: Matrix::from_f32(kv, d, take(&mut wv, i)),
                wo: Matrix::from_f32(d, q, take(&mut wo, i)),
            },
            post_attention_norm: take(&mut rms_ffn, i).into(),
            mlp: Mlp {
                gate: Matrix::from_f32(f, d, take(&mut w1, i)),
                up: Matrix::from_f32(f, d, take(&mut w3, i)),
                down: Matrix::from_f32(d, f, take(&mut w2, i)),
            },
        })
        .collect();
    Ok(Model { config, embed, blocks, norm: norm.into(), lm_head })
}

/// Read and validate the 7-field header into a (validated) [`Config`].
fn read_header(bytes: &[u8]) -> Result<Config> {
    if bytes.is_empty() {
        return Err(bad("the file is empty".into()));
    }
    if bytes.len() < HEADER_BYTES {
        return Err(bad(format!(
            "the file is {} bytes, shorter than the {HEADER_BYTES}-byte header (truncated)",
            bytes.len()
        )));
    }
    let field =
        |i: usize| i32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
    let positive = |name: &str, value: i32| -> Result<usize> {
        if value > 0 {
            Ok(value as usize)
        } else {
            Err(bad(format!("{name} is {value} in the header; it must be positive")))
        }
    };
    let dim = positive("dim", field(0))?;
    let hidden_dim = positive("hidden_dim", field(1))?;
    let n_layers = positive("n_layers", field(2))?;
    let n_heads = positive("n_heads", field(3))?;
    let n_kv_heads = positive("n_kv_heads", field(4))?;
    let raw_vocab = field(5);
    let max_seq_len = positive("max_seq_len", field(6))?;
    if raw_vocab == 0 {
        return Err(bad("vocab_size is 0 in the header; it must be nonzero".into()));
    }
    // A negative vocab_size is llama2.c's flag for an untied classifier.
    let shared = raw_vocab > 0;
    let vocab = raw_vocab.unsigned_abs() as usize;

    if dim % n_heads != 0 {
        return Err(bad(format!("dim {dim} is not divisible by n_heads {n_heads}")));
    }
    if n_heads % n_kv_heads != 0 {
        return Err(GqaError::HeadsNotDivisible { n_heads, n_kv_heads });
    }
    let mut config = Config::new(dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab, max_seq_len);
    config.tie_word_embeddings = shared;
    config.validate().map_err(|e| match e {
        GqaError::Config(msg) => bad(format!("the header describes a model this engine cannot load: {msg}")),
        other => other,
    })?;
    Ok(config)
}

/// The file must hold exactly the floats the header implies (u128: cannot overflow
/// for any i32 header).
fn check_length(config: &Config, found: usize) -> Result<()> {
    let [d, f, l, v, seq, hs] = [
        config.hidden_size,
        config.intermediate_size,
        config.num_hidden_layers,
        config.vocab_size,
        config.max_position_embeddings,
        config.head_dim(),
    ]
    .map(|x| x as u128);
    let (q, kv) = (config.n_heads() as u128 * hs, config.n_kv_heads() as u128 * hs);
    // rms_att + wq + wk + wv + wo + rms_ffn + w1 + w2 + w3
    let per_layer = d + q * d + 2 * kv * d + d * q + d + 3 * f * d;
    let freq_cis = 2 * seq * (hs / 2);
    let wcls = if config.tie_word_embeddings { 0 } else { v * d };
    let floats = v * d + l * per_layer + d + freq_cis + wcls;
    let expected = HEADER_BYTES as u128 + 4 * floats;
    let found = found as u128;
    let tying = if config.tie_word_embeddings { "shared" } else { "untied" };
    if found < expected {
        Err(bad(format!(
            "truncated: the header implies {expected} bytes ({tying} classifier), found {found}"
        )))
    } else if found > expected {
        Err(bad(format!(
            "the file has {} extra bytes: the header implies {expected} bytes ({tying} classifier), found {found}",
            found - expected
        )))
    } else {
        Ok(())
    }
}

/// Consecutive little-endian f32s (at any alignment). The file length was checked
/// first, so every read fits.
struct Floats<'a> {
    rest: &'a [u8],
}

impl Floats<'_> {
    fn take(&mut self, n: usize) -> Vec<f32> {
        let (head, rest) = self.rest.split_at(4 * n);
        self.rest = rest;
        head.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    fn skip(&mut self, n: usize) {
        self.rest = &self.rest[4 * n..];
    }

    /// `layers` consecutive blocks of `n` floats.
    fn per_layer(&mut self, layers: usize, n: usize) -> Vec<Vec<f32>> {
        (0..layers).map(|_| self.take(n)).collect()
    }
}
