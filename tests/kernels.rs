//! SIMD kernels against plain f64 loops, on lengths that exercise every tail.

use gqa::kernels::{dot, dot_f16, matmul, matvec, par_map};
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

#[test]
fn matvec_and_matmul_match_f64() {
    for (rows, cols, n) in [(1, 1, 1), (5, 33, 3), (64, 64, 7), (300, 70, 2), (17, 1000, 5)] {
        let w32 = Matrix::from_f32(rows, cols, randn(rows * cols, 1));
        for w in [w32.clone(), w32.to_dtype(DType::F16)] {
            let wv = w.to_f32_vec();
            let x = randn(n * cols, 2);
            let mut out = vec![0.0; n * rows];
            matmul(&w, &x, n, &mut out);
            for t in 0..n {
                let mut one = vec![0.0; rows];
                matvec(&w, &x[t * cols..(t + 1) * cols], &mut one);
                for r in 0..rows {
                    let exact: f64 = (0..cols).map(|c| wv[r * cols + c] as f64 * x[t * cols + c] as f64).sum();
                    let tol = 1e-4 * (cols as f64).sqrt();
                    assert!((out[t * rows + r] as f64 - exact).abs() < tol, "matmul {rows}x{cols} t={t} r={r}");
                    assert!((one[r] as f64 - exact).abs() < tol, "matvec {rows}x{cols} r={r}");
                }
            }
        }
    }
}

#[test]
fn par_map_keeps_order() {
    assert_eq!(par_map(1000, |i| i * 2), (0..1000).map(|i| i * 2).collect::<Vec<_>>());
}
