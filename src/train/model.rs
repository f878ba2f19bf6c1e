//! The Llama-style GQA decoder as a differentiable candle graph, for training.
//!
//! It computes exactly what the inference engine (`crate::cpu`) computes:
//! RMSNorm `x * rsqrt(mean(x^2) + eps) * w`, rotate_half RoPE (pair i with
//! i + hd/2, inv_freq = theta^(-2i/hd)), causal attention scaled by 1/sqrt(hd)
//! in which query head h reads key/value head h / (H/G), SwiGLU
//! `down(silu(gate x) * up x)`, and a classifier tied to the embedding.
//!
//! Only candle ops with a backward pass are used (the fused RmsNorm, softmax and
//! rope kernels of candle-nn have none).

use candle_core::{Device, Result, Tensor, Var, D};

use crate::config::Config;
use crate::model::{Attention, Block, Mlp, Model};
use crate::tensor::{Matrix, Shared};

/// One decoder layer's trainable weights (hd = head_dim, H = n_heads, G = n_kv_heads).
pub struct LayerVars {
    pub input_norm: Var,          // (dim)
    pub wq: Var,                  // (H*hd, dim)
    pub wk: Var,                  // (G*hd, dim)
    pub wv: Var,                  // (G*hd, dim)
    pub wo: Var,                  // (dim, H*hd)
    pub post_attention_norm: Var, // (dim)
    pub gate: Var,                // (ffn, dim)
    pub up: Var,                  // (ffn, dim)
    pub down: Var,                // (dim, ffn)
}

/// The trainable model: candle `Var`s in the layout of [`Model`], tied embeddings.
pub struct TrainModel {
    pub config: Config,
    pub embed: Var, // (vocab, dim), also the classifier
    pub layers: Vec<LayerVars>,
    pub norm: Var, // (dim)
}

