//! `ticker`: counts its steps. Cosmetic: its record is exported as optional, and image
//! v3 drops the kind.

use crate::schema::Ticker;
use crate::tasks::Next;

pub fn initial() -> Ticker {
    Ticker { ticks: 0 }
}

#[inline(never)]
pub fn step(state: &mut Ticker) -> Next {
    state.ticks += 1;
    Next::Period
}
