//! Attention over a block of cached positions, for all query heads of a group.
//!
//! The cache stores each block's keys transposed (see kv_cache.rs): row d holds
//! dimension d of the block's positions, so the scores are vectorized over
//! positions. Its values are one row per position, so the weighted sum is
//! vectorized over head_dim and needs no horizontal sums. Each key or value
//! vector loaded (f16 converted in registers) serves up to eight query heads of
//! the group at once (four on AVX2, whose two vectors per step fill its 16
//! registers sooner), their accumulators held in
//! registers: with fewer KV heads (larger groups) there are fewer bytes to load
//! per multiply-add. Where a group's heads make the kernels compute-bound (four or
//! more), they prefetch the cache a few steps ahead, which the hardware
//! prefetcher does not do fast enough.

use super::simd::{dispatch, Elem, Kernel, Lanes};

/// A block of cached positions, transposed: `dims` rows of `len` positions,
/// row d starting at `data[d * stride]`.
#[derive(Clone, Copy)]
pub struct Rows<'a, T> {
    pub data: &'a [T],
    pub stride: usize,
    pub dims: usize,
    pub len: usize,
}

impl<T> Rows<'_, T> {
    /// Panics unless every row lies inside `data` (the kernels rely on it).
    fn check(&self) {
        assert!(self.dims == 0 || (self.dims - 1) * self.stride + self.len <= self.data.len(), "attention rows outside the cache");
    }
}

/// scores (group x len) = scale * qs (group x dims) . keys, keys given as
/// rows (dims x len).
pub fn attention_scores<T: Elem>(keys: Rows<T>, qs: &[f32], scale: f32, scores: &mut [f32]) {
    keys.check();
    assert!(qs.len().is_multiple_of(keys.dims.max(1)) && scores.len() >= qs.len() / keys.dims.max(1) * keys.len, "attention scores shapes");
    dispatch(Scores { keys, qs, scale, scores })
}

/// out (group x dims) += probs (group x len) . values, values given as one
/// row per position (len x dims, len = values.len() / dims).
pub fn attention_values<T: Elem>(values: &[T], dims: usize, probs: &[f32], out: &mut [f32]) {
    let (dims, len) = (dims.max(1), values.len() / dims.max(1));
    assert!(values.len() == len * dims && out.len().is_multiple_of(dims) && probs.len() >= out.len() / dims * len, "attention values shapes");
    dispatch(Values { values, dims, probs, out })
}

/// [`attention_scores`]' arguments.
struct Scores<'a, T> {
    keys: Rows<'a, T>,
    qs: &'a [f32],
    scale: f32,
    scores: &'a mut [f32],
}

impl<T: Elem> Kernel for Scores<'_, T> {
    type Output = ();
    #[inline(always)]
    fn run<V: Lanes>(self) {
        let Scores { keys, qs, scale, scores } = self;
        // The group's heads in blocks (heads_per_block), U = V::UNROLL vectors of
        // positions per step.
        let (dims, len, group) = (keys.dims, keys.len, qs.len() / keys.dims);
        let most = heads_per_block::<V>();
        let mut h = 0;
        while h < group {
            let r = (group - h).min(most);
            let (q, s) = (&qs[h * dims..], &mut scores[h * len..]);
            match (r, V::UNROLL) {
                (8, 2) => scores_heads::<V, T, 8, 2>(keys, q, scale, s),
                (7, 2) => scores_heads::<V, T, 7, 2>(keys, q, scale, s),
                (6, 2) => scores_heads::<V, T, 6, 2>(keys, q, scale, s),
                (5, 2) => scores_heads::<V, T, 5, 2>(keys, q, scale, s),
                (4, 2) => scores_heads::<V, T, 4, 2>(keys, q, scale, s),
                (3, 2) => scores_heads::<V, T, 3, 2>(keys, q, scale, s),
                (2, 2) => scores_heads::<V, T, 2, 2>(keys, q, scale, s),
                (_, 2) => scores_heads::<V, T, 1, 2>(keys, q, scale, s),
                (8, _) => scores_heads::<V, T, 8, 1>(keys, q, scale, s),
                (7, _) => scores_heads::<V, T, 7, 1>(keys, q, scale, s),
                (6, _) => scores_heads::<V, T, 6, 1>(keys, q, scale, s),
                (5, _) => scores_heads::<V, T, 5, 1>(keys, q, scale, s),
                (4, _) => scores_heads::<V, T, 4, 1>(keys, q, scale, s),
                (3, _) => scores_heads::<V, T, 3, 1>(keys, q, scale, s),
                (2, _) => scores_heads::<V, T, 2, 1>(keys, q, scale, s),
                _ => scores_heads::<V, T, 1, 1>(keys, q, scale, s),
            }
            h += r;
        }
    }
}

