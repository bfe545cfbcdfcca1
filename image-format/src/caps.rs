//! [`Capabilities`]: feature bits an image requires of the kernel it replaces and
//! provides to the image that replaces it.
//!
//! A swap is allowed only if the running kernel provides every bit the new image
//! requires ([`Capabilities::missing_from`]). A bit names a mechanism both images must
//! share — a hand-off ABI, the park stub, a record layout family — so a new image can
//! say "I need the old kernel to park its CPUs the v1 way" without knowing which
//! version that kernel is. Bits are stable: a bit is never reused for another meaning.
//! Unknown bits (from a newer image) are kept as they are and printed in hex.

use core::fmt;

bitflags::bitflags! {
    /// A set of capability bits (a `u64` on the wire).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Capabilities: u64 {
        /// The hand-off descriptor and record directory, ABI version 1
        /// (`updater::handoff`): the kernel exports its state there before a swap.
        const HANDOFF_V1 = 1 << 0;
        /// The park stub in the hand-off region, protocol version 1: application
        /// processors wait there, outside both images, during a swap.
        const PARK_STUB_V1 = 1 << 1;
        /// The frame allocator's state crosses a swap as a bitmap record, version 1.
        const FRAME_BITMAP_V1 = 1 << 2;
        /// The mailbox protocol of [`crate::mailbox`], layout version 1.
        const MAILBOX_V1 = 1 << 3;
        /// Run-to-completion tasks identified by stable kinds, whose task table and
        /// states cross a swap as versioned records.
        const TASKS_V1 = 1 << 4;
        /// More than one CPU: the quiesce parks application processors and the new
        /// kernel releases them into its own AP entry.
        const SMP = 1 << 5;
        /// Function-level hotpatching, patch format version 1 (patch-set record).
        const HOTPATCH_V1 = 1 << 6;
        /// Images larger than the first ones (the v3 lookup table): the running
        /// kernel's growth window and staging accept them.
        const BIG_TABLE = 1 << 7;
        /// No kernel provides this bit: an image that requires it is always refused.
        /// Tests use it to exercise the refusal path.
        const TEST_UNPROVIDED = 1 << 63;
    }
}

impl Capabilities {
    /// The bits of `self` (required) that `provided` lacks; empty if the requirement is met.
    pub const fn missing_from(self, provided: Capabilities) -> Capabilities {
        self.difference(provided)
    }
}

/// Names joined by ` | `, unknown bits in hex, `(none)` when empty.
impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("(none)");
        }
        bitflags::parser::to_writer(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn missing_bits_are_the_difference() {
        let required = Capabilities::HANDOFF_V1 | Capabilities::TEST_UNPROVIDED;
        let provided = Capabilities::HANDOFF_V1 | Capabilities::SMP;
        assert_eq!(
            required.missing_from(provided),
            Capabilities::TEST_UNPROVIDED
        );
        assert!(Capabilities::SMP.missing_from(provided).is_empty());
    }

    #[test]
    fn prints_names_and_unknown_bits() {
        let c =
            Capabilities::HANDOFF_V1 | Capabilities::SMP | Capabilities::from_bits_retain(1 << 40);
        assert_eq!(c.to_string(), "HANDOFF_V1 | SMP | 0x10000000000");
        assert_eq!(Capabilities::empty().to_string(), "(none)");
    }
}
