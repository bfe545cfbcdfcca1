//! What an image says about itself: [`EmbeddedIdentity`], the record every kernel
//! embeds in its `.hk_identity` section, and [`ImageSummary`], the short form
//! (version, build id, label) that status blocks and reports carry.
//!
//! The identity enters as a `static` the kernel writes with the `const fn`
//! [`EmbeddedIdentity::new`]:
//!
//! ```
//! use image_format::{caps::Capabilities, kinds, EmbeddedIdentity, ImageVersion, SchemaEntry, VersionRange};
//!
//! #[used]
//! #[link_section = ".hk_identity"]
//! static IDENTITY: EmbeddedIdentity = EmbeddedIdentity::new(
//!     ImageVersion::new(2, 0, 0),
//!     "v2",
//!     VersionRange::new(ImageVersion::new(1, 0, 0), ImageVersion::new(1, 255, 255)),
//!     Capabilities::HANDOFF_V1.union(Capabilities::PARK_STUB_V1),
//!     Capabilities::HANDOFF_V1.union(Capabilities::PARK_STUB_V1).union(Capabilities::SMP),
//!     &[
//!         SchemaEntry::new(kinds::TASK_TABLE, 2, 1),
//!         SchemaEntry::new(kinds::HEARTBEAT, 1, 1).optional(),
//!     ],
//! );
//! assert_eq!(IDENTITY.label().as_str(), "v2");
//! ```
//!
//! It leaves as bytes two ways, which are the same bytes: the linker places the static
//! in the ELF (the packer reads the section and calls [`EmbeddedIdentity::parse`]),
//! and [`EmbeddedIdentity::to_bytes`] writes it into a package header. The `repr(C)`
//! layout has no padding and no pointers, so the in-memory form on x86_64 *is* the
//! little-endian encoding; compile-time assertions below keep the two in step.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `HKIDENT1` |
//! | 8 | 4 | layout version (1) |
//! | 12 | 6 | image version: major, minor, patch (`u16` each) |
//! | 18 | 2 | schema count (≤ 16) |
//! | 20 | 48 | label, UTF-8, NUL padded |
//! | 68 | 12 | replaces: min version, max version (inclusive) |
//! | 80 | 8 | capabilities required |
//! | 88 | 8 | capabilities provided |
//! | 96 | 128 | schema table: 16 × (kind `u16`, current `u16`, min_from `u16`, flags `u16`); unused entries zero |
//!
//! The kernel must keep the static: `#[used]` keeps it in the object file, and the
//! kernel reading its own identity (for the mailbox status) keeps the linker from
//! discarding the section.

use core::fmt;
use core::mem::offset_of;

use crate::build_id::BuildId;
use crate::caps::Capabilities;
use crate::error::{FormatError, Result};
use crate::kinds::RecordKind;
use crate::version::{ImageVersion, SchemaVersion, VersionRange};
use crate::wire::{Fixed, Reader, Writer};

/// A human label for an image ("v2", "fix-lcg"): UTF-8, at most 48 bytes, NUL padded.
///
/// Invariant: the bytes before the first NUL are UTF-8 and every byte after it is NUL.
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Label([u8; Label::SIZE]);

impl Label {
    /// Encoded size.
    pub const SIZE: usize = 48;
    /// The empty label.
    pub const EMPTY: Self = Self([0; Self::SIZE]);

    /// `text`, NUL padded.
    ///
    /// # Panics
    /// If `text` is longer than 48 bytes or contains a NUL (at compile time in a `static`).
    pub const fn new(text: &str) -> Self {
        match Self::try_new(text) {
            Ok(l) => l,
            Err(_) => panic!("a label is at most 48 bytes of UTF-8 without NUL"),
        }
    }

