//! AdamW (decoupled weight decay) with a saved state, the warmup + cosine
//! learning-rate schedule and global-norm gradient clipping.
//!
//! candle's own AdamW keeps its moments private, so a run could not resume
//! from a checkpoint with them; this one is the same update with its state
//! exposed as named tensors.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Tensor, Var};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AdamWParams {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled weight decay, applied to matrices only (not norms).
    pub weight_decay: f64,
}

pub struct AdamW {
    params: AdamWParams,
    /// (name, variable, first moment, second moment)
    vars: Vec<(String, Var, Tensor, Tensor)>,
    /// Updates taken so far (for bias correction).
    pub t: usize,
}

impl AdamW {
    pub fn new(named_vars: Vec<(String, Var)>, params: AdamWParams) -> Result<AdamW> {
        let vars = named_vars
            .into_iter()
            .map(|(name, v)| {
                let zeros = v.as_tensor().zeros_like()?;
                Ok((name, v, zeros.clone(), zeros))
            })
            .collect::<Result<_>>()?;
        Ok(AdamW { params, vars, t: 0 })
    }

    /// One update with learning rate `lr`; gradients are first scaled so their
    /// global L2 norm is at most `clip`. Returns the norm before clipping.
    pub fn step(&mut self, grads: &GradStore, lr: f64, clip: f64) -> Result<f64> {
        let mut sq = 0.0f64;
        for (_, v, _, _) in &self.vars {
            if let Some(g) = grads.get(v.as_tensor()) {
                sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        let norm = sq.sqrt();
        let scale = if norm > clip { clip / norm } else { 1.0 };
        self.t += 1;
        let p = &self.params;
        let (bc1, bc2) = (1.0 - p.beta1.powi(self.t as i32), 1.0 - p.beta2.powi(self.t as i32));
        for (_, v, m, s) in &mut self.vars {
            let Some(g) = grads.get(v.as_tensor()) else { continue };
            let g = (g * scale)?;
            *m = ((&*m * p.beta1)? + (&g * (1.0 - p.beta1))?)?;
            *s = ((&*s * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let update = ((&*m / bc1)? / ((&*s / bc2)?.sqrt()? + p.eps)?)?;
            let decay = if v.rank() == 2 { 1.0 - lr * p.weight_decay } else { 1.0 };
            v.set(&((v.as_tensor() * decay)? - (update * lr)?)?)?;
        }
        Ok(norm)
    }

    /// Save the moments to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for (name, _, m, s) in &self.vars {
            map.insert(format!("{name}.m"), m.clone());
            map.insert(format!("{name}.v"), s.clone());
        }
        candle_core::safetensors::save(&map, path)
    }

    /// Load the moments saved by [`AdamW::save`]; `t` is restored by the caller.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let mut map = candle_core::safetensors::load(path, &Device::Cpu)?;
        for (name, _, m, s) in &mut self.vars {
            let mut take = |key: String| {
                map.remove(&key).ok_or_else(|| candle_core::Error::Msg(format!("optimizer state lacks {key}")))
            };
            *m = take(format!("{name}.m"))?;
            *s = take(format!("{name}.v"))?;
        }
        Ok(())
    }
}

/// Linear warmup to `peak` over `warmup` steps, then cosine decay to `min` at `total`.
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64, min: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    min + 0.5 * (peak - min) * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}
