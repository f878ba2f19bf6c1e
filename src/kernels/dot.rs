//! Row dot products: `out[i] = row i of W . x` over consecutive rows of a
//! row-major f32 or f16 matrix, the inner loop of every matrix-vector product.
//!
//! Decoding is bound by memory bandwidth, so the kernel streams each weight row
//! once, four rows per activation load, converts f16 to f32 in registers, and
//! keeps several accumulators in flight.

use super::simd::{dispatch, Elem, Kernel, Lanes};

/// `out[i] = w[i * cols..][..cols] . x` for each i: consecutive rows of a
/// row-major f32 or f16 matrix against one vector.
pub fn rows_dot_slice<W: Elem>(w: &[W], cols: usize, x: &[f32], out: &mut [f32]) {
    assert!(x.len() >= cols && w.len() >= out.len() * cols, "rows_dot shapes");
    dispatch(RowsDot { w, cols, x, out })
}

/// `y += a * x`.
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    // Simple enough that the compiler vectorizes it for every target.
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// [`rows_dot_slice`]'s arguments.
struct RowsDot<'a, W> {
    w: &'a [W],
    cols: usize,
    x: &'a [f32],
    out: &'a mut [f32],
}

impl<W: Elem> Kernel for RowsDot<'_, W> {
    type Output = ();
    #[inline(always)]
    fn run<V: Lanes>(self) {
        rows_dot::<V, W>(self.w, self.cols, self.x, self.out)
    }
}

/// `out[i] = w[i * cols..][..cols] . x`: four rows at a time, then one;
/// each row summed in the same order either way (the result does not
/// depend on how rows are split into tasks).
#[inline(always)]
fn rows_dot<V: Lanes, W: Elem>(w: &[W], cols: usize, x: &[f32], out: &mut [f32]) {
    let done = out.len() / 4 * 4;
    let mut blocks = out.chunks_exact_mut(4);
    for (i, o) in (&mut blocks).enumerate() {
        let (w, o) = (&w[i * 4 * cols..], o.try_into().unwrap());
        match V::UNROLL {
            2 => rows_dot_block::<V, W, 4, 2>(w, cols, x, o),
            _ => rows_dot_block::<V, W, 4, 1>(w, cols, x, o),
        }
    }
    for (i, o) in blocks.into_remainder().iter_mut().enumerate() {
        let (w, o) = (&w[(done + i) * cols..], std::slice::from_mut(o).try_into().unwrap());
        match V::UNROLL {
            2 => rows_dot_block::<V, W, 1, 2>(w, cols, x, o),
            _ => rows_dot_block::<V, W, 1, 1>(w, cols, x, o),
        }
    }
}

/// `out[i] = row i of w . x` for R rows at once, A accumulators per row:
/// each x vector loaded serves R rows, and R x A independent multiply-adds
/// are in flight. The next block's rows are asked for while this one is
/// read (a hint, never faults): rows are streamed once, and the hardware
/// prefetcher alone leaves the core waiting.
#[inline(always)]
fn rows_dot_block<V: Lanes, W: Elem, const R: usize, const A: usize>(w: &[W], cols: usize, x: &[f32], out: &mut [f32; R]) {
    assert!(w.len() >= R * cols && x.len() >= cols);
    let (pw, px) = (w.as_ptr(), x.as_ptr());
    let step = A * V::N;
    let (steps, vectors) = (cols / step * step, cols / V::N * V::N);
    let line = 64 / std::mem::size_of::<W>(); // weights per cache line
    let mut acc = [[V::zero(); A]; R];
    for c in (0..steps).step_by(step) {
        if c % line == 0 {
            for r in 0..R {
                // The same line of the row R rows on: the next block's.
                V::prefetch(pw.wrapping_add((r + R) * cols + c) as *const u8);
            }
        }
        for a in 0..A {
            // SAFETY: c + (a + 1) * N <= cols, within x and within each of the R rows.
            let xv = unsafe { V::load(px.add(c + a * V::N)) };
            for (r, acc) in acc.iter_mut().enumerate() {
                acc[a] = unsafe { W::load::<V>(pw.add(r * cols + c + a * V::N)) }.mul_add(xv, acc[a]);
            }
        }
    }
    for c in (steps..vectors).step_by(V::N) {
        // SAFETY: c + N <= cols, as above.
        let xv = unsafe { V::load(px.add(c)) };
        for (r, acc) in acc.iter_mut().enumerate() {
            acc[0] = unsafe { W::load::<V>(pw.add(r * cols + c)) }.mul_add(xv, acc[0]);
        }
    }
    for (r, (acc, o)) in acc.iter().zip(out.iter_mut()).enumerate() {
        let tail: f32 = (vectors..cols).map(|c| w[r * cols + c].to_f32() * x[c]).sum();
        *o = acc.iter().map(|a| a.sum()).sum::<f32>() + tail;
    }
}

/// Row dots against plain f64 loops, on lengths that exercise every tail, on
/// every instruction set this machine has.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::randn;
    use crate::kernels::simd::{run_on, Isa};
    use half::f16;

    /// One row (f32 or f16) dotted with x, by the row kernel on `isa`.
    fn dot<W: Elem>(isa: Isa, w: &[W], x: &[f32]) -> f32 {
        let mut out = [0.0];
        run_on(isa, RowsDot { w, cols: w.len(), x, out: &mut out });
        out[0]
    }

    #[test]
    fn dot_matches_f64_for_all_tail_lengths() {
        for isa in Isa::all_available() {
            for n in [0, 1, 3, 7, 8, 9, 15, 16, 31, 32, 33, 63, 64, 100, 257, 1000] {
                let a = randn(n, n as u64);
                let b = randn(n, n as u64 + 100);
                let tol = 1e-4 * (1.0 + n as f64).sqrt();
                let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
                let got = dot(isa, &a, &b) as f64;
                assert!((got - exact).abs() < tol, "{isa:?} n={n}: {got} vs {exact}");

                let h: Vec<f16> = a.iter().map(|&v| f16::from_f32(v)).collect();
                let exact_h: f64 = h.iter().zip(&b).map(|(x, y)| x.to_f64() * *y as f64).sum();
                let got_h = dot(isa, &h, &b) as f64;
                assert!((got_h - exact_h).abs() < tol, "{isa:?} f16 n={n}: {got_h} vs {exact_h}");
            }
            // The dispatched entry point is the best of these.
            let (a, b) = (randn(100, 1), randn(100, 2));
            let mut out = [0.0];
            rows_dot_slice(&a, 100, &b, &mut out);
            assert_eq!(out[0], dot(Isa::best(), &a, &b));
        }
    }

    #[test]
    fn f16_subnormals_and_signs_convert_exactly() {
        // Values around the f16 subnormal range, both signs.
        let vals: Vec<f16> = [0.0f32, -0.0, 1.0, -2.5, 6.0e-8, -6.0e-8, 3.0e-5, -6.1e-5, 65504.0, -0.333]
            .iter()
            .map(|&v| f16::from_f32(v))
            .collect();
        for isa in Isa::all_available() {
            for (i, v) in vals.iter().enumerate() {
                let mut x = vec![0.0f32; 16];
                let mut w = vec![f16::ZERO; 16];
                x[i] = 1.0;
                w[i] = *v;
                assert_eq!(dot(isa, &w, &x), v.to_f32(), "{isa:?} value {v}");
            }
        }
    }
}
