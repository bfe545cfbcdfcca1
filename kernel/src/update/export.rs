//! Export: the old kernel writes its persistent state into the hand-off region as a
//! record set in its own schema versions — the machine, the task table, each task
//! kind's states (`tasks::export_states`), the channels, the history and the patch set.
//! Runs on the coordinator with every other CPU parked, so every task is on a run queue
//! between two steps; nothing is removed from the queues, so a rollback has nothing to
//! undo. The task records are encoded straight from the queues: no copy of the tasks
//! is made.
#![deny(unsafe_code)]

use updater::record::{Field as _, Record};
use updater::recordset::{RecordSetError, RecordSetWriter};

use crate::sched::{self, TaskEntry};
use crate::tasks::{self, pipeline};
use crate::{history, hotpatch, machine};

/// What was exported.
#[derive(Debug, Clone, Copy)]
pub struct Exported {
    pub tasks: usize,
    pub bytes: usize,
}

/// Writes the record set into `area`. Every other CPU must be parked.
pub fn export(area: &mut [u8]) -> Result<Exported, RecordSetError> {
    let all = sched::lock_all();
    let mut w = RecordSetWriter::new(area)?;
    w.add(0, &[machine::record()])?;
    let count = all.len();
    let mut entries = all.iter();
    w.add_raw(
        TaskEntry::KIND,
        TaskEntry::SCHEMA,
        0,
        TaskEntry::SIZE,
        count,
        |_, out| {
            if let Some(t) = entries.next() {
                t.entry.encode(out);
            }
        },
    )?;
    tasks::export_states(&mut w, all.iter().map(|t| (t.id().0, &t.state)))?;
    w.add(0, &pipeline::export_channels())?;
    w.add(0, &history::entries())?;
    w.add(0, &hotpatch::records())?;
    let bytes = w.finish();
    Ok(Exported {
        tasks: count,
        bytes,
    })
}
