//! For the tests only: a quantizer for each format and an f64 dequantizer,
//! both written from the formats' description (ggml's `block_*` structs and
//! `dequantize_row_*`), sharing no code with what they test. The quantizer
//! aims for valid blocks with every field in use, not for ggml's accuracy.

use half::f16;

use super::Format;

fn f16_bytes(v: f32) -> [u8; 2] {
    f16::from_f32(v).to_bits().to_le_bytes()
}

fn f16_value(b: &[u8]) -> f64 {
    f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f64()
}

/// The f16 nearest `v`, as f32 (the scale a block will really hold).
fn as_f16(v: f32) -> f32 {
    f16::from_f32(v).to_f32()
}

/// Quantize `values` (a whole number of blocks) into `format`'s bytes.
pub fn quantize(format: Format, values: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    match format {
        Format::F32 => values.iter().for_each(|v| out.extend(v.to_le_bytes())),
        Format::F16 => values.iter().for_each(|v| out.extend(f16_bytes(*v))),
        Format::BF16 => values.iter().for_each(|v| out.extend(((v.to_bits() >> 16) as u16).to_le_bytes())),
        _ => {
            for block in values.chunks(format.block_weights()) {
                out.extend(quantize_block(format, block));
            }
        }
    }
    assert_eq!(Some(out.len()), format.row_bytes(values.len()), "{format:?} quantize: whole blocks");
    out
}

/// Round `v / d` to the nearest integer in lo..=hi (0 where d is 0).
fn level(v: f32, d: f32, lo: i32, hi: i32) -> i32 {
    if d == 0.0 {
        return lo.max(0).min(hi);
    }
    ((v / d).round() as i32).clamp(lo, hi)
}

fn quantize_block(format: Format, x: &[f32]) -> Vec<u8> {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let (min, max) = x.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let mut b = Vec::new();
    // 4-bit codes for Q4_0 / Q4_1 / Q5_0: weight j in the low nibble of byte j,
    // weight j + 16 in the high nibble.
    let nibbles = |codes: &[i32]| -> Vec<u8> { (0..16).map(|j| (codes[j] as u8 & 0xf) | (codes[j + 16] as u8 & 0xf) << 4).collect() };
    match format {
        Format::Q4_0 => {
            let d = as_f16(amax / 7.0);
            let codes: Vec<i32> = x.iter().map(|&v| level(v, d, -8, 7) + 8).collect();
            b.extend(f16_bytes(d));
            b.extend(nibbles(&codes));
        }
        Format::Q4_1 => {
            let (m, d) = (as_f16(min), as_f16((max - min) / 15.0));
            let codes: Vec<i32> = x.iter().map(|&v| level(v - m, d, 0, 15)).collect();
            b.extend(f16_bytes(d));
            b.extend(f16_bytes(m));
            b.extend(nibbles(&codes));
        }
        Format::Q5_0 => {
            let d = as_f16(amax / 15.0);
            let codes: Vec<i32> = x.iter().map(|&v| level(v, d, -16, 15) + 16).collect();
            let qh: u32 = (0..32).map(|j| ((codes[j] as u32 >> 4) & 1) << j).sum();
            b.extend(f16_bytes(d));
            b.extend(qh.to_le_bytes());
            b.extend(nibbles(&codes));
        }
        Format::Q8_0 => {
            let d = as_f16(amax / 127.0);
            b.extend(f16_bytes(d));
            b.extend(x.iter().map(|&v| level(v, d, -127, 127) as i8 as u8));
        }
        Format::Q4_K => b = quantize_q4_k(x),
        Format::Q6_K => b = quantize_q6_k(x, amax),
        _ => unreachable!(),
    }
    b
}

