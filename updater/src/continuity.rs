//! Continuity: did a task carry on from the state it had, rather than restart, skip or
//! repeat? Each task kind declares its rule once, as data ([`Clause`]s over the four
//! numbers its `observe` shows), and both sides apply it: the kernel's self-check
//! (exported record against the live task) and the host (`hotkernel tasks`, the demo
//! and the tests: two snapshots), which learns each kind's rule from the snapshot.
//!
//! Between the two observations the task ran `steps` steps, some under one image and
//! some under another: every clause allows exactly what those steps may have done.
//!
//! ```
//! use updater::continuity::{check, Clause};
//!
//! // A counter: value 0 grows by value 1 per step, value 1 is the increment.
//! const COUNTER: &[Clause] = &[Clause::GrowsPerStep { value: 0, per_step: 1 }];
//! assert!(check(COUNTER, [10, 2, 0, 0], [16, 2, 0, 0], 3).is_ok());
//! assert!(check(COUNTER, [10, 2, 0, 0], [15, 2, 0, 0], 3).is_err());
//! ```

/// One condition between an earlier and a later observation of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clause {
    /// Value `i` never decreases.
    Monotonic(u8),
    /// Values `(major, minor)` never decrease taken together (a cursor that wraps and
    /// counts its rounds).
    MonotonicPair { major: u8, minor: u8 },
    /// Value `i` does not change.
    Same(u8),
    /// Value `i` stays zero.
    Zero(u8),
    /// Value `i` grows by exactly the steps run.
    CountsSteps(u8),
    /// Value `value` grows by `steps × value per_step`; when the increment differs
    /// between the two observations (an update changed it), any mix of the two.
    GrowsPerStep { value: u8, per_step: u8 },
    /// Value `x` is an LCG stream ([`LcgRule`]) whose rule id is value `rule`: it equals
    /// the earlier `x` advanced by `k` steps of the earlier rule and `steps − k` of the
    /// later one, for some `k`.
    LcgStream { x: u8, rule: u8 },
}

impl Clause {
    /// The clause as 4 bytes (opcode, two value indices, 0): how snapshots carry it.
    pub const fn encode(&self) -> [u8; 4] {
        match *self {
            Clause::Monotonic(i) => [1, i, 0, 0],
            Clause::MonotonicPair { major, minor } => [2, major, minor, 0],
            Clause::Same(i) => [3, i, 0, 0],
            Clause::Zero(i) => [4, i, 0, 0],
            Clause::CountsSteps(i) => [5, i, 0, 0],
            Clause::GrowsPerStep { value, per_step } => [6, value, per_step, 0],
            Clause::LcgStream { x, rule } => [7, x, rule, 0],
        }
    }

    /// The clause of [`encode`](Self::encode)'s bytes; `None` for an unknown opcode.
    pub const fn decode(b: [u8; 4]) -> Option<Clause> {
        Some(match b[0] {
            1 => Clause::Monotonic(b[1]),
            2 => Clause::MonotonicPair {
                major: b[1],
                minor: b[2],
            },
            3 => Clause::Same(b[1]),
            4 => Clause::Zero(b[1]),
            5 => Clause::CountsSteps(b[1]),
            6 => Clause::GrowsPerStep {
                value: b[1],
                per_step: b[2],
            },
            7 => Clause::LcgStream {
                x: b[1],
                rule: b[2],
            },
            _ => return None,
        })
    }
}

/// How the later observation broke a clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Broken {
    pub clause: Clause,
    pub before: [u64; 4],
    pub after: [u64; 4],
    pub steps: u64,
}

