//! A record set: a kernel's state as records in an area of the hand-off region — a
//! directory, and for each record its entries and its field table (so a reader needs
//! none of the writer's types).
//!
//! Offsets are from the start of the **area**, not of the set: several sets share an
//! area, and a converted set may point at entries of the exported set where they stand
//! instead of copying them (a record whose layout did not change costs nothing to hand
//! over). A set's header and directory are at the offset it is given:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `HKRECST2` |
//! | 8 | 4 | layout version (2) |
//! | 12 | 4 | record count (≤ [`MAX_RECORDS`]) |
//! | 16 | 8 | end: the area offset past everything this set wrote |
//! | 24 | 8 | FNV-1a 64 of the directory |
//! | 32 | 48 × [`MAX_RECORDS`] | directory: per record kind `u16`, schema `u16`, flags `u16`, 0 `u16`, entry size `u32`, entry count `u32`, entries offset `u64`, entries length `u64`, table fingerprint `u64`, table offset `u32`, table length `u32` |
//!
//! Entries are `entry count × entry size` bytes (8-byte aligned); the table is the
//! `crate::table` encoding of the entries' layout. The n-th entry of a task kind's state
//! record belongs to the n-th task of that kind in the task table.
//!
//! The checksum covers the directory (every offset, size and fingerprint): damage to it
//! is found before anything is read through it. Entries are not hashed — that would be
//! a pass over every task in the stopped section — but every entry is decoded with its
//! bounds and values checked. Writing needs no allocation (the bootstrap has no heap);
//! reading validates every offset and length and never panics.

use crate::record::Record;
use crate::records::{RecordKind, SchemaVersion};
use crate::table::{TableError, TableView};
use crate::wire::{Reader, WireError, Writer};

pub const MAGIC: [u8; 8] = *b"HKRECST2";
pub const LAYOUT_VERSION: u32 = 2;
pub const MAX_RECORDS: usize = 32;
const HEADER: usize = 32;
const DIR_ENTRY: usize = 48;
/// Bytes of a set's header and directory.
pub const DIRECTORY_SIZE: usize = HEADER + DIR_ENTRY * MAX_RECORDS;

/// Record flags.
pub mod flags {
    /// An image that cannot read this record may drop it (with a warning).
    pub const OPTIONAL: u16 = 1 << 0;
}

/// Why a record set could not be written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordSetError {
    BadMagic,
    UnknownLayout(u32),
    TooManyRecords,
    OutOfSpace {
        needed: usize,
        available: usize,
    },
    Truncated {
        kind: u16,
    },
    Checksum {
        expected: u64,
        found: u64,
    },
    EntrySize {
        kind: u16,
        entry_size: u32,
        expected: usize,
    },
    Duplicate {
        kind: u16,
    },
    Overlap {
        kind: u16,
    },
    Table {
        kind: u16,
        error: TableError,
    },
}

impl core::fmt::Display for RecordSetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecordSetError::BadMagic => write!(f, "record set has no HKRECST2 magic"),
            RecordSetError::UnknownLayout(v) => {
                write!(f, "record set layout {v} is not understood ({LAYOUT_VERSION} is)")
            }
            RecordSetError::TooManyRecords => write!(f, "more than {MAX_RECORDS} records"),
            RecordSetError::OutOfSpace { needed, available } => write!(
                f,
                "record area too small: {needed} bytes needed, {available} available"
            ),
            RecordSetError::Truncated { kind } => write!(
                f,
                "record {} extends past the end of its area",
                KindText(*kind)
            ),
            RecordSetError::Checksum { expected, found } => write!(
                f,
                "record set directory checksum {found:#x}, expected {expected:#x}: the set was damaged"
            ),
            RecordSetError::EntrySize {
                kind,
                entry_size,
                expected,
            } => write!(
                f,
                "record {} has {entry_size}-byte entries, its schema needs {expected}",
                KindText(*kind)
            ),
            RecordSetError::Duplicate { kind } => {
                write!(f, "record {} appears twice", KindText(*kind))
            }
            RecordSetError::Overlap { kind } => write!(
                f,
                "the entries of record {} overlap another record's",
                KindText(*kind)
            ),
            RecordSetError::Table { kind, error } => {
                write!(f, "record {}: {error}", KindText(*kind))
            }
        }
    }
}

/// A record kind as written in a set (0 is invalid but must still print).
struct KindText(u16);