    /// `text`, or an error if it is longer than 48 bytes or contains a NUL.
    pub const fn try_new(text: &str) -> Result<Self> {
        let b = text.as_bytes();
        if b.len() > Self::SIZE {
            return Err(FormatError::Label {
                at: Self::SIZE as u32,
                reason: "is past the end: a label is at most 48 bytes",
            });
        }
        let mut out = [0u8; Self::SIZE];
        let mut i = 0;
        while i < b.len() {
            if b[i] == 0 {
                return Err(FormatError::Label {
                    at: i as u32,
                    reason: "is a NUL inside the label",
                });
            }
            out[i] = b[i];
            i += 1;
        }
        Ok(Self(out))
    }

    /// From the encoded form, checking the invariant.
    pub fn from_bytes(bytes: [u8; Self::SIZE]) -> Result<Self> {
        let len = bytes.iter().position(|&b| b == 0).unwrap_or(Self::SIZE);
        let (text, padding) = bytes.split_at(len);
        if let Err(e) = core::str::from_utf8(text) {
            return Err(FormatError::Label {
                at: e.valid_up_to() as u32,
                reason: "is not valid UTF-8",
            });
        }
        if let Some(i) = padding.iter().position(|&b| b != 0) {
            return Err(FormatError::Label {
                at: len.saturating_add(i) as u32,
                reason: "follows the NUL padding but is not NUL",
            });
        }
        Ok(Self(bytes))
    }

    /// The text, without padding.
    pub fn as_str(&self) -> &str {
        let len = self.0.iter().position(|&b| b == 0).unwrap_or(Self::SIZE);
        self.0
            .get(..len)
            .and_then(|t| core::str::from_utf8(t).ok())
            .unwrap_or("")
    }

    /// The encoded form.
    pub const fn as_bytes(&self) -> &[u8; Self::SIZE] {
        &self.0
    }
}

impl Default for Label {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Label({:?})", self.as_str())
    }
}

bitflags::bitflags! {
    /// Flags of a [`SchemaEntry`].
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct SchemaFlags: u16 {
        /// When this image exports a record of this kind, the record is optional: an
        /// image that cannot read it may drop it instead of refusing the swap.
        const OPTIONAL = 1;
    }
}

/// One line of an image's schema table: for record `kind`, the version this image
/// writes and reads (`current`) and the oldest version it can convert from
/// (`min_from`).
///
/// Invariant (of every entry in a table): `kind != 0`, `1 <= min_from <= current`,
/// only known flags.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SchemaEntry {
    kind: u16,
    current: u16,
    min_from: u16,
    flags: u16,
}

impl SchemaEntry {
    /// Encoded size.
    pub const SIZE: usize = 8;
    /// An unused slot (all zero).
    const UNUSED: Self = Self {
        kind: 0,
        current: 0,
        min_from: 0,
        flags: 0,
    };

    /// `kind` at version `current`, converting from `min_from` up.
    ///
    /// # Panics
    /// If `min_from` is 0 or above `current` (at compile time in a `static`).
    pub const fn new(kind: RecordKind, current: u16, min_from: u16) -> Self {
        assert!(
            min_from != 0 && min_from <= current,
            "schema entry: need 1 <= min_from <= current"
        );
        Self {
            kind: kind.get(),
            current,
            min_from,
            flags: 0,
        }
    }

    /// The same entry, marked [`SchemaFlags::OPTIONAL`].
    pub const fn optional(self) -> Self {
        Self {
            flags: self.flags | SchemaFlags::OPTIONAL.bits(),
            ..self
        }
    }

    /// The record kind.
    pub const fn kind(&self) -> RecordKind {
        RecordKind(self.kind)
    }

    /// The version this image writes and reads.
    pub const fn current(&self) -> SchemaVersion {
        SchemaVersion::new(self.current)
    }

    /// The oldest version this image converts from.
    pub const fn min_from(&self) -> SchemaVersion {
        SchemaVersion::new(self.min_from)
    }

    /// The flags.
    pub const fn flags(&self) -> SchemaFlags {
        SchemaFlags::from_bits_retain(self.flags)
    }

