//! The CPU engine's inner loops, written once with explicit SIMD:
//! x86-64 AVX2 + FMA + F16C (detected at run time), wasm32 simd128 (chosen at
//! compile time with `-C target-feature=+simd128`), and a scalar fallback.
//!
//! Decoding is bound by memory bandwidth, so the kernels stream each weight row
//! once, convert f16 to f32 in registers, and keep several accumulators in flight.
//! Rows are split across threads natively (rayon); wasm runs on one thread.

use half::f16;

use crate::tensor::{Data, Matrix};

// ---------------------------------------------------------------------------
// Row dot products: the one place with per-architecture code.
// ---------------------------------------------------------------------------

/// Which SIMD flavour this machine runs.
pub fn simd_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        return "avx2+fma+f16c";
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return "wasm simd128";
    #[allow(unreachable_code)]
    "scalar"
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// Dot product of two f32 slices of equal length.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports the enabled features (checked above).
        return unsafe { x86::dot_f32(a, b) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return wasm::dot_f32(a, b);
    #[allow(unreachable_code)]
    scalar::dot_f32(a, b)
}

/// Dot product of an f16 row with f32 activations.
pub fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
    debug_assert_eq!(w.len(), x.len());
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: as above.
        return unsafe { x86::dot_f16(w, x) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return wasm::dot_f16(w, x);
    #[allow(unreachable_code)]
    scalar::dot_f16(w, x)
}

/// `y += a * x`.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    // Simple enough that the compiler vectorizes it for every target.
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

pub mod scalar {
    use half::f16;

    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; 8];
        let chunks = a.len() / 8 * 8;
        for i in (0..chunks).step_by(8) {
            for j in 0..8 {
                acc[j] += a[i + j] * b[i + j];
            }
        }
        let tail: f32 = a[chunks..].iter().zip(&b[chunks..]).map(|(x, y)| x * y).sum();
        acc.iter().sum::<f32>() + tail
    }

    pub fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
        w.iter().zip(x).map(|(w, x)| w.to_f32() * x).sum()
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;
    use half::f16;

    // The portable attention bodies, compiled with AVX2 + FMA enabled.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn attention_scores(keys: &[f32], qs: &[f32], hd: usize, scale: f32, scores: &mut [f32]) {
        super::portable::attention_scores(keys, qs, hd, scale, scores)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn attention_values(values: &[f32], probs: &[f32], hd: usize, out: &mut [f32]) {
        super::portable::attention_values(values, probs, hd, out)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_shifted_sum(x: &mut [f32], max: f32) -> f32 {
        super::portable::exp_shifted_sum(x, max)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let off = i + 8 * k;
                *acc = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(off)), _mm256_loadu_ps(pb.add(off)), *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc[0]);
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut total = hsum(sum);
        while i < n {
            total += a[i] * b[i];
            i += 1;
        }
        total
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
        let n = w.len().min(x.len());
        let (pw, px) = (w.as_ptr() as *const u16, x.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let off = i + 8 * k;
                let wv = _mm256_cvtph_ps(_mm_loadu_si128(pw.add(off) as *const __m128i));
                *acc = _mm256_fmadd_ps(wv, _mm256_loadu_ps(px.add(off)), *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            let wv = _mm256_cvtph_ps(_mm_loadu_si128(pw.add(i) as *const __m128i));
            acc[0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(px.add(i)), acc[0]);
            i += 8;
        }
        let sum = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut total = hsum(sum);
        while i < n {
            total += w[i].to_f32() * x[i];
            i += 1;
        }
        total
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use core::arch::wasm32::*;
    use half::f16;

    #[inline]
    fn hsum(v: v128) -> f32 {
        f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v) + f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v)
    }

    pub fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = [f32x4_splat(0.0); 4];
        let mut i = 0;
        // SAFETY: every load reads 4 floats at i + 4k + 3 < n.
        unsafe {
            while i + 16 <= n {
                for (k, acc) in acc.iter_mut().enumerate() {
                    let off = i + 4 * k;
                    let va = v128_load(a.as_ptr().add(off) as *const v128);
                    let vb = v128_load(b.as_ptr().add(off) as *const v128);
                    *acc = f32x4_add(*acc, f32x4_mul(va, vb));
                }
                i += 16;
            }
        }
        let mut total = hsum(f32x4_add(f32x4_add(acc[0], acc[1]), f32x4_add(acc[2], acc[3])));
        while i < n {
            total += a[i] * b[i];
            i += 1;
        }
        total
    }

    /// Four f16 (as the low 64 bits of `h`) to f32: shift the exponent and
    /// mantissa into place and rescale by 2^112 (handles subnormals; weights
    /// hold no inf/NaN).
    #[inline]
    fn f16x4_to_f32x4(h: v128) -> v128 {
        let h32 = u32x4_extend_low_u16x8(h);
        let sign = v128_and(h32, u32x4_splat(0x8000));
        let magnitude = u32x4_shl(v128_and(h32, u32x4_splat(0x7fff)), 13);
        let scaled = f32x4_mul(magnitude, f32x4_splat(f32::from_bits(0x7780_0000))); // 2^112
        v128_or(scaled, u32x4_shl(sign, 16))
    }

    pub fn dot_f16(w: &[f16], x: &[f32]) -> f32 {
        let n = w.len().min(x.len());
        let mut acc = [f32x4_splat(0.0); 2];
        let mut i = 0;
        // SAFETY: each 8-wide step reads w[i..i+8] and x[i..i+8] with i + 8 <= n.
        unsafe {
            while i + 8 <= n {
                let h = v128_load(w.as_ptr().add(i) as *const v128);
                let lo = f16x4_to_f32x4(h);
                let hi = f16x4_to_f32x4(i64x2_shuffle::<1, 1>(h, h));
                let x0 = v128_load(x.as_ptr().add(i) as *const v128);
                let x1 = v128_load(x.as_ptr().add(i + 4) as *const v128);
                acc[0] = f32x4_add(acc[0], f32x4_mul(lo, x0));
                acc[1] = f32x4_add(acc[1], f32x4_mul(hi, x1));
                i += 8;
            }
        }
        let mut total = hsum(f32x4_add(acc[0], acc[1]));
        while i < n {
            total += w[i].to_f32() * x[i];
            i += 1;
        }
        total
    }
}

