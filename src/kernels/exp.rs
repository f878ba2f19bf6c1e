//! Kernels built on a vectorized exp: softmax numerators (attention) and
//! SwiGLU's gate (the feed-forward).

use super::simd::{dispatch, Kernel, Lanes};

/// Softmax numerators in place: x = exp(x - max(x)); returns (max(x), sum of
/// the new x). Vectorized exp (a fitted polynomial, relative error about 1e-7).
pub fn softmax_numerators(x: &mut [f32]) -> (f32, f32) {
    dispatch(SoftmaxNumerators(x))
}

/// SwiGLU's gate in place: `g = silu(g) * u`, where silu(x) = x / (1 + exp(-x)).
/// Vectorized with softmax's exp: libm's scalar `expf`, once per feed-forward
/// unit and token, stood out in the decode step's profile.
pub fn swiglu_gate(g: &mut [f32], u: &[f32]) {
    assert_eq!(g.len(), u.len(), "gate and up lengths");
    dispatch(SwigluGate { g, u })
}

struct SoftmaxNumerators<'a>(&'a mut [f32]);

impl Kernel for SoftmaxNumerators<'_> {
    type Output = (f32, f32);
    /// The body of [`softmax_numerators`]. A tail shorter than a vector goes
    /// through the same vector code, padded. The rows are short (one attention
    /// chunk, a few vectors), so both passes keep several independent chains in
    /// flight: the max in four, the exponentials two at a time.
    #[inline(always)]
    fn run<V: Lanes>(self) -> (f32, f32) {
        let x = self.0;
        let n = V::N;
        let (full, quads, pairs) = (x.len() / n * n, x.len() / (4 * n) * (4 * n), x.len() / (2 * n) * (2 * n));
        let mut m = [V::splat(f32::NEG_INFINITY); 4];
        for i in (0..quads).step_by(4 * n) {
            for (j, m) in m.iter_mut().enumerate() {
                // SAFETY: i + (j + 1) * N <= quads <= x.len().
                *m = m.max(unsafe { V::load(x.as_ptr().add(i + j * n)) });
            }
        }
        for i in (quads..full).step_by(n) {
            // SAFETY: i + N <= full <= x.len().
            m[0] = m[0].max(unsafe { V::load(x.as_ptr().add(i)) });
        }
        let m = m[0].max(m[1]).max(m[2].max(m[3]));
        let max = x[full..].iter().fold(m.max_lane(), |a, &b| a.max(b));
        let (neg_max, mut sums) = (V::splat(-max), [V::zero(); 2]);
        for i in (0..pairs).step_by(2 * n) {
            for (j, sum) in sums.iter_mut().enumerate() {
                // SAFETY: i + (j + 1) * N <= pairs <= x.len().
                let e = exp(unsafe { V::load(x.as_ptr().add(i + j * n)) }.add(neg_max));
                e.store(&mut x[i + j * n..]);
                *sum = sum.add(e);
            }
        }
        for i in (pairs..full).step_by(n) {
            // SAFETY: as above.
            let e = exp(unsafe { V::load(x.as_ptr().add(i)) }.add(neg_max));
            e.store(&mut x[i..]);
            sums[0] = sums[0].add(e);
        }
        let sum = sums[0].add(sums[1]);
        let rest = x.len() - full;
        let mut tail = 0.0;
        if rest > 0 {
            let mut padded = [0.0f32; 16];
            padded[..rest].copy_from_slice(&x[full..]);
            // SAFETY: padded holds 16 >= N floats.
            exp(unsafe { V::load(padded.as_ptr()) }.add(neg_max)).store(&mut padded);
            x[full..].copy_from_slice(&padded[..rest]);
            tail = padded[..rest].iter().sum();
        }
        (max, sum.sum() + tail)
    }
}

struct SwigluGate<'a> {
    g: &'a mut [f32],
    u: &'a [f32],
}

impl Kernel for SwigluGate<'_> {
    type Output = ();
    /// The body of [`swiglu_gate`]. exp's argument -g is capped at 87: beyond it
    /// silu(g) is below 1e-35 in magnitude, and exp(87) = 6e37 still divides to that.
    #[inline(always)]
    fn run<V: Lanes>(self) {
        let (g, u) = (self.g, self.u);
        // A function, not a closure: a closure is not inlined into the AVX-512
        // caller, and its intrinsics become calls (several times slower).
        #[inline(always)]
        fn gate<V: Lanes>(g: V, u: V) -> V {
            g.mul(u).div(V::splat(1.0).add(exp(g.max(V::splat(-87.0)).mul(V::splat(-1.0)))))
        }
        let (n, full) = (V::N, g.len() / V::N * V::N);
        for i in (0..full).step_by(n) {
            // SAFETY: i + N <= full <= g.len() = u.len().
            let (gv, uv) = unsafe { (V::load(g.as_ptr().add(i)), V::load(u.as_ptr().add(i))) };
            gate(gv, uv).store(&mut g[i..]);
        }
        let rest = g.len() - full;
        if rest > 0 {
            let (mut pg, mut pu) = ([0.0f32; 16], [0.0f32; 16]);
            pg[..rest].copy_from_slice(&g[full..]);
            pu[..rest].copy_from_slice(&u[full..]);
            // SAFETY: pg and pu hold 16 >= N floats.
            gate(unsafe { V::load(pg.as_ptr()) }, unsafe { V::load(pu.as_ptr()) }).store(&mut pg);
            g[full..].copy_from_slice(&pg[..rest]);
        }
    }
}

