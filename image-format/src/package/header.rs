//! [`parse_header`]: the first `header_size` bytes of a package → a validated
//! [`Header`], without looking at the payload.
//!
//! The checks run in an order that makes the first error the useful one: magic,
//! format version, header size, then the header digest (so a damaged header is
//! reported as damaged rather than by whichever field the damage hit), then every
//! field and table. After it succeeds, every accessor returns values that satisfy the
//! rules in `docs/FORMAT.md`; the payload is checked by [`super::parse`] or, in the
//! kernel, by hashing it while copying and calling [`Header::check_payload_digest`].
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sha2::{Digest as _, Sha256};

use super::check::{
    check_entries, check_relocations, check_segments, check_tables_disjoint, description,
    read_relocation, read_segment, table, EMPTY_SEGMENT,
};
use super::image::{is_page_aligned, page_align_up, Entries, Geometry, Relocation, Segment};
use super::layout as at;
use super::{
    FORMAT_VERSION, MAGIC, MAX_HEADER_SIZE, MAX_IMAGE_SPAN, MAX_RELOCATIONS, MAX_SEGMENTS,
};
use crate::build_id::BuildId;
use crate::error::{Digest, FormatError, Result};
use crate::identity::{EmbeddedIdentity, ImageSummary};
use crate::wire::{Fixed, Reader};

const WHAT: &str = "package header";

/// A validated package header: identity, geometry, segment and relocation tables, the
/// image description and digests. Borrows the header bytes.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    bytes: &'a [u8],
    total_size: u64,
    build_id: BuildId,
    identity: EmbeddedIdentity,
    geometry: Geometry,
    segments: &'a [u8],
    relocations: &'a [u8],
    description: &'a [u8],
}

/// Reads and validates the header at the start of `prefix`, which needs to hold only
/// the first `header_size` bytes of the package (more is ignored).
///
/// Checks the magic, the format version, the header size, the header digest, the
/// identity and build id, the geometry, both tables' placement and bounds, the image
/// description's placement, magic and stated length, every segment (aligned, sorted, disjoint, inside the payload the total size declares),
/// that every entry point is in executable file bytes, and that every relocation slot
/// is 8-byte aligned inside the file bytes of a writable or RELRO segment. It does not
/// read the payload or check its digest.
pub fn parse_header(prefix: &[u8]) -> Result<Header<'_>> {
    let bytes = check_preamble(prefix)?;
    check_header_digest(bytes)?;
    let f = Fixed::new(bytes, at::FIXED_SIZE, WHAT)?;
    for (offset, len) in [(at::RESERVED, 7)] {
        if !f.is_zero(offset, len) {
            return Err(FormatError::InvalidField {
                field: "header reserved bytes",
                value: offset as u64,
                reason: "must be zero",
            });
        }
    }
    let total_size = f.u64(at::TOTAL_SIZE);
    let payload_offset = payload_offset(bytes.len());
    let Some(payload_size) = total_size.checked_sub(payload_offset) else {
        return Err(FormatError::InvalidField {
            field: "total size",
            value: total_size,
            reason: "is smaller than the header padded to 4 KiB",
        });
    };
    let build_id = BuildId::from_parts(f.u8(at::BUILD_ID_LEN), f.array(at::BUILD_ID))?;
    let identity_bytes = bytes.get(at::IDENTITY..at::LINK_BASE).unwrap_or(&[]);
    let identity = EmbeddedIdentity::parse(identity_bytes)?;
    let geometry = read_geometry(&f)?;
    let segments = table(
        bytes,
        "segment table",
        f.u64(at::SEGMENT_TABLE),
        u64::from(f.u32(at::SEGMENT_COUNT)),
        at::SEGMENT_ENTRY_SIZE,
        MAX_SEGMENTS,
    )?;
    let relocations = table(
        bytes,
        "relocation table",
        f.u64(at::RELOCATION_TABLE),
        u64::from(f.u32(at::RELOCATION_COUNT)),
        at::RELOCATION_ENTRY_SIZE,
        MAX_RELOCATIONS,
    )?;
    check_tables_disjoint(
        f.u64(at::SEGMENT_TABLE),
        segments,
        f.u64(at::RELOCATION_TABLE),
        relocations,
    )?;
    let description = description(
        bytes,
        f.u64(at::DESCRIPTION),
        f.u32(at::DESCRIPTION_LEN),
        (f.u64(at::SEGMENT_TABLE), segments),
        (f.u64(at::RELOCATION_TABLE), relocations),
    )?;
    let header = Header {
        bytes,
        total_size,
        build_id,
        identity,
        geometry,
        segments,
        relocations,
        description,
    };
    let mut loaded = [EMPTY_SEGMENT; MAX_SEGMENTS];
    let n = check_segments(segments, &geometry, payload_size, &mut loaded)?;
    let loaded = loaded.get(..n).unwrap_or(&[]);
    check_entries(&geometry, loaded)?;
    check_relocations(header.relocations(), loaded)?;
    Ok(header)
}

