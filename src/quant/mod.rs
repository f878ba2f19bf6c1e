//! The GGUF (ggml) weight formats: how a row of weights is laid out in bytes,
//! and how it dequantizes, exactly as ggml defines them (`ggml-common.h`,
//! `dequantize_row_*` in `ggml-quants.c`). Everything is little-endian; "f16"
//! is an IEEE half, and a block's fields follow each other without padding.
//!
//! | format | weights per block | bytes | layout | weight |
//! |---|---|---|---|---|
//! | F32 | 1 | 4 | f32 | x |
//! | F16 | 1 | 2 | f16 | x |
//! | BF16 | 1 | 2 | the top half of an f32 | x |
//! | Q4_0 | 32 | 18 | f16 d, u8 qs\[16\] | d (q - 8) |
//! | Q4_1 | 32 | 20 | f16 d, f16 m, u8 qs\[16\] | d q + m |
//! | Q5_0 | 32 | 22 | f16 d, u32 qh, u8 qs\[16\] | d (q - 16) |
//! | Q8_0 | 32 | 34 | f16 d, i8 qs\[32\] | d q |
//! | Q4_K | 256 | 144 | f16 d, f16 dmin, u8 scales\[12\], u8 qs\[128\] | d sc_j q - dmin m_j |
//! | Q6_K | 256 | 210 | u8 ql\[128\], u8 qh\[64\], i8 scales\[16\], f16 d | d sc_j (q - 32) |
//!
//! In Q4_0, Q4_1 and Q5_0, weight j (0..16) of a block is the low nibble of
//! `qs[j]` and weight j + 16 its high nibble; Q5_0's fifth bit of weight j is
//! bit j of `qh`. Q4_K and Q6_K are described at [`q4_k_scale_min`] and
//! [`dequantize_q6_k`].

use half::f16;

#[cfg(test)]
pub(crate) mod reference;

/// A GGUF tensor type this crate reads.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q8_0,
    Q4_K,
    Q6_K,
}

impl Format {
    pub const ALL: [Format; 9] = [Format::F32, Format::F16, Format::BF16, Format::Q4_0, Format::Q4_1, Format::Q5_0, Format::Q8_0, Format::Q4_K, Format::Q6_K];

    /// The format of ggml's type number (`enum ggml_type`), if this crate reads it.
    pub fn from_ggml_type(t: u32) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.ggml_type() == t)
    }

    /// ggml's type number (`enum ggml_type`).
    pub fn ggml_type(self) -> u32 {
        match self {
            Format::F32 => 0,
            Format::F16 => 1,
            Format::Q4_0 => 2,
            Format::Q4_1 => 3,
            Format::Q5_0 => 6,
            Format::Q8_0 => 8,
            Format::Q4_K => 12,
            Format::Q6_K => 14,
            Format::BF16 => 30,
        }
    }

    /// Weights per block (a row's length is a multiple of it).
    pub const fn block_weights(self) -> usize {
        match self {
            Format::F32 | Format::F16 | Format::BF16 => 1,
            Format::Q4_0 | Format::Q4_1 | Format::Q5_0 | Format::Q8_0 => 32,
            Format::Q4_K | Format::Q6_K => 256,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            Format::F32 => 4,
            Format::F16 | Format::BF16 => 2,
            Format::Q4_0 => 18,
            Format::Q4_1 => 20,
            Format::Q5_0 => 22,
            Format::Q8_0 => 34,
            Format::Q4_K => 144,
            Format::Q6_K => 210,
        }
    }

    /// Bytes of a row of `cols` weights; None when `cols` is not a whole number
    /// of blocks.
    pub fn row_bytes(self, cols: usize) -> Option<usize> {
        (cols % self.block_weights() == 0).then(|| cols / self.block_weights() * self.block_bytes())
    }

    /// ggml's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Format::F32 => "f32",
            Format::F16 => "f16",
            Format::BF16 => "bf16",
            Format::Q4_0 => "q4_0",
            Format::Q4_1 => "q4_1",
            Format::Q5_0 => "q5_0",
            Format::Q8_0 => "q8_0",
            Format::Q4_K => "q4_K",
            Format::Q6_K => "q6_K",
        }
    }
}

