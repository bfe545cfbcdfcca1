//! The task table: one entry per task, the scheduler's view of it (not the task's state,
//! which is in the task kind's own record).
//!
//! - V1: `id, kind, affinity, period_us, flags (u32), steps`.
//! - V2 (fields added and reordered): `kind, priority, id, steps, created_seq, period_us,
//!   affinity, flags (u16)`.
//! - V3 (fields added): V2 plus `last_cpu` and `migrations`.

use super::{kinds, RecordKind, SchemaVersion, StateRecord, TaskKind};
use crate::wire::{Reader, WireError, Writer};

/// `affinity` value for "any CPU".
pub const ANY_CPU: u16 = u16::MAX;

/// Entry flags.
pub mod flags {
    /// The task may be dropped by an image that does not know its kind.
    pub const OPTIONAL: u32 = 1 << 0;
    /// Created by a later image's initialisation rather than carried over.
    pub const INITIALISED_BY_UPDATE: u32 = 1 << 1;
}

/// Why an entry could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskTableError {
    /// V2 narrowed the flags to 16 bits; a V1 entry used a higher bit.
    FlagsDoNotFit { task: u32, flags: u32 },
}

impl core::fmt::Display for TaskTableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TaskTableError::FlagsDoNotFit { task, flags } => {
                write!(
                    f,
                    "task {task}: flags {flags:#x} do not fit the 16-bit flags of task-table v2"
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1 {
    pub id: u32,
    pub kind: TaskKind,
    pub affinity: u16,
    pub period_us: u32,
    pub flags: u32,
    pub steps: u64,
}

impl StateRecord for V1 {
    const KIND: RecordKind = kinds::TASK_TABLE;
    const SCHEMA: SchemaVersion = SchemaVersion::new(1);
    const SIZE: usize = 24;
    fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.id);
        w.u16(self.kind.raw());
        w.u16(self.affinity);
        w.u32(self.period_us);
        w.u32(self.flags);
        w.u64(self.steps);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(V1 {
            id: r.u32()?,
            kind: TaskKind::from_raw(r.u16()?),
            affinity: r.u16()?,
            period_us: r.u32()?,
            flags: r.u32()?,
            steps: r.u64()?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2 {
    pub kind: TaskKind,
    /// 0 runs first among ready tasks on a CPU.
    pub priority: u8,
    pub id: u32,
    pub steps: u64,
    /// Boot sequence (which kernel, counting from 1) that created the task; 0 = before v2.
    pub created_seq: u64,
    pub period_us: u32,
    pub affinity: u16,
    pub flags: u16,
}

impl StateRecord for V2 {
    const KIND: RecordKind = kinds::TASK_TABLE;
    const SCHEMA: SchemaVersion = SchemaVersion::new(2);
    const SIZE: usize = 32;
    fn encode(&self, w: &mut Writer<'_>) {
        w.u16(self.kind.raw());
        w.u8(self.priority);
        w.u8(0);
        w.u32(self.id);
        w.u64(self.steps);
        w.u64(self.created_seq);
        w.u32(self.period_us);
        w.u16(self.affinity);
        w.u16(self.flags);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let kind = TaskKind::from_raw(r.u16()?);
        let priority = r.u8()?;
        r.skip(1)?;
        Ok(V2 {
            kind,
            priority,
            id: r.u32()?,
            steps: r.u64()?,
            created_seq: r.u64()?,
            period_us: r.u32()?,
            affinity: r.u16()?,
            flags: r.u16()?,
        })
    }
}

/// The default priority of a kind: the update service first, everything else after.
pub fn default_priority(kind: TaskKind) -> u8 {
    if kind == TaskKind::SERVICE {
        0
    } else {
        1
    }
}

/// V1 → V2.
pub fn v1_to_v2(old: &V1) -> Result<V2, TaskTableError> {
    let flags = u16::try_from(old.flags).map_err(|_| TaskTableError::FlagsDoNotFit {
        task: old.id,
        flags: old.flags,
    })?;
    Ok(V2 {
        kind: old.kind,
        priority: default_priority(old.kind),
        id: old.id,
        steps: old.steps,
        created_seq: 0,
        period_us: old.period_us,
        affinity: old.affinity,
        flags,
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V3 {
    pub id: u32,
    pub kind: TaskKind,
    pub affinity: u16,
    pub steps: u64,
    pub created_seq: u64,
    pub period_us: u32,
    pub priority: u8,
    pub flags: u16,
    /// CPU that last stepped the task (`ANY_CPU` = unknown).
    pub last_cpu: u16,
    /// Times the task moved between CPUs.
    pub migrations: u32,
}

impl StateRecord for V3 {
    const KIND: RecordKind = kinds::TASK_TABLE;
    const SCHEMA: SchemaVersion = SchemaVersion::new(3);
    const SIZE: usize = 40;
    fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.id);
        w.u16(self.kind.raw());
        w.u16(self.affinity);
        w.u64(self.steps);
        w.u64(self.created_seq);
        w.u32(self.period_us);
        w.u8(self.priority);
        w.u8(0);
        w.u16(self.flags);
        w.u16(self.last_cpu);
        w.u16(0);
        w.u32(self.migrations);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let id = r.u32()?;
        let kind = TaskKind::from_raw(r.u16()?);
        let affinity = r.u16()?;
        let steps = r.u64()?;
        let created_seq = r.u64()?;
        let period_us = r.u32()?;
        let priority = r.u8()?;
        r.skip(1)?;
        let flags = r.u16()?;
        let last_cpu = r.u16()?;
        r.skip(2)?;
        let migrations = r.u32()?;
        Ok(V3 {
            id,
            kind,
            affinity,
            steps,
            created_seq,
            period_us,
            priority,
            flags,
            last_cpu,
            migrations,
        })
    }
}

/// V2 → V3.
pub fn v2_to_v3(old: &V2) -> V3 {
    V3 {
        id: old.id,
        kind: old.kind,
        affinity: old.affinity,
        steps: old.steps,
        created_seq: old.created_seq,
        period_us: old.period_us,
        priority: old.priority,
        flags: old.flags,
        last_cpu: ANY_CPU,
        migrations: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::testing::round_trip;
    use proptest::prelude::*;

    fn any_v1() -> impl Strategy<Value = V1> {
        (
            any::<u32>(),
            any::<u16>(),
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
            any::<u64>(),
        )
            .prop_map(|(id, kind, affinity, period_us, flags, steps)| V1 {
                id,
                kind: TaskKind::from_raw(kind),
                affinity,
                period_us,
                flags,
                steps,
            })
    }

    proptest! {
        #[test]
        fn encodings_round_trip(v1 in any_v1()) {
            round_trip(&v1);
            if let Ok(v2) = v1_to_v2(&v1) {
                round_trip(&v2);
                round_trip(&v2_to_v3(&v2));
            }
        }

        #[test]
        fn conversion_keeps_identity_and_progress(v1 in any_v1()) {
            match v1_to_v2(&v1) {
                Ok(v2) => {
                    prop_assert!(v1.flags <= u16::MAX as u32);
                    let v3 = v2_to_v3(&v2);
                    prop_assert_eq!((v3.id, v3.kind, v3.steps, v3.affinity, v3.period_us), (v1.id, v1.kind, v1.steps, v1.affinity, v1.period_us));
                    prop_assert_eq!(v3.flags as u32, v1.flags);
                }
                Err(TaskTableError::FlagsDoNotFit { task, flags }) => {
                    prop_assert!(v1.flags > u16::MAX as u32);
                    prop_assert_eq!((task, flags), (v1.id, v1.flags));
                }
            }
        }
    }
}
