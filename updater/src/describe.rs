//! An image's description: everything another image — or the host — needs to know about
//! how this image lays out what crosses a swap, as bytes. A kernel embeds its
//! description in section `.hk_schema` (built at compile time by [`build`] from the same
//! declarations the kernel runs with), the packer copies it into the package header, and
//! a running kernel compares a candidate's description with its own at staging
//! (`crate::plan`), before anything stops; the host does the same before it pushes.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `HKDESC01` |
//! | 8 | 4 | description version (1) |
//! | 12 | 4 | total length |
//! | 16 | 4 | hand-off ABI version (`crate::handoff::HANDOFF_ABI_VERSION`) |
//! | 20 | 4 | reserved, 0 |
//! | 24 | 8 | fingerprint of the hand-off descriptor's layout |
//! | 32 | 2 | record count (≤ 64) |
//! | 34 | 2 | converter count (≤ 64) |
//! | 36 | 2 | region count (≤ 32) |
//! | 38 | 2 | reserved, 0 |
//! | 40 | 24 × records | per record kind it reads: kind `u16`, version `u16`, oldest version its converters start from `u16`, flags `u16` (1 = optional), fingerprint `u64`, table offset `u32`, table length `u32` |
//! | … | 32 × converters | per converter: kind `u16`, from `u16`, to `u16`, reserved `u16`, from-table offset `u32` and length `u32`, to-table offset `u32` and length `u32`, reserved `u64` |
//! | … | 40 × regions | per region: name (16 bytes, NUL padded), start `u64`, length `u64`, rule `u8` (0 fixed, 1 may change size), reserved (7) |
//! | … | … | the field tables (`crate::table` encoding), at the offsets above |
//!
//! Offsets are from the start of the description. [`Description::parse`] checks every
//! offset, length and table.

use crate::convert::Step;
use crate::reconcile::RecordDecl;
use crate::record::Layout;
use crate::records::{RecordKind, SchemaVersion};
use crate::table::{self, TableError, TableView};

/// The magic a description starts with.
pub const MAGIC: [u8; 8] = *b"HKDESC01";
/// The description version this code reads and writes.
pub const VERSION: u32 = 1;
/// Most record kinds, converters and regions a description holds.
pub const MAX_RECORDS: usize = 64;
pub const MAX_STEPS: usize = 64;
pub const MAX_REGIONS: usize = 32;

const HEADER: usize = 40;
const RECORD: usize = 24;
const STEP: usize = 32;
const REGION: usize = 40;
const NAME: usize = 16;

/// How a region may differ between the running image and the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionRule {
    /// The same start and length, or the swap is refused (the hand-off region, the
    /// staging buffer, stacks: they hold what the swap itself uses).
    Fixed,
    /// The same start; the length may change (the heap, rebuilt by the new kernel: a
    /// larger one is mapped before anything stops, the tail of a smaller one freed
    /// after the swap).
    Resizable,
}

/// A region of the address map, as an image declares it.
#[derive(Debug, Clone, Copy)]
pub struct RegionDecl {
    /// At most 16 bytes.
    pub name: &'static str,
    pub start: u64,
    pub len: u64,
    pub rule: RegionRule,
}

/// Everything an image describes.
#[derive(Debug, Clone, Copy)]
pub struct Declaration<'a> {
    pub abi_version: u32,
    /// The hand-off descriptor's layout.
    pub descriptor: &'static Layout,
    pub records: &'a [RecordDecl],
    pub steps: &'a [&'a [Step]],
    pub regions: &'a [RegionDecl],
}

const fn step_count(d: &Declaration) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < d.steps.len() {
        n += d.steps[i].len();
        i += 1;
    }
    n
}

/// The oldest version of `kind` that `steps` reach `current` from.
pub const fn min_from(
    kind: RecordKind,
    current: SchemaVersion,
    steps: &[&[Step]],
) -> SchemaVersion {
    let mut v = current.get();
    'down: while v > 1 {
        let mut l = 0;
        while l < steps.len() {
            let mut s = 0;
            while s < steps[l].len() {
                let step = &steps[l][s];
                if step.kind.get() == kind.get() && step.to.get() == v {
                    v -= 1;
                    continue 'down;
                }
                s += 1;
            }
            l += 1;
        }
        break;
    }
    SchemaVersion::new(v)
}

