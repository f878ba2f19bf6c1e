//! The two traits every kernel is written against: [`Lanes`], a vector of f32
//! lanes, and [`Kernel`], one call of a kernel whose body is generic over it.

use half::f16;

/// A vector of f32 lanes: what the kernels are written in, once.
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
    /// N bytes at `p` (any alignment), each `(byte >> shift) & mask`, as f32:
    /// the nibbles and bit fields of the GGUF block formats (`shift` < 8).
    ///
    /// # Safety
    /// `p..p + N` must be readable.
    unsafe fn load_u8_bits(p: *const u8, shift: u32, mask: u32) -> Self;
    /// Lane l is bit `first + l` of `word`, as 0.0 or 1.0 (`first + N` <= 32):
    /// Q5_0's fifth bits.
    fn unpack_bits(word: u32, first: u32) -> Self;
    /// N bf16 at `p` (any alignment) as f32.
    ///
    /// # Safety
    /// `p..p + 2N` must be readable.
    unsafe fn load_bf16(p: *const u8) -> Self;
    /// One f16 (as bits) to f32: a block's scale. One instruction where the
    /// hardware converts, else in software (`elem::f16_bits_to_f32`).
    fn f16_to_f32(h: u16) -> f32;
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

    // ---- 32 bytes as integers: the int8-activation dot products ----
    // (`kernels::quant_dot_int8`). A group of 32 weight codes meets 32 int8
    // activations; products are summed in integers and the sums come back as
    // f32 lanes, each lane a partial sum (their total is the dot product; every
    // partial sum is below 2^24, so exact in f32).

    /// 32 bytes in registers: weight codes or int8 activations.
    type Bytes: Copy;
    /// The 32 bytes at `p` (any alignment).
    ///
    /// # Safety
    /// `p..p + 32` must be readable.
    unsafe fn load_bytes(p: *const u8) -> Self::Bytes;
    /// The 16 bytes at `p` as 32 nibbles: the low nibbles of bytes 0..16, then
    /// their high nibbles (the order of Q4_0, Q4_1 and Q5_0).
    ///
    /// # Safety
    /// `p..p + 16` must be readable.
    unsafe fn load_nibbles(p: *const u8) -> Self::Bytes;
    /// The 32 bytes at `p`, each `(byte >> shift) & mask` (`shift` < 8, `mask`
    /// < 128 and `mask << shift` within the byte): Q4_K's and Q6_K's fields.
    ///
    /// # Safety
    /// `p..p + 32` must be readable.
    unsafe fn load_byte_fields(p: *const u8, shift: u32, mask: u8) -> Self::Bytes;
    /// Byte j is bit j of `word` (0 or 1): Q5_0's fifth bits.
    fn bytes_from_bits(word: u32) -> Self::Bytes;
    /// `a | (b << shift)` byte by byte, where `b << shift` < 128 (the high bits
    /// of a code joining its low ones).
    fn or_shifted(a: Self::Bytes, b: Self::Bytes, shift: u32) -> Self::Bytes;
    /// Σ a_j b_j over the 32 pairs, `a` unsigned codes (0..=127), `b` int8.
    fn dot_bytes(a: Self::Bytes, b: Self::Bytes) -> Self;
    /// `s0 Σ_{j<16} a_j b_j + s1 Σ_{j>=16} a_j b_j`: Q6_K's sub-blocks of 16,
    /// each with its own integer scale (`a` 0..=63, `b` int8, `s` -128..=127).
    fn dot_bytes_halves(a: Self::Bytes, b: Self::Bytes, s0: i32, s1: i32) -> Self;
    /// Σ a_j b_j over the 32 pairs, both int8 (Q8_0's codes), `b` in -127..=127.
    fn dot_i8(a: Self::Bytes, b: Self::Bytes) -> Self;
}

/// One call of a kernel: its arguments, and its body written once over [`Lanes`].
///
/// `run` must be `#[inline(always)]`: it is inlined into each instruction set's
/// `#[target_feature]` entry point, where the intrinsics become instructions (a
/// body that is not inlined there calls each intrinsic as a function).
pub trait Kernel {
    type Output;
    /// Whether vectors of `lanes` suit this call (a kernel vectorized along a
    /// dimension shorter than 16 prefers 8 lanes). Always, unless a kernel says.
    fn suits(&self, _lanes: usize) -> bool {
        true
    }
    fn run<V: Lanes>(self) -> Self::Output;
}
