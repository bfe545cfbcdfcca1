//! Import: the new kernel turns the converted records into its own live state — the
//! machine record, the tasks on their CPUs' run queues, the channels.
//!
//! The bootstrap validated the set before committing, so a failure here is a bug in this
//! image, not bad input: it stops the kernel with a message rather than guessing.

use alloc::boxed::Box;

use updater::records::entry::TaskEntry as _;
use updater::records::machine::V1 as MachineRecord;
use updater::records::{pipeline, StateRecord, TaskKind};
use updater::recordset::{Record, RecordSet};

use crate::identity;
use crate::sched::{self, Task};
use crate::schema;
use crate::tasks::{self, TaskState};

/// The machine record of a converted set.
pub fn machine(set: &RecordSet<'_>) -> MachineRecord {
    let record = set
        .find(image_format::kinds::MACHINE)
        .expect("converted set has a machine record (checked by the bootstrap)");
    record
        .decode::<MachineRecord>()
        .next()
        .expect("one machine entry")
        .expect("machine record decodes")
}

/// The states of `kind`, in task-table order (export writes them in that order and
/// conversion keeps it; the bootstrap checked it), to be taken one per task.
fn states<R: StateRecord>(set: &RecordSet<'_>, kind: TaskKind) -> alloc::vec::IntoIter<(u32, R)> {
    let Some(record): Option<Record<'_>> = set.find(kind.state_record()) else {
        return alloc::vec::Vec::new().into_iter();
    };
    record
        .decode_keyed::<R>()
        .map(|k| k.expect("state entry decodes"))
        .map(|k| (k.task, k.state))
        .collect::<alloc::vec::Vec<_>>()
        .into_iter()
}

/// The next state of a kind, which must belong to task `id`.
fn take<R>(states: &mut alloc::vec::IntoIter<(u32, R)>, id: u32) -> R {
    match states.next() {
        Some((task, state)) if task == id => state,
        _ => lost(id),
    }
}

fn lost(id: u32) -> ! {
    panic!("task {id} lost its state between bootstrap and import")
}

/// Places every task of the set on a run queue; returns how many.
pub fn tasks(set: &RecordSet<'_>) -> usize {
    let mut counters = states::<schema::Counter>(set, TaskKind::COUNTER);
    let mut lcgs = states::<schema::Lcg>(set, TaskKind::LCG);
    let mut producers = states::<schema::Producer>(set, TaskKind::PRODUCER);
    let mut consumers = states::<schema::Consumer>(set, TaskKind::CONSUMER);
    let mut heartbeats = states::<schema::Heartbeat>(set, TaskKind::HEARTBEAT);
    let mut services = states::<schema::Service>(set, TaskKind::SERVICE);
    #[cfg(not(feature = "v3"))]
    let mut tickers = states::<schema::Ticker>(set, TaskKind::TICKER);
    #[cfg(feature = "v3")]
    let mut tables = states::<schema::Table>(set, TaskKind::TABLE);

    let table = set
        .find(image_format::kinds::TASK_TABLE)
        .expect("task table (checked by the bootstrap)");
    let mut placed = alloc::vec::Vec::new();
    for entry in table.decode::<schema::TaskEntry>() {
        let entry = entry.expect("task-table entry decodes");
        let id = entry.id();
        // Ids are never reused, not even those of tasks dropped here.
        sched::reserve_ids_through(id);
        if !identity::knows_task_kind(entry.kind()) {
            continue; // optional, checked by the bootstrap
        }
        let state = match entry.kind() {
            TaskKind::COUNTER => TaskState::Counter(take(&mut counters, id)),
            TaskKind::LCG => TaskState::Lcg(take(&mut lcgs, id)),
            TaskKind::PRODUCER => TaskState::Producer(take(&mut producers, id)),
            TaskKind::CONSUMER => TaskState::Consumer(take(&mut consumers, id)),
            TaskKind::HEARTBEAT => TaskState::Heartbeat(take(&mut heartbeats, id)),
            TaskKind::SERVICE => TaskState::Service(take(&mut services, id)),
            #[cfg(not(feature = "v3"))]
            TaskKind::TICKER => TaskState::Ticker(take(&mut tickers, id)),
            #[cfg(feature = "v3")]
            TaskKind::TABLE => TaskState::Table(take(&mut tables, id)),
            other => {
                panic!("task {id}: kind {other} passed validation but has no step function here")
            }
        };
        placed.push(Box::new(Task {
            entry,
            state,
            wake_at: 0,
        }));
    }
    // The channels first: the released CPUs step producers and consumers as soon as
    // they are placed, and must find the values in flight.
    if let Some(channels) = set.find(image_format::kinds::CHANNELS) {
        let list: alloc::vec::Vec<pipeline::ChannelV1> = channels
            .decode::<pipeline::ChannelV1>()
            .map(|c| c.expect("channel decodes"))
            .collect();
        tasks::pipeline::import_channels(&list);
    }
    let count = placed.len();
    sched::place_all(placed);
    count
}

/// The update history of a converted set (oldest first).
pub fn history(set: &RecordSet<'_>) -> alloc::vec::Vec<updater::records::history::V1> {
    set.find(image_format::kinds::HISTORY)
        .map(|r| {
            r.decode::<updater::records::history::V1>()
                .filter_map(Result::ok)
                .collect()
        })
        .unwrap_or_default()
}
