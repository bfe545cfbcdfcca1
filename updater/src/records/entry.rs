//! What the scheduler needs from a task-table entry, whatever its version.
//!
//! A kernel keeps each task's table entry in the version it reads; the scheduler goes
//! through this trait so it reads the same in every variant. Version-specific
//! bookkeeping (v3 counts migrations) lives in the implementations.

use super::task_table::{ANY_CPU, V1, V2, V3};
use super::TaskKind;

pub trait TaskEntry: Clone + core::fmt::Debug {
    fn id(&self) -> u32;
    fn kind(&self) -> TaskKind;
    /// CPU index the task is pinned to, if any.
    fn affinity(&self) -> Option<u16>;
    fn period_us(&self) -> u32;
    fn flags(&self) -> u32;
    fn steps(&self) -> u64;
    /// Counts one more step, run on CPU `cpu`.
    fn note_step(&mut self, cpu: u16);
    /// A new entry (a task created by this kernel).
    fn create(
        id: u32,
        kind: TaskKind,
        affinity: Option<u16>,
        period_us: u32,
        flags: u32,
        boot_seq: u64,
    ) -> Self;
}

fn affinity_of(raw: u16) -> Option<u16> {
    (raw != ANY_CPU).then_some(raw)
}

impl TaskEntry for V1 {
    fn id(&self) -> u32 {
        self.id
    }
    fn kind(&self) -> TaskKind {
        self.kind
    }
    fn affinity(&self) -> Option<u16> {
        affinity_of(self.affinity)
    }
    fn period_us(&self) -> u32 {
        self.period_us
    }
    fn flags(&self) -> u32 {
        self.flags
    }
    fn steps(&self) -> u64 {
        self.steps
    }
    fn note_step(&mut self, _cpu: u16) {
        self.steps += 1;
    }
    fn create(
        id: u32,
        kind: TaskKind,
        affinity: Option<u16>,
        period_us: u32,
        flags: u32,
        _boot_seq: u64,
    ) -> Self {
        V1 {
            id,
            kind,
            affinity: affinity.unwrap_or(ANY_CPU),
            period_us,
            flags,
            steps: 0,
        }
    }
}

impl TaskEntry for V2 {
    fn id(&self) -> u32 {
        self.id
    }
    fn kind(&self) -> TaskKind {
        self.kind
    }
    fn affinity(&self) -> Option<u16> {
        affinity_of(self.affinity)
    }
    fn period_us(&self) -> u32 {
        self.period_us
    }
    fn flags(&self) -> u32 {
        self.flags as u32
    }
    fn steps(&self) -> u64 {
        self.steps
    }
    fn note_step(&mut self, _cpu: u16) {
        self.steps += 1;
    }
    fn create(
        id: u32,
        kind: TaskKind,
        affinity: Option<u16>,
        period_us: u32,
        flags: u32,
        boot_seq: u64,
    ) -> Self {
        V2 {
            kind,
            priority: super::task_table::default_priority(kind),
            id,
            steps: 0,
            created_seq: boot_seq,
            period_us,
            affinity: affinity.unwrap_or(ANY_CPU),
            flags: flags as u16,
        }
    }
}

impl TaskEntry for V3 {
    fn id(&self) -> u32 {
        self.id
    }
    fn kind(&self) -> TaskKind {
        self.kind
    }
    fn affinity(&self) -> Option<u16> {
        affinity_of(self.affinity)
    }
    fn period_us(&self) -> u32 {
        self.period_us
    }
    fn flags(&self) -> u32 {
        self.flags as u32
    }
    fn steps(&self) -> u64 {
        self.steps
    }
    fn note_step(&mut self, cpu: u16) {
        self.steps += 1;
        if self.last_cpu != cpu {
            if self.last_cpu != ANY_CPU {
                self.migrations += 1;
            }
            self.last_cpu = cpu;
        }
    }
    fn create(
        id: u32,
        kind: TaskKind,
        affinity: Option<u16>,
        period_us: u32,
        flags: u32,
        boot_seq: u64,
    ) -> Self {
        V3 {
            id,
            kind,
            affinity: affinity.unwrap_or(ANY_CPU),
            steps: 0,
            created_seq: boot_seq,
            period_us,
            priority: super::task_table::default_priority(kind),
            flags: flags as u16,
            last_cpu: ANY_CPU,
            migrations: 0,
        }
    }
}
