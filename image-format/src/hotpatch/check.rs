//! The per-entry rules of the three patch tables, run by [`super::parse`] after the
//! header and the table placement were checked.
//!
//! - functions: known kind, zero reserved bytes, a UTF-8 name, code that is 16-aligned,
//!   non-empty, inside the code region and in increasing order; replace entries first,
//!   with sites of at least 5 bytes inside the target's text, sorted and disjoint; new
//!   entries without a site. At least one replace entry.
//! - data blocks: non-empty, power-of-two alignment ≤ 4096, aligned, inside the data
//!   region, in increasing order.
//! - relocations: known type and target kind, sorted by place with disjoint fields,
//!   each field inside one function's code or one data block, payload targets inside
//!   (or at the end of) a function or data block, image targets inside the largest
//!   image.
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use super::error::{DataProblem, FunctionProblem, NameProblem, PatchError, RelocationProblem};
use super::format::{FunctionKind, RelocKind, JUMP_LEN, ORIGINAL_LEN};
use super::layout as at;
use super::parse::PatchView;
use crate::error::FormatError;
use crate::package::MAX_IMAGE_SPAN;
use crate::wire::Fixed;

/// A checked name reference.
fn name(view: &PatchView<'_>, offset: u32, len: u32, required: bool) -> Result<(), NameProblem> {
    let Some(bytes) = view.raw_name(offset, len) else {
        return Err(NameProblem::OutsideStringTable {
            offset,
            len,
            table_size: view.strings.len() as u32,
        });
    };
    if required && bytes.is_empty() {
        return Err(NameProblem::Empty);
    }
    core::str::from_utf8(bytes).map_err(|e| NameProblem::NotUtf8 {
        at: e.valid_up_to() as u32,
    })?;
    Ok(())
}

pub(super) fn functions(view: &PatchView<'_>) -> Result<(), PatchError> {
    let text_start = view.target().text_offset;
    let text_end = text_start.saturating_add(view.target().text_size);
    let code_size = view.code_size();
    let mut code_end = 0u64;
    let mut site_end = 0u64;
    let mut seen_new = false;
    let mut replaced = 0usize;
    for (i, entry) in view
        .functions
        .as_chunks::<{ at::function::SIZE }>()
        .0
        .iter()
        .enumerate()
    {
        let index = i as u32;
        let fail = |problem| PatchError::Function { index, problem };
        let f = Fixed::new(entry.as_slice(), at::function::SIZE, "function entry")?;
        let Some(kind) = FunctionKind::from_code(f.u8(at::function::KIND)) else {
            return Err(fail(FunctionProblem::UnknownKind {
                code: f.u8(at::function::KIND),
            }));
        };
        if !f.is_zero(at::function::RESERVED, 3) {
            return Err(fail(FunctionProblem::ReservedNotZero));
        }
        name(
            view,
            f.u32(at::function::NAME_OFFSET),
            f.u32(at::function::NAME_LEN),
            true,
        )
        .map_err(|p| fail(FunctionProblem::Name(p)))?;
        let offset = f.u32(at::function::CODE_OFFSET);
        let size = f.u32(at::function::CODE_SIZE);
        if size == 0 {
            return Err(fail(FunctionProblem::CodeEmpty));
        }
        if !offset.is_multiple_of(16) {
            return Err(fail(FunctionProblem::CodeUnaligned { offset }));
        }
        let end = u64::from(offset).saturating_add(u64::from(size));
        if end > u64::from(code_size) {
            return Err(fail(FunctionProblem::CodeOutsideRegion {
                start: u64::from(offset),
                end,
                code_size,
            }));
        }
        if u64::from(offset) < code_end {
            return Err(fail(FunctionProblem::CodeOverlap {
                start: offset,
                previous_end: code_end,
            }));
        }
        code_end = end;
        let site = f.u64(at::function::SITE);
        let old_size = f.u32(at::function::OLD_SIZE);
        match kind {
            FunctionKind::Replace => {
                if seen_new {
                    return Err(fail(FunctionProblem::ReplaceAfterNew));
                }
                replaced = replaced.saturating_add(1);
                if (old_size as usize) < JUMP_LEN {
                    return Err(fail(FunctionProblem::SiteTooSmall { old_size }));
                }
                let end = site
                    .saturating_add(u64::from(old_size))
                    .max(site.saturating_add(ORIGINAL_LEN as u64));
                if site < text_start || end > text_end {
                    return Err(fail(FunctionProblem::SiteOutsideText {
                        start: site,
                        end,
                        text_start,
                        text_end,
                    }));
                }
                if site < site_end {
                    return Err(fail(FunctionProblem::SiteOverlap {
                        start: site,
                        previous_end: site_end,
                    }));
                }
                site_end = site.saturating_add(u64::from(old_size));
            }
            FunctionKind::New => {
                seen_new = true;
                if site != 0 || old_size != 0 || !f.is_zero(at::function::ORIGINAL, ORIGINAL_LEN) {
                    return Err(fail(FunctionProblem::NewHasSite));
                }
            }
        }
    }
    if replaced == 0 {
        return Err(FormatError::InvalidField {
            field: "function table: replace entries",
            value: 0,
            reason: "a patch replaces at least one function",
        }
        .into());
    }
    Ok(())
}

