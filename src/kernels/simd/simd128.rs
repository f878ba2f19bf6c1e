//! wasm32 simd128: 8 lanes as two `v128` (chosen at compile time with
//! `-C target-feature=+simd128`). simd128 has no f16 instruction: f16 is
//! converted with integer and float steps, those of [`super::elem::f16_bits_to_f32`].

use core::arch::wasm32::*;
use half::f16;

use super::lanes::Lanes;

#[inline]
fn hsum(v: v128) -> f32 {
    f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v) + f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v)
}

/// Eight lanes as two simd128 vectors (see [`Lanes`]).
#[derive(Clone, Copy)]
pub struct F32x8(v128, v128);

impl Lanes for F32x8 {
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
    #[inline(always)]
    unsafe fn load_u8_bits(p: *const u8, shift: u32, mask: u32) -> Self {
        let b = v128_and(u8x16_shr(v128_load64_zero(p as *const u64), shift), u8x16_splat(mask as u8));
        let h = u16x8_extend_low_u8x16(b);
        F32x8(f32x4_convert_i32x4(u32x4_extend_low_u16x8(h)), f32x4_convert_i32x4(u32x4_extend_high_u16x8(h)))
    }
    #[inline(always)]
    fn unpack_bits(word: u32, first: u32) -> Self {
        // Each lane's own bit, tested: 1.0 where set (all ones and 1.0's bits).
        let w = u32x4_splat(word >> first);
        let (lo, hi) = (v128_and(w, u32x4(1, 2, 4, 8)), v128_and(w, u32x4(16, 32, 64, 128)));
        let one = f32x4_splat(1.0);
        F32x8(v128_and(i32x4_ne(lo, u32x4_splat(0)), one), v128_and(i32x4_ne(hi, u32x4_splat(0)), one))
    }
    #[inline(always)]
    fn f16_to_f32(h: u16) -> f32 {
        super::elem::f16_bits_to_f32(h)
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u8) -> Self {
        let h = v128_load(p as *const v128);
        F32x8(i32x4_shl(u32x4_extend_low_u16x8(h), 16), i32x4_shl(u32x4_extend_high_u16x8(h), 16))
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

    /// Bytes 0..16 and 16..32.
    type Bytes = [v128; 2];
    #[inline(always)]
    unsafe fn load_bytes(p: *const u8) -> [v128; 2] {
        [v128_load(p as *const v128), v128_load(p.add(16) as *const v128)]
    }
    #[inline(always)]
    unsafe fn load_nibbles(p: *const u8) -> [v128; 2] {
        let v = v128_load(p as *const v128);
        [v128_and(v, u8x16_splat(0xf)), u8x16_shr(v, 4)]
    }
    #[inline(always)]
    unsafe fn load_byte_fields(p: *const u8, shift: u32, mask: u8) -> [v128; 2] {
        Self::load_bytes(p).map(|v| v128_and(u8x16_shr(v, shift), u8x16_splat(mask)))
    }
    /// Byte j takes byte j / 8 of the word (a swizzle) and keeps bit j % 8,
    /// clamped to 1.
    #[inline(always)]
    fn bytes_from_bits(word: u32) -> [v128; 2] {
        let w = u32x4_splat(word);
        let bit = u8x16(1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128);
        let pick = |lo: u8| {
            let hi = lo + 1;
            let bytes = i8x16_swizzle(w, u8x16(lo, lo, lo, lo, lo, lo, lo, lo, hi, hi, hi, hi, hi, hi, hi, hi));
            u8x16_min(v128_and(bytes, bit), u8x16_splat(1))
        };
        [pick(0), pick(2)]
    }
    #[inline(always)]
    fn or_shifted(a: [v128; 2], b: [v128; 2], shift: u32) -> [v128; 2] {
        [v128_or(a[0], i8x16_shl(b[0], shift)), v128_or(a[1], i8x16_shl(b[1], shift))]
    }
    #[inline(always)]
    fn dot_bytes(a: [v128; 2], b: [v128; 2]) -> Self {
        let [s0, s1] = dot_halves(a, b);
        F32x8(f32x4_convert_i32x4(s0), f32x4_convert_i32x4(s1))
    }
    #[inline(always)]
    fn dot_bytes_halves(a: [v128; 2], b: [v128; 2], s0: i32, s1: i32) -> Self {
        let [h0, h1] = dot_halves(a, b);
        F32x8(f32x4_convert_i32x4(i32x4_mul(h0, i32x4_splat(s0))), f32x4_convert_i32x4(i32x4_mul(h1, i32x4_splat(s1))))
    }
    /// The same as [`Lanes::dot_bytes`]: the bytes are widened as signed either way.
    #[inline(always)]
    fn dot_i8(a: [v128; 2], b: [v128; 2]) -> Self {
        Self::dot_bytes(a, b)
    }
}

/// The dot products of bytes 0..16 and of 16..32, each as four i32 partial
/// sums: baseline simd128 has no byte multiply-add, so bytes are widened to
/// i16 (as signed: codes up to 127 read the same) and `i32x4.dot_i16x8` sums
/// their products in pairs.
#[inline(always)]
fn dot_halves(a: [v128; 2], b: [v128; 2]) -> [v128; 2] {
    let half = |a: v128, b: v128| {
        let lo = i32x4_dot_i16x8(i16x8_extend_low_i8x16(a), i16x8_extend_low_i8x16(b));
        i32x4_add(lo, i32x4_dot_i16x8(i16x8_extend_high_i8x16(a), i16x8_extend_high_i8x16(b)))
    };
    [half(a[0], b[0]), half(a[1], b[1])]
}

/// Four f16 (already sign-extended to i32 lanes) to f32: the steps of
/// [`super::elem::f16_bits_to_f32`] on four lanes (see there why they are exact).
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
