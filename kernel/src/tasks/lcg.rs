//! `lcg`: advances a linear congruential stream one step, with this image's rule.
//!
//! The stream can be recomputed from `seed` and `steps`, so anyone holding a snapshot
//! can check that it continued from its pre-swap value rather than restarting.

use updater::continuity::{Clause, LcgRule};
use updater::records::TaskKind;

use super::{state_record, Ctx, Kind, Next};

/// The rule this image's streams follow.
pub const RULE: LcgRule = LcgRule::MMIX;

/// An LCG stream's state.
#[derive(Debug, Clone, PartialEq, Eq, updater::Record)]
#[record(kind = state_record::<Lcg>(), version = 1)]
#[repr(C)]
pub struct LcgV1 {
    pub seed: u64,
    pub x: u64,
    pub steps: u64,
}

/// The `lcg` kind.
pub struct Lcg;

impl Kind for Lcg {
    const ID: TaskKind = TaskKind::LCG;
    const NAME: &'static str = "lcg";
    type State = LcgV1;
    /// The seed stays, the step count counts steps, the stream follows its rules.
    const CONTINUITY: &'static [Clause] = &[
        Clause::Same(2),
        Clause::CountsSteps(1),
        Clause::LcgStream { x: 0, rule: 3 },
    ];

    fn step(state: &mut LcgV1, _ctx: &Ctx<'_>) -> Next {
        step(state)
    }

    /// `[x, steps, seed, rule id]`.
    fn observe(state: &LcgV1) -> [u64; 4] {
        [state.x, state.steps, state.seed, RULE.id]
    }
}

#[inline(never)]
pub fn step(state: &mut LcgV1) -> Next {
    state.x = RULE.step(state.x);
    state.steps += 1;
    Next::Period
}

/// A stream starting from a seed derived from `n`.
pub fn initial(n: u64) -> LcgV1 {
    let seed = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(n + 1);
    LcgV1 {
        seed,
        x: seed,
        steps: 0,
    }
}
