//! Weight matrices on the GPU: rows padded to a multiple of 8 columns (so matvec can
//! load vec4<u32> = 4 f32 or 8 f16), f16 packed two per u32 (element 2i in the low
//! half, as unpack2x16float expects), and split by rows into parts that each fit
//! one storage binding and one dispatch.

use super::context::GpuContext;
use super::memory::{Allocator, GpuBuffer};
use crate::error::{GqaError, Result};
use crate::tensor::{DType, Data, Matrix};

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
    pub dtype: DType,
    pub parts: Vec<Part>,
}

impl GpuMatrix {
    /// u32 words per (padded) row.
    pub fn row_u32s(&self) -> usize {
        match self.dtype {
            DType::F32 => pad_cols(self.cols),
            DType::F16 => pad_cols(self.cols) / 2,
        }
    }

    /// Upload `m` (`name` is used in errors and labels).
    pub fn upload(ctx: &GpuContext, alloc: &Allocator, name: &str, m: &Matrix) -> Result<GpuMatrix> {
        let mut out = GpuMatrix { rows: m.rows, cols: m.cols, dtype: m.dtype(), parts: Vec::new() };
        let row_bytes = out.row_u32s() * 4;
        let max_binding = ctx.max_binding();
        if row_bytes as u64 > max_binding {
            return Err(GqaError::Backend(format!(
                "tensor '{name}': one row is {row_bytes} bytes, more than this GPU's max storage buffer binding of {max_binding} bytes"
            )));
        }
        let rows_per_part = ((max_binding / row_bytes as u64) as usize).clamp(1, MAX_ROWS_PER_DISPATCH);
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
    let mut out = Vec::with_capacity(rows * cols_pad * m.dtype().size());
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
            Data::Quantized { .. } => {
                // Dequantized: the shaders read f32 (the matrix's dtype).
                let mut row = vec![0.0; m.cols];
                m.row_into(r, &mut row);
                out.extend(row.iter().flat_map(|v| v.to_le_bytes()));
                out.resize(out.len() + (cols_pad - m.cols) * 4, 0);
            }
        }
    }
    out
}

/// An f32 vector as bytes.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    bytemuck::cast_slice(values).to_vec()
}
