//! The training loop: AdamW steps on random windows, a validation loss every
//! few steps into a CSV log, a progress bar, and checkpoints every few minutes
//! from which an interrupted run resumes exactly (same batches, same state).
//!
//! A run lives in one folder:
//! ```text
//! log.csv        step,tokens,lr,train_loss,val_loss,grad_norm,elapsed_s
//! ckpt/          the latest checkpoint: config.json, model.safetensors (f32),
//!                optim.safetensors (AdamW moments), state.json
//! final/         the finished model (config.json, model.safetensors, f32)
//! ```

use std::io::Write;
use std::path::Path;

use candle_core::Tensor;
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use web_time::Instant;

use super::data::{Batch, TokenStream};
use super::model::TrainModel;
use super::optim::{lr_at, AdamW, AdamWParams};
use crate::error::{GqaError, Result};
use crate::hf;
use crate::model::Model;
use crate::tensor::DType;

/// Hyperparameters of one training run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainSpec {
    pub steps: usize,
    pub warmup: usize,
    pub batch_size: usize,
    /// From this step on, every other step (the first, the third, ...) trains
    /// on long windows and the steps between on short ones: a curriculum, since
    /// long windows cost more per token, and interleaved, so that the
    /// short-context skill is kept while long distances are learnt.
    pub long_from: usize,
    /// Long windows per step: the same tokens per step as the short batches.
    pub long_batch_size: usize,
    pub lr: f64,
    pub min_lr: f64,
    pub adamw: AdamWParams,
    /// Global gradient-norm clip.
    pub clip: f64,
    /// Seed of the batch order.
    pub seed: u64,
    /// Steps between validation losses (and log lines).
    pub eval_every: usize,
    /// Validation windows scored each time.
    pub eval_windows: usize,
    /// Seconds between checkpoints.
    pub checkpoint_secs: u64,
}

/// Saved with each checkpoint and with the final model.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunState {
    pub step: usize,
    pub tokens_seen: usize,
    /// Training seconds, summed over resumed sessions.
    pub elapsed_s: f64,
    pub last_train_loss: f64,
    pub last_val_loss: f64,
}

