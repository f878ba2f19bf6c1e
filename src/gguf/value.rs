//! Metadata values of a GGUF file, borrowed from its bytes.

use super::read::Cursor;
use super::ValueType;

/// A metadata value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(&'a str),
    Array(Array<'a>),
}

/// An array value, still in the file's bytes (element type, count, elements), so that
/// reading a file allocates nothing per element; [`Array::iter`] decodes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Array<'a> {
    bytes: &'a [u8],
}

impl<'a> Value<'a> {
    /// An integer of any type, widened so that every one fits.
    fn as_i128(&self) -> Option<i128> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::I8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::U64(v) => Some(v.into()),
            Value::I64(v) => Some(v.into()),
            _ => None,
        }
    }

    /// An integer of any type, if it is not negative.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// An integer of any type, if it fits in an i32.
    pub fn as_i32(&self) -> Option<i32> {
        self.as_i128().and_then(|v| i32::try_from(v).ok())
    }

    /// A float of either width (f64 rounded to f32).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Value::F32(v) => Some(v),
            Value::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            Value::Str(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<Array<'a>> {
        match *self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }

    /// The value's type in words, for error messages.
    pub(super) fn describe(&self) -> String {
        match self {
            Value::Str(_) => "a string".into(),
            Value::Array(a) => format!("an array of {} {:?} values", a.len(), a.ty()),
            other => format!("{other:?}"),
        }
    }
}

impl<'a> Array<'a> {
    /// `bytes`: an array as the file holds it, already checked.
    pub(super) fn new(bytes: &'a [u8]) -> Array<'a> {
        Array { bytes }
    }

    /// The elements' type.
    pub fn ty(&self) -> ValueType {
        let id = u32::from_le_bytes(self.bytes[..4].try_into().expect("an array starts with its type"));
        ValueType::from_id(id).expect("checked when the file was read")
    }

    pub fn len(&self) -> usize {
        u64::from_le_bytes(self.bytes[4..12].try_into().expect("an array's type is followed by its count")) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements, decoded one at a time.
    pub fn iter(&self) -> impl Iterator<Item = Value<'a>> + 'a {
        let ty = self.ty() as u32;
        let mut cursor = Cursor { bytes: self.bytes, pos: 12 };
        (0..self.len()).map(move |_| cursor.value(ty, 0).expect("checked when the file was read"))
    }
}
