//! Continuity across an update, checked by the host from two snapshots: did every task
//! carry on from the state it had, with no task lost and no value skipped or repeated?
//!
//! `before` is taken just before an update, `after` just after it (both with every CPU
//! stopped, so each is consistent). Between them a task ran `d = steps_after -
//! steps_before` steps, some under the old code and some under the new. Per kind:
//! - counter: the count grew by between `d × (smallest increment)` and
//!   `d × (largest increment)` of the two images (1 and 1 for a swap; 1 and 2 across
//!   patch-a), and its stride/last-CPU fields are sane;
//! - lcg: the stream equals the pre-update value advanced by `k` steps of the old rule
//!   and `d − k` of the new one, for some `k` — a restarted or corrupted stream does
//!   not; its own step count advanced by exactly `d`;
//! - consumer: no wrong value received, and it kept receiving; producer: kept sending;
//! - others (ticker, heartbeat, table, update-service): their counters did not go back.
//!
//! Tasks of a kind the new image does not run may disappear only if expected
//! (`dropped_kinds`); tasks may appear only if the update initialised them.

use std::collections::BTreeMap;

use image_format::mailbox::report::{Snapshot, TaskSnapshot};
use image_format::TaskKind;
use updater::records::lcg::{Rule, RULE_1, RULE_2};

/// Task-table flag: created by an update's initialisation.
const INITIALISED_BY_UPDATE: u16 = 1 << 1;

/// What the two images do per step, where it matters to the check.
#[derive(Debug, Clone, Copy)]
pub struct StepRules {
    /// Counter increments per step before and after (e.g. (1, 1), or (1, 2) for patch-a).
    pub counter: (u64, u64),
}

impl Default for StepRules {
    fn default() -> Self {
        Self { counter: (1, 1) }
    }
}

/// The result: problems found (empty = continuous) and what was compared.
#[derive(Debug, Clone, Default)]
pub struct Continuity {
    pub problems: Vec<String>,
    pub tasks_compared: usize,
    pub tasks_dropped: usize,
    pub tasks_added: usize,
    pub steps_between: u64,
}

