//! [`parse`]: untrusted bytes → a validated [`PatchView`] or a [`PatchError`] naming
//! the field.
//!
//! The checks run in an order that makes the first error the useful one: magic,
//! format version, header size, the header digest (so damage is reported as damage),
//! the sizes and the payload digest, then every header field, the table placement,
//! and every table entry (in [`super::check`]). After `parse` succeeds every accessor
//! returns values that satisfy the rules in `docs/HOTPATCH.md`.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use sha2::{Digest as _, Sha256};

use super::check;
use super::error::PatchError;
use super::format::{PatchId, TargetImage};
use super::layout as at;
pub use super::view::PatchView;
use super::{
    FORMAT_VERSION, MAGIC, MAX_DATA_BLOCKS, MAX_FUNCTIONS, MAX_HEADER_SIZE, MAX_PAYLOAD_SIZE,
    MAX_RELOCATIONS, MAX_STRING_TABLE,
};
use crate::build_id::BuildId;
use crate::error::{Digest, FormatError};
use crate::identity::Label;
use crate::package::MAX_IMAGE_SPAN;
use crate::signature::TRAILER_LEN;
use crate::wire::{Fixed, Reader};

const WHAT: &str = "patch header";

/// Reads and validates a whole patch (see the module doc for the order of checks).
pub fn parse(bytes: &[u8]) -> Result<PatchView<'_>, PatchError> {
    let header = check_preamble(bytes)?;
    check_header_digest(header)?;
    let f = Fixed::new(header, at::FIXED_SIZE, WHAT)?;
    let header_size = header.len();
    let reserved_ok = f.is_zero(at::RESERVED_1, 7) && f.is_zero(at::RESERVED_2, 4);
    if !reserved_ok {
        return Err(invalid("header reserved fields", 0, "must be zero"));
    }
    let payload = check_sizes(bytes, &f, header_size)?;
    let digest: Digest = Sha256::digest(payload).into();
    let stored: Digest = f.array(at::PAYLOAD_DIGEST);
    if stored != digest {
        return Err(FormatError::PayloadDigest {
            stored,
            computed: digest,
        }
        .into());
    }
    let id = PatchId::from_payload_digest(&digest);
    if f.u64(at::PATCH_ID) != id.0 {
        return Err(PatchError::PatchId {
            stored: f.u64(at::PATCH_ID),
            derived: id.0,
        });
    }
    let version = f.u32(at::PATCH_VERSION);
    if version == 0 {
        return Err(invalid("patch version", 0, "must be at least 1"));
    }
    let label = Label::from_bytes(f.array(at::LABEL))?;
    let target = read_target(&f)?;
    let (code_size, data_offset, data_size) = check_regions(&f, payload)?;
    let end = usize::try_from(f.u64(at::TOTAL_SIZE)).unwrap_or(usize::MAX);
    let (bytes, after) = bytes.split_at(end.min(bytes.len()));
    let mut view = PatchView {
        bytes,
        after,
        svn: f.u32(at::SVN),
        header_size,
        payload,
        id,
        version,
        label,
        target,
        code_size,
        data_offset,
        data_size,
        functions: &[],
        data: &[],
        relocations: &[],
        strings: &[],
    };
    read_tables(&mut view, &f, header)?;
    check::functions(&view)?;
    check::data_blocks(&view)?;
    check::relocations(&view)?;
    Ok(view)
}

/// The SHA-256 of the header bytes with the header digest field read as zeros.
pub(crate) fn header_digest(header: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(header.get(..at::HEADER_DIGEST).unwrap_or(&[]));
    h.update([0u8; 32]);
    h.update(header.get(at::PAYLOAD_DIGEST..).unwrap_or(&[]));
    h.finalize().into()
}

/// Where the payload starts for a header of `header_size` bytes: the next 16-byte
/// boundary.
pub(crate) fn payload_offset(header_size: usize) -> usize {
    header_size.saturating_add(15) & !15
}