/// Bytes of the description of `d`.
pub const fn len(d: &Declaration) -> usize {
    let mut n = HEADER + RECORD * d.records.len() + STEP * step_count(d) + REGION * d.regions.len();
    let mut i = 0;
    while i < d.records.len() {
        n += table::encoded_len(d.records[i].layout);
        i += 1;
    }
    let mut l = 0;
    while l < d.steps.len() {
        let mut s = 0;
        while s < d.steps[l].len() {
            n += table::encoded_len(d.steps[l][s].from_layout);
            n += table::encoded_len(d.steps[l][s].to_layout);
            s += 1;
        }
        l += 1;
    }
    n
}

const fn put(out: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    let mut i = 0;
    while i < bytes.len() {
        out[at + i] = bytes[i];
        i += 1;
    }
    at + bytes.len()
}

/// The description of `d`, `N` = [`len`]`(d)` bytes (for a `static`).
///
/// # Panics
/// At compile time, if `N` is not the description's length, or there are more records,
/// converters or regions than a description holds, or a region name is longer than 16
/// bytes.
pub const fn build<const N: usize>(d: &Declaration) -> [u8; N] {
    assert!(N == len(d), "build<N>: N is not len(declaration)");
    let mut out = [0u8; N];
    write(d, &mut out);
    out
}

/// Writes the description of `d` into `out`, which is exactly [`len`]`(d)` bytes (the
/// host builds descriptions at run time with it; a kernel uses [`build`]).
///
/// # Panics
/// As [`build`].
pub const fn write(d: &Declaration, out: &mut [u8]) {
    let n = out.len();
    assert!(
        n == len(d),
        "write: the buffer is not len(declaration) bytes"
    );
    assert!(
        d.records.len() <= MAX_RECORDS,
        "too many record kinds for a description"
    );
    assert!(
        step_count(d) <= MAX_STEPS,
        "too many converters for a description"
    );
    assert!(
        d.regions.len() <= MAX_REGIONS,
        "too many regions for a description"
    );
    let mut at = put(out, 0, &MAGIC);
    at = put(out, at, &VERSION.to_le_bytes());
    at = put(out, at, &(n as u32).to_le_bytes());
    at = put(out, at, &d.abi_version.to_le_bytes());
    at = put(out, at, &[0; 4]);
    at = put(out, at, &table::fingerprint(d.descriptor).to_le_bytes());
    at = put(out, at, &(d.records.len() as u16).to_le_bytes());
    at = put(out, at, &(step_count(d) as u16).to_le_bytes());
    at = put(out, at, &(d.regions.len() as u16).to_le_bytes());
    at = put(out, at, &[0; 2]);
    // Tables go after the fixed-size entries.
    let mut tables =
        HEADER + RECORD * d.records.len() + STEP * step_count(d) + REGION * d.regions.len();
    let mut i = 0;
    while i < d.records.len() {
        let r = &d.records[i];
        let n = table::encoded_len(r.layout);
        at = put(out, at, &r.kind.get().to_le_bytes());
        at = put(out, at, &r.version.get().to_le_bytes());
        at = put(
            out,
            at,
            &min_from(r.kind, r.version, d.steps).get().to_le_bytes(),
        );
        at = put(out, at, &(r.optional as u16).to_le_bytes());
        at = put(out, at, &table::fingerprint(r.layout).to_le_bytes());
        at = put(out, at, &(tables as u32).to_le_bytes());
        at = put(out, at, &(n as u32).to_le_bytes());
        tables = table::encode(r.layout, out, tables);
        i += 1;
    }
    let mut l = 0;
    while l < d.steps.len() {
        let mut s = 0;
        while s < d.steps[l].len() {
            let step = &d.steps[l][s];
            at = put(out, at, &step.kind.get().to_le_bytes());
            at = put(out, at, &step.from.get().to_le_bytes());
            at = put(out, at, &step.to.get().to_le_bytes());
            at = put(out, at, &[0; 2]);
            let n = table::encoded_len(step.from_layout);
            at = put(out, at, &(tables as u32).to_le_bytes());
            at = put(out, at, &(n as u32).to_le_bytes());
            tables = table::encode(step.from_layout, out, tables);
            let n = table::encoded_len(step.to_layout);
            at = put(out, at, &(tables as u32).to_le_bytes());
            at = put(out, at, &(n as u32).to_le_bytes());
            tables = table::encode(step.to_layout, out, tables);
            at = put(out, at, &[0; 8]);
            s += 1;
        }
        l += 1;
    }
    let mut r = 0;
    while r < d.regions.len() {
        let region = &d.regions[r];
        assert!(
            region.name.len() <= NAME,
            "a region name is at most 16 bytes"
        );
        let mut name = [0u8; NAME];
        let mut k = 0;
        while k < region.name.len() {
            name[k] = region.name.as_bytes()[k];
            k += 1;
        }
        at = put(out, at, &name);
        at = put(out, at, &region.start.to_le_bytes());
        at = put(out, at, &region.len.to_le_bytes());
        let rule = match region.rule {
            RegionRule::Fixed => 0u8,
            RegionRule::Resizable => 1u8,
        };
        at = put(out, at, &[rule, 0, 0, 0, 0, 0, 0, 0]);
        r += 1;
    }
    assert!(tables == n, "the tables end where the description ends");
    let _ = at;
}

