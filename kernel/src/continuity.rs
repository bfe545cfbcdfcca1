//! Continuity: did every task carry on from the state it had when it was exported?
//!
//! Compares the live tasks (with every other CPU parked) against an exported record set
//! of the same schema versions. A task may have run steps since; each kind's rule
//! accounts for them exactly: a counter advanced by stride × steps, an LCG stream equals
//! the exported value jumped ahead by the steps taken, a consumer saw no wrong value.
//! Self-test mode uses it after a rollback and after a swap into the same image.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;

use updater::records::entry::TaskEntry as _;
use updater::records::TaskKind;
use updater::recordset::RecordSet;

use crate::cpu;
use crate::quiesce;
use crate::schema;
use crate::tasks::TaskState;
use crate::time::Duration;

/// What the check saw.
#[derive(Debug, Clone, Copy)]
pub struct Continuity {
    pub tasks: usize,
    pub steps_since: u64,
}

fn decode_states<R: updater::records::StateRecord>(
    set: &RecordSet<'_>,
    kind: TaskKind,
) -> BTreeMap<u32, R> {
    set.find(kind.state_record())
        .map(|r| {
            r.decode_keyed::<R>()
                .filter_map(Result::ok)
                .map(|k| (k.task, k.state))
                .collect()
        })
        .unwrap_or_default()
}

/// Checks the live tasks against `exported` (same schema versions as this image).
pub fn check(exported: &RecordSet<'_>) -> Result<Continuity, String> {
    let table = exported
        .find(image_format::kinds::TASK_TABLE)
        .ok_or("no task table exported")?;
    let then: BTreeMap<u32, schema::TaskEntry> = table
        .decode::<schema::TaskEntry>()
        .filter_map(Result::ok)
        .map(|e| (e.id(), e))
        .collect();
    let counters = decode_states::<schema::Counter>(exported, TaskKind::COUNTER);
    let lcgs = decode_states::<schema::Lcg>(exported, TaskKind::LCG);
    let consumers = decode_states::<schema::Consumer>(exported, TaskKind::CONSUMER);
    let producers = decode_states::<schema::Producer>(exported, TaskKind::PRODUCER);

    let parked = x86_64::instructions::interrupts::without_interrupts(|| {
        quiesce::park_others(Duration::from_millis(500), None)
    })
    .map_err(|e| format!("{e}"))?;
    let mut seen = 0usize;
    let mut steps_since = 0u64;
    let mut failure: Option<String> = None;
    for c in cpu::all() {
        c.queue.for_each(|t| {
            if failure.is_some() {
                return;
            }
            let id = t.id().0;
            let Some(old) = then.get(&id) else {
                if t.entry.flags() & updater::records::task_table::flags::INITIALISED_BY_UPDATE == 0
                {
                    failure = Some(format!("task {id} was not exported but is running"));
                }
                return;
            };
            seen += 1;
            if old.kind() != t.kind() {
                failure = Some(format!(
                    "task {id} was {} and is now {}",
                    old.kind(),
                    t.kind()
                ));
                return;
            }
            let Some(d) = t.entry.steps().checked_sub(old.steps()) else {
                failure = Some(format!(
                    "task {id} went back from {} to {} steps",
                    old.steps(),
                    t.entry.steps()
                ));
                return;
            };
            steps_since += d;
            let ok = match &t.state {
                TaskState::Counter(now) => counters.get(&id).map(|was| counter_ok(was, now, d)),
                TaskState::Lcg(now) => lcgs.get(&id).map(|was| {
                    now.seed == was.seed
                        && now.steps == was.steps + d
                        && now.x == schema::LCG_RULE.jump(was.x, d)
                }),
                TaskState::Consumer(now) => consumers.get(&id).map(|was| {
                    now.errors == 0 && now.expected >= was.expected && now.channel == was.channel
                }),
                TaskState::Producer(now) => producers
                    .get(&id)
                    .map(|was| now.next >= was.next && now.channel == was.channel),
                _ => Some(true),
            };
            match ok {
                Some(true) => {}
                Some(false) => {
                    failure = Some(format!(
                        "task {id} ({}) did not continue from its exported state",
                        t.kind()
                    ))
                }
                None => failure = Some(format!("task {id} ({}) has no exported state", t.kind())),
            }
        });
    }
    quiesce::release(parked);
    if let Some(f) = failure {
        return Err(f);
    }
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

#[cfg(not(any(feature = "v2", feature = "v3", feature = "broken")))]
fn counter_ok(was: &schema::Counter, now: &schema::Counter, steps: u64) -> bool {
    now.count == was.count + steps
}

#[cfg(any(feature = "v2", feature = "v3", feature = "broken"))]
fn counter_ok(was: &schema::Counter, now: &schema::Counter, steps: u64) -> bool {
    now.stride == was.stride && now.count == was.count + steps * now.stride as u64
}
