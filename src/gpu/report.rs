//! `gqa bench --backend gpu`: where a decode step's time goes. With timestamp
//! queries, each forward pass's GPU time (its one compute pass) is known; the rest
//! of the wall time (recording, submission, waiting, read-back) is outside kernels.

use std::sync::{Arc, Mutex};

use super::engine::GpuEngine;
use super::submit::Timing;
use crate::backend::open::{open, Opened};
use crate::backend::{Backend, BackendKind, EngineOptions};
use crate::bench::BenchRow;
use crate::error::Result;
use crate::model::Model;

/// A backend of `kind` for benchmarks, the reason it fell back to the CPU (if it
/// did), and on the GPU the handle on its timing record.
pub fn bench_backend(kind: BackendKind, model: Model, capacity: usize, options: EngineOptions) -> Result<BenchBackend> {
    let Opened { mut backend, fallback } = open(kind, model, capacity, options)?;
    let timing = backend.as_any_mut().downcast_mut::<GpuEngine>().map(|gpu| gpu.timing_handle());
    Ok((backend, fallback, timing))
}

/// A backend, why it fell back to the CPU (if it did), and the GPU's timing record.
pub type BenchBackend = (Box<dyn Backend>, Option<String>, Option<Arc<Mutex<Timing>>>);

/// One `Timing` per bench row (the forward passes of that case): a Markdown table of
/// wall and kernel time per forward and the share of time spent outside kernels.
pub fn timing_markdown(rows: &[BenchRow], timings: &[Timing]) -> String {
    let mut s = String::from(
        "\n| G | context | ms/forward (wall) | ms/forward (GPU kernels) | outside kernels |\n|---|---:|---:|---:|---:|\n",
    );
    for (r, t) in rows.iter().zip(timings) {
        let n = t.forwards.max(1) as f64;
        let wall = t.wall_s / n * 1e3;
        match t.kernel_s {
            Some(k) => {
                let kernel = k / n * 1e3;
                s += &format!(
                    "| {} ({}) | {} | {:.3} | {:.3} | {:.1}% |\n",
                    r.label,
                    r.n_kv_heads,
                    r.context,
                    wall,
                    kernel,
                    100.0 * (1.0 - kernel / wall).max(0.0)
                );
            }
            None => {
                s += &format!("| {} ({}) | {} | {:.3} | n/a (no timestamp queries) | n/a |\n", r.label, r.n_kv_heads, r.context, wall);
            }
        }
    }
    s
}