// ---------------------------------------------------------------------------
// Attention tiles: a block of cached positions against all query heads of a
// group. Each key/value row is loaded once and used for every head of the
// group. The bodies are plain Rust over 8-lane arrays, compiled twice on
// x86-64 (with and without AVX2+FMA) and with simd128 on wasm.
// ---------------------------------------------------------------------------

/// scores (group x len) = scale * qs (group x hd) . keys (len x hd)^T
pub fn attention_scores(keys: &[f32], qs: &[f32], hd: usize, scale: f32, scores: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports the enabled features (checked above).
        return unsafe { x86::attention_scores(keys, qs, hd, scale, scores) };
    }
    portable::attention_scores(keys, qs, hd, scale, scores)
}

/// out (group x hd) += probs (group x len) . values (len x hd)
pub fn attention_values(values: &[f32], probs: &[f32], hd: usize, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: as above.
        return unsafe { x86::attention_values(values, probs, hd, out) };
    }
    portable::attention_values(values, probs, hd, out)
}

/// x = exp(x - max) for each element; returns the sum. Vectorizable exp
/// (Cephes polynomial, relative error about 1e-7).
pub fn exp_shifted_sum(x: &mut [f32], max: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: as above.
        return unsafe { x86::exp_shifted_sum(x, max) };
    }
    portable::exp_shifted_sum(x, max)
}

pub mod portable {
    const LANES: usize = 8;

