//! A task: its table entry (in this kernel's schema version) and its state. Tasks run
//! to completion: a step is a function call that returns.

use updater::records::task_table::TaskEntry as _;
use updater::records::TaskKind;

use crate::tasks::TaskState;

/// The task-table version this kernel reads and writes.
pub type TaskEntry = updater::records::task_table::V1;

/// The task-table converters this kernel carries (N → N+1 each), up to [`TaskEntry`].
pub const TASK_TABLE_STEPS: &[updater::convert::Step] = &[];

/// A task's identifier, unique for the life of the machine (it crosses swaps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub u32);

impl core::fmt::Display for TaskId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A task, by value: what is placed on a run queue, taken out to be stepped, or seen
/// by a census (queues keep tasks as records, see `queue.rs`).
#[derive(Clone)]
pub struct Task {
    /// The scheduler's record of the task (the task-table entry that crosses a swap).
    pub entry: TaskEntry,
    /// The task's own state (its kind's record).
    pub state: TaskState,
}

impl Task {
    pub fn id(&self) -> TaskId {
        TaskId(self.entry.id())
    }
    pub fn kind(&self) -> TaskKind {
        self.entry.kind()
    }
}
