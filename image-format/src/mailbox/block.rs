//! What the request and response blocks share: the checksum, the torn-read verdict
//! and the ordered write.

use core::sync::atomic::{fence, Ordering};

use crate::error::{FormatError, Result};

/// FNV-1a, 64 bits: the checksum of a request's or response's fields.
pub const fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// What a reader found in a request or response block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockRead<T> {
    /// Never written (both sequence numbers are 0).
    Empty,
    /// Being written, or damaged: the two sequence numbers differ or the checksum does
    /// not match. Read again later.
    Torn,
    /// Complete and well formed.
    Valid(T),
    /// Complete (sequence numbers agree, checksum matches) but not understood, e.g. a
    /// command code from a newer host. The guest answers `seq` with `BadRequest`.
    Invalid {
        /// The block's sequence number.
        seq: u64,
        /// What is not understood.
        error: FormatError,
    },
}

/// An encoded block, with the offset of the field to write last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBlock<const N: usize> {
    bytes: [u8; N],
    commit_at: usize,
}

impl<const N: usize> SealedBlock<N> {
    pub(crate) const fn new(bytes: [u8; N], commit_at: usize) -> Self {
        Self { bytes, commit_at }
    }

    /// All the bytes.
    pub const fn bytes(&self) -> &[u8; N] {
        &self.bytes
    }

    /// Offset of the field to write last (8 bytes: `seq_end` or `seq_commit`).
    pub const fn commit_offset(&self) -> usize {
        self.commit_at
    }

    /// The bytes to write first: `[0, commit_offset)`.
    pub fn body(&self) -> &[u8] {
        self.bytes.get(..self.commit_at).unwrap_or(&[])
    }

    /// The bytes to write last: `[commit_offset, N)`.
    pub fn commit(&self) -> &[u8] {
        self.bytes.get(self.commit_at..).unwrap_or(&[])
    }

    /// Writes the block into `block` (the start of its shared-memory block): the body,
    /// a release fence, then the commit field. On x86-64 stores become visible in
    /// program order, so a reader that sees the new commit field sees the whole body.
    pub fn write_to(&self, block: &mut [u8]) -> Result<()> {
        let Some(dst) = block.get_mut(..N) else {
            return Err(FormatError::Truncated {
                what: "mailbox block",
                needed: N as u64,
                got: block.len() as u64,
            });
        };
        let (body, commit) = dst.split_at_mut(self.commit_at.min(N));
        body.copy_from_slice(self.body());
        fence(Ordering::Release);
        commit.copy_from_slice(self.commit());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn write_to_puts_the_commit_last_and_checks_the_size() {
        let b = SealedBlock::new([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 2);
        assert_eq!(b.body(), &[1, 2]);
        assert_eq!(b.commit().len(), 8);
        let mut shared = [0u8; 12];
        b.write_to(&mut shared).unwrap();
        assert_eq!(&shared[..10], b.bytes());
        assert!(b.write_to(&mut [0u8; 4]).is_err());
    }
}