impl core::fmt::Display for Broken {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (b, a, d) = (self.before, self.after, self.steps);
        let v = |i: u8, s: [u64; 4]| s.get(usize::from(i)).copied().unwrap_or(0);
        match self.clause {
            Clause::Monotonic(i) => {
                write!(f, "value {i} went back from {} to {}", v(i, b), v(i, a))
            }
            Clause::MonotonicPair { major, minor } => write!(
                f,
                "values ({major}, {minor}) went back from ({}, {}) to ({}, {})",
                v(major, b),
                v(minor, b),
                v(major, a),
                v(minor, a)
            ),
            Clause::Same(i) => write!(f, "value {i} changed from {} to {}", v(i, b), v(i, a)),
            Clause::Zero(i) => write!(f, "value {i} is {}, not 0", v(i, a)),
            Clause::CountsSteps(i) => write!(
                f,
                "value {i} went from {} to {} but the task ran {d} steps",
                v(i, b),
                v(i, a)
            ),
            Clause::GrowsPerStep { value, per_step } => write!(
                f,
                "value {value} grew from {} to {} in {d} steps of +{}/+{}",
                v(value, b),
                v(value, a),
                v(per_step, b),
                v(per_step, a)
            ),
            Clause::LcgStream { x, rule } => write!(
                f,
                "stream {:#x} is not {:#x} advanced by {d} steps (rules {} → {})",
                v(x, a),
                v(x, b),
                v(rule, b),
                v(rule, a)
            ),
        }
    }
}

/// Checks every clause of `rule` between `before` and `after`, `steps` steps apart.
pub fn check(rule: &[Clause], before: [u64; 4], after: [u64; 4], steps: u64) -> Result<(), Broken> {
    for &clause in rule {
        if !holds(clause, before, after, steps) {
            return Err(Broken {
                clause,
                before,
                after,
                steps,
            });
        }
    }
    Ok(())
}

fn holds(clause: Clause, b: [u64; 4], a: [u64; 4], d: u64) -> bool {
    let get = |i: u8, s: [u64; 4]| s.get(usize::from(i)).copied();
    let pair = |i: u8| get(i, b).zip(get(i, a));
    match clause {
        Clause::Monotonic(i) => pair(i).is_some_and(|(b, a)| a >= b),
        Clause::MonotonicPair { major, minor } => pair(major)
            .zip(pair(minor))
            .is_some_and(|((bj, aj), (bn, an))| (aj, an) >= (bj, bn)),
        Clause::Same(i) => pair(i).is_some_and(|(b, a)| a == b),
        Clause::Zero(i) => get(i, a) == Some(0),
        Clause::CountsSteps(i) => pair(i).is_some_and(|(b, a)| b.checked_add(d) == Some(a)),
        Clause::GrowsPerStep { value, per_step } => {
            let (Some((b0, a0)), Some((bi, ai))) = (pair(value), pair(per_step)) else {
                return false;
            };
            let (lo, hi) = (bi.min(ai), bi.max(ai));
            match (a0.checked_sub(b0), d.checked_mul(lo), d.checked_mul(hi)) {
                (Some(grew), Some(lo), Some(hi)) => (lo..=hi).contains(&grew),
                _ => false,
            }
        }
        Clause::LcgStream { x, rule } => {
            let (Some((x0, x1)), Some((r0, r1))) = (pair(x), pair(rule)) else {
                return false;
            };
            match (LcgRule::by_id(r0), LcgRule::by_id(r1)) {
                (Some(old), Some(new)) => lcg_continues(x0, x1, d, old, new),
                _ => false,
            }
        }
    }
}

/// Whether `x1` is `x0` after `k` steps of `old` and `d − k` of `new`, for some `k`.
fn lcg_continues(x0: u64, x1: u64, d: u64, old: LcgRule, new: LcgRule) -> bool {
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

/// A linear congruential step rule `x ← a·x + c (mod 2⁶⁴)`, named by an id so a
/// snapshot can say which one a stream follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LcgRule {
    pub id: u64,
    pub a: u64,
    pub c: u64,
}

impl LcgRule {
    /// Knuth's MMIX constants (rule 1).
    pub const MMIX: LcgRule = LcgRule {
        id: 1,
        a: 6364136223846793005,
        c: 1442695040888963407,
    };
    /// L'Ecuyer's multiplier with an odd increment (rule 2).
    pub const LECUYER: LcgRule = LcgRule {
        id: 2,
        a: 2862933555777941757,
        c: 3037000493,
    };
    /// Every rule an image of this tree may run.
    pub const ALL: [LcgRule; 2] = [Self::MMIX, Self::LECUYER];

