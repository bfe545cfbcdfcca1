//! [`SwapReport`] (report kind 3, version 3): what a swap did, applied or rolled back.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | header: kind 3, version 1 |
//! | 8 | 88 | from: the image that ran before (version, build id, label) |
//! | 96 | 88 | to: the image the swap went to |
//! | 184 | 4 | tasks before |
//! | 188 | 4 | tasks after |
//! | 192 | 4 | CPUs parked |
//! | 196 | 4 | outcome: 0 applied, 1 rolled back |
//! | 200 | 8 | downtime, ns: first park IPI to every CPU scheduling again |
//! | 208 | 8 | old image base |
//! | 216 | 8 | new image base |
//! | 224 | 8 | staging base |
//! | 232 | … | rollback reason: text (empty when applied) |
//! | | | phases: count `u16` (≤ 16), then per phase id `u16`, 0 `u16`, ns `u64` |
//! | | | records: count `u16` (≤ 64), then per record (one per conversion stage) kind `u16`, from `u16`, to `u16`, method `u16` (0 unchanged, 1 by converter, 2 by fields), entries `u32`, fields added `u16`, fields dropped `u16`, their names: text (`+added −dropped`, may list fewer) |
//! | | | warnings: count `u16` (≤ 32), then per warning a text |
//! | | | tasks created by the new kernel's initialisation: count `u16` (≤ 16), then per kind the task kind `u16`, the count `u32`, the kind's name: text |
//!
//! A text is a `u16` length and that many bytes of UTF-8 (at most 256).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::{
    bounded, read_count, read_text, write_text, Layout, MAX_CONVERSIONS, MAX_PHASES, MAX_WARNINGS,
};
use crate::error::{FormatError, Result};
use crate::identity::ImageSummary;
use crate::kinds::RecordKind;
use crate::mailbox::ReportKind;
use crate::version::SchemaVersion;
use crate::wire::{Reader, Writer};

const LAYOUT: Layout = Layout {
    kind: ReportKind::Swap,
    version: 3,
    name: "swap report",
};

/// A phase of the swap whose duration is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum PhaseId {
    /// From the first park IPI to the last acknowledgement.
    Quiesce = 1,
    /// The old kernel writing its records into the hand-off region.
    Export = 2,
    /// The new image's bootstrap comparing versions and converting records.
    Reconcile = 3,
    /// Copying the new segments over the old image.
    Overlay = 4,
    /// The new kernel rebuilding CPU state and importing records.
    Reinit = 5,
    /// Releasing the parked CPUs until every one schedules.
    Release = 6,
}

impl PhaseId {
    /// Every phase, in order.
    pub const ALL: [PhaseId; 6] = [
        Self::Quiesce,
        Self::Export,
        Self::Reconcile,
        Self::Overlay,
        Self::Reinit,
        Self::Release,
    ];

    /// The phase with `code`, if there is one.
    pub const fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            1 => Self::Quiesce,
            2 => Self::Export,
            3 => Self::Reconcile,
            4 => Self::Overlay,
            5 => Self::Reinit,
            6 => Self::Release,
            _ => return None,
        })
    }

    /// The phase's name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Quiesce => "quiesce",
            Self::Export => "export",
            Self::Reconcile => "reconcile",
            Self::Overlay => "overlay",
            Self::Reinit => "reinit",
            Self::Release => "release",
        }
    }
}

/// How long one phase took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseTime {
    /// The phase.
    pub phase: PhaseId,
    /// Its duration in nanoseconds.
    pub ns: u64,
}

/// How a record crossed the swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum Method {
    /// Its layout did not change: the new kernel took the entries where they stood.
    Unchanged = 0,
    /// The new image's converter (N → N+1).
    Converter = 1,
    /// Conversion by field: fields added with their defaults, dropped, moved, widened.
    Fields = 2,
}

impl Method {
    /// The method with `code`, if there is one.
    pub const fn from_code(code: u16) -> Option<Self> {
        Some(match code {
            0 => Self::Unchanged,
            1 => Self::Converter,
            2 => Self::Fields,
            _ => return None,
        })
    }
}

/// What became of one record kind in the swap (one entry per conversion stage: a chain
/// of a converter and conversion by field is two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// The record kind.
    pub kind: RecordKind,
    /// The version before this stage.
    pub from: SchemaVersion,
    /// The version after it.
    pub to: SchemaVersion,
    /// How.
    pub method: Method,
    /// Entries it holds.
    pub entries: u32,
    /// By fields: how many fields were added (with their defaults).
    pub added: u16,
    /// By fields: how many fields were dropped.
    pub dropped: u16,
    /// By fields: `+added −dropped` names (may list fewer than the counts).
    pub names: String,
}

