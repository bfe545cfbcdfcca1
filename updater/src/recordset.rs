//! A record set: the exported (or converted) state of a kernel, as one byte string in the
//! hand-off region.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `HKRECSET` |
//! | 8 | 4 | layout version (1) |
//! | 12 | 4 | record count (≤ [`MAX_RECORDS`]) |
//! | 16 | 8 | total length in bytes |
//! | 24 | 8 | FNV-1a 64 of everything after the header |
//! | 32 | 32 × [`MAX_RECORDS`] | directory: per record kind u16, schema u16, flags u16, 0 u16, entry size u32, entry count u32, offset u64, length u64 |
//! | 1056 | … | record payloads (8-byte aligned), each `entry count × entry size` bytes |
//!
//! Entries of task-state records start with the task id (u32) followed by the state.
//! Writing needs no allocation (the bootstrap has no heap); reading validates every
//! offset and length and never panics.

use crate::record::Record;
use crate::records::{Keyed, RecordKind, SchemaVersion};
use crate::wire::{Reader, WireError, Writer};

pub const MAGIC: [u8; 8] = *b"HKRECSET";
pub const LAYOUT_VERSION: u32 = 1;
pub const MAX_RECORDS: usize = 32;
const HEADER: usize = 32;
const DIR_ENTRY: usize = 32;
const PAYLOAD_START: usize = HEADER + DIR_ENTRY * MAX_RECORDS;
/// Bytes of the task id that starts every entry of a task-state record.
pub const KEY: usize = 4;

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
}

impl core::fmt::Display for RecordSetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RecordSetError::BadMagic => write!(f, "record set has no HKRECSET magic"),
            RecordSetError::UnknownLayout(v) => {
                write!(f, "record set layout {v} is not understood (1 is)")
            }
            RecordSetError::TooManyRecords => write!(f, "more than {MAX_RECORDS} records"),
            RecordSetError::OutOfSpace { needed, available } => {
                write!(
                    f,
                    "record area too small: {needed} bytes needed, {available} available"
                )
            }
            RecordSetError::Truncated { kind } => {
                write!(
                    f,
                    "record {} extends past the end of the set",
                    KindText(*kind)
                )
            }
            RecordSetError::Checksum { expected, found } => {
                write!(
                    f,
                    "record set checksum {found:#x}, expected {expected:#x}: the set was damaged"
                )
            }
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

/// The task id at the start of a task-state entry.
pub fn key_of(entry: &[u8]) -> Result<u32, WireError> {
    <u32 as crate::record::Field>::get(entry)
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
}

impl RecordHeader {
    pub fn optional(&self) -> bool {
        self.flags & flags::OPTIONAL != 0
    }
}

/// Builds a record set in a caller-provided buffer.
pub struct RecordSetWriter<'a> {
    buf: &'a mut [u8],
    count: usize,
    end: usize,
}

impl<'a> RecordSetWriter<'a> {
    pub fn new(buf: &'a mut [u8]) -> Result<Self, RecordSetError> {
        if buf.len() < PAYLOAD_START {
            return Err(RecordSetError::OutOfSpace {
                needed: PAYLOAD_START,
                available: buf.len(),
            });
        }
        buf[..PAYLOAD_START].fill(0);
        Ok(Self {
            buf,
            count: 0,
            end: PAYLOAD_START,
        })
    }

    /// Adds a record of `entries` entries of `entry_size` bytes, entry `i` written into
    /// its `entry_size` bytes by `write(i, bytes)`.
    pub fn add_raw(
        &mut self,
        kind: RecordKind,
        schema: SchemaVersion,
        flags: u16,
        entry_size: usize,
        entries: usize,
        mut write: impl FnMut(usize, &mut [u8]),
    ) -> Result<(), RecordSetError> {
        let (start, len) = self.reserve(kind, schema, flags, entry_size, entries)?;
        for i in 0..entries {
            let at = start + i * entry_size;
            write(i, &mut self.buf[at..at + entry_size]);
        }
        debug_assert_eq!(len, entry_size * entries);
        Ok(())
    }