impl core::fmt::Display for KindText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match RecordKind::try_new(self.0) {
            Ok(k) => write!(f, "{k}"),
            Err(_) => write!(f, "kind-0"),
        }
    }
}

/// FNV-1a, 64 bits: cheap damage detection (not a security digest).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One record's directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: RecordKind,
    pub schema: SchemaVersion,
    pub flags: u16,
    pub entry_size: u32,
    pub entries: u32,
    /// The fingerprint of the entries' field table.
    pub fingerprint: u64,
}

impl RecordHeader {
    pub fn optional(&self) -> bool {
        self.flags & flags::OPTIONAL != 0
    }
}

/// Where a record's entries and table are in the area (for a set that refers to
/// another set's record instead of copying it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub entries: (u64, u64),
    pub table: (u32, u32),
}

/// Builds a record set in an area.
///
/// It writes into `out`, a part of the area that starts at area offset `base`, so that
/// the rest of the area (an exported set this one refers to) stays readable meanwhile.
pub struct RecordSetWriter<'a> {
    out: &'a mut [u8],
    /// The area offset of `out[0]`.
    base: usize,
    count: usize,
    /// Next free byte (offset in `out`).
    end: usize,
}

impl<'a> RecordSetWriter<'a> {
    /// A set at the start of `out`, which is the area from offset `base` on; the set's
    /// header is at `base` and everything it writes stays inside `out`.
    pub fn new(out: &'a mut [u8], base: usize) -> Result<Self, RecordSetError> {
        if out.len() < DIRECTORY_SIZE {
            return Err(RecordSetError::OutOfSpace {
                needed: DIRECTORY_SIZE,
                available: out.len(),
            });
        }
        out[..DIRECTORY_SIZE].fill(0);
        Ok(Self {
            out,
            base,
            count: 0,
            end: DIRECTORY_SIZE,
        })
    }

    /// A set at the start of `area`.
    pub fn whole(area: &'a mut [u8]) -> Result<Self, RecordSetError> {
        Self::new(area, 0)
    }

