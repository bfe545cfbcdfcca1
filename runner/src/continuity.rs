//! Continuity across an update, checked by the host from two snapshots: did every task
//! carry on from the state it had, with no task lost and no value skipped or repeated?
//!
//! `before` is taken just before an update, `after` just after it (both with every CPU
//! stopped, so each is consistent). Between them a task ran `d = steps_after -
//! steps_before` steps, some under the old code and some under the new. What may change
//! in those steps is each kind's own rule, which the running image describes in every
//! snapshot (`Kind::CONTINUITY` in the kernel, applied by `updater::continuity` — the
//! same rule the kernel's self-check applies): the host knows no kind by itself, so a
//! kind it was not built with is checked like any other.
//!
//! Tasks of a kind the new image does not run may disappear only if expected
//! (`dropped_kinds`); tasks may appear only if the update initialised them.

use std::collections::{BTreeMap, BTreeSet};

use image_format::mailbox::report::{Snapshot, TaskSnapshot};
use image_format::TaskKind;
use updater::continuity::Clause;

/// Task-table flag: created by an update's initialisation.
const INITIALISED_BY_UPDATE: u16 = 1 << 1;

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

/// The rule of kind `kind` as `snapshot`'s image declares it (`None`: it does not).
fn rule(snapshot: &Snapshot, kind: u16) -> Option<Vec<Clause>> {
    let info = snapshot.kind(kind)?;
    Some(
        info.continuity
            .iter()
            .filter_map(|b| Clause::decode(*b))
            .collect(),
    )
}

fn check_task(
    b: &TaskSnapshot,
    a: &TaskSnapshot,
    before: &Snapshot,
    after: &Snapshot,
) -> Result<u64, String> {
    let who = format!("task {} ({})", b.id, before.kind_name(b.kind));
    if a.kind != b.kind {
        return Err(format!("{who} is now of kind {}", after.kind_name(a.kind)));
    }
    let d = a
        .steps
        .checked_sub(b.steps)
        .ok_or_else(|| format!("{who} went back from {} to {} steps", b.steps, a.steps))?;
    // Each image's rule for the kind must hold; an image that describes no rule for
    // it (an older guest) leaves the steps check alone.
    for snapshot in [before, after] {
        if let Some(rule) = rule(snapshot, b.kind) {
            updater::continuity::check(&rule, b.values, a.values, d)
                .map_err(|broken| format!("{who}: {broken}"))?;
        }
    }
    Ok(d)
}

/// Compares `before` and `after`. Tasks of `dropped_kinds` may disappear.
pub fn check(before: &Snapshot, after: &Snapshot, dropped_kinds: &[TaskKind]) -> Continuity {
    let mut c = Continuity::default();
    let after_by_id: BTreeMap<u32, &TaskSnapshot> = after.tasks.iter().map(|t| (t.id, t)).collect();
    for b in &before.tasks {
        match after_by_id.get(&b.id) {
            Some(a) => match check_task(b, a, before, after) {
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
                before.kind_name(b.kind)
            )),
        }
    }
    let before_ids: BTreeSet<u32> = before.tasks.iter().map(|t| t.id).collect();
    for a in after.tasks.iter().filter(|a| !before_ids.contains(&a.id)) {
        if a.flags & INITIALISED_BY_UPDATE != 0 {
            c.tasks_added += 1;
        } else {
            c.problems.push(format!(
                "task {} ({}) appeared from nowhere",
                a.id,
                after.kind_name(a.kind)
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
    use image_format::mailbox::report::KindInfo;
    use updater::continuity::LcgRule;

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

    fn kind(id: TaskKind, name: &str, rule: &[Clause]) -> KindInfo {
        KindInfo {
            id: id.raw(),
            name: name.into(),
            continuity: rule.iter().map(Clause::encode).collect(),
        }
    }

    fn snap(tasks: Vec<TaskSnapshot>) -> Snapshot {
        Snapshot {
            tsc_hz: 1,
            tsc: 0,
            tasks,
            kinds: vec![
                kind(
                    TaskKind::COUNTER,
                    "counter",
                    &[Clause::GrowsPerStep {
                        value: 0,
                        per_step: 1,
                    }],
                ),
                kind(
                    TaskKind::LCG,
                    "lcg",
                    &[
                        Clause::Same(2),
                        Clause::CountsSteps(1),
                        Clause::LcgStream { x: 0, rule: 3 },
                    ],
                ),
                kind(TaskKind::TICKER, "ticker", &[Clause::Monotonic(0)]),
            ],
        }
    }

    #[test]
    fn a_stream_that_changed_rule_midway_continues_and_a_restarted_one_does_not() {
        let x0 = 12345;
        let mid = LcgRule::MMIX.jump(x0, 3);
        let x1 = LcgRule::LECUYER.jump(mid, 5);
        let before = snap(vec![task(1, TaskKind::LCG, 10, [x0, 10, 7, 1])]);
        let after = snap(vec![task(1, TaskKind::LCG, 18, [x1, 18, 7, 2])]);
        assert!(check(&before, &after, &[]).ok());
        let restarted = snap(vec![task(
            1,
            TaskKind::LCG,
            18,
            [LcgRule::LECUYER.jump(7, 8), 18, 7, 2],
        )]);
        assert!(!check(&before, &restarted, &[]).ok());
    }

    #[test]
    fn counters_lost_tasks_and_dropped_kinds() {
        let before = snap(vec![
            task(1, TaskKind::COUNTER, 5, [5, 1, 0, 0]),
            task(2, TaskKind::TICKER, 5, [5, 0, 0, 0]),
        ]);
        let after = snap(vec![task(1, TaskKind::COUNTER, 9, [9, 1, 0, 0])]);
        let c = check(&before, &after, &[TaskKind::TICKER]);
        assert!(c.ok(), "{:?}", c.problems);
        assert_eq!((c.tasks_compared, c.tasks_dropped), (1, 1));
        let c = check(&before, &after, &[]);
        assert_eq!(c.problems, ["task 2 (ticker) was lost"]);
        let skipped = snap(vec![task(1, TaskKind::COUNTER, 9, [12, 1, 0, 0])]);
        assert!(!check(&before, &skipped, &[TaskKind::TICKER]).ok());
        // A patched counter (+2) may have grown by anything from 1 to 2 per step.
        let doubled = snap(vec![task(1, TaskKind::COUNTER, 9, [13, 2, 0, 0])]);
        assert!(check(&before, &doubled, &[TaskKind::TICKER]).ok());
    }

    #[test]
    fn a_kind_the_host_does_not_know_is_checked_by_its_own_rule() {
        let clock = TaskKind::from_raw(99);
        let with_clock = |tasks| {
            let mut s = snap(tasks);
            s.kinds
                .push(kind(clock, "clock", &[Clause::CountsSteps(0)]));
            s
        };
        let before = with_clock(vec![task(1, clock, 5, [5, 0, 0, 0])]);
        let good = with_clock(vec![task(1, clock, 8, [8, 0, 0, 0])]);
        let bad = with_clock(vec![task(1, clock, 8, [9, 0, 0, 0])]);
        assert!(check(&before, &good, &[]).ok());
        let c = check(&before, &bad, &[]);
        assert_eq!(
            c.problems[0],
            "task 1 (clock): value 0 went from 5 to 9 but the task ran 3 steps"
        );
    }
}