/// Train `start` with `spec`, in `dir`; returns the final model and its state.
/// Steps before `spec.long_from` draw windows from `train`, later ones
/// alternately from `long` (the same text cut into longer windows) and `train`.
/// A finished run (dir/final) is loaded instead of trained again; a run with a
/// checkpoint continues from it.
pub fn train(
    start: &Model,
    train: &TokenStream,
    long: &TokenStream,
    val: &TokenStream,
    spec: &TrainSpec,
    dir: &Path,
    label: &str,
) -> Result<(Model, RunState)> {
    let final_dir = dir.join("final");
    if final_dir.join("state.json").exists() {
        return Ok((hf::load_hf_dir(&final_dir)?, read_state(&final_dir)?));
    }
    std::fs::create_dir_all(dir).map_err(|e| GqaError::io(dir.display(), e))?;
    let ckpt = dir.join("ckpt");
    let resume = ckpt.join("state.json").exists();
    let (model, mut state) =
        if resume { (hf::load_hf_dir(&ckpt)?, read_state(&ckpt)?) } else { (start.clone(), RunState::default()) };
    let tm = TrainModel::from_model(&model).map_err(candle)?;
    let mut opt = AdamW::new(tm.named_vars(), spec.adamw.clone()).map_err(candle)?;
    if resume {
        opt.load(&ckpt.join("optim.safetensors")).map_err(candle)?;
        opt.t = state.step;
    }
    let val_batches = val.eval_batches(spec.eval_windows, spec.batch_size).map_err(candle)?;
    let mut log = open_log(&dir.join("log.csv"), resume)?;
    let stream_at = |step: usize| {
        if step >= spec.long_from && (step - spec.long_from).is_multiple_of(2) {
            (long, spec.long_batch_size)
        } else {
            (train, spec.batch_size)
        }
    };

    let bar = ProgressBar::new(spec.steps as u64).with_position(state.step as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{label:>14} {{bar:30}} {{pos}}/{{len}} [{{elapsed_precise}} eta {{eta_precise}}] {{msg}}"
        ))
        .expect("valid template"),
    );
    let session_start = Instant::now();
    let elapsed_before = state.elapsed_s;
    let mut last_ckpt = Instant::now();
    let (mut window_loss, mut window_n, mut window_tokens, mut window_start) = (0.0f64, 0usize, 0usize, Instant::now());
    while state.step < spec.steps {
        let lr = lr_at(state.step, spec.steps, spec.warmup, spec.lr, spec.min_lr);
        let (stream, batch_size) = stream_at(state.step);
        let tokens_per_step = batch_size * stream.seq_len;
        let batch = stream.train_batch(spec.seed, state.step, batch_size).map_err(candle)?;
        let loss = tm.loss(&batch.ids, &batch.targets).map_err(candle)?;
        let grads = loss.backward().map_err(candle)?;
        let grad_norm = opt.step(&grads, lr, spec.clip).map_err(candle)?;
        let loss = loss.to_scalar::<f32>().map_err(candle)? as f64;
        if !loss.is_finite() {
            return Err(GqaError::Invalid(format!("{label}: loss is {loss} at step {}", state.step)));
        }
        state.step += 1;
        state.tokens_seen += tokens_per_step;
        state.elapsed_s = elapsed_before + session_start.elapsed().as_secs_f64();
        (window_loss, window_n, window_tokens) = (window_loss + loss, window_n + 1, window_tokens + tokens_per_step);
        let tok_s = window_tokens as f64 / window_start.elapsed().as_secs_f64();
        bar.set_position(state.step as u64);
        bar.set_message(format!("T={} loss {:.3} | {:.0} tok/s", stream.seq_len, window_loss / window_n as f64, tok_s));

        if state.step % spec.eval_every == 0 || state.step == spec.steps {
            state.last_train_loss = window_loss / window_n as f64;
            state.last_val_loss = mean_loss(&tm, &val_batches)?;
            writeln!(
                log,
                "{},{},{:.6e},{:.5},{:.5},{:.4},{:.1}",
                state.step,
                state.tokens_seen,
                lr,
                state.last_train_loss,
                state.last_val_loss,
                grad_norm,
                state.elapsed_s
            )
            .and_then(|_| log.flush())
            .map_err(|e| GqaError::io("log.csv", e))?;
            let eta = (spec.steps - state.step) as f64 * tokens_per_step as f64 / tok_s;
            let line = format!(
                "{label}: step {}/{} (windows of {}) train {:.4} val {:.4} nats/token, {:.0} tok/s, eta {:.0} s",
                state.step, spec.steps, stream.seq_len, state.last_train_loss, state.last_val_loss, tok_s, eta
            );
            // Without a terminal (nohup, CI) the bar is hidden: print the line instead.
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
            (window_loss, window_n, window_tokens, window_start) = (0.0, 0, 0, Instant::now());
        }
        if last_ckpt.elapsed().as_secs() >= spec.checkpoint_secs && state.step < spec.steps {
            save_dir(&tm.to_model().map_err(candle)?, &state, Some(&opt), &ckpt)?;
            last_ckpt = Instant::now();
        }
    }
    bar.finish_and_clear();
    let model = tm.to_model().map_err(candle)?;
    save_dir(&model, &state, None, &final_dir)?;
    let _ = std::fs::remove_dir_all(&ckpt);
    Ok((model, state))
}

/// Mean loss (nats/token) over fixed batches, without building a graph to keep.
pub fn mean_loss(tm: &TrainModel, batches: &[Batch]) -> Result<f64> {
    let mut total = 0.0;
    for b in batches {
        let loss: Tensor = tm.loss(&b.ids, &b.targets).map_err(candle)?.detach();
        total += loss.to_scalar::<f32>().map_err(candle)? as f64;
    }
    Ok(total / batches.len().max(1) as f64)
}

/// Write weights (f32), state and optionally the optimizer into `dir`
/// atomically: into a temporary folder first, then renamed over the old one.
fn save_dir(model: &Model, state: &RunState, opt: Option<&AdamW>, dir: &Path) -> Result<()> {
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    hf::save_hf_dir(model, &tmp, DType::F32)?;
    write_json(&tmp.join("state.json"), state)?;
    if let Some(opt) = opt {
        opt.save(&tmp.join("optim.safetensors")).map_err(candle)?;
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir).map_err(|e| GqaError::io(dir.display(), e))
}

fn read_state(dir: &Path) -> Result<RunState> {
    read_json(&dir.join("state.json"))
}

pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| GqaError::io(path.display(), e))?;
    serde_json::from_str(&text).map_err(|e| GqaError::Invalid(format!("{}: {e}", path.display())))
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("serializes");
    std::fs::write(path, text).map_err(|e| GqaError::io(path.display(), e))
}

fn open_log(path: &Path, append: bool) -> Result<std::fs::File> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(path)
        .map_err(|e| GqaError::io(path.display(), e))?;
    if !append {
        writeln!(file, "step,tokens,lr,train_loss,val_loss,grad_norm,elapsed_s").map_err(|e| GqaError::io(path.display(), e))?;
    }
    Ok(file)
}

/// candle errors as this crate's errors.
pub fn candle(e: candle_core::Error) -> GqaError {
    GqaError::Invalid(format!("training: {e}"))
}