    /// Reserves `len` bytes aligned to `align` (in the area: `base` is 8-aligned by
    /// the caller's contract); returns their offset in `out`.
    fn allocate(&mut self, len: usize, align: usize) -> Result<usize, RecordSetError> {
        let start = (self.base + self.end).next_multiple_of(align) - self.base;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= self.out.len())
            .ok_or(RecordSetError::OutOfSpace {
                needed: start.saturating_add(len),
                available: self.out.len(),
            })?;
        self.end = end;
        Ok(start)
    }

    /// Bytes still free.
    pub fn remaining(&self) -> usize {
        self.out.len() - self.end
    }

    fn directory(
        &mut self,
        h: &RecordHeader,
        place: Placement,
    ) -> Result<Placement, RecordSetError> {
        if self.count == MAX_RECORDS {
            return Err(RecordSetError::TooManyRecords);
        }
        let d = HEADER + self.count * DIR_ENTRY;
        let mut w = Writer::new(&mut self.out[d..d + DIR_ENTRY]);
        w.u16(h.kind.get());
        w.u16(h.schema.get());
        w.u16(h.flags);
        w.u16(0);
        w.u32(h.entry_size);
        w.u32(h.entries);
        w.u64(place.entries.0);
        w.u64(place.entries.1);
        w.u64(h.fingerprint);
        w.u32(place.table.0);
        w.u32(place.table.1);
        self.count += 1;
        Ok(place)
    }

    /// Copies `table` in; returns its placement (area offsets).
    fn table(&mut self, table: TableView<'_>) -> Result<(u32, u32), RecordSetError> {
        let bytes = table.bytes();
        let at = self.allocate(bytes.len(), 1)?;
        self.out[at..at + bytes.len()].copy_from_slice(bytes);
        Ok(((self.base + at) as u32, bytes.len() as u32))
    }

    /// Adds a record of `entries` entries of `entry_size` bytes laid out as `table`,
    /// entry `i` written into its `entry_size` bytes by `write(i, bytes)`.
    #[allow(clippy::too_many_arguments, reason = "a directory entry's fields")]
    pub fn add_raw(
        &mut self,
        kind: RecordKind,
        schema: SchemaVersion,
        flags: u16,
        table: TableView<'_>,
        entry_size: usize,
        entries: usize,
        mut write: impl FnMut(usize, &mut [u8]),
    ) -> Result<Placement, RecordSetError> {
        let len = entry_size
            .checked_mul(entries)
            .ok_or(RecordSetError::OutOfSpace {
                needed: usize::MAX,
                available: self.out.len(),
            })?;
        let table_at = self.table(table)?;
        let start = self.allocate(len, 8)?;
        for (i, entry) in self.out[start..start + len]
            .chunks_exact_mut(entry_size.max(1))
            .take(entries)
            .enumerate()
        {
            write(i, entry);
        }
        self.directory(
            &RecordHeader {
                kind,
                schema,
                flags,
                entry_size: entry_size as u32,
                entries: entries as u32,
                fingerprint: table.fingerprint(),
            },
            Placement {
                entries: ((self.base + start) as u64, len as u64),
                table: table_at,
            },
        )
    }

    /// Adds a record whose entries are `bytes` as they stand: one copy, no per-entry
    /// work.
    pub fn add_bytes(
        &mut self,
        header: RecordHeader,
        table: TableView<'_>,
        bytes: &[u8],
    ) -> Result<Placement, RecordSetError> {
        if bytes.len() as u64 != u64::from(header.entry_size) * u64::from(header.entries) {
            return Err(RecordSetError::EntrySize {
                kind: header.kind.get(),
                entry_size: header.entry_size,
                expected: bytes.len() / (header.entries as usize).max(1),
            });
        }
        let table_at = self.table(table)?;
        let start = self.allocate(bytes.len(), 8)?;
        self.out[start..start + bytes.len()].copy_from_slice(bytes);
        self.directory(
            &header,
            Placement {
                entries: ((self.base + start) as u64, bytes.len() as u64),
                table: table_at,
            },
        )
    }

    /// Adds a record whose `entries × entry_size` bytes are written in one piece by
    /// `fill` (several slices copied one after the other, or a conversion).
    pub fn add_filled(
        &mut self,
        header: RecordHeader,
        table: TableView<'_>,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Placement, RecordSetError> {
        let len = u64::from(header.entry_size) * u64::from(header.entries);
        let len = usize::try_from(len).map_err(|_| RecordSetError::OutOfSpace {
            needed: usize::MAX,
            available: self.out.len(),
        })?;
        let table_at = self.table(table)?;
        let start = self.allocate(len, 8)?;
        fill(&mut self.out[start..start + len]);
        self.directory(
            &header,
            Placement {
                entries: ((self.base + start) as u64, len as u64),
                table: table_at,
            },
        )
    }

    /// Adds a record that is already in the area (another set's), without copying it.
    pub fn add_reference(
        &mut self,
        header: RecordHeader,
        place: Placement,
    ) -> Result<Placement, RecordSetError> {
        self.directory(&header, place)
    }

    /// Adds a record of `entries`, encoded one by one, with `table` (the encoding of
    /// `R::LAYOUT`, which a caller has as bytes: `crate::table::encoded`).
    pub fn add<R: Record>(
        &mut self,
        flags: u16,
        table: TableView<'_>,
        entries: &[R],
    ) -> Result<Placement, RecordSetError> {
        self.add_raw(
            R::KIND,
            R::SCHEMA,
            flags,
            table,
            R::SIZE,
            entries.len(),
            |i, out| entries[i].encode(out),
        )
    }

    /// Writes the header and checksum; returns the area offset past the set.
    pub fn finish(self) -> usize {
        let checksum = fnv1a(&self.out[HEADER..DIRECTORY_SIZE]);
        let end = self.base + self.end;
        let mut w = Writer::new(&mut self.out[..HEADER]);
        w.bytes(&MAGIC);
        w.u32(LAYOUT_VERSION);
        w.u32(self.count as u32);
        w.u64(end as u64);
        w.u64(checksum);
        end
    }
}

/// A validated record set.
#[derive(Debug, Clone, Copy)]
pub struct RecordSet<'a> {
    area: &'a [u8],
    at: usize,
    count: usize,
    end: usize,
}

/// One record of a set: its directory entry, its entries' bytes, its field table.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub header: RecordHeader,
    pub bytes: &'a [u8],
    pub table: TableView<'a>,
    /// Where it is in the area.
    pub placement: Placement,
}