impl fmt::Display for Conversion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.method {
            Method::Unchanged => write!(f, "{} {} unchanged", self.kind, self.from)?,
            Method::Converter => write!(
                f,
                "{} {} -> {} converted by converter",
                self.kind, self.from, self.to
            )?,
            Method::Fields => {
                write!(
                    f,
                    "{} {} -> {} converted by fields",
                    self.kind, self.from, self.to
                )?;
                if !self.names.is_empty() {
                    write!(f, " ({})", self.names)?;
                }
                let listed = self.names.split_whitespace().count();
                let all = usize::from(self.added) + usize::from(self.dropped);
                if all > listed {
                    write!(f, " and {} more", all - listed)?;
                }
            }
        }
        write!(f, ", {} entries", self.entries)
    }
}

/// Whether the swap took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new kernel runs.
    Applied,
    /// The old kernel runs on, unchanged.
    RolledBack {
        /// Why (at most 256 bytes).
        reason: String,
    },
}

/// What a swap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapReport {
    /// The image that ran before.
    pub from: ImageSummary,
    /// The image the swap went to.
    pub to: ImageSummary,
    /// Tasks before the swap.
    pub tasks_before: u32,
    /// Tasks after it.
    pub tasks_after: u32,
    /// CPUs parked for it.
    pub cpus_parked: u32,
    /// From the first park IPI to every CPU scheduling again, in nanoseconds.
    pub downtime_ns: u64,
    /// Per-phase durations, at most [`MAX_PHASES`].
    pub phases: Vec<PhaseTime>,
    /// Records converted, at most [`MAX_CONVERSIONS`].
    pub conversions: Vec<Conversion>,
    /// Short remarks (a record dropped as optional, …), at most [`MAX_WARNINGS`].
    pub warnings: Vec<String>,
    /// Applied or rolled back.
    pub outcome: Outcome,
    /// Where the old image was.
    pub old_image_base: u64,
    /// Where the new image is.
    pub new_image_base: u64,
    /// Where the new image was staged and relocated first.
    pub staging_base: u64,
    /// Tasks the new kernel created by initialisation (kinds new in its image), at most
    /// [`MAX_INITIALISED`] kinds.
    pub initialised: Vec<Initialised>,
}

/// Kinds of tasks a swap's report lists as created by initialisation, at most.
pub const MAX_INITIALISED: usize = 16;

/// Tasks of one kind the new kernel created by initialisation (the kind is new in its
/// image: nothing crossed the swap for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initialised {
    /// The task kind.
    pub kind: crate::kinds::TaskKind,
    /// Its name in the new image.
    pub name: String,
    /// How many tasks.
    pub count: u32,
}

impl fmt::Display for Initialised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.count, self.name)
    }
}

