//! Stable identifiers shared by every image and the host: hand-off record kinds
//! ([`RecordKind`]) and task kinds ([`TaskKind`]).
//!
//! | record kind | id | holds |
//! | --- | --- | --- |
//! | [`MACHINE`] | 1 | page tables, frame allocator, devices, CPUs, timers |
//! | [`TASK_TABLE`] | 2 | one entry per task: id, kind, affinity, steps, … |
//! | [`CHANNELS`] | 3 | producer/consumer channels and the values in them |
//! | [`HISTORY`] | 4 | the images that ran, with their downtimes |
//! | [`PATCH_SET`] | 5 | hotpatches applied to the running image |
//! | [`RUN_QUEUES`] | 6 | how many tasks each CPU's run queue holds |
//! | [`PATCH_SITES`] | 7 | every site an applied hotpatch wrote: what it wrote, what was there |
//! | task state | `0x100 + task kind` | the states of every task of one kind ([`RecordKind::task_state`]) |
//!
//! Task kinds: 1 counter, 2 lcg, 3 producer, 4 consumer, 5 ticker, 6 heartbeat,
//! 7 update-service, 8 table. An id is never reused for something else.

use core::fmt;

use crate::error::{FormatError, Result};

/// A hand-off record kind. Never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKind(pub(crate) u16);

/// Task-state record kinds are `TASK_STATE_BASE + task kind`.
pub const TASK_STATE_BASE: u16 = 0x100;

impl RecordKind {
    /// # Panics
    /// If `raw` is 0.
    pub const fn new(raw: u16) -> Self {
        assert!(raw != 0, "record kind 0 is reserved for unused slots");
        Self(raw)
    }

    /// A kind from untrusted bytes.
    pub const fn try_new(raw: u16) -> Result<Self> {
        if raw == 0 {
            Err(FormatError::InvalidField {
                field: "record kind",
                value: 0,
                reason: "kind 0 is reserved for unused slots",
            })
        } else {
            Ok(Self(raw))
        }
    }

    /// The raw id.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The record holding the states of tasks of `kind`.
    pub const fn task_state(kind: TaskKind) -> Self {
        Self(TASK_STATE_BASE + kind.0)
    }

    /// The task kind whose states this record holds, if it is a task-state record.
    pub const fn task_kind(self) -> Option<TaskKind> {
        if self.0 > TASK_STATE_BASE && self.0 < TASK_STATE_BASE + 0x100 {
            Some(TaskKind(self.0 - TASK_STATE_BASE))
        } else {
            None
        }
    }

    /// Human name, or "unknown".
    pub const fn name(self) -> &'static str {
        kind_name(self.0)
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (kind_name(self.0), self.task_kind()) {
            ("unknown", Some(task)) => write!(f, "{task}-{}-state", task.0),
            ("unknown", None) => write!(f, "kind-{:#x}", self.0),
            (name, _) => f.write_str(name),
        }
    }
}

/// A task kind. Never 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct TaskKind(pub(crate) u16);

impl TaskKind {
    /// A number that grows by its stride each step.
    pub const COUNTER: TaskKind = TaskKind(1);
    /// A linear congruential stream (a checksum stream that can be recomputed).
    pub const LCG: TaskKind = TaskKind(2);
    /// Sends 0, 1, 2, … into a channel.
    pub const PRODUCER: TaskKind = TaskKind(3);
    /// Receives from a channel and checks the sequence.
    pub const CONSUMER: TaskKind = TaskKind(4);
    /// Counts ticks (cosmetic; its record is optional).
    pub const TICKER: TaskKind = TaskKind(5);
    /// Prints a progress line every second.
    pub const HEARTBEAT: TaskKind = TaskKind(6);
    /// Serves the mailbox.
    pub const SERVICE: TaskKind = TaskKind(7);
    /// Runs a CRC over the v3 image's lookup table.
    pub const TABLE: TaskKind = TaskKind(8);

    /// A kind from raw bits (any value: unknown kinds are reported, not rejected).
    pub const fn from_raw(raw: u16) -> Self {
        Self(raw)
    }

