//! SIMD kernels against plain f64 loops, on lengths that exercise every tail.

use gqa::kernels::{f16_to_f32, matmul, matmul_swiglu, matvec, rows_dot_slice, Elem};
use gqa::rng::Rng;
use gqa::tensor::{DType, Matrix};
use half::f16;

/// One row (f32 or f16) dotted with x, by the matrix kernel.
fn dot<W: Elem>(w: &[W], x: &[f32]) -> f32 {
    let mut out = [0.0];
    rows_dot_slice(w, w.len(), x, &mut out);
    out[0]
}

fn randn(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.normal()).collect()
}

#[test]
fn dot_matches_f64_for_all_tail_lengths() {
    for n in [0, 1, 3, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 100, 257, 1000] {
        let a = randn(n, n as u64);
        let b = randn(n, n as u64 + 100);
        let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let got = dot(&a, &b) as f64;
        assert!((got - exact).abs() < 1e-4 * (1.0 + n as f64).sqrt(), "n={n}: {got} vs {exact}");
        let mut one = [0.0];
        gqa::kernels::portable::rows_dot::<[f32; 8], f32>(&a, n, &b, &mut one);
        let scalar = one[0] as f64;
        assert!((scalar - exact).abs() < 1e-4 * (1.0 + n as f64).sqrt(), "scalar n={n}");

        let h: Vec<f16> = a.iter().map(|&v| f16::from_f32(v)).collect();
        let exact_h: f64 = h.iter().zip(&b).map(|(x, y)| x.to_f64() * *y as f64).sum();
        let got_h = dot(&h, &b) as f64;
        assert!((got_h - exact_h).abs() < 1e-4 * (1.0 + n as f64).sqrt(), "f16 n={n}: {got_h} vs {exact_h}");
    }
}

#[test]
fn f16_subnormals_and_signs_convert_exactly() {
    // Values around the f16 subnormal range, both signs.
    let vals: Vec<f16> = [0.0f32, -0.0, 1.0, -2.5, 6.0e-8, -6.0e-8, 3.0e-5, -6.1e-5, 65504.0, -0.333]
        .iter()
        .map(|&v| f16::from_f32(v))
        .collect();
    for (i, v) in vals.iter().enumerate() {
        let mut x = vec![0.0f32; 16];
        let mut w = vec![f16::ZERO; 16];
        x[i] = 1.0;
        w[i] = *v;
        assert_eq!(dot(&w, &x), v.to_f32(), "value {v}");
    }
}

/// Every f16 bit pattern but NaN converts exactly as half::f16::to_f32 does: the
/// vector loads the kernels use on this machine (AVX-512 or F16C; tests/run.sh
/// runs this again on AVX2), over slices with every tail length, and the scalar
/// steps that the wasm simd128 load runs lane by lane.
#[test]
fn f16_conversion_is_exact_for_all_bit_patterns() {
    let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).filter(|h| !h.is_nan()).collect();
    let expected: Vec<u32> = all.iter().map(|h| h.to_f32().to_bits()).collect();
    for h in &all {
        assert_eq!(gqa::kernels::scalar::f16_to_f32(h.to_bits()).to_bits(), h.to_f32().to_bits(), "scalar {:#06x}", h.to_bits());
    }
    for len in [all.len(), all.len() - 1, all.len() - 7] {
        let mut out = vec![0.0f32; len];
        f16_to_f32(&all[..len], &mut out);
        let got: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
        assert_eq!(got, expected[..len], "f16_to_f32 over {len} values");
    }
    // NaN stays NaN.
    assert!(gqa::kernels::scalar::f16_to_f32(0x7e00).is_nan() && gqa::kernels::scalar::f16_to_f32(0xfc01).is_nan());
}

fn f64_matmul(w: &[f32], rows: usize, cols: usize, x: &[f32], t: usize) -> Vec<f64> {
    (0..rows).map(|r| (0..cols).map(|c| w[r * cols + c] as f64 * x[t * cols + c] as f64).sum()).collect()
}

