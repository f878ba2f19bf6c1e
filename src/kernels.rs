//! The CPU engine's inner loops, each written once over [`Lanes`], a small
//! vector trait implemented for x86-64 AVX-512 and AVX2 + FMA + F16C (detected
//! at run time), wasm32 simd128 (chosen at compile time with
//! `-C target-feature=+simd128`), and plain arrays (the fallback).
//!
//! Decoding is bound by memory bandwidth, so the kernels stream each weight row
//! once, four rows per activation load, convert f16 to f32 in registers, and
//! keep several accumulators in flight.
//! Rows are split across threads (rayon) when the caller says the work pays for
//! it: natively, and in the threaded wasm module (its pool runs in Web Workers);
//! the single-thread wasm module runs everything in order.

use half::f16;

use crate::tensor::{Data, Matrix};

// ---------------------------------------------------------------------------
// Row dot products and f16 conversion: the one place with per-architecture code.
// ---------------------------------------------------------------------------

/// Which SIMD flavour this machine runs.
pub fn simd_name() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        return "avx512f+avx2+fma+f16c";
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        return "avx2+fma+f16c";
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "relaxed-simd"))]
    return "wasm simd128 + relaxed-simd (fused multiply-add)";
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128", not(target_feature = "relaxed-simd")))]
    return "wasm simd128";
    #[allow(unreachable_code)]
    "scalar"
}

#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// AVX-512F, unless GQA_NO_AVX512 is set (to compare the two paths).
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    static USE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USE.get_or_init(|| is_x86_feature_detected!("avx512f") && std::env::var_os("GQA_NO_AVX512").is_none())
}

