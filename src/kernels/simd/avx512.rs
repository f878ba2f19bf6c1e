//! AVX-512F with VNNI: 16 lanes in `__m512`, f16 converted in the load; the
//! integer dot products of 32 bytes by VNNI's `vpdpbusd`, their 8 sums in the
//! low half of the 16 lanes (the byte loads are AVX2's, see [`super::avx2`]).
//!
//! VNNI is part of this instruction set rather than a second entry point:
//! every AVX-512 CPU since Cascade Lake (and AMD's Zen 4) has it, and the
//! earlier ones (Skylake-SP) run the AVX2 kernels.

use core::arch::x86_64::*;
use half::f16;

use super::avx2;
use super::lanes::{Kernel, Lanes};

/// Run `kernel` with 16-lane AVX-512 vectors.
///
/// # Safety
/// The CPU must have AVX-512F and AVX-512 VNNI.
#[target_feature(enable = "avx512f,avx512vnni")]
pub unsafe fn run<K: Kernel>(kernel: K) -> K::Output {
    kernel.run::<__m512>()
}

/// Σ a_j b_j (u8 x i8) by `vpdpbusd`: each i32 lane sums 4 products (no
/// intermediate saturation); the upper 8 lanes see zero bytes.
#[inline(always)]
unsafe fn dot_u8_i8(a: __m256i, b: __m256i) -> __m512 {
    let (a, b) = (_mm512_zextsi256_si512(a), _mm512_zextsi256_si512(b));
    _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), a, b))
}

impl Lanes for __m512 {
    const N: usize = 16;
    const UNROLL: usize = 2;
    // SAFETY (all): only reached from `run`, compiled with AVX-512F and
    // VNNI, called after the CPU was checked for both.
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
    unsafe fn load_u8_bits(p: *const u8, shift: u32, mask: u32) -> Self {
        let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(p as *const __m128i));
        let v = _mm512_and_si512(_mm512_srl_epi32(v, _mm_cvtsi32_si128(shift as i32)), _mm512_set1_epi32(mask as i32));
        _mm512_cvtepi32_ps(v)
    }
    #[inline(always)]
    fn unpack_bits(word: u32, first: u32) -> Self {
        // The 16 bits are a lane mask: 1.0 where set, 0.0 elsewhere.
        unsafe { _mm512_maskz_mov_ps((word >> first) as __mmask16, _mm512_set1_ps(1.0)) }
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u8) -> Self {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i))))
    }
    #[inline(always)]
    fn f16_to_f32(h: u16) -> f32 {
        unsafe { _mm512_cvtss_f32(_mm512_cvtph_ps(_mm256_set1_epi16(h as i16))) }
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

    type Bytes = __m256i;
    #[inline(always)]
    unsafe fn load_bytes(p: *const u8) -> __m256i {
        _mm256_loadu_si256(p as *const __m256i)
    }
    #[inline(always)]
    unsafe fn load_nibbles(p: *const u8) -> __m256i {
        avx2::load_nibbles(p)
    }
    #[inline(always)]
    unsafe fn load_byte_fields(p: *const u8, shift: u32, mask: u8) -> __m256i {
        avx2::load_byte_fields(p, shift, mask)
    }
    #[inline(always)]
    fn bytes_from_bits(word: u32) -> __m256i {
        unsafe { avx2::bytes_from_bits(word) }
    }
    #[inline(always)]
    fn or_shifted(a: __m256i, b: __m256i, shift: u32) -> __m256i {
        unsafe { avx2::or_shifted(a, b, shift) }
    }
    #[inline(always)]
    fn dot_bytes(a: __m256i, b: __m256i) -> Self {
        unsafe { dot_u8_i8(a, b) }
    }
    /// AVX2's `maddubs` + `madd` (the scales multiply in the `madd`), widened.
    #[inline(always)]
    fn dot_bytes_halves(a: __m256i, b: __m256i, s0: i32, s1: i32) -> Self {
        unsafe { _mm512_cvtepi32_ps(_mm512_zextsi256_si512(avx2::dot_u8_i8_halves(a, b, s0, s1))) }
    }
    /// |a| times b with a's sign, as in AVX2's `dot_i8_i8`.
    #[inline(always)]
    fn dot_i8(a: __m256i, b: __m256i) -> Self {
        unsafe { dot_u8_i8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a)) }
    }
}
