//! `counter`: adds its increment to a number each step.

use updater::continuity::Clause;
use updater::records::TaskKind;

use super::{state_record, Ctx, Kind, Next};

/// Per-step increment.
const INCREMENT: u64 = 1;

/// A counter's state.
#[derive(Debug, Clone, PartialEq, Eq, updater::Record)]
#[record(kind = state_record::<Counter>(), version = 1)]
#[repr(C)]
pub struct CounterV1 {
    pub count: u64,
}

/// The `counter` kind.
pub struct Counter;

impl Kind for Counter {
    const ID: TaskKind = TaskKind::COUNTER;
    const NAME: &'static str = "counter";
    type State = CounterV1;
    /// The count grows by the increment (`observe`'s second value) per step.
    const CONTINUITY: &'static [Clause] = &[Clause::GrowsPerStep {
        value: 0,
        per_step: 1,
    }];

    fn step(state: &mut CounterV1, _ctx: &Ctx<'_>) -> Next {
        step(state)
    }

    /// `[count, increment, last CPU (unknown), 0]`.
    fn observe(state: &CounterV1) -> [u64; 4] {
        [state.count, INCREMENT, u64::MAX, 0]
    }
}

#[inline(never)]
pub fn step(state: &mut CounterV1) -> Next {
    state.count += INCREMENT;
    Next::Period
}

/// A new counter.
pub fn initial() -> CounterV1 {
    CounterV1 { count: 0 }
}
