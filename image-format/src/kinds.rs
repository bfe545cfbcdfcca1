//! Record kinds: the stable ids of the hand-off records that cross a swap.
//!
//! An image's schema table ([`crate::identity::SchemaEntry`]) lists, per kind, the
//! version it writes and the oldest it can convert from; the hand-off region holds one
//! record per kind. Ids are stable forever: a kind is never renumbered and an id never
//! reused. [`kind_name`] gives the name shown by `hotkernel inspect` and in reports.
//!
//! | id | constant | record |
//! | --- | --- | --- |
//! | 1 | [`MACHINE`] | the machine: page-table root, frame allocator, boot info, where the heap, staging window, per-CPU areas and devices are |
//! | 2 | [`TASK_TABLE`] | the task table and scheduler queues |
//! | 3 | [`COUNTER`] | state of `counter` tasks |
//! | 4 | [`LCG`] | state of `lcg` tasks |
//! | 5 | [`PIPELINE`] | state of `producer`/`consumer` tasks and their channel |
//! | 6 | [`HEARTBEAT`] | state of `heartbeat` tasks (optional: may be dropped) |
//! | 7 | [`SERVICE`] | state of the update service |
//! | 8 | [`HISTORY`] | the update history: which images ran, when |
//! | 9 | [`PATCH_SET`] | the hotpatches applied to the running image |
//! | 10 | [`TABLE`] | state of `table` tasks (new in image v3) |

use core::fmt;

use crate::error::{FormatError, Result};

/// The id of a hand-off record kind.
///
/// Invariant: not 0 (0 marks an unused slot in tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKind(pub(crate) u16);

impl RecordKind {
    /// # Panics
    /// If `raw` is 0.
    pub const fn new(raw: u16) -> Self {
        assert!(raw != 0, "record kind 0 is reserved for unused slots");
        Self(raw)
    }

    /// `raw`, or an error if it is 0.
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

    /// The id.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The display name ([`kind_name`]).
    pub const fn name(self) -> &'static str {
        kind_name(self.0)
    }
}

/// The name, or `kind-N` for a kind this build does not know.
impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match kind_name(self.0) {
            "unknown" => write!(f, "kind-{}", self.0),
            name => f.write_str(name),
        }
    }
}

/// The machine record: page-table root, frame allocator, boot information, and where
/// the heap, staging window, per-CPU areas and device mappings are.
pub const MACHINE: RecordKind = RecordKind(1);
/// The task table and the scheduler's queues.
pub const TASK_TABLE: RecordKind = RecordKind(2);
/// State of `counter` tasks.
pub const COUNTER: RecordKind = RecordKind(3);
/// State of `lcg` tasks.
pub const LCG: RecordKind = RecordKind(4);
/// State of `producer` and `consumer` tasks and the channel between them.
pub const PIPELINE: RecordKind = RecordKind(5);
/// State of `heartbeat` tasks. Images mark it optional: it may be dropped.
pub const HEARTBEAT: RecordKind = RecordKind(6);
/// State of the update service task.
pub const SERVICE: RecordKind = RecordKind(7);
/// The update history: images that ran, swaps and their outcomes.
pub const HISTORY: RecordKind = RecordKind(8);
/// The set of hotpatches applied to the running image.
pub const PATCH_SET: RecordKind = RecordKind(9);
/// State of `table` tasks (new in image v3).
pub const TABLE: RecordKind = RecordKind(10);

/// Every kind this build knows, in id order.
pub const ALL: [RecordKind; 10] = [
    MACHINE, TASK_TABLE, COUNTER, LCG, PIPELINE, HEARTBEAT, SERVICE, HISTORY, PATCH_SET, TABLE,
];

/// The display name of kind `raw`, or `"unknown"`.
pub const fn kind_name(raw: u16) -> &'static str {
    match raw {
        1 => "machine",
        2 => "task-table",
        3 => "counter",
        4 => "lcg",
        5 => "pipeline",
        6 => "heartbeat",
        7 => "service",
        8 => "history",
        9 => "patch-set",
        10 => "table",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn every_known_kind_has_a_distinct_name() {
        for (i, k) in ALL.iter().enumerate() {
            assert_eq!(usize::from(k.get()), i + 1);
            assert_ne!(k.name(), "unknown");
            assert!(ALL.iter().filter(|o| o.name() == k.name()).count() == 1);
        }
        assert_eq!(RecordKind::new(77).to_string(), "kind-77");
        assert_eq!(TABLE.to_string(), "table");
        assert!(RecordKind::try_new(0).is_err());
    }
}
