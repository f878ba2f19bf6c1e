//! The GPU engine measured, for `gqa bench` (report.rs): the timing record of its
//! submissions, one forward pass profiled dispatch by dispatch, the fixed cost of a
//! decode step, the device's copy bandwidth and its allocator's report.

use std::sync::{Arc, Mutex};

use super::engine::{not_loaded, GpuEngine};
use super::graph::{copy, emptied, record, Want};
use super::submit::Timing;
use crate::error::Result;

impl GpuEngine {
    /// wgpu's allocator report (Vulkan): (allocated, reserved) bytes; None elsewhere.
    pub fn allocator_report(&self) -> Option<(u64, u64)> {
        let _ = self.ctx.device.poll(wgpu::PollType::Poll);
        self.ctx.device.generate_allocator_report().map(|r| (r.total_allocated_bytes, r.total_reserved_bytes))
    }

    /// The timing since the last call.
    pub fn take_timing(&self) -> Timing {
        std::mem::take(&mut *self.submit.timing.lock().unwrap())
    }

    /// A handle on the timing record (take it with `std::mem::take`).
    pub fn timing_handle(&self) -> Arc<Mutex<Timing>> {
        self.submit.timing.clone()
    }

    /// Time each dispatch of the next forward pass on its own (`Timing::kernels`).
    pub fn profile_next_forward(&mut self) {
        self.submit.profile_next = true;
    }

    /// The fixed cost of a decode step: the dispatches a decode step at the current
    /// position records, each replaced by one workgroup of an empty kernel, then the
    /// 4-byte read-back of a greedy step. Wall seconds of the median of `reps`; the
    /// cache and position are left as they were.
    pub async fn empty_forward_async(&mut self, reps: usize) -> Result<f64> {
        let subgroups = self.uses_subgroups();
        let res = self.res.as_mut().ok_or_else(not_loaded)?;
        let ops = emptied(&record(res, self.pos, 1, Want::Argmax, self.options.kv_dtype, subgroups), res);
        let saved = std::mem::take(&mut *self.submit.timing.lock().unwrap());
        let mut times = Vec::new();
        for _ in 0..reps.max(1) {
            let start = web_time::Instant::now();
            self.submit.run(&self.ctx, &self.alloc, res, &ops, &[], Want::Argmax).await?;
            times.push(start.elapsed().as_secs_f64());
        }
        *self.submit.timing.lock().unwrap() = saved;
        times.sort_by(f64::total_cmp);
        Ok(times[times.len() / 2])
    }

    /// The device's copy bandwidth (bytes read plus written per second) by the copy
    /// kernel over two buffers of up to `bytes` (at most a storage binding), timed
    /// by timestamp queries where the adapter has them (else wall time): the best of
    /// `reps`.
    pub async fn copy_bandwidth_async(&mut self, bytes: u64, reps: usize) -> Result<f64> {
        let bytes = bytes.min(self.ctx.max_binding()) / 16 * 16;
        let usage = wgpu::BufferUsages::STORAGE;
        let src = self.alloc.zeroed(&self.ctx.device, "copy source", bytes, usage);
        let dst = self.alloc.zeroed(&self.ctx.device, "copy destination", bytes, usage);
        let ops = [copy(&src, &dst, bytes)];
        let res = self.res.as_mut().ok_or_else(not_loaded)?;
        let saved = std::mem::take(&mut *self.submit.timing.lock().unwrap());
        let mut best = f64::INFINITY;
        for _ in 0..reps.max(1) {
            let start = web_time::Instant::now();
            self.submit.run(&self.ctx, &self.alloc, res, &ops, &[], Want::Argmax).await?;
            let wall = start.elapsed().as_secs_f64();
            let t = std::mem::take(&mut *self.submit.timing.lock().unwrap());
            best = best.min(t.kernel_s.unwrap_or(wall));
        }
        *self.submit.timing.lock().unwrap() = saved;
        // The bind group of these buffers goes with them.
        self.submit.clear();
        Ok(2.0 * bytes as f64 / best)
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl GpuEngine {
    /// `empty_forward_async`, blocking.
    pub fn empty_forward(&mut self, reps: usize) -> Result<f64> {
        pollster::block_on(self.empty_forward_async(reps))
    }

    /// `copy_bandwidth_async`, blocking.
    pub fn copy_bandwidth(&mut self, bytes: u64, reps: usize) -> Result<f64> {
        pollster::block_on(self.copy_bandwidth_async(bytes, reps))
    }
}