/// matmul over stacked matrices, matvec and the fused SwiGLU, serial and
/// parallel, f32 and f16, against f64 loops.
#[test]
fn matvec_and_matmul_match_f64() {
    for (rows, cols, n) in [(1, 1, 1), (5, 33, 3), (64, 64, 7), (300, 70, 2), (17, 1000, 5)] {
        let w32 = Matrix::from_f32(rows, cols, randn(rows * cols, 1));
        let u32_ = Matrix::from_f32(rows, cols, randn(rows * cols, 3));
        for (w, u) in [(w32.clone(), u32_.clone()), (w32.to_dtype(DType::F16), u32_.to_dtype(DType::F16))] {
            let (wv, uv) = (w.to_f32_vec(), u.to_f32_vec());
            let x = randn(n * cols, 2);
            let tol = 1e-4 * (cols as f64).sqrt();
            for parallel in [false, true] {
                let (mut stacked, mut swiglu, mut tmp) = (vec![0.0; n * 2 * rows], vec![0.0; n * rows], Vec::new());
                matmul(&[&w, &u], &x, n, &mut stacked, &mut tmp, parallel);
                matmul_swiglu(&w, &u, &x, n, &mut swiglu, &mut tmp, parallel);
                for t in 0..n {
                    let mut one = vec![0.0; rows];
                    matvec(&w, &x[t * cols..(t + 1) * cols], &mut one, parallel);
                    let (ew, eu) = (f64_matmul(&wv, rows, cols, &x, t), f64_matmul(&uv, rows, cols, &x, t));
                    for r in 0..rows {
                        let at = |v: &[f32], i: usize| v[i] as f64;
                        assert!((at(&stacked, t * 2 * rows + r) - ew[r]).abs() < tol, "matmul W {rows}x{cols} t={t} r={r}");
                        assert!((at(&stacked, t * 2 * rows + rows + r) - eu[r]).abs() < tol, "matmul U {rows}x{cols} t={t} r={r}");
                        assert!((at(&one, r) - ew[r]).abs() < tol, "matvec {rows}x{cols} r={r}");
                        let glu = ew[r] / (1.0 + (-ew[r]).exp()) * eu[r];
                        assert!((at(&swiglu, t * rows + r) - glu).abs() < tol * (1.0 + glu.abs()), "swiglu {rows}x{cols} t={t} r={r}");
                    }
                }
            }
        }
    }
}

/// One attention block on keys `k` (hd rows of len, `stride` apart) and values `v`
/// (len rows of hd): the softmax sums per head, and the weighted values (group x hd).
fn attention_block<T: Elem>(k: &[T], v: &[T], q: &[f32], hd: usize, stride: usize, len: usize, scale: f32) -> (Vec<f32>, Vec<f32>) {
    use gqa::kernels::{attention_scores, attention_values, softmax_numerators, Rows};
    let group = q.len() / hd;
    let mut scores = vec![0.0f32; group * len];
    let mut out = vec![0.0f32; group * hd];
    attention_scores(Rows { data: k, stride, dims: hd, len }, q, scale, &mut scores);
    let sums = scores.chunks_exact_mut(len).map(|row| softmax_numerators(row).1).collect();
    attention_values(&v[..len * hd], hd, &scores, &mut out);
    (sums, out)
}

/// Attention over one block, every group size 1..=8 (head blocks of 8 down to 1,
/// each with its own positions per step), lengths around the 16-position step
/// and the block limit, head_dim 8, 16, 24 and 64 (24: a tail of dims past the
/// vectors), f32, f16 and int8 rows: scores, softmax_numerators and the weighted
/// values against f64 computed from the same (rounded) numbers. The int8 rows
/// are codes round(16 x), which the kernels read unscaled: given q / 16 they
/// compute the scores of codes / 16, and their output / 16 is the weighted sum of
/// codes / 16 (exact: powers of two).
#[test]
fn attention_block_matches_f64_for_every_group_and_tail() {
    for hd in [8usize, 16, 24, 64] {
        for group in 1..=8usize {
            for len in [1usize, 7, 15, 16, 17, 33, 255, 256, 512] {
                let stride = len + 5; // rows apart in the cache, as at capacity > len
                let k = randn(hd * stride, (hd * 100 + group * 10 + len) as u64);
                let v = randn(hd * stride, (hd * 100 + group * 10 + len) as u64 + 7);
                let q = randn(group * hd, len as u64 + 3);
                let scale = 1.0 / (hd as f32).sqrt();
                for kind in ["f32", "f16", "int8"] {
                    let code = |a: f32| (a * 16.0).round().clamp(-127.0, 127.0) as i8;
                    let round = |x: &[f32]| -> Vec<f32> {
                        x.iter()
                            .map(|&a| match kind {
                                "f16" => f16::from_f32(a).to_f32(),
                                "int8" => code(a) as f32 / 16.0,
                                _ => a,
                            })
                            .collect()
                    };
                    let (kr, vr) = (round(&k), round(&v));
                    let (sums, out) = match kind {
                        "f16" => {
                            let (kh, vh): (Vec<f16>, Vec<f16>) = (k.iter().map(|&a| f16::from_f32(a)).collect(), v.iter().map(|&a| f16::from_f32(a)).collect());
                            attention_block(&kh, &vh, &q, hd, stride, len, scale)
                        }
                        "int8" => {
                            let (kq, vq): (Vec<i8>, Vec<i8>) = (k.iter().map(|&a| code(a)).collect(), v.iter().map(|&a| code(a)).collect());
                            let q16: Vec<f32> = q.iter().map(|&a| a / 16.0).collect();
                            let (sums, out) = attention_block(&kq, &vq, &q16, hd, stride, len, scale);
                            (sums, out.iter().map(|&o| o / 16.0).collect())
                        }
                        _ => attention_block(&k, &v, &q, hd, stride, len, scale),
                    };
                    for r in 0..group {
                        let s64: Vec<f64> = (0..len).map(|p| (0..hd).map(|d| q[r * hd + d] as f64 * kr[d * stride + p] as f64).sum::<f64>() * scale as f64).collect();
                        let m = s64.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let e: Vec<f64> = s64.iter().map(|s| (s - m).exp()).collect();
                        let sum: f64 = e.iter().sum();
                        assert!((sums[r] as f64 - sum).abs() <= 1e-5 * sum, "hd {hd} group {group} len {len} {kind}: sum {} vs {sum}", sums[r]);
                        for d in 0..hd {
                            let want: f64 = (0..len).map(|p| e[p] * vr[p * hd + d] as f64).sum();
                            let got = out[r * hd + d] as f64;
                            // Each probability within 1e-5 relative (scores and exp), summed over len terms of |v| <= ~4.
                            assert!((got - want).abs() <= 1e-5 * (1.0 + sum * 4.0), "hd {hd} group {group} len {len} {kind} head {r} dim {d}: {got} vs {want}");
                        }
                    }
                }
            }
        }
    }
}

