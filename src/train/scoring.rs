//! How the recipe scores each variant: loss, perplexity, and KL and top-1
//! agreement against the base on val.txt under two protocols (short windows and
//! long ones), each evaluation cached in the work folder; and the CPU decode
//! speed of each G.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::trainer::{read_json, write_json, RunState};
use crate::bench;
use crate::convert::Method;
use crate::error::{GqaError, Result};
use crate::eval::{evaluate, EvalReport, Reference};
use crate::model::Model;
use crate::session::Session;
use crate::tensor::DType;
use crate::tokenizer::Tokenizer;

/// One GQA variant: G key/value heads built by `method`, uptrained for
/// `alpha_pct` percent of the base's steps.
#[derive(Clone, Copy, Debug)]
pub struct Variant {
    pub groups: usize,
    pub method: Method,
    pub alpha_pct: usize,
}

impl Variant {
    /// Also its folder in the work folder.
    pub fn name(&self) -> String {
        format!("g{}-{}-a{}", self.groups, self.method, self.alpha_pct)
    }
}

/// One row of results.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VariantResult {
    pub name: String,
    pub label: String,
    pub n_kv_heads: usize,
    pub method: String,
    pub alpha_pct: usize,
    pub params: u128,
    pub train_steps: usize,
    pub train_tokens: usize,
    pub train_wall_s: f64,
    /// Windows of `seq_len` advancing by half (every token scored once).
    pub eval: EvalReport,
    pub nats_per_byte: f64,
    /// Windows of `long_seq_len`, only their second halves scored.
    pub eval_long: EvalReport,
    pub decode_tok_s_ctx256: f64,
    pub decode_tok_s_ctx2048: f64,
}

/// An evaluation text and how it is cut (windows of `window`, targets scored
/// from `score_from`), with the base's log-probabilities at the scored positions
/// once recorded, so that the base runs once rather than once per variant.
pub struct Protocol {
    /// BOS + tokens of val.txt.
    pub ids: Vec<u32>,
    window: usize,
    score_from: usize,
    base_lp: Option<Vec<f32>>,
}

impl Protocol {
    pub fn new(ids: Vec<u32>, window: usize, score_from: usize) -> Protocol {
        Protocol { ids, window, score_from, base_lp: None }
    }

    /// `evaluate` of `model`, cached in `work` as eval/`key`.json; with
    /// `with_base`, against the base's log-probabilities (recorded on first need).
    fn cached_eval(&mut self, work: &Path, base: &Model, model: &Model, key: &str, with_base: bool) -> Result<EvalReport> {
        let path = work.join("eval").join(format!("{key}.json"));
        if path.exists() {
            return read_json(&path);
        }
        eprintln!("evaluating {key} on {} tokens of val.txt, windows of {} ...", self.ids.len() - 1, self.window);
        let run = |model: &Model, reference: Reference, record: Option<&mut Vec<f32>>| -> Result<EvalReport> {
            let mut s = Session::cpu(model.clone(), None, Some(self.window))?;
            evaluate(s.backend(), reference, &self.ids, self.window, self.score_from, record, &mut |_, _| {})
        };
        if self.base_lp.is_none() && with_base {
            let mut lp = Vec::new();
            run(base, Reference::None, Some(&mut lp))?;
            self.base_lp = Some(lp);
        }
        let report = match (with_base, self.base_lp.as_deref()) {
            (true, Some(lp)) => run(model, Reference::LogProbs(lp), None)?,
            // The base itself: record its log-probabilities while scoring it, unless held already.
            _ if self.base_lp.is_some() => run(model, Reference::None, None)?,
            _ => {
                let mut lp = Vec::new();
                let report = run(model, Reference::None, Some(&mut lp))?;
                self.base_lp = Some(lp);
                report
            }
        };
        std::fs::create_dir_all(path.parent().expect("has parent")).map_err(|e| GqaError::io(path.display(), e))?;
        write_json(&path, &report)?;
        Ok(report)
    }
}

/// What every variant is scored with: the short and the long protocol, the
/// base they compare with, and the decode speed of each G.
pub struct Evaluation<'a> {
    work: &'a Path,
    base: &'a Model,
    pub short: Protocol,
    pub long: Protocol,
    /// Bytes of val.txt in the short protocol's text (for nats/byte).
    pub bytes: usize,
    /// (G, decode tok/s at the short window, at the base's context).
    speed: Vec<(usize, f64, f64)>,
}

impl<'a> Evaluation<'a> {
    /// Measures the decode speeds; evaluations run (or load from `work`) as variants are scored.
    pub fn new(work: &'a Path, base: &'a Model, tokenizer: &Tokenizer, short: Protocol, long: Protocol) -> Result<Self> {
        let bytes = tokenizer.decode(&short.ids[1..])?.len();
        let speed = decode_speed(base, short.window)?;
        Ok(Evaluation { work, base, short, long, bytes, speed })
    }

    /// Score `model` under both protocols: `variant` trained as `state` says,
    /// or with `variant` = `None`, the base itself.
    pub fn score(&mut self, model: &Model, name: &str, variant: Option<Variant>, state: &RunState) -> Result<VariantResult> {
        let with_base = variant.is_some();
        let eval = self.short.cached_eval(self.work, self.base, model, name, with_base)?;
        let eval_long = self.long.cached_eval(self.work, self.base, model, &format!("{name}-long"), with_base)?;
        let g = model.config.n_kv_heads();
        let &(_, s256, s2048) = self.speed.iter().find(|s| s.0 == g).expect("speed measured for every G");
        eprintln!(
            "{name}: {:.4} nats/token (long windows {:.4}), ppl {:.3}, KL {:?}",
            eval.nats_per_token, eval_long.nats_per_token, eval.perplexity, eval.kl_vs_base
        );
        Ok(VariantResult {
            name: name.into(),
            label: bench::label(self.base.config.n_heads(), g),
            n_kv_heads: g,
            method: variant.map_or("-".into(), |v| v.method.to_string()),
            alpha_pct: variant.map_or(0, |v| v.alpha_pct),
            params: model.config.n_params(),
            train_steps: state.step,
            train_tokens: state.tokens_seen,
            train_wall_s: state.elapsed_s,
            nats_per_byte: eval.nats_per_token * eval.tokens as f64 / self.bytes as f64,
            eval,
            eval_long,
            decode_tok_s_ctx256: s256,
            decode_tok_s_ctx2048: s2048,
        })
    }
}

/// Decode tok/s at the short context and at the model's full context for each
/// G (mean-pooled from the base, f16 weights as shipped); the KV cache holds
/// synthetic values. Speed depends on G, not on how the heads were built.
fn decode_speed(base: &Model, short: usize) -> Result<Vec<(usize, f64, f64)>> {
    let model = base.to_dtype(DType::F16);
    let long = model.config.max_position_embeddings;
    let groups = [8, 4, 2, 1];
    let mut session = Session::cpu(model.clone(), None, Some(long))?;
    let (_, rows, _) = bench::run(session.backend(), &model, &groups, &[short, long], 32, 3, &mut |_, _| {})?;
    Ok(groups
        .iter()
        .map(|&g| {
            let at = |ctx| rows.iter().find(|r| r.n_kv_heads == g && r.context == ctx).map_or(0.0, |r| r.decode_tok_s);
            (g, at(short), at(long))
        })
        .collect())
}