pub(super) fn data_blocks(view: &PatchView<'_>) -> Result<(), PatchError> {
    let (region_start, region_size) = view.data_region();
    let region_end = u64::from(region_start).saturating_add(u64::from(region_size));
    let mut previous_end = u64::from(region_start);
    for (i, entry) in view
        .data
        .as_chunks::<{ at::data::SIZE }>()
        .0
        .iter()
        .enumerate()
    {
        let index = i as u32;
        let fail = |problem| PatchError::Data { index, problem };
        let f = Fixed::new(entry.as_slice(), at::data::SIZE, "data entry")?;
        if f.u32(at::data::RESERVED) != 0 {
            return Err(fail(DataProblem::ReservedNotZero));
        }
        name(
            view,
            f.u32(at::data::NAME_OFFSET),
            f.u32(at::data::NAME_LEN),
            false,
        )
        .map_err(|p| fail(DataProblem::Name(p)))?;
        let offset = f.u32(at::data::OFFSET);
        let size = f.u32(at::data::SIZE_FIELD);
        let align = f.u32(at::data::ALIGN);
        if size == 0 {
            return Err(fail(DataProblem::Empty));
        }
        if !align.is_power_of_two() || align > 4096 {
            return Err(fail(DataProblem::BadAlign { align }));
        }
        if !offset.is_multiple_of(align) {
            return Err(fail(DataProblem::Unaligned { offset, align }));
        }
        let end = u64::from(offset).saturating_add(u64::from(size));
        if offset < region_start || end > region_end {
            return Err(fail(DataProblem::OutsideRegion {
                start: u64::from(offset),
                end,
                region_start,
                region_end,
            }));
        }
        if u64::from(offset) < previous_end {
            return Err(fail(DataProblem::Overlap {
                start: offset,
                previous_end,
            }));
        }
        previous_end = end;
    }
    Ok(())
}

/// Index of the last of `n` sorted blocks whose start is at or before `x`.
fn last_at_or_before(n: usize, start_of: impl Fn(usize) -> u64, x: u64) -> Option<usize> {
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = lo.midpoint(hi);
        if start_of(mid) <= x {
            lo = mid.saturating_add(1);
        } else {
            hi = mid;
        }
    }
    lo.checked_sub(1)
}

/// Whether `[start, end)` lies inside one function's code or one data block or, for a
/// target (`end == start`), whether `start` lies inside or at the end of one. Both
/// tables are sorted (checked before), so this is two binary searches.
fn in_block(view: &PatchView<'_>, start: u64, end: u64) -> bool {
    let holds = |s: u64, e: u64| {
        if end == start {
            s <= start && start <= e
        } else {
            s <= start && end <= e
        }
    };
    let function = |i: usize| {
        view.function(i)
            .map(|f| (u64::from(f.code_offset), f.code_size))
    };
    let data = |i: usize| view.data_block(i).map(|d| (u64::from(d.offset), d.size));
    let found_in = |n: usize, get: &dyn Fn(usize) -> Option<(u64, u32)>| {
        last_at_or_before(n, |i| get(i).map_or(u64::MAX, |b| b.0), start)
            .and_then(get)
            .is_some_and(|(s, size)| holds(s, s.saturating_add(u64::from(size))))
    };
    found_in(view.function_count(), &function) || found_in(view.data_count(), &data)
}

pub(super) fn relocations(view: &PatchView<'_>) -> Result<(), PatchError> {
    let mut previous_end = 0u64;
    for (i, entry) in view
        .relocations
        .as_chunks::<{ at::relocation::SIZE }>()
        .0
        .iter()
        .enumerate()
    {
        let index = i as u32;
        let f = Fixed::new(entry.as_slice(), at::relocation::SIZE, "relocation entry")?;
        let place = f.u32(at::relocation::PLACE);
        let fail = |problem| PatchError::Relocation {
            index,
            place,
            problem,
        };
        let Some(kind) = RelocKind::from_code(f.u8(at::relocation::KIND)) else {
            return Err(fail(RelocationProblem::UnknownKind {
                code: f.u8(at::relocation::KIND),
            }));
        };
        if f.u16(at::relocation::RESERVED) != 0 {
            return Err(fail(RelocationProblem::ReservedNotZero));
        }
        name(
            view,
            f.u32(at::relocation::NAME_OFFSET),
            f.u32(at::relocation::NAME_LEN),
            false,
        )
        .map_err(|p| fail(RelocationProblem::Name(p)))?;
        let start = u64::from(place);
        let end = start.saturating_add(u64::from(kind.width()));
        if start < previous_end {
            return Err(fail(RelocationProblem::OutOfOrder { previous_end }));
        }
        previous_end = end;
        if !in_block(view, start, end) {
            return Err(fail(RelocationProblem::FieldOutsideBlocks {
                width: kind.width(),
            }));
        }
        let target = f.u64(at::relocation::TARGET);
        match f.u8(at::relocation::TARGET_KIND) {
            1 => {
                if target >= MAX_IMAGE_SPAN {
                    return Err(fail(RelocationProblem::ImageTargetTooFar {
                        target,
                        limit: MAX_IMAGE_SPAN,
                    }));
                }
            }
            2 => {
                if !in_block(view, target, target) {
                    return Err(fail(RelocationProblem::PayloadTargetOutside { target }));
                }
            }
            code => return Err(fail(RelocationProblem::UnknownTargetKind { code })),
        }
    }
    Ok(())
}
