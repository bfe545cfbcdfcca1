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

use super::image::{
    is_page_aligned, page_align_up, Entries, Geometry, Relocation, Segment, SegmentFlags,
};
use super::layout as at;
use super::{
    FORMAT_VERSION, MAGIC, MAX_HEADER_SIZE, MAX_IMAGE_SPAN, MAX_RELOCATIONS, MAX_SEGMENTS,
};
use crate::build_id::BuildId;
use crate::error::{Digest, FormatError, RelocationProblem, Result, SegmentProblem};
use crate::identity::{EmbeddedIdentity, ImageSummary};
use crate::wire::{Fixed, Reader};

const WHAT: &str = "package header";

/// A validated package header: identity, geometry, segment and relocation tables and
/// digests. Borrows the header bytes.
#[derive(Debug, Clone)]
pub struct Header<'a> {
    bytes: &'a [u8],
    total_size: u64,
    build_id: BuildId,
    identity: EmbeddedIdentity,
    geometry: Geometry,
    segments: &'a [u8],
    relocations: &'a [u8],
}

/// Reads and validates the header at the start of `prefix`, which needs to hold only
/// the first `header_size` bytes of the package (more is ignored).
///
/// Checks the magic, the format version, the header size, the header digest, the
/// identity and build id, the geometry, both tables' placement and bounds, every
/// segment (aligned, sorted, disjoint, inside the payload the total size declares),
/// that every entry point is in executable file bytes, and that every relocation slot
/// is 8-byte aligned inside the file bytes of a writable or RELRO segment. It does not
/// read the payload or check its digest.
pub fn parse_header(prefix: &[u8]) -> Result<Header<'_>> {
    let bytes = check_preamble(prefix)?;
    check_header_digest(bytes)?;
    let f = Fixed::new(bytes, at::FIXED_SIZE, WHAT)?;
    if !f.is_zero(at::RESERVED, 7) {
        return Err(FormatError::InvalidField {
            field: "header reserved bytes",
            value: at::RESERVED as u64,
            reason: "must be zero",
        });
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
    let header = Header {
        bytes,
        total_size,
        build_id,
        identity,
        geometry,
        segments,
        relocations,
    };
    let mut loaded = [EMPTY_SEGMENT; MAX_SEGMENTS];
    let n = check_segments(&header, payload_size, &mut loaded)?;
    let loaded = loaded.get(..n).unwrap_or(&[]);
    check_entries(&geometry, loaded)?;
    check_relocations(&header, loaded)?;
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
            reason: "no flags are defined in format version 1",
        });
    }
    let header_size = f.u32(at::HEADER_SIZE);
    if (header_size as usize) < at::FIXED_SIZE || header_size > MAX_HEADER_SIZE {
        return Err(FormatError::InvalidField {
            field: "header size",
            value: u64::from(header_size),
            reason: "must be between the fixed header (0x1a8) and 4 MiB",
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
    let payload: Digest = Sha256::digest(bytes.get(payload_at..).unwrap_or(&[])).into();
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

/// The bytes of a table of `count` entries of `entry_size` at `offset`, checked to be
/// 8-aligned inside the header's table area.
fn table<'a>(
    header: &'a [u8],
    name: &'static str,
    offset: u64,
    count: u64,
    entry_size: usize,
    max: usize,
) -> Result<&'a [u8]> {
    if count > max as u64 {
        return Err(FormatError::TooManyEntries {
            table: name,
            count,
            max: max as u64,
        });
    }
    // count <= max and entry_size are small: no overflow.
    let len = count.saturating_mul(entry_size as u64);
    let end = offset.saturating_add(len);
    let out_of_place = |reason| FormatError::TableOutOfPlace {
        table: name,
        start: offset,
        end,
        reason,
    };
    if !offset.is_multiple_of(8) {
        return Err(out_of_place("is not 8-byte aligned"));
    }
    if offset < at::FIXED_SIZE as u64 {
        return Err(out_of_place(
            "overlaps the fixed header (which ends at 0x1a8)",
        ));
    }
    let range = usize::try_from(offset).ok().zip(usize::try_from(end).ok());
    range
        .and_then(|(start, end)| header.get(start..end))
        .ok_or_else(|| out_of_place("runs past the end of the header"))
}

fn check_tables_disjoint(seg_at: u64, seg: &[u8], rel_at: u64, rel: &[u8]) -> Result<()> {
    let seg_end = seg_at.saturating_add(seg.len() as u64);
    let rel_end = rel_at.saturating_add(rel.len() as u64);
    if !seg.is_empty() && !rel.is_empty() && seg_at < rel_end && rel_at < seg_end {
        return Err(FormatError::TableOutOfPlace {
            table: "relocation table",
            start: rel_at,
            end: rel_end,
            reason: "overlaps the segment table",
        });
    }
    Ok(())
}

const EMPTY_SEGMENT: Segment = Segment {
    payload_offset: 0,
    vaddr: 0,
    file_size: 0,
    mem_size: 0,
    flags: SegmentFlags::empty(),
};

/// Checks every segment, storing them in `out`; returns how many there are.
fn check_segments(
    h: &Header<'_>,
    payload_size: u64,
    out: &mut [Segment; MAX_SEGMENTS],
) -> Result<usize> {
    let mut r = Reader::new(h.segments, "segment table");
    let mut mem_end = h.geometry.link_base;
    let mut file_end = 0u64;
    let mut n = 0usize;
    while r.remaining() > 0 {
        let index = n as u32;
        let fail = |problem| FormatError::Segment { index, problem };
        let (s, reserved) = read_segment(&mut r)?;
        if reserved != 0 {
            return Err(fail(SegmentProblem::ReservedNotZero));
        }
        if SegmentFlags::from_bits(s.flags.bits()).is_none() {
            return Err(fail(SegmentProblem::UnknownFlags {
                flags: s.flags.bits(),
            }));
        }
        if !is_page_aligned(s.vaddr) {
            return Err(fail(SegmentProblem::VaddrUnaligned { vaddr: s.vaddr }));
        }
        if s.mem_size == 0 {
            return Err(fail(SegmentProblem::Empty));
        }
        if s.file_size > s.mem_size {
            return Err(fail(SegmentProblem::FileLargerThanMemory {
                file_size: s.file_size,
                mem_size: s.mem_size,
            }));
        }
        let Some(end) = s.vaddr.checked_add(s.mem_size) else {
            return Err(fail(SegmentProblem::AddressOverflow {
                vaddr: s.vaddr,
                mem_size: s.mem_size,
            }));
        };
        if n == 0 && s.vaddr != h.geometry.link_base {
            return Err(fail(SegmentProblem::NotAtLinkBase {
                vaddr: s.vaddr,
                link_base: h.geometry.link_base,
            }));
        }
        if s.vaddr < mem_end {
            return Err(fail(SegmentProblem::MemoryOverlap {
                start: s.vaddr,
                previous_end: mem_end,
            }));
        }
        if !is_page_aligned(s.payload_offset) {
            return Err(fail(SegmentProblem::PayloadOffsetUnaligned {
                offset: s.payload_offset,
            }));
        }
        if s.payload_offset < file_end {
            return Err(fail(SegmentProblem::PayloadOverlap {
                start: s.payload_offset,
                previous_end: file_end,
            }));
        }
        let stored_end = s.payload_offset.checked_add(s.file_size);
        match stored_end {
            Some(e) if e <= payload_size => file_end = e,
            _ => {
                return Err(fail(SegmentProblem::PastPayload {
                    start: s.payload_offset,
                    end: s.payload_offset.saturating_add(s.file_size),
                    payload_size,
                }))
            }
        }
        mem_end = end;
        if let Some(slot) = out.get_mut(n) {
            *slot = s;
        }
        n = n.saturating_add(1);
    }
    if n == 0 {
        return Err(FormatError::InvalidField {
            field: "segment count",
            value: 0,
            reason: "a package needs at least one segment",
        });
    }
    let computed = page_align_up(mem_end)
        .and_then(|end| end.checked_sub(h.geometry.link_base))
        .unwrap_or(u64::MAX);
    if computed != h.geometry.image_span {
        return Err(FormatError::ImageSpan {
            declared: h.geometry.image_span,
            computed,
        });
    }
    if file_end != payload_size {
        return Err(FormatError::InvalidField {
            field: "payload size",
            value: payload_size,
            reason: "does not end where the last segment's file bytes end",
        });
    }
    Ok(n)
}

fn read_segment(r: &mut Reader<'_>) -> Result<(Segment, u32)> {
    let s = Segment {
        payload_offset: r.u64()?,
        vaddr: r.u64()?,
        file_size: r.u64()?,
        mem_size: r.u64()?,
        flags: SegmentFlags::from_bits_retain(r.u32()?),
    };
    Ok((s, r.u32()?))
}

fn read_relocation(r: &mut Reader<'_>) -> Result<Relocation> {
    Ok(Relocation {
        offset: r.u64()?,
        addend: r.i64()?,
    })
}

/// The segment whose memory contains `vaddr` (segments are sorted and disjoint).
fn segment_at(segments: &[Segment], vaddr: u64) -> Option<&Segment> {
    let i = segments.partition_point(|s| s.vaddr <= vaddr);
    segments
        .get(i.checked_sub(1)?)
        .filter(|s| vaddr < s.mem_end())
}

fn check_entries(g: &Geometry, segments: &[Segment]) -> Result<()> {
    for (entry, offset) in g.entries.named() {
        let inside = g.link_base.checked_add(offset).and_then(|v| {
            segment_at(segments, v).filter(|s| s.is_executable() && s.holds_file_bytes(v, 1))
        });
        if inside.is_none() {
            return Err(FormatError::EntryOutsideCode { entry, offset });
        }
    }
    Ok(())
}

fn check_relocations(h: &Header<'_>, segments: &[Segment]) -> Result<()> {
    for (i, rel) in h.relocations().enumerate() {
        let fail = |problem| FormatError::Relocation {
            index: i as u32,
            offset: rel.offset,
            problem,
        };
        if !rel.offset.is_multiple_of(8) {
            return Err(fail(RelocationProblem::Unaligned));
        }
        let ok = segment_at(segments, rel.offset)
            .is_some_and(|s| s.is_relocatable() && s.holds_file_bytes(rel.offset, 8));
        if !ok {
            return Err(fail(RelocationProblem::OutsideWritableSegment));
        }
    }
    Ok(())
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
