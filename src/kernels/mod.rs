//! The CPU engine's inner loops, in layers:
//!
//! - [`simd`]: the bottom layer, dependency-free: the vector trait [`Lanes`], one
//!   module per instruction set (AVX-512, AVX2, wasm simd128, plain arrays), the
//!   element types and their conversion ([`Elem`]), and [`simd::dispatch`], the
//!   one place that picks an instruction set.
//! - the kernel families, each a body written once over `Lanes` and a public
//!   entry point that dispatches it: [`dot`] (row dot products), [`attention`]
//!   (scores and weighted values over a cache block), [`exp`] (softmax
//!   numerators, SwiGLU's gate), [`convert`] (f16 slices to f32),
//!   [`quant_dot`] (row dot products on GGUF block-quantized rows), and
//!   [`quant_dot_int8`], the same against activations quantized to int8
//!   ([`int8_acts`]), llama.cpp's faster way;
//! - [`threads`]: the thread pool, apart from the arithmetic.
//!
//! The matrix products on model weights (`crate::matmul`) sit above these and
//! above `crate::tensor`.

pub mod attention;
pub mod convert;
pub mod dot;
pub mod exp;
pub mod int8_acts;
pub mod quant_dot;
pub mod quant_dot_int8;
pub mod simd;
pub mod threads;

pub use attention::{attention_scores, attention_values, Rows};
pub use convert::f16_to_f32;
pub use dot::{axpy, rows_dot_slice};
pub use exp::{softmax_numerators, swiglu_gate};
pub use int8_acts::{Int8Row, Int8Rows};
pub use quant_dot::rows_dot_quant;
pub use quant_dot_int8::rows_dot_int8;
pub use simd::{Elem, Lanes};
pub use threads::{for_chunks, on_pool, threads};

/// Which SIMD flavour this machine runs, in words.
pub fn simd_name() -> &'static str {
    simd::Isa::best().name()
}

/// Normal random numbers for the kernels' tests.
#[cfg(test)]
pub(crate) fn randn(n: usize, seed: u64) -> Vec<f32> {
    let mut r = crate::rng::Rng::new(seed);
    (0..n).map(|_| r.normal()).collect()
}
