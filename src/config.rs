//! The model's shape, read from (and written to) a Hugging Face `config.json`.
//!
//! Names follow the Llama config: `num_attention_heads` is H (query heads) and
//! `num_key_value_heads` is G (key/value heads). MHA is G = H, MQA is G = 1.

use serde::{Deserialize, Serialize};

use crate::error::{GqaError, Result};
use crate::tensor::KvDType;

/// Anything larger than this many parameters is refused before allocating.
pub const MAX_PARAMS: u128 = 1 << 34;
/// Context lengths above this are refused (a KV cache that long is not a demo).
pub const MAX_CONTEXT: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    /// H: query heads.
    pub num_attention_heads: usize,
    /// G: key/value heads. Absent in old configs, meaning MHA (G = H).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f32,
    #[serde(default = "default_theta")]
    pub rope_theta: f32,
    #[serde(default = "default_context")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_bos")]
    pub bos_token_id: u32,
    #[serde(default = "default_eos")]
    pub eos_token_id: TokenIds,
    /// Optional explicit head size; Llama derives it as hidden_size / H.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    #[serde(default = "default_act", skip_serializing)]
    pub hidden_act: String,
    #[serde(default, skip_serializing)]
    pub rope_scaling: Option<serde_json::Value>,
}

/// `eos_token_id` is a single id or a list of ids in Hugging Face configs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

fn default_eps() -> f32 {
    1e-5
}
fn default_theta() -> f32 {
    10000.0
}
fn default_context() -> usize {
    2048
}
fn default_bos() -> u32 {
    1
}
fn default_eos() -> TokenIds {
    TokenIds::One(2)
}
fn default_act() -> String {
    "silu".into()
}

impl Config {
    /// A Llama config with the usual defaults; callers then validate it.
    pub fn new(
        hidden_size: usize,
        intermediate_size: usize,
        num_hidden_layers: usize,
        n_heads: usize,
        n_kv_heads: usize,
        vocab_size: usize,
        max_position_embeddings: usize,
    ) -> Config {
        Config {
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads: n_heads,
            num_key_value_heads: Some(n_kv_heads),
            vocab_size,
            rms_norm_eps: default_eps(),
            rope_theta: default_theta(),
            max_position_embeddings,
            tie_word_embeddings: false,
            bos_token_id: default_bos(),
            eos_token_id: default_eos(),
            head_dim: None,
            hidden_act: default_act(),
            rope_scaling: None,
        }
    }

