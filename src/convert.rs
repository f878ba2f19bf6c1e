//! Algorithm 4 of the GQA paper: turn a checkpoint with more key/value heads
//! into one with G key/value heads, by pooling the K and V projection heads of
//! each group. The paper's ablation compares three ways to build each new head:
//! `mean` (average the group, the paper's choice), `first` (keep the group's
//! first head) and `random` (fresh initialization).
//!
//! Only the K and V projections change; queries, outputs and MLPs are kept.
//! Converting from MHA (G = H) this way gives query head h the key/value head
//! h / (H/G), matching the grouping the attention kernel uses.
//!
//! A model that is already GQA (SmolLM2: H = 9, 3 key/value heads) can also go up,
//! to any G that its heads divide and that divides H: each key/value head is repeated
//! for the query heads that shared it, which changes nothing the model computes (its
//! logits stay the same) and costs what MHA costs: the paper's baseline, exactly.

use std::fmt;
use std::str::FromStr;

use crate::config::Config;
use crate::error::{GqaError, Result};
use crate::model::Model;
use crate::rng::Rng;
use crate::tensor::Matrix;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Mean,
    First,
    Random,
}

impl FromStr for Method {
    type Err = GqaError;
    fn from_str(s: &str) -> Result<Method> {
        match s {
            "mean" => Ok(Method::Mean),
            "first" => Ok(Method::First),
            "random" => Ok(Method::Random),
            _ => Err(GqaError::Invalid(format!("unknown conversion method '{s}': use mean, first or random"))),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Method::Mean => "mean",
            Method::First => "first",
            Method::Random => "random",
        })
    }
}

/// Standard deviation of freshly initialized heads (Llama's initializer_range).
const INIT_STD: f32 = 0.02;

/// A copy of `model` with `groups` key/value heads, one of [`group_choices`]: pooled
/// by `method` when fewer, repeated when more; equal to the model's, the model is
/// returned unchanged. `seed` drives the `random` method.
pub fn convert(model: &Model, groups: usize, method: Method, seed: u64) -> Result<Model> {
    let n_kv_heads = model.config.n_kv_heads();
    let choices = group_choices(&model.config);
    if !choices.contains(&groups) {
        return Err(GqaError::BadGroups { groups, n_kv_heads, choices });
    }
    let mut out = model.clone();
    if groups == n_kv_heads {
        return Ok(out);
    }
    let mut rng = Rng::new(seed);
    for block in &mut out.blocks {
        let attn = &mut block.attn;
        if groups > n_kv_heads {
            (attn.wk, attn.wv) = (repeat_heads(&attn.wk, n_kv_heads, groups), repeat_heads(&attn.wv, n_kv_heads, groups));
        } else {
            attn.wk = pool_heads(&attn.wk, n_kv_heads, groups, method, &mut rng);
            attn.wv = pool_heads(&attn.wv, n_kv_heads, groups, method, &mut rng);
        }
    }
    out.config.num_key_value_heads = Some(groups);
    Ok(out)
}

/// The G a model converts to: fewer key/value heads, pooled (the divisors of its
/// count), or more, repeated (the multiples of its count that divide H).
pub fn group_choices(config: &Config) -> Vec<usize> {
    let n_kv_heads = config.n_kv_heads();
    let reachable = |g: &usize| n_kv_heads.is_multiple_of(*g) || g.is_multiple_of(n_kv_heads);
    config.group_choices().into_iter().filter(reachable).collect()
}

/// (n_kv_heads * hd, dim) rows of a K or V projection as (groups * hd, dim): new head j
/// is old head j / (groups / n_kv_heads), its rows copied as stored (quantized ones too).
fn repeat_heads(w: &Matrix, n_kv_heads: usize, groups: usize) -> Matrix {
    let (hd, r) = (w.rows / n_kv_heads, groups / n_kv_heads);
    w.select_rows((0..groups * hd).map(|row| (row / hd / r) * hd + row % hd))
}

/// Pool the (n_kv_heads * hd, dim) rows of a K or V projection into
/// (groups * hd, dim): new head j is built from old heads j*r .. (j+1)*r,
/// where r = n_kv_heads / groups.
fn pool_heads(w: &Matrix, n_kv_heads: usize, groups: usize, method: Method, rng: &mut Rng) -> Matrix {
    let head_len = w.rows / n_kv_heads * w.cols; // hd rows of dim values
    let r = n_kv_heads / groups;
    let old = w.to_f32_vec();
    let mut new = vec![0.0f32; groups * head_len];
    for (j, new_head) in new.chunks_exact_mut(head_len).enumerate() {
        match method {
            Method::Mean => {
                for old_head in old[j * r * head_len..(j + 1) * r * head_len].chunks_exact(head_len) {
                    for (n, o) in new_head.iter_mut().zip(old_head) {
                        *n += o;
                    }
                }
                for n in new_head.iter_mut() {
                    *n /= r as f32;
                }
            }
            Method::First => new_head.copy_from_slice(&old[j * r * head_len..(j * r + 1) * head_len]),
            Method::Random => new_head.iter_mut().for_each(|n| *n = INIT_STD * rng.normal()),
        }
    }
    w.like(groups * (w.rows / n_kv_heads), w.cols, new)
}
