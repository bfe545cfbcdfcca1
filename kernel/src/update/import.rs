//! Import: the new kernel turns the converted records into its own live state — the
//! machine record, the tasks on their CPUs' run queues, the channels, the history.
//!
//! The bootstrap validated the set before committing, so a failure here is a bug in this
//! image, not bad input: it stops the kernel with a message rather than guessing.
#![deny(unsafe_code)]

use alloc::boxed::Box;
use alloc::vec::Vec;

use updater::records::machine::V1 as MachineRecord;
use updater::records::task_table::TaskEntry as _;
use updater::records::{history, kinds};
use updater::recordset::RecordSet;

use crate::identity;
use crate::sched::{self, Task, TaskEntry};
use crate::tasks::{self, pipeline};

/// The machine record of a converted set.
pub fn machine(set: &RecordSet<'_>) -> MachineRecord {
    let record = set
        .find(kinds::MACHINE)
        .expect("converted set has a machine record (checked by the bootstrap)");
    record
        .decode::<MachineRecord>()
        .next()
        .expect("one machine entry")
        .expect("machine record decodes")
}

/// Places every task of the set on a run queue; returns how many.
pub fn tasks(set: &RecordSet<'_>) -> usize {
    let table = set
        .find(kinds::TASK_TABLE)
        .expect("task table (checked by the bootstrap)");
    let mut states = tasks::Importer::new(set);
    let mut placed = Vec::with_capacity(table.header.entries as usize);
    for entry in table.decode::<TaskEntry>() {
        let entry = entry.expect("task-table entry decodes");
        let id = entry.id();
        // Ids are never reused, not even those of tasks dropped here.
        sched::reserve_ids_through(id);
        if !identity::knows_task_kind(entry.kind()) {
            continue; // optional, checked by the bootstrap
        }
        let Some(state) = states.take(entry.kind(), id) else {
            panic!("task {id} lost its state between bootstrap and import")
        };
        placed.push(Box::new(Task {
            entry,
            state,
            wake_at: 0,
        }));
    }
    // The channels first: the released CPUs step producers and consumers as soon as
    // they are placed, and must find the values in flight.
    if let Some(channels) = set.find(kinds::CHANNELS) {
        pipeline::import_channels(
            channels
                .decode::<pipeline::ChannelV1>()
                .map(|c| c.expect("channel decodes")),
        );
    }
    let count = placed.len();
    sched::place_all(placed);
    count
}

/// The update history of a converted set (oldest first).
pub fn history(set: &RecordSet<'_>) -> Vec<history::V1> {
    set.find(kinds::HISTORY)
        .map(|r| r.decode::<history::V1>().filter_map(Result::ok).collect())
        .unwrap_or_default()
}

/// Creates the first tasks of every kind the bootstrap found new to the machine
/// (`bits`: bit `i` is `identity::KIND_IDS[i]`). Returns (kind, tasks created) of each.
pub fn meet_init_requirements(bits: u64) -> Vec<(updater::records::TaskKind, usize)> {
    let mut created = Vec::new();
    for (i, &kind) in identity::KIND_IDS.iter().enumerate().take(64) {
        if bits & (1 << i) == 0 {
            continue;
        }
        let n = tasks::initial_tasks(kind, |state, period_us| {
            sched::place(sched::new_task(
                state,
                None,
                period_us,
                updater::records::task_table::flags::INITIALISED_BY_UPDATE,
            ))
        });
        if n > 0 {
            log::info!(
                "initialised {n} {} tasks (new kind in this image)",
                tasks::name(kind)
            );
            created.push((kind, n));
        }
    }
    created
}
