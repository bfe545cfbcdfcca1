//! [`BuildId`]: the digest the linker writes into an image's GNU build-id note.
//!
//! The linker (`--build-id=sha1`) computes it over the linked file, so two builds of
//! different code never share one. It enters from the ELF note (the packer, or the
//! running kernel reading its own note) and travels in packages, mailbox status blocks
//! and reports as a length byte plus 32 bytes, zero padded.

use core::fmt;

use crate::error::{FormatError, Result};

/// An image's build id: up to 32 bytes (a SHA-1 note is 20).
///
/// Invariant: `len <= 32` and the bytes past `len` are zero, so equal ids compare
/// equal as values.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct BuildId {
    len: u8,
    bytes: [u8; 32],
}

impl BuildId {
    /// Longest build id carried.
    pub const MAX_LEN: usize = 32;
    /// No build id (length 0).
    pub const EMPTY: Self = Self {
        len: 0,
        bytes: [0; 32],
    };

    /// The id `bytes`.
    ///
    /// # Panics
    /// If `bytes` is longer than 32.
    pub const fn new(bytes: &[u8]) -> Self {
        match Self::try_new(bytes) {
            Ok(id) => id,
            Err(_) => panic!("a build id is at most 32 bytes"),
        }
    }

    /// The id `bytes`, or an error if they are longer than 32.
    pub const fn try_new(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > Self::MAX_LEN {
            return Err(FormatError::InvalidField {
                field: "build id length",
                value: bytes.len() as u64,
                reason: "a build id is at most 32 bytes",
            });
        }
        let mut out = [0u8; 32];
        let mut i = 0;
        while i < bytes.len() {
            out[i] = bytes[i];
            i += 1;
        }
        Ok(Self {
            len: bytes.len() as u8,
            bytes: out,
        })
    }

    /// From its encoded form (length byte and 32 bytes), checking the length and that
    /// the padding is zero.
    pub fn from_parts(len: u8, bytes: [u8; 32]) -> Result<Self> {
        let n = usize::from(len);
        if n > Self::MAX_LEN {
            return Err(FormatError::InvalidField {
                field: "build id length",
                value: u64::from(len),
                reason: "a build id is at most 32 bytes",
            });
        }
        if bytes.iter().skip(n).any(|&b| b != 0) {
            return Err(FormatError::InvalidField {
                field: "build id length",
                value: u64::from(len),
                reason: "bytes past the build id's length are not zero",
            });
        }
        Ok(Self { len, bytes })
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Length in bytes.
    pub const fn len(&self) -> u8 {
        self.len
    }

    /// True for the empty id.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// All 32 bytes, zero padded (the encoded form, after the length byte).
    pub const fn padded(&self) -> &[u8; 32] {
        &self.bytes
    }
}

/// Lower-case hex, as `readelf -n` prints it; `-` for the empty id.
impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("-");
        }
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BuildId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn prints_as_hex() {
        let id = BuildId::new(&[0x41, 0x4e, 0xe7]);
        assert_eq!(id.to_string(), "414ee7");
        assert_eq!(id.as_bytes(), &[0x41, 0x4e, 0xe7]);
        assert_eq!(BuildId::EMPTY.to_string(), "-");
    }

    #[test]
    fn checks_length_and_padding() {
        assert!(BuildId::try_new(&[0; 33]).is_err());
        let id = BuildId::new(&[1; 20]);
        assert_eq!(BuildId::from_parts(id.len(), *id.padded()), Ok(id));
        assert!(BuildId::from_parts(33, [0; 32]).is_err());
        let mut dirty = *id.padded();
        dirty[25] = 1;
        assert!(BuildId::from_parts(20, dirty).is_err());
    }
}
