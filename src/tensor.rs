//! Weight matrices as the engine keeps them in memory: row-major (out x in), f32 or f16,
//! or rows in a GGUF format's bytes (block-quantized weights stay quantized, see
//! [`crate::quant`]), in [`Shared`] storage so that copies of a model share their weights.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use half::f16;

use crate::error::{GqaError, Result};
use crate::quant::{self, Format};

/// Weights that copies of a model share instead of duplicating: cloning is a
/// reference count, so a session's base model, its engine's model and every
/// conversion of it (which replaces only wk and wv) hold one copy of each tensor.
/// Writing through `&mut` copies the tensor first if it is shared
/// ([`Arc::make_mut`]): a shared tensor never changes under another model.
#[derive(Clone, Debug, PartialEq)]
pub struct Shared<T: Clone>(Arc<T>);

impl<T: Clone> Shared<T> {
    pub fn new(value: T) -> Shared<T> {
        Shared(Arc::new(value))
    }

    /// Whether `a` and `b` are the same tensor in memory (not merely equal).
    pub fn ptr_eq(a: &Shared<T>, b: &Shared<T>) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl<T: Clone> From<T> for Shared<T> {
    fn from(value: T) -> Shared<T> {
        Shared::new(value)
    }
}

impl<T: Clone> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone> DerefMut for Shared<T> {
    fn deref_mut(&mut self) -> &mut T {
        Arc::make_mut(&mut self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
        }
    }

    pub fn parse(s: &str) -> Option<DType> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Some(DType::F32),
            "f16" | "float16" => Some(DType::F16),
            _ => None,
        }
    }
}

/// The KV cache's precision: f32, f16, or int8 with one f32 scale per position and
/// head (symmetric: a head's keys, or values, at one position are `scale * q` with q in
/// -127..=127 and `scale = max |x| / 127`). Keys and values each take
/// [`KvDType::vector_bytes`] per head and position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvDType {
    F32,
    F16,
    I8,
}

impl KvDType {
    pub const ALL: [KvDType; 3] = [KvDType::F32, KvDType::F16, KvDType::I8];

    /// Bytes of one head's keys (or values) at one position: head_dim elements, and
    /// int8's scale.
    pub fn vector_bytes(self, head_dim: usize) -> usize {
        match self {
            KvDType::F32 => 4 * head_dim,
            KvDType::F16 => 2 * head_dim,
            KvDType::I8 => head_dim + 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            KvDType::F32 => "f32",
            KvDType::F16 => "f16",
            KvDType::I8 => "int8",
        }
    }

    pub fn parse(s: &str) -> Option<KvDType> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Some(KvDType::F32),
            "f16" | "float16" => Some(KvDType::F16),
            "int8" | "i8" | "q8" => Some(KvDType::I8),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Shared<Vec<f32>>),
    F16(Shared<Vec<f16>>),
    /// Rows in `format`'s bytes, one after another (each a whole number of
    /// blocks), as a GGUF file holds them; any alignment.
    Quantized { format: Format, bytes: Shared<Vec<u8>> },
}

/// A weight matrix of `rows` outputs by `cols` inputs (PyTorch `nn.Linear` layout).
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Data,
}

impl Matrix {
    pub fn from_f32(rows: usize, cols: usize, data: Vec<f32>) -> Matrix {
        assert_eq!(data.len(), rows * cols, "matrix data length");
        Matrix { rows, cols, data: Data::F32(data.into()) }
    }

    /// `rows` rows of `cols` weights in `format`'s bytes (a GGUF tensor's data).
    pub fn quantized(rows: usize, cols: usize, format: Format, bytes: Vec<u8>) -> Result<Matrix> {
        let row = format.row_bytes(cols).ok_or_else(|| {
            GqaError::Invalid(format!("a {} row of {cols} weights is not a whole number of {}-weight blocks", format.name(), format.block_weights()))
        })?;
        if bytes.len() != rows * row {
            return Err(GqaError::Invalid(format!("{rows} {} rows of {cols} weights take {} bytes, not {}", format.name(), rows * row, bytes.len())));
        }
        Ok(Matrix { rows, cols, data: Data::Quantized { format, bytes: bytes.into() } })
    }