impl SwapReport {
    /// Writes the report into `out`; returns the length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize> {
        self.check()?;
        LAYOUT.encode(out, |w| self.write(w))
    }

    /// The encoded report.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        self.check()?;
        LAYOUT.to_vec(|w| self.write(w))
    }

    /// Reads exactly one swap report from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        LAYOUT.decode(bytes, Self::read)
    }

    fn check(&self) -> Result<()> {
        bounded("swap report phase list", self.phases.len(), MAX_PHASES)?;
        bounded(
            "swap report conversion list",
            self.conversions.len(),
            MAX_CONVERSIONS,
        )?;
        bounded(
            "swap report warning list",
            self.warnings.len(),
            MAX_WARNINGS,
        )?;
        bounded(
            "swap report list of initialised tasks",
            self.initialised.len(),
            MAX_INITIALISED,
        )
    }

    fn write(&self, w: &mut Writer<'_>) {
        self.from.write(w);
        self.to.write(w);
        w.u32(self.tasks_before);
        w.u32(self.tasks_after);
        w.u32(self.cpus_parked);
        let reason = match &self.outcome {
            Outcome::Applied => {
                w.u32(0);
                ""
            }
            Outcome::RolledBack { reason } => {
                w.u32(1);
                reason.as_str()
            }
        };
        w.u64(self.downtime_ns);
        w.u64(self.old_image_base);
        w.u64(self.new_image_base);
        w.u64(self.staging_base);
        write_text(w, reason);
        w.u16(self.phases.len() as u16);
        for p in &self.phases {
            w.u16(p.phase as u16);
            w.u16(0);
            w.u64(p.ns);
        }
        w.u16(self.conversions.len() as u16);
        for c in &self.conversions {
            w.u16(c.kind.get());
            w.u16(c.from.get());
            w.u16(c.to.get());
            w.u16(c.method as u16);
            w.u32(c.entries);
            w.u16(c.added);
            w.u16(c.dropped);
            write_text(w, &c.names);
        }
        w.u16(self.warnings.len() as u16);
        for text in &self.warnings {
            write_text(w, text);
        }
        w.u16(self.initialised.len() as u16);
        for i in &self.initialised {
            w.u16(i.kind.raw());
            w.u32(i.count);
            write_text(w, &i.name);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let from = ImageSummary::read(r)?;
        let to = ImageSummary::read(r)?;
        let tasks_before = r.u32()?;
        let tasks_after = r.u32()?;
        let cpus_parked = r.u32()?;
        let outcome_code = r.u32()?;
        let downtime_ns = r.u64()?;
        let old_image_base = r.u64()?;
        let new_image_base = r.u64()?;
        let staging_base = r.u64()?;
        let reason = read_text(r, "rollback reason")?;
        let outcome = match outcome_code {
            0 if reason.is_empty() => Outcome::Applied,
            1 => Outcome::RolledBack { reason },
            code => {
                return Err(FormatError::InvalidField {
                    field: "swap outcome",
                    value: u64::from(code),
                    reason: "is neither 0 (applied, no reason) nor 1 (rolled back)",
                })
            }
        };
        let count = r.u16()?;
        let count = read_count(
            r,
            "swap report phase list",
            u64::from(count),
            MAX_PHASES,
            12,
        )?;
        let mut phases = Vec::with_capacity(count);
        for _ in 0..count {
            let code = r.u16()?;
            let phase = PhaseId::from_code(code).ok_or(FormatError::InvalidField {
                field: "phase id",
                value: u64::from(code),
                reason: "unknown phase",
            })?;
            let _reserved = r.u16()?;
            phases.push(PhaseTime {
                phase,
                ns: r.u64()?,
            });
        }
        let count = r.u16()?;
        let count = read_count(
            r,
            "swap report conversion list",
            u64::from(count),
            MAX_CONVERSIONS,
            18,
        )?;
        let mut conversions = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = RecordKind::try_new(r.u16()?)?;
            let from = SchemaVersion::try_new(r.u16()?)?;
            let to = SchemaVersion::try_new(r.u16()?)?;
            let code = r.u16()?;
            let method = Method::from_code(code).ok_or(FormatError::InvalidField {
                field: "record method",
                value: u64::from(code),
                reason: "is not 0 (unchanged), 1 (converter) or 2 (fields)",
            })?;
            let entries = r.u32()?;
            let added = r.u16()?;
            let dropped = r.u16()?;
            conversions.push(Conversion {
                kind,
                from,
                to,
                method,
                entries,
                added,
                dropped,
                names: read_text(r, "field names")?,
            });
        }
        let count = r.u16()?;
        let count = read_count(
            r,
            "swap report warning list",
            u64::from(count),
            MAX_WARNINGS,
            2,
        )?;
        let mut warnings = Vec::with_capacity(count);
        for _ in 0..count {
            warnings.push(read_text(r, "warning")?);
        }
        let count = r.u16()?;
        let count = read_count(
            r,
            "swap report list of initialised tasks",
            u64::from(count),
            MAX_INITIALISED,
            8,
        )?;
        let mut initialised = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = crate::kinds::TaskKind::from_raw(r.u16()?);
            let count = r.u32()?;
            initialised.push(Initialised {
                kind,
                count,
                name: read_text(r, "task kind name")?,
            });
        }
        Ok(Self {
            from,
            to,
            tasks_before,
            tasks_after,
            cpus_parked,
            downtime_ns,
            phases,
            conversions,
            warnings,
            outcome,
            old_image_base,
            new_image_base,
            staging_base,
            initialised,
        })
    }
}

/// Microseconds with one decimal, from nanoseconds.
struct Micros(u64);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} µs", self.0 / 1000, (self.0 % 1000) / 100)
    }
}

/// A multi-line summary: outcome, images, downtime with phases, conversions, warnings.
impl fmt::Display for SwapReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Outcome::Applied => writeln!(f, "swap applied: {} -> {}", self.from, self.to)?,
            Outcome::RolledBack { reason } => writeln!(
                f,
                "swap rolled back: {} stays (wanted {}): {reason}",
                self.from, self.to
            )?,
        }
        writeln!(
            f,
            "  downtime {} with {} CPUs parked; tasks {} -> {}",
            Micros(self.downtime_ns),
            self.cpus_parked,
            self.tasks_before,
            self.tasks_after
        )?;
        for p in &self.phases {
            writeln!(f, "    {:<10} {}", p.phase.name(), Micros(p.ns))?;
        }
        writeln!(
            f,
            "  image {:#x} -> {:#x}, staged at {:#x}",
            self.old_image_base, self.new_image_base, self.staging_base
        )?;
        for c in &self.conversions {
            writeln!(f, "  record {c}")?;
        }
        if !self.initialised.is_empty() {
            let list: Vec<String> = self
                .initialised
                .iter()
                .map(|i| alloc::format!("{i}"))
                .collect();
            writeln!(f, "  created by initialisation: {}", list.join(", "))?;
        }
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        Ok(())
    }
}
