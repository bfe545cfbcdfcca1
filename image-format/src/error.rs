//! [`FormatError`]: why some bytes are not a valid package, identity, mailbox block or
//! report.
//!
//! Every parser in this crate returns it. Each variant names the structure or field
//! and carries the numbers involved, so the `Display` text tells a user what is wrong
//! and where, e.g. "segment 2: file range 0x1000..0x9000 runs past the end of the
//! payload (0x8000 bytes)". The mailbox maps a variant to a stable reason code with
//! [`crate::mailbox::Status::from_error`].

use core::fmt;

/// `Result` with [`FormatError`] as the default error.
pub type Result<T, E = FormatError> = core::result::Result<T, E>;

/// A SHA-256 digest.
pub type Digest = [u8; 32];

/// Why bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// The bytes end before the structure does.
    Truncated {
        /// The structure being read, e.g. "package header".
        what: &'static str,
        /// Bytes the structure needs.
        needed: u64,
        /// Bytes there were.
        got: u64,
    },
    /// The first eight bytes are not the structure's magic.
    BadMagic {
        /// The structure being read.
        what: &'static str,
        /// The magic it must start with.
        expected: [u8; 8],
        /// What it starts with.
        found: [u8; 8],
    },
    /// A format or layout version this code does not understand.
    UnsupportedVersion {
        /// The structure being read, e.g. "package format".
        what: &'static str,
        /// The version in the bytes.
        found: u32,
        /// The one version this code reads.
        supported: u32,
    },
    /// The structure declares a size other than the number of bytes given.
    SizeMismatch {
        /// The structure being read.
        what: &'static str,
        /// The size it declares.
        declared: u64,
        /// The bytes given.
        got: u64,
    },
    /// The structure does not fit the buffer meant to hold it.
    TooLarge {
        /// The structure, e.g. "package".
        what: &'static str,
        /// Its size in bytes.
        size: u64,
        /// The buffer, e.g. "staging buffer".
        holder: &'static str,
        /// The buffer's capacity in bytes.
        capacity: u64,
    },
    /// A table or list has more entries than the format allows.
    TooManyEntries {
        /// The table, e.g. "segment table".
        table: &'static str,
        /// Its declared entry count.
        count: u64,
        /// The format's limit.
        max: u64,
    },
    /// A table does not lie inside the header's table area, or overlaps another table.
    TableOutOfPlace {
        /// The table.
        table: &'static str,
        /// Its first byte.
        start: u64,
        /// One past its last byte (saturated if it overflows).
        end: u64,
        /// What is wrong with that range.
        reason: &'static str,
    },
    /// A field holds a value the format does not allow.
    InvalidField {
        /// The field, e.g. "link base".
        field: &'static str,
        /// The value found.
        value: u64,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The label is not NUL-padded UTF-8 of at most 48 bytes.
    Label {
        /// Byte position of the problem.
        at: u32,
        /// What is wrong there.
        reason: &'static str,
    },
    /// An entry of the schema table is malformed.
    Schema {
        /// Index in the schema table.
        index: u32,
        /// The entry's record kind.
        kind: u16,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A segment is malformed or misplaced.
    Segment {
        /// Index in the segment table.
        index: u32,
        /// What is wrong with it.
        problem: SegmentProblem,
    },
    /// A relocation is malformed or targets the wrong place.
    Relocation {
        /// Index in the relocation table.
        index: u32,
        /// The relocation's slot address.
        offset: u64,
        /// What is wrong with it.
        problem: RelocationProblem,
    },
    /// An entry point does not fall in the file bytes of an executable segment.
    EntryOutsideCode {
        /// Which entry ("kernel entry", "bootstrap", "resume", "AP resume").
        entry: &'static str,
        /// Its offset from the link base.
        offset: u64,
    },
    /// The declared image span disagrees with the segments.
    ImageSpan {
        /// The span in the header.
        declared: u64,
        /// The span computed from the segments.
        computed: u64,
    },
    /// The header's SHA-256 does not match the digest stored in it.
    HeaderDigest {
        /// The digest the header stores.
        stored: Digest,
        /// The digest of the bytes.
        computed: Digest,
    },
    /// The payload's SHA-256 does not match the digest stored in the header.
    PayloadDigest {
        /// The digest the header stores.
        stored: Digest,
        /// The digest of the payload bytes.
        computed: Digest,
    },
    /// The image description the package header carries does not begin like one.
    Description {
        /// What is wrong with it.
        problem: DescriptionProblem,
    },
    /// A mailbox block's checksum does not match its fields.
    Checksum {
        /// The block.
        what: &'static str,
        /// The checksum stored in the block.
        stored: u64,
        /// The checksum of the fields.
        computed: u64,
    },
}

/// What is wrong with a segment (see [`FormatError::Segment`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentProblem {
    /// The payload offset is not a multiple of 4 KiB.
    PayloadOffsetUnaligned {
        /// The offset.
        offset: u64,
    },
    /// The file bytes run past the end of the payload.
    PastPayload {
        /// Start of the file bytes in the payload.
        start: u64,
        /// End of the file bytes (saturated if it overflows).
        end: u64,
        /// Size of the payload.
        payload_size: u64,
    },
    /// The file bytes start before the previous segment's file bytes end.
    PayloadOverlap {
        /// Start of this segment's file bytes.
        start: u64,
        /// End of the previous segment's file bytes.
        previous_end: u64,
    },
    /// The virtual address is not page aligned.
    VaddrUnaligned {
        /// The address.
        vaddr: u64,
    },
    /// The segment occupies no memory.
    Empty,
    /// More file bytes than memory.
    FileLargerThanMemory {
        /// File size.
        file_size: u64,
        /// Memory size.
        mem_size: u64,
    },
    /// `vaddr + mem_size` overflows.
    AddressOverflow {
        /// The address.
        vaddr: u64,
        /// The memory size.
        mem_size: u64,
    },
    /// The memory range starts before the previous segment's ends.
    MemoryOverlap {
        /// Start of this segment.
        start: u64,
        /// End of the previous segment.
        previous_end: u64,
    },
    /// The first segment does not start at the link base.
    NotAtLinkBase {
        /// The segment's address.
        vaddr: u64,
        /// The header's link base.
        link_base: u64,
    },
    /// Flag bits outside R, W, X and RELRO.
    UnknownFlags {
        /// The flags.
        flags: u32,
    },
    /// A reserved field is not zero.
    ReservedNotZero,
}

