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

    type Bytes = __m256i;
    #[inline(always)]
    unsafe fn load_bytes(p: *const u8) -> __m256i {
        _mm256_loadu_si256(p as *const __m256i)
    }
    #[inline(always)]
    unsafe fn load_nibbles(p: *const u8) -> __m256i {
        load_nibbles(p)
    }
    #[inline(always)]
    unsafe fn load_byte_fields(p: *const u8, shift: u32, mask: u8) -> __m256i {
        load_byte_fields(p, shift, mask)
    }
    #[inline(always)]
    fn bytes_from_bits(word: u32) -> __m256i {
        unsafe { bytes_from_bits(word) }
    }
    #[inline(always)]
    fn or_shifted(a: __m256i, b: __m256i, shift: u32) -> __m256i {
        unsafe { or_shifted(a, b, shift) }
    }
    #[inline(always)]
    fn dot_bytes(a: __m256i, b: __m256i) -> Self {
        unsafe { _mm256_cvtepi32_ps(dot_u8_i8(a, b)) }
    }
    #[inline(always)]
    fn dot_bytes_halves(a: __m256i, b: __m256i, s0: i32, s1: i32) -> Self {
        unsafe { _mm256_cvtepi32_ps(dot_u8_i8_halves(a, b, s0, s1)) }
    }
    #[inline(always)]
    fn dot_i8(a: __m256i, b: __m256i) -> Self {
        unsafe { _mm256_cvtepi32_ps(dot_i8_i8(a, b)) }
    }
}

// ---- 32 bytes as integers, in `__m256i`: AVX2's, and AVX-512's too (its
// target features include AVX2), as ggml computes them. ----

/// See [`Lanes::load_nibbles`]: the 16 bytes, and a copy shifted right by 4,
/// masked to nibbles.
#[inline(always)]
pub(super) unsafe fn load_nibbles(p: *const u8) -> __m256i {
    let v = _mm_loadu_si128(p as *const __m128i);
    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(v), v), _mm256_set1_epi8(0xf))
}

/// See [`Lanes::load_byte_fields`]. x86 shifts 16-bit lanes, not bytes: the
/// bits a byte receives from its neighbour lie above the field, masked off.
#[inline(always)]
pub(super) unsafe fn load_byte_fields(p: *const u8, shift: u32, mask: u8) -> __m256i {
    let v = _mm256_srl_epi16(_mm256_loadu_si256(p as *const __m256i), _mm_cvtsi32_si128(shift as i32));
    _mm256_and_si256(v, _mm256_set1_epi8(mask as i8))
}

/// See [`Lanes::bytes_from_bits`]: byte j takes byte j / 8 of the word (a
/// shuffle within each 128-bit half, both holding the word), keeps its bit
/// j % 8 and turns it into 0 or 1.
#[inline(always)]
pub(super) unsafe fn bytes_from_bits(word: u32) -> __m256i {
    let which = _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0);
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(word as i32), which);
    let bit = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit), _mm256_set1_epi8(1))
}

/// See [`Lanes::or_shifted`] (`b << shift` stays within each byte).
#[inline(always)]
pub(super) unsafe fn or_shifted(a: __m256i, b: __m256i, shift: u32) -> __m256i {
    _mm256_or_si256(a, _mm256_sll_epi16(b, _mm_cvtsi32_si128(shift as i32)))
}

/// u8 x i8 products summed in pairs into 16-bit lanes (`maddubs`: no
/// saturation for codes up to 127 against int8), then in pairs of those into
/// 8 i32 lanes (`madd` by ones): lane l sums pairs 4l..4l + 4.
#[inline(always)]
pub(super) unsafe fn dot_u8_i8(a: __m256i, b: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1))
}

/// As [`dot_u8_i8`], the 16-bit sums of pairs 0..16 (the low 128 bits)
/// multiplied by `s0` and those of 16..32 by `s1` in the `madd`.
#[inline(always)]
pub(super) unsafe fn dot_u8_i8_halves(a: __m256i, b: __m256i, s0: i32, s1: i32) -> __m256i {
    let scales = _mm256_set_m128i(_mm_set1_epi16(s1 as i16), _mm_set1_epi16(s0 as i16));
    _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), scales)
}

/// int8 x int8 through `maddubs`, which wants its first operand unsigned: |a|
/// times b with a's sign (b is never -128, whose negation would overflow).
#[inline(always)]
pub(super) unsafe fn dot_i8_i8(a: __m256i, b: __m256i) -> __m256i {
    dot_u8_i8(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a))
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