/// `out[i] = w[i * cols..][..cols] . x` for each i: consecutive rows of a
/// row-major f32 or f16 matrix against one vector.
pub fn rows_dot_slice<W: Elem>(w: &[W], cols: usize, x: &[f32], out: &mut [f32]) {
    assert!(x.len() >= cols && w.len() >= out.len() * cols, "rows_dot shapes");
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports AVX-512F (checked).
        return unsafe { x86::rows_dot_avx512(w, cols, x, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports the enabled features (checked above).
        return unsafe { x86::rows_dot(w, cols, x, out) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return portable::rows_dot::<wasm::F32x8, W>(w, cols, x, out);
    #[allow(unreachable_code)]
    portable::rows_dot::<[f32; 8], W>(w, cols, x, out)
}

/// `dst = src` as f32 (exact: every f16 is an f32), by the same vector loads
/// the matrix and attention kernels use for f16.
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "f16_to_f32 lengths");
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports AVX-512F (checked).
        return unsafe { x86::f16_to_f32_avx512(src, dst) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: as above.
        return unsafe { x86::f16_to_f32(src, dst) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return portable::f16_to_f32::<wasm::F32x8>(src, dst);
    #[allow(unreachable_code)]
    portable::f16_to_f32::<[f32; 8]>(src, dst)
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
    /// One f16 (as bits) to f32 without hardware support: the simd128 kernel's
    /// steps on one lane, so that the exhaustive test of this function covers them.
    ///
    /// Sign-extend to 32 bits and shift left by 13: the sign lands in bit 31 and
    /// the exponent and mantissa in f32's fields, with f16's exponent bias (15)
    /// instead of f32's (127). Masking off the extended sign copies and multiplying
    /// by 2^112 = 2^(127-15) rebiases normals and, being a float multiply, also
    /// normalizes subnormals (exactly: every f16 is an f32). Infinity and NaN
    /// (exponent 31) come out as 2^16 x 1.mantissa; setting all exponent bits
    /// restores them.
    #[inline(always)]
    pub fn f16_to_f32(h: u16) -> f32 {
        let bits = ((h as i16 as i32) << 13) as u32 & 0x8fff_e000;
        let value = f32::from_bits(bits) * f32::from_bits(0x7780_0000); // x 2^112
        if value.abs() >= 65536.0 {
            f32::from_bits(value.to_bits() | 0x7f80_0000) // inf or NaN
        } else {
            value
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;
    use half::f16;

    use super::Rows;

    impl super::Lanes for __m256 {
        const N: usize = 8;
        const UNROLL: usize = 2;
        // SAFETY (all): only reached from functions compiled with AVX2, FMA
        // and F16C, called after the CPU was checked for them.
        #[inline(always)]
        fn zero() -> Self {
            unsafe { _mm256_setzero_ps() }
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_f16(p: *const f16) -> Self {
            _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
        }
        #[inline(always)]
        unsafe fn load_i8(p: *const i8) -> Self {
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p as *const __m128i)))
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            unsafe { _mm256_fmadd_ps(self, b, c) }
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            unsafe { _mm256_add_ps(self, b) }
        }
        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            unsafe { _mm256_mul_ps(self, b) }
        }
        #[inline(always)]
        fn div(self, b: Self) -> Self {
            unsafe { _mm256_div_ps(self, b) }
        }
        #[inline(always)]
        fn max(self, b: Self) -> Self {
            unsafe { _mm256_max_ps(self, b) }
        }
        #[inline(always)]
        fn exponent_from_low_bits(self) -> Self {
            unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(self))) }
        }
        #[inline(always)]
        fn sum(self) -> f32 {
            unsafe { hsum(self) }
        }
        #[inline(always)]
        fn max_lane(self) -> f32 {
            unsafe {
                let m = _mm_max_ps(_mm256_castps256_ps128(self), _mm256_extractf128_ps::<1>(self));
                let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
                _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
            }
        }
        #[inline(always)]
        fn store(self, out: &mut [f32]) {
            assert!(out.len() >= 8);
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), self) }
        }
        #[inline(always)]
        fn prefetch(p: *const u8) {
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
        }
    }

    impl super::Lanes for __m512 {
        const N: usize = 16;
        const UNROLL: usize = 2;
        // SAFETY (all): only reached from functions compiled with AVX-512F,
        // called after the CPU was checked for it.
        #[inline(always)]
        fn zero() -> Self {
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_f16(p: *const f16) -> Self {
            _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i))
        }
        #[inline(always)]
        unsafe fn load_i8(p: *const i8) -> Self {
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p as *const __m128i)))
        }
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            unsafe { _mm512_fmadd_ps(self, b, c) }
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            unsafe { _mm512_add_ps(self, b) }
        }
        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            unsafe { _mm512_mul_ps(self, b) }
        }
        #[inline(always)]
        fn div(self, b: Self) -> Self {
            unsafe { _mm512_div_ps(self, b) }
        }
        #[inline(always)]
        fn max(self, b: Self) -> Self {
            unsafe { _mm512_max_ps(self, b) }
        }
        #[inline(always)]
        fn exponent_from_low_bits(self) -> Self {
            unsafe { _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_castps_si512(self))) }
        }
        #[inline(always)]
        fn sum(self) -> f32 {
            unsafe { _mm512_reduce_add_ps(self) }
        }
        #[inline(always)]
        fn max_lane(self) -> f32 {
            unsafe { _mm512_reduce_max_ps(self) }
        }
        #[inline(always)]
        fn store(self, out: &mut [f32]) {
            assert!(out.len() >= 16);
            unsafe { _mm512_storeu_ps(out.as_mut_ptr(), self) }
        }
        #[inline(always)]
        fn prefetch(p: *const u8) {
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
        }
    }

    // The generic kernels on AVX-512 vectors.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn rows_dot_avx512<W: super::Elem>(w: &[W], cols: usize, x: &[f32], out: &mut [f32]) {
        super::portable::rows_dot::<__m512, W>(w, cols, x, out)
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn attention_scores_avx512<T: super::Elem>(keys: Rows<T>, qs: &[f32], scale: f32, scores: &mut [f32]) {
        super::portable::attention_scores::<__m512, T>(keys, qs, scale, scores)
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn attention_values_avx512<T: super::Elem>(values: &[T], dims: usize, probs: &[f32], out: &mut [f32]) {
        super::portable::attention_values::<__m512, T>(values, dims, probs, out)
    }

    // The generic row dots on AVX2 vectors, f16 converted by F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rows_dot<W: super::Elem>(w: &[W], cols: usize, x: &[f32], out: &mut [f32]) {
        super::portable::rows_dot::<__m256, W>(w, cols, x, out)
    }

    // The generic attention bodies on AVX2 vectors.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn attention_scores<T: super::Elem>(keys: Rows<T>, qs: &[f32], scale: f32, scores: &mut [f32]) {
        super::portable::attention_scores::<__m256, T>(keys, qs, scale, scores)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn attention_values<T: super::Elem>(values: &[T], dims: usize, probs: &[f32], out: &mut [f32]) {
        super::portable::attention_values::<__m256, T>(values, dims, probs, out)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn softmax_numerators(x: &mut [f32]) -> (f32, f32) {
        super::portable::softmax_numerators::<__m256>(x)
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax_numerators_avx512(x: &mut [f32]) -> (f32, f32) {
        super::portable::softmax_numerators::<__m512>(x)
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn swiglu_gate(g: &mut [f32], u: &[f32]) {
        super::portable::swiglu_gate::<__m256>(g, u)
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn swiglu_gate_avx512(g: &mut [f32], u: &[f32]) {
        super::portable::swiglu_gate::<__m512>(g, u)
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

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
        super::portable::f16_to_f32::<__m256>(src, dst)
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn f16_to_f32_avx512(src: &[f16], dst: &mut [f32]) {
        super::portable::f16_to_f32::<__m512>(src, dst)
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

    /// Eight lanes as two simd128 vectors (see [`super::Lanes`]).
    #[derive(Clone, Copy)]
    pub struct F32x8(v128, v128);

    impl super::Lanes for F32x8 {
        const N: usize = 8;
        const UNROLL: usize = 1;
        #[inline(always)]
        fn zero() -> Self {
            F32x8(f32x4_splat(0.0), f32x4_splat(0.0))
        }
        #[inline(always)]
        fn splat(x: f32) -> Self {
            F32x8(f32x4_splat(x), f32x4_splat(x))
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            F32x8(v128_load(p as *const v128), v128_load(p.add(4) as *const v128))
        }
        #[inline(always)]
        unsafe fn load_f16(p: *const f16) -> Self {
            let (lo, hi) = load_f16x8(p);
            F32x8(lo, hi)
        }
        #[inline(always)]
        unsafe fn load_i8(p: *const i8) -> Self {
            let h = i16x8_extend_low_i8x16(v128_load64_zero(p as *const u64));
            F32x8(f32x4_convert_i32x4(i32x4_extend_low_i16x8(h)), f32x4_convert_i32x4(i32x4_extend_high_i16x8(h)))
        }
        /// Fused in the build with relaxed SIMD (the threaded module; the engine may
        /// round once or twice, as the CPU has FMA or not), a multiply and an add else.
        #[inline(always)]
        fn mul_add(self, b: Self, c: Self) -> Self {
            #[cfg(target_feature = "relaxed-simd")]
            return F32x8(f32x4_relaxed_madd(self.0, b.0, c.0), f32x4_relaxed_madd(self.1, b.1, c.1));
            #[cfg(not(target_feature = "relaxed-simd"))]
            F32x8(f32x4_add(f32x4_mul(self.0, b.0), c.0), f32x4_add(f32x4_mul(self.1, b.1), c.1))
        }
        #[inline(always)]
        fn add(self, b: Self) -> Self {
            F32x8(f32x4_add(self.0, b.0), f32x4_add(self.1, b.1))
        }
        #[inline(always)]
        fn mul(self, b: Self) -> Self {
            F32x8(f32x4_mul(self.0, b.0), f32x4_mul(self.1, b.1))
        }
        #[inline(always)]
        fn div(self, b: Self) -> Self {
            F32x8(f32x4_div(self.0, b.0), f32x4_div(self.1, b.1))
        }
        #[inline(always)]
        fn max(self, b: Self) -> Self {
            // pmax: one instruction (no NaN handling, none needed here).
            F32x8(f32x4_pmax(self.0, b.0), f32x4_pmax(self.1, b.1))
        }
        #[inline(always)]
        fn exponent_from_low_bits(self) -> Self {
            F32x8(i32x4_shl(self.0, 23), i32x4_shl(self.1, 23))
        }
        #[inline(always)]
        fn sum(self) -> f32 {
            hsum(f32x4_add(self.0, self.1))
        }
        #[inline(always)]
        fn max_lane(self) -> f32 {
            let m = f32x4_pmax(self.0, self.1);
            let m = f32x4_pmax(m, i32x4_shuffle::<2, 3, 0, 1>(m, m));
            f32x4_extract_lane::<0>(f32x4_pmax(m, i32x4_shuffle::<1, 0, 3, 2>(m, m)))
        }
        #[inline(always)]
        fn store(self, out: &mut [f32]) {
            assert!(out.len() >= 8);
            // SAFETY: out holds at least 8 floats (asserted).
            unsafe {
                v128_store(out.as_mut_ptr() as *mut v128, self.0);
                v128_store(out.as_mut_ptr().add(4) as *mut v128, self.1);
            }
        }
    }

    /// Four f16 (already sign-extended to i32 lanes) to f32: the steps of
    /// [`super::scalar::f16_to_f32`] on four lanes (see there why they are exact).
    #[inline(always)]
    fn f16x4_to_f32x4(h: v128) -> v128 {
        let bits = v128_and(i32x4_shl(h, 13), u32x4_splat(0x8fff_e000));
        let value = f32x4_mul(bits, f32x4_splat(f32::from_bits(0x7780_0000))); // x 2^112
        let inf_or_nan = f32x4_ge(f32x4_abs(value), f32x4_splat(65536.0));
        v128_or(value, v128_and(inf_or_nan, u32x4_splat(0x7f80_0000)))
    }

    /// Eight f16 at `p` as two f32x4.
    #[inline(always)]
    unsafe fn load_f16x8(p: *const f16) -> (v128, v128) {
        let h = v128_load(p as *const v128);
        (f16x4_to_f32x4(i32x4_extend_low_i16x8(h)), f16x4_to_f32x4(i32x4_extend_high_i16x8(h)))
    }
}

// ---------------------------------------------------------------------------
// Attention over a block of cached positions, for all query heads of a group.
// The cache stores each block's keys transposed (see kv_cache.rs): row d holds
// dimension d of the block's positions, so the scores are vectorized over
// positions. Its values are one row per position, so the weighted sum is
// vectorized over head_dim and needs no horizontal sums. Each key or value
// vector loaded (f16 converted in registers) serves up to eight query heads of
// the group at once (four with 16 registers), their accumulators held in
// registers: with fewer KV heads (larger groups) there are fewer bytes to load
// per multiply-add. Where a group's heads make the kernels compute-bound (four or
// more), they prefetch the cache a few steps ahead, which the hardware
// prefetcher does not do fast enough. The bodies are written once over `Lanes`
// (see below).
// ---------------------------------------------------------------------------

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
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports AVX-512F (checked).
        return unsafe { x86::attention_scores_avx512(keys, qs, scale, scores) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU supports the enabled features (checked above).
        return unsafe { x86::attention_scores(keys, qs, scale, scores) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return portable::attention_scores::<wasm::F32x8, T>(keys, qs, scale, scores);
    #[allow(unreachable_code)]
    portable::attention_scores::<[f32; 8], T>(keys, qs, scale, scores)
}

/// out (group x dims) += probs (group x len) . values, values given as one
/// row per position (len x dims, len = values.len() / dims).
pub fn attention_values<T: Elem>(values: &[T], dims: usize, probs: &[f32], out: &mut [f32]) {
    let (dims, len) = (dims.max(1), values.len() / dims.max(1));
    assert!(values.len() == len * dims && out.len().is_multiple_of(dims) && probs.len() >= out.len() / dims * len, "attention values shapes");
    // Rows are vectorized along dims: 16 lanes only where they fill whole vectors.
    #[cfg(target_arch = "x86_64")]
    if has_avx512() && dims.is_multiple_of(16) {
        // SAFETY: the CPU supports AVX-512F (checked).
        return unsafe { x86::attention_values_avx512(values, dims, probs, out) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: as above.
        return unsafe { x86::attention_values(values, dims, probs, out) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return portable::attention_values::<wasm::F32x8, T>(values, dims, probs, out);
    #[allow(unreachable_code)]
    portable::attention_values::<[f32; 8], T>(values, dims, probs, out)
}

/// Softmax numerators in place: x = exp(x - max(x)); returns (max(x), sum of
/// the new x). Vectorized exp (a fitted polynomial, relative error about 1e-7).
pub fn softmax_numerators(x: &mut [f32]) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports AVX-512F (checked).
        return unsafe { x86::softmax_numerators_avx512(x) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: as above.
        return unsafe { x86::softmax_numerators(x) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return portable::softmax_numerators::<wasm::F32x8>(x);
    #[allow(unreachable_code)]
    portable::softmax_numerators::<[f32; 8]>(x)
}

/// SwiGLU's gate in place: `g = silu(g) * u`, where silu(x) = x / (1 + exp(-x)).
/// Vectorized with softmax's exp: a scalar `expf` per element cost about 2% of a
/// token on the shipped base (2,304 per token).
pub fn swiglu_gate(g: &mut [f32], u: &[f32]) {
    assert_eq!(g.len(), u.len(), "gate and up lengths");
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: the CPU supports AVX-512F (checked).
        return unsafe { x86::swiglu_gate_avx512(g, u) };
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: as above.
        return unsafe { x86::swiglu_gate(g, u) };
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return portable::swiglu_gate::<wasm::F32x8>(g, u);
    #[allow(unreachable_code)]
    portable::swiglu_gate::<[f32; 8]>(g, u)
}

/// A vector of f32 lanes: what the matrix and attention kernels are written
/// in, once, for AVX-512 (`__m512`, 16 lanes), AVX2 (`__m256`, 8), simd128
/// (two `v128`, 8) and plain arrays (8, the fallback).
pub trait Lanes: Copy {
    /// Lanes per vector.
    const N: usize;
    /// Vectors the kernels keep in flight per row or head: 2 where 16 (or 32)
    /// registers hold that many full vectors, 1 for simd128's pairs (V8 has
    /// 16 xmm registers) and plain arrays.
    const UNROLL: usize;
    fn zero() -> Self;
    fn splat(x: f32) -> Self;
    /// # Safety
    /// `p..p + N` must be readable.
    unsafe fn load(p: *const f32) -> Self;
    /// N f16 at `p` as f32.
    ///
    /// # Safety
    /// `p..p + N` must be readable.
    unsafe fn load_f16(p: *const f16) -> Self;
    /// N int8 at `p` as f32.
    ///
    /// # Safety
    /// `p..p + N` must be readable.
    unsafe fn load_i8(p: *const i8) -> Self;
    /// `self * b + c` (fused where the hardware has it).
    fn mul_add(self, b: Self, c: Self) -> Self;
    fn add(self, b: Self) -> Self;
    fn mul(self, b: Self) -> Self;
    fn div(self, b: Self) -> Self;
    fn max(self, b: Self) -> Self;
    /// Each lane's bits shifted left by 23: the low 8 bits of the mantissa land
    /// in the exponent field, so a lane whose mantissa ends in the biased
    /// exponent b (1..=254, the sign bit above it clear) becomes 2^(b - 127).
    fn exponent_from_low_bits(self) -> Self;
    fn sum(self) -> f32;
    /// The largest lane (a shuffle tree, not a chain of scalar steps).
    fn max_lane(self) -> f32;
    /// Write the lanes to `out[..N]`.
    fn store(self, out: &mut [f32]);
    /// Ask for the cache line at `p` ahead of use (a hint: never faults).
    #[inline(always)]
    fn prefetch(_p: *const u8) {}
}

/// An element of a weight matrix or of the KV cache: f32, or f16 (or the
/// cache's int8) converted in registers as it is loaded.
pub trait Elem: Copy + Send + Sync {
    /// # Safety
    /// `p..p + V::N` must be readable.
    unsafe fn load<V: Lanes>(p: *const Self) -> V;
    fn to_f32(self) -> f32;
}

impl Elem for f32 {
    #[inline(always)]
    unsafe fn load<V: Lanes>(p: *const f32) -> V {
        V::load(p)
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Elem for f16 {
    #[inline(always)]
    unsafe fn load<V: Lanes>(p: *const f16) -> V {
        V::load_f16(p)
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        scalar::f16_to_f32(self.to_bits())
    }
}

/// int8 KV-cache elements, unscaled (the caller applies each position's scale).
impl Elem for i8 {
    #[inline(always)]
    unsafe fn load<V: Lanes>(p: *const i8) -> V {
        V::load_i8(p)
    }
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
}

impl Lanes for [f32; 8] {
    const N: usize = 8;
    const UNROLL: usize = 1;
    #[inline(always)]
    fn zero() -> Self {
        [0.0; 8]
    }
    #[inline(always)]
    fn splat(x: f32) -> Self {
        [x; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        (p as *const [f32; 8]).read_unaligned()
    }
    #[inline(always)]
    unsafe fn load_f16(p: *const f16) -> Self {
        std::array::from_fn(|j| scalar::f16_to_f32((*p.add(j)).to_bits()))
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> Self {
        std::array::from_fn(|j| *p.add(j) as f32)
    }
    #[inline(always)]
    fn mul_add(self, b: Self, c: Self) -> Self {
        std::array::from_fn(|j| self[j] * b[j] + c[j])
    }
    #[inline(always)]
    fn add(self, b: Self) -> Self {
        std::array::from_fn(|j| self[j] + b[j])
    }
    #[inline(always)]
    fn mul(self, b: Self) -> Self {
        std::array::from_fn(|j| self[j] * b[j])
    }
    #[inline(always)]
    fn div(self, b: Self) -> Self {
        std::array::from_fn(|j| self[j] / b[j])
    }
    #[inline(always)]
    fn max(self, b: Self) -> Self {
        std::array::from_fn(|j| self[j].max(b[j]))
    }
    #[inline(always)]
    fn exponent_from_low_bits(self) -> Self {
        std::array::from_fn(|j| f32::from_bits(self[j].to_bits() << 23))
    }
    #[inline(always)]
    fn sum(self) -> f32 {
        self.iter().sum()
    }
    #[inline(always)]
    fn max_lane(self) -> f32 {
        self.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b))
    }
    #[inline(always)]
    fn store(self, out: &mut [f32]) {
        out[..8].copy_from_slice(&self);
    }
}

pub mod portable {
    use super::{Elem, Lanes, Rows};

    /// `out[i] = row i of w . x` for R rows at once, A accumulators per row:
    /// each x vector loaded serves R rows, and R x A independent multiply-adds
    /// are in flight. The next block's rows are asked for while this one is
    /// read (a hint, never faults): rows are streamed once, and the hardware
    /// prefetcher alone leaves the core waiting (measured on a single-row
    /// kernel, 59M params, one thread: 29 -> 19 ms/token).
    #[inline(always)]
    fn rows_dot_block<V: Lanes, W: Elem, const R: usize, const A: usize>(w: &[W], cols: usize, x: &[f32], out: &mut [f32; R]) {
        assert!(w.len() >= R * cols && x.len() >= cols);
        let (pw, px) = (w.as_ptr(), x.as_ptr());
        let step = A * V::N;
        let (steps, vectors) = (cols / step * step, cols / V::N * V::N);
        let line = 64 / std::mem::size_of::<W>(); // weights per cache line
        let mut acc = [[V::zero(); A]; R];
        for c in (0..steps).step_by(step) {
            if c % line == 0 {
                for r in 0..R {
                    // The same line of the row R rows on: the next block's.
                    V::prefetch(pw.wrapping_add((r + R) * cols + c) as *const u8);
                }
            }
            for a in 0..A {
                // SAFETY: c + (a + 1) * N <= cols, within x and within each of the R rows.
                let xv = unsafe { V::load(px.add(c + a * V::N)) };
                for (r, acc) in acc.iter_mut().enumerate() {
                    acc[a] = unsafe { W::load::<V>(pw.add(r * cols + c + a * V::N)) }.mul_add(xv, acc[a]);
                }
            }
        }
        for c in (steps..vectors).step_by(V::N) {
            // SAFETY: c + N <= cols, as above.
            let xv = unsafe { V::load(px.add(c)) };
            for (r, acc) in acc.iter_mut().enumerate() {
                acc[0] = unsafe { W::load::<V>(pw.add(r * cols + c)) }.mul_add(xv, acc[0]);
            }
        }
        for (r, (acc, o)) in acc.iter().zip(out.iter_mut()).enumerate() {
            let tail: f32 = (vectors..cols).map(|c| w[r * cols + c].to_f32() * x[c]).sum();
            *o = acc.iter().map(|a| a.sum()).sum::<f32>() + tail;
        }
    }

    /// `dst = src` as f32, one vector at a time.
    #[inline(always)]
    pub fn f16_to_f32<V: Lanes>(src: &[half::f16], dst: &mut [f32]) {
        let n = src.len().min(dst.len());
        let vectors = n / V::N * V::N;
        for i in (0..vectors).step_by(V::N) {
            // SAFETY: i + N <= n <= src.len().
            unsafe { V::load_f16(src.as_ptr().add(i)) }.store(&mut dst[i..]);
        }
        for i in vectors..n {
            dst[i] = src[i].to_f32();
        }
    }

    /// `out[i] = w[i * cols..][..cols] . x`: four rows at a time, then one;
    /// each row summed in the same order either way (the result does not
    /// depend on how rows are split into tasks).
    #[inline(always)]
    pub fn rows_dot<V: Lanes, W: Elem>(w: &[W], cols: usize, x: &[f32], out: &mut [f32]) {
        let done = out.len() / 4 * 4;
        let mut blocks = out.chunks_exact_mut(4);
        for (i, o) in (&mut blocks).enumerate() {
            let (w, o) = (&w[i * 4 * cols..], o.try_into().unwrap());
            match V::UNROLL {
                2 => rows_dot_block::<V, W, 4, 2>(w, cols, x, o),
                _ => rows_dot_block::<V, W, 4, 1>(w, cols, x, o),
            }
        }
        for (i, o) in blocks.into_remainder().iter_mut().enumerate() {
            let (w, o) = (&w[(done + i) * cols..], std::slice::from_mut(o).try_into().unwrap());
            match V::UNROLL {
                2 => rows_dot_block::<V, W, 1, 2>(w, cols, x, o),
                _ => rows_dot_block::<V, W, 1, 1>(w, cols, x, o),
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

    /// Query heads the attention kernels take per block: eight where 32 registers
    /// hold their accumulators (AVX-512), else four.
    fn heads_per_block<V: Lanes>() -> usize {
        if V::N >= 16 { 8 } else { 4 }
    }

    #[inline(always)]
    pub fn attention_scores<V: Lanes, T: Elem>(keys: Rows<T>, qs: &[f32], scale: f32, scores: &mut [f32]) {
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
                (4, _) => scores_heads::<V, T, 4, 1>(keys, q, scale, s),
                (3, _) => scores_heads::<V, T, 3, 1>(keys, q, scale, s),
                (2, _) => scores_heads::<V, T, 2, 1>(keys, q, scale, s),
                _ => scores_heads::<V, T, 1, 1>(keys, q, scale, s),
            }
            h += r;
        }
    }

    #[inline(always)]
    pub fn attention_values<V: Lanes, T: Elem>(values: &[T], dims: usize, probs: &[f32], out: &mut [f32]) {
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

    /// exp of each lane for x <= 87 (softmax passes x - max <= 0, SwiGLU caps its
    /// argument): x = n ln 2 + r with |r| <= ln 2 / 2, exp(r) from a degree-6
    /// polynomial, times 2^n built in the exponent bits. Every operation counts
    /// here (tens of thousands of exponentials per token at long context, the same
    /// for every G), so there is no upper clamp (callers stay below 88, where 2^n
    /// would overflow the exponent field), the polynomial is fitted (relative error 8e-8 on
    /// the interval, against 2.4e-7 for Taylor's of the same degree), and one sum
    /// both rounds x log2(e) to n and holds 2^n: adding 1.5 x 2^23 + 127 leaves no
    /// fraction bits, and the mantissa ends in n + 127, the biased exponent of 2^n.
    #[inline(always)]
    fn exp<V: Lanes>(x: V) -> V {
        const ROUND: f32 = 12_582_912.0 + 127.0; // 1.5 x 2^23 + 127
        // Below -87, 2^n would leave f32's exponent range (exp(-87) = 1.6e-38).
        let x = x.max(V::splat(-87.0));
        let t = x.mul_add(V::splat(std::f32::consts::LOG2_E), V::splat(ROUND));
        let n = t.add(V::splat(-ROUND)); // exact: t is a whole number
        // r = x - n ln 2, ln 2 in two parts so that n x the first is exact.
        let r = n.mul_add(V::splat(-0.693_359_4), x);
        let r = n.mul_add(V::splat(2.121_944_4e-4), r);
        let mut p = V::splat(1.375_140_7e-3);
        for c in [8.368_916e-3, 4.166_953_3e-2, 0.166_665_18, 0.499_999_88, 1.0, 1.0] {
            p = p.mul_add(r, V::splat(c));
        }
        p.mul(t.exponent_from_low_bits())
    }

    /// See [`super::swiglu_gate`]. exp's argument -g is capped at 87: beyond it
    /// silu(g) is below 1e-35 in magnitude, and exp(87) = 6e37 still divides to that.
    #[inline(always)]
    pub fn swiglu_gate<V: Lanes>(g: &mut [f32], u: &[f32]) {
        // A function, not a closure: a closure is not inlined into the AVX-512
        // caller, and its intrinsics become calls (measured: 10x slower).
        #[inline(always)]
        fn gate<V: Lanes>(g: V, u: V) -> V {
            g.mul(u).div(V::splat(1.0).add(exp(g.max(V::splat(-87.0)).mul(V::splat(-1.0)))))
        }
        let (n, full) = (V::N, g.len() / V::N * V::N);
        for i in (0..full).step_by(n) {
            // SAFETY: i + N <= full <= g.len() = u.len().
            let (gv, uv) = unsafe { (V::load(g.as_ptr().add(i)), V::load(u.as_ptr().add(i))) };
            gate(gv, uv).store(&mut g[i..]);
        }
        let rest = g.len() - full;
        if rest > 0 {
            let (mut pg, mut pu) = ([0.0f32; 16], [0.0f32; 16]);
            pg[..rest].copy_from_slice(&g[full..]);
            pu[..rest].copy_from_slice(&u[full..]);
            // SAFETY: pg and pu hold 16 >= N floats.
            gate(unsafe { V::load(pg.as_ptr()) }, unsafe { V::load(pu.as_ptr()) }).store(&mut pg);
            g[full..].copy_from_slice(&pg[..rest]);
        }
    }

    /// See [`super::softmax_numerators`]. A tail shorter than a vector goes
    /// through the same vector code, padded. The rows are short (one attention
    /// chunk, a few vectors), so both passes keep several independent chains in
    /// flight: the max in four, the exponentials two at a time.
    #[inline(always)]
    pub fn softmax_numerators<V: Lanes>(x: &mut [f32]) -> (f32, f32) {
        let n = V::N;
        let (full, quads, pairs) = (x.len() / n * n, x.len() / (4 * n) * (4 * n), x.len() / (2 * n) * (2 * n));
        let mut m = [V::splat(f32::NEG_INFINITY); 4];
        for i in (0..quads).step_by(4 * n) {
            for (j, m) in m.iter_mut().enumerate() {
                // SAFETY: i + (j + 1) * N <= quads <= x.len().
                *m = m.max(unsafe { V::load(x.as_ptr().add(i + j * n)) });
            }
        }
        for i in (quads..full).step_by(n) {
            // SAFETY: i + N <= full <= x.len().
            m[0] = m[0].max(unsafe { V::load(x.as_ptr().add(i)) });
        }
        let m = m[0].max(m[1]).max(m[2].max(m[3]));
        let max = x[full..].iter().fold(m.max_lane(), |a, &b| a.max(b));
        let (neg_max, mut sums) = (V::splat(-max), [V::zero(); 2]);
        for i in (0..pairs).step_by(2 * n) {
            for (j, sum) in sums.iter_mut().enumerate() {
                // SAFETY: i + (j + 1) * N <= pairs <= x.len().
                let e = exp(unsafe { V::load(x.as_ptr().add(i + j * n)) }.add(neg_max));
                e.store(&mut x[i + j * n..]);
                *sum = sum.add(e);
            }
        }
        for i in (pairs..full).step_by(n) {
            // SAFETY: as above.
            let e = exp(unsafe { V::load(x.as_ptr().add(i)) }.add(neg_max));
            e.store(&mut x[i..]);
            sums[0] = sums[0].add(e);
        }
        let sum = sums[0].add(sums[1]);
        let rest = x.len() - full;
        let mut tail = 0.0;
        if rest > 0 {
            let mut padded = [0.0f32; 16];
            padded[..rest].copy_from_slice(&x[full..]);
            // SAFETY: padded holds 16 >= N floats.
            exp(unsafe { V::load(padded.as_ptr()) }.add(neg_max)).store(&mut padded);
            x[full..].copy_from_slice(&padded[..rest]);
            tail = padded[..rest].iter().sum();
        }
        (max, sum.sum() + tail)
    }
}

// ---------------------------------------------------------------------------
// Threads: split work only where it pays.
// ---------------------------------------------------------------------------

/// Runs `f`, which has parallel regions when `splits`, on one of the pool's
/// threads: its regions then pass work between the pool's threads, which stay
/// awake between regions. Called from outside the pool, each region would
/// instead put the caller to sleep and wake it again (measured natively on the
/// shipped base, 2 threads, 2047 positions: MHA 0.64-1.38 -> 0.52 ms/token). A
/// pass without regions stays on the calling thread: moving it costs one
/// hand-off (stories260K, 2 threads: 21,000 -> 9,000-14,000 tok/s).
pub fn on_pool<R: Send>(splits: bool, f: impl FnOnce() -> R + Send) -> R {
    #[cfg(rayon_pool)]
    if splits && rayon::current_thread_index().is_none() {
        return rayon::scope(|_| f());
    }
    #[cfg(not(rayon_pool))]
    let _ = splits;
    f()
}

/// Threads available to the kernels: rayon's pool natively and in the threaded
/// wasm module (its Web Workers), 1 in the single-thread module.
pub fn threads() -> usize {
    #[cfg(rayon_pool)]
    return rayon::current_num_threads();
    #[cfg(not(rayon_pool))]
    1
}

/// Run `f(first_index, chunk)` over `out` split into chunks of `chunk` elements:
/// in parallel when `parallel` is true and there is a pool, in order otherwise.
pub fn for_chunks<F>(out: &mut [f32], chunk: usize, parallel: bool, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    let chunk = chunk.max(1);
    #[cfg(rayon_pool)]
    if parallel {
        use rayon::prelude::*;
        out.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i * chunk, c));
        return;
    }
    #[cfg(not(rayon_pool))]
    let _ = parallel; // one thread
    for (i, c) in out.chunks_mut(chunk).enumerate() {
        f(i * chunk, c);
    }
}

// ---------------------------------------------------------------------------
// Matrix kernels built on the row dots.
// ---------------------------------------------------------------------------

/// `out[i] = w.row(r0 + i) . x` for consecutive rows of one matrix.
#[inline]
fn rows_dot(w: &Matrix, r0: usize, x: &[f32], out: &mut [f32]) {
    let c = w.cols;
    match &w.data {
        Data::F32(d) => rows_dot_slice(&d[r0 * c..], c, x, out),
        Data::F16(d) => rows_dot_slice(&d[r0 * c..], c, x, out),
    }
}

/// [`rows_dot`] over the matrices `ws` stacked on top of each other.
fn stacked_rows_dot(ws: &[&Matrix], mut r0: usize, x: &[f32], mut out: &mut [f32]) {
    for w in ws {
        if out.is_empty() {
            return;
        }
        if r0 < w.rows {
            let n = out.len().min(w.rows - r0);
            let (here, rest) = out.split_at_mut(n);
            rows_dot(w, r0, x, here);
            out = rest;
            r0 = 0;
        } else {
            r0 -= w.rows;
        }
    }
    assert!(out.is_empty(), "rows beyond the stacked matrices");
}

/// Matrices from this many bytes are split into 16 tasks per thread where they
/// are split at all, smaller ones into 4 (see [`tasks`]).
const FINE_SPLIT_BYTES: usize = 2 << 20;

/// Tasks to split a matrix of `bytes` into: one when serial, else 4 or 16 per
/// thread. Threads share the memory bandwidth, so when one has run out of tasks
/// the other reads its last one at about half the rate of both: on a large
/// matrix the last task must be short. On the 110m preset (2 threads, f32, MQA
/// at 128 positions) 16 tasks per thread moved decoding from 79-84% to 89-91% of
/// the read bandwidth. Each task costs a hand-off, so a small matrix keeps 4 per
/// thread (16 made the shipped base's MQA step 0.38-0.40 -> 0.44-0.51 ms on 2 threads).
fn tasks(bytes: usize, parallel: bool) -> usize {
    match (parallel, bytes >= FINE_SPLIT_BYTES) {
        (false, _) => 1,
        (true, true) => 16 * threads(),
        (true, false) => 4 * threads(),
    }
}

/// `out[t][r] = f(r..)(x_t)` for a batch x (n x cols): out (n x rows), where
/// `f(first, x_t, out)` fills `out` with rows first.. for one input. Rows are
/// split into `tasks` (see [`tasks`]; one when serial); each
/// task takes its rows for the whole batch, so every weight row is read from
/// memory once per call. A batch is computed transposed (rows x n, in `tmp`)
/// so that each task owns whole rows, then transposed into `out`.
#[allow(clippy::too_many_arguments)]
fn by_rows<F>(rows: usize, cols: usize, x: &[f32], n: usize, out: &mut [f32], tmp: &mut Vec<f32>, tasks: usize, f: F)
where
    F: Fn(usize, &[f32], &mut [f32]) + Sync + Send,
{
    assert_eq!(x.len(), n * cols, "matmul input length");
    assert_eq!(out.len(), n * rows, "matmul output length");
    let (parallel, rows_per_task) = (tasks > 1, rows.div_ceil(tasks).next_multiple_of(4));
    if n == 1 {
        // One input: a task's outputs are consecutive rows.
        return for_chunks(out, rows_per_task, parallel, |first, chunk| f(first, x, chunk));
    }
    tmp.resize(rows * n, 0.0);
    for_chunks(tmp, rows_per_task * n, parallel, |first, chunk| {
        for (i, o_row) in chunk.chunks_exact_mut(n).enumerate() {
            for (t, o) in o_row.iter_mut().enumerate() {
                f(first / n + i, &x[t * cols..(t + 1) * cols], std::slice::from_mut(o));
            }
        }
    });
    for r in 0..rows {
        for t in 0..n {
            out[t * rows + r] = tmp[r * n + t];
        }
    }
}

/// `out = x [W1; W2; ...]^T`: x (n x cols), out (n x R) where R is the rows of
/// all the matrices (same cols) stacked, so each output row is [W1 x_t | W2 x_t | ...].
/// One call (one parallel region) computes e.g. q, k and v together.
/// `tmp` is scratch for batches (n > 1), reused between calls.
pub fn matmul(ws: &[&Matrix], x: &[f32], n: usize, out: &mut [f32], tmp: &mut Vec<f32>, parallel: bool) {
    let rows = ws.iter().map(|w| w.rows).sum();
    assert!(ws.iter().all(|w| w.cols == ws[0].cols), "stacked matrices need equal columns");
    let tasks = tasks(ws.iter().map(|w| w.bytes()).sum(), parallel);
    by_rows(rows, ws[0].cols, x, n, out, tmp, tasks, |r0, xt, o| stacked_rows_dot(ws, r0, xt, o));
}

/// SwiGLU's first half in one pass: `out = silu(x gate^T) * (x up^T)`,
/// x (n x dim), out (n x ffn); rows of gate and of up are read together.
pub fn matmul_swiglu(gate: &Matrix, up: &Matrix, x: &[f32], n: usize, out: &mut [f32], tmp: &mut Vec<f32>, parallel: bool) {
    assert_eq!((gate.rows, gate.cols), (up.rows, up.cols), "gate and up shapes");
    let tasks = tasks(gate.bytes() + up.bytes(), parallel);
    by_rows(gate.rows, gate.cols, x, n, out, tmp, tasks, |r0, xt, o| {
        let mut u = [0.0f32; 16];
        for (i, o) in o.chunks_mut(16).enumerate() {
            let u = &mut u[..o.len()];
            rows_dot(gate, r0 + 16 * i, xt, o);
            rows_dot(up, r0 + 16 * i, xt, u);
            swiglu_gate(o, u);
        }
    });
}

/// `out = W x` for one vector (no batch scratch needed): out (rows), x (cols).
pub fn matvec(w: &Matrix, x: &[f32], out: &mut [f32], parallel: bool) {
    matmul(&[w], x, 1, out, &mut Vec::new(), parallel);
}