    /// Adds a record whose entries are `bytes` as they stand (`entries` entries of
    /// `entry_size` bytes): one copy, no per-entry work.
    pub fn add_bytes(
        &mut self,
        kind: RecordKind,
        schema: SchemaVersion,
        flags: u16,
        entry_size: usize,
        entries: usize,
        bytes: &[u8],
    ) -> Result<(), RecordSetError> {
        let (start, len) = self.reserve(kind, schema, flags, entry_size, entries)?;
        if bytes.len() != len {
            return Err(RecordSetError::EntrySize {
                kind: kind.get(),
                entry_size: entry_size as u32,
                expected: bytes.len() / entries.max(1),
            });
        }
        self.buf[start..start + len].copy_from_slice(bytes);
        Ok(())
    }

    /// Makes room for a record and writes its directory entry; returns where its
    /// entries go and their total length.
    fn reserve(
        &mut self,
        kind: RecordKind,
        schema: SchemaVersion,
        flags: u16,
        entry_size: usize,
        entries: usize,
    ) -> Result<(usize, usize), RecordSetError> {
        if self.count == MAX_RECORDS {
            return Err(RecordSetError::TooManyRecords);
        }
        let len = entry_size
            .checked_mul(entries)
            .ok_or(RecordSetError::OutOfSpace {
                needed: usize::MAX,
                available: self.buf.len(),
            })?;
        let start = self.end.next_multiple_of(8);
        if start + len > self.buf.len() {
            return Err(RecordSetError::OutOfSpace {
                needed: start + len,
                available: self.buf.len(),
            });
        }
        let d = HEADER + self.count * DIR_ENTRY;
        let mut w = Writer::new(&mut self.buf[d..d + DIR_ENTRY]);
        w.u16(kind.get());
        w.u16(schema.get());
        w.u16(flags);
        w.u16(0);
        w.u32(entry_size as u32);
        w.u32(entries as u32);
        w.u64(start as u64);
        w.u64(len as u64);
        self.count += 1;
        self.end = start + len;
        Ok((start, len))
    }

    /// Adds a record of plain entries.
    pub fn add<R: Record>(&mut self, flags: u16, entries: &[R]) -> Result<(), RecordSetError> {
        self.add_raw(
            R::KIND,
            R::SCHEMA,
            flags,
            R::SIZE,
            entries.len(),
            |i, out| entries[i].encode(out),
        )
    }

    /// Adds a task-state record from `(task id, state)` pairs produced by `each`.
    pub fn add_keyed<R: Record>(
        &mut self,
        flags: u16,
        count: usize,
        mut each: impl FnMut(usize) -> (u32, R),
    ) -> Result<(), RecordSetError> {
        self.add_raw(R::KIND, R::SCHEMA, flags, KEY + R::SIZE, count, |i, out| {
            let (task, state) = each(i);
            out[..KEY].copy_from_slice(&task.to_le_bytes());
            state.encode(&mut out[KEY..]);
        })
    }

    /// Writes the header and checksum; returns the set's length.
    pub fn finish(self) -> usize {
        let checksum = fnv1a(&self.buf[HEADER..self.end]);
        let mut w = Writer::new(&mut self.buf[..HEADER]);
        w.bytes(&MAGIC);
        w.u32(LAYOUT_VERSION);
        w.u32(self.count as u32);
        w.u64(self.end as u64);
        w.u64(checksum);
        self.end
    }
}

/// A validated record set.
#[derive(Debug, Clone, Copy)]
pub struct RecordSet<'a> {
    bytes: &'a [u8],
    count: usize,
}

