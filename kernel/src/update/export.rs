//! Export: the old kernel writes its persistent state into the hand-off region as a
//! record set in its own schema versions — the machine, the task table, the run queues,
//! each task kind's states (`tasks::export_states`), the channels, the history and the
//! patch set with its sites — each with its field table from this image's description.
//!
//! Runs on the coordinator with every other CPU parked, so every task is on a run queue
//! between two steps; nothing is removed from the queues, so a rollback has nothing to
//! undo. The queues keep their tasks as records already (`sched::queue`): the task
//! table and each kind's states are one copy of each queue's pool, not an encoding per
//! task.
#![deny(unsafe_code)]

use alloc::vec::Vec;

use updater::describe::Description;
use updater::record::{Field as _, Record};
use updater::records::run_queues;
use updater::recordset::{RecordHeader, RecordSetError, RecordSetWriter};
use updater::table::TableView;

use crate::sched::{self, TaskEntry};
use crate::tasks::{self, pipeline};
use crate::{history, hotpatch, machine, schema};

/// What was exported.
#[derive(Debug, Clone, Copy)]
pub struct Exported {
    pub tasks: usize,
    /// The offset in the half past the set.
    pub end: usize,
}

/// The table this image describes for `R`.
fn table<'d, R: Record>(description: &Description<'d>) -> TableView<'d> {
    description
        .record(R::KIND)
        .expect("this image's description has every record it writes")
        .table
}

/// Writes the record set at the start of `half`. Every other CPU must be parked.
pub fn export(half: &mut [u8]) -> Result<Exported, RecordSetError> {
    let description = schema::description();
    let d = &description;
    let all = sched::lock_all();
    let mut w = RecordSetWriter::whole(half)?;
    w.add(
        0,
        table::<updater::records::machine::V1>(d),
        &[machine::record()],
    )?;
    let count = all.len();
    let header = RecordHeader {
        kind: TaskEntry::KIND,
        schema: TaskEntry::SCHEMA,
        flags: 0,
        entry_size: TaskEntry::SIZE as u32,
        entries: count as u32,
        fingerprint: table::<TaskEntry>(d).fingerprint(),
    };
    w.add_filled(header, table::<TaskEntry>(d), |out| {
        let mut at = 0;
        for q in all.queues() {
            let bytes = updater::record::bytes_of(q.entries());
            out[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        }
    })?;
    let queues: Vec<run_queues::V1> = all
        .queues()
        .enumerate()
        .map(|(cpu, q)| run_queues::V1 {
            cpu: cpu as u32,
            tasks: q.len() as u32,
        })
        .collect();
    w.add(0, table::<run_queues::V1>(d), &queues)?;
    tasks::export_states(&mut w, d, all.queues().map(|q| q.states()))?;
    w.add(
        0,
        table::<pipeline::ChannelV1>(d),
        &pipeline::export_channels(),
    )?;
    w.add(
        0,
        table::<updater::records::history::V2>(d),
        &history::entries(),
    )?;
    w.add(
        0,
        table::<updater::records::patch_set::V1>(d),
        &hotpatch::records(),
    )?;
    w.add(
        0,
        table::<updater::records::patch_sites::V1>(d),
        &hotpatch::site_records(),
    )?;
    let end = w.finish();
    Ok(Exported { tasks: count, end })
}