/// The f16 at `b[i..i + 2]`, as f32.
#[inline(always)]
pub fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Q4_K's 6-bit scale and min of sub-block j (0..8) from its 12 scale bytes
/// (ggml's `get_scale_min_k4`): sub-blocks 0..4 keep theirs in the low 6 bits
/// of bytes j (scale) and j + 4 (min); sub-blocks 4..8 in the nibbles of byte
/// j + 4 (scale low, min high), topped by the 2 high bits of bytes j - 4
/// (scale) and j (min).
#[inline(always)]
pub fn q4_k_scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// Dequantize `bytes`, whole blocks of `format`, into `out` (as many weights
/// as the blocks hold), computing in f32 as ggml does.
pub fn dequantize(format: Format, bytes: &[u8], out: &mut [f32]) {
    let (qk, bb) = (format.block_weights(), format.block_bytes());
    assert_eq!(bytes.len() / bb * qk, out.len(), "{} dequantize lengths", format.name());
    assert_eq!(bytes.len() % bb, 0, "{} dequantize: partial block", format.name());
    for (b, y) in bytes.chunks_exact(bb).zip(out.chunks_exact_mut(qk)) {
        match format {
            Format::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            Format::F16 => y[0] = f16_at(b, 0),
            Format::BF16 => y[0] = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16),
            Format::Q4_0 | Format::Q4_1 => {
                let (d, q) = (f16_at(b, 0), &b[bb - 16..]);
                let (offset, m) = if format == Format::Q4_0 { (8, 0.0) } else { (0, f16_at(b, 2)) };
                for j in 0..16 {
                    y[j] = ((q[j] & 0xf) as i32 - offset) as f32 * d + m;
                    y[j + 16] = ((q[j] >> 4) as i32 - offset) as f32 * d + m;
                }
            }
            Format::Q5_0 => {
                let (d, qh, q) = (f16_at(b, 0), u32::from_le_bytes([b[2], b[3], b[4], b[5]]), &b[6..]);
                for j in 0..16 {
                    let (h0, h1) = ((qh >> j) & 1, (qh >> (j + 16)) & 1);
                    y[j] = (((q[j] & 0xf) as u32 | h0 << 4) as i32 - 16) as f32 * d;
                    y[j + 16] = (((q[j] >> 4) as u32 | h1 << 4) as i32 - 16) as f32 * d;
                }
            }
            Format::Q8_0 => {
                let d = f16_at(b, 0);
                for j in 0..32 {
                    y[j] = b[2 + j] as i8 as f32 * d;
                }
            }
            Format::Q4_K => dequantize_q4_k(b, y),
            Format::Q6_K => dequantize_q6_k(b, y),
        }
    }
}

/// One Q4_K super-block: 8 sub-blocks of 32 weights, sub-block j weighing
/// `d sc_j q - dmin m_j` (see [`q4_k_scale_min`]). The 128 bytes of `qs` hold
/// the sub-blocks in pairs: the 32 bytes of pair p hold sub-block 2p in their
/// low nibbles (weight l in byte l) and sub-block 2p + 1 in their high nibbles.
fn dequantize_q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin, scales, qs) = (f16_at(b, 0), f16_at(b, 2), &b[4..16], &b[16..144]);
    for p in 0..4 {
        let q = &qs[32 * p..32 * p + 32];
        for (half, shift) in [(0, 0), (1, 4)] {
            let (sc, m) = q4_k_scale_min(2 * p + half, scales);
            let (d1, m1) = (d * sc as f32, dmin * m as f32);
            for l in 0..32 {
                y[64 * p + 32 * half + l] = d1 * ((q[l] >> shift) & 0xf) as f32 - m1;
            }
        }
    }
}

