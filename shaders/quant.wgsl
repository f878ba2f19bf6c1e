// Weight decoding for every storage format (prepended to matvec, matmul and embed when
// the pipeline is built): `weights8(row, col)` is the 8 weights col .. col + 8 (col a
// multiple of 8) of the row whose bytes start at byte `row` of `w`, as f32.
//
// The kernel that includes this file declares `w: array<vec4<u32>>`, the matrix's bytes
// (weights.rs, GpuMatrix):
//   F32, F16, BF16: rows padded to a multiple of 8 weights (16-byte aligned chunks);
//   Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K: the GGUF rows as they are, back to back, so a
//   block (18, 20, 22, 34, 144 or 210 bytes) may start at any even byte: fields are read
//   out of 32-bit words (u32_at). Block layouts: src/quant/mod.rs (ggml's).
// An 8-weight chunk never crosses a block (32 or 256 weights) nor a K-quant sub-block
// (Q4_K: 32 weights, Q6_K: 16), so each chunk decodes one scale (and min).
// f16 scales are decoded from their bits with unpack2x16float: no shader-f16 needed.

// ggml's type number of the weights (quant::Format::ggml_type); a pipeline per format.
override FORMAT: u32 = 0u;

const F32: u32 = 0u;
const F16: u32 = 1u;
const Q4_0: u32 = 2u;
const Q4_1: u32 = 3u;
const Q5_0: u32 = 6u;
const Q8_0: u32 = 8u;
const Q4_K: u32 = 12u;
const Q6_K: u32 = 14u;
const BF16: u32 = 30u;

struct Eight {
    lo: vec4<f32>, // weights col .. col + 4
    hi: vec4<f32>, // weights col + 4 .. col + 8
}

// 32-bit word i of w.
fn word(i: u32) -> u32 {
    return w[i >> 2u][i & 3u];
}

// The little-endian u32 at byte b, any alignment.
fn u32_at(b: u32) -> u32 {
    let i = b >> 2u;
    let s = (b & 3u) * 8u;
    if s == 0u {
        return word(i);
    }
    return (word(i) >> s) | (word(i + 1u) << (32u - s));
}

fn byte_at(b: u32) -> u32 {
    return (word(b >> 2u) >> ((b & 3u) * 8u)) & 0xffu;
}

// The f16 at byte b (b even: f16 fields sit at even offsets), as f32.
fn f16_at(b: u32) -> f32 {
    return unpack2x16float(word(b >> 2u) >> ((b & 2u) * 8u)).x;
}

// The 4 bytes of q, byte k in component k.
fn bytes4(q: u32) -> vec4<u32> {
    return (vec4<u32>(q) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
}

// The 4 bits-wide fields at `shift` of the 8 bytes at byte b: 4-bit codes.
fn nibbles8(b: u32, shift: u32) -> array<vec4<u32>, 2> {
    let s = vec4<u32>(shift);
    return array<vec4<u32>, 2>((bytes4(u32_at(b)) >> s) & vec4<u32>(0xfu), (bytes4(u32_at(b + 4u)) >> s) & vec4<u32>(0xfu));
}

// Two bf16 values in one word (element 2i in the low half) as f32.
fn bf16x2(v: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(v << 16u), bitcast<f32>(v & 0xffff0000u));
}

// 8 signed bytes at byte b.
fn i8x8(b: u32) -> Eight {
    let s = vec4<u32>(24u, 16u, 8u, 0u);
    let lo = bitcast<vec4<i32>>(vec4<u32>(u32_at(b)) << s) >> vec4<u32>(24u);
    let hi = bitcast<vec4<i32>>(vec4<u32>(u32_at(b + 4u)) << s) >> vec4<u32>(24u);
    return Eight(vec4<f32>(lo), vec4<f32>(hi));
}

// Q4_0 / Q4_1 / Q5_0: weight j (0..16) of a block is the low nibble of qs[j], weight
// j + 16 the high nibble; Q5_0's fifth bit of weight j is bit j of qh.
fn small_block(row: u32, col: u32) -> Eight {
    let j = col % 32u;
    let shift = select(0u, 4u, j >= 16u);
    if FORMAT == Q4_0 {
        let b = row + (col / 32u) * 18u;
        let d = f16_at(b);
        let q = nibbles8(b + 2u + (j & 15u), shift);
        return Eight((vec4<f32>(q[0]) - 8.0) * d, (vec4<f32>(q[1]) - 8.0) * d);
    }
    if FORMAT == Q4_1 {
        let b = row + (col / 32u) * 20u;
        let dm = unpack2x16float(u32_at(b));
        let q = nibbles8(b + 4u + (j & 15u), shift);
        return Eight(vec4<f32>(q[0]) * dm.x + dm.y, vec4<f32>(q[1]) * dm.x + dm.y);
    }
    // Q5_0
    let b = row + (col / 32u) * 22u;
    let d = f16_at(b);
    let qh = vec4<u32>(u32_at(b + 2u) >> j);
    let q = nibbles8(b + 6u + (j & 15u), shift);
    let h_lo = ((qh >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u)) << vec4<u32>(4u);
    let h_hi = ((qh >> vec4<u32>(4u, 5u, 6u, 7u)) & vec4<u32>(1u)) << vec4<u32>(4u);
    return Eight((vec4<f32>(q[0] | h_lo) - 16.0) * d, (vec4<f32>(q[1] | h_hi) - 16.0) * d);
}