/// One record of a set: its directory entry and its entries' bytes.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub header: RecordHeader,
    pub bytes: &'a [u8],
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

    /// Decodes every entry of a task-state record as `(task id, R)`.
    pub fn decode_keyed<R: Record>(
        &self,
    ) -> impl Iterator<Item = Result<Keyed<R>, WireError>> + 'a {
        let this = *self;
        (0..this.header.entries as usize).map(move |i| {
            let entry = this.entry(i);
            Ok(Keyed {
                task: key_of(entry)?,
                state: R::decode(entry.get(KEY..).unwrap_or(&[]))?,
            })
        })
    }

    /// Whether the entries have the size `R` (plain) needs.
    pub fn check_size<R: Record>(&self, keyed: bool) -> Result<(), RecordSetError> {
        let expected = R::SIZE + if keyed { KEY } else { 0 };
        if self.header.entry_size as usize != expected {
            return Err(RecordSetError::EntrySize {
                kind: self.header.kind.get(),
                entry_size: self.header.entry_size,
                expected,
            });
        }
        Ok(())
    }
}

impl<'a> RecordSet<'a> {
    /// Validates a set: magic, layout, bounds of every record, checksum, no duplicates.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, RecordSetError> {
        if bytes.len() < HEADER {
            return Err(RecordSetError::BadMagic);
        }
        let mut r = Reader::new(bytes);
        let magic: [u8; 8] = r.array().map_err(|_| RecordSetError::BadMagic)?;
        if magic != MAGIC {
            return Err(RecordSetError::BadMagic);
        }
        let layout = r.u32().map_err(|_| RecordSetError::BadMagic)?;
        if layout != LAYOUT_VERSION {
            return Err(RecordSetError::UnknownLayout(layout));
        }
        let count = r.u32().map_err(|_| RecordSetError::BadMagic)? as usize;
        let total = r.u64().map_err(|_| RecordSetError::BadMagic)?;
        let checksum = r.u64().map_err(|_| RecordSetError::BadMagic)?;
        if count > MAX_RECORDS {
            return Err(RecordSetError::TooManyRecords);
        }
        if total < PAYLOAD_START as u64 || total > bytes.len() as u64 {
            return Err(RecordSetError::OutOfSpace {
                needed: total as usize,
                available: bytes.len(),
            });
        }
        let bytes = &bytes[..total as usize];
        let found = fnv1a(&bytes[HEADER..]);
        if found != checksum {
            return Err(RecordSetError::Checksum {
                expected: checksum,
                found,
            });
        }
        let set = RecordSet { bytes, count };
        for i in 0..count {
            let rec = set.get(i)?;
            for j in 0..i {
                if set.get(j)?.header.kind == rec.header.kind {
                    return Err(RecordSetError::Duplicate {
                        kind: rec.header.kind.get(),
                    });
                }
            }
        }
        Ok(set)
    }

    fn get(&self, i: usize) -> Result<RecordRef<'a>, RecordSetError> {
        let d = HEADER + i * DIR_ENTRY;
        let mut r = Reader::new(&self.bytes[d..d + DIR_ENTRY]);
        let short = |_| RecordSetError::BadMagic;
        let kind = r.u16().map_err(short)?;
        let schema = r.u16().map_err(short)?;
        let flags = r.u16().map_err(short)?;
        r.skip(2).map_err(short)?;
        let entry_size = r.u32().map_err(short)?;
        let entries = r.u32().map_err(short)?;
        let offset = r.u64().map_err(short)?;
        let len = r.u64().map_err(short)?;
        let schema =
            SchemaVersion::try_new(schema).map_err(|_| RecordSetError::Truncated { kind })?;
        let end = offset
            .checked_add(len)
            .ok_or(RecordSetError::Truncated { kind })?;
        if offset < PAYLOAD_START as u64
            || end > self.bytes.len() as u64
            || (entry_size as u64).checked_mul(entries as u64) != Some(len)
            || entry_size == 0 && entries != 0
        {
            return Err(RecordSetError::Truncated { kind });
        }
        Ok(RecordRef {
            header: RecordHeader {
                kind: RecordKind::try_new(kind).map_err(|_| RecordSetError::Truncated { kind })?,
                schema,
                flags,
                entry_size,
                entries,
            },
            bytes: &self.bytes[offset as usize..end as usize],
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

    /// Length of the set in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{kinds, task_table, TaskKind};
    use proptest::prelude::*;
    use std::vec::Vec;

    /// A task-state record for the tests.
    #[derive(Debug, Clone, PartialEq, crate::Record)]
    #[record(kind = TaskKind::COUNTER.state_record(), version = 1)]
    #[repr(C)]
    struct Count {
        count: u64,
    }

    fn sample(buf: &mut [u8]) -> usize {
        let mut w = RecordSetWriter::new(buf).unwrap();
        let table = [
            task_table::V1 {
                id: 1,
                kind: TaskKind::COUNTER,
                affinity: 0xffff,
                period_us: 1000,
                flags: 0,
                steps: 7,
            },
            task_table::V1 {
                id: 2,
                kind: TaskKind::COUNTER,
                affinity: 1,
                period_us: 1000,
                flags: 0,
                steps: 9,
            },
        ];
        w.add(0, &table).unwrap();
        w.add_keyed(0, 2, |i| {
            (
                i as u32 + 1,
                Count {
                    count: 100 + i as u64,
                },
            )
        })
        .unwrap();
        w.finish()
    }

    #[test]
    fn round_trip() {
        let mut buf = [0u8; 4096];
        let len = sample(&mut buf);
        let set = RecordSet::parse(&buf[..len]).unwrap();
        let table = set.find(kinds::TASK_TABLE).unwrap();
        let entries: Vec<task_table::V1> = table.decode().map(Result::unwrap).collect();
        assert_eq!(entries[1].steps, 9);
        let counters = set.find(TaskKind::COUNTER.state_record()).unwrap();
        counters.check_size::<Count>(true).unwrap();
        let states: Vec<_> = counters
            .decode_keyed::<Count>()
            .map(Result::unwrap)
            .collect();
        assert_eq!((states[1].task, states[1].state.count), (2, 101));
    }

    #[test]
    fn a_copied_record_equals_the_original() {
        let mut buf = [0u8; 4096];
        let len = sample(&mut buf);
        let set = RecordSet::parse(&buf[..len]).unwrap();
        let mut out = [0u8; 4096];
        let mut w = RecordSetWriter::new(&mut out).unwrap();
        for r in set.records() {
            let h = r.header;
            w.add_bytes(
                h.kind,
                h.schema,
                h.flags,
                h.entry_size as usize,
                h.entries as usize,
                r.bytes,
            )
            .unwrap();
        }
        let n = w.finish();
        assert_eq!(&out[..n], &buf[..len]);
    }

    #[test]
    fn damage_is_detected() {
        let mut buf = [0u8; 4096];
        let len = sample(&mut buf);
        buf[len - 3] ^= 0x40;
        assert!(matches!(
            RecordSet::parse(&buf[..len]),
            Err(RecordSetError::Checksum { .. })
        ));
    }

    #[test]
    fn a_full_area_is_refused_not_overrun() {
        let mut buf = [0u8; PAYLOAD_START + 16];
        let mut w = RecordSetWriter::new(&mut buf).unwrap();
        let many = [Count { count: 1 }, Count { count: 2 }, Count { count: 3 }];
        assert!(matches!(
            w.add(0, &many),
            Err(RecordSetError::OutOfSpace { .. })
        ));
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = RecordSet::parse(&bytes).map(|s| s.records().count());
        }

        #[test]
        fn parse_never_panics_on_mutations(at in 0usize..1200, value: u8, cut in 0usize..1200) {
            let mut buf = [0u8; 4096];
            let len = sample(&mut buf);
            buf[at % len] = value;
            let end = len - cut % len;
            if let Ok(set) = RecordSet::parse(&buf[..end]) {
                for r in set.records() {
                    let _ = r.decode_keyed::<Count>().count();
                }
            }
        }
    }
}