impl<'a> RecordRef<'a> {
    /// The bytes of entry `i`.
    pub fn entry(&self, i: usize) -> &'a [u8] {
        let size = self.header.entry_size as usize;
        &self.bytes[i * size..(i + 1) * size]
    }

    /// Decodes every entry as `R` (which must be this record's kind and schema).
    pub fn decode<R: Record>(&self) -> impl Iterator<Item = Result<R, WireError>> + 'a {
        let this = *self;
        (0..this.header.entries as usize).map(move |i| R::decode(this.entry(i)))
    }

    /// Whether the entries have the size `R` needs.
    pub fn check_size<R: Record>(&self) -> Result<(), RecordSetError> {
        if self.header.entry_size as usize != R::SIZE {
            return Err(RecordSetError::EntrySize {
                kind: self.header.kind.get(),
                entry_size: self.header.entry_size,
                expected: R::SIZE,
            });
        }
        Ok(())
    }
}

impl<'a> RecordSet<'a> {
    /// Validates the set at `at` in `area`: magic, layout, checksum of the directory,
    /// bounds of every record and table, tables that parse, no duplicates.
    pub fn parse(area: &'a [u8], at: usize) -> Result<Self, RecordSetError> {
        let header = at
            .checked_add(DIRECTORY_SIZE)
            .and_then(|end| area.get(at..end))
            .ok_or(RecordSetError::BadMagic)?;
        let mut r = Reader::new(header);
        let short = |_| RecordSetError::BadMagic;
        let magic: [u8; 8] = r.array().map_err(short)?;
        if magic != MAGIC {
            return Err(RecordSetError::BadMagic);
        }
        let layout = r.u32().map_err(short)?;
        if layout != LAYOUT_VERSION {
            return Err(RecordSetError::UnknownLayout(layout));
        }
        let count = r.u32().map_err(short)? as usize;
        let end = r.u64().map_err(short)?;
        let checksum = r.u64().map_err(short)?;
        if count > MAX_RECORDS {
            return Err(RecordSetError::TooManyRecords);
        }
        if end > area.len() as u64 {
            return Err(RecordSetError::OutOfSpace {
                needed: end as usize,
                available: area.len(),
            });
        }
        let found = fnv1a(&header[HEADER..]);
        if found != checksum {
            return Err(RecordSetError::Checksum {
                expected: checksum,
                found,
            });
        }
        let set = RecordSet {
            area,
            at,
            count,
            end: end as usize,
        };
        // Every record checked once (bounds, table, fingerprint); then duplicates and
        // overlaps from the directory alone.
        for i in 0..count {
            let rec = set.check(i)?;
            let (a, a_len) = rec.placement.entries;
            for j in 0..i {
                let (kind, (b, b_len)) = set.raw(j);
                if kind == rec.header.kind.get() {
                    return Err(RecordSetError::Duplicate {
                        kind: rec.header.kind.get(),
                    });
                }
                if a_len > 0 && b_len > 0 && a < b + b_len && b < a + a_len {
                    return Err(RecordSetError::Overlap {
                        kind: rec.header.kind.get(),
                    });
                }
            }
        }
        Ok(set)
    }

