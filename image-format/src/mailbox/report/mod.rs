//! Reports: the binary records the guest writes at the report area (`0x3000`) to go
//! with a response (feature `alloc`).
//!
//! Every report starts with its kind (`u32`, [`ReportKind`] code) and its version
//! (`u32`), then its fields, little-endian. Lists are prefixed by their length and
//! bounded ([`MAX_TASKS`], [`MAX_PHASES`], [`MAX_CONVERSIONS`], [`MAX_WARNINGS`]); texts
//! are a `u16` length then UTF-8, at most [`MAX_TEXT`] bytes (longer texts are cut on a
//! character boundary when encoded). A report changes layout only with a new version;
//! a reader refuses versions it does not know.
//!
//! | kind | type | answers |
//! | --- | --- | --- |
//! | 1 | [`Snapshot`] | `Snapshot` |
//! | 2 | [`StageReport`] | `Stage` |
//! | 3 | [`SwapReport`] | `Apply` (and `Stage` with `APPLY_AFTER_STAGE`) |
//! | 4 | [`PatchReport`] | `PatchApply`, `PatchRemove` |
//! | 5 | [`PatchList`] | `PatchList` |
//! | 6 | [`ImageBytes`] | `ReadImage` |
//!
//! The guest encodes a report with its `encode` into the report area, then writes the
//! response naming the kind and length; the host reads it back with [`Report::read`].

mod memory;
mod patch;
mod snapshot;
mod stage;
mod swap;

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

pub use memory::{ImageBytes, MAX_IMAGE_READ};
pub use patch::{
    PatchEntry, PatchList, PatchOp, PatchReport, PatchedFunction, MAX_PATCHES, MAX_PATCH_FUNCTIONS,
};
pub use snapshot::{KindInfo, Snapshot, TaskSnapshot, MAX_CLAUSES, MAX_KINDS};
pub use stage::StageReport;
pub use swap::{
    Conversion, Initialised, Method, Outcome, PhaseId, PhaseTime, SwapReport, MAX_INITIALISED,
};

use super::response::{ReportKind, Response};
use crate::error::{FormatError, Result};
use crate::wire::{Reader, Writer};

/// Most tasks in a snapshot.
pub const MAX_TASKS: usize = 4096;
/// Most phase timings in a swap report.
pub const MAX_PHASES: usize = 16;
/// Most conversions in a swap report.
pub const MAX_CONVERSIONS: usize = 64;
/// Most warnings in a swap report.
pub const MAX_WARNINGS: usize = 32;
/// Longest text (a warning, a rollback reason), in bytes.
pub const MAX_TEXT: usize = 256;

/// What a report type writes in its header, and its name for errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout {
    kind: ReportKind,
    version: u32,
    name: &'static str,
}

