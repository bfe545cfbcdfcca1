//! [`PatchError`]: why some bytes are not a valid patch.
//!
//! Problems a patch shares with the update package (truncation, magic, version,
//! digests, table placement, label, build id) are a [`FormatError`]; problems with one
//! entry of a patch table name the table, the entry's index and what is wrong, e.g.
//! "function 2: site 0x9a00..0x9a03 is shorter than the 5-byte jump".

use core::fmt;

use crate::error::FormatError;

/// Why patch bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatchError {
    /// A problem shared with the package format (see [`FormatError`]).
    Format(FormatError),
    /// The patch id is not derived from the payload digest.
    PatchId {
        /// The id in the header.
        stored: u64,
        /// The first 8 bytes of the payload digest, little-endian.
        derived: u64,
    },
    /// A function entry is malformed.
    Function {
        /// Index in the function table.
        index: u32,
        /// What is wrong with it.
        problem: FunctionProblem,
    },
    /// A data block entry is malformed.
    Data {
        /// Index in the data table.
        index: u32,
        /// What is wrong with it.
        problem: DataProblem,
    },
    /// A relocation entry is malformed.
    Relocation {
        /// Index in the relocation table.
        index: u32,
        /// Its place (payload offset of the field).
        place: u32,
        /// What is wrong with it.
        problem: RelocationProblem,
    },
}

impl From<FormatError> for PatchError {
    fn from(e: FormatError) -> Self {
        Self::Format(e)
    }
}

/// What is wrong with a name (offset and length into the string table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameProblem {
    /// The name does not lie inside the string table.
    OutsideStringTable {
        /// Offset in the string table.
        offset: u32,
        /// Length.
        len: u32,
        /// The string table's size.
        table_size: u32,
    },
    /// The name is not UTF-8.
    NotUtf8 {
        /// Byte position in the name where decoding fails.
        at: u32,
    },
    /// The name is empty where one is required.
    Empty,
}

/// What is wrong with a function entry (see [`PatchError::Function`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FunctionProblem {
    /// The kind is neither 1 (replace) nor 2 (new).
    UnknownKind {
        /// The kind byte.
        code: u8,
    },
    /// A reserved field is not zero.
    ReservedNotZero,
    /// The name is malformed.
    Name(NameProblem),
    /// The code size is 0.
    CodeEmpty,
    /// The code offset is not a multiple of 16.
    CodeUnaligned {
        /// The offset.
        offset: u32,
    },
    /// The code does not lie inside the code region.
    CodeOutsideRegion {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// The code region's size.
        code_size: u32,
    },
    /// The code starts before the previous function's code ends.
    CodeOverlap {
        /// Start of this function's code.
        start: u32,
        /// End of the previous function's code.
        previous_end: u64,
    },
    /// A replace entry follows a new entry.
    ReplaceAfterNew,
    /// The old function is shorter than the jump written at its entry.
    SiteTooSmall {
        /// The old function's size.
        old_size: u32,
    },
    /// The site (its 16 original bytes and the old function) is not inside the
    /// target's text.
    SiteOutsideText {
        /// Site.
        start: u64,
        /// End of the old function or of the original bytes, whichever is later.
        end: u64,
        /// Start of the text (image-relative).
        text_start: u64,
        /// End of the text.
        text_end: u64,
    },
    /// The site lies before the end of the previous replaced function.
    SiteOverlap {
        /// Site.
        start: u64,
        /// End of the previous replaced function.
        previous_end: u64,
    },
    /// A new function has a site, an old size or original bytes.
    NewHasSite,
}

/// What is wrong with a data block entry (see [`PatchError::Data`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataProblem {
    /// The size is 0.
    Empty,
    /// The alignment is not a power of two of at most 4096.
    BadAlign {
        /// The alignment.
        align: u32,
    },
    /// The offset is not a multiple of the alignment.
    Unaligned {
        /// The offset.
        offset: u32,
        /// The alignment.
        align: u32,
    },
    /// The block does not lie inside the data region.
    OutsideRegion {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
        /// Start of the data region.
        region_start: u32,
        /// End of the data region.
        region_end: u64,
    },
    /// The block starts before the previous block ends.
    Overlap {
        /// Start of this block.
        start: u32,
        /// End of the previous block.
        previous_end: u64,
    },
    /// A reserved field is not zero.
    ReservedNotZero,
    /// The name is malformed.
    Name(NameProblem),
}

/// What is wrong with a relocation entry (see [`PatchError::Relocation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelocationProblem {
    /// The type is neither 1 (pc32) nor 2 (abs64).
    UnknownKind {
        /// The type byte.
        code: u8,
    },
    /// The target kind is neither 1 (image) nor 2 (payload).
    UnknownTargetKind {
        /// The target kind byte.
        code: u8,
    },
    /// A reserved field is not zero.
    ReservedNotZero,
    /// The field starts before the previous relocation's field ends.
    OutOfOrder {
        /// End of the previous field.
        previous_end: u64,
    },
    /// The field is not wholly inside one function's code or one data block.
    FieldOutsideBlocks {
        /// The field's width.
        width: u32,
    },
    /// A payload target is not inside (or at the end of) a function or data block.
    PayloadTargetOutside {
        /// The target.
        target: u64,
    },
    /// An image target lies beyond the largest image.
    ImageTargetTooFar {
        /// The target.
        target: u64,
        /// The largest image span.
        limit: u64,
    },
    /// The symbol name is malformed.
    Name(NameProblem),
}

