//! Recording a forward pass: the CPU engine's forward pass (cpu/mod.rs) as a list of
//! dispatches (kernel, buffers, parameters, workgroup counts) over the resident
//! buffers, which submit.rs turns into one compute pass.
//!
//! ```text
//! embed -> L x [ rms_norm -> q,k,v (matvec | matmul) -> rope(q), rope(k) -> kv_store
//!                -> attention (G x splits x T workgroups) -> attention_merge -> wo -> add
//!                rms_norm -> gate, up -> swiglu -> down -> add ]
//!       -> rms_norm -> lm head (matvec) -> argmax | logits read back
//! ```

use super::memory::GpuBuffer;
use super::pipelines::{variant, Kernel, Variant};
use super::resident::Resident;
use super::weights::{pad_cols, GpuMatrix};
use crate::sampler::SamplerConfig;
use crate::quant::Format;
use crate::tensor::KvDType;

/// One dispatch: a kernel, its buffers (bindings 1..), parameters and workgroup counts.
pub struct Op {
    pub kernel: Kernel,
    pub variant: Variant,
    pub buffers: Vec<wgpu::Buffer>,
    pub params: [u32; 16],
    pub groups: [u32; 3],
}

/// What a submission reads back.
#[derive(Clone, Copy, PartialEq)]
pub enum Want {
    Nothing,
    /// The greedy token (4 bytes).
    Argmax,
    /// A sampled token and its status (8 bytes; sample.wgsl).
    Sample(SampleParams),
    Logits { rows: usize },
}

/// The sampler's settings and uniform draw for sample.wgsl (temperature > 0).
#[derive(Clone, Copy, PartialEq)]
pub struct SampleParams {
    pub inv_temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub u: f32,
}

impl SampleParams {
    pub fn new(sampler: &SamplerConfig, u: f32) -> SampleParams {
        SampleParams {
            inv_temperature: 1.0 / sampler.temperature,
            top_k: sampler.top_k.min(u32::MAX as usize) as u32,
            top_p: sampler.top_p,
            u,
        }
    }
}

