//! `lcg`: advances a linear congruential stream one step, with this image's rule
//! (`schema::LCG_RULE`; image v2 changed it).

use crate::schema::{Lcg, LCG_RULE};
use crate::tasks::Next;

/// A stream starting from a seed derived from `n`.
pub fn initial(n: u64) -> Lcg {
    let seed = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(n + 1);
    Lcg {
        seed,
        x: seed,
        steps: 0,
    }
}

#[inline(never)]
pub fn step(state: &mut Lcg) -> Next {
    state.x = LCG_RULE.step(state.x);
    state.steps += 1;
    Next::Period
}
