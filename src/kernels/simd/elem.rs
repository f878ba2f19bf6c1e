//! The element types the kernels read (f32 weights and cache, f16 weights and
//! cache, the cache's int8 codes), each converted to f32 in registers as it is
//! loaded, and f16's conversion without hardware support.

use half::f16;

use super::lanes::Lanes;

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
        f16_bits_to_f32(self.to_bits())
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
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let bits = ((h as i16 as i32) << 13) as u32 & 0x8fff_e000;
    let value = f32::from_bits(bits) * f32::from_bits(0x7780_0000); // x 2^112
    if value.abs() >= 65536.0 {
        f32::from_bits(value.to_bits() | 0x7f80_0000) // inf or NaN
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every f16 bit pattern but NaN converts as half::f16::to_f32 does: the
    /// scalar steps that the wasm simd128 load runs lane by lane.
    #[test]
    fn f16_bits_convert_exactly_for_all_patterns() {
        for h in (0..=u16::MAX).map(f16::from_bits).filter(|h| !h.is_nan()) {
            assert_eq!(f16_bits_to_f32(h.to_bits()).to_bits(), h.to_f32().to_bits(), "{:#06x}", h.to_bits());
        }
        // NaN stays NaN.
        assert!(f16_bits_to_f32(0x7e00).is_nan() && f16_bits_to_f32(0xfc01).is_nan());
    }
}