/// The dispatches of one forward pass over `t_new` tokens (already in `res.tokens`)
/// at position `pos`.
pub fn record(res: &Resident, pos: usize, t_new: usize, want: Want, kv_dtype: KvDType, subgroups: bool) -> Vec<Op> {
    let d = &res.dims;
    let pos0 = pos as u32;
    let kv_variant = variant(Format::F32, kv_dtype);
    let plain = Variant::PLAIN;
    let mut ops = Vec::new();
    let op = &mut ops;
    let n = t_new as u32;

    // x = embed[tokens]: one dispatch per part of the table.
    for part in &res.embed.parts {
        push(
            op,
            Kernel::Embed,
            variant(res.embed.format, KvDType::F32),
            &[&res.tokens, &part.buffer, &res.x],
            &[d.dim as u32, res.embed.row_bytes as u32, part.row0 as u32, part.rows as u32, d.dim_pad as u32],
            [ceil_div(d.dim, 8 * 64), n, 1],
        );
    }

    let eps = d.eps.to_bits();
    let half = (d.hd / 2) as u32;
    // Split the context so that attention fills the device (resident.rs).
    let split = d.attention_split(pos + t_new, t_new);
    let n_splits = (pos + t_new).div_ceil(split);
    debug_assert!(t_new * n_splits <= d.max_split_rows, "the attention partials are sized for this");
    let n_splits = n_splits as u32;
    let scale = (1.0 / (d.hd as f32).sqrt()).to_bits();
    // The attention probe (only while on, and only for the last token of the pass).
    let probe = res.probe.as_ref().filter(|_| want != Want::Nothing).map(|(buffer, _)| buffer);
    for (l, layer) in res.layers.iter().enumerate() {
        // ---- attention: x += wo(attention(rope(wq xb), rope(wk xb), wv xb)) ----
        push(op, Kernel::RmsNorm, plain, &[&res.x, &layer.input_norm, &res.xb], &[d.dim as u32, d.dim_pad as u32, 0, eps], [n, 1, 1]);
        linear(op, subgroups, &layer.wq, &res.xb, &res.q, d.q_pad, t_new); // (T, H*hd)
        linear(op, subgroups, &layer.wk, &res.xb, &res.k, d.kv_pad, t_new); // (T, G*hd)
        linear(op, subgroups, &layer.wv, &res.xb, &res.v, d.kv_pad, t_new); // (T, G*hd)
        for (buf, heads, stride) in [(&res.q, d.n_heads, d.q_pad), (&res.k, d.n_kv_heads, d.kv_pad)] {
            push(
                op,
                Kernel::Rope,
                plain,
                &[&res.rope_table, buf],
                &[n, heads as u32, half, stride as u32, pos0],
                [ceil_div(t_new * heads * d.hd / 2, 64), 1, 1],
            );
        }
        push(
            op,
            Kernel::KvStore,
            kv_variant,
            &[&res.k, &res.v, &layer.k_cache, &layer.v_cache],
            &[n, d.n_kv_heads as u32, d.hd as u32, d.kv_pad as u32, pos0, d.capacity as u32],
            [ceil_div(t_new * d.n_kv_heads * d.hd / 2, 64), 1, 1],
        );
        push(
            op,
            Kernel::Attention,
            kv_variant,
            &[&res.q, &layer.k_cache, &layer.v_cache, &res.partial],
            &[
                d.group as u32,
                d.hd as u32,
                d.capacity as u32,
                pos0,
                d.q_pad as u32,
                split as u32,
                n_splits,
                d.tile as u32,
                d.n_heads as u32,
                scale,
                d.lanes_h as u32,
                d.lanes_p as u32,
            ],
            [d.n_kv_heads as u32, n_splits, n],
        );
        if let Some(buffer) = probe {
            let params = [
                d.hd as u32,
                d.capacity as u32,
                d.group as u32,
                d.q_pad as u32,
                n - 1,
                pos0 + n,
                (l * d.n_heads * d.capacity) as u32,
                scale,
            ];
            push(op, Kernel::AttentionProbe, kv_variant, &[&res.q, &layer.k_cache, buffer], &params, [d.n_heads as u32, 1, 1]);
        }
        push(
            op,
            Kernel::AttentionMerge,
            plain,
            &[&res.partial, &res.att],
            &[d.n_heads as u32, n_splits, d.hd as u32, d.q_pad as u32],
            [d.n_heads as u32, n, 1],
        );
        linear(op, subgroups, &layer.wo, &res.att, &res.proj, d.dim_pad, t_new); // (T, dim)
        push(op, Kernel::Add, plain, &[&res.x, &res.proj], &[n * d.dim_pad as u32], [ceil_div(t_new * d.dim_pad, 256), 1, 1]);

        // ---- feed-forward: x += down(silu(gate xb) * up xb) ----
        push(op, Kernel::RmsNorm, plain, &[&res.x, &layer.post_norm, &res.xb], &[d.dim as u32, d.dim_pad as u32, 0, eps], [n, 1, 1]);
        linear(op, subgroups, &layer.gate, &res.xb, &res.gate, d.ffn_pad, t_new); // (T, ffn)
        linear(op, subgroups, &layer.up, &res.xb, &res.up, d.ffn_pad, t_new); // (T, ffn)
        push(op, Kernel::Swiglu, plain, &[&res.gate, &res.up], &[n * d.ffn_pad as u32], [ceil_div(t_new * d.ffn_pad, 256), 1, 1]);
        linear(op, subgroups, &layer.down, &res.gate, &res.proj, d.dim_pad, t_new); // (T, dim)
        push(op, Kernel::Add, plain, &[&res.x, &res.proj], &[n * d.dim_pad as u32], [ceil_div(t_new * d.dim_pad, 256), 1, 1]);
    }

    // ---- final norm and LM head, for the rows wanted ----
    let rows = match want {
        Want::Nothing => return ops,
        Want::Argmax | Want::Sample(_) => 1,
        Want::Logits { rows } => rows,
    };
    let in_row0 = (t_new - rows) as u32;
    push(op, Kernel::RmsNorm, plain, &[&res.x, &res.norm, &res.xb], &[d.dim as u32, d.dim_pad as u32, in_row0, eps], [rows as u32, 1, 1]);
    let classifier = res.lm_head.as_ref().unwrap_or(&res.embed);
    linear(op, subgroups, classifier, &res.xb, &res.logits, d.vocab, rows); // (rows, vocab)
    match want {
        Want::Argmax => push(op, Kernel::Argmax, plain, &[&res.logits, &res.argmax], &[d.vocab as u32, 0], [1, 1, 1]),
        Want::Sample(s) => sample(op, res, s),
        _ => {}
    }
    ops
}

