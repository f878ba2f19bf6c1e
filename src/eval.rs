//! Quality: perplexity over a text with a sliding window, and, against the
//! unconverted model, the KL divergence and top-1 agreement of the next-token
//! distributions (how much converting to G changed the model).

use serde::{Deserialize, Serialize};

use crate::error::{GqaError, Result};
use crate::backend::{Backend, Logits};

/// Also the cached evaluation of each trained variant (train/scoring.rs).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct EvalReport {
    /// Tokens scored (each predicted from the ones before it).
    pub tokens: usize,
    pub nats_per_token: f64,
    pub perplexity: f64,
    /// Mean KL(base || model) in nats per token, when compared with a base.
    pub kl_vs_base: Option<f64>,
    /// Share of positions where model and base agree on the most likely token.
    pub top1_agreement: Option<f64>,
}

/// What the evaluated model's next-token distributions are compared with.
pub enum Reference<'a> {
    /// Nothing: loss and perplexity only.
    None,
    /// Another engine (the unconverted model), run on the same windows in step.
    Backend(&'a mut dyn Backend),
    /// The log-probabilities an earlier [`evaluate`] recorded at the same scored
    /// positions (scored tokens x vocab), so that a reference evaluated once serves
    /// every variant.
    LogProbs(&'a [f32]),
}

/// Tokens fed per forward call, so logits for long windows never pile up.
const CHUNK: usize = 64;

/// Score `ids` with `model`: windows of `window` tokens advance by half a
/// window; each window scores only tokens no earlier window scored, so every
/// token after the first is predicted once, with at least half a window of
/// context once past the start. Targets before index `score_from` are not
/// scored: with `score_from` = window / 2 every scored token has at least half
/// a window of context, the first window included (the long-context protocol).
/// Against `reference`, also the KL divergence and top-1 agreement at the same
/// positions. With `record`, the model's log-probabilities at the scored positions
/// are appended to it (for [`Reference::LogProbs`]). `progress(done, total)` reports tokens.
pub fn evaluate(
    model: &mut dyn Backend,
    mut reference: Reference,
    ids: &[u32],
    window: usize,
    score_from: usize,
    mut record: Option<&mut Vec<f32>>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport> {
    let window = window.min(model.capacity());
    if window < 2 {
        return Err(GqaError::Invalid("the evaluation window needs at least 2 tokens".into()));
    }
    let score_from = score_from.max(1);
    if ids.len() <= score_from {
        return Err(GqaError::Invalid(format!(
            "the text is too short to evaluate: {} tokens, and scoring starts at token {score_from}",
            ids.len()
        )));
    }
    let total = ids.len() - score_from;
    let stride = (window / 2).max(1);
    let (mut nll, mut kl, mut agree, mut scored) = (0.0f64, 0.0f64, 0usize, 0usize);
    // The first target index no window has scored yet.
    let mut next_target = score_from;
    let mut start = 0;
    loop {
        let end = (start + window).min(ids.len());
        let first_target = next_target;
        if first_target >= end {
            start += stride;
            continue;
        }
        model.reset();
        if let Reference::Backend(b) = &mut reference {
            b.reset();
        }
        let mut at = start;
        while at < end - 1 {
            let chunk = &ids[at..(at + CHUNK).min(end - 1)];
            let logits = model.forward(chunk, Logits::All)?;
            let base_logits = match &mut reference {
                Reference::Backend(b) => Some(b.forward(chunk, Logits::All)?),
                _ => None,
            };
            let vocab = logits.len() / chunk.len();
            for i in 0..chunk.len() {
                let target_index = at + i + 1;
                if target_index < first_target {
                    continue;
                }
                let row = &logits[i * vocab..(i + 1) * vocab];
                let log_p = log_softmax(row);
                nll -= log_p[ids[target_index] as usize] as f64;
                // The reference's row: computed from the engine run beside, or borrowed from the record.
                let computed;
                let log_q: Option<&[f32]> = match (&reference, &base_logits) {
                    (_, Some(bl)) => {
                        computed = log_softmax(&bl[i * vocab..(i + 1) * vocab]);
                        Some(&computed)
                    }
                    (Reference::LogProbs(all), _) => Some(all.get(scored * vocab..(scored + 1) * vocab).ok_or_else(|| {
                        GqaError::Invalid("the reference log-probabilities cover fewer positions than are scored".into())
                    })?),
                    _ => None,
                };
                if let Some(log_q) = log_q {
                    kl += log_q.iter().zip(&log_p).map(|(&q, &p)| (q.exp() * (q - p)) as f64).sum::<f64>();
                    agree += (argmax(log_q) == argmax(&log_p)) as usize;
                }
                if let Some(r) = record.as_deref_mut() {
                    r.extend_from_slice(&log_p);
                }
                scored += 1;
                next_target = target_index + 1;
            }
            at += chunk.len();
            progress(scored, total);
        }
        if end == ids.len() {
            break;
        }
        start += stride;
    }
    let n = scored as f64;
    let compared = !matches!(reference, Reference::None);
    Ok(EvalReport {
        tokens: scored,
        nats_per_token: nll / n,
        perplexity: (nll / n).exp(),
        kl_vs_base: compared.then(|| kl / n),
        top1_agreement: compared.then(|| agree as f64 / n),
    })
}

fn log_softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let log_sum = x.iter().map(|v| ((v - max) as f64).exp()).sum::<f64>().ln() as f32 + max;
    x.iter().map(|v| v - log_sum).collect()
}

fn argmax(x: &[f32]) -> usize {
    crate::sampler::argmax(x) as usize
}
