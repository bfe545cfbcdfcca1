//! `heartbeat`: once a second, one progress line: CPUs online, steps per second on each
//! CPU, and what each kind has done. Tasks being stepped at that instant on other CPUs
//! are not counted (the line is a view, not a snapshot; the mailbox snapshot is the
//! exact one).

use alloc::collections::BTreeMap;
use core::fmt::Write;
use core::sync::atomic::Ordering;

use spin::Mutex;
use updater::continuity::Clause;
use updater::records::TaskKind;

use super::{observe, pipeline, state_record, Ctx, Kind, Next, TaskState};
use crate::cpu::{self, MAX_CPUS};
use crate::time::{self, Duration};

/// The heartbeat's state.
#[derive(Debug, Clone, PartialEq, Eq, updater::Record)]
#[record(kind = state_record::<Heartbeat>(), version = 1)]
#[repr(C)]
pub struct HeartbeatV1 {
    /// Progress lines printed.
    pub beats: u64,
    /// Task steps counted at the last beat (all CPUs), to print a rate.
    pub last_total_steps: u64,
}

/// The `heartbeat` kind.
pub struct Heartbeat;

impl Kind for Heartbeat {
    const ID: TaskKind = TaskKind::HEARTBEAT;
    const NAME: &'static str = "heartbeat";
    type State = HeartbeatV1;
    const CONTINUITY: &'static [Clause] = &[Clause::Monotonic(0)];

    fn step(state: &mut HeartbeatV1, ctx: &Ctx<'_>) -> Next {
        step(state, ctx)
    }

    /// `[beats, 0, 0, 0]`.
    fn observe(s: &HeartbeatV1) -> [u64; 4] {
        [s.beats, 0, 0, 0]
    }
}

/// Steps per CPU at the previous beat (runtime only).
static LAST_STEPS: Mutex<[u64; MAX_CPUS]> = Mutex::new([0; MAX_CPUS]);

pub fn initial() -> HeartbeatV1 {
    HeartbeatV1 {
        beats: 0,
        last_total_steps: 0,
    }
}

#[inline(never)]
pub fn step(state: &mut HeartbeatV1, ctx: &Ctx<'_>) -> Next {
    super::tick(&mut state.beats);
    let mut line = alloc::string::String::with_capacity(256);
    let secs = time::since_boot().as_secs();
    let _ = write!(
        line,
        "progress {secs:>4}s | {}/{} cpus | steps/s",
        cpu::online_count(),
        cpu::count()
    );
    let mut last = LAST_STEPS.lock();
    let mut total = 0;
    for c in cpu::all() {
        let steps = c.steps.load(Ordering::Relaxed);
        let _ = write!(line, " {}", steps.saturating_sub(last[c.id.index()]));
        last[c.id.index()] = steps;
        total += steps;
    }
    state.last_total_steps = total;
    // Per kind: number of tasks, the sum of their first observed value, and a third
    // figure (consumers: errors; counters: the increment per step, so that a change of
    // behaviour — a swap, a hotpatch — shows on the console).
    let mut kinds: BTreeMap<u16, (u64, u64, u64)> = BTreeMap::new();
    ctx.census.each(&mut |s| {
        let v = observe(s);
        let e = kinds.entry(s.kind().raw()).or_insert((0, 0, 0));
        e.0 += 1;
        // LCGs show their step count; everything else its first value.
        let shown = if let TaskState::Lcg(_) = s {
            v[1]
        } else {
            v[0]
        };
        e.1 = e.1.wrapping_add(shown);
        match s {
            TaskState::Consumer(_) => e.2 += v[2],
            TaskState::Counter(_) => e.2 = e.2.max(v[1]),
            _ => {}
        }
    });
    for (kind, (n, sum, third)) in kinds {
        let kind = TaskKind::from_raw(kind);
        match kind {
            TaskKind::LCG => {
                let _ = write!(line, " | lcg {n} Σsteps {sum}");
            }
            TaskKind::CONSUMER => {
                let _ = write!(
                    line,
                    " | consumer {n} received {sum} errors {third} in-flight {}",
                    pipeline::in_flight()
                );
            }
            TaskKind::COUNTER => {
                let _ = write!(line, " | counter {n} Σ{sum} +{third}/step");
            }
            TaskKind::SERVICE | TaskKind::HEARTBEAT | TaskKind::PRODUCER => {}
            _ => {
                let _ = write!(line, " | {} {n} Σ{sum}", super::name(kind));
            }
        }
    }
    log::info!("{line}");
    Next::After(Duration::from_secs(1))
}