    /// Record `i`'s kind and entries, from the directory alone.
    fn raw(&self, i: usize) -> (u16, (u64, u64)) {
        let d = self.at + HEADER + i * DIR_ENTRY;
        let e = &self.area[d..d + DIR_ENTRY];
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&e[at..at + 8]);
            u64::from_le_bytes(b)
        };
        (u16::from_le_bytes([e[0], e[1]]), (u64_at(16), u64_at(24)))
    }

    /// Record `i` of a parsed set (checked by [`parse`](Self::parse), read again
    /// without checking its table).
    fn get(&self, i: usize) -> Result<RecordRef<'a>, RecordSetError> {
        self.read(i, false)
    }

    /// Record `i`, checking every offset, size and its table.
    fn check(&self, i: usize) -> Result<RecordRef<'a>, RecordSetError> {
        self.read(i, true)
    }

    fn read(&self, i: usize, check: bool) -> Result<RecordRef<'a>, RecordSetError> {
        let d = self.at + HEADER + i * DIR_ENTRY;
        let mut r = Reader::new(&self.area[d..d + DIR_ENTRY]);
        let short = |_| RecordSetError::BadMagic;
        let kind = r.u16().map_err(short)?;
        let schema = r.u16().map_err(short)?;
        let flags = r.u16().map_err(short)?;
        r.skip(2).map_err(short)?;
        let entry_size = r.u32().map_err(short)?;
        let entries = r.u32().map_err(short)?;
        let offset = r.u64().map_err(short)?;
        let len = r.u64().map_err(short)?;
        let fingerprint = r.u64().map_err(short)?;
        let table_at = r.u32().map_err(short)?;
        let table_len = r.u32().map_err(short)?;
        let truncated = RecordSetError::Truncated { kind };
        let schema = SchemaVersion::try_new(schema).map_err(|_| truncated)?;
        let end = offset.checked_add(len).ok_or(truncated)?;
        if end > self.area.len() as u64
            || (entry_size as u64).checked_mul(entries as u64) != Some(len)
            || entry_size == 0 && entries != 0
        {
            return Err(truncated);
        }
        let table_end = table_at as usize + table_len as usize;
        let table_bytes = self
            .area
            .get(table_at as usize..table_end)
            .ok_or(truncated)?;
        let table = if check {
            TableView::parse_exact(table_bytes)
                .map_err(|error| RecordSetError::Table { kind, error })?
        } else {
            TableView::trusted(table_bytes, fingerprint)
        };
        if table.fingerprint() != fingerprint || (table.size() != entry_size && entries != 0) {
            return Err(RecordSetError::EntrySize {
                kind,
                entry_size,
                expected: table.size() as usize,
            });
        }
        Ok(RecordRef {
            header: RecordHeader {
                kind: RecordKind::try_new(kind).map_err(|_| truncated)?,
                schema,
                flags,
                entry_size,
                entries,
                fingerprint,
            },
            bytes: &self.area[offset as usize..end as usize],
            table,
            placement: Placement {
                entries: (offset, len),
                table: (table_at, table_len),
            },
        })
    }

    /// Every record, in the order written.
    pub fn records(&self) -> impl Iterator<Item = RecordRef<'a>> + '_ {
        (0..self.count).filter_map(|i| self.get(i).ok())
    }

    /// The record of `kind`, if present.
    pub fn find(&self, kind: RecordKind) -> Option<RecordRef<'a>> {
        self.records().find(|r| r.header.kind == kind)
    }

    /// The area offset past everything the set wrote.
    pub fn end(&self) -> usize {
        self.end
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The entries of every record of a set, as disjoint writable slices of its area: what
/// a kernel adopts in place (its live records are the set's entries).
pub struct EntriesMut<'a> {
    items: [Option<(RecordHeader, &'a mut [u8])>; MAX_RECORDS],
}

impl<'a> EntriesMut<'a> {
    /// Splits `area` into the entries of the set at `at` (validated as by
    /// [`RecordSet::parse`], which also guarantees the records do not overlap).
    pub fn split(area: &'a mut [u8], at: usize) -> Result<Self, RecordSetError> {
        let mut places = [None; MAX_RECORDS];
        {
            let set = RecordSet::parse(area, at)?;
            for (slot, r) in places.iter_mut().zip(set.records()) {
                *slot = Some((r.header, r.placement.entries));
            }
        }
        places.sort_unstable_by_key(|p| p.map_or(u64::MAX, |(_, (offset, _))| offset));
        let mut items = [const { None }; MAX_RECORDS];
        let mut rest: &'a mut [u8] = area;
        let mut consumed = 0u64;
        for (slot, place) in items.iter_mut().zip(places) {
            let Some((header, (offset, len))) = place else {
                break;
            };
            // Parsed: in bounds, and sorted disjoint ranges never go backwards.
            let skip = usize::try_from(offset.saturating_sub(consumed)).unwrap_or(usize::MAX);
            let taken = core::mem::take(&mut rest);
            let (_, tail) = taken.split_at_mut(skip.min(taken.len()));
            let (mine, tail) = tail.split_at_mut((len as usize).min(tail.len()));
            rest = tail;
            consumed = consumed.max(offset + len);
            *slot = Some((header, mine));
        }
        Ok(EntriesMut { items })
    }

    /// Takes the entries of `kind` (once).
    pub fn take(&mut self, kind: RecordKind) -> Option<(RecordHeader, &'a mut [u8])> {
        self.items
            .iter_mut()
            .find(|i| i.as_ref().is_some_and(|(h, _)| h.kind == kind))
            .and_then(Option::take)
    }
}

#[cfg(test)]
mod tests;