    /// The type the matrix computes in: a quantized matrix's rows dequantize to
    /// f32, and it reports F32 (its storage is [`Matrix::format`]).
    pub fn dtype(&self) -> DType {
        match self.data {
            Data::F32(_) | Data::Quantized { .. } => DType::F32,
            Data::F16(_) => DType::F16,
        }
    }

    /// How the weights are stored, as a GGUF tensor type.
    pub fn format(&self) -> Format {
        match self.data {
            Data::F32(_) => Format::F32,
            Data::F16(_) => Format::F16,
            Data::Quantized { format, .. } => format,
        }
    }

    /// Bytes the weights take in memory.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Data::Quantized { bytes, .. } => bytes.len(),
            _ => self.rows * self.cols * self.dtype().size(),
        }
    }

    /// Copy row `r` into `out` as f32.
    pub fn row_into(&self, r: usize, out: &mut [f32]) {
        let range = r * self.cols..(r + 1) * self.cols;
        match &self.data {
            Data::F32(d) => out.copy_from_slice(&d[range]),
            Data::F16(d) => crate::kernels::f16_to_f32(&d[range], out),
            Data::Quantized { format, bytes } => {
                let row = format.row_bytes(self.cols).expect("whole blocks (checked when built)");
                quant::dequantize(*format, &bytes[r * row..(r + 1) * row], out)
            }
        }
    }

    /// All values as f32 (a copy).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            Data::F32(d) => d.to_vec(),
            Data::F16(d) => d.iter().map(|v| v.to_f32()).collect(),
            Data::Quantized { format, bytes } => {
                let mut out = vec![0.0; self.rows * self.cols];
                quant::dequantize(*format, bytes, &mut out);
                out
            }
        }
    }

    /// The same values stored as `dtype` (f16 rounds to nearest); the same dtype
    /// shares the data. A quantized matrix is dequantized (never shared).
    pub fn to_dtype(&self, dtype: DType) -> Matrix {
        let data = match (dtype, &self.data) {
            (DType::F32, Data::F32(_)) | (DType::F16, Data::F16(_)) => self.data.clone(),
            (DType::F32, Data::F16(_) | Data::Quantized { .. }) => Data::F32(self.to_f32_vec().into()),
            (DType::F16, Data::F32(d)) => Data::F16(d.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>().into()),
            (DType::F16, Data::Quantized { .. }) => Data::F16(self.to_f32_vec().iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>().into()),
        };
        Matrix { rows: self.rows, cols: self.cols, data }
    }

    /// A matrix of the given rows of this one, in that order (a row may repeat). Rows
    /// are copied whole, in the same storage: quantized rows keep their exact bytes.
    pub fn select_rows(&self, rows: impl Iterator<Item = usize>) -> Matrix {
        fn pick<T: Copy>(d: &[T], len: usize, rows: impl Iterator<Item = usize>) -> Vec<T> {
            rows.flat_map(|r| d[r * len..(r + 1) * len].iter().copied()).collect()
        }
        let rows: Vec<usize> = rows.collect();
        let n = rows.len();
        let data = match &self.data {
            Data::F32(d) => Data::F32(pick(d, self.cols, rows.into_iter()).into()),
            Data::F16(d) => Data::F16(pick(d, self.cols, rows.into_iter()).into()),
            Data::Quantized { format, bytes } => {
                let len = format.row_bytes(self.cols).expect("whole blocks (checked when built)");
                Data::Quantized { format: *format, bytes: pick(bytes, len, rows.into_iter()).into() }
            }
        };
        Matrix { rows: n, cols: self.cols, data }
    }

    /// Whether `a` and `b` share their data (see [`Shared`]).
    pub fn shares(a: &Matrix, b: &Matrix) -> bool {
        match (&a.data, &b.data) {
            (Data::F32(x), Data::F32(y)) => Shared::ptr_eq(x, y),
            (Data::F16(x), Data::F16(y)) => Shared::ptr_eq(x, y),
            (Data::Quantized { bytes: x, .. }, Data::Quantized { bytes: y, .. }) => Shared::ptr_eq(x, y),
            _ => false,
        }
    }

    /// A matrix of the same dtype built from f32 values.
    pub fn like(&self, rows: usize, cols: usize, values: Vec<f32>) -> Matrix {
        Matrix::from_f32(rows, cols, values).to_dtype(self.dtype())
    }
}
