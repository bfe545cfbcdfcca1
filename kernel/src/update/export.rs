//! Export: the old kernel writes its persistent state into the hand-off region as a
//! record set in its own schema versions — the machine, the task table, each task
//! kind's states, the channels. Runs on the coordinator with every other CPU parked, so
//! every task is on a run queue between two steps; nothing is removed from the queues,
//! so a rollback has nothing to undo.

use alloc::vec::Vec;

use updater::records::{RecordKind, StateRecord, TaskKind};
use updater::recordset::{flags, RecordSetError, RecordSetWriter};

use crate::cpu;
use crate::identity;
use crate::machine;
use crate::schema;
use crate::tasks::{pipeline, TaskState};

/// What was exported.
#[derive(Debug, Clone, Copy)]
pub struct Exported {
    pub tasks: usize,
    pub bytes: usize,
}

fn record_flags(kind: RecordKind) -> u16 {
    match identity::schema_of(kind) {
        Some(s) if s.is_optional() => flags::OPTIONAL,
        _ => 0,
    }
}

/// Adds the states of every task of `kind`, taken by `pick`.
fn add_states<R: StateRecord>(
    w: &mut RecordSetWriter<'_>,
    tasks: &[(u32, &TaskState)],
    kind: TaskKind,
    pick: impl Fn(&TaskState) -> Option<R>,
) -> Result<(), RecordSetError> {
    let states: Vec<(u32, R)> = tasks
        .iter()
        .filter_map(|(id, s)| pick(s).map(|r| (*id, r)))
        .collect();
    debug_assert_eq!(R::KIND, kind.state_record());
    w.add_keyed::<R>(record_flags(R::KIND), states.len(), |i| states[i].clone())
}

/// Writes the record set into `area`. Every other CPU must be parked.
pub fn export(area: &mut [u8]) -> Result<Exported, RecordSetError> {
    // Copy the queues under their locks (they are quiet: their CPUs are parked).
    let count = crate::sched::task_count();
    let mut entries: Vec<schema::TaskEntry> = Vec::with_capacity(count);
    let mut states: Vec<(u32, TaskState)> = Vec::with_capacity(count);
    for c in cpu::all() {
        c.queue.for_each(|t| {
            entries.push(t.entry.clone());
            states.push((t.id().0, t.state.clone()));
        });
    }
    let tasks: Vec<(u32, &TaskState)> = states.iter().map(|(id, s)| (*id, s)).collect();

    let mut w = RecordSetWriter::new(area)?;
    w.add(0, &[machine::record()])?;
    w.add(record_flags(image_format::kinds::TASK_TABLE), &entries)?;
    add_states(&mut w, &tasks, TaskKind::COUNTER, |s| match s {
        TaskState::Counter(c) => Some(c.clone()),
        _ => None,
    })?;
    add_states(&mut w, &tasks, TaskKind::LCG, |s| match s {
        TaskState::Lcg(c) => Some(c.clone()),
        _ => None,
    })?;
    add_states(&mut w, &tasks, TaskKind::PRODUCER, |s| match s {
        TaskState::Producer(c) => Some(c.clone()),
        _ => None,
    })?;
    add_states(&mut w, &tasks, TaskKind::CONSUMER, |s| match s {
        TaskState::Consumer(c) => Some(c.clone()),
        _ => None,
    })?;
    add_states(&mut w, &tasks, TaskKind::HEARTBEAT, |s| match s {
        TaskState::Heartbeat(c) => Some(c.clone()),
        _ => None,
    })?;
    add_states(&mut w, &tasks, TaskKind::SERVICE, |s| match s {
        TaskState::Service(c) => Some(c.clone()),
        _ => None,
    })?;
    #[cfg(not(feature = "v3"))]
    add_states(&mut w, &tasks, TaskKind::TICKER, |s| match s {
        TaskState::Ticker(c) => Some(c.clone()),
        _ => None,
    })?;
    #[cfg(feature = "v3")]
    add_states(&mut w, &tasks, TaskKind::TABLE, |s| match s {
        TaskState::Table(c) => Some(c.clone()),
        _ => None,
    })?;
    let channels = pipeline::export_channels();
    w.add(0, &channels)?;
    w.add(0, &crate::history::entries())?;
    w.add(0, &crate::hotpatch::records())?;
    let bytes = w.finish();
    Ok(Exported {
        tasks: entries.len(),
        bytes,
    })
}
