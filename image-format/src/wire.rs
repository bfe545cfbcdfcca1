//! Little-endian bytes ↔ integers: the one place where the crate indexes byte slices.
//!
//! - [`Reader`] reads a sequence of fields from untrusted bytes; every read is checked
//!   and a short read is a [`FormatError::Truncated`] naming the structure.
//! - [`Fixed`] reads fields at documented offsets of a block whose length was checked
//!   once when the view was made.
//! - [`Writer`] writes a sequence of fields; it never panics, and reports at
//!   [`Writer::finish`] if the buffer was too small.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use crate::error::{FormatError, Result};

/// Sequential, checked reads.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Reads `bytes` from the start; `what` names the structure in errors.
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self {
            bytes,
            pos: 0,
            what,
        }
    }

    /// Bytes consumed so far.
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n);
        match end.and_then(|end| self.bytes.get(self.pos..end)) {
            Some(s) => {
                self.pos = end.unwrap_or(self.pos);
                Ok(s)
            }
            None => Err(FormatError::Truncated {
                what: self.what,
                needed: (self.pos as u64).saturating_add(n as u64),
                got: self.bytes.len() as u64,
            }),
        }
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let s = self.bytes(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(u8::from_le_bytes(self.array()?))
    }
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// Fails unless every byte was consumed (`what` has trailing bytes).
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    pub fn finish(self) -> Result<()> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(FormatError::SizeMismatch {
                what: self.what,
                declared: self.pos as u64,
                got: self.bytes.len() as u64,
            })
        }
    }
}

/// A block of known length whose fields are read at fixed offsets.
///
/// Made by [`Fixed::new`], which checks the length once; the offsets used with it are
/// constants inside that length, so the reads cannot fail (a read outside would
/// return 0, never panic).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fixed<'a>(&'a [u8]);

impl<'a> Fixed<'a> {
    /// The first `size` bytes of `bytes`, or `Truncated` naming `what`.
    pub fn new(bytes: &'a [u8], size: usize, what: &'static str) -> Result<Self> {
        match bytes.get(..size) {
            Some(b) => Ok(Self(b)),
            None => Err(FormatError::Truncated {
                what,
                needed: size as u64,
                got: bytes.len() as u64,
            }),
        }
    }

    /// The block's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.0
    }

    pub fn array<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut a = [0u8; N];
        if let Some(s) = self.0.get(offset..offset.saturating_add(N)) {
            a.copy_from_slice(s);
        }
        a
    }
    pub fn u8(&self, offset: usize) -> u8 {
        u8::from_le_bytes(self.array(offset))
    }
    pub fn u16(&self, offset: usize) -> u16 {
        u16::from_le_bytes(self.array(offset))
    }
    pub fn u32(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.array(offset))
    }
    pub fn u64(&self, offset: usize) -> u64 {
        u64::from_le_bytes(self.array(offset))
    }

    /// True if every byte in `offset..offset + len` is zero.
    pub fn is_zero(&self, offset: usize, len: usize) -> bool {
        self.0
            .get(offset..offset.saturating_add(len))
            .is_some_and(|s| s.iter().all(|&b| b == 0))
    }
}

/// Sequential writes that never panic: a write past the end is dropped and remembered,
/// and [`Writer::finish`] reports it.
#[derive(Debug)]
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
    overflow: bool,
}

impl<'a> Writer<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            overflow: false,
        }
    }

    /// Moves to `offset` (for writing at documented offsets).
    pub fn seek(&mut self, offset: usize) {
        self.pos = offset;
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn put(&mut self, bytes: &[u8]) {
        let end = self.pos.saturating_add(bytes.len());
        match self.buf.get_mut(self.pos..end) {
            Some(dst) => dst.copy_from_slice(bytes),
            None => self.overflow = true,
        }
        self.pos = end;
    }

    pub fn u8(&mut self, v: u8) {
        self.put(&v.to_le_bytes());
    }
    pub fn u16(&mut self, v: u16) {
        self.put(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.put(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.put(&v.to_le_bytes());
    }
    #[cfg_attr(not(feature = "alloc"), allow(dead_code))]
    pub fn i64(&mut self, v: i64) {
        self.put(&v.to_le_bytes());
    }
    /// Bytes written, or `Truncated` naming `what` if the buffer was too small.
    pub fn finish(self, what: &'static str) -> Result<usize> {
        if self.overflow {
            Err(FormatError::Truncated {
                what,
                needed: self.pos as u64,
                got: self.buf.len() as u64,
            })
        } else {
            Ok(self.pos)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_how_much_was_needed() {
        let mut r = Reader::new(&[1, 0, 0, 0, 2], "thing");
        assert_eq!(r.u32().unwrap(), 1);
        assert_eq!(
            r.u32(),
            Err(FormatError::Truncated {
                what: "thing",
                needed: 8,
                got: 5
            })
        );
        assert_eq!(r.u8().unwrap(), 2);
        assert!(r.finish().is_ok());
    }

    #[test]
    fn writer_reports_overflow_without_panicking() {
        let mut buf = [0u8; 6];
        let mut w = Writer::new(&mut buf);
        w.u32(0x0403_0201);
        w.u32(5);
        assert_eq!(
            w.finish("block"),
            Err(FormatError::Truncated {
                what: "block",
                needed: 8,
                got: 6
            })
        );
        assert_eq!(buf[..4], [1, 2, 3, 4]);
    }

    #[test]
    fn fixed_reads_at_offsets() {
        let bytes = [0u8, 1, 2, 3, 4, 5, 6, 7, 8];
        let f = Fixed::new(&bytes, 8, "b").unwrap();
        assert_eq!(f.u16(1), 0x0201);
        assert_eq!(f.u64(8), 0, "outside the block reads as 0");
        assert!(Fixed::new(&bytes, 10, "b").is_err());
    }
}
