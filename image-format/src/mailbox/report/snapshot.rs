//! [`Snapshot`] (report kind 1, version 2): every task's state at one instant, and the
//! running image's task kinds (name and continuity rule), so the host can name and
//! check kinds it was not built with.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | header: kind 1, version 2 |
//! | 8 | 8 | TSC frequency (Hz) |
//! | 16 | 8 | TSC when the snapshot was taken |
//! | 24 | 4 | task count (≤ 4096) |
//! | 28 | 52 × count | tasks: id `u32`, kind `u16`, schema `u16`, cpu `u16`, flags `u16`, steps `u64`, values 4 × `u64` |
//! | … | 2 | kind count (≤ 64) |
//! | … | … | kinds: id `u16`, name (text), clause count `u8` (≤ 8), clauses 4 bytes each (opaque here; `updater::continuity` reads them) |

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::{bounded, read_count, read_text, write_text, Layout, MAX_TASKS};
use crate::error::Result;
use crate::mailbox::ReportKind;
use crate::wire::{Reader, Writer};

const LAYOUT: Layout = Layout {
    kind: ReportKind::Snapshot,
    version: 2,
    name: "snapshot report",
};
const TASK_SIZE: usize = 52;
/// Most task kinds a snapshot describes.
pub const MAX_KINDS: usize = 64;
/// Most continuity clauses of one kind.
pub const MAX_CLAUSES: usize = 8;

/// A task kind of the running image, as a snapshot describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KindInfo {
    /// The kind's stable id.
    pub id: u16,
    /// Its name.
    pub name: String,
    /// Its continuity rule: clauses of 4 bytes each (`updater::continuity::Clause`).
    pub continuity: Vec<[u8; 4]>,
}

/// One task in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskSnapshot {
    /// The task's id.
    pub id: u32,
    /// The task's kind (a stable task-kind id).
    pub kind: u16,
    /// The schema version its state is kept in.
    pub schema: u16,
    /// The CPU it last ran on.
    pub cpu: u16,
    /// Scheduler flags.
    pub flags: u16,
    /// Steps run since the task was created (across swaps).
    pub steps: u64,
    /// The first four words of its state, as the kind defines them.
    pub values: [u64; 4],
}

/// Every task's state at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// TSC ticks per second.
    pub tsc_hz: u64,
    /// TSC when the snapshot was taken.
    pub tsc: u64,
    /// The tasks, at most [`MAX_TASKS`].
    pub tasks: Vec<TaskSnapshot>,
    /// The running image's task kinds, at most [`MAX_KINDS`].
    pub kinds: Vec<KindInfo>,
}

impl Snapshot {
    /// The running image's description of kind `id`.
    pub fn kind(&self, id: u16) -> Option<&KindInfo> {
        self.kinds.iter().find(|k| k.id == id)
    }

    /// The name of kind `id` as the running image calls it, or the well-known name.
    pub fn kind_name(&self, id: u16) -> &str {
        self.kind(id)
            .map_or_else(|| crate::TaskKind::from_raw(id).name(), |k| k.name.as_str())
    }

    fn check_bounds(&self) -> Result<()> {
        bounded("snapshot task list", self.tasks.len(), MAX_TASKS)?;
        bounded("snapshot kind list", self.kinds.len(), MAX_KINDS)?;
        for k in &self.kinds {
            bounded(
                "continuity clauses of a kind",
                k.continuity.len(),
                MAX_CLAUSES,
            )?;
        }
        Ok(())
    }
}

impl Snapshot {
    /// Writes the report into `out`; returns the length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize> {
        self.check_bounds()?;
        LAYOUT.encode(out, |w| self.write(w))
    }

    /// The encoded report.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        self.check_bounds()?;
        LAYOUT.to_vec(|w| self.write(w))
    }

    /// Reads exactly one snapshot report from `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        LAYOUT.decode(bytes, Self::read)
    }

    fn write(&self, w: &mut Writer<'_>) {
        w.u64(self.tsc_hz);
        w.u64(self.tsc);
        w.u32(self.tasks.len() as u32);
        for t in &self.tasks {
            w.u32(t.id);
            w.u16(t.kind);
            w.u16(t.schema);
            w.u16(t.cpu);
            w.u16(t.flags);
            w.u64(t.steps);
            for v in t.values {
                w.u64(v);
            }
        }
        w.u16(self.kinds.len() as u16);
        for k in &self.kinds {
            w.u16(k.id);
            write_text(w, &k.name);
            w.u8(k.continuity.len() as u8);
            for c in &k.continuity {
                w.put(c);
            }
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self> {
        let tsc_hz = r.u64()?;
        let tsc = r.u64()?;
        let count = r.u32()?;
        let count = read_count(
            r,
            "snapshot task list",
            u64::from(count),
            MAX_TASKS,
            TASK_SIZE,
        )?;
        let mut tasks = Vec::with_capacity(count);
        for _ in 0..count {
            tasks.push(TaskSnapshot {
                id: r.u32()?,
                kind: r.u16()?,
                schema: r.u16()?,
                cpu: r.u16()?,
                flags: r.u16()?,
                steps: r.u64()?,
                values: [r.u64()?, r.u64()?, r.u64()?, r.u64()?],
            });
        }
        let count = r.u16()?;
        let count = read_count(r, "snapshot kind list", u64::from(count), MAX_KINDS, 5)?;
        let mut kinds = Vec::with_capacity(count);
        for _ in 0..count {
            let id = r.u16()?;
            let name = read_text(r, "kind name")?;
            let n = r.u8()?;
            let n = read_count(
                r,
                "continuity clauses of a kind",
                u64::from(n),
                MAX_CLAUSES,
                4,
            )?;
            let mut continuity = Vec::with_capacity(n);
            for _ in 0..n {
                continuity.push(r.array()?);
            }
            kinds.push(KindInfo {
                id,
                name,
                continuity,
            });
        }
        Ok(Self {
            tsc_hz,
            tsc,
            tasks,
            kinds,
        })
    }
}

/// One line per task: id, kind, schema, cpu, steps, values.
impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} tasks (TSC {} at {} Hz)",
            self.tasks.len(),
            self.tsc,
            self.tsc_hz
        )?;
        writeln!(
            f,
            "    id  kind            schema  cpu  flags  steps       values"
        )?;
        for t in &self.tasks {
            writeln!(
                f,
                "  {:>4}  {:<14}  {:>6}  {:>3}  {:#06x} {:>10}  {:#x} {:#x} {:#x} {:#x}",
                t.id,
                self.kind_name(t.kind),
                t.schema,
                t.cpu,
                t.flags,
                t.steps,
                t.values[0],
                t.values[1],
                t.values[2],
                t.values[3]
            )?;
        }
        Ok(())
    }
}