    #[inline(always)]
    fn dot8(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; LANES];
        let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
        for (x, y) in ac.zip(bc) {
            for j in 0..LANES {
                acc[j] += x[j] * y[j];
            }
        }
        acc.iter().sum::<f32>() + tail
    }

    #[inline(always)]
    pub fn attention_scores(keys: &[f32], qs: &[f32], hd: usize, scale: f32, scores: &mut [f32]) {
        let len = keys.len() / hd;
        for (i, key) in keys.chunks_exact(hd).enumerate() {
            for (r, q) in qs.chunks_exact(hd).enumerate() {
                scores[r * len + i] = dot8(q, key) * scale;
            }
        }
    }

    #[inline(always)]
    pub fn attention_values(values: &[f32], probs: &[f32], hd: usize, out: &mut [f32]) {
        let len = values.len() / hd;
        for (i, value) in values.chunks_exact(hd).enumerate() {
            for (r, o) in out.chunks_exact_mut(hd).enumerate() {
                let p = probs[r * len + i];
                for (o, v) in o.iter_mut().zip(value) {
                    *o += p * v;
                }
            }
        }
    }

    #[inline(always)]
    fn exp(x: f32) -> f32 {
        let x = x.clamp(-87.0, 88.0);
        let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
        let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
        let z = r * r;
        let p = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r + 0.5;
        let y = p * z + r + 1.0;
        y * f32::from_bits(((n as i32 + 127) as u32) << 23)
    }

    #[inline(always)]
    pub fn exp_shifted_sum(x: &mut [f32], max: f32) -> f32 {
        let mut acc = [0.0f32; LANES];
        let mut chunks = x.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for j in 0..LANES {
                c[j] = exp(c[j] - max);
                acc[j] += c[j];
            }
        }
        let mut tail = 0.0;
        for v in chunks.into_remainder() {
            *v = exp(*v - max);
            tail += *v;
        }
        acc.iter().sum::<f32>() + tail
    }
}

// ---------------------------------------------------------------------------
// Matrix kernels built on the row dots.
// ---------------------------------------------------------------------------

/// Row `r` of `w` dotted with `x`.
#[inline]
fn row_dot(w: &Matrix, r: usize, x: &[f32]) -> f32 {
    let range = r * w.cols..(r + 1) * w.cols;
    match &w.data {
        Data::F32(d) => dot(&d[range], x),
        Data::F16(d) => dot_f16(&d[range], x),
    }
}

/// Run `f(first_index, chunk)` over `out` split into chunks of `chunk` elements,
/// in parallel natively and in order on wasm.
pub fn par_chunks<F>(out: &mut [f32], chunk: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    let chunk = chunk.max(1);
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i * chunk, c));
    }
    #[cfg(target_arch = "wasm32")]
    for (i, c) in out.chunks_mut(chunk).enumerate() {
        f(i * chunk, c);
    }
}

/// `(0..n).map(f)`, in parallel natively and in order on wasm.
pub fn par_map<T, F>(n: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize) -> T + Sync + Send,
{
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        (0..n).into_par_iter().map(f).collect()
    }
    #[cfg(target_arch = "wasm32")]
    (0..n).map(f).collect()
}

/// Rows per parallel task: enough work (~64 KiB of weights) to amortize scheduling.
fn rows_per_task(w: &Matrix) -> usize {
    (65536 / (w.cols * w.dtype().size()).max(1)).clamp(1, w.rows.max(1))
}

/// `out = W x`: out (rows), x (cols).
pub fn matvec(w: &Matrix, x: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), w.cols, "matvec input length");
    assert_eq!(out.len(), w.rows, "matvec output length");
    par_chunks(out, rows_per_task(w), |first, chunk| {
        for (i, o) in chunk.iter_mut().enumerate() {
            *o = row_dot(w, first + i, x);
        }
    });
}

/// `out = X W^T` for a batch: X (n x cols), out (n x rows). Each weight row is
/// read once for the whole batch, so prefill is compute-bound, not memory-bound.
pub fn matmul(w: &Matrix, x: &[f32], n: usize, out: &mut [f32]) {
    assert_eq!(x.len(), n * w.cols, "matmul input length");
    assert_eq!(out.len(), n * w.rows, "matmul output length");
    if n == 1 {
        return matvec(w, x, out);
    }
    // Work on the transposed output (rows x n) so each task owns whole weight rows.
    let mut out_t = vec![0.0f32; w.rows * n];
    let rows_per = rows_per_task(w);
    par_chunks(&mut out_t, rows_per * n, |first, chunk| {
        let mut row = vec![0.0f32; w.cols];
        for (i, o_row) in chunk.chunks_mut(n).enumerate() {
            w.row_into(first / n + i, &mut row);
            for (t, o) in o_row.iter_mut().enumerate() {
                *o = dot(&row, &x[t * w.cols..(t + 1) * w.cols]);
            }
        }
    });
    for r in 0..w.rows {
        for t in 0..n {
            out[t * w.rows + r] = out_t[r * n + t];
        }
    }
}
