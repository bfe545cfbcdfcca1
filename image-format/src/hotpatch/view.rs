//! [`PatchView`]: a patch that [`super::parse`] validated, and its accessors.
//!
//! Every accessor reads fields the parser checked; none can fail or panic (a read
//! outside the checked bytes returns an empty or zero value, which cannot happen after
//! a successful parse).
#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use super::format::{
    DataBlock, Function, FunctionKind, PatchId, RelocKind, RelocTarget, Relocation, Site,
    TargetImage, ORIGINAL_LEN,
};
use super::layout as at;
use crate::error::Digest;
use crate::identity::Label;
use crate::wire::Fixed;

const WHAT: &str = "patch header";

/// A validated patch. Borrows the patch bytes.
#[derive(Debug, Clone)]
pub struct PatchView<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) after: &'a [u8],
    pub(super) svn: u32,
    pub(super) header_size: usize,
    pub(super) payload: &'a [u8],
    pub(super) id: PatchId,
    pub(super) version: u32,
    pub(super) label: Label,
    pub(super) target: TargetImage,
    pub(super) code_size: u32,
    pub(super) data_offset: u32,
    pub(super) data_size: u32,
    pub(super) functions: &'a [u8],
    pub(super) data: &'a [u8],
    pub(super) relocations: &'a [u8],
    pub(super) strings: &'a [u8],
}

impl<'a> PatchView<'a> {
    /// The patch id (derived from the payload digest).
    pub fn id(&self) -> PatchId {
        self.id
    }

    /// The version (sequence number) the generator gave the patch.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The human label.
    pub fn label(&self) -> &Label {
        &self.label
    }

    /// The image this patch applies to.
    pub fn target(&self) -> &TargetImage {
        &self.target
    }

    /// The header digest stored in (and checked against) the header.
    pub fn header_digest(&self) -> Digest {
        Fixed::new(self.bytes, at::FIXED_SIZE, WHAT).map_or([0; 32], |f| f.array(at::HEADER_DIGEST))
    }

    /// The payload digest stored in (and checked against) the header.
    pub fn payload_digest(&self) -> Digest {
        Fixed::new(self.bytes, at::FIXED_SIZE, WHAT)
            .map_or([0; 32], |f| f.array(at::PAYLOAD_DIGEST))
    }

    /// Header size in bytes.
    pub fn header_size(&self) -> usize {
        self.header_size
    }

    /// The whole patch, `[0, total_size)`, without its signature trailer.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// What followed the patch: its signature trailer, or nothing (read it with
    /// [`crate::signature::find`]).
    pub fn trailer(&self) -> &'a [u8] {
        self.after
    }

    /// The security version of the build the patch's code comes from.
    pub fn svn(&self) -> u32 {
        self.svn
    }

    /// The payload: code region, then (when there is data) padding and data region.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// Size of the code region, `payload[0, code_size)` (map it executable).
    pub fn code_size(&self) -> u32 {
        self.code_size
    }

    /// The data region, `payload[data_offset, data_offset + data_size)` (map it
    /// read-only once relocated). Its offset is a multiple of 4 KiB.
    pub fn data_region(&self) -> (u32, u32) {
        (self.data_offset, self.data_size)
    }

    /// Number of function entries.
    pub fn function_count(&self) -> usize {
        self.functions.len() / at::function::SIZE
    }

    /// Function entry `index`.
    pub fn function(&self, index: usize) -> Option<Function<'a>> {
        let start = index.checked_mul(at::function::SIZE)?;
        let entry = self.functions.get(start..)?;
        let f = Fixed::new(entry, at::function::SIZE, "function entry").ok()?;
        let kind = FunctionKind::from_code(f.u8(at::function::KIND))?;
        let site = match kind {
            FunctionKind::Replace => Some(Site {
                offset: f.u64(at::function::SITE),
                old_size: f.u32(at::function::OLD_SIZE),
                original: f.array::<ORIGINAL_LEN>(at::function::ORIGINAL),
            }),
            FunctionKind::New => None,
        };
        Some(Function {
            kind,
            name: self.name(
                f.u32(at::function::NAME_OFFSET),
                f.u32(at::function::NAME_LEN),
            ),
            code_offset: f.u32(at::function::CODE_OFFSET),
            code_size: f.u32(at::function::CODE_SIZE),
            site,
        })
    }

    /// Every function entry: replace entries (sorted by site), then new ones.
    pub fn functions(&self) -> impl Iterator<Item = Function<'a>> + '_ {
        (0..self.function_count()).filter_map(|i| self.function(i))
    }

    /// The code of `function` (an entry of this patch).
    pub fn code(&self, function: &Function<'_>) -> &'a [u8] {
        let start = function.code_offset as usize;
        self.payload
            .get(start..start.saturating_add(function.code_size as usize))
            .unwrap_or(&[])
    }

    /// Number of data blocks.
    pub fn data_count(&self) -> usize {
        self.data.len() / at::data::SIZE
    }

    /// Data block `index`.
    pub fn data_block(&self, index: usize) -> Option<DataBlock<'a>> {
        let start = index.checked_mul(at::data::SIZE)?;
        let f = Fixed::new(self.data.get(start..)?, at::data::SIZE, "data entry").ok()?;
        Some(DataBlock {
            name: self.name(f.u32(at::data::NAME_OFFSET), f.u32(at::data::NAME_LEN)),
            offset: f.u32(at::data::OFFSET),
            size: f.u32(at::data::SIZE_FIELD),
            align: f.u32(at::data::ALIGN),
        })
    }

    /// Every data block, sorted by offset.
    pub fn data_blocks(&self) -> impl Iterator<Item = DataBlock<'a>> + '_ {
        (0..self.data_count()).filter_map(|i| self.data_block(i))
    }

    /// Number of relocations.
    pub fn relocation_count(&self) -> usize {
        self.relocations.len() / at::relocation::SIZE
    }

    /// Relocation `index`.
    pub fn relocation(&self, index: usize) -> Option<Relocation<'a>> {
        let start = index.checked_mul(at::relocation::SIZE)?;
        let entry = self.relocations.get(start..)?;
        let f = Fixed::new(entry, at::relocation::SIZE, "relocation entry").ok()?;
        let kind = RelocKind::from_code(f.u8(at::relocation::KIND))?;
        let value = f.u64(at::relocation::TARGET);
        let target = match f.u8(at::relocation::TARGET_KIND) {
            1 => RelocTarget::Image(value),
            2 => RelocTarget::Payload(u32::try_from(value).ok()?),
            _ => return None,
        };
        Some(Relocation {
            place: f.u32(at::relocation::PLACE),
            kind,
            target,
            addend: i64::from_le_bytes(f.array(at::relocation::ADDEND)),
            symbol: self.name(
                f.u32(at::relocation::NAME_OFFSET),
                f.u32(at::relocation::NAME_LEN),
            ),
        })
    }

    /// Every relocation, sorted by place.
    pub fn relocations(&self) -> impl Iterator<Item = Relocation<'a>> + '_ {
        (0..self.relocation_count()).filter_map(|i| self.relocation(i))
    }

    /// A name from the string table (validated by the parser; `""` if out of range).
    fn name(&self, offset: u32, len: u32) -> &'a str {
        let start = offset as usize;
        self.strings
            .get(start..start.saturating_add(len as usize))
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// The raw bytes of a name, for the checker.
    pub(super) fn raw_name(&self, offset: u32, len: u32) -> Option<&'a [u8]> {
        let start = offset as usize;
        self.strings.get(start..start.checked_add(len as usize)?)
    }
}
