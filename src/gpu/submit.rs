//! Submitting a recorded forward pass: one uniform slot of parameters per dispatch,
//! pipelines and bind groups cached across calls, one compute pass (with timestamp
//! queries when the adapter has them), one queue submission, and the read-back of
//! what the caller wants (nothing, the argmax, or logits).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use web_time::Instant;

use super::context::GpuContext;
use super::graph::{Op, Want};
use super::memory::Allocator;
use super::pipelines::{Kernel, Pipelines, PARAMS_BYTES};
use super::resident::{Resident, READ_ARGMAX, READ_LOGITS};
use crate::error::Result;

/// Timing of the forward passes since the engine was made (or `take_timing`).
#[derive(Clone, Debug, Default)]
pub struct Timing {
    pub forwards: usize,
    /// Wall time of forward calls (record, submit, wait, read back).
    pub wall_s: f64,
    /// GPU time inside the compute passes, when the adapter has timestamp queries.
    pub kernel_s: Option<f64>,
    /// Bytes read back from the device (timestamps, tokens, logits).
    pub read_bytes: u64,
    /// Sampled tokens the GPU left to the CPU (the rule reached past its candidates).
    pub sample_fallbacks: usize,
    /// GPU time per kernel, from the profiled forward passes (`Submitter::profile_next`).
    pub kernels: BTreeMap<&'static str, KernelTime>,
}

/// One kernel's share of the profiled forward passes.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelTime {
    pub dispatches: usize,
    pub seconds: f64,
}

/// The most dispatches a profiled forward pass times (two timestamp queries each).
const MAX_PROFILED: usize = 2048;

/// The state submissions keep between calls.
pub struct Submitter {
    pipelines: Pipelines,
    bind_groups: HashMap<(Kernel, Vec<wgpu::Buffer>), wgpu::BindGroup>,
    query_set: Option<wgpu::QuerySet>,
    /// Queue submissions so far.
    pub submissions: u64,
    /// Time each dispatch of the next forward pass on its own (one compute pass per
    /// dispatch, each with its two timestamps) into `Timing::kernels`. Splitting the
    /// passes adds their boundaries to the time: a profile, not a speed.
    pub profile_next: bool,
    /// Shared so a front end can read it while the engine is borrowed (bench).
    pub timing: Arc<Mutex<Timing>>,
}

