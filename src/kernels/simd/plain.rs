//! Plain arrays of 8 floats: the fallback where no SIMD is known, and the
//! reference path the tests run every kernel on.

use half::f16;

use super::elem::f16_bits_to_f32;
use super::lanes::Lanes;

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
        std::array::from_fn(|j| f16_bits_to_f32(p.add(j).read_unaligned().to_bits()))
    }
    #[inline(always)]
    unsafe fn load_i8(p: *const i8) -> Self {
        std::array::from_fn(|j| *p.add(j) as f32)
    }
    #[inline(always)]
    unsafe fn load_u8_bits(p: *const u8, shift: u32, mask: u32) -> Self {
        std::array::from_fn(|j| ((*p.add(j) as u32 >> shift) & mask) as f32)
    }
    #[inline(always)]
    fn unpack_bits(word: u32, first: u32) -> Self {
        std::array::from_fn(|j| ((word >> (first + j as u32)) & 1) as f32)
    }
    #[inline(always)]
    fn f16_to_f32(h: u16) -> f32 {
        f16_bits_to_f32(h)
    }
    #[inline(always)]
    unsafe fn load_bf16(p: *const u8) -> Self {
        std::array::from_fn(|j| f32::from_bits((u16::from_le_bytes([*p.add(2 * j), *p.add(2 * j + 1)]) as u32) << 16))
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

    type Bytes = [u8; 32];
    #[inline(always)]
    unsafe fn load_bytes(p: *const u8) -> [u8; 32] {
        (p as *const [u8; 32]).read_unaligned()
    }
    #[inline(always)]
    unsafe fn load_nibbles(p: *const u8) -> [u8; 32] {
        std::array::from_fn(|j| (*p.add(j % 16) >> (4 * (j / 16))) & 0xf)
    }
    #[inline(always)]
    unsafe fn load_byte_fields(p: *const u8, shift: u32, mask: u8) -> [u8; 32] {
        std::array::from_fn(|j| (*p.add(j) >> shift) & mask)
    }
    #[inline(always)]
    fn bytes_from_bits(word: u32) -> [u8; 32] {
        std::array::from_fn(|j| ((word >> j) & 1) as u8)
    }
    #[inline(always)]
    fn or_shifted(a: [u8; 32], b: [u8; 32], shift: u32) -> [u8; 32] {
        std::array::from_fn(|j| a[j] | (b[j] << shift))
    }
    /// Lane l sums pairs 4l..4l + 4, as AVX2's `maddubs` + `madd` do.
    #[inline(always)]
    fn dot_bytes(a: [u8; 32], b: [u8; 32]) -> Self {
        std::array::from_fn(|l| (4 * l..4 * l + 4).map(|j| a[j] as i32 * b[j] as i8 as i32).sum::<i32>() as f32)
    }
    #[inline(always)]
    fn dot_bytes_halves(a: [u8; 32], b: [u8; 32], s0: i32, s1: i32) -> Self {
        // Lanes 0..4 hold pairs 0..16 (exact: each below 2^24 times the scale).
        let s = Self::dot_bytes(a, b);
        std::array::from_fn(|l| s[l] * if l < 4 { s0 as f32 } else { s1 as f32 })
    }
    #[inline(always)]
    fn dot_i8(a: [u8; 32], b: [u8; 32]) -> Self {
        std::array::from_fn(|l| (4 * l..4 * l + 4).map(|j| a[j] as i8 as i32 * b[j] as i8 as i32).sum::<i32>() as f32)
    }
}
