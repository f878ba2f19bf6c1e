//! SIMD kernels against plain f64 loops, on lengths that exercise every tail.

use gqa::kernels::{dot, dot_f16, f16_to_f32, matmul, matmul_swiglu, matvec};
use gqa::rng::Rng;
use gqa::tensor::{DType, Matrix};
use half::f16;

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
        let scalar = gqa::kernels::scalar::dot_f32(&a, &b) as f64;
        assert!((scalar - exact).abs() < 1e-4 * (1.0 + n as f64).sqrt(), "scalar n={n}");

        let h: Vec<f16> = a.iter().map(|&v| f16::from_f32(v)).collect();
        let exact_h: f64 = h.iter().zip(&b).map(|(x, y)| x.to_f64() * *y as f64).sum();
        let got_h = dot_f16(&h, &b) as f64;
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
        assert_eq!(dot_f16(&w, &x), v.to_f32(), "value {v}");
    }
}

/// Every f16 bit pattern but NaN converts exactly as half::f16::to_f32 does: the
/// kernel this machine dispatches to (F16C here), over slices with every tail
/// length, and the scalar steps that the wasm simd128 kernel runs lane by lane.
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