    /// True if the record may be dropped by an image that cannot read it.
    pub const fn is_optional(&self) -> bool {
        self.flags & SchemaFlags::OPTIONAL.bits() != 0
    }

    /// True if this image can read a record of version `v` (directly or by conversion).
    pub fn reads(&self, v: SchemaVersion) -> bool {
        self.min_from() <= v && v <= self.current()
    }

    /// Checks the invariant; `index` is the entry's place for the error.
    fn check(&self, index: usize) -> Result<()> {
        let problem = if self.kind == 0 {
            "kind 0 is reserved for unused slots"
        } else if self.current == 0 || self.min_from == 0 {
            "schema versions start at 1"
        } else if self.min_from > self.current {
            "min_from is above current"
        } else if SchemaFlags::from_bits(self.flags).is_none() {
            "unknown flag bits (only OPTIONAL = 1 exists)"
        } else {
            return Ok(());
        };
        Err(FormatError::Schema {
            index: index as u32,
            kind: self.kind,
            problem,
        })
    }
}

/// The identity record a kernel embeds in section `.hk_identity`.
///
/// Invariant: the magic and layout version are the current ones, the label is valid,
/// `replaces` is a valid range, the schema count is at most 16 and every used entry is
/// valid with a distinct kind, and unused entries are zero.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EmbeddedIdentity {
    magic: [u8; 8],
    layout_version: u32,
    version: ImageVersion,
    schema_count: u16,
    label: Label,
    replaces: VersionRange,
    caps_required: u64,
    caps_provided: u64,
    schemas: [SchemaEntry; EmbeddedIdentity::MAX_SCHEMAS],
}

/// Field offsets of the encoding, which is also the `repr(C)` layout.
pub mod offsets {
    /// Magic `HKIDENT1`.
    pub const MAGIC: usize = 0;
    /// Layout version, `u32`.
    pub const LAYOUT_VERSION: usize = 8;
    /// Image version, 3 × `u16`.
    pub const VERSION: usize = 12;
    /// Schema count, `u16`.
    pub const SCHEMA_COUNT: usize = 18;
    /// Label, 48 bytes.
    pub const LABEL: usize = 20;
    /// Replaces range, 2 × 3 × `u16`.
    pub const REPLACES: usize = 68;
    /// Capabilities required, `u64`.
    pub const CAPS_REQUIRED: usize = 80;
    /// Capabilities provided, `u64`.
    pub const CAPS_PROVIDED: usize = 88;
    /// Schema table, 16 × 8 bytes.
    pub const SCHEMAS: usize = 96;
    /// Total size.
    pub const END: usize = 224;
}

// The in-memory layout is the encoding: the packer reads the static's bytes.
const _: () = {
    assert!(offset_of!(EmbeddedIdentity, magic) == offsets::MAGIC);
    assert!(offset_of!(EmbeddedIdentity, layout_version) == offsets::LAYOUT_VERSION);
    assert!(offset_of!(EmbeddedIdentity, version) == offsets::VERSION);
    assert!(offset_of!(EmbeddedIdentity, schema_count) == offsets::SCHEMA_COUNT);
    assert!(offset_of!(EmbeddedIdentity, label) == offsets::LABEL);
    assert!(offset_of!(EmbeddedIdentity, replaces) == offsets::REPLACES);
    assert!(offset_of!(EmbeddedIdentity, caps_required) == offsets::CAPS_REQUIRED);
    assert!(offset_of!(EmbeddedIdentity, caps_provided) == offsets::CAPS_PROVIDED);
    assert!(offset_of!(EmbeddedIdentity, schemas) == offsets::SCHEMAS);
    assert!(core::mem::size_of::<EmbeddedIdentity>() == offsets::END);
    assert!(offset_of!(SchemaEntry, current) == 2);
    assert!(offset_of!(SchemaEntry, min_from) == 4);
    assert!(offset_of!(SchemaEntry, flags) == 6);
    assert!(offset_of!(ImageVersion, minor) == 2 && offset_of!(ImageVersion, patch) == 4);
};

