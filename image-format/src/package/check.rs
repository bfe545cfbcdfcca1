//! The rules of a package header's tables and description: where they lie, and what
//! each segment, entry point and relocation must satisfy (the tables in
//! `docs/FORMAT.md`).
//!
//! [`super::header::parse_header`] calls these in order after the header digest
//! verified; each returns the first rule broken, naming the entry.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use super::header::Relocations;
use super::image::{is_page_aligned, page_align_up, Geometry, Relocation, Segment, SegmentFlags};
use super::layout as at;
use super::{DESCRIPTION_MAGIC, MAX_DESCRIPTION, MAX_SEGMENTS, MIN_DESCRIPTION};
use crate::error::{DescriptionProblem, FormatError, RelocationProblem, Result, SegmentProblem};
use crate::wire::Reader;

/// The bytes of a table of `count` entries of `entry_size` at `offset`, checked to be
/// 8-aligned inside the header's table area.
pub(super) fn table<'a>(
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
    placed(
        header,
        name,
        offset,
        count.saturating_mul(entry_size as u64),
    )
}

/// The `len` bytes at `offset` of the header, checked to be 8-aligned inside the area
/// after the fixed header.
fn placed<'a>(header: &'a [u8], name: &'static str, offset: u64, len: u64) -> Result<&'a [u8]> {
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
            "overlaps the fixed header (which ends at 0x1b8)",
        ));
    }
    let range = usize::try_from(offset).ok().zip(usize::try_from(end).ok());
    range
        .and_then(|(start, end)| header.get(start..end))
        .ok_or_else(|| out_of_place("runs past the end of the header"))
}

/// Whether two non-empty ranges of the header, at `a_at` and `b_at`, share a byte.
fn overlap(a_at: u64, a: &[u8], b_at: u64, b: &[u8]) -> bool {
    let a_end = a_at.saturating_add(a.len() as u64);
    let b_end = b_at.saturating_add(b.len() as u64);
    !a.is_empty() && !b.is_empty() && a_at < b_end && b_at < a_end
}

pub(super) fn check_tables_disjoint(
    seg_at: u64,
    seg: &[u8],
    rel_at: u64,
    rel: &[u8],
) -> Result<()> {
    if overlap(seg_at, seg, rel_at, rel) {
        return Err(FormatError::TableOutOfPlace {
            table: "relocation table",
            start: rel_at,
            end: rel_at.saturating_add(rel.len() as u64),
            reason: "overlaps the segment table",
        });
    }
    Ok(())
}

/// The image description: `len` bytes at `offset`, placed like a table, apart from both
/// tables, of a length the format allows, starting with the description's magic and
/// stating its own length. Its content beyond that is the updater's to read.
pub(super) fn description<'a>(
    header: &'a [u8],
    offset: u64,
    len: u32,
    (seg_at, seg): (u64, &[u8]),
    (rel_at, rel): (u64, &[u8]),
) -> Result<&'a [u8]> {
    if !(MIN_DESCRIPTION..=MAX_DESCRIPTION).contains(&len) {
        return Err(FormatError::InvalidField {
            field: "description length",
            value: u64::from(len),
            reason: "must be between 16 bytes (magic, version, length) and 1 MiB",
        });
    }
    let name = "image description";
    let bytes = placed(header, name, offset, u64::from(len))?;
    let out_of_place = |reason| FormatError::TableOutOfPlace {
        table: name,
        start: offset,
        end: offset.saturating_add(u64::from(len)),
        reason,
    };
    if overlap(offset, bytes, seg_at, seg) {
        return Err(out_of_place("overlaps the segment table"));
    }
    if overlap(offset, bytes, rel_at, rel) {
        return Err(out_of_place("overlaps the relocation table"));
    }
    let mut r = Reader::new(bytes, name);
    let found: [u8; 8] = r.array()?;
    if found != DESCRIPTION_MAGIC {
        return Err(FormatError::Description {
            problem: DescriptionProblem::Magic { found },
        });
    }
    let _version = r.u32()?;
    let stated = r.u32()?;
    if stated != len {
        return Err(FormatError::Description {
            problem: DescriptionProblem::StatedLength {
                stated,
                header: len,
            },
        });
    }
    Ok(bytes)
}

pub(super) const EMPTY_SEGMENT: Segment = Segment {
    payload_offset: 0,
    vaddr: 0,
    file_size: 0,
    mem_size: 0,
    flags: SegmentFlags::empty(),
};

/// Checks every segment, storing them in `out`; returns how many there are.
pub(super) fn check_segments(
    table: &[u8],
    g: &Geometry,
    payload_size: u64,
    out: &mut [Segment; MAX_SEGMENTS],
) -> Result<usize> {
    let mut r = Reader::new(table, "segment table");
    let mut mem_end = g.link_base;
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
        if n == 0 && s.vaddr != g.link_base {
            return Err(fail(SegmentProblem::NotAtLinkBase {
                vaddr: s.vaddr,
                link_base: g.link_base,
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
        .and_then(|end| end.checked_sub(g.link_base))
        .unwrap_or(u64::MAX);
    if computed != g.image_span {
        return Err(FormatError::ImageSpan {
            declared: g.image_span,
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

pub(super) fn read_segment(r: &mut Reader<'_>) -> Result<(Segment, u32)> {
    let s = Segment {
        payload_offset: r.u64()?,
        vaddr: r.u64()?,
        file_size: r.u64()?,
        mem_size: r.u64()?,
        flags: SegmentFlags::from_bits_retain(r.u32()?),
    };
    Ok((s, r.u32()?))
}

pub(super) fn read_relocation(r: &mut Reader<'_>) -> Result<Relocation> {
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

pub(super) fn check_entries(g: &Geometry, segments: &[Segment]) -> Result<()> {
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

pub(super) fn check_relocations(relocations: Relocations<'_>, segments: &[Segment]) -> Result<()> {
    for (i, rel) in relocations.enumerate() {
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