/// Magic, version, flags and header size; returns the header bytes.
fn check_preamble(prefix: &[u8]) -> Result<&[u8]> {
    let magic: [u8; 8] = Reader::new(prefix, WHAT).array()?;
    if magic != MAGIC {
        return Err(FormatError::BadMagic {
            what: "hotkernel package",
            expected: MAGIC,
            found: magic,
        });
    }
    let f = Fixed::new(prefix, at::TOTAL_SIZE, WHAT)?;
    let version = f.u16(at::FORMAT_VERSION);
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            what: "package format",
            found: u32::from(version),
            supported: u32::from(FORMAT_VERSION),
        });
    }
    let flags = f.u16(at::FLAGS);
    if flags != 0 {
        return Err(FormatError::InvalidField {
            field: "header flags",
            value: u64::from(flags),
            reason: "no flags are defined in format version 3",
        });
    }
    let header_size = f.u32(at::HEADER_SIZE);
    if (header_size as usize) < at::FIXED_SIZE || header_size > MAX_HEADER_SIZE {
        return Err(FormatError::InvalidField {
            field: "header size",
            value: u64::from(header_size),
            reason: "must be between the fixed header (0x1b8) and 4 MiB",
        });
    }
    prefix
        .get(..header_size as usize)
        .ok_or(FormatError::Truncated {
            what: WHAT,
            needed: u64::from(header_size),
            got: prefix.len() as u64,
        })
}

/// The SHA-256 of the header bytes with the header digest field read as zeros.
pub(crate) fn header_digest(bytes: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(bytes.get(..at::HEADER_DIGEST).unwrap_or(&[]));
    h.update([0u8; 32]);
    h.update(bytes.get(at::PAYLOAD_DIGEST..).unwrap_or(&[]));
    h.finalize().into()
}

/// Recomputes both digests of a package in place, after editing it on purpose (tests
/// and fault injection make packages that are wrong in exactly one field this way).
/// Reads the header size from the bytes; fails only if they are too short for it.
pub fn reseal(bytes: &mut [u8]) -> Result<()> {
    let header_size = Fixed::new(bytes, at::FIXED_SIZE, WHAT)?.u32(at::HEADER_SIZE) as usize;
    if bytes.len() < header_size {
        return Err(FormatError::Truncated {
            what: WHAT,
            needed: header_size as u64,
            got: bytes.len() as u64,
        });
    }
    let payload_at = usize::try_from(payload_offset(header_size)).unwrap_or(usize::MAX);
    // A signature trailer after `total_size` is not payload.
    let total = Fixed::new(bytes, at::FIXED_SIZE, WHAT)?.u64(at::TOTAL_SIZE);
    let end = usize::try_from(total)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let payload: Digest = Sha256::digest(bytes.get(payload_at..end).unwrap_or(&[])).into();
    if let Some(field) = bytes.get_mut(at::PAYLOAD_DIGEST..at::BUILD_ID_LEN) {
        field.copy_from_slice(&payload);
    }
    let header = header_digest(bytes.get(..header_size).unwrap_or(&[]));
    if let Some(field) = bytes.get_mut(at::HEADER_DIGEST..at::PAYLOAD_DIGEST) {
        field.copy_from_slice(&header);
    }
    Ok(())
}

fn check_header_digest(bytes: &[u8]) -> Result<()> {
    let stored = Fixed::new(bytes, at::FIXED_SIZE, WHAT)?.array(at::HEADER_DIGEST);
    let computed = header_digest(bytes);
    if stored == computed {
        Ok(())
    } else {
        Err(FormatError::HeaderDigest { stored, computed })
    }
}

/// Where the payload starts for a header of `header_size` bytes.
pub(crate) fn payload_offset(header_size: usize) -> u64 {
    // header_size <= MAX_HEADER_SIZE, so this cannot overflow.
    page_align_up(header_size as u64).unwrap_or(u64::MAX)
}

fn read_geometry(f: &Fixed<'_>) -> Result<Geometry> {
    let g = Geometry {
        link_base: f.u64(at::LINK_BASE),
        image_span: f.u64(at::IMAGE_SPAN),
        entries: Entries {
            kernel: f.u64(at::KERNEL_ENTRY),
            bootstrap: f.u64(at::BOOTSTRAP_ENTRY),
            resume: f.u64(at::RESUME_ENTRY),
            ap_resume: f.u64(at::AP_RESUME_ENTRY),
        },
    };
    let bad = |field, value, reason| {
        Err(FormatError::InvalidField {
            field,
            value,
            reason,
        })
    };
    if !is_page_aligned(g.link_base) {
        return bad("link base", g.link_base, "is not page aligned");
    }
    if g.image_span == 0 || !is_page_aligned(g.image_span) || g.image_span > MAX_IMAGE_SPAN {
        return bad(
            "image span",
            g.image_span,
            "must be a non-zero multiple of 4 KiB, at most 256 MiB (the kernel's growth window)",
        );
    }
    if g.link_base.checked_add(g.image_span).is_none() {
        return bad("link base", g.link_base, "plus the image span overflows");
    }
    Ok(g)
}

