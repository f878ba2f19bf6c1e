//! Reads a GGUF file (versions 2 and 3) held in memory: the header, the metadata, the
//! tensor infos, and each tensor's bytes as a slice of the file (nothing is copied).
//!
//! The file is untrusted: every count, length, dimension and offset is checked against
//! the bytes really there before it is used, and before anything is allocated in
//! proportion to it, so a damaged or hostile file gives an error that says what is
//! wrong and where, never a panic or a huge allocation.

use super::cursor::{bad, Cursor};
use super::value::{Array, Value};
use super::format::{TensorType, DEFAULT_ALIGNMENT, MAGIC, READ_VERSIONS};
use crate::error::{GqaError, Result};

/// ggml's tensors have at most 4 dimensions.
const MAX_DIMS: u32 = 4;
/// The fewest bytes a metadata entry takes: key length, value type, a 1-byte value.
const MIN_ENTRY: usize = 8 + 4 + 1;
/// The fewest bytes a tensor info takes: name length, n_dims, type, offset.
const MIN_TENSOR_INFO: usize = 8 + 4 + 4 + 8;

/// A parsed GGUF file, borrowing from its bytes.
#[derive(Debug)]
pub struct Gguf<'a> {
    pub version: u32,
    /// Tensor data alignment: `general.alignment`, or 32.
    pub alignment: usize,
    /// In file order.
    metadata: Vec<(&'a str, Value<'a>)>,
    /// Indices into `metadata`, sorted by key (for lookups).
    metadata_by_key: Vec<usize>,
    /// In file order.
    tensors: Vec<TensorInfo<'a>>,
    /// Indices into `tensors`, sorted by name.
    tensors_by_name: Vec<usize>,
}

/// One tensor: its name, shape, type and bytes.
#[derive(Clone, Debug)]
pub struct TensorInfo<'a> {
    pub name: &'a str,
    /// Innermost first, as GGUF lists them: a (rows, cols) matrix is [cols, rows].
    pub dims: Vec<usize>,
    pub ty: TensorType,
    /// Where its bytes start in the data section.
    pub offset: usize,
    /// Its bytes in the file, in the type's layout (blocks of `ty.block()`).
    pub bytes: &'a [u8],
}

impl<'a> Gguf<'a> {
    /// Parses and checks `bytes`, a whole GGUF file.
    pub fn read(bytes: &'a [u8]) -> Result<Gguf<'a>> {
        let mut c = Cursor { bytes, pos: 0 };
        let magic = c.take(4).map_err(|_| bad(format!("the file has {} bytes, too few for a GGUF header", bytes.len())))?;
        if magic != MAGIC {
            return Err(bad(format!("not a GGUF file: it starts with {:?}, not \"GGUF\"", String::from_utf8_lossy(magic))));
        }
        let version = in_context(c.u32(), || "the header".into())?;
        if !READ_VERSIONS.contains(&version) {
            // A big-endian file's version reads as 0x0N000000 here.
            let endian = if version.swap_bytes() <= 3 { " (a big-endian file?)" } else { "" };
            return Err(bad(format!("version {version}{endian} is not supported; this reader reads versions 2 and 3")));
        }
        let n_tensors = in_context(c.u64(), || "the header".into())?;
        let n_entries = in_context(c.u64(), || "the header".into())?;

        let n_entries = c.check_count(n_entries, MIN_ENTRY, "metadata entries")?;
        let mut metadata = Vec::with_capacity(n_entries);
        for i in 0..n_entries {
            let key = in_context(c.string(), || format!("the key of metadata entry {i}"))?;
            let value = in_context(c.u32().and_then(|ty| Value::read(&mut c, ty, 0)), || format!("metadata key '{key}'"))?;
            metadata.push((key, value));
        }
        let metadata_by_key = sorted_unique(&metadata, |(key, _)| key, "metadata key")?;

        let n_tensors = c.check_count(n_tensors, MIN_TENSOR_INFO, "tensor infos")?;
        let mut raw = Vec::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let name = in_context(c.string(), || format!("the name of tensor {i}"))?;
            raw.push(in_context(tensor_info(&mut c, name), || format!("the info of tensor '{name}'"))?);
        }

        let mut gguf = Gguf { version, alignment: DEFAULT_ALIGNMENT, metadata, metadata_by_key, tensors: Vec::new(), tensors_by_name: Vec::new() };
        if let Some(value) = gguf.get("general.alignment") {
            gguf.alignment = value
                .as_u64()
                .filter(|a| a.is_power_of_two() && *a <= 1 << 30)
                .ok_or_else(|| bad(format!("general.alignment must be a power of two up to 2^30, not {}", value.describe())))?
                as usize;
        }
        // The data section starts at the first aligned byte after the tensor infos.
        let data = c.pos.checked_next_multiple_of(gguf.alignment).and_then(|start| bytes.get(start..)).unwrap_or_default();
        gguf.tensors = raw.into_iter().map(|r| r.check(data, gguf.alignment)).collect::<Result<_>>()?;
        gguf.tensors_by_name = sorted_unique(&gguf.tensors, |t| &t.name, "tensor")?;
        Ok(gguf)
    }

