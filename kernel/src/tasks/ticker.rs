//! `ticker`: counts its steps. Cosmetic: its record is exported as optional, and image
//! v3 drops the kind.

use crate::schema::Ticker;
use crate::tasks::Next;

#[cfg(not(feature = "patch-c"))]
pub fn initial() -> Ticker {
    Ticker { ticks: 0 }
}

#[cfg(feature = "patch-c")]
pub fn initial() -> Ticker {
    Ticker {
        ticks: 0,
        last_cpu: u32::MAX,
    }
}

#[inline(never)]
pub fn step(state: &mut Ticker) -> Next {
    super::tick(&mut state.ticks);
    #[cfg(feature = "patch-c")]
    {
        state.last_cpu = crate::arch::cpu_index() as u32;
    }
    Next::Period
}
