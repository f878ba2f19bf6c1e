//! The lowest layer of the GGUF reader: little-endian reads from the front of the
//! file that never go past its end, and the error they give.

use crate::error::{GqaError, Result};

/// Reads little-endian values from the front of the file, never past its end.
pub(super) struct Cursor<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub(super) fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        if n > self.left() as u64 {
            return Err(bad(format!("the file ends at byte {}, but {n} bytes are needed from byte {}", self.bytes.len(), self.pos)));
        }
        let taken = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(taken)
    }

    pub(super) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N as u64)?.try_into().expect("take returns N bytes"))
    }

    pub(super) fn u32(&mut self) -> Result<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub(super) fn u64(&mut self) -> Result<u64> {
        self.array().map(u64::from_le_bytes)
    }

    pub(super) fn string(&mut self) -> Result<&'a str> {
        let len = self.u64()?;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|e| bad(format!("a string of {len} bytes at byte {} is not UTF-8: {e}", self.pos - bytes.len())))
    }

    /// `count` items of at least `min_size` bytes each, if they can fit in what is left.
    pub(super) fn check_count(&self, count: u64, min_size: usize, what: &str) -> Result<usize> {
        let most = self.left() / min_size;
        if count > most as u64 {
            return Err(bad(format!(
                "{count} {what} cannot fit in the {} bytes left after byte {} (at most {most} can)",
                self.left(),
                self.pos
            )));
        }
        Ok(count as usize)
    }
}

/// A GGUF error with this message.
pub(super) fn bad(message: String) -> GqaError {
    GqaError::Gguf(message)
}