impl Layout {
    /// Writes the header, then the fields with `fields`, into `out`; returns the length.
    fn encode(self, out: &mut [u8], fields: impl FnOnce(&mut Writer<'_>)) -> Result<usize> {
        let mut w = Writer::new(out);
        w.u32(self.kind.code());
        w.u32(self.version);
        fields(&mut w);
        w.finish(self.name)
    }

    /// Encodes into a new vector (at most the report area's size).
    fn to_vec(self, fields: impl FnOnce(&mut Writer<'_>)) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; super::REPORT_CAPACITY];
        let len = self
            .encode(&mut buf, fields)
            .map_err(|_| FormatError::TooLarge {
                what: self.name,
                size: super::REPORT_CAPACITY as u64 + 1,
                holder: "report area",
                capacity: super::REPORT_CAPACITY as u64,
            })?;
        buf.truncate(len);
        Ok(buf)
    }

    /// Checks the header, reads the fields with `fields`, and checks that nothing is left.
    fn decode<T>(
        self,
        bytes: &[u8],
        fields: impl FnOnce(&mut Reader<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut r = Reader::new(bytes, self.name);
        let kind = r.u32()?;
        if kind != self.kind.code() {
            return Err(FormatError::InvalidField {
                field: "report kind",
                value: u64::from(kind),
                reason: "is not the kind expected here",
            });
        }
        let version = r.u32()?;
        if version != self.version {
            return Err(FormatError::UnsupportedVersion {
                what: self.name,
                found: version,
                supported: self.version,
            });
        }
        let value = fields(&mut r)?;
        r.finish()?;
        Ok(value)
    }
}

/// A `u16` length, then `text` cut to [`MAX_TEXT`] bytes on a character boundary.
fn write_text(w: &mut Writer<'_>, text: &str) {
    let mut end = text.len().min(MAX_TEXT);
    while !text.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    let bytes = text.as_bytes().get(..end).unwrap_or(&[]);
    w.u16(bytes.len() as u16);
    w.put(bytes);
}

/// The inverse of [`write_text`]; `field` names the text in errors.
fn read_text(r: &mut Reader<'_>, field: &'static str) -> Result<String> {
    let len = r.u16()?;
    if usize::from(len) > MAX_TEXT {
        return Err(FormatError::InvalidField {
            field,
            value: u64::from(len),
            reason: "is longer than 256 bytes",
        });
    }
    let bytes = r.bytes(usize::from(len))?;
    core::str::from_utf8(bytes)
        .map(String::from)
        .map_err(|e| FormatError::InvalidField {
            field,
            value: e.valid_up_to() as u64,
            reason: "is not valid UTF-8 at this byte",
        })
}

/// A list length, checked against `max` and against the bytes left (at least
/// `min_entry` bytes per entry) before anything is allocated.
fn read_count(
    r: &Reader<'_>,
    table: &'static str,
    count: u64,
    max: usize,
    min_entry: usize,
) -> Result<usize> {
    if count > max as u64 {
        return Err(FormatError::TooManyEntries {
            table,
            count,
            max: max as u64,
        });
    }
    let count = count as usize;
    let needed = count.saturating_mul(min_entry);
    if needed > r.remaining() {
        return Err(FormatError::Truncated {
            what: table,
            needed: r.position().saturating_add(needed) as u64,
            got: r.position().saturating_add(r.remaining()) as u64,
        });
    }
    Ok(count)
}

/// Fails with `TooManyEntries` if `len > max`.
fn bounded(table: &'static str, len: usize, max: usize) -> Result<()> {
    if len > max {
        Err(FormatError::TooManyEntries {
            table,
            count: len as u64,
            max: max as u64,
        })
    } else {
        Ok(())
    }
}

/// Any report.
// A swap report is larger than the others; reports are few and short-lived, so it is
// not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Every task's state.
    Snapshot(Snapshot),
    /// The result of staging a package.
    Stage(StageReport),
    /// The result of a swap.
    Swap(SwapReport),
    /// A hotpatch apply or remove.
    Patch(PatchReport),
    /// The applied hotpatches.
    PatchList(PatchList),
    /// Bytes of the running image.
    ImageBytes(ImageBytes),
}

impl Report {
    /// The report's kind.
    pub fn kind(&self) -> ReportKind {
        match self {
            Self::Snapshot(_) => ReportKind::Snapshot,
            Self::Stage(_) => ReportKind::Stage,
            Self::Swap(_) => ReportKind::Swap,
            Self::Patch(_) => ReportKind::Patch,
            Self::PatchList(_) => ReportKind::PatchList,
            Self::ImageBytes(_) => ReportKind::ImageBytes,
        }
    }

    /// Writes the report into `out` (the report area); returns the length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize> {
        match self {
            Self::Snapshot(r) => r.encode(out),
            Self::Stage(r) => r.encode(out),
            Self::Swap(r) => r.encode(out),
            Self::Patch(r) => r.encode(out),
            Self::PatchList(r) => r.encode(out),
            Self::ImageBytes(r) => r.encode(out),
        }
    }

    /// Reads a report of any kind from exactly `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let kind = Reader::new(bytes, "report").u32()?;
        match ReportKind::from_code(kind) {
            Some(ReportKind::Snapshot) => Snapshot::decode(bytes).map(Self::Snapshot),
            Some(ReportKind::Stage) => StageReport::decode(bytes).map(Self::Stage),
            Some(ReportKind::Swap) => SwapReport::decode(bytes).map(Self::Swap),
            Some(ReportKind::Patch) => PatchReport::decode(bytes).map(Self::Patch),
            Some(ReportKind::PatchList) => PatchList::decode(bytes).map(Self::PatchList),
            Some(ReportKind::ImageBytes) => ImageBytes::decode(bytes).map(Self::ImageBytes),
            Some(ReportKind::None) | None => Err(FormatError::InvalidField {
                field: "report kind",
                value: u64::from(kind),
                reason: "unknown report kind",
            }),
        }
    }

    /// The report that goes with `response`, read from the report area: `None` if the
    /// response names none, an error if the area does not hold the kind and length the
    /// response names.
    pub fn read(response: &Response, report_area: &[u8]) -> Result<Option<Self>> {
        if response.report_kind == ReportKind::None {
            return Ok(None);
        }
        let len = response.report_len as usize;
        let bytes = report_area.get(..len).ok_or(FormatError::Truncated {
            what: "report area",
            needed: len as u64,
            got: report_area.len() as u64,
        })?;
        let report = Self::decode(bytes)?;
        if report.kind() != response.report_kind {
            return Err(FormatError::InvalidField {
                field: "report kind",
                value: u64::from(report.kind().code()),
                reason: "differs from the kind the response names",
            });
        }
        Ok(Some(report))
    }
}

#[cfg(test)]
mod tests;
