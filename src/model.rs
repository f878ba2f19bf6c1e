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
use crate::tensor::{DType, Data, Matrix, Shared};

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
        let norms: usize = self.blocks.iter().map(|b| b.input_norm.len() + b.post_attention_norm.len()).sum::<usize>() + self.norm.len();
        self.matrices().iter().map(|m| m.bytes()).sum::<usize>() + norms * 4
    }

    /// Bytes a decode step streams from weights: every block matrix, the final
    /// norm and the classifier, plus one embedding row.
    pub fn weight_bytes_per_token(&self) -> usize {
        let emb_row = self.embed.bytes() / self.embed.rows.max(1);
        let classifier = self.classifier().bytes();
        self.weight_bytes() - self.embed.bytes() - self.lm_head.as_ref().map_or(0, |h| h.bytes())
            + emb_row
            + classifier
    }

    pub fn dtype(&self) -> DType {
        self.embed.dtype()
    }

    /// How the weights are stored, for reports: "f32", "f16" or a GGUF block format
    /// such as "q4_1", the embedding's added where it differs ("q4_1, embedding q8_0").
    pub fn storage(&self) -> String {
        let blocks = self.blocks.first().map_or(self.embed.format(), |b| b.attn.wq.format());
        match self.embed.format() {
            e if e == blocks => blocks.name().into(),
            e => format!("{}, embedding {}", blocks.name(), e.name()),
        }
    }

    /// Every weight matrix, in a fixed order: the embedding, the classifier when it is
    /// not tied, then each block's wq, wk, wv, wo, gate, up and down.
    fn matrices(&self) -> Vec<&Matrix> {
        let blocks = self.blocks.iter().flat_map(|b| [&b.attn.wq, &b.attn.wk, &b.attn.wv, &b.attn.wo, &b.mlp.gate, &b.mlp.up, &b.mlp.down]);
        [&self.embed].into_iter().chain(&self.lm_head).chain(blocks).collect()
    }

    /// [`Model::matrices`], to change them.
    fn matrices_mut(&mut self) -> Vec<&mut Matrix> {
        let blocks = self.blocks.iter_mut().flat_map(|b| {
            let (a, m) = (&mut b.attn, &mut b.mlp);
            [&mut a.wq, &mut a.wk, &mut a.wv, &mut a.wo, &mut m.gate, &mut m.up, &mut m.down]
        });
        [&mut self.embed].into_iter().chain(&mut self.lm_head).chain(blocks).collect()
    }

    /// The same model with every matrix stored as `dtype`.
    pub fn to_dtype(&self, dtype: DType) -> Model {
        let mut m = self.clone();
        for w in m.matrices_mut() {
            *w = w.to_dtype(dtype);
        }
        m
    }

    /// [`Model::to_dtype`] for the matrices stored as floats: block-quantized ones keep
    /// their blocks (the GPU engine reads them in place).
    pub fn floats_to(&self, dtype: DType) -> Model {
        let mut m = self.clone();
        for w in m.matrices_mut().into_iter().filter(|w| !matches!(w.data, Data::Quantized { .. })) {
            *w = w.to_dtype(dtype);
        }
        m
    }

    /// [`Model::to_dtype`], taking each matrix from `done` (`from` stored as `dtype`)
    /// where `from` holds the very same one (see [`Matrix::shares`]): after a change
    /// of G only wk and wv are new, so only they are converted again.
    pub fn to_dtype_reusing(&self, dtype: DType, from: &Model, done: &Model) -> Model {
        let (from, done) = (from.matrices(), done.matrices());
        let paired = from.len() == done.len(); // done is from converted, matrix for matrix
        let mut m = self.clone();
        for (i, w) in m.matrices_mut().into_iter().enumerate() {
            let reuse = paired && i < from.len() && Matrix::shares(w, from[i]) && done[i].dtype() == dtype;
            *w = if reuse { done[i].clone() } else { w.to_dtype(dtype) };
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
