//! `gqa bench --backend gpu`: where a decode step's time goes on the device. Each
//! forward pass is timed whole on the GPU (timestamp queries, where the adapter has
//! them); after the timed rounds, a profile of every case: one decode step with each
//! dispatch timed on its own, the same dispatches emptied (the fixed cost of
//! dispatching and its barriers), a sampled step's read-back, the device's copy
//! bandwidth measured in the same run by a copy kernel, and the bytes each step reads
//! against it.

use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::engine::GpuEngine;
use super::submit::Timing;
use crate::backend::engine::Engine;
use crate::backend::{Backend, BackendKind, EngineOptions};
use crate::bench::{BenchRow, DecodeCase};
use crate::convert::{convert, Method};
use crate::error::Result;
use crate::model::Model;
use crate::sampler::SamplerConfig;

/// A backend of `kind` for benchmarks, the reason it fell back to the CPU (if it
/// did), and on the GPU the handle on its timing record.
pub fn bench_backend(kind: BackendKind, model: Model, capacity: usize, options: EngineOptions) -> Result<BenchBackend> {
    let mut opened = Engine::open(kind, model, capacity, options)?;
    let timing = opened.engine.gpu().map(|gpu| gpu.timing_handle());
    Ok((opened.engine, opened.fallback, timing))
}

/// A backend, why it fell back to the CPU (if it did), and the GPU's timing record.
pub type BenchBackend = (Engine, Option<String>, Option<Arc<Mutex<Timing>>>);

/// The adapter, as the profile reports it.
#[derive(Clone, Debug, Serialize)]
pub struct Adapter {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub features: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    /// The attention workgroups a decode step aims for on this adapter.
    pub target_workgroups: usize,
}

/// One kernel's time in one profiled decode step.
#[derive(Clone, Debug, Serialize)]
pub struct KernelRow {
    pub kernel: String,
    pub dispatches: usize,
    pub ms: f64,
}

/// One (G, context) case: the timed rounds' wall and kernel time per step, and the
/// profiled step.
#[derive(Clone, Debug, Serialize)]
pub struct ProfileRow {
    pub label: String,
    pub n_kv_heads: usize,
    pub context: usize,
    /// Per decode step in the timed rounds: wall time, and GPU time inside the pass.
    pub ms_per_token: f64,
    pub kernel_ms_per_token: Option<f64>,
    /// Bytes each step reads (weights + KV cache) and read back to the host.
    pub bytes_per_token: usize,
    pub read_back_bytes_per_token: f64,
    /// The same for one sampled step (temperature 0.8, top-p 0.9, on the GPU).
    pub sampled_read_back_bytes: u64,
    /// Bytes per token over kernel time (wall time without timestamps), and that
    /// over the device's copy bandwidth.
    pub effective_gb_s: f64,
    pub fraction_of_copy: f64,
    /// The same step's dispatches, emptied: the fixed cost per token.
    pub empty_forward_ms: f64,
    /// The profiled step, kernel by kernel (empty without timestamp queries).
    pub kernels: Vec<KernelRow>,
}

#[derive(Clone, Debug, Serialize)]
pub struct GpuProfile {
    pub adapter: Adapter,
    /// Bytes read plus written per second by the copy kernel.
    pub copy_gb_s: f64,
    pub rows: Vec<ProfileRow>,
}