    /// The rule with this id.
    pub fn by_id(id: u64) -> Option<LcgRule> {
        Self::ALL.into_iter().find(|r| r.id == id)
    }

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
    use proptest::prelude::*;

    const LCG: &[Clause] = &[
        Clause::Same(2),
        Clause::CountsSteps(1),
        Clause::LcgStream { x: 0, rule: 3 },
    ];

    #[test]
    fn a_stream_that_changed_rule_midway_continues_and_a_restarted_one_does_not() {
        let x0 = 12345;
        let mid = LcgRule::MMIX.jump(x0, 3);
        let x1 = LcgRule::LECUYER.jump(mid, 5);
        assert!(check(LCG, [x0, 10, 7, 1], [x1, 18, 7, 2], 8).is_ok());
        let restarted = LcgRule::LECUYER.jump(7, 8);
        let e = check(LCG, [x0, 10, 7, 1], [restarted, 18, 7, 2], 8).unwrap_err();
        assert_eq!(e.clause, Clause::LcgStream { x: 0, rule: 3 });
        assert!(check(LCG, [x0, 10, 7, 1], [x1, 17, 7, 2], 8).is_err());
        assert!(
            check(LCG, [x0, 10, 7, 9], [x1, 18, 7, 2], 8).is_err(),
            "unknown rule"
        );
    }

    #[test]
    fn counters_may_change_their_increment_but_not_skip() {
        let rule = [Clause::GrowsPerStep {
            value: 0,
            per_step: 1,
        }];
        assert!(check(&rule, [5, 1, 0, 0], [9, 1, 0, 0], 4).is_ok());
        assert!(check(&rule, [5, 1, 0, 0], [12, 1, 0, 0], 4).is_err());
        // Across a patch from +1 to +2: anything from 4 to 8 in 4 steps.
        assert!(check(&rule, [5, 1, 0, 0], [13, 2, 0, 0], 4).is_ok());
        assert!(check(&rule, [5, 1, 0, 0], [14, 2, 0, 0], 4).is_err());
        assert!(check(&rule, [5, 1, 0, 0], [4, 1, 0, 0], 0).is_err());
    }

    #[test]
    fn a_wrapping_cursor_with_rounds_moves_forward() {
        let rule = [Clause::MonotonicPair { major: 1, minor: 0 }];
        assert!(check(&rule, [900, 3, 0, 0], [4, 4, 0, 0], 2).is_ok());
        assert!(check(&rule, [900, 3, 0, 0], [4, 3, 0, 0], 2).is_err());
    }

    #[test]
    fn broken_clauses_say_what_broke() {
        let e = check(&[Clause::Zero(2)], [0; 4], [0, 0, 3, 0], 1).unwrap_err();
        assert_eq!(std::format!("{e}"), "value 2 is 3, not 0");
        let e = check(&[Clause::Monotonic(9)], [0; 4], [0; 4], 1).unwrap_err();
        assert_eq!(
            e.clause,
            Clause::Monotonic(9),
            "an index past the values fails"
        );
    }

    #[test]
    fn clauses_round_trip_through_their_bytes() {
        for c in [
            Clause::Monotonic(1),
            Clause::MonotonicPair { major: 1, minor: 0 },
            Clause::Same(2),
            Clause::Zero(3),
            Clause::CountsSteps(1),
            Clause::GrowsPerStep {
                value: 0,
                per_step: 1,
            },
            Clause::LcgStream { x: 0, rule: 3 },
        ] {
            assert_eq!(Clause::decode(c.encode()), Some(c));
        }
        assert_eq!(Clause::decode([0, 0, 0, 0]), None);
    }

    proptest! {
        #[test]
        fn jump_equals_repeated_steps(x: u64, n in 0u64..2000) {
            for rule in LcgRule::ALL {
                let mut y = x;
                for _ in 0..n { y = rule.step(y); }
                prop_assert_eq!(rule.jump(x, n), y);
            }
        }
    }
}
