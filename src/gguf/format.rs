//! The GGUF format's constants, value types and tensor types: what the reader and
//! the export share.

use crate::quant::Format;

pub const MAGIC: &[u8; 4] = b"GGUF";
/// The versions this crate reads: 2 and 3 differ only in big-endian support, which
/// version 1 (32-bit counts and lengths) predates.
pub const READ_VERSIONS: [u32; 2] = [2, 3];
/// The tensor data alignment when `general.alignment` does not say.
pub const DEFAULT_ALIGNMENT: usize = 32;

/// A metadata value's type id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        [U8, I8, U16, I16, U32, I32, F32, Bool, String, Array, U64, I64, F64].get(id as usize).copied()
    }

    /// Bytes of a value of this type, for the types of a fixed size.
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// The fewest bytes a value of this type takes: a string's length field, an
    /// array's element type and count. Checking a count against it before allocating
    /// keeps a huge count from allocating more than the file holds.
    pub fn min_size(self) -> usize {
        match self {
            ValueType::String => 8,
            ValueType::Array => 12,
            fixed => fixed.fixed_size().expect("every other type has a fixed size"),
        }
    }
}

/// A tensor type (ggml's `ggml_type`): its id in the file, name and storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorType(pub u32);

impl TensorType {
    pub const F32: TensorType = TensorType(0);
    pub const F16: TensorType = TensorType(1);
    pub const Q4_0: TensorType = TensorType(2);
    pub const Q4_1: TensorType = TensorType(3);
    pub const Q5_0: TensorType = TensorType(6);
    pub const Q8_0: TensorType = TensorType(8);
    pub const Q4_K: TensorType = TensorType(12);
    pub const Q6_K: TensorType = TensorType(14);
    pub const BF16: TensorType = TensorType(30);

    /// Names by id; ids 4, 5, 31-33 and 36-38 belonged to types ggml has removed.
    const NAMES: [(u32, &'static str); 34] = [
        (0, "F32"),
        (1, "F16"),
        (2, "Q4_0"),
        (3, "Q4_1"),
        (6, "Q5_0"),
        (7, "Q5_1"),
        (8, "Q8_0"),
        (9, "Q8_1"),
        (10, "Q2_K"),
        (11, "Q3_K"),
        (12, "Q4_K"),
        (13, "Q5_K"),
        (14, "Q6_K"),
        (15, "Q8_K"),
        (16, "IQ2_XXS"),
        (17, "IQ2_XS"),
        (18, "IQ3_XXS"),
        (19, "IQ1_S"),
        (20, "IQ4_NL"),
        (21, "IQ3_S"),
        (22, "IQ2_S"),
        (23, "IQ4_XS"),
        (24, "I8"),
        (25, "I16"),
        (26, "I32"),
        (27, "I64"),
        (28, "F64"),
        (29, "IQ1_M"),
        (30, "BF16"),
        (34, "TQ1_0"),
        (35, "TQ2_0"),
        (39, "MXFP4"),
        (40, "NVFP4"),
        (41, "Q1_0"),
    ];

    /// The type's name ("Q4_1"), or None for an id ggml does not define.
    pub fn name(self) -> Option<&'static str> {
        Self::NAMES.iter().find(|(id, _)| *id == self.0).map(|(_, name)| *name)
    }

    /// (elements per block, bytes per block) for the types this crate reads (see
    /// [`Format`]): a row's length must be a multiple of the block, and its bytes are
    /// blocks x bytes.
    pub fn block(self) -> Option<(usize, usize)> {
        self.format().map(|f| (f.block_weights(), f.block_bytes()))
    }

    /// The weight format of this type, if this crate reads it.
    pub fn format(self) -> Option<Format> {
        Format::from_ggml_type(self.0)
    }
}

impl std::fmt::Display for TensorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "type id {}", self.0),
        }
    }
}

/// `tokenizer.ggml.token_type`: what each token of the vocabulary is.
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    /// BOS, EOS, chat markers: never produced from plain text by the BPE merges.
    pub const CONTROL: i32 = 3;
    /// Added by the model's authors: matched whole in text, like control tokens.
    pub const USER_DEFINED: i32 = 4;
    pub const UNUSED: i32 = 5;
    pub const BYTE: i32 = 6;
}
