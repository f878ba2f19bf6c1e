//! Grouped-query attention of one token over the KV cache, on the CPU.
//!
//! The context is cut into chunks of one cache block; each (KV head, chunk) is
//! one task that computes all H/G query heads of the group together, so every
//! key and value row is read once per token. The chunks are then merged by
//! their softmax maxima and sums. The attention probe (the weights the page
//! draws) is computed plainly, apart from this path.

use crate::backend::AttentionWeights;
use crate::config::Config;
use crate::kernels::{attention_scores, attention_values, axpy, for_chunks, softmax_numerators, Elem, Rows};
use crate::kv_cache::{BlockKv, KvCache, BLOCK};

/// Positions one attention task covers, one block of the KV cache; longer
/// contexts are split into chunks that run in parallel and are merged by their
/// softmax maxima and sums.
pub const ATTENTION_CHUNK: usize = BLOCK;

/// Floats of one attention task's slot in the scratch: for each of the H/G query
/// heads of its group the (max score, sum of exp) pair, the unnormalized output
/// (H/G, hd), and the scores (H/G, ATTENTION_CHUNK).
pub fn attention_task_len(c: &Config) -> usize {
    c.group_size() * (2 + c.head_dim() + ATTENTION_CHUNK)
}

/// The attention probe: softmax(q_h . k_j / sqrt(head_dim)) over positions 0..n_ctx for
/// every query head h, computed plainly from the cache (query head h reads key/value
/// head h / (H/G), as `grouped_attention` does). Runs only when the probe is on.
pub fn attention_weights(c: &Config, cache: &KvCache, layer: usize, n_ctx: usize, q: &[f32]) -> AttentionWeights {
    let (hd, h, group) = (c.head_dim(), c.n_heads(), c.group_size());
    let scale = 1.0 / (hd as f32).sqrt();
    let mut weights = vec![0.0f32; h * n_ctx];
    for (head, row) in weights.chunks_exact_mut(n_ctx).enumerate() {
        let qh = &q[head * hd..(head + 1) * hd];
        for block in 0..n_ctx.div_ceil(BLOCK) {
            let (kv, row_len) = cache.block(layer, head / group, block);
            for i in 0..(n_ctx - block * BLOCK).min(BLOCK) {
                let key = |d: usize| match &kv {
                    BlockKv::F32(k, _) => k[d * row_len + i],
                    BlockKv::F16(k, _) => k[d * row_len + i].to_f32(),
                    BlockKv::I8 { k, k_scale, .. } => k[d * row_len + i] as f32 * k_scale[i],
                };
                row[block * BLOCK + i] = (0..hd).map(|d| qh[d] * key(d)).sum::<f32>() * scale;
            }
        }
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        row.iter_mut().for_each(|x| *x = (*x - max).exp());
        let sum: f32 = row.iter().sum();
        row.iter_mut().for_each(|x| *x /= sum);
    }
    AttentionWeights { n_heads: h, n_ctx, weights }
}