/// The sampling kernel on the first row of `res.logits`, into `res.argmax`.
pub fn sample(ops: &mut Vec<Op>, res: &Resident, s: SampleParams) {
    let params = [res.dims.vocab as u32, 0, s.inv_temperature.to_bits(), s.top_k, s.top_p.to_bits(), s.u.to_bits()];
    let plain = Variant::PLAIN;
    push(ops, Kernel::Sample, plain, &[&res.logits, &res.argmax], &params, [1, 1, 1]);
}

/// `ops` with every dispatch replaced by one workgroup of the empty kernel on one
/// read-write buffer (so consecutive dispatches are ordered by barriers, as in the
/// forward pass): what dispatching alone costs.
pub fn emptied(ops: &[Op], res: &Resident) -> Vec<Op> {
    let plain = Variant::PLAIN;
    let mut out = Vec::with_capacity(ops.len());
    for _ in ops {
        push(&mut out, Kernel::Empty, plain, &[&res.x], &[], [1, 1, 1]);
    }
    out
}

/// One dispatch of the copy kernel: `dst` = `src`, `bytes` each (a multiple of 16).
pub fn copy(src: &GpuBuffer, dst: &GpuBuffer, bytes: u64) -> Op {
    let n = (bytes / 16) as u32;
    let groups = n.div_ceil(256).min(4096);
    let plain = Variant::PLAIN;
    let mut ops = Vec::new();
    push(&mut ops, Kernel::Copy, plain, &[src, dst], &[n, groups * 256], [groups, 1, 1]);
    ops.pop().unwrap()
}

/// Append one dispatch to `ops`.
fn push(ops: &mut Vec<Op>, kernel: Kernel, variant: Variant, buffers: &[&GpuBuffer], params: &[u32], groups: [u32; 3]) {
    let mut p = [0u32; 16];
    p[..params.len()].copy_from_slice(params);
    let buffers = buffers.iter().map(|b| wgpu::Buffer::clone(b)).collect();
    ops.push(Op { kernel, variant, buffers, params: p, groups });
}

/// y (T, y_stride) = x (T, x_stride) W^T, part by part: matvec (or its subgroup
/// variant) for one token, the tiled matmul for a batch of `n_tokens`.
fn linear(ops: &mut Vec<Op>, subgroups: bool, w: &GpuMatrix, x: &GpuBuffer, y: &GpuBuffer, y_stride: usize, n_tokens: usize) {
    let x_stride = pad_cols(w.cols);
    let v = variant(w.format, KvDType::F32);
    let row_bytes = w.row_bytes as u32;
    for part in &w.parts {
        let (rows, row0) = (part.rows as u32, part.row0 as u32);
        if n_tokens == 1 {
            let kernel = if subgroups { Kernel::MatvecSubgroup } else { Kernel::Matvec };
            let params = [rows, (x_stride / 8) as u32, (x_stride / 4) as u32, y_stride as u32, row0, row_bytes];
            push(ops, kernel, v, &[&part.buffer, x, y], &params, [ceil_div(part.rows, 8), 1, 1]);
        } else {
            let params = [rows, row_bytes, x_stride as u32, y_stride as u32, row0, n_tokens as u32, x_stride as u32];
            push(ops, Kernel::Matmul, v, &[&part.buffer, x, y], &params, [ceil_div(part.rows, 16), ceil_div(n_tokens, 16), 1]);
        }
    }
}

fn ceil_div(a: usize, b: usize) -> u32 {
    a.div_ceil(b) as u32
}
