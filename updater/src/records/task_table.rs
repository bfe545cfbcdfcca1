//! The task table: one entry per task, the scheduler's view of it (not the task's state,
//! which is in the task kind's own record).
//!
//! - V1: `id, kind, affinity, period_us, flags, steps`.
//!
//! A kernel keeps each task's entry in the version it reads and goes through
//! [`TaskEntry`], so the scheduler and the reconcile read the same in every version;
//! version-specific bookkeeping lives in the implementations.

use super::{kinds, TaskKind};

/// `affinity` value for "any CPU".
pub const ANY_CPU: u16 = u16::MAX;

/// Entry flags.
pub mod flags {
    /// The task may be dropped by an image that does not know its kind.
    pub const OPTIONAL: u32 = 1 << 0;
    /// Created by a later image's initialisation rather than carried over.
    pub const INITIALISED_BY_UPDATE: u32 = 1 << 1;
}

/// What the scheduler and the reconcile need from a task-table entry, whatever its
/// version.
pub trait TaskEntry: crate::record::Record + crate::record::Plain {
    fn id(&self) -> u32;
    fn kind(&self) -> TaskKind;
    /// CPU index the task is pinned to, if any.
    fn affinity(&self) -> Option<u16>;
    fn period_us(&self) -> u32;
    fn flags(&self) -> u32;
    fn steps(&self) -> u64;
    /// Counts one more step, run on CPU `cpu`.
    fn note_step(&mut self, cpu: u16);
    /// A new entry (a task created by this kernel, which is boot `boot_seq`).
    fn create(
        id: u32,
        kind: TaskKind,
        affinity: Option<u16>,
        period_us: u32,
        flags: u32,
        boot_seq: u64,
    ) -> Self;
}

/// `affinity` as an option.
pub fn affinity_of(raw: u16) -> Option<u16> {
    (raw != ANY_CPU).then_some(raw)
}

#[derive(Debug, Clone, PartialEq, Eq, crate::Record)]
#[record(kind = kinds::TASK_TABLE, version = 1)]
#[repr(C)]
pub struct V1 {
    pub id: u32,
    pub kind: TaskKind,
    pub affinity: u16,
    pub period_us: u32,
    pub flags: u32,
    pub steps: u64,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record as _;
    use crate::records::testing::round_trip;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encoding_round_trips(id: u32, kind: u16, affinity: u16, period_us: u32, flags: u32, steps: u64) {
            let v1 = V1 { id, kind: TaskKind::from_raw(kind), affinity, period_us, flags, steps };
            round_trip(&v1);
            prop_assert_eq!(V1::LAYOUT.size, 24);
        }
    }
}