impl TrainModel {
    /// Trainable copies of `model`'s weights (as f32). The model must be tied.
    pub fn from_model(model: &Model) -> Result<TrainModel> {
        if !model.config.tie_word_embeddings {
            candle_core::bail!("training needs tie_word_embeddings = true");
        }
        let dev = Device::Cpu;
        let mat = |m: &Matrix| Var::from_tensor(&Tensor::from_vec(m.to_f32_vec(), (m.rows, m.cols), &dev)?);
        let vec = |v: &[f32]| Var::from_tensor(&Tensor::from_slice(v, v.len(), &dev)?);
        let layers = model
            .blocks
            .iter()
            .map(|b| {
                Ok(LayerVars {
                    input_norm: vec(&b.input_norm)?,
                    wq: mat(&b.attn.wq)?,
                    wk: mat(&b.attn.wk)?,
                    wv: mat(&b.attn.wv)?,
                    wo: mat(&b.attn.wo)?,
                    post_attention_norm: vec(&b.post_attention_norm)?,
                    gate: mat(&b.mlp.gate)?,
                    up: mat(&b.mlp.up)?,
                    down: mat(&b.mlp.down)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TrainModel { config: model.config.clone(), embed: mat(&model.embed)?, layers, norm: vec(&model.norm)? })
    }

    /// The current weights as an engine [`Model`] (f32).
    pub fn to_model(&self) -> Result<Model> {
        let mat = |v: &Var| -> Result<Matrix> {
            let (rows, cols) = v.dims2()?;
            Ok(Matrix::from_f32(rows, cols, v.as_tensor().flatten_all()?.to_vec1()?))
        };
        let vec = |v: &Var| v.as_tensor().to_vec1::<f32>().map(Shared::from);
        let blocks = self
            .layers
            .iter()
            .map(|l| {
                Ok(Block {
                    input_norm: vec(&l.input_norm)?,
                    attn: Attention { wq: mat(&l.wq)?, wk: mat(&l.wk)?, wv: mat(&l.wv)?, wo: mat(&l.wo)? },
                    post_attention_norm: vec(&l.post_attention_norm)?,
                    mlp: Mlp { gate: mat(&l.gate)?, up: mat(&l.up)?, down: mat(&l.down)? },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Model { config: self.config.clone(), embed: mat(&self.embed)?, blocks, norm: vec(&self.norm)?, lm_head: None })
    }

    /// Every trainable variable with a stable name (for the optimizer state).
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let mut out = vec![("embed".to_string(), self.embed.clone())];
        for (i, l) in self.layers.iter().enumerate() {
            for (name, v) in [
                ("input_norm", &l.input_norm),
                ("wq", &l.wq),
                ("wk", &l.wk),
                ("wv", &l.wv),
                ("wo", &l.wo),
                ("post_attention_norm", &l.post_attention_norm),
                ("gate", &l.gate),
                ("up", &l.up),
                ("down", &l.down),
            ] {
                out.push((format!("layers.{i}.{name}"), v.clone()));
            }
        }
        out.push(("norm".to_string(), self.norm.clone()));
        out
    }

    /// Logits (B, T, vocab) for token ids (B, T), positions 0..T.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let c = &self.config;
        let (b, t) = ids.dims2()?;
        let (h, g, hd) = (c.n_heads(), c.n_kv_heads(), c.head_dim());
        let rope = Rope::new(hd, c.rope_theta, t, ids.device())?;
        let mask = causal_mask(t, ids.device())?; // (T, T)
        let scale = 1.0 / (hd as f64).sqrt();

        let mut x = self.embed.as_tensor().embedding(&ids.flatten_all()?)?; // (B*T, dim)
        for l in &self.layers {
            // Attention block.
            let xn = rms_norm(&x, &l.input_norm, c.rms_norm_eps)?;
            let heads = |w: &Var, n: usize| -> Result<Tensor> {
                // (B*T, n*hd) -> (B, n, T, hd)
                linear(&xn, w)?.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()
            };
            let q = rope.apply(&heads(&l.wq, h)?)?; // (B, H, T, hd)
            let k = repeat_kv(&rope.apply(&heads(&l.wk, g)?)?, h / g)?; // (B, H, T, hd)
            let v = repeat_kv(&heads(&l.wv, g)?, h / g)?; // (B, H, T, hd)
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?; // (B, H, T, T)
            let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let att = probs.matmul(&v)?.transpose(1, 2)?.reshape((b * t, h * hd))?; // (B*T, H*hd)
            x = (x + linear(&att, &l.wo)?)?;
            // SwiGLU block.
            let xn = rms_norm(&x, &l.post_attention_norm, c.rms_norm_eps)?;
            let ff = (linear(&xn, &l.gate)?.silu()? * linear(&xn, &l.up)?)?; // (B*T, ffn)
            x = (x + linear(&ff, &l.down)?)?;
        }
        let x = rms_norm(&x, &self.norm, c.rms_norm_eps)?;
        linear(&x, &self.embed)?.reshape((b, t, c.vocab_size))
    }

    /// Mean next-token cross-entropy (nats/token) of `targets` (B, T) given `ids` (B, T).
    pub fn loss(&self, ids: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let logits = self.forward(ids)?;
        let (b, t, v) = logits.dims3()?;
        candle_nn::loss::cross_entropy(&logits.reshape((b * t, v))?, &targets.flatten_all()?)
    }
}

/// x (N, in) times w (out, in) transposed: (N, out).
fn linear(x: &Tensor, w: &Var) -> Result<Tensor> {
    x.matmul(&w.as_tensor().t()?)
}

/// RMSNorm over the last dim: x * rsqrt(mean(x^2) + eps) * w.
fn rms_norm(x: &Tensor, w: &Var, eps: f32) -> Result<Tensor> {
    let inv = (x.sqr()?.mean_keepdim(D::Minus1)? + eps as f64)?.sqrt()?.recip()?;
    x.broadcast_mul(&inv)?.broadcast_mul(w.as_tensor())
}

/// Key/value heads (B, G, T, hd) repeated for their groups: (B, G*r, T, hd),
/// so query head h reads key/value head h / r.
fn repeat_kv(x: &Tensor, r: usize) -> Result<Tensor> {
    if r == 1 {
        return Ok(x.clone());
    }
    let (b, g, t, hd) = x.dims4()?;
    x.unsqueeze(2)?.broadcast_as((b, g, r, t, hd))?.contiguous()?.reshape((b, g * r, t, hd))
}

/// 0 on and below the diagonal, -inf above: (T, T).
fn causal_mask(t: usize, dev: &Device) -> Result<Tensor> {
    let values: Vec<f32> =
        (0..t).flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY })).collect();
    Tensor::from_vec(values, (t, t), dev)
}

/// rotate_half RoPE tables for positions 0..T: cos and sin of (T, hd), where
/// column i and i + hd/2 share the angle pos * theta^(-2i/hd).
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(hd: usize, theta: f32, t: usize, dev: &Device) -> Result<Rope> {
        // The engine's angles (rope::Rope), each pair's repeated for both halves of a head.
        let rope = crate::rope::Rope::new(hd, theta);
        let mut cos = Vec::with_capacity(t * hd);
        let mut sin = Vec::with_capacity(t * hd);
        for pos in 0..t {
            let (c, s) = rope.angles(pos);
            for _ in 0..2 {
                cos.extend_from_slice(&c);
                sin.extend_from_slice(&s);
            }
        }
        Ok(Rope { cos: Tensor::from_vec(cos, (t, hd), dev)?, sin: Tensor::from_vec(sin, (t, hd), dev)? })
    }

    /// x (B, n, T, hd) -> x * cos + rotate_half(x) * sin.
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let hd = x.dim(D::Minus1)?;
        let (lo, hi) = (x.narrow(D::Minus1, 0, hd / 2)?, x.narrow(D::Minus1, hd / 2, hd / 2)?);
        let rotated = Tensor::cat(&[&hi.neg()?, &lo], D::Minus1)?;
        x.broadcast_mul(&self.cos)? + rotated.broadcast_mul(&self.sin)?
    }
}
