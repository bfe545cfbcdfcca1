//! The update package: a new kernel image, as the host sends it and the running
//! kernel stages it.
//!
//! Bytes enter through [`parse`] (the whole package) or [`parse_header`] (only the
//! header, so the kernel can refuse early and then hash the payload while copying it;
//! [`parse_prehashed`] then takes that digest instead of hashing a second time). All
//! return a validated view or a [`FormatError`] naming the field. Bytes leave through
//! [`PackageSpec::build`] (feature `alloc`), which [`pack`] (feature `std`) feeds from
//! a kernel ELF.
//!
//! # Layout (format version 3)
//!
//! ```text
//! 0x000  header: fixed part (0x1b8 bytes, offsets in `layout`)
//!        magic "HKPKG\0\r\n", format version u16, flags u16, header size u32,
//!        total size u64, header digest [32], payload digest [32],
//!        build id (len u8, 7 reserved, [32]), embedded identity [224],
//!        link base, image span, 4 entry offsets (u64 each),
//!        segment count u32, relocation count u32, segment table offset u64,
//!        relocation table offset u64,
//!        description offset u64, description length u32, security version u32
//! 0x1b8  segment table: count × 40 bytes
//!        (payload offset u64, vaddr u64, file size u64, mem size u64, flags u32, 0 u32)
//!        relocation table: count × 16 bytes (slot vaddr u64, addend i64)
//!        image description: the kernel's `.hk_schema` bytes ("HKDESC01" …)
//!        -- header_size ends here; zero padding to the next 4 KiB --
//! payload_offset = header_size rounded up to 4 KiB
//!        payload: each segment's file bytes at its (4 KiB aligned) payload offset
//! total_size = payload_offset + payload size
//!        signature trailer (112 bytes, `crate::signature`): Ed25519 over the magic
//!        and the header digest; not counted in total_size, covered by no digest
//! ```
//!
//! The image description says how the image lays out what crosses a swap (its
//! records' field tables, converters, regions, hand-off descriptor); its format is
//! `updater::describe`'s, and this crate checks only its placement, its magic and the
//! length it states ([`Header::description`] hands out the bytes).
//!
//! The header digest is the SHA-256 of `[0, header_size)` with the header digest field
//! read as zeros; it covers the payload digest, so a damaged payload digest is a
//! damaged header. The payload digest is the SHA-256 of `[payload_offset, total_size)`.
//! `docs/FORMAT.md` has every rule the parser enforces.
//!
//! # What parsing does not guarantee
//!
//! A valid package is well formed and arrived intact; parsing does not authenticate it
//! (the digests catch damage, not an attacker who rewrites both: that is the signature
//! trailer's job, checked by [`crate::signature::Trailer::verify`]), and it says nothing about
//! whether the running kernel should accept it: comparing versions, capabilities and
//! schemas is the updater's decision.

mod check;
mod header;
mod image;
pub mod layout;

#[cfg(feature = "alloc")]
mod build;
#[cfg(feature = "std")]
mod describe;
#[cfg(feature = "std")]
mod pack;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use sha2::{Digest as _, Sha256};

pub use header::{parse_header, reseal, Header, Relocations, Segments};
pub use image::{Entries, Geometry, Relocation, Segment, SegmentFlags};

#[cfg(feature = "alloc")]
pub use build::{PackageSpec, SegmentSpec};
#[cfg(feature = "std")]
pub use describe::{describe, describe_bytes};
#[cfg(feature = "std")]
pub use pack::{elf_description, elf_svn, pack, PackError, PackOptions, SVN_SECTION};

use crate::error::{Digest, FormatError, Result};