// Q4_K: 8 sub-blocks of 32 weights, sub-block s weighing d sc_s q - dmin m_s, with 6-bit
// sc_s and m_s packed in 12 bytes (quant::q4_k_scale_min); the 128 code bytes hold the
// sub-blocks in pairs: pair p's 32 bytes hold sub-block 2p in their low nibbles and
// 2p + 1 in their high nibbles.
fn q4_k(row: u32, col: u32) -> Eight {
    let b = row + (col / 256u) * 144u;
    let j = col % 256u;
    let s = j / 32u;
    let dm = unpack2x16float(u32_at(b));
    let sb = b + 4u; // the 12 scale bytes
    var sc: u32;
    var m: u32;
    if s < 4u {
        sc = byte_at(sb + s) & 63u;
        m = byte_at(sb + s + 4u) & 63u;
    } else {
        let low = byte_at(sb + s + 4u);
        sc = (low & 0xfu) | ((byte_at(sb + s - 4u) >> 6u) << 4u);
        m = (low >> 4u) | ((byte_at(sb + s) >> 6u) << 4u);
    }
    let d1 = dm.x * f32(sc);
    let m1 = dm.y * f32(m);
    let q = nibbles8(b + 16u + 32u * (s / 2u) + j % 32u, 4u * (s & 1u));
    return Eight(d1 * vec4<f32>(q[0]) - m1, d1 * vec4<f32>(q[1]) - m1);
}

// Q6_K: 16 sub-blocks of 16 weights, sub-block weighing d sc (q - 32), q of 6 bits (low
// 4 in ql, high 2 in qh). Each half (128 weights) takes 64 bytes of ql and 32 of qh:
// quarter k (32 weights) of the half has its low bits in the low (k < 2) or high nibbles
// of ql[l + 32 (k & 1)] and its high bits at bits 2k of qh[l], l = 0..32.
fn q6_k(row: u32, col: u32) -> Eight {
    let b = row + (col / 256u) * 210u;
    let j = col % 256u;
    let h = j / 128u;
    let k = (j % 128u) / 32u;
    let l = j % 32u;
    let ql = nibbles8(b + 64u * h + l + 32u * (k & 1u), 4u * (k >> 1u));
    let qhb = b + 128u + 32u * h + l;
    let s = vec4<u32>(2u * k);
    let qh_lo = ((bytes4(u32_at(qhb)) >> s) & vec4<u32>(3u)) << vec4<u32>(4u);
    let qh_hi = ((bytes4(u32_at(qhb + 4u)) >> s) & vec4<u32>(3u)) << vec4<u32>(4u);
    let sc = bitcast<i32>(byte_at(b + 192u + 8u * h + l / 16u + 2u * k) << 24u) >> 24u;
    let ds = f16_at(b + 208u) * f32(sc);
    return Eight(ds * (vec4<f32>(ql[0] | qh_lo) - 32.0), ds * (vec4<f32>(ql[1] | qh_hi) - 32.0));
}

fn weights8(row: u32, col: u32) -> Eight {
    switch FORMAT {
        case F32: {
            let i = (row + 4u * col) >> 4u;
            return Eight(bitcast<vec4<f32>>(w[i]), bitcast<vec4<f32>>(w[i + 1u]));
        }
        case F16: {
            let v = w[(row + 2u * col) >> 4u];
            return Eight(vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y)), vec4<f32>(unpack2x16float(v.z), unpack2x16float(v.w)));
        }
        case BF16: {
            let v = w[(row + 2u * col) >> 4u];
            return Eight(vec4<f32>(bf16x2(v.x), bf16x2(v.y)), vec4<f32>(bf16x2(v.z), bf16x2(v.w)));
        }
        case Q8_0: {
            let b = row + (col / 32u) * 34u;
            let q = i8x8(b + 2u + col % 32u);
            let d = f16_at(b);
            return Eight(q.lo * d, q.hi * d);
        }
        case Q4_K: {
            return q4_k(row, col);
        }
        case Q6_K: {
            return q6_k(row, col);
        }
        default: {
            return small_block(row, col);
        }
    }
}