impl<'a> Header<'a> {
    /// The header bytes, `[0, header_size)`.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The package format version (always [`FORMAT_VERSION`] once parsed).
    pub fn format_version(&self) -> u16 {
        FORMAT_VERSION
    }

    /// The image's security version: a package whose SVN is below the highest that
    /// ever ran in a VM is refused there.
    pub fn svn(&self) -> u32 {
        Fixed::new(self.bytes, at::FIXED_SIZE, WHAT)
            .map(|f| f.u32(at::SVN))
            .unwrap_or_default()
    }

    /// Bytes covered by the header digest, tables included.
    pub fn header_size(&self) -> u32 {
        self.bytes.len() as u32
    }

    /// Size of the whole package.
    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    /// Where the payload starts: the header size rounded up to 4 KiB.
    pub fn payload_offset(&self) -> u64 {
        payload_offset(self.bytes.len())
    }

    /// Size of the payload.
    pub fn payload_size(&self) -> u64 {
        self.total_size.saturating_sub(self.payload_offset())
    }

    /// The image's embedded identity (version, label, replaces, capabilities, schemas).
    pub fn identity(&self) -> &EmbeddedIdentity {
        &self.identity
    }

    /// The image's build id.
    pub fn build_id(&self) -> BuildId {
        self.build_id
    }

    /// Version, build id and label.
    pub fn summary(&self) -> ImageSummary {
        self.identity.summary(self.build_id)
    }

    /// Link base, span and entry points.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Number of segments (at least 1).
    pub fn segment_count(&self) -> usize {
        self.segments.len() / at::SEGMENT_ENTRY_SIZE
    }

    /// The segments, sorted by address.
    pub fn segments(&self) -> Segments<'a> {
        Segments(Reader::new(self.segments, "segment table"))
    }

    /// Number of relocations.
    pub fn relocation_count(&self) -> usize {
        self.relocations.len() / at::RELOCATION_ENTRY_SIZE
    }

    /// The relocations, in table order.
    pub fn relocations(&self) -> Relocations<'a> {
        Relocations(Reader::new(self.relocations, "relocation table"))
    }

    /// The image description the kernel embedded in `.hk_schema`: at least 16 bytes,
    /// starting with [`DESCRIPTION_MAGIC`](super::DESCRIPTION_MAGIC) and stating its own
    /// length; read it with `updater::describe::Description::parse`. Covered by the
    /// header digest.
    pub fn description(&self) -> &'a [u8] {
        self.description
    }

    /// Where the image description lies in the header (its offset from the start).
    pub fn description_offset(&self) -> u64 {
        Fixed::new(self.bytes, at::FIXED_SIZE, WHAT)
            .map(|f| f.u64(at::DESCRIPTION))
            .unwrap_or_default()
    }

    /// The header digest stored in the header (verified by [`parse_header`]).
    pub fn header_digest(&self) -> Digest {
        Fixed::new(self.bytes, at::FIXED_SIZE, WHAT)
            .map(|f| f.array(at::HEADER_DIGEST))
            .unwrap_or_default()
    }

    /// The payload digest stored in the header.
    pub fn payload_digest(&self) -> Digest {
        Fixed::new(self.bytes, at::FIXED_SIZE, WHAT)
            .map(|f| f.array(at::PAYLOAD_DIGEST))
            .unwrap_or_default()
    }

    /// Compares `computed`, the SHA-256 of the payload, with the stored digest.
    pub fn check_payload_digest(&self, computed: &Digest) -> Result<()> {
        let stored = self.payload_digest();
        if stored == *computed {
            Ok(())
        } else {
            Err(FormatError::PayloadDigest {
                stored,
                computed: *computed,
            })
        }
    }

    /// Refuses a package larger than `capacity` bytes of `holder` (e.g. the staging
    /// buffer) before anything is copied.
    pub fn check_fits(&self, holder: &'static str, capacity: u64) -> Result<()> {
        if self.total_size <= capacity {
            Ok(())
        } else {
            Err(FormatError::TooLarge {
                what: "package",
                size: self.total_size,
                holder,
                capacity,
            })
        }
    }
}

/// Iterator over a validated segment table.
#[derive(Debug, Clone)]
pub struct Segments<'a>(Reader<'a>);

impl Iterator for Segments<'_> {
    type Item = Segment;
    fn next(&mut self) -> Option<Segment> {
        read_segment(&mut self.0).ok().map(|(s, _)| s)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.0.remaining() / at::SEGMENT_ENTRY_SIZE;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Segments<'_> {}

/// Iterator over a validated relocation table.
#[derive(Debug, Clone)]
pub struct Relocations<'a>(Reader<'a>);

impl Iterator for Relocations<'_> {
    type Item = Relocation;
    fn next(&mut self) -> Option<Relocation> {
        read_relocation(&mut self.0).ok()
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.0.remaining() / at::RELOCATION_ENTRY_SIZE;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Relocations<'_> {}