/// The first eight bytes of every package. The CR LF catches text-mode mangling.
pub const MAGIC: [u8; 8] = *b"HKPKG\0\r\n";
/// The format version this code reads and writes (3: the header carries the image's
/// security version at 0x1b4 and the package is followed by a signature trailer,
/// [`crate::signature`]; version 2 packages, unsigned and without a security version,
/// and version 1 packages, without an image description, are refused as unsupported).
pub const FORMAT_VERSION: u16 = 3;
/// Most segments a package may have.
pub const MAX_SEGMENTS: usize = 64;
/// Most relocations a package may have.
pub const MAX_RELOCATIONS: usize = 1 << 18;
/// Largest header (fixed part and tables): 4 MiB.
pub const MAX_HEADER_SIZE: u32 = 4 << 20;
/// Largest image span: the kernel's growth window (256 MiB).
pub const MAX_IMAGE_SPAN: u64 = 256 << 20;
/// The first eight bytes of an image description (`updater::describe::MAGIC`).
pub const DESCRIPTION_MAGIC: [u8; 8] = *b"HKDESC01";
/// Shortest image description: its magic, version and stated length.
pub const MIN_DESCRIPTION: u32 = 16;
/// Longest image description: 1 MiB.
pub const MAX_DESCRIPTION: u32 = 1 << 20;
/// The ELF section a kernel embeds its description in, and the packer reads.
pub const DESCRIPTION_SECTION: &str = ".hk_schema";

/// A validated package: its header and its payload.
#[derive(Debug, Clone)]
pub struct Package<'a> {
    header: Header<'a>,
    payload: &'a [u8],
}

/// Reads and validates a whole package: everything [`parse_header`] checks, plus that
/// `bytes` is exactly `total_size` long, the padding after the header is zero, and
/// the payload digest matches.
pub fn parse(bytes: &[u8]) -> Result<Package<'_>> {
    let header = parse_header(bytes)?;
    let payload = payload(&header, bytes)?;
    header.check_payload_digest(&Sha256::digest(payload).into())?;
    Ok(Package { header, payload })
}

/// [`parse`] for a kernel that hashed the payload while copying it into `bytes`:
/// `payload_digest` is that SHA-256 of `bytes[payload_offset..]`, compared with the
/// stored digest instead of hashing the payload a second time. Passing anything else
/// than the digest of these very bytes defeats the check.
pub fn parse_prehashed<'a>(bytes: &'a [u8], payload_digest: &Digest) -> Result<Package<'a>> {
    let header = parse_header(bytes)?;
    let payload = payload(&header, bytes)?;
    header.check_payload_digest(payload_digest)?;
    Ok(Package { header, payload })
}

/// The payload of the package in `bytes`, after checking its length and padding.
fn payload<'a>(header: &Header<'_>, bytes: &'a [u8]) -> Result<&'a [u8]> {
    let total = header.total_size();
    if (bytes.len() as u64) < total {
        return Err(FormatError::Truncated {
            what: "package",
            needed: total,
            got: bytes.len() as u64,
        });
    }
    // What follows the package is its signature trailer (or nothing), which
    // `signature::find` reads and the guest verifies.
    let trailer = crate::signature::TRAILER_LEN as u64;
    if bytes.len() as u64 != total && bytes.len() as u64 != total.saturating_add(trailer) {
        return Err(FormatError::SizeMismatch {
            what: "package",
            declared: total,
            got: bytes.len() as u64,
        });
    }
    let start = header.header_size() as usize;
    let payload_at = usize::try_from(header.payload_offset()).unwrap_or(usize::MAX);
    let padding = bytes.get(start..payload_at).unwrap_or(&[]);
    if let Some(i) = padding.iter().position(|&b| b != 0) {
        return Err(FormatError::InvalidField {
            field: "padding after the header at offset",
            value: start.saturating_add(i) as u64,
            reason: "is not zero",
        });
    }
    let end = usize::try_from(total).unwrap_or(usize::MAX);
    Ok(bytes.get(payload_at..end).unwrap_or(&[]))
}

impl<'a> Package<'a> {
    /// The header.
    pub fn header(&self) -> &Header<'a> {
        &self.header
    }

    /// The payload bytes.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The file bytes of `segment` (one of this package's segments).
    pub fn segment_bytes(&self, segment: &Segment) -> &'a [u8] {
        let start = usize::try_from(segment.payload_offset).unwrap_or(usize::MAX);
        let len = usize::try_from(segment.file_size).unwrap_or(usize::MAX);
        self.payload
            .get(start..start.saturating_add(len))
            .unwrap_or(&[])
    }
}

impl<'a> core::ops::Deref for Package<'a> {
    type Target = Header<'a>;
    fn deref(&self) -> &Header<'a> {
        &self.header
    }
}