/// Attention of one token's H query heads over `n_ctx` cached positions.
///
/// Each task takes one KV head g and a chunk of positions, and computes all
/// H/G query heads of g's group together: every key and value row is read
/// from memory once per token, not H/G times. All tasks form one parallel
/// region (when `parallel`), each writing its own slot of `slots`; then the
/// chunks of each group are merged. q and out are (H*hd).
#[allow(clippy::too_many_arguments)]
pub fn grouped_attention(c: &Config, cache: &KvCache, layer: usize, n_ctx: usize, q: &[f32], out: &mut [f32], slots: &mut [f32], parallel: bool) {
    let (hd, n_kv_heads, group) = (c.head_dim(), c.n_kv_heads(), c.group_size());
    let scale = 1.0 / (hd as f32).sqrt();
    let n_chunks = n_ctx.div_ceil(ATTENTION_CHUNK);
    let slot_len = attention_task_len(c);
    let slots = &mut slots[..n_kv_heads * n_chunks * slot_len];

    for_chunks(slots, slot_len, parallel && slots.len() > slot_len, |first, slot| {
        let task = first / slot_len;
        let (g, chunk) = (task / n_chunks, task % n_chunks);
        let start = chunk * ATTENTION_CHUNK;
        let end = (start + ATTENTION_CHUNK).min(n_ctx);
        let group_q = &q[g * group * hd..(g + 1) * group * hd]; // (H/G, hd)
        // Positions start..end of head g: keys as hd rows of len, row_len apart;
        // values as len rows of hd.
        let (kv, row_len) = cache.block(layer, g, chunk);
        let len = end - start;
        fn keys<T>(data: &[T], stride: usize, dims: usize, len: usize) -> Rows<'_, T> {
            Rows { data, stride, dims, len }
        }
        match kv {
            BlockKv::F32(k, v) => attend(keys(k, row_len, hd, len), &v[..len * hd], None, group_q, scale, slot),
            BlockKv::F16(k, v) => attend(keys(k, row_len, hd, len), &v[..len * hd], None, group_q, scale, slot),
            BlockKv::I8 { k, v, k_scale, v_scale } => {
                let scales = Some((&k_scale[..len], &v_scale[..len]));
                attend(keys(k, row_len, hd, len), &v[..len * hd], scales, group_q, scale, slot)
            }
        }
    });

    // Merge the chunks of each group: softmax over all positions.
    let slot = |g: usize, chunk: usize| &slots[(g * n_chunks + chunk) * slot_len..][..slot_len];
    for g in 0..n_kv_heads {
        for r in 0..group {
            let max = |chunk: usize| slot(g, chunk)[2 * r];
            let sum = |chunk: usize| slot(g, chunk)[2 * r + 1];
            let m = (0..n_chunks).fold(f32::NEG_INFINITY, |a, j| a.max(max(j)));
            let l: f32 = (0..n_chunks).map(|j| sum(j) * (max(j) - m).exp()).sum();
            let head = g * group + r;
            let o = &mut out[head * hd..(head + 1) * hd];
            o.fill(0.0);
            for j in 0..n_chunks {
                let acc = &slot(g, j)[2 * group + r * hd..][..hd];
                axpy((max(j) - m).exp() / l, acc, o);
            }
        }
    }
}

/// One attention task: the H/G query heads `qs` (H/G, hd) over the keys (hd rows
/// of len positions) and values (len rows of hd) of one chunk, into `slot` (see
/// [`attention_task_len`]).
/// An int8 cache gives each position's key and value scales (len each): a position's
/// score is its key scale times the dot product with its int8 key, and its value
/// scale multiplies its softmax weight before the weighted sum of int8 values.
// Kept out of line: inlined into the task closure with its three cache precisions,
// the wasm build's attention ran slower in V8.
#[inline(never)]
fn attend<T: Elem>(keys: Rows<T>, values: &[T], scales: Option<(&[f32], &[f32])>, qs: &[f32], scale: f32, slot: &mut [f32]) {
    let (hd, len) = (keys.dims, keys.len);
    let group = qs.len() / hd;
    let (stats, rest) = slot.split_at_mut(2 * group);
    let (acc, scores) = rest.split_at_mut(group * hd);
    let scores = &mut scores[..group * len];
    // scores (H/G, len): one pass over the keys for all heads of the group.
    attention_scores(keys, qs, scale, scores);
    // Softmax numerators, with each head's max and sum kept for the merge.
    for (row, stat) in scores.chunks_exact_mut(len).zip(stats.chunks_exact_mut(2)) {
        if let Some((k_scale, _)) = scales {
            row.iter_mut().zip(k_scale).for_each(|(s, k)| *s *= k);
        }
        (stat[0], stat[1]) = softmax_numerators(row);
        if let Some((_, v_scale)) = scales {
            row.iter_mut().zip(v_scale).for_each(|(p, v)| *p *= v);
        }
    }
    // acc (H/G, hd): one pass over the values for all heads of the group.
    acc.fill(0.0);
    attention_values(values, hd, scores, acc);
}
