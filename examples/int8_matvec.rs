//! Times one quantized mat-vec on one thread, exact (f32 activations) against
//! int8 activations, for SmolLM2-135M's shapes: a 1536 x 576 block matrix
//! (gate/up, Q4_1 in the real model; every block format is timed) and the
//! 49152 x 576 Q8_0 token embedding / output head.
//!
//!   cargo run --release --example int8_matvec [FORMAT | MODEL.gguf]
//!
//! Weights are random bytes with sane block scales (speed does not depend on
//! the values), or, given a GGUF file, its `blk.0.ffn_up.weight` and
//! `token_embd.weight`; each case prints ns per row and GB/s of weight bytes
//! read, and the int8 result's rms error relative to the exact one's rms.

use std::hint::black_box;
use std::time::Instant;

use gqa::gguf::Gguf;
use gqa::kernels::{rows_dot_int8, rows_dot_quant, simd_name, Int8Rows};
use gqa::quant::Format;

/// Random blocks of `format` whose f16 fields (scales, mins) hold 0.01.
fn random_rows(format: Format, rows: usize, cols: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut bytes: Vec<u8> = (0..rows * format.row_bytes(cols).unwrap())
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let fields: &[usize] = match format {
        Format::Q4_1 | Format::Q4_K => &[0, 2],
        Format::Q6_K => &[208],
        _ => &[0],
    };
    let scale = half::f16::from_f32(0.01).to_bits().to_le_bytes();
    for block in bytes.chunks_exact_mut(format.block_bytes()) {
        for &at in fields {
            block[at..at + 2].copy_from_slice(&scale);
        }
    }
    bytes
}

/// Seconds per call of `f`, the best of 5 runs of about 0.2 s each.
fn time(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut calls = 0;
    while start.elapsed().as_secs_f64() < 0.05 {
        f();
        calls += 1;
    }
    let calls = (calls * 4).max(1);
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                f();
            }
            start.elapsed().as_secs_f64() / calls as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    println!("{} (one thread)", simd_name());
    println!("{:<6} {:>12} {:>14} {:>14} {:>9} {:>9} {:>7} {:>8}", "format", "rows x cols", "exact ns/row", "int8 ns/row", "exact GB/s", "int8 GB/s", "speedup", "rel err");
    let arg = std::env::args().nth(1);
    if let Some(path) = arg.as_ref().filter(|a| a.ends_with(".gguf")) {
        let file = std::fs::read(path).expect("read the GGUF file");
        let g = Gguf::read(&file).expect("a GGUF file");
        for name in ["blk.0.ffn_up.weight", "token_embd.weight"] {
            let t = g.tensor(name).expect("a llama tensor");
            run(t.ty.format().expect("a known format"), t.dims[1], t.dims[0], t.bytes);
        }
        return;
    }
    let cases = [Format::Q4_0, Format::Q4_1, Format::Q5_0, Format::Q8_0, Format::Q4_K, Format::Q6_K].map(|f| (f, 1536, 576));
    for (format, rows, cols) in cases.into_iter().chain([(Format::Q8_0, 49152, 576)]) {
        if arg.as_ref().is_some_and(|name| name != format.name()) {
            continue;
        }
        // K-quant rows are whole super-blocks of 256: 576 is not.
        let cols = if format.block_weights() == 256 { 512 } else { cols };
        run(format, rows, cols, &random_rows(format, rows, cols));
    }
}

/// Time both paths on `rows` rows of `cols` weights `w` and print a line.
fn run(format: Format, rows: usize, cols: usize, w: &[u8]) {
    let x: Vec<f32> = (0..cols).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
    let (mut exact_out, mut int8_out) = (vec![0.0; rows], vec![0.0; rows]);
    let mut xq = Int8Rows::default();
    let exact = time(|| rows_dot_quant(format, black_box(w), cols, black_box(&x), &mut exact_out));
    // The int8 path's time includes quantizing x, once per mat-vec.
    let int8 = time(|| {
        xq.quantize(black_box(&x), cols);
        rows_dot_int8(format, black_box(w), cols, xq.row(0), &mut int8_out)
    });
    let rms = |v: &mut dyn Iterator<Item = f32>| (v.map(|x| (x as f64).powi(2)).sum::<f64>() / rows as f64).sqrt();
    let err = rms(&mut exact_out.iter().zip(&int8_out).map(|(a, b)| a - b)) / rms(&mut exact_out.iter().copied());
    let gbs = |s: f64| w.len() as f64 / s / 1e9;
    let (shape, per_row) = (format!("{rows}x{cols}"), |s: f64| s * 1e9 / rows as f64);
    println!(
        "{:<6} {shape:>12} {:>14.1} {:>14.1} {:>9.1} {:>9.1} {:>6.2}x {err:>8.1e}",
        format.name(),
        per_row(exact),
        per_row(int8),
        gbs(exact),
        gbs(int8),
        exact / int8
    );
}