impl EmbeddedIdentity {
    /// The magic every identity starts with.
    pub const MAGIC: [u8; 8] = *b"HKIDENT1";
    /// The layout described in this module.
    pub const LAYOUT_VERSION: u32 = 1;
    /// Encoded size (and `size_of`).
    pub const SIZE: usize = offsets::END;
    /// Entries in the schema table.
    pub const MAX_SCHEMAS: usize = 16;

    /// An identity for a `static`.
    ///
    /// # Panics
    /// At compile time (in a `static`) if the label is longer than 48 bytes or holds a
    /// NUL, if there are more than 16 schema entries, or if two entries share a kind.
    pub const fn new(
        version: ImageVersion,
        label: &str,
        replaces: VersionRange,
        caps_required: Capabilities,
        caps_provided: Capabilities,
        schemas: &[SchemaEntry],
    ) -> Self {
        assert!(
            schemas.len() <= Self::MAX_SCHEMAS,
            "at most 16 schema entries"
        );
        let mut table = [SchemaEntry::UNUSED; Self::MAX_SCHEMAS];
        let mut i = 0;
        while i < schemas.len() {
            let mut j = 0;
            while j < i {
                assert!(
                    schemas[j].kind != schemas[i].kind,
                    "two schema entries for one kind"
                );
                j += 1;
            }
            table[i] = schemas[i];
            i += 1;
        }
        Self {
            magic: Self::MAGIC,
            layout_version: Self::LAYOUT_VERSION,
            version,
            schema_count: schemas.len() as u16,
            label: Label::new(label),
            replaces,
            caps_required: caps_required.bits(),
            caps_provided: caps_provided.bits(),
            schemas: table,
        }
    }

    /// The image's version.
    pub const fn version(&self) -> ImageVersion {
        self.version
    }

    /// The image's label.
    pub const fn label(&self) -> &Label {
        &self.label
    }

    /// The same identity with another label (the packer's `--label`).
    pub const fn with_label(self, label: Label) -> Self {
        Self { label, ..self }
    }

    /// The running versions this image may replace.
    pub const fn replaces(&self) -> VersionRange {
        self.replaces
    }

    /// Capabilities the running kernel must provide.
    pub const fn caps_required(&self) -> Capabilities {
        Capabilities::from_bits_retain(self.caps_required)
    }

    /// Capabilities this image provides to its successor.
    pub const fn caps_provided(&self) -> Capabilities {
        Capabilities::from_bits_retain(self.caps_provided)
    }

    /// The used entries of the schema table.
    pub fn schemas(&self) -> &[SchemaEntry] {
        self.schemas
            .get(..usize::from(self.schema_count))
            .unwrap_or(&[])
    }

    /// The entry for `kind`, if this image knows the kind.
    pub fn schema(&self, kind: RecordKind) -> Option<&SchemaEntry> {
        self.schemas().iter().find(|e| e.kind == kind.get())
    }

    /// Version, `build_id` and label.
    pub const fn summary(&self, build_id: BuildId) -> ImageSummary {
        ImageSummary {
            version: self.version,
            build_id,
            label: self.label,
        }
    }