/// [`attention_values`]' arguments.
struct Values<'a, T> {
    values: &'a [T],
    dims: usize,
    probs: &'a [f32],
    out: &'a mut [f32],
}

impl<T: Elem> Kernel for Values<'_, T> {
    type Output = ();
    /// Rows are vectorized along dims: 16 lanes only where they fill whole vectors.
    fn suits(&self, lanes: usize) -> bool {
        self.dims.is_multiple_of(lanes)
    }
    #[inline(always)]
    fn run<V: Lanes>(self) {
        let Values { values, dims, probs, out } = self;
        // The group's heads in blocks (heads_per_block), J positions per step so that
        // R x J fills the multiply-adds in flight (8 with 2 vectors per step, else 4).
        let (len, group) = (values.len() / dims, out.len() / dims);
        let (most, chains) = (heads_per_block::<V>(), 4 * V::UNROLL);
        let mut h = 0;
        while h < group {
            let r = (group - h).min(most);
            let (p, o) = (&probs[h * len..], &mut out[h * dims..]);
            match (r, chains / r) {
                (8, _) => values_heads::<V, T, 8, 1>(values, dims, p, o),
                (7, _) => values_heads::<V, T, 7, 1>(values, dims, p, o),
                (6, _) => values_heads::<V, T, 6, 1>(values, dims, p, o),
                (5, _) => values_heads::<V, T, 5, 1>(values, dims, p, o),
                (4, 2) => values_heads::<V, T, 4, 2>(values, dims, p, o),
                (4, _) => values_heads::<V, T, 4, 1>(values, dims, p, o),
                (3, 2) => values_heads::<V, T, 3, 2>(values, dims, p, o),
                (3, _) => values_heads::<V, T, 3, 1>(values, dims, p, o),
                (2, 4) => values_heads::<V, T, 2, 4>(values, dims, p, o),
                (2, _) => values_heads::<V, T, 2, 2>(values, dims, p, o),
                (_, 8) => values_heads::<V, T, 1, 8>(values, dims, p, o),
                _ => values_heads::<V, T, 1, 4>(values, dims, p, o),
            }
            h += r;
        }
    }
}

/// How far ahead, in elements, the scores kernel asks for keys: a block of 256
/// positions of head_dim 16. A head's key blocks lie one after another, so the
/// kernel sweeps them in order at the rate it reads them, and the lines it asks
/// for at the end of a block are the next block's (asking for the same row a
/// few steps on would never fetch the first half of any row).
const KEYS_AHEAD: usize = 4096;