/// Magic, version, flags and header size; returns the header bytes.
fn check_preamble(bytes: &[u8]) -> Result<&[u8], PatchError> {
    let magic: [u8; 8] = Reader::new(bytes, WHAT).array()?;
    if magic != MAGIC {
        return Err(FormatError::BadMagic {
            what: "hotkernel patch",
            expected: MAGIC,
            found: magic,
        }
        .into());
    }
    let f = Fixed::new(bytes, at::TOTAL_SIZE, WHAT)?;
    let version = f.u16(at::FORMAT_VERSION);
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion {
            what: "patch format",
            found: u32::from(version),
            supported: u32::from(FORMAT_VERSION),
        }
        .into());
    }
    let flags = f.u16(at::FLAGS);
    if flags != 0 {
        return Err(invalid(
            "patch flags",
            u64::from(flags),
            "no flags are defined in patch format version 1",
        ));
    }
    let header_size = f.u32(at::HEADER_SIZE);
    if (header_size as usize) < at::FIXED_SIZE || header_size > MAX_HEADER_SIZE {
        return Err(invalid(
            "patch header size",
            u64::from(header_size),
            "must be between the fixed header (0x150) and 4 MiB",
        ));
    }
    bytes.get(..header_size as usize).ok_or_else(|| {
        FormatError::Truncated {
            what: WHAT,
            needed: u64::from(header_size),
            got: bytes.len() as u64,
        }
        .into()
    })
}

fn check_header_digest(header: &[u8]) -> Result<(), PatchError> {
    let stored = Fixed::new(header, at::FIXED_SIZE, WHAT)?.array(at::HEADER_DIGEST);
    let computed = header_digest(header);
    if stored == computed {
        Ok(())
    } else {
        Err(FormatError::HeaderDigest { stored, computed }.into())
    }
}

/// Total size against the bytes, zero padding after the header; returns the payload.
fn check_sizes<'a>(
    bytes: &'a [u8],
    f: &Fixed<'_>,
    header_size: usize,
) -> Result<&'a [u8], PatchError> {
    let total = f.u64(at::TOTAL_SIZE);
    let payload_at = payload_offset(header_size);
    let Some(payload_size) = total.checked_sub(payload_at as u64) else {
        return Err(invalid(
            "patch total size",
            total,
            "is smaller than the header padded to 16 bytes",
        ));
    };
    if payload_size > MAX_PAYLOAD_SIZE {
        return Err(FormatError::TooLarge {
            what: "patch payload",
            size: payload_size,
            holder: "hotpatch area",
            capacity: MAX_PAYLOAD_SIZE,
        }
        .into());
    }
    let got = bytes.len() as u64;
    if got < total {
        return Err(FormatError::Truncated {
            what: "patch",
            needed: total,
            got,
        }
        .into());
    }
    // What follows the patch is its signature trailer (or nothing), which
    // `signature::find` reads and the guest verifies.
    if got != total && got != total.saturating_add(TRAILER_LEN as u64) {
        return Err(FormatError::SizeMismatch {
            what: "patch",
            declared: total,
            got,
        }
        .into());
    }
    let padding = bytes.get(header_size..payload_at).unwrap_or(&[]);
    if let Some(i) = padding.iter().position(|&b| b != 0) {
        return Err(invalid(
            "padding after the patch header at offset",
            header_size.saturating_add(i) as u64,
            "is not zero",
        ));
    }
    let end = usize::try_from(total).unwrap_or(usize::MAX);
    Ok(bytes.get(payload_at..end).unwrap_or(&[]))
}

fn read_target(f: &Fixed<'_>) -> Result<TargetImage, PatchError> {
    let build_id =
        BuildId::from_parts(f.u8(at::TARGET_BUILD_ID_LEN), f.array(at::TARGET_BUILD_ID))?;
    if build_id.is_empty() {
        return Err(invalid(
            "target build id length",
            0,
            "a patch is bound to an image by its build id; it cannot be empty",
        ));
    }
    let text_offset = f.u64(at::TARGET_TEXT_OFFSET);
    let text_size = f.u64(at::TARGET_TEXT_SIZE);
    if text_size == 0 {
        return Err(invalid("target text size", 0, "must not be 0"));
    }
    if text_offset
        .checked_add(text_size)
        .is_none_or(|end| end > MAX_IMAGE_SPAN)
    {
        return Err(invalid(
            "target text offset",
            text_offset,
            "plus the text size lies beyond the largest image (256 MiB)",
        ));
    }
    Ok(TargetImage {
        build_id,
        header_hash: f.array(at::TARGET_HEADER_HASH),
        text_hash: f.array(at::TARGET_TEXT_HASH),
        text_offset,
        text_size,
    })
}