/// Q4_K: per sub-block of 32 a 6-bit scale and min (of `d` and `dmin`), packed
/// into 12 bytes as `get_scale_min_k4` unpacks them; codes in pairs of
/// sub-blocks, the first of a pair in the low nibbles.
fn quantize_q4_k(x: &[f32]) -> Vec<u8> {
    let subs: Vec<(f32, f32)> = x
        .chunks(32)
        .map(|s| {
            let lo = s.iter().fold(0.0f32, |a, &v| a.min(v)); // min <= 0: -lo is the offset
            let hi = s.iter().fold(lo, |a, &v| a.max(v));
            ((hi - lo) / 15.0, -lo)
        })
        .collect();
    let d = as_f16(subs.iter().fold(0.0f32, |a, s| a.max(s.0)) / 63.0);
    let dmin = as_f16(subs.iter().fold(0.0f32, |a, s| a.max(s.1)) / 63.0);
    let sc: Vec<u8> = subs.iter().map(|s| level(s.0, d, 0, 63) as u8).collect();
    let mn: Vec<u8> = subs.iter().map(|s| level(s.1, dmin, 0, 63) as u8).collect();
    let mut scales = [0u8; 12];
    for j in 0..4 {
        scales[j] = sc[j] | (sc[j + 4] >> 4) << 6;
        scales[j + 4] = mn[j] | (mn[j + 4] >> 4) << 6;
        scales[j + 8] = (sc[j + 4] & 0xf) | (mn[j + 4] & 0xf) << 4;
    }
    let code = |i: usize| {
        let j = i / 32;
        level(x[i] + dmin * mn[j] as f32, d * sc[j] as f32, 0, 15) as u8
    };
    let mut b = Vec::new();
    b.extend(f16_bytes(d));
    b.extend(f16_bytes(dmin));
    b.extend(scales);
    for p in 0..4 {
        b.extend((0..32).map(|l| code(64 * p + l) | code(64 * p + 32 + l) << 4));
    }
    b
}

/// Q6_K: a signed 8-bit scale per sub-block of 16 (of `d`), 6-bit codes with
/// 32 added, split into `ql` nibbles and `qh` bit pairs as in the format.
fn quantize_q6_k(x: &[f32], amax: f32) -> Vec<u8> {
    let d = as_f16(amax / 31.0 / 127.0);
    let sc: Vec<i8> = x.chunks(16).map(|s| level(-s.iter().fold(0.0f32, |a, v| a.max(v.abs())) / 31.0, d, -128, 127) as i8).collect();
    let code = |i: usize| (level(x[i], d * sc[i / 16] as f32, -32, 31) + 32) as u8;
    let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
    for h in 0..2 {
        for l in 0..32 {
            let c = |k: usize| code(128 * h + 32 * k + l);
            ql[64 * h + l] = (c(0) & 0xf) | (c(2) & 0xf) << 4;
            ql[64 * h + l + 32] = (c(1) & 0xf) | (c(3) & 0xf) << 4;
            qh[32 * h + l] = c(0) >> 4 | (c(1) >> 4) << 2 | (c(2) >> 4) << 4 | (c(3) >> 4) << 6;
        }
    }
    let mut b = Vec::new();
    b.extend(ql);
    b.extend(qh);
    b.extend(sc.iter().map(|&s| s as u8));
    b.extend(f16_bytes(d));
    b
}

/// The weights `bytes` (whole blocks of `format`) stand for, in f64.
pub fn dequantize_f64(format: Format, bytes: &[u8]) -> Vec<f64> {
    let mut out = Vec::new();
    for b in bytes.chunks(format.block_bytes()) {
        match format {
            Format::F32 => out.push(f32::from_le_bytes(b.try_into().unwrap()) as f64),
            Format::F16 => out.push(f16_value(b)),
            Format::BF16 => out.push(f32::from_bits((b[1] as u32) << 24 | (b[0] as u32) << 16) as f64),
            Format::Q4_0 | Format::Q4_1 | Format::Q5_0 => {
                let d = f16_value(b);
                let qs = &b[b.len() - 16..];
                for i in 0..32 {
                    let nibble = if i < 16 { qs[i] & 0xf } else { qs[i - 16] >> 4 } as i32;
                    out.push(match format {
                        Format::Q4_0 => d * (nibble - 8) as f64,
                        Format::Q4_1 => d * nibble as f64 + f16_value(&b[2..]),
                        _ => d * ((nibble | ((b[2 + i / 8] >> (i % 8)) as i32 & 1) << 4) - 16) as f64,
                    });
                }
            }
            Format::Q8_0 => out.extend(b[2..].iter().map(|&q| f16_value(b) * q as i8 as f64)),
            Format::Q4_K => {
                let (d, dmin, s) = (f16_value(b), f16_value(&b[2..]), &b[4..16]);
                for i in 0..256 {
                    let j = i / 32; // sub-block
                    let (sc, m) = match j {
                        0..4 => (s[j] & 0x3f, s[j + 4] & 0x3f),
                        _ => (s[j + 4] % 16 + (s[j - 4] / 64) * 16, s[j + 4] / 16 + (s[j] / 64) * 16),
                    };
                    let byte = b[16 + 32 * (j / 2) + i % 32];
                    let q = if j % 2 == 0 { byte % 16 } else { byte / 16 };
                    out.push(d * sc as f64 * q as f64 - dmin * m as f64);
                }
            }
            Format::Q6_K => {
                let d = f16_value(&b[208..]);
                for i in 0..256 {
                    let (h, k, l) = (i / 128, (i % 128) / 32, i % 32); // half, quarter, position
                    let low = b[64 * h + l + 32 * (k % 2)];
                    let low = if k < 2 { low % 16 } else { low / 16 };
                    let high = (b[128 + 32 * h + l] >> (2 * k)) % 4;
                    let q = (low as i32 + 16 * high as i32) - 32;
                    out.push(d * b[192 + i / 16] as i8 as f64 * q as f64);
                }
            }
        }
    }
    out
}

