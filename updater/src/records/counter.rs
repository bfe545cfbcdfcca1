//! State of `counter` tasks: a number that grows by one step at a time.
//!
//! - V1: `count`.
//! - V2 (fields added and reordered): `stride`, `last_cpu`, `count`. A v2 counter adds
//!   `stride` per step and remembers the CPU that last stepped it.

use super::{RecordKind, SchemaVersion, StateRecord, TaskKind};
use crate::wire::{Reader, WireError, Writer};

/// `last_cpu` before any v2 kernel stepped the task.
pub const UNKNOWN_CPU: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1 {
    pub count: u64,
}

impl StateRecord for V1 {
    const KIND: RecordKind = TaskKind::COUNTER.state_record();
    const SCHEMA: SchemaVersion = SchemaVersion::new(1);
    const SIZE: usize = 8;
    fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.count);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(V1 { count: r.u64()? })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2 {
    pub stride: u32,
    pub last_cpu: u32,
    pub count: u64,
}

impl StateRecord for V2 {
    const KIND: RecordKind = TaskKind::COUNTER.state_record();
    const SCHEMA: SchemaVersion = SchemaVersion::new(2);
    const SIZE: usize = 16;
    fn encode(&self, w: &mut Writer<'_>) {
        w.u32(self.stride);
        w.u32(self.last_cpu);
        w.u64(self.count);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(V2 {
            stride: r.u32()?,
            last_cpu: r.u32()?,
            count: r.u64()?,
        })
    }
}

/// V1 → V2: the count carries over; the stride starts at 1 (v1's behaviour).
pub fn v1_to_v2(old: &V1) -> V2 {
    V2 {
        stride: 1,
        last_cpu: UNKNOWN_CPU,
        count: old.count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::testing::round_trip;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encodings_round_trip(count: u64, stride: u32, cpu: u32) {
            round_trip(&V1 { count });
            round_trip(&V2 { stride, last_cpu: cpu, count });
        }

        #[test]
        fn upgrade_keeps_the_count(count: u64) {
            let v2 = v1_to_v2(&V1 { count });
            prop_assert_eq!(v2.count, count);
            prop_assert_eq!(v2.stride, 1);
        }
    }
}