/// Code and data regions against the payload; returns (code size, data offset, data size).
fn check_regions(f: &Fixed<'_>, payload: &[u8]) -> Result<(u32, u32, u32), PatchError> {
    let code_size = f.u32(at::CODE_SIZE);
    let data_offset = f.u32(at::DATA_OFFSET);
    let data_size = f.u32(at::DATA_SIZE);
    let payload_size = payload.len() as u64;
    if code_size == 0 {
        return Err(invalid(
            "code size",
            0,
            "a patch holds at least one function",
        ));
    }
    let expected_data_offset = (u64::from(code_size).saturating_add(4095)) & !4095;
    if u64::from(data_offset) != expected_data_offset {
        return Err(invalid(
            "data offset",
            u64::from(data_offset),
            "must be the code size rounded up to 4 KiB",
        ));
    }
    let expected_size = if data_size == 0 {
        u64::from(code_size)
    } else {
        u64::from(data_offset).saturating_add(u64::from(data_size))
    };
    if payload_size != expected_size {
        return Err(invalid(
            "payload size",
            payload_size,
            "is not the code region (plus, when there is data, the padding to 4 KiB and the data region)",
        ));
    }
    if data_size != 0 {
        let padding = payload
            .get(code_size as usize..data_offset as usize)
            .unwrap_or(&[]);
        if let Some(i) = padding.iter().position(|&b| b != 0) {
            return Err(invalid(
                "padding between code and data at payload offset",
                u64::from(code_size).saturating_add(i as u64),
                "is not zero",
            ));
        }
    }
    Ok((code_size, data_offset, data_size))
}

fn read_tables<'a>(
    view: &mut PatchView<'a>,
    f: &Fixed<'_>,
    header: &'a [u8],
) -> Result<(), PatchError> {
    let specs = [
        (
            "function table",
            f.u64(at::FUNCTION_TABLE),
            u64::from(f.u32(at::FUNCTION_COUNT)),
            at::function::SIZE,
            MAX_FUNCTIONS,
            8u64,
        ),
        (
            "data table",
            f.u64(at::DATA_TABLE),
            u64::from(f.u32(at::DATA_COUNT)),
            at::data::SIZE,
            MAX_DATA_BLOCKS,
            8,
        ),
        (
            "relocation table",
            f.u64(at::RELOCATION_TABLE),
            u64::from(f.u32(at::RELOCATION_COUNT)),
            at::relocation::SIZE,
            MAX_RELOCATIONS,
            8,
        ),
        (
            "string table",
            f.u64(at::STRING_TABLE),
            u64::from(f.u32(at::STRING_TABLE_SIZE)),
            1,
            MAX_STRING_TABLE,
            1,
        ),
    ];
    let mut tables: [(&'static str, u64, &[u8]); 4] = [("", 0, &[]); 4];
    for (slot, (name, offset, count, entry, max, align)) in tables.iter_mut().zip(specs) {
        *slot = (
            name,
            offset,
            table(header, name, offset, count, entry, max, align)?,
        );
    }
    for (i, a) in tables.iter().enumerate() {
        for b in tables.iter().skip(i.saturating_add(1)) {
            let (a_end, b_end) = (
                a.1.saturating_add(a.2.len() as u64),
                b.1.saturating_add(b.2.len() as u64),
            );
            if !a.2.is_empty() && !b.2.is_empty() && a.1 < b_end && b.1 < a_end {
                return Err(FormatError::TableOutOfPlace {
                    table: b.0,
                    start: b.1,
                    end: b_end,
                    reason: "overlaps another table",
                }
                .into());
            }
        }
    }
    let [functions, data, relocations, strings] = tables;
    view.functions = functions.2;
    view.data = data.2;
    view.relocations = relocations.2;
    view.strings = strings.2;
    Ok(())
}

/// The bytes of a table of `count` entries of `entry_size` at `offset`, checked to be
/// aligned inside the header's table area.
fn table<'a>(
    header: &'a [u8],
    name: &'static str,
    offset: u64,
    count: u64,
    entry_size: usize,
    max: usize,
    align: u64,
) -> Result<&'a [u8], PatchError> {
    if count > max as u64 {
        return Err(FormatError::TooManyEntries {
            table: name,
            count,
            max: max as u64,
        }
        .into());
    }
    let len = count.saturating_mul(entry_size as u64);
    let end = offset.saturating_add(len);
    let out_of_place = |reason| -> PatchError {
        FormatError::TableOutOfPlace {
            table: name,
            start: offset,
            end,
            reason,
        }
        .into()
    };
    if !offset.is_multiple_of(align) {
        return Err(out_of_place("is not 8-byte aligned"));
    }
    if offset < at::FIXED_SIZE as u64 {
        return Err(out_of_place(
            "overlaps the fixed patch header (which ends at 0x150)",
        ));
    }
    let range = usize::try_from(offset).ok().zip(usize::try_from(end).ok());
    range
        .and_then(|(start, end)| header.get(start..end))
        .ok_or_else(|| out_of_place("runs past the end of the header"))
}

fn invalid(field: &'static str, value: u64, reason: &'static str) -> PatchError {
    FormatError::InvalidField {
        field,
        value,
        reason,
    }
    .into()
}