/// exp of each lane for x <= 87 (softmax passes x - max <= 0, SwiGLU caps its
/// argument): x = n ln 2 + r with |r| <= ln 2 / 2, exp(r) from a degree-6
/// polynomial, times 2^n built in the exponent bits. Every operation counts
/// here (tens of thousands of exponentials per token at long context, the same
/// for every G), so there is no upper clamp (callers stay below 88, where 2^n
/// would overflow the exponent field), the polynomial is fitted (relative error 8e-8 on
/// the interval, against 2.4e-7 for Taylor's of the same degree), and one sum
/// both rounds x log2(e) to n and holds 2^n: adding 1.5 x 2^23 + 127 leaves no
/// fraction bits, and the mantissa ends in n + 127, the biased exponent of 2^n.
#[inline(always)]
fn exp<V: Lanes>(x: V) -> V {
    const ROUND: f32 = 12_582_912.0 + 127.0; // 1.5 x 2^23 + 127
    // Below -87, 2^n would leave f32's exponent range (exp(-87) = 1.6e-38).
    let x = x.max(V::splat(-87.0));
    let t = x.mul_add(V::splat(std::f32::consts::LOG2_E), V::splat(ROUND));
    let n = t.add(V::splat(-ROUND)); // exact: t is a whole number
    // r = x - n ln 2, ln 2 in two parts so that n x the first is exact.
    let r = n.mul_add(V::splat(-0.693_359_4), x);
    let r = n.mul_add(V::splat(2.121_944_4e-4), r);
    let mut p = V::splat(1.375_140_7e-3);
    for c in [8.368_916e-3, 4.166_953_3e-2, 0.166_665_18, 0.499_999_88, 1.0, 1.0] {
        p = p.mul_add(r, V::splat(c));
    }
    p.mul(t.exponent_from_low_bits())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::randn;
    use crate::kernels::simd::{run_on, Isa};

    /// swiglu_gate (the dispatched kernel and each instruction set's) against f64
    /// g u / (1 + exp(-g)): every length from 0 to 40 (whole vectors and every tail),
    /// gate values over [-200, 200] so that some pass the cap on exp's argument at
    /// -87 and some make exp underflow. Each result within 1e-6 relative (the
    /// polynomial's error is about 1e-7, the division's 6e-8), or within 1e-30
    /// absolute where silu underflows.
    #[test]
    fn swiglu_gate_matches_f64() {
        for len in 0..=40usize {
            let g: Vec<f32> = randn(len, 700 + len as u64).iter().map(|v| v * 100.0).collect();
            let u: Vec<f32> = randn(len, 800 + len as u64);
            let want: Vec<f64> = g.iter().zip(&u).map(|(&g, &u)| g as f64 * u as f64 / (1.0 + (-g as f64).exp())).collect();
            for isa in [None].into_iter().chain(Isa::all_available().into_iter().map(Some)) {
                let name = isa.map_or("dispatched".to_string(), |isa| format!("{isa:?}"));
                let mut got = g.clone();
                match isa {
                    Some(isa) => run_on(isa, SwigluGate { g: &mut got, u: &u }),
                    None => swiglu_gate(&mut got, &u),
                }
                for (i, (&o, &w)) in got.iter().zip(&want).enumerate() {
                    let ok = (o as f64 - w).abs() <= 1e-6 * w.abs() || (w.abs() < 1e-30 && o.abs() < 1e-30);
                    assert!(ok, "{name}: silu(g) u at {i} of {len} (g {}): {o} vs {w}", g[i]);
                }
            }
        }
    }

    /// softmax_numerators (the dispatched kernel and each instruction set's) against f64:
    /// every length from 0 to 40 (whole vectors of 8 and 16 lanes and every tail),
    /// scores spread over [-120, 40] so that some fall below exp's clamp at -87 after
    /// the shift. Each numerator within 1e-6 relative of exp(x - max) (the polynomial's
    /// error is about 1e-7), or within 1e-30 absolute where exp underflows; the max
    /// exactly, and the sum within 1e-6 relative.
    #[test]
    fn softmax_numerators_match_f64() {
        for len in 0..=40usize {
            let x: Vec<f32> = randn(len, 900 + len as u64).iter().map(|v| v * 40.0 - 40.0).collect();
            let max = x.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            // exp of the f32 difference the kernel gets (its rounding is not exp's error).
            let want: Vec<f64> = x.iter().map(|&v| ((v - max) as f64).exp()).collect();
            for isa in [None].into_iter().chain(Isa::all_available().into_iter().map(Some)) {
                let name = isa.map_or("dispatched".to_string(), |isa| format!("{isa:?}"));
                let mut got = x.clone();
                let (m, sum) = match isa {
                    Some(isa) => run_on(isa, SoftmaxNumerators(&mut got)),
                    None => softmax_numerators(&mut got),
                };
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
}