/// What is wrong with the image description a package carries (see
/// [`FormatError::Description`]). Only its first 16 bytes are the package format's
/// to check; the rest is `updater::describe`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DescriptionProblem {
    /// The first eight bytes are not `HKDESC01`: the packer copied something other than
    /// the kernel's `.hk_schema` section.
    Magic {
        /// What it starts with.
        found: [u8; 8],
    },
    /// The length the description states (its bytes 12..16) is not the length the
    /// header gives it.
    StatedLength {
        /// The length the description states.
        stated: u32,
        /// The length in the package header.
        header: u32,
    },
}

/// What is wrong with a relocation (see [`FormatError::Relocation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelocationProblem {
    /// The 8-byte slot is not 8-byte aligned.
    Unaligned,
    /// The slot is not wholly inside the file bytes of one writable or RELRO segment.
    OutsideWritableSegment,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FormatError::*;
        match self {
            Truncated { what, needed, got } => {
                write!(f, "{what} is truncated: needs {needed} bytes, got {got}")
            }
            BadMagic {
                what,
                expected,
                found,
            } => write!(
                f,
                "not a {what}: starts with {}, expected {}",
                Escaped(found),
                Escaped(expected)
            ),
            UnsupportedVersion {
                what,
                found,
                supported,
            } if found > supported => write!(
                f,
                "{what} version {found} is newer than this kernel understands ({supported})"
            ),
            UnsupportedVersion {
                what,
                found,
                supported,
            } => write!(
                f,
                "{what} version {found} is not one this kernel understands ({supported})"
            ),
            SizeMismatch {
                what,
                declared,
                got,
            } => write!(f, "{what} declares {declared} bytes but {got} were given"),
            TooLarge {
                what,
                size,
                holder,
                capacity,
            } => write!(f, "{what} is {size} bytes, the {holder} holds {capacity}"),
            TooManyEntries { table, count, max } => {
                write!(f, "{table} has {count} entries, at most {max} are allowed")
            }
            TableOutOfPlace {
                table,
                start,
                end,
                reason,
            } => write!(f, "{table} at {start:#x}..{end:#x} {reason}"),
            InvalidField {
                field,
                value,
                reason,
            } => write!(f, "{field} {value:#x}: {reason}"),
            Label { at, reason } => write!(f, "label: byte {at} {reason}"),
            Schema {
                index,
                kind,
                problem,
            } => write!(
                f,
                "schema entry {index} (kind {kind}, {}): {problem}",
                crate::kind_name(*kind)
            ),
            Segment { index, problem } => write!(f, "segment {index}: {problem}"),
            Relocation {
                index,
                offset,
                problem,
            } => write!(f, "relocation {index} at {offset:#x}: {problem}"),
            EntryOutsideCode { entry, offset } => write!(
                f,
                "{entry} entry at offset {offset:#x} is not inside the file bytes of an executable segment"
            ),
            ImageSpan { declared, computed } => write!(
                f,
                "image span {declared:#x} disagrees with the segments, which need {computed:#x} (page-aligned end of the last segment minus the link base)"
            ),
            HeaderDigest { stored, computed } => write!(
                f,
                "header digest mismatch: the header says {}, its bytes hash to {}; the package was damaged, rebuild or resend it",
                Short(stored),
                Short(computed)
            ),
            PayloadDigest { stored, computed } => write!(
                f,
                "payload digest mismatch: the header says {}, the payload hashes to {}; the package was damaged, rebuild or resend it",
                Short(stored),
                Short(computed)
            ),
            Description { problem } => write!(f, "image description: {problem}"),
            Checksum {
                what,
                stored,
                computed,
            } => write!(
                f,
                "{what} checksum {stored:#018x} does not match its fields ({computed:#018x})"
            ),
        }
    }
}

