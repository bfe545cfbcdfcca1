//! A patch set: the hotpatches a boot must re-apply (the coldpatch's payload).
//!
//! The runner puts it in the boot image as the bootloader's ramdisk; the kernel reads it
//! at boot, checks its digest, and applies each patch in order before the other CPUs
//! start. Layout (little-endian):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `HKPSET01` |
//! | 8 | 4 | layout version (1) |
//! | 12 | 4 | patch count (≤ [`MAX_SET_PATCHES`]) |
//! | 16 | 8 | length of the whole set, digest included |
//! | 24 | … | per patch: length `u64`, then the patch package, padded to 8 bytes |
//! | end − 32 | 32 | SHA-256 of every byte before it |

#[cfg(feature = "alloc")]
use alloc::vec::Vec;

use sha2::{Digest as _, Sha256};

use crate::error::{FormatError, Result};

/// Magic of a patch set.
pub const SET_MAGIC: [u8; 8] = *b"HKPSET01";
/// Most patches in a set.
pub const MAX_SET_PATCHES: usize = 64;
const HEADER: usize = 24;

/// A validated patch set: the patches, in order (each still to be parsed with
/// [`super::parse`]).
#[derive(Debug, Clone, Copy)]
pub struct PatchSet<'a> {
    body: &'a [u8],
    count: usize,
}

fn truncated(needed: usize, got: usize) -> FormatError {
    FormatError::Truncated {
        what: "patch set",
        needed: needed as u64,
        got: got as u64,
    }
}

impl<'a> PatchSet<'a> {
    /// Checks magic, version, lengths and the digest. Never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let head = bytes
            .get(..HEADER)
            .ok_or_else(|| truncated(HEADER, bytes.len()))?;
        let field = |at: usize, n: usize| head.get(at..at + n).unwrap_or(&[]);
        if field(0, 8) != SET_MAGIC {
            let mut found = [0u8; 8];
            found.copy_from_slice(field(0, 8));
            return Err(FormatError::BadMagic {
                what: "patch set",
                found,
                expected: SET_MAGIC,
            });
        }
        let version = u32::from_le_bytes(field(8, 4).try_into().unwrap_or([0; 4]));
        if version != 1 {
            return Err(FormatError::UnsupportedVersion {
                what: "patch set",
                found: version,
                supported: 1,
            });
        }
        let count = u32::from_le_bytes(field(12, 4).try_into().unwrap_or([0; 4])) as usize;
        if count > MAX_SET_PATCHES {
            return Err(FormatError::TooManyEntries {
                table: "patch set",
                count: count as u64,
                max: MAX_SET_PATCHES as u64,
            });
        }
        let total = u64::from_le_bytes(field(16, 8).try_into().unwrap_or([0; 8]));
        let total = usize::try_from(total).unwrap_or(usize::MAX);
        if total < HEADER + 32 || total > bytes.len() {
            return Err(truncated(total, bytes.len()));
        }
        let (signed, digest) = bytes[..total].split_at(total - 32);
        let computed: [u8; 32] = Sha256::digest(signed).into();
        if computed != digest {
            let mut stored = [0u8; 32];
            stored.copy_from_slice(digest);
            return Err(FormatError::Checksum {
                what: "patch set",
                stored: u64::from_le_bytes(stored[..8].try_into().unwrap_or([0; 8])),
                computed: u64::from_le_bytes(computed[..8].try_into().unwrap_or([0; 8])),
            });
        }
        let set = PatchSet {
            body: &signed[HEADER..],
            count,
        };
        // Every entry must fit: walk them once.
        let mut n = 0;
        for p in set.iter() {
            p?;
            n += 1;
        }
        if n != count {
            return Err(truncated(total, bytes.len()));
        }
        Ok(set)
    }

    /// Number of patches.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The patches' bytes, in order.
    pub fn iter(&self) -> impl Iterator<Item = Result<&'a [u8]>> + '_ {
        let mut at = 0usize;
        let body = self.body;
        (0..self.count).map(move |_| {
            let len_bytes = body
                .get(at..at + 8)
                .ok_or_else(|| truncated(at + 8, body.len()))?;
            let len = u64::from_le_bytes(len_bytes.try_into().unwrap_or([0; 8]));
            let len = usize::try_from(len).map_err(|_| truncated(usize::MAX, body.len()))?;
            let start = at + 8;
            let end = start
                .checked_add(len)
                .ok_or_else(|| truncated(usize::MAX, body.len()))?;
            let patch = body
                .get(start..end)
                .ok_or_else(|| truncated(end, body.len()))?;
            at = end.next_multiple_of(8);
            Ok(patch)
        })
    }
}

/// Builds a patch set from patch packages, in order.
#[cfg(feature = "alloc")]
pub fn build(patches: &[&[u8]]) -> Result<Vec<u8>> {
    if patches.len() > MAX_SET_PATCHES {
        return Err(FormatError::TooManyEntries {
            table: "patch set",
            count: patches.len() as u64,
            max: MAX_SET_PATCHES as u64,
        });
    }
    let mut out = Vec::new();
    out.extend_from_slice(&SET_MAGIC);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(patches.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    for p in patches {
        out.extend_from_slice(&(p.len() as u64).to_le_bytes());
        out.extend_from_slice(p);
        out.resize(out.len().next_multiple_of(8), 0);
    }
    let total = (out.len() + 32) as u64;
    out[16..24].copy_from_slice(&total.to_le_bytes());
    let digest: [u8; 32] = Sha256::digest(&out).into();
    out.extend_from_slice(&digest);
    Ok(out)
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;

    #[test]
    fn sets_round_trip_and_damage_is_refused() {
        let a = [1u8, 2, 3];
        let b = [9u8; 20];
        let set = build(&[&a, &b]).unwrap();
        let parsed = PatchSet::parse(&set).unwrap();
        let items: Vec<&[u8]> = parsed.iter().map(|p| p.unwrap()).collect();
        assert_eq!(items, [&a[..], &b[..]]);
        for i in 0..set.len() {
            let mut bad = set.clone();
            bad[i] ^= 0x20;
            assert!(
                PatchSet::parse(&bad).is_err(),
                "byte {i} flipped was accepted"
            );
            assert!(PatchSet::parse(&set[..i]).is_err());
        }
        assert!(PatchSet::parse(&build(&[]).unwrap()).unwrap().is_empty());
    }
}
