//! Weight matrices on the GPU, in their storage format, decoded by the kernels
//! (shaders/quant.wgsl), and split by rows into parts that each fit one storage
//! binding and one dispatch:
//!
//! - f32, f16 and bf16: rows padded to a multiple of 8 columns (so one 8-weight chunk
//!   is one or two aligned vec4<u32>), 16-bit values two per u32 (element 2i in the
//!   low half, as unpack2x16float expects);
//! - block formats (Q4_0, Q4_1, Q5_0, Q8_0, Q4_K, Q6_K): the GGUF rows' bytes as they
//!   are, back to back (blocks need not be 4-byte aligned), a part padded to 16 bytes.

use super::context::GpuContext;
use super::memory::{Allocator, GpuBuffer};
use crate::error::{GqaError, Result};
use crate::quant::Format;
use crate::tensor::{Data, Matrix};

/// Columns are padded to a multiple of this (8 f16 = one vec4<u32>).
pub const COL_ALIGN: usize = 8;

/// Rows one matvec dispatch covers at most: 65535 workgroups of 8 rows.
const MAX_ROWS_PER_DISPATCH: usize = 65535 * 8;

pub fn pad_cols(n: usize) -> usize {
    n.div_ceil(COL_ALIGN) * COL_ALIGN
}

/// Rows row0 .. row0 + rows of a matrix, in one buffer.
pub struct Part {
    pub buffer: GpuBuffer,
    pub row0: usize,
    pub rows: usize,
}

pub struct GpuMatrix {
    pub rows: usize,
    pub cols: usize,
    /// How the weights are stored (quant.wgsl's FORMAT).
    pub format: Format,
    /// Bytes per row on the GPU (`gpu_row_bytes`).
    pub row_bytes: usize,
    pub parts: Vec<Part>,
}

/// Bytes per row of `cols` weights in `format` as uploaded: padded to 8 columns for
/// the one-weight formats, the GGUF row otherwise.
pub fn gpu_row_bytes(format: Format, cols: usize) -> Result<usize> {
    if format.block_weights() == 1 {
        return Ok(pad_cols(cols) * format.block_bytes());
    }
    format.row_bytes(cols).ok_or_else(|| {
        GqaError::Invalid(format!("a {} row of {cols} weights is not a whole number of blocks", format.name()))
    })
}

impl GpuMatrix {
    /// Upload `m` (`name` is used in errors and labels).
    pub fn upload(ctx: &GpuContext, alloc: &Allocator, name: &str, m: &Matrix) -> Result<GpuMatrix> {
        let (format, row_bytes) = (m.format(), gpu_row_bytes(m.format(), m.cols)?);
        let mut out = GpuMatrix { rows: m.rows, cols: m.cols, format, row_bytes, parts: Vec::new() };
        let max_binding = ctx.max_binding();
        // A part's buffer is rounded up to 16 bytes (memory.rs), and the shaders
        // address it by byte in a u32.
        let part_limit = (max_binding.min(u32::MAX as u64) / 16 * 16) as usize;
        if row_bytes.div_ceil(16) * 16 > part_limit {
            return Err(GqaError::Backend(format!(
                "tensor '{name}': one row is {row_bytes} bytes, more than this GPU's max storage buffer binding of {max_binding} bytes"
            )));
        }
        let rows_per_part = (part_limit / row_bytes).clamp(1, MAX_ROWS_PER_DISPATCH);
        let mut row0 = 0;
        while row0 < m.rows {
            let rows = rows_per_part.min(m.rows - row0);
            let bytes = pack_rows(m, row0, rows);
            let label = format!("{name}[{row0}..{}]", row0 + rows);
            let buffer = alloc.with_data(&ctx.device, &label, &bytes, wgpu::BufferUsages::STORAGE);
            out.parts.push(Part { buffer, row0, rows });
            row0 += rows;
        }
        Ok(out)
    }

    pub fn bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.buffer.bytes()).sum()
    }
}

/// Rows row0 .. row0 + rows of `m`, padded and packed as the shaders read them.
fn pack_rows(m: &Matrix, row0: usize, rows: usize) -> Vec<u8> {
    let cols_pad = pad_cols(m.cols);
    let gpu_row = gpu_row_bytes(m.format(), m.cols).expect("checked by upload");
    if let Data::Quantized { format, bytes } = &m.data {
        let row = format.row_bytes(m.cols).expect("whole blocks (checked when built)");
        let rows_bytes = &bytes[row0 * row..(row0 + rows) * row];
        if row == gpu_row {
            return rows_bytes.to_vec();
        }
        // One-weight formats: each row padded to a multiple of 8 weights.
        let mut out = Vec::with_capacity(rows * gpu_row);
        for r in rows_bytes.chunks_exact(row) {
            out.extend_from_slice(r);
            out.resize(out.len() + gpu_row - row, 0);
        }
        return out;
    }
    let mut out = Vec::with_capacity(rows * gpu_row);
    for r in row0..row0 + rows {
        let range = r * m.cols..(r + 1) * m.cols;
        match &m.data {
            Data::F32(d) => {
                for &v in &d[range] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out.resize(out.len() + (cols_pad - m.cols) * 4, 0);
            }
            Data::F16(d) => {
                // Little-endian u32 words holding (element 2i, element 2i + 1) in
                // (low, high) halves are the f16 values in order.
                for &v in &d[range] {
                    out.extend_from_slice(&v.to_bits().to_le_bytes());
                }
                out.resize(out.len() + (cols_pad - m.cols) * 2, 0);
            }
            Data::Quantized { .. } => unreachable!("returned above"),
        }
    }
    out
}

/// An f32 vector as bytes.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    bytemuck::cast_slice(values).to_vec()
}
