//! The Llama-style decoder's weights: one struct per block, shapes from [`Config`].
//!
//! ```text
//! tokens -> embed_tokens -> L x Block[ x += Attention(RMSNorm(x)); x += Mlp(RMSNorm(x)) ]
//!        -> RMSNorm -> lm_head -> logits
//! ```
//! Matrices are stored (out x in) as in Hugging Face checkpoints. q/k rows use
//! Hugging Face's rotate_half RoPE layout (llama2.c imports are permuted into it).

use crate::config::Config;
use crate::error::Result;
use crate::rng::Rng;
use crate::tensor::{DType, Matrix, Shared};

/// Grouped-query attention projections. With hd = head_dim, H = n_heads, G = n_kv_heads:
#[derive(Clone, Debug, PartialEq)]
pub struct Attention {
    pub wq: Matrix, // (H*hd, dim)
    pub wk: Matrix, // (G*hd, dim)
    pub wv: Matrix, // (G*hd, dim)
    pub wo: Matrix, // (dim, H*hd)
}

/// SwiGLU feed-forward: down(silu(gate(x)) * up(x)).
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    pub gate: Matrix, // (ffn, dim)
    pub up: Matrix,   // (ffn, dim)
    pub down: Matrix, // (dim, ffn)
}

#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub input_norm: Shared<Vec<f32>>, // (dim)
    pub attn: Attention,
    pub post_attention_norm: Shared<Vec<f32>>, // (dim)
    pub mlp: Mlp,
}

/// Every tensor is [`Shared`]: cloning a model shares its weights (see tensor.rs).
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub config: Config,
    pub embed: Matrix, // (vocab, dim)
    pub blocks: Vec<Block>,
    pub norm: Shared<Vec<f32>>, // (dim)
    /// `None` when tied to `embed` (tie_word_embeddings).
    pub lm_head: Option<Matrix>, // (vocab, dim)
}

impl Model {
    /// The classifier: `lm_head`, or the embedding when tied.
    pub fn classifier(&self) -> &Matrix {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Bytes held by the weights (the norms are f32).
    pub fn weight_bytes(&self) -> usize {
        let mut bytes = self.embed.bytes() + self.norm.len() * 4;
        if let Some(head) = &self.lm_head {
            bytes += head.bytes();
        }
        for b in &self.blocks {
            bytes += (b.input_norm.len() + b.post_attention_norm.len()) * 4;
            for m in [&b.attn.wq, &b.attn.wk, &b.attn.wv, &b.attn.wo, &b.mlp.gate, &b.mlp.up, &b.mlp.down] {
                bytes += m.bytes();
            }
        }
        bytes
    }

    /// Bytes a decode step streams from weights: every block matrix, the final
    /// norm and the classifier, plus one embedding row.
    pub fn weight_bytes_per_token(&self) -> usize {
        let emb_row = self.config.hidden_size * self.embed.dtype().size();
        let classifier = self.classifier().bytes();
        self.weight_bytes() - self.embed.bytes() - self.lm_head.as_ref().map_or(0, |h| h.bytes())
            + emb_row
            + classifier
    }

    pub fn dtype(&self) -> DType {
        self.embed.dtype()
    }

    /// The same model with every matrix stored as `dtype`.
    /// [`Model::to_dtype`], taking each matrix from `done` (an earlier conversion of
    /// `from`) where `from` holds the very same one (see [`Matrix::shares`]): after a
    /// change of G only wk and wv are new, so only they are converted again.
    pub fn to_dtype_reusing(&self, dtype: DType, from: &Model, done: &Model) -> Model {
        let same_shape = from.blocks.len() == self.blocks.len() && done.blocks.len() == self.blocks.len();
        let pick = |m: &Matrix, f: &Matrix, d: &Matrix| if same_shape && Matrix::shares(m, f) && d.dtype() == dtype { d.clone() } else { m.to_dtype(dtype) };
        let mut out = self.clone();
        out.embed = pick(&self.embed, &from.embed, &done.embed);
        out.lm_head = match (&self.lm_head, &from.lm_head, &done.lm_head) {
            (Some(m), Some(f), Some(d)) => Some(pick(m, f, d)),
            (m, _, _) => m.as_ref().map(|m| m.to_dtype(dtype)),
        };
        if same_shape {
            for ((b, f), d) in out.blocks.iter_mut().zip(&from.blocks).zip(&done.blocks) {
                let (a, fa, da) = (&mut b.attn, &f.attn, &d.attn);
                (a.wq, a.wk, a.wv, a.wo) = (pick(&a.wq, &fa.wq, &da.wq), pick(&a.wk, &fa.wk, &da.wk), pick(&a.wv, &fa.wv, &da.wv), pick(&a.wo, &fa.wo, &da.wo));
                let (m, fm, dm) = (&mut b.mlp, &f.mlp, &d.mlp);
                (m.gate, m.up, m.down) = (pick(&m.gate, &fm.gate, &dm.gate), pick(&m.up, &fm.up, &dm.up), pick(&m.down, &fm.down, &dm.down));
            }
            out
        } else {
            self.to_dtype(dtype)
        }
    }

    pub fn to_dtype(&self, dtype: DType) -> Model {
        let mut m = self.clone();
        m.embed = m.embed.to_dtype(dtype);
        m.lm_head = m.lm_head.map(|h| h.to_dtype(dtype));
        for b in &mut m.blocks {
            for w in [
                &mut b.attn.wq,
                &mut b.attn.wk,
                &mut b.attn.wv,
                &mut b.attn.wo,
                &mut b.mlp.gate,
                &mut b.mlp.up,
                &mut b.mlp.down,
            ] {
                *w = w.to_dtype(dtype);
            }
        }
        m
    }

    /// A model with random weights (normal, std 0.02; norms 1), for speed presets
    /// and tests. The config is validated first, so nothing absurd is allocated.
    pub fn random(config: &Config, seed: u64, dtype: DType) -> Result<Model> {
        config.validate()?;
        let mut rng = Rng::new(seed);
        let (d, f, v) = (config.hidden_size, config.intermediate_size, config.vocab_size);
        let hd = config.head_dim();
        let (q, kv) = (config.n_heads() * hd, config.n_kv_heads() * hd);
        let mut mat = |rows: usize, cols: usize| {
            let values = (0..rows * cols).map(|_| 0.02 * rng.normal()).collect();
            Matrix::from_f32(rows, cols, values).to_dtype(dtype)
        };
        let embed = mat(v, d);
        let blocks = (0..config.num_hidden_layers)
            .map(|_| Block {
                input_norm: vec![1.0; d].into(),
                attn: Attention { wq: mat(q, d), wk: mat(kv, d), wv: mat(kv, d), wo: mat(d, q) },
                post_attention_norm: vec![1.0; d].into(),
                mlp: Mlp { gate: mat(f, d), up: mat(f, d), down: mat(d, f) },
            })
            .collect();
        let lm_head = (!config.tie_word_embeddings).then(|| mat(v, d));
        Ok(Model { config: config.clone(), embed, blocks, norm: vec![1.0; d].into(), lm_head })
    }
}
