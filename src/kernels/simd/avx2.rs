//! AVX2 + FMA + F16C: 8 lanes in `__m256`, f16 converted by F16C in the load.

use core::arch::x86_64::*;
use half::f16;

use super::lanes::{Kernel, Lanes};

/// Run `kernel` with 8-lane AVX2 vectors.
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn run<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<__m256>()
}

impl Lanes for __m256 {
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
    unsafe fn load_u8_bits(p: *const u8, shift: u32, mask: u32) -> Self {
        let v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i));
        let v = _mm256_and_si256(_mm256_srl_epi32(v, _mm_cvtsi32_si128(shift as i32)), _mm256_set1_epi32(mask as i32));
        _mm256_cvtepi32_ps(v)
    }
    #[inline(always)]
    fn unpack_bits(word: u32, first: u32) -> Self {
        unsafe {
            let at = _mm256_add_epi32(_mm256_set1_epi32(first as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            let bits = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(word as i32), at), _mm256_set1_epi32(1));
            _mm256_cvtepi32_ps(bits)
        }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u8) -> Self {
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(p as *const __m128i))))
    }
    #[inline(always)]
    fn f16_to_f32(h: u16) -> f32 {
        unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32))) }
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

/// The sum of the lanes (inlined, like every method above, into [`run`]'s
/// AVX2 code).
#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}
