//! `ticker`: counts its steps. Cosmetic: an image without the kind may drop its tasks.

use updater::continuity::Clause;
use updater::records::TaskKind;

use super::{state_record, Ctx, Kind, Next};

/// A ticker's state.
#[derive(Debug, Clone, PartialEq, Eq, updater::Record)]
#[record(kind = state_record::<Ticker>(), version = 1)]
#[repr(C)]
pub struct TickerV1 {
    pub ticks: u64,
}

/// The `ticker` kind.
pub struct Ticker;

impl Kind for Ticker {
    const ID: TaskKind = TaskKind::TICKER;
    const NAME: &'static str = "ticker";
    type State = TickerV1;
    const OPTIONAL: bool = true;
    const CONTINUITY: &'static [Clause] = &[Clause::Monotonic(0)];

    fn step(state: &mut TickerV1, _ctx: &Ctx<'_>) -> Next {
        step(state)
    }

    /// `[ticks, 0, 0, 0]`.
    fn observe(state: &TickerV1) -> [u64; 4] {
        [state.ticks, 0, 0, 0]
    }
}

#[inline(never)]
pub fn step(state: &mut TickerV1) -> Next {
    super::tick(&mut state.ticks);
    Next::Period
}

/// A new ticker.
pub fn initial() -> TickerV1 {
    TickerV1 { ticks: 0 }
}