/// swiglu_gate (the dispatched kernel and the plain-array one) against f64
/// g u / (1 + exp(-g)): every length from 0 to 40 (whole vectors and every tail),
/// gate values over [-200, 200] so that some pass the cap on exp's argument at
/// -87 and some make exp underflow. Each result within 1e-6 relative (the
/// polynomial's error is about 1e-7, the division's 6e-8), or within 1e-30
/// absolute where silu underflows.
#[test]
fn swiglu_gate_matches_f64() {
    use gqa::kernels::{portable, swiglu_gate};
    for len in 0..=40usize {
        let g: Vec<f32> = randn(len, 700 + len as u64).iter().map(|v| v * 100.0).collect();
        let u: Vec<f32> = randn(len, 800 + len as u64);
        let want: Vec<f64> = g.iter().zip(&u).map(|(&g, &u)| g as f64 * u as f64 / (1.0 + (-g as f64).exp())).collect();
        type Kernel = fn(&mut [f32], &[f32]);
        let kernels: [(&str, Kernel); 2] = [("dispatched", swiglu_gate), ("plain arrays", portable::swiglu_gate::<[f32; 8]>)];
        for (name, kernel) in kernels {
            let mut got = g.clone();
            kernel(&mut got, &u);
            for (i, (&o, &w)) in got.iter().zip(&want).enumerate() {
                let ok = (o as f64 - w).abs() <= 1e-6 * w.abs() || (w.abs() < 1e-30 && o.abs() < 1e-30);
                assert!(ok, "{name}: silu(g) u at {i} of {len} (g {}): {o} vs {w}", g[i]);
            }
        }
    }
}

/// softmax_numerators (the dispatched kernel and the plain-array one) against f64:
/// every length from 0 to 40 (whole vectors of 8 and 16 lanes and every tail),
/// scores spread over [-120, 40] so that some fall below exp's clamp at -87 after
/// the shift. Each numerator within 1e-6 relative of exp(x - max) (the polynomial's
/// error is about 1e-7), or within 1e-30 absolute where exp underflows; the max
/// exactly, and the sum within 1e-6 relative.
#[test]
fn softmax_numerators_match_f64() {
    use gqa::kernels::{portable, softmax_numerators};
    for len in 0..=40usize {
        let x: Vec<f32> = randn(len, 900 + len as u64).iter().map(|v| v * 40.0 - 40.0).collect();
        let max = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        // exp of the f32 difference the kernel gets (its rounding is not exp's error).
        let want: Vec<f64> = x.iter().map(|&v| ((v - max) as f64).exp()).collect();
        type Kernel = fn(&mut [f32]) -> (f32, f32);
        let kernels: [(&str, Kernel); 2] = [("dispatched", softmax_numerators), ("plain arrays", portable::softmax_numerators::<[f32; 8]>)];
        for (name, kernel) in kernels {
            let mut got = x.clone();
            let (m, sum) = kernel(&mut got);
            assert_eq!(m.to_bits(), max.to_bits(), "{name}: max of {len}");
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                let ok = (g as f64 - w).abs() <= 1e-6 * w || (w < 1e-30 && g.abs() < 1e-30);
                assert!(ok, "{name}: exp at {i} of {len}: {g} vs {w}");
            }
            let want_sum: f64 = want.iter().sum();
            assert!((sum as f64 - want_sum).abs() <= 1e-6 * want_sum.max(1e-30), "{name}: sum of {len}: {sum} vs {want_sum}");
        }
    }
}