    /// The value of `key`, if the file has it.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        let at = self.metadata_by_key.binary_search_by(|&i| self.metadata[i].0.cmp(key)).ok()?;
        Some(&self.metadata[self.metadata_by_key[at]].1)
    }

    /// Every metadata entry, in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&'a str, &Value<'a>)> {
        self.metadata.iter().map(|(key, value)| (*key, value))
    }

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorInfo<'a>] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo<'a>> {
        let at = self.tensors_by_name.binary_search_by(|&i| self.tensors[i].name.cmp(name));
        at.map(|at| &self.tensors[self.tensors_by_name[at]]).map_err(|_| GqaError::MissingTensor(name.into()))
    }

    /// `read(key)` when the file has `key`, None when it does not (a missing key is
    /// not an error; a key of the wrong type is).
    pub fn optional<T>(&self, key: &str, read: impl FnOnce(&str) -> Result<T>) -> Result<Option<T>> {
        self.get(key).map(|_| read(key)).transpose()
    }

    /// `key`'s value, converted by `convert`; an error names the key and says what it
    /// is when it is missing or not `expected`.
    fn typed<T>(&self, key: &str, expected: &str, convert: impl Fn(&Value<'a>) -> Option<T>) -> Result<T> {
        let value = self.get(key).ok_or_else(|| bad(format!("metadata key '{key}' is missing")))?;
        convert(value).ok_or_else(|| bad(format!("metadata key '{key}' should be {expected}, but it is {}", value.describe())))
    }

    /// An integer of any type that is not negative.
    pub fn uint(&self, key: &str) -> Result<u64> {
        self.typed(key, "a non-negative integer", Value::as_u64)
    }

    /// A float of either width.
    pub fn float(&self, key: &str) -> Result<f32> {
        self.typed(key, "a number", Value::as_f32)
    }

    pub fn bool(&self, key: &str) -> Result<bool> {
        self.typed(key, "a bool", Value::as_bool)
    }

    pub fn str(&self, key: &str) -> Result<&'a str> {
        self.typed(key, "a string", Value::as_str)
    }

    pub fn array(&self, key: &str) -> Result<Array<'a>> {
        self.typed(key, "an array", Value::as_array)
    }

    /// An array of strings.
    pub fn strings(&self, key: &str) -> Result<Vec<&'a str>> {
        self.typed(key, "an array of strings", |v| v.as_array()?.iter().map(|s| s.as_str()).collect())
    }

    /// An array of integers that fit in an i32.
    pub fn i32s(&self, key: &str) -> Result<Vec<i32>> {
        self.typed(key, "an array of 32-bit integers", |v| v.as_array()?.iter().map(|s| s.as_i32()).collect())
    }
}

/// A tensor info as the file states it, before it is checked.
struct RawTensorInfo<'a> {
    name: &'a str,
    dims: Vec<u64>,
    ty: TensorType,
    offset: u64,
}

impl<'a> RawTensorInfo<'a> {
    /// Checks the type, shape and place of the tensor in `data` (the data section).
    fn check(self, data: &'a [u8], alignment: usize) -> Result<TensorInfo<'a>> {
        let RawTensorInfo { name, dims, ty, offset } = self;
        let (block, block_bytes) = ty.block().ok_or_else(|| match ty.name() {
            Some(known) => bad(format!(
                "tensor '{name}' has type {known}, which this crate does not read (it reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q8_0, Q4_K and Q6_K)"
            )),
            None => bad(format!("tensor '{name}' has type id {}, which is not a ggml tensor type", ty.0)),
        })?;
        let elements = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d));
        let row = dims.first().copied().unwrap_or(1);
        let too_large = || bad(format!("tensor '{name}' has dims {dims:?}: that many elements overflow 64 bits"));
        let elements = elements.ok_or_else(too_large)?;
        if row % block as u64 != 0 {
            return Err(bad(format!("tensor '{name}' ({ty}) has rows of {row} elements, not a multiple of {ty}'s block of {block}")));
        }
        let size = (elements / block as u64).checked_mul(block_bytes as u64).ok_or_else(too_large)?;
        if offset % alignment as u64 != 0 {
            return Err(bad(format!("tensor '{name}' has offset {offset}, not a multiple of the alignment {alignment}")));
        }
        let end = offset.checked_add(size).filter(|&end| end <= data.len() as u64).ok_or_else(|| {
            bad(format!(
                "tensor '{name}' ({ty}, dims {dims:?}) needs bytes {offset}..{} of the data section, which has {} bytes (is the file truncated?)",
                offset as u128 + size as u128,
                data.len()
            ))
        })?;
        // Every dim is at most the element count (or the tensor is empty and fits anyway).
        let dims = dims.iter().map(|&d| usize::try_from(d).map_err(|_| too_large())).collect::<Result<_>>()?;
        Ok(TensorInfo { name, dims, ty, offset: offset as usize, bytes: &data[offset as usize..end as usize] })
    }
}

/// The rest of a tensor info after its name: dims, type, offset.
fn tensor_info<'a>(c: &mut Cursor<'a>, name: &'a str) -> Result<RawTensorInfo<'a>> {
    let n_dims = c.u32()?;
    if n_dims > MAX_DIMS {
        return Err(bad(format!("{n_dims} dimensions; ggml tensors have at most {MAX_DIMS}")));
    }
    let dims = (0..n_dims).map(|_| c.u64()).collect::<Result<Vec<_>>>()?;
    Ok(RawTensorInfo { name, dims, ty: TensorType(c.u32()?), offset: c.u64()? })
}

/// Prefixes the message of a GGUF error with where in the file it happened.
fn in_context<T>(result: Result<T>, place: impl FnOnce() -> String) -> Result<T> {
    result.map_err(|e| match e {
        GqaError::Gguf(message) => bad(format!("in {}: {message}", place())),
        other => other,
    })
}

/// The indices of `items` sorted by `name`; an error if two share a name.
fn sorted_unique<T>(items: &[T], name: impl Fn(&T) -> &&str, what: &str) -> Result<Vec<usize>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_unstable_by(|&a, &b| name(&items[a]).cmp(name(&items[b])));
    match order.windows(2).find(|w| name(&items[w[0]]) == name(&items[w[1]])) {
        Some(w) => Err(bad(format!("{what} '{}' appears twice", name(&items[w[0]])))),
        None => Ok(order),
    }
}
