//! State of `lcg` tasks: a checksum stream `x ← a·x + c (mod 2⁶⁴)`, one step at a time.
//!
//! The stream can be recomputed from `seed` and `steps`, so anyone holding a snapshot can
//! check that the stream continued from its pre-swap value rather than restarting.
//! The layout has one version; the step rule changed in image v2 ([`Rule`]).

use super::{RecordKind, SchemaVersion, StateRecord, TaskKind};
use crate::wire::{Reader, WireError, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1 {
    pub seed: u64,
    pub x: u64,
    pub steps: u64,
}

impl StateRecord for V1 {
    const KIND: RecordKind = TaskKind::LCG.state_record();
    const SCHEMA: SchemaVersion = SchemaVersion::new(1);
    const SIZE: usize = 24;
    fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.seed);
        w.u64(self.x);
        w.u64(self.steps);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(V1 {
            seed: r.u64()?,
            x: r.u64()?,
            steps: r.u64()?,
        })
    }
}

/// A step rule: multiplier and increment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub id: u64,
    pub a: u64,
    pub c: u64,
}

/// Images v1: Knuth's MMIX constants.
pub const RULE_1: Rule = Rule {
    id: 1,
    a: 6364136223846793005,
    c: 1442695040888963407,
};
/// Images v2 and later (the changed behaviour).
pub const RULE_2: Rule = Rule {
    id: 2,
    a: 2862933555777941757,
    c: 3037000493,
};

impl Rule {
    /// One step.
    pub const fn step(&self, x: u64) -> u64 {
        x.wrapping_mul(self.a).wrapping_add(self.c)
    }

    /// `n` steps from `x`, in O(log n) (affine map composition by squaring).
    pub fn jump(&self, x: u64, mut n: u64) -> u64 {
        // Accumulated map (acc_a, acc_c) and the current power (pa, pc).
        let (mut acc_a, mut acc_c) = (1u64, 0u64);
        let (mut pa, mut pc) = (self.a, self.c);
        while n > 0 {
            if n & 1 == 1 {
                acc_a = acc_a.wrapping_mul(pa);
                acc_c = acc_c.wrapping_mul(pa).wrapping_add(pc);
            }
            pc = pc.wrapping_mul(pa).wrapping_add(pc);
            pa = pa.wrapping_mul(pa);
            n >>= 1;
        }
        x.wrapping_mul(acc_a).wrapping_add(acc_c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::testing::round_trip;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encoding_round_trips(seed: u64, x: u64, steps: u64) {
            round_trip(&V1 { seed, x, steps });
        }

        #[test]
        fn jump_equals_repeated_steps(x: u64, n in 0u64..2000) {
            for rule in [RULE_1, RULE_2] {
                let mut y = x;
                for _ in 0..n { y = rule.step(y); }
                prop_assert_eq!(rule.jump(x, n), y);
            }
        }
    }
}