    /// Parse and validate the text of a config.json.
    pub fn from_json(text: &str) -> Result<Config> {
        let config: Config =
            serde_json::from_str(text).map_err(|e| GqaError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_json(&self) -> String {
        let mut value = serde_json::to_value(self).expect("config serializes");
        let obj = value.as_object_mut().expect("config is an object");
        obj.insert("architectures".into(), serde_json::json!(["LlamaForCausalLM"]));
        obj.insert("model_type".into(), serde_json::json!("llama"));
        obj.insert("hidden_act".into(), serde_json::json!("silu"));
        serde_json::to_string_pretty(&value).expect("config serializes")
    }

    /// H, the number of query heads.
    pub fn n_heads(&self) -> usize {
        self.num_attention_heads
    }

    /// G, the number of key/value heads.
    pub fn n_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Query heads that share one key/value head: H / G.
    pub fn group_size(&self) -> usize {
        self.n_heads() / self.n_kv_heads()
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.eos_token_id {
            TokenIds::One(id) => vec![*id],
            TokenIds::Many(ids) => ids.clone(),
        }
    }

    /// The valid choices of G for this model: the divisors of H.
    pub fn group_choices(&self) -> Vec<usize> {
        divisors(self.n_heads())
    }

    /// Parameter count, in u128 and saturating: sizes from a file can be as large as
    /// usize allows (`validate` refuses anything above [`MAX_PARAMS`]).
    pub fn n_params(&self) -> u128 {
        let [d, f, l, v, hd, h, g] = [
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.vocab_size,
            self.head_dim(),
            self.n_heads(),
            self.n_kv_heads(),
        ]
        .map(|x| x as u128);
        let mul = |factors: &[u128]| factors.iter().fold(1, |product: u128, &x| product.saturating_mul(x));
        let sum = |terms: &[u128]| terms.iter().fold(0, |total: u128, &x| total.saturating_add(x));
        let (q, kv) = (mul(&[h, hd]), mul(&[g, hd]));
        // wq, wk + wv, wo, gate + up + down, two norms.
        let per_layer = sum(&[mul(&[d, q]), mul(&[2, d, kv]), mul(&[q, d]), mul(&[3, d, f]), mul(&[2, d])]);
        let head = if self.tie_word_embeddings { 0 } else { mul(&[v, d]) };
        sum(&[mul(&[v, d]), mul(&[l, per_layer]), d, head])
    }

    /// Check every size before anything is allocated from it.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(GqaError::Config(msg));
        for (name, value) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.n_kv_heads()),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("head_dim", self.head_dim()),
        ] {
            if value == 0 {
                return bad(format!("{name} is 0; it must be at least 1"));
            }
        }
        if self.max_position_embeddings > MAX_CONTEXT {
            return bad(format!(
                "max_position_embeddings {} is larger than the supported {MAX_CONTEXT}",
                self.max_position_embeddings
            ));
        }
        if !self.n_heads().is_multiple_of(self.n_kv_heads()) {
            return Err(GqaError::HeadsNotDivisible {
                n_heads: self.n_heads(),
                n_kv_heads: self.n_kv_heads(),
            });
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(format!("head_dim {} must be even for RoPE", self.head_dim()));
        }
        if self.n_params() > MAX_PARAMS {
            return bad(format!(
                "these sizes mean {} parameters, more than the supported {MAX_PARAMS}",
                self.n_params()
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad(format!("rms_norm_eps must be a positive number, got {}", self.rms_norm_eps));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return bad(format!("rope_theta must be a number above 1, got {}", self.rope_theta));
        }
        if self.hidden_act != "silu" {
            return bad(format!("hidden_act '{}' is not supported (only silu)", self.hidden_act));
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return bad("rope_scaling is not supported; only plain RoPE is".into());
        }
        if self.bos_token_id as usize >= self.vocab_size {
            return bad(format!(
                "bos_token_id {} is outside vocab_size {}",
                self.bos_token_id, self.vocab_size
            ));
        }
        Ok(())
    }
}

pub fn divisors(n: usize) -> Vec<usize> {
    (1..=n).filter(|d| n.is_multiple_of(*d)).collect()
}

/// Bytes of the KV cache: keys and values for every layer, KV head and position.
///
/// `2 x layers x G x positions x bytes per head vector` (head_dim elements, plus a
/// scale for int8: see [`KvDType::vector_bytes`]). Every front end (CLI, bench, page)
/// reports memory through this one function.
pub fn kv_cache_bytes(config: &Config, n_kv_heads: usize, positions: usize, kv: KvDType) -> usize {
    2 * config.num_hidden_layers * n_kv_heads * positions * kv.vector_bytes(config.head_dim())
}

/// The most KV-cache memory an engine allocates: in the browser all of wasm32's
/// 4 GiB must also hold the weights, so half of it; natively 16 GiB.
pub const KV_BUDGET_BYTES: u64 = if cfg!(target_arch = "wasm32") { 2 << 30 } else { 16 << 30 };

/// The KV cache positions an engine gets when the front end does not say:
/// the model's whole context, up to this many.
pub const DEFAULT_CAPACITY: usize = 4096;

/// [`DEFAULT_CAPACITY`] for this model: min(its context, 4096).
pub fn default_capacity(config: &Config) -> usize {
    config.max_position_embeddings.min(DEFAULT_CAPACITY)
}

/// [`kv_cache_bytes`] in u64 (on wasm32 `usize` has 32 bits), or None past u64.
pub fn kv_cache_bytes_u64(config: &Config, n_kv_heads: usize, positions: usize, kv: KvDType) -> Option<u64> {
    [config.num_hidden_layers, n_kv_heads, positions, kv.vector_bytes(config.head_dim())]
        .iter()
        .try_fold(2u64, |acc, &x| acc.checked_mul(x as u64))
}

/// [`kv_cache_bytes`] for a cache about to be allocated, computed without overflow
/// and checked against [`KV_BUDGET_BYTES`] first.
pub fn kv_cache_bytes_checked(config: &Config, n_kv_heads: usize, positions: usize, kv: KvDType) -> Result<usize> {
    match kv_cache_bytes_u64(config, n_kv_heads, positions, kv).filter(|&b| b <= KV_BUDGET_BYTES) {
        Some(b) => Ok(b as usize),
        None => Err(GqaError::Invalid(format!(
            "a KV cache of {positions} positions ({} layers x G = {n_kv_heads} x head_dim {} in {}, keys and values) needs more than the memory budget of {} GiB; use a shorter context",
            config.num_hidden_layers,
            config.head_dim(),
            kv.name(),
            KV_BUDGET_BYTES >> 30
        ))),
    }
}
