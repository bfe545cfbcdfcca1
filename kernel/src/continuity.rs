//! Continuity: did every task carry on from the state it had when it was exported?
//!
//! Compares the live tasks (with every other CPU parked) against an exported record set
//! of the same schema versions, with each kind's own rule (`Kind::CONTINUITY`, the
//! same rule the host applies to snapshots): the exported state and the live one are
//! observed alike and must be the steps run apart. Self-test mode uses it after a
//! rollback and after a swap into the same image.
#![deny(unsafe_code)]

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;

use updater::records::kinds;
use updater::records::task_table::{flags, TaskEntry as _};
use updater::recordset::RecordSet;

use crate::quiesce;
use crate::sched::{self, TaskEntry};
use crate::tasks;
use crate::time::Duration;

/// What the check saw.
#[derive(Debug, Clone, Copy)]
pub struct Continuity {
    pub tasks: usize,
    pub steps_since: u64,
}

/// Checks the live tasks against `exported` (same schema versions as this image).
pub fn check(exported: &RecordSet<'_>) -> Result<Continuity, String> {
    let table = exported
        .find(kinds::TASK_TABLE)
        .ok_or("no task table exported")?;
    let then: BTreeMap<u32, TaskEntry> = table
        .decode::<TaskEntry>()
        .filter_map(Result::ok)
        .map(|e| (e.id(), e))
        .collect();
    let order: alloc::vec::Vec<_> = table
        .decode::<TaskEntry>()
        .filter_map(Result::ok)
        .map(|e| (e.id(), e.kind()))
        .collect();
    let states = tasks::decode_all(exported, order.into_iter());

    let parked = x86_64::instructions::interrupts::without_interrupts(|| {
        quiesce::park_others(Duration::from_millis(500), None)
    })
    .map_err(|e| format!("{e}"))?;
    let result = compare(&then, &states);
    quiesce::release(parked);
    let (seen, steps_since) = result?;
    let expected = then
        .values()
        .filter(|e| crate::identity::knows_task_kind(e.kind()))
        .count();
    if seen != expected {
        return Err(format!("{seen} of {expected} exported tasks are running"));
    }
    Ok(Continuity {
        tasks: seen,
        steps_since,
    })
}

/// Every live task against its exported entry and state; (tasks seen, steps since).
fn compare(
    then: &BTreeMap<u32, TaskEntry>,
    states: &BTreeMap<u32, tasks::TaskState>,
) -> Result<(usize, u64), String> {
    let all = sched::lock_all();
    let (mut seen, mut steps_since) = (0usize, 0u64);
    for t in all.iter() {
        let id = t.id().0;
        let Some(old) = then.get(&id) else {
            if t.entry.flags() & flags::INITIALISED_BY_UPDATE == 0 {
                return Err(format!("task {id} was not exported but is running"));
            }
            continue;
        };
        seen += 1;
        let name = tasks::name(t.kind());
        if old.kind() != t.kind() {
            return Err(format!(
                "task {id} was {} and is now {name}",
                tasks::name(old.kind())
            ));
        }
        let Some(d) = t.entry.steps().checked_sub(old.steps()) else {
            return Err(format!(
                "task {id} went back from {} to {} steps",
                old.steps(),
                t.entry.steps()
            ));
        };
        steps_since += d;
        let Some(was) = states.get(&id) else {
            return Err(format!("task {id} ({name}) has no exported state"));
        };
        let rule = tasks::info(t.kind()).map_or(&[][..], |k| k.continuity);
        updater::continuity::check(rule, tasks::observe(was), tasks::observe(&t.state), d)
            .map_err(|broken| {
                format!("task {id} ({name}) did not continue from its exported state: {broken}")
            })?;
    }
    Ok((seen, steps_since))
}