/// scores (R x len) = scale * q (R x dims) . keys: one load of each key
/// vector serves R heads, whose accumulators stay in registers; U vectors
/// of positions per step keep R x U independent multiply-adds in flight
/// (each waits on the one before it).
#[inline(always)]
fn scores_heads<V: Lanes, T: Elem, const R: usize, const U: usize>(keys: Rows<T>, q: &[f32], scale: f32, scores: &mut [f32]) {
    let (dims, len, stride) = (keys.dims, keys.len, keys.stride);
    assert!(q.len() >= R * dims && scores.len() >= R * len);
    let step = U * V::N;
    let (k, steps) = (keys.data.as_ptr(), len / step * step);
    for p in (0..steps).step_by(step) {
        let mut acc = [[V::zero(); U]; R];
        for d in 0..dims {
            if R >= 4 {
                for u in 0..U {
                    V::prefetch(k.wrapping_add(p * dims + d * step + u * V::N + KEYS_AHEAD) as *const u8);
                }
            }
            // SAFETY: d * stride + p + step <= (dims - 1) * stride + len <= data.len() (Rows::check).
            let kv: [V; U] = std::array::from_fn(|u| unsafe { T::load::<V>(k.add(d * stride + p + u * V::N)) });
            for (r, a) in acc.iter_mut().enumerate() {
                // SAFETY: r * dims + d < R * dims <= q.len() (asserted).
                let qd = V::splat(unsafe { *q.get_unchecked(r * dims + d) });
                for u in 0..U {
                    a[u] = qd.mul_add(kv[u], a[u]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            let out = &mut scores[r * len + p..][..step];
            for u in 0..U {
                a[u].mul(V::splat(scale)).store(&mut out[u * V::N..]);
            }
        }
    }
    for p in steps..len {
        for r in 0..R {
            let s: f32 = (0..dims).map(|d| q[r * dims + d] * keys.data[d * stride + p].to_f32()).sum();
            scores[r * len + p] = s * scale;
        }
    }
}

/// out (R x dims) += probs (R x len) . values (len x dims): one load of each
/// value vector serves R heads, each multiplying it by its probability
/// (vectorized along dims: no horizontal sums). J positions per step keep
/// R x J independent multiply-adds in flight (each waits on the one before it).
#[inline(always)]
fn values_heads<V: Lanes, T: Elem, const R: usize, const J: usize>(values: &[T], dims: usize, probs: &[f32], out: &mut [f32]) {
    let len = values.len() / dims;
    assert!(probs.len() >= R * len && out.len() >= R * dims);
    let (v, pr, cols, steps) = (values.as_ptr(), probs.as_ptr(), dims / V::N * V::N, len / J * J);
    // SAFETY (the loads below): (p + j) * dims + c + N <= len * dims = values.len(),
    // and r * len + p + j < R * len <= probs.len() (asserted).
    for c in (0..cols).step_by(V::N) {
        let mut acc = [[V::zero(); J]; R];
        for p in (0..steps).step_by(J) {
            if R >= 4 {
                V::prefetch(v.wrapping_add((p + 32) * dims + c) as *const u8);
            }
            let rows: [V; J] = std::array::from_fn(|j| unsafe { T::load::<V>(v.add((p + j) * dims + c)) });
            for (r, a) in acc.iter_mut().enumerate() {
                for j in 0..J {
                    a[j] = V::splat(unsafe { *pr.add(r * len + p + j) }).mul_add(rows[j], a[j]);
                }
            }
        }
        for p in steps..len {
            let row = unsafe { T::load::<V>(v.add(p * dims + c)) };
            for (r, a) in acc.iter_mut().enumerate() {
                a[0] = V::splat(unsafe { *pr.add(r * len + p) }).mul_add(row, a[0]);
            }
        }
        for (r, a) in acc.iter().enumerate() {
            let o = &mut out[r * dims + c..][..V::N];
            // SAFETY: o holds N floats.
            a.iter().fold(unsafe { V::load(o.as_ptr()) }, |s, &x| s.add(x)).store(o);
        }
    }
    for d in cols..dims {
        for r in 0..R {
            out[r * dims + d] += (0..len).map(|p| probs[r * len + p] * values[p * dims + d].to_f32()).sum::<f32>();
        }
    }
}

/// Query heads the attention kernels take per block: eight where their accumulators
/// fit the registers (32 on AVX-512; one vector of positions per step, as on wasm
/// simd128 and the plain code, in 16), else four. Fewer blocks, fewer passes over the
/// cache (and f16 conversions): on SmolLM2 (9 query heads) MQA's one key/value head is
/// read twice (8 + 1 heads) where GQA-3's three are read once each.
fn heads_per_block<V: Lanes>() -> usize {
    if V::N >= 16 || V::UNROLL == 1 { 8 } else { 4 }
}

/// The attention kernels against f64 computed from the same (rounded) numbers.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::{run_on, Isa};
    use crate::kernels::{randn, softmax_numerators};
    use half::f16;

    /// One attention block on keys `k` (hd rows of len, `stride` apart) and values `v`
    /// (len rows of hd): the softmax sums per head, and the weighted values (group x hd).
    #[allow(clippy::too_many_arguments)]
    fn attention_block<T: Elem>(isa: Isa, k: &[T], v: &[T], q: &[f32], hd: usize, stride: usize, len: usize, scale: f32) -> (Vec<f32>, Vec<f32>) {
        let group = q.len() / hd;
        let mut scores = vec![0.0f32; group * len];
        let mut out = vec![0.0f32; group * hd];
        let keys = Rows { data: k, stride, dims: hd, len };
        keys.check();
        run_on(isa, Scores { keys, qs: q, scale, scores: &mut scores });
        let sums = scores.chunks_exact_mut(len).map(|row| softmax_numerators(row).1).collect();
        run_on(isa, Values { values: &v[..len * hd], dims: hd, probs: &scores, out: &mut out });
        (sums, out)
    }

    /// Attention over one block, every group size 1..=9 (head blocks of 8 down to 1, and 8 + 1,
    /// each with its own positions per step), lengths around the 16-position step
    /// and the block limit, head_dim 8, 16, 24 and 64 (24: a tail of dims past the
    /// vectors), f32, f16 and int8 rows: scores, softmax_numerators and the weighted
    /// values against f64 computed from the same (rounded) numbers. The int8 rows
    /// are codes round(16 x), which the kernels read unscaled: given q / 16 they
    /// compute the scores of codes / 16, and their output / 16 is the weighted sum of
    /// codes / 16 (exact: powers of two). On every instruction set here.
    #[test]
    fn attention_block_matches_f64_for_every_group_and_tail() {
        for isa in Isa::all_available() {
        for hd in [8usize, 16, 24, 64] {
            for group in 1..=9usize {
                for len in [1usize, 7, 15, 16, 17, 33, 255, 256, 512] {
                    let stride = len + 5; // rows apart in the cache, as at capacity > len
                    let k = randn(hd * stride, (hd * 100 + group * 10 + len) as u64);
                    let v = randn(hd * stride, (hd * 100 + group * 10 + len) as u64 + 7);
                    let q = randn(group * hd, len as u64 + 3);
                    let scale = 1.0 / (hd as f32).sqrt();
                    for kind in ["f32", "f16", "int8"] {
                        let code = |a: f32| (a * 16.0).round().clamp(-127.0, 127.0) as i8;
                        let round = |x: &[f32]| -> Vec<f32> {
                            x.iter()
                                .map(|&a| match kind {
                                    "f16" => f16::from_f32(a).to_f32(),
                                    "int8" => code(a) as f32 / 16.0,
                                    _ => a,
                                })
                                .collect()
                        };
                        let (kr, vr) = (round(&k), round(&v));
                        let (sums, out) = match kind {
                            "f16" => {
                                let (kh, vh): (Vec<f16>, Vec<f16>) = (k.iter().map(|&a| f16::from_f32(a)).collect(), v.iter().map(|&a| f16::from_f32(a)).collect());
                                attention_block(isa, &kh, &vh, &q, hd, stride, len, scale)
                            }
                            "int8" => {
                                let (kq, vq): (Vec<i8>, Vec<i8>) = (k.iter().map(|&a| code(a)).collect(), v.iter().map(|&a| code(a)).collect());
                                let q16: Vec<f32> = q.iter().map(|&a| a / 16.0).collect();
                                let (sums, out) = attention_block(isa, &kq, &vq, &q16, hd, stride, len, scale);
                                (sums, out.iter().map(|&o| o / 16.0).collect())
                            }
                            _ => attention_block(isa, &k, &v, &q, hd, stride, len, scale),
                        };
                        for r in 0..group {
                            let s64: Vec<f64> = (0..len).map(|p| (0..hd).map(|d| q[r * hd + d] as f64 * kr[d * stride + p] as f64).sum::<f64>() * scale as f64).collect();
                            let m = s64.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                            let e: Vec<f64> = s64.iter().map(|s| (s - m).exp()).collect();
                            let sum: f64 = e.iter().sum();
                            assert!((sums[r] as f64 - sum).abs() <= 1e-5 * sum, "{isa:?} hd {hd} group {group} len {len} {kind}: sum {} vs {sum}", sums[r]);
                            for d in 0..hd {
                                let want: f64 = (0..len).map(|p| e[p] * vr[p * hd + d] as f64).sum();
                                let got = out[r * hd + d] as f64;
                                // Each probability within 1e-5 relative (scores and exp), summed over len terms of |v| <= ~4.
                                assert!((got - want).abs() <= 1e-5 * (1.0 + sum * 4.0), "{isa:?} hd {hd} group {group} len {len} {kind} head {r} dim {d}: {got} vs {want}");
                            }
                        }
                    }
                }
            }
        }
    }
    }
}