impl fmt::Display for SegmentProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SegmentProblem::*;
        match *self {
            PayloadOffsetUnaligned { offset } => {
                write!(f, "payload offset {offset:#x} is not a multiple of 4 KiB")
            }
            PastPayload {
                start,
                end,
                payload_size,
            } => write!(
                f,
                "file range {start:#x}..{end:#x} runs past the end of the payload ({payload_size:#x} bytes)"
            ),
            PayloadOverlap {
                start,
                previous_end,
            } => write!(
                f,
                "file bytes start at payload offset {start:#x}, before the previous segment's end ({previous_end:#x}); segments must be stored in order"
            ),
            VaddrUnaligned { vaddr } => {
                write!(f, "virtual address {vaddr:#x} is not page aligned")
            }
            Empty => write!(f, "memory size is 0"),
            FileLargerThanMemory {
                file_size,
                mem_size,
            } => write!(
                f,
                "file size {file_size:#x} is larger than memory size {mem_size:#x}"
            ),
            AddressOverflow { vaddr, mem_size } => write!(
                f,
                "address {vaddr:#x} plus memory size {mem_size:#x} overflows"
            ),
            MemoryOverlap {
                start,
                previous_end,
            } => write!(
                f,
                "memory starts at {start:#x}, before the previous segment ends ({previous_end:#x}); segments must be sorted by address and disjoint"
            ),
            NotAtLinkBase { vaddr, link_base } => write!(
                f,
                "the first segment starts at {vaddr:#x}, not at the link base {link_base:#x}"
            ),
            UnknownFlags { flags } => write!(
                f,
                "flags {flags:#x} have bits other than R (4), W (2), X (1) and RELRO (0x10)"
            ),
            ReservedNotZero => write!(f, "reserved field is not zero"),
        }
    }
}

impl fmt::Display for DescriptionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DescriptionProblem::Magic { found } => write!(
                f,
                "starts with {}, expected {}: the packer must copy the kernel's .hk_schema section (updater::describe::build)",
                Escaped(found),
                Escaped(&crate::package::DESCRIPTION_MAGIC)
            ),
            DescriptionProblem::StatedLength { stated, header } => write!(
                f,
                "it states {stated} bytes, the header gives it {header}"
            ),
        }
    }
}

impl fmt::Display for RelocationProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelocationProblem::Unaligned => write!(f, "the 8-byte slot is not 8-byte aligned"),
            RelocationProblem::OutsideWritableSegment => write!(
                f,
                "the 8-byte slot is not inside the file bytes of a writable or RELRO segment"
            ),
        }
    }
}

impl core::error::Error for FormatError {}

/// Magic bytes as a string with escapes, e.g. `"HKPKG\0\r\n"`.
struct Escaped<'a>(&'a [u8; 8]);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for &b in self.0 {
            write!(f, "{}", core::ascii::escape_default(b))?;
        }
        f.write_str("\"")
    }
}

/// The first 8 bytes of a digest in hex, then an ellipsis.
struct Short<'a>(&'a Digest);

impl fmt::Display for Short<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0.iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        f.write_str("…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn messages_name_the_field_and_the_numbers() {
        let e = FormatError::Segment {
            index: 2,
            problem: SegmentProblem::PastPayload {
                start: 0x1000,
                end: 0x9000,
                payload_size: 0x8000,
            },
        };
        assert_eq!(
            e.to_string(),
            "segment 2: file range 0x1000..0x9000 runs past the end of the payload (0x8000 bytes)"
        );
        let e = FormatError::UnsupportedVersion {
            what: "package format",
            found: 7,
            supported: 1,
        };
        assert_eq!(
            e.to_string(),
            "package format version 7 is newer than this kernel understands (1)"
        );
        let e = FormatError::TooLarge {
            what: "package",
            size: 20971520,
            holder: "staging buffer",
            capacity: 16777216,
        };
        assert_eq!(
            e.to_string(),
            "package is 20971520 bytes, the staging buffer holds 16777216"
        );
        let e = FormatError::BadMagic {
            what: "hotkernel package",
            expected: *b"HKPKG\0\r\n",
            found: *b"HKPKG\0\n\n",
        };
        assert_eq!(
            e.to_string(),
            r#"not a hotkernel package: starts with "HKPKG\x00\n\n", expected "HKPKG\x00\r\n""#
        );
    }
}