impl Submitter {
    pub fn new(ctx: &GpuContext) -> Submitter {
        let query_set = ctx.timestamps.then(|| {
            ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("forward timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            })
        });
        Submitter {
            pipelines: Pipelines::new(),
            bind_groups: HashMap::new(),
            query_set,
            submissions: 0,
            profile_next: false,
            timing: Arc::default(),
        }
    }

    /// Forget the bind groups (their buffers are about to be freed).
    pub fn clear(&mut self) {
        self.bind_groups.clear();
    }

    /// Submit `ops` (recorded over `res` for `tokens`) and read back what `want`
    /// asks for (its bytes).
    pub async fn run(&mut self, ctx: &GpuContext, alloc: &Allocator, res: &mut Resident, ops: &[Op], tokens: &[u32], want: Want) -> Result<Vec<u8>> {
        let start = Instant::now();

        // The parameter slots: grow the buffer if this pass has more dispatches than it
        // holds (bind groups refer to it, so they are rebuilt).
        let slot = (ctx.limits.min_uniform_buffer_offset_alignment as u64).max(256);
        let needed = ops.len() as u64 * slot;
        if needed > res.params.bytes() {
            res.params = alloc.zeroed(
                &ctx.device,
                "params",
                needed.next_power_of_two(),
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            );
            self.bind_groups.clear();
        }
        let mut params = vec![0u8; needed as usize];
        // Pipelines and bind groups, cached across calls.
        for (i, op) in ops.iter().enumerate() {
            params[i * slot as usize..i * slot as usize + 64].copy_from_slice(bytemuck::cast_slice(&op.params));
            self.pipelines.get(ctx, op.kernel, op.variant);
            let key = (op.kernel, op.buffers.clone());
            if !self.bind_groups.contains_key(&key) {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &res.params,
                        offset: 0,
                        size: wgpu::BufferSize::new(PARAMS_BYTES),
                    }),
                }];
                for (j, b) in op.buffers.iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry { binding: j as u32 + 1, resource: b.as_entire_binding() });
                }
                let layout = self.pipelines.layout(ctx, op.kernel);
                let bg = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout,
                    entries: &entries,
                });
                self.bind_groups.insert(key, bg);
            }
        }
        let queue = &ctx.queue;
        if !tokens.is_empty() {
            queue.write_buffer(&res.tokens, 0, bytemuck::cast_slice(tokens));
        }
        queue.write_buffer(&res.params, 0, &params);

        let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("forward") });
        let encode = |pass: &mut wgpu::ComputePass, i: usize, op: &Op| {
            pass.set_pipeline(self.pipelines.cached(op.kernel, op.variant));
            pass.set_bind_group(0, &self.bind_groups[&(op.kernel, op.buffers.clone())], &[(i as u64 * slot) as u32]);
            pass.dispatch_workgroups(op.groups[0], op.groups[1], op.groups[2]);
        };
        // Profiled: one pass per dispatch, timed on its own; else one pass, timed whole.
        let profile = self.profile_next && ctx.timestamps && ops.len() <= MAX_PROFILED;
        self.profile_next = false;
        let mut profiled = None;
        let mut read_len = 0;
        if profile {
            let queries = 2 * ops.len() as u32;
            let qs = ctx.device.create_query_set(&wgpu::QuerySetDescriptor { label: Some("profile"), ty: wgpu::QueryType::Timestamp, count: queries });
            for (i, op) in ops.iter().enumerate() {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(op.kernel.name()),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: &qs,
                        beginning_of_pass_write_index: Some(2 * i as u32),
                        end_of_pass_write_index: Some(2 * i as u32 + 1),
                    }),
                });
                encode(&mut pass, i, op);
            }
            let bytes = 8 * queries as u64;
            let resolved = alloc.zeroed(&ctx.device, "profile timestamps", bytes, wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
            let read = alloc.zeroed(&ctx.device, "profile read-back", bytes, wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
            encoder.resolve_query_set(&qs, 0..queries, &resolved, 0);
            encoder.copy_buffer_to_buffer(&resolved, 0, &read, 0, bytes);
            // Both buffers live until the read-back (a dropped buffer is destroyed).
            profiled = Some((read, bytes, resolved));
        } else {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes: self.query_set.as_ref().map(|qs| wgpu::ComputePassTimestampWrites {
                    query_set: qs,
                    beginning_of_pass_write_index: Some(0),
                    end_of_pass_write_index: Some(1),
                }),
            });
            for (i, op) in ops.iter().enumerate() {
                encode(&mut pass, i, op);
            }
            drop(pass);
            if let Some(qs) = &self.query_set {
                encoder.resolve_query_set(qs, 0..2, &res.timestamps, 0);
                encoder.copy_buffer_to_buffer(&res.timestamps, 0, &res.readback, 0, 16);
                read_len = 16;
            }
        }
        match want {
            Want::Nothing => {}
            Want::Argmax => {
                encoder.copy_buffer_to_buffer(&res.argmax, 0, &res.readback, READ_ARGMAX, 4);
                read_len = READ_ARGMAX + 4;
            }
            Want::Sample(_) => {
                encoder.copy_buffer_to_buffer(&res.argmax, 0, &res.readback, READ_ARGMAX, 8);
                read_len = READ_ARGMAX + 8;
            }
            Want::Logits { rows } => {
                let bytes = (rows * res.dims.vocab * 4) as u64;
                encoder.copy_buffer_to_buffer(&res.logits, 0, &res.readback, READ_LOGITS, bytes);
                read_len = READ_LOGITS + bytes;
            }
        }
        queue.submit([encoder.finish()]);
        self.submissions += 1;

        let mut out = Vec::new();
        if let Some((read, bytes, _)) = &profiled {
            let stamps = ctx.read(read, *bytes).await?;
            let stamp = |q: usize| u64::from_le_bytes(stamps[8 * q..8 * q + 8].try_into().unwrap());
            let period = ctx.queue.get_timestamp_period() as f64 * 1e-9;
            let mut timing = self.timing.lock().unwrap();
            for (i, op) in ops.iter().enumerate() {
                let seconds = stamp(2 * i + 1).saturating_sub(stamp(2 * i)) as f64 * period;
                let k = timing.kernels.entry(op.kernel.name()).or_default();
                k.dispatches += 1;
                k.seconds += seconds;
                *timing.kernel_s.get_or_insert(0.0) += seconds;
            }
        }
        if read_len > 0 {
            let bytes = ctx.read(&res.readback, read_len).await?;
            if self.query_set.is_some() && !profile {
                let t0 = u64::from_le_bytes(bytes[0..8].try_into().unwrap());
                let t1 = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
                let ns = t1.saturating_sub(t0) as f64 * ctx.queue.get_timestamp_period() as f64;
                *self.timing.lock().unwrap().kernel_s.get_or_insert(0.0) += ns * 1e-9;
            }
            match want {
                Want::Nothing => {}
                Want::Argmax | Want::Sample(_) => out = bytes[READ_ARGMAX as usize..].to_vec(),
                Want::Logits { .. } => out = bytes[READ_LOGITS as usize..].to_vec(),
            }
        }
        let mut timing = self.timing.lock().unwrap();
        timing.read_bytes += read_len;
        timing.forwards += 1;
        timing.wall_s += start.elapsed().as_secs_f64();
        Ok(out)
    }

    /// Read back the logits the last forward pass left on the device (its last row):
    /// for a sampled token that the GPU left to the CPU.
    pub async fn fetch_logits(&mut self, ctx: &GpuContext, res: &Resident) -> Result<Vec<u8>> {
        let bytes = (res.dims.vocab * 4) as u64;
        let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("logits") });
        encoder.copy_buffer_to_buffer(&res.logits, 0, &res.readback, READ_LOGITS, bytes);
        ctx.queue.submit([encoder.finish()]);
        let out = ctx.read(&res.readback, READ_LOGITS + bytes).await?;
        let mut timing = self.timing.lock().unwrap();
        timing.read_bytes += READ_LOGITS + bytes;
        timing.sample_fallbacks += 1;
        Ok(out[READ_LOGITS as usize..].to_vec())
    }
}