impl fmt::Display for PatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Format(e) => write!(f, "{e}"),
            Self::PatchId { stored, derived } => write!(
                f,
                "patch id {stored:016x} is not the payload digest's {derived:016x}; the patch was damaged or edited, rebuild it with `hotkernel patch make`"
            ),
            Self::Function { index, problem } => write!(f, "function {index}: {problem}"),
            Self::Data { index, problem } => write!(f, "data block {index}: {problem}"),
            Self::Relocation {
                index,
                place,
                problem,
            } => write!(f, "relocation {index} at payload {place:#x}: {problem}"),
        }
    }
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::OutsideStringTable {
                offset,
                len,
                table_size,
            } => write!(
                f,
                "name {offset:#x}+{len:#x} runs past the string table ({table_size:#x} bytes)"
            ),
            Self::NotUtf8 { at } => write!(f, "name is not UTF-8 at byte {at}"),
            Self::Empty => write!(f, "name is empty"),
        }
    }
}

impl fmt::Display for FunctionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnknownKind { code } => {
                write!(f, "kind {code} is neither 1 (replace) nor 2 (new)")
            }
            Self::ReservedNotZero => write!(f, "reserved bytes are not zero"),
            Self::Name(p) => write!(f, "{p}"),
            Self::CodeEmpty => write!(f, "code size is 0"),
            Self::CodeUnaligned { offset } => {
                write!(f, "code offset {offset:#x} is not a multiple of 16")
            }
            Self::CodeOutsideRegion {
                start,
                end,
                code_size,
            } => write!(
                f,
                "code {start:#x}..{end:#x} is not inside the code region (0..{code_size:#x})"
            ),
            Self::CodeOverlap {
                start,
                previous_end,
            } => write!(
                f,
                "code starts at {start:#x}, before the previous function's code ends ({previous_end:#x}); functions must be stored in order"
            ),
            Self::ReplaceAfterNew => write!(
                f,
                "a replace entry follows a new entry; replace entries come first"
            ),
            Self::SiteTooSmall { old_size } => write!(
                f,
                "the old function is {old_size} bytes, shorter than the 5-byte jump written at its entry"
            ),
            Self::SiteOutsideText {
                start,
                end,
                text_start,
                text_end,
            } => write!(
                f,
                "site {start:#x}..{end:#x} is not inside the target's text {text_start:#x}..{text_end:#x}"
            ),
            Self::SiteOverlap {
                start,
                previous_end,
            } => write!(
                f,
                "site {start:#x} lies before the end of the previous replaced function ({previous_end:#x}); sites must be sorted and disjoint"
            ),
            Self::NewHasSite => write!(
                f,
                "a new function has a site, an old size or original bytes (they must be zero)"
            ),
        }
    }
}

impl fmt::Display for DataProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Empty => write!(f, "size is 0"),
            Self::BadAlign { align } => write!(
                f,
                "alignment {align} is not a power of two of at most 4096"
            ),
            Self::Unaligned { offset, align } => {
                write!(f, "offset {offset:#x} is not a multiple of its alignment {align}")
            }
            Self::OutsideRegion {
                start,
                end,
                region_start,
                region_end,
            } => write!(
                f,
                "bytes {start:#x}..{end:#x} are not inside the data region {region_start:#x}..{region_end:#x}"
            ),
            Self::Overlap {
                start,
                previous_end,
            } => write!(
                f,
                "starts at {start:#x}, before the previous block ends ({previous_end:#x}); blocks must be stored in order"
            ),
            Self::ReservedNotZero => write!(f, "reserved field is not zero"),
            Self::Name(p) => write!(f, "{p}"),
        }
    }
}

impl fmt::Display for RelocationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::UnknownKind { code } => {
                write!(f, "type {code} is neither 1 (pc32) nor 2 (abs64)")
            }
            Self::UnknownTargetKind { code } => write!(
                f,
                "target kind {code} is neither 1 (image) nor 2 (payload)"
            ),
            Self::ReservedNotZero => write!(f, "reserved field is not zero"),
            Self::OutOfOrder { previous_end } => write!(
                f,
                "the field starts before the previous relocation's field ends ({previous_end:#x}); relocations must be sorted by place and disjoint"
            ),
            Self::FieldOutsideBlocks { width } => write!(
                f,
                "the {width}-byte field is not wholly inside one function's code or one data block"
            ),
            Self::PayloadTargetOutside { target } => write!(
                f,
                "payload target {target:#x} is not inside a function or data block of this patch"
            ),
            Self::ImageTargetTooFar { target, limit } => write!(
                f,
                "image target {target:#x} lies beyond the largest image ({limit:#x} bytes)"
            ),
            Self::Name(p) => write!(f, "symbol {p}"),
        }
    }
}

impl core::error::Error for PatchError {}