// ---- reading ----------------------------------------------------------------------

/// Why bytes are not a description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescribeError {
    /// Not a description of this version.
    Magic,
    Version(u32),
    /// A length, count or offset outside the bytes.
    Bounds(&'static str),
    /// A region rule that is not 0 or 1, a region name that is not UTF-8.
    Field(&'static str),
    /// A field table that does not parse, in record or converter `index`.
    Table {
        index: usize,
        error: TableError,
    },
    /// A table's fingerprint is not the one the entry states.
    Fingerprint {
        kind: RecordKind,
    },
}

impl core::fmt::Display for DescribeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DescribeError::Magic => write!(f, "image description has no HKDESC01 magic"),
            DescribeError::Version(v) => {
                write!(
                    f,
                    "image description version {v} is not understood ({VERSION} is)"
                )
            }
            DescribeError::Bounds(what) => write!(f, "image description: {what} out of bounds"),
            DescribeError::Field(what) => write!(f, "image description: invalid {what}"),
            DescribeError::Table { index, error } => {
                write!(f, "image description, table {index}: {error}")
            }
            DescribeError::Fingerprint { kind } => write!(
                f,
                "image description: the table of {kind} does not have the fingerprint it states"
            ),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// A validated description, read in place.
#[derive(Debug, Clone, Copy)]
pub struct Description<'a> {
    bytes: &'a [u8],
    records: usize,
    steps: usize,
    regions: usize,
}

/// A record kind an image reads.
#[derive(Debug, Clone, Copy)]
pub struct RecordDesc<'a> {
    pub kind: RecordKind,
    pub version: SchemaVersion,
    /// The oldest version its converters start from.
    pub min_from: SchemaVersion,
    pub optional: bool,
    pub fingerprint: u64,
    pub table: TableView<'a>,
}

/// A converter an image carries: the tables it reads and writes.
#[derive(Debug, Clone, Copy)]
pub struct StepDesc<'a> {
    pub kind: RecordKind,
    pub from: SchemaVersion,
    pub to: SchemaVersion,
    pub from_table: TableView<'a>,
    pub to_table: TableView<'a>,
}

/// A region of an image's address map.
#[derive(Debug, Clone, Copy)]
pub struct RegionDesc<'a> {
    pub name: &'a str,
    pub start: u64,
    pub len: u64,
    pub rule: RegionRule,
}