/// One Q6_K super-block: 16 sub-blocks of 16 weights, sub-block j weighing
/// `d scales[j] (q - 32)` with q of 6 bits, its low 4 in `ql` and high 2 in
/// `qh`. Each half (128 weights) takes 64 bytes of `ql` and 32 of `qh`: weight
/// l (0..32) of the half is the low nibble of `ql[l]` with bits 0..2 of `qh[l]`,
/// weight l + 32 the low nibble of `ql[l + 32]` with bits 2..4, weight l + 64
/// the high nibble of `ql[l]` with bits 4..6, weight l + 96 the high nibble of
/// `ql[l + 32]` with bits 6..8.
pub fn dequantize_q6_k(b: &[u8], y: &mut [f32]) {
    let (ql, qh, sc, d) = (&b[..128], &b[128..192], &b[192..208], f16_at(b, 208));
    for h in 0..2 {
        let (ql, qh, sc, y) = (&ql[64 * h..], &qh[32 * h..], &sc[8 * h..], &mut y[128 * h..]);
        for l in 0..32 {
            let is = l / 16;
            let q = [
                (ql[l] & 0xf) | (qh[l] & 3) << 4,
                (ql[l + 32] & 0xf) | ((qh[l] >> 2) & 3) << 4,
                (ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4,
                (ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4,
            ];
            for (k, q) in q.into_iter().enumerate() {
                y[l + 32 * k] = d * (sc[is + 2 * k] as i8) as f32 * (q as i32 - 32) as f32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::reference::{dequantize_f64, known_blocks, quantize};
    use super::*;
    use crate::kernels::randn;

    /// The weights of [`known_blocks`], stated from the bytes by hand.
    fn stated(format: Format) -> Vec<f32> {
        let all = |f: &dyn Fn(usize) -> f32, n: usize| (0..n).map(f).collect::<Vec<f32>>();
        match format {
            Format::F32 | Format::F16 | Format::BF16 => vec![1.5, -2.0],
            Format::Q4_0 => all(&|i| if i < 16 { 0.5 * (i as f32 - 8.0) } else { 0.5 * (7.0 - (i - 16) as f32) }, 32),
            Format::Q4_1 => all(&|i| if i < 16 { 0.25 * i as f32 - 1.0 } else { 0.25 * (31 - i) as f32 - 1.0 }, 32),
            Format::Q5_0 => all(&|i| (i % 16) as f32 + if (i < 16) == (i % 2 == 0) { 0.0 } else { -16.0 }, 32),
            Format::Q8_0 => all(&|i| 2.0 * (8.0 * i as f32 - 128.0), 32),
            Format::Q4_K => {
                let (sc, m) = ([1, 2, 3, 63, 17, 33, 49, 62], [0, 5, 10, 40, 16, 32, 48, 63]);
                let q = |i: usize| if (i / 32) % 2 == 0 { i % 16 } else { 15 - i % 16 };
                all(&|i| sc[i / 32] as f32 * q(i) as f32 - 0.5 * m[i / 32] as f32, 256)
            }
            Format::Q6_K => unreachable!("stated at positions"),
        }
    }

    /// Every format's hand-built block dequantizes to the weights stated for it.
    #[test]
    fn known_blocks_dequantize_to_stated_weights() {
        for (format, bytes) in known_blocks() {
            let n = bytes.len() / format.block_bytes() * format.block_weights();
            let mut got = vec![f32::NAN; n];
            dequantize(format, &bytes, &mut got);
            if format == Format::Q6_K {
                // Worked by hand from the layout (see dequantize_q6_k).
                let at = [(0, -16.0), (3, 9.5), (33, -31.0), (67, -48.0), (127, 58.0), (180, 36.0), (200, 14.0), (224, -1651.0), (255, 1600.0)];
                for (i, v) in at {
                    assert_eq!(got[i], v, "q6_K weight {i}");
                }
            } else {
                assert_eq!(got, stated(format), "{}", format.name());
            }
            // Spot checks of the statements themselves.
            match format {
                Format::Q4_0 => assert_eq!((got[0], got[15], got[16], got[31]), (-4.0, 3.5, 3.5, -4.0)),
                Format::Q5_0 => assert_eq!((got[0], got[1], got[16], got[17]), (0.0, -15.0, -16.0, 1.0)),
                Format::Q4_K => assert_eq!((got[0], got[32 + 1], got[7 * 32 + 31]), (0.0, 28.0 - 2.5, 0.0 - 31.5)),
                _ => {}
            }
        }
    }

    /// Random rows of every format dequantize as the f64 reference says, to
    /// within one rounding of f32.
    #[test]
    fn dequantize_matches_the_f64_reference() {
        for format in Format::ALL {
            let n = 4 * 256;
            let values: Vec<f32> = randn(n, 7).iter().map(|v| 3.0 * v).collect();
            let bytes = quantize(format, &values);
            let exact = dequantize_f64(format, &bytes);
            let mut got = vec![0.0; n];
            dequantize(format, &bytes, &mut got);
            for (i, (g, e)) in got.iter().zip(&exact).enumerate() {
                assert!((*g as f64 - e).abs() <= e.abs() * f32::EPSILON as f64 / 2.0, "{} weight {i}: {g} vs {e}", format.name());
            }
            // The test quantizer and the reference agree on the layout: the
            // weights come back near the values (a wrong layout scatters them).
            let rms = |v: &mut dyn Iterator<Item = f64>| (v.map(|x| x * x).sum::<f64>() / n as f64).sqrt();
            let err = rms(&mut values.iter().zip(&exact).map(|(v, e)| *v as f64 - e)) / rms(&mut values.iter().map(|v| *v as f64));
            let bound = match format {
                Format::F32 => 0.0,
                Format::F16 => 1e-3,
                Format::BF16 => 1e-2,
                Format::Q8_0 => 0.01,
                Format::Q6_K => 0.05,
                Format::Q5_0 => 0.08,
                _ => 0.2,
            };
            assert!(err <= bound, "{} round trip: relative rms error {err}", format.name());
        }
    }

    #[test]
    fn ggml_types_and_sizes() {
        for format in Format::ALL {
            assert_eq!(Format::from_ggml_type(format.ggml_type()), Some(format));
            assert_eq!(format.row_bytes(0), Some(0));
        }
        assert_eq!(Format::from_ggml_type(7), None); // Q5_1: not read
        assert_eq!((Format::Q4_1.row_bytes(576), Format::Q8_0.row_bytes(576)), (Some(18 * 20), Some(18 * 34)));
        assert_eq!((Format::Q4_K.row_bytes(512), Format::Q6_K.row_bytes(256), Format::Q4_0.row_bytes(48)), (Some(288), Some(210), None));
    }
}