    /// The little-endian encoding (the table in the module doc).
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut out = [0u8; Self::SIZE];
        let mut w = Writer::new(&mut out);
        w.put(&self.magic);
        w.u32(self.layout_version);
        w.put(&self.version.to_bytes());
        w.u16(self.schema_count);
        w.put(self.label.as_bytes());
        w.put(&self.replaces.to_bytes());
        w.u64(self.caps_required);
        w.u64(self.caps_provided);
        for e in &self.schemas {
            w.u16(e.kind);
            w.u16(e.current);
            w.u16(e.min_from);
            w.u16(e.flags);
        }
        debug_assert_eq!(w.position(), Self::SIZE);
        out
    }

    /// Reads and checks an identity from exactly [`SIZE`](Self::SIZE) bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "image identity";
        let f = Fixed::new(bytes, Self::SIZE, WHAT)?;
        let magic = f.array(offsets::MAGIC);
        if magic != Self::MAGIC {
            return Err(FormatError::BadMagic {
                what: WHAT,
                expected: Self::MAGIC,
                found: magic,
            });
        }
        let layout_version = f.u32(offsets::LAYOUT_VERSION);
        if layout_version != Self::LAYOUT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: "image identity layout",
                found: layout_version,
                supported: Self::LAYOUT_VERSION,
            });
        }
        if bytes.len() != Self::SIZE {
            return Err(FormatError::SizeMismatch {
                what: WHAT,
                declared: Self::SIZE as u64,
                got: bytes.len() as u64,
            });
        }
        let schema_count = f.u16(offsets::SCHEMA_COUNT);
        if usize::from(schema_count) > Self::MAX_SCHEMAS {
            return Err(FormatError::TooManyEntries {
                table: "schema table",
                count: u64::from(schema_count),
                max: Self::MAX_SCHEMAS as u64,
            });
        }
        let mut schemas = [SchemaEntry::UNUSED; Self::MAX_SCHEMAS];
        let table = f.bytes().get(offsets::SCHEMAS..).unwrap_or(&[]);
        let mut r = Reader::new(table, WHAT);
        for i in 0..Self::MAX_SCHEMAS {
            let e = SchemaEntry {
                kind: r.u16()?,
                current: r.u16()?,
                min_from: r.u16()?,
                flags: r.u16()?,
            };
            if i < usize::from(schema_count) {
                e.check(i)?;
                if schemas.iter().take(i).any(|o| o.kind == e.kind) {
                    return Err(FormatError::Schema {
                        index: i as u32,
                        kind: e.kind,
                        problem: "a second entry for this kind",
                    });
                }
            } else if e != SchemaEntry::UNUSED {
                return Err(FormatError::Schema {
                    index: i as u32,
                    kind: e.kind,
                    problem: "unused entry (past the schema count) is not zero",
                });
            }
            if let Some(slot) = schemas.get_mut(i) {
                *slot = e;
            }
        }
        Ok(Self {
            magic,
            layout_version,
            version: ImageVersion::from_bytes(f.array(offsets::VERSION)),
            schema_count,
            label: Label::from_bytes(f.array(offsets::LABEL))?,
            replaces: VersionRange::from_bytes(f.array(offsets::REPLACES))?,
            caps_required: f.u64(offsets::CAPS_REQUIRED),
            caps_provided: f.u64(offsets::CAPS_PROVIDED),
            schemas,
        })
    }
}

/// The short form of an identity that status blocks and reports carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ImageSummary {
    /// The image's version.
    pub version: ImageVersion,
    /// The image's build id.
    pub build_id: BuildId,
    /// The image's label.
    pub label: Label,
}

impl ImageSummary {
    /// Encoded size: version (6), build id length (1), reserved (1), build id (32), label (48).
    pub const SIZE: usize = 88;

    pub(crate) fn write(&self, w: &mut Writer<'_>) {
        w.put(&self.version.to_bytes());
        w.u8(self.build_id.len());
        w.u8(0);
        w.put(self.build_id.padded());
        w.put(self.label.as_bytes());
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self> {
        let version = ImageVersion::from_bytes(r.array()?);
        let len = r.u8()?;
        let _reserved = r.u8()?;
        let build_id = BuildId::from_parts(len, r.array()?)?;
        let label = Label::from_bytes(r.array()?)?;
        Ok(Self {
            version,
            build_id,
            label,
        })
    }
}

/// `2.0.0 "v2" (build 414ee71b4235)`: the build id shortened to 12 hex digits.
impl fmt::Display for ImageSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} (build ", self.version, self.label.as_str())?;
        if self.build_id.is_empty() {
            f.write_str("-")?;
        }
        for b in self.build_id.as_bytes().iter().take(6) {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests;
