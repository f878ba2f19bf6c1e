//! f16 to f32 over slices (a weight row or embedding row widened for use).

use half::f16;

use super::simd::{dispatch, Kernel, Lanes};

/// `dst = src` as f32 (exact: every f16 is an f32), by the same vector loads
/// the matrix and attention kernels use for f16.
pub fn f16_to_f32(src: &[f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "f16_to_f32 lengths");
    dispatch(F16ToF32 { src, dst })
}

struct F16ToF32<'a> {
    src: &'a [f16],
    dst: &'a mut [f32],
}

impl Kernel for F16ToF32<'_> {
    type Output = ();
    /// `dst = src` as f32, one vector at a time.
    #[inline(always)]
    fn run<V: Lanes>(self) {
        let (src, dst) = (self.src, self.dst);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::simd::{run_on, Isa};

    /// Every f16 bit pattern but NaN converts exactly as half::f16::to_f32 does,
    /// by the vector loads of every instruction set here (AVX-512, F16C, plain),
    /// over slices with every tail length.
    #[test]
    fn f16_to_f32_is_exact_for_all_bit_patterns() {
        let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).filter(|h| !h.is_nan()).collect();
        let expected: Vec<u32> = all.iter().map(|h| h.to_f32().to_bits()).collect();
        for isa in Isa::all_available() {
            for len in [all.len(), all.len() - 1, all.len() - 7] {
                let mut out = vec![0.0f32; len];
                run_on(isa, F16ToF32 { src: &all[..len], dst: &mut out });
                let got: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
                assert_eq!(got, expected[..len], "{isa:?}: f16_to_f32 over {len} values");
            }
        }
        let mut out = vec![0.0f32; all.len()];
        f16_to_f32(&all, &mut out);
        assert!(out.iter().map(|v| v.to_bits()).eq(expected.iter().copied()), "dispatched f16_to_f32");
    }
}