    /// The raw id.
    pub const fn raw(self) -> u16 {
        self.0
    }

    /// Human name, or "unknown".
    pub const fn name(self) -> &'static str {
        match self.0 {
            1 => "counter",
            2 => "lcg",
            3 => "producer",
            4 => "consumer",
            5 => "ticker",
            6 => "heartbeat",
            7 => "update-service",
            8 => "table",
            _ => "unknown",
        }
    }

    /// The record kind holding this kind's states.
    pub const fn state_record(self) -> RecordKind {
        RecordKind::task_state(self)
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The machine: page tables, frame allocator, devices, CPUs, timers.
pub const MACHINE: RecordKind = RecordKind(1);
/// One entry per task.
pub const TASK_TABLE: RecordKind = RecordKind(2);
/// Producer/consumer channels and their contents.
pub const CHANNELS: RecordKind = RecordKind(3);
/// The images that ran.
pub const HISTORY: RecordKind = RecordKind(4);
/// Applied hotpatches.
pub const PATCH_SET: RecordKind = RecordKind(5);
/// How many tasks each CPU's run queue holds (the task table is in CPU order).
pub const RUN_QUEUES: RecordKind = RecordKind(6);
/// The sites applied hotpatches wrote (a revert to the same image rebuilds its patch
/// stack from them).
pub const PATCH_SITES: RecordKind = RecordKind(7);
/// States of counter tasks.
pub const COUNTER: RecordKind = RecordKind::task_state(TaskKind::COUNTER);
/// States of LCG tasks.
pub const LCG: RecordKind = RecordKind::task_state(TaskKind::LCG);
/// States of producer tasks.
pub const PRODUCER: RecordKind = RecordKind::task_state(TaskKind::PRODUCER);
/// States of consumer tasks.
pub const CONSUMER: RecordKind = RecordKind::task_state(TaskKind::CONSUMER);
/// States of ticker tasks.
pub const TICKER: RecordKind = RecordKind::task_state(TaskKind::TICKER);
/// States of heartbeat tasks.
pub const HEARTBEAT: RecordKind = RecordKind::task_state(TaskKind::HEARTBEAT);
/// States of the update service.
pub const SERVICE: RecordKind = RecordKind::task_state(TaskKind::SERVICE);
/// States of table tasks.
pub const TABLE: RecordKind = RecordKind::task_state(TaskKind::TABLE);

/// Every record kind this tree defines.
pub const ALL: [RecordKind; 15] = [
    MACHINE,
    TASK_TABLE,
    CHANNELS,
    HISTORY,
    PATCH_SET,
    RUN_QUEUES,
    PATCH_SITES,
    COUNTER,
    LCG,
    PRODUCER,
    CONSUMER,
    TICKER,
    HEARTBEAT,
    SERVICE,
    TABLE,
];

/// The name of a record kind, or "unknown".
pub const fn kind_name(raw: u16) -> &'static str {
    match raw {
        1 => "machine",
        2 => "task-table",
        3 => "channels",
        4 => "history",
        5 => "patch-set",
        6 => "run-queues",
        7 => "patch-sites",
        0x101 => "counter-state",
        0x102 => "lcg-state",
        0x103 => "producer-state",
        0x104 => "consumer-state",
        0x105 => "ticker-state",
        0x106 => "heartbeat-state",
        0x107 => "update-service-state",
        0x108 => "table-state",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn every_known_kind_has_a_distinct_name() {
        for k in ALL {
            assert_ne!(k.name(), "unknown");
            assert!(ALL.iter().filter(|o| o.name() == k.name()).count() == 1);
        }
        assert_eq!(RecordKind::new(77).to_string(), "kind-0x4d");
        assert_eq!(TABLE.to_string(), "table-state");
        assert!(RecordKind::try_new(0).is_err());
    }

    #[test]
    fn task_state_records_map_back_to_their_task_kind() {
        for raw in 1..=8 {
            let t = TaskKind::from_raw(raw);
            assert_eq!(t.state_record().task_kind(), Some(t));
        }
        assert_eq!(MACHINE.task_kind(), None);
        assert_eq!(TaskKind::TICKER.state_record(), TICKER);
    }
}