/// The profile of `rows` (as `bench::run` measured them, in its order, with
/// `timings` the timing record taken after each case of each round), on `gpu`,
/// converting `base` to each row's G again.
pub fn profile(gpu: &mut GpuEngine, base: &Model, rows: &[BenchRow], timings: &[Timing], steps: usize) -> Result<GpuProfile> {
    let ctx = gpu.context();
    let adapter = Adapter {
        name: ctx.info.name.clone(),
        backend: format!("{:?}", ctx.info.backend),
        device_type: format!("{:?}", ctx.info.device_type),
        driver: format!("{} {}", ctx.info.driver, ctx.info.driver_info).trim().to_string(),
        features: format!("{:?}", ctx.device.features()),
        max_storage_buffer_binding_size: ctx.limits.max_storage_buffer_binding_size,
        max_buffer_size: ctx.limits.max_buffer_size,
        max_compute_workgroup_storage_size: ctx.limits.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: ctx.limits.max_compute_invocations_per_workgroup,
        target_workgroups: ctx.target_workgroups(),
    };
    let copy = gpu.copy_bandwidth(256 << 20, 5)?;
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        // The timed rounds of this case: every len(rows)-th record.
        let mut t = Timing::default();
        for r in timings.iter().skip(i).step_by(rows.len()) {
            t.forwards += r.forwards;
            t.wall_s += r.wall_s;
            t.read_bytes += r.read_bytes;
            if let Some(k) = r.kernel_s {
                *t.kernel_s.get_or_insert(0.0) += k;
            }
        }
        let n = t.forwards.max(1) as f64;
        if gpu.model().config.n_kv_heads() != row.n_kv_heads {
            gpu.set_model(convert(base, row.n_kv_heads, Method::Mean, 0)?)?;
        }
        let case = DecodeCase::new(row.context, steps, gpu.capacity())?;
        // Two steps at the case's positions (the timed rounds warmed the pipelines): one
        // greedy, each dispatch timed; then one sampled.
        case.prepare(gpu)?;
        let empty_s = gpu.empty_forward(5)?;
        drop(gpu.take_timing());
        gpu.profile_next_forward();
        gpu.forward_argmax(&[case.token(0)])?;
        let profiled = gpu.take_timing();
        let sampler = SamplerConfig { temperature: 0.8, top_k: 0, top_p: 0.9, seed: 0 };
        gpu.forward_sample(&[case.token(1)], &sampler, 0.5)?;
        let sampled = gpu.take_timing();
        let mut kernels: Vec<KernelRow> =
            profiled.kernels.into_iter().map(|(k, v)| KernelRow { kernel: k.into(), dispatches: v.dispatches, ms: v.seconds * 1e3 }).collect();
        kernels.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        let ms = t.wall_s / n * 1e3;
        let kernel_ms = t.kernel_s.map(|k| k / n * 1e3);
        let effective = row.bytes_per_token as f64 / (kernel_ms.unwrap_or(ms) * 1e-3);
        out.push(ProfileRow {
            label: row.label.clone(),
            n_kv_heads: row.n_kv_heads,
            context: row.context,
            ms_per_token: ms,
            kernel_ms_per_token: kernel_ms,
            bytes_per_token: row.bytes_per_token,
            read_back_bytes_per_token: t.read_bytes as f64 / n,
            sampled_read_back_bytes: sampled.read_bytes,
            effective_gb_s: effective / 1e9,
            fraction_of_copy: effective / copy,
            empty_forward_ms: empty_s * 1e3,
            kernels,
        });
    }
    Ok(GpuProfile { adapter, copy_gb_s: copy / 1e9, rows: out })
}

/// The profile as Markdown: one line per case, then the kernels of each case.
pub fn markdown(p: &GpuProfile) -> String {
    let a = &p.adapter;
    let mut s = format!(
        "\nGPU: {} ({}, {}, {}); copy kernel {:.1} GB/s; {} attention workgroups aimed for\n\n",
        a.name, a.backend, a.device_type, a.driver, p.copy_gb_s, a.target_workgroups
    );
    s += "| G | context | ms/token (wall) | ms/token (kernels) | empty forward ms | bytes/token | GB/s | of copy bw | read back B/token (greedy, sampled) |\n";
    s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in &p.rows {
        let kernels = r.kernel_ms_per_token.map_or("n/a (no timestamps)".to_string(), |k| format!("{k:.3}"));
        s += &format!(
            "| {} | {} | {:.3} | {} | {:.3} | {} | {:.1} | {:.1}% | {:.0}, {} |\n",
            r.label,
            r.context,
            r.ms_per_token,
            kernels,
            r.empty_forward_ms,
            r.bytes_per_token,
            r.effective_gb_s,
            100.0 * r.fraction_of_copy,
            r.read_back_bytes_per_token,
            r.sampled_read_back_bytes
        );
    }
    for r in &p.rows {
        if r.kernels.is_empty() {
            continue;
        }
        let total: f64 = r.kernels.iter().map(|k| k.ms).sum();
        s += &format!("\n{} at context {} (one profiled step, {:.3} ms in kernels):", r.label, r.context, total);
        for k in &r.kernels {
            s += &format!(" {} {:.3} ms ({}x, {:.0}%);", k.kernel, k.ms, k.dispatches, 100.0 * k.ms / total.max(1e-12));
        }
        s.pop();
        s += "\n";
    }
    s
}