impl<'a> Description<'a> {
    /// Reads an image's *own* description — the bytes `build` wrote into its rodata at
    /// compile time, which the running kernel parsed in full from the package before it
    /// staged the image — checking the header, the entries' bounds and every table's
    /// bounds, but not walking each table again (the bootstrap does this in the stopped
    /// section of a swap, where each table walk is time every task waits).
    pub fn parse_own(bytes: &'a [u8]) -> Result<Self, DescribeError> {
        let d = Self::header(bytes)?;
        let in_bounds = |at: usize| {
            let (off, len) = (u32_at(bytes, at) as usize, u32_at(bytes, at + 4) as usize);
            off.checked_add(len)
                .is_some_and(|end| end <= bytes.len() && len >= 6)
        };
        for i in 0..d.records {
            if !in_bounds(HEADER + RECORD * i + 16) {
                return Err(DescribeError::Bounds("field table"));
            }
        }
        for i in 0..d.steps {
            let at = HEADER + RECORD * d.records + STEP * i;
            if !in_bounds(at + 8) || !in_bounds(at + 16) {
                return Err(DescribeError::Bounds("field table"));
            }
        }
        Ok(d)
    }

    /// The header's checks: magic, version, length, counts, entries in bounds.
    fn header(bytes: &'a [u8]) -> Result<Self, DescribeError> {
        if bytes.len() < HEADER || bytes[..8] != MAGIC {
            return Err(DescribeError::Magic);
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(DescribeError::Version(version));
        }
        if u32_at(bytes, 12) as usize != bytes.len() {
            return Err(DescribeError::Bounds("total length"));
        }
        let (records, steps, regions) = (
            u16_at(bytes, 32) as usize,
            u16_at(bytes, 34) as usize,
            u16_at(bytes, 36) as usize,
        );
        if records > MAX_RECORDS || steps > MAX_STEPS || regions > MAX_REGIONS {
            return Err(DescribeError::Bounds("entry counts"));
        }
        let fixed = HEADER + RECORD * records + STEP * steps + REGION * regions;
        if fixed > bytes.len() {
            return Err(DescribeError::Bounds("entries"));
        }
        Ok(Description {
            bytes,
            records,
            steps,
            regions,
        })
    }