/// Per weight, the size of the offset the kernels subtract from its block
/// (Q4_0's 8 d, Q4_1's m, ...; 0 for formats without one): with the weight it
/// bounds the terms summed in f32, for the tests' error bounds.
pub fn offsets_f64(format: Format, bytes: &[u8]) -> Vec<f64> {
    let mut out = Vec::new();
    for b in bytes.chunks(format.block_bytes()) {
        match format {
            Format::Q4_0 => out.extend([8.0 * f16_value(b).abs(); 32]),
            Format::Q4_1 => out.extend([f16_value(&b[2..]).abs(); 32]),
            Format::Q5_0 => out.extend([16.0 * f16_value(b).abs(); 32]),
            Format::Q4_K => {
                // The largest min any sub-block can have (63 dmin) bounds each.
                out.extend([63.0 * f16_value(&b[2..]).abs(); 256]);
            }
            Format::Q6_K => {
                let d = f16_value(&b[208..]).abs();
                out.extend((0..256).map(|i| 32.0 * d * (b[192 + i / 16] as i8 as f64).abs()));
            }
            _ => out.extend(std::iter::repeat_n(0.0, format.block_weights())),
        }
    }
    out
}

/// For each format a hand-built block (or a few elements) and the weights it
/// holds, stated in the test that uses them.
pub fn known_blocks() -> Vec<(Format, Vec<u8>)> {
    let mut blocks = Vec::new();
    // f32 1.5, -2.0; f16 1.5 (0x3e00), -2.0 (0xc000); bf16 1.5 (0x3fc0), -2.0 (0xc000).
    blocks.push((Format::F32, [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect()));
    blocks.push((Format::F16, vec![0x00, 0x3e, 0x00, 0xc0]));
    blocks.push((Format::BF16, vec![0xc0, 0x3f, 0x00, 0xc0]));
    // Q4_0: d = 0.5 (f16 0x3800); byte j = j | (15 - j) << 4.
    let nib: Vec<u8> = (0..16u8).map(|j| j | (15 - j) << 4).collect();
    blocks.push((Format::Q4_0, [vec![0x00, 0x38], nib.clone()].concat()));
    // Q4_1: d = 0.25 (0x3400), m = -1 (0xbc00); the same nibbles.
    blocks.push((Format::Q4_1, [vec![0x00, 0x34, 0x00, 0xbc], nib.clone()].concat()));
    // Q5_0: d = 1 (0x3c00); qh = 0xaaaa5555 (fifth bit of weights 0, 2, .., 14
    // and 17, 19, .., 31); byte j = j | j << 4.
    let q5: Vec<u8> = (0..16u8).map(|j| j | j << 4).collect();
    blocks.push((Format::Q5_0, [vec![0x00, 0x3c, 0x55, 0x55, 0xaa, 0xaa], q5].concat()));
    // Q8_0: d = 2 (0x4000); q_j = 8 j - 128.
    blocks.push((Format::Q8_0, [vec![0x00, 0x40], (0..32).map(|j| (8 * j - 128) as i8 as u8).collect()].concat()));
    // Q4_K: d = 1, dmin = 0.5; scales (1, 2, 3, 63, 17, 33, 49, 62), mins
    // (0, 5, 10, 40, 16, 32, 48, 63), packed by hand; byte l of each pair's 32
    // is (l % 16) | (15 - l % 16) << 4.
    let scales = [65, 130, 195, 255, 64, 133, 202, 232, 1, 1, 1, 254];
    let qs: Vec<u8> = (0..128).map(|i| (i % 16) as u8 | (15 - (i % 16) as u8) << 4).collect();
    blocks.push((Format::Q4_K, [vec![0x00, 0x3c, 0x00, 0x38], scales.to_vec(), qs].concat()));
    // Q6_K: ql[i] = i, qh[i] = i, scales (1, -1, 2, -2, .., 7, -7, 127, -128), d = 0.5.
    let sc: Vec<u8> = [1, -1, 2, -2, 3, -3, 4, -4, 5, -5, 6, -6, 7, -7, 127, -128].iter().map(|&s: &i8| s as u8).collect();
    blocks.push((Format::Q6_K, [(0..128).collect(), (0..64).collect(), sc, vec![0x00, 0x38]].concat()));
    blocks
}
