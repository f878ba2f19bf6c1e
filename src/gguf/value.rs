//! Metadata values of a GGUF file, borrowed from its bytes.

use super::cursor::{bad, Cursor};
use super::format::ValueType;
use crate::error::Result;

/// Arrays nested deeper than this are refused: real files nest at most once, and a
/// file of nested one-element arrays must not overflow the stack.
const MAX_NESTING: usize = 16;

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
    /// A value of type `type_id`, inside `depth` arrays.
    pub(super) fn read(c: &mut Cursor<'a>, type_id: u32, depth: usize) -> Result<Value<'a>> {
        let ty = ValueType::from_id(type_id).ok_or_else(|| bad(format!("value type {type_id} is not a GGUF value type")))?;
        Ok(match ty {
            ValueType::U8 => Value::U8(u8::from_le_bytes(c.array()?)),
            ValueType::I8 => Value::I8(i8::from_le_bytes(c.array()?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(c.array()?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(c.array()?)),
            ValueType::U32 => Value::U32(c.u32()?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(c.array()?)),
            ValueType::U64 => Value::U64(c.u64()?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(c.array()?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(c.array()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(c.array()?)),
            ValueType::Bool => match c.array::<1>()?[0] {
                byte @ (0 | 1) => Value::Bool(byte == 1),
                byte => return Err(bad(format!("a bool at byte {} is {byte}, not 0 or 1", c.pos - 1))),
            },
            ValueType::String => Value::Str(c.string()?),
            ValueType::Array => {
                if depth == MAX_NESTING {
                    return Err(bad(format!("arrays are nested more than {MAX_NESTING} deep")));
                }
                let start = c.pos;
                let element_type = c.u32()?;
                let min_size = ValueType::from_id(element_type)
                    .ok_or_else(|| bad(format!("array element type {element_type} is not a GGUF value type")))?
                    .min_size();
                let count = c.u64()?;
                // Decoding each element checks it (a bool, a string's UTF-8, a nested
                // array), so that `Array::iter` cannot fail later.
                for _ in 0..c.check_count(count, min_size, "array elements")? {
                    Value::read(c, element_type, depth + 1)?;
                }
                Value::Array(Array::new(&c.bytes[start..c.pos]))
            }
        })
    }

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
        (0..self.len()).map(move |_| Value::read(&mut cursor, ty, 0).expect("checked when the file was read"))
    }
}