    /// Checks and reads a description from exactly `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DescribeError> {
        let d = Self::header(bytes)?;
        let (records, steps, regions) = (d.records, d.steps, d.regions);
        for i in 0..records {
            let at = HEADER + RECORD * i;
            let kind = RecordKind::try_new(u16_at(bytes, at))
                .map_err(|_| DescribeError::Field("record kind"))?;
            let version = SchemaVersion::try_new(u16_at(bytes, at + 2))
                .map_err(|_| DescribeError::Field("schema version"))?;
            let min = u16_at(bytes, at + 4);
            if min == 0 || min > version.get() {
                return Err(DescribeError::Field("oldest convertible version"));
            }
            let t = d.table_at(at + 16, i)?;
            if t.fingerprint() != u64_at(bytes, at + 8) {
                return Err(DescribeError::Fingerprint { kind });
            }
        }
        for i in 0..steps {
            let at = HEADER + RECORD * records + STEP * i;
            RecordKind::try_new(u16_at(bytes, at))
                .map_err(|_| DescribeError::Field("converter kind"))?;
            let (from, to) = (u16_at(bytes, at + 2), u16_at(bytes, at + 4));
            if from == 0 || to != from.wrapping_add(1) {
                return Err(DescribeError::Field("converter versions"));
            }
            d.table_at(at + 8, records + i)?;
            d.table_at(at + 16, records + i)?;
        }
        for i in 0..regions {
            let at = HEADER + RECORD * records + STEP * steps + REGION * i;
            d.region_name(at)?;
            if bytes[at + 32] > 1 {
                return Err(DescribeError::Field("region rule"));
            }
        }
        Ok(d)
    }

    /// A table the description validated in [`parse`](Self::parse), read again without
    /// checking it (and `fingerprint`, if known, not recomputed).
    fn trusted_table(&self, at: usize, fingerprint: u64) -> Option<TableView<'a>> {
        let (off, len) = (
            u32_at(self.bytes, at) as usize,
            u32_at(self.bytes, at + 4) as usize,
        );
        let bytes = self.bytes.get(off..off.checked_add(len)?)?;
        Some(TableView::trusted(bytes, fingerprint))
    }

    fn table_at(&self, at: usize, index: usize) -> Result<TableView<'a>, DescribeError> {
        let (off, len) = (
            u32_at(self.bytes, at) as usize,
            u32_at(self.bytes, at + 4) as usize,
        );
        let bytes = off
            .checked_add(len)
            .and_then(|end| self.bytes.get(off..end))
            .ok_or(DescribeError::Bounds("field table"))?;
        TableView::parse_exact(bytes).map_err(|error| DescribeError::Table { index, error })
    }

    fn region_name(&self, at: usize) -> Result<&'a str, DescribeError> {
        let raw = &self.bytes[at..at + NAME];
        let end = raw.iter().position(|&b| b == 0).unwrap_or(NAME);
        core::str::from_utf8(&raw[..end]).map_err(|_| DescribeError::Field("region name"))
    }

    /// The description's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The hand-off ABI version the image was built with.
    pub fn abi_version(&self) -> u32 {
        u32_at(self.bytes, 16)
    }

    /// The fingerprint of its hand-off descriptor's layout.
    pub fn descriptor_fingerprint(&self) -> u64 {
        u64_at(self.bytes, 24)
    }

    /// Every record kind it reads.
    pub fn records(&self) -> impl Iterator<Item = RecordDesc<'a>> + '_ {
        (0..self.records).filter_map(|i| {
            let at = HEADER + RECORD * i;
            let b = self.bytes;
            let fingerprint = u64_at(b, at + 8);
            Some(RecordDesc {
                kind: RecordKind::try_new(u16_at(b, at)).ok()?,
                version: SchemaVersion::try_new(u16_at(b, at + 2)).ok()?,
                min_from: SchemaVersion::try_new(u16_at(b, at + 4)).ok()?,
                optional: u16_at(b, at + 6) & 1 != 0,
                fingerprint,
                table: self.trusted_table(at + 16, fingerprint)?,
            })
        })
    }

    /// The record kind `kind`, if it reads it.
    pub fn record(&self, kind: RecordKind) -> Option<RecordDesc<'a>> {
        self.records().find(|r| r.kind == kind)
    }

    /// Every converter it carries.
    pub fn steps(&self) -> impl Iterator<Item = StepDesc<'a>> + '_ {
        (0..self.steps).filter_map(|i| {
            let at = HEADER + RECORD * self.records + STEP * i;
            let b = self.bytes;
            Some(StepDesc {
                kind: RecordKind::try_new(u16_at(b, at)).ok()?,
                from: SchemaVersion::try_new(u16_at(b, at + 2)).ok()?,
                to: SchemaVersion::try_new(u16_at(b, at + 4)).ok()?,
                from_table: self.trusted_table(at + 8, 0)?,
                to_table: self.trusted_table(at + 16, 0)?,
            })
        })
    }

    /// The converter of `kind` from `from`, if it carries one.
    pub fn step(&self, kind: RecordKind, from: SchemaVersion) -> Option<StepDesc<'a>> {
        self.steps().find(|s| s.kind == kind && s.from == from)
    }

    /// Every region of its address map.
    pub fn regions(&self) -> impl Iterator<Item = RegionDesc<'a>> + '_ {
        (0..self.regions).filter_map(|i| {
            let at = HEADER + RECORD * self.records + STEP * self.steps + REGION * i;
            let b = self.bytes;
            Some(RegionDesc {
                name: self.region_name(at).ok()?,
                start: u64_at(b, at + 16),
                len: u64_at(b, at + 24),
                rule: if b[at + 32] == 1 {
                    RegionRule::Resizable
                } else {
                    RegionRule::Fixed
                },
            })
        })
    }

    /// The region named `name`.
    pub fn region(&self, name: &str) -> Option<RegionDesc<'a>> {
        self.regions().find(|r| r.name == name)
    }
}

#[cfg(test)]
pub(crate) mod tests;