impl Continuity {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn rule(id: u64) -> Option<Rule> {
    match id {
        1 => Some(RULE_1),
        2 => Some(RULE_2),
        _ => None,
    }
}

/// Whether `x1` is `x0` after `k` steps of `old` and `d - k` of `new`, for some `k`.
fn lcg_continues(x0: u64, x1: u64, d: u64, old: Rule, new: Rule) -> bool {
    if old == new {
        return new.jump(x0, d) == x1;
    }
    let mut y = x0;
    for k in 0..=d {
        if new.jump(y, d - k) == x1 {
            return true;
        }
        y = old.step(y);
    }
    false
}

fn check_task(b: &TaskSnapshot, a: &TaskSnapshot, rules: StepRules) -> Result<u64, String> {
    let name = TaskKind::from_raw(b.kind).name();
    let who = format!("task {} ({name})", b.id);
    if a.kind != b.kind {
        return Err(format!(
            "{who} is now of kind {}",
            TaskKind::from_raw(a.kind).name()
        ));
    }
    let d = a
        .steps
        .checked_sub(b.steps)
        .ok_or_else(|| format!("{who} went back from {} to {} steps", b.steps, a.steps))?;
    let (bv, av) = (b.values, a.values);
    match TaskKind::from_raw(b.kind) {
        TaskKind::COUNTER => {
            let grew = av[0]
                .checked_sub(bv[0])
                .ok_or_else(|| format!("{who}: count went back {} → {}", bv[0], av[0]))?;
            let (lo, hi) = (
                rules.counter.0.min(rules.counter.1),
                rules.counter.0.max(rules.counter.1),
            );
            if grew < d * lo || grew > d * hi {
                return Err(format!(
                    "{who}: count grew by {grew} in {d} steps, expected {}..={} (from {} to {})",
                    d * lo,
                    d * hi,
                    bv[0],
                    av[0]
                ));
            }
        }
        TaskKind::LCG => {
            let (Some(old), Some(new)) = (rule(bv[3]), rule(av[3])) else {
                return Err(format!("{who}: unknown LCG rule {} → {}", bv[3], av[3]));
            };
            if av[2] != bv[2] {
                return Err(format!("{who}: seed changed {:#x} → {:#x}", bv[2], av[2]));
            }
            if av[1] != bv[1] + d {
                return Err(format!(
                    "{who}: stream steps {} → {} but the task ran {d} steps",
                    bv[1], av[1]
                ));
            }
            if !lcg_continues(bv[0], av[0], d, old, new) {
                return Err(format!(
                    "{who}: stream {:#x} is not {:#x} advanced by {d} steps",
                    av[0], bv[0]
                ));
            }
        }
        TaskKind::CONSUMER => {
            if av[2] != 0 {
                return Err(format!("{who}: {} values out of sequence", av[2]));
            }
            if av[0] < bv[0] {
                return Err(format!(
                    "{who}: expects {} after expecting {}",
                    av[0], bv[0]
                ));
            }
        }
        _ => {
            if av[0] < bv[0] {
                return Err(format!("{who}: {} went back to {}", bv[0], av[0]));
            }
        }
    }
    Ok(d)
}

/// Compares `before` and `after`. Tasks of `dropped_kinds` may disappear.
pub fn check(
    before: &Snapshot,
    after: &Snapshot,
    rules: StepRules,
    dropped_kinds: &[TaskKind],
) -> Continuity {
    let mut c = Continuity::default();
    let after_by_id: BTreeMap<u32, &TaskSnapshot> = after.tasks.iter().map(|t| (t.id, t)).collect();
    for b in &before.tasks {
        match after_by_id.get(&b.id) {
            Some(a) => match check_task(b, a, rules) {
                Ok(d) => {
                    c.tasks_compared += 1;
                    c.steps_between += d;
                }
                Err(p) => c.problems.push(p),
            },
            None if dropped_kinds.contains(&TaskKind::from_raw(b.kind)) => c.tasks_dropped += 1,
            None => c.problems.push(format!(
                "task {} ({}) was lost",
                b.id,
                TaskKind::from_raw(b.kind).name()
            )),
        }
    }
    let before_ids: std::collections::BTreeSet<u32> = before.tasks.iter().map(|t| t.id).collect();
    for a in after.tasks.iter().filter(|a| !before_ids.contains(&a.id)) {
        if a.flags & INITIALISED_BY_UPDATE != 0 {
            c.tasks_added += 1;
        } else {
            c.problems.push(format!(
                "task {} ({}) appeared from nowhere",
                a.id,
                TaskKind::from_raw(a.kind).name()
            ));
        }
    }
    if c.tasks_compared == 0 {
        c.problems.push("no task to compare".into());
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u32, kind: TaskKind, steps: u64, values: [u64; 4]) -> TaskSnapshot {
        TaskSnapshot {
            id,
            kind: kind.raw(),
            schema: 1,
            cpu: 0,
            flags: 0,
            steps,
            values,
        }
    }

    fn snap(tasks: Vec<TaskSnapshot>) -> Snapshot {
        Snapshot {
            tsc_hz: 1,
            tsc: 0,
            tasks,
        }
    }

    #[test]
    fn a_stream_that_changed_rule_midway_continues_and_a_restarted_one_does_not() {
        let x0 = 12345;
        let mid = RULE_1.jump(x0, 3);
        let x1 = RULE_2.jump(mid, 5);
        let before = snap(vec![task(1, TaskKind::LCG, 10, [x0, 10, 7, 1])]);
        let after = snap(vec![task(1, TaskKind::LCG, 18, [x1, 18, 7, 2])]);
        assert!(check(&before, &after, StepRules::default(), &[]).ok());
        let restarted = snap(vec![task(
            1,
            TaskKind::LCG,
            18,
            [RULE_2.jump(7, 8), 18, 7, 2],
        )]);
        assert!(!check(&before, &restarted, StepRules::default(), &[]).ok());
    }

    #[test]
    fn counters_lost_tasks_and_dropped_kinds() {
        let before = snap(vec![
            task(1, TaskKind::COUNTER, 5, [5, 1, 0, 0]),
            task(2, TaskKind::TICKER, 5, [5, 0, 0, 0]),
        ]);
        let after = snap(vec![task(1, TaskKind::COUNTER, 9, [9, 1, 0, 0])]);
        let c = check(&before, &after, StepRules::default(), &[TaskKind::TICKER]);
        assert!(c.ok(), "{:?}", c.problems);
        assert_eq!((c.tasks_compared, c.tasks_dropped), (1, 1));
        let c = check(&before, &after, StepRules::default(), &[]);
        assert_eq!(c.problems, ["task 2 (ticker) was lost"]);
        let skipped = snap(vec![task(1, TaskKind::COUNTER, 9, [12, 1, 0, 0])]);
        assert!(!check(&before, &skipped, StepRules::default(), &[TaskKind::TICKER]).ok());
        let doubled = snap(vec![task(1, TaskKind::COUNTER, 9, [13, 2, 0, 0])]);
        assert!(check(
            &before,
            &doubled,
            StepRules { counter: (1, 2) },
            &[TaskKind::TICKER]
        )
        .ok());
    }
}
