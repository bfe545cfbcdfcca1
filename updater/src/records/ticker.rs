//! State of `ticker` tasks: a tick count. Cosmetic, so a kernel exports it as an
//! optional record; image v3 no longer has the kind and drops these tasks with a
//! warning.
//!
//! - V1: `ticks`.
//! - V2 (a field added; the `patch-c` variant, which the hotpatch generator must refuse
//!   because a state layout changed): `ticks`, `last_cpu`.

use super::{RecordKind, SchemaVersion, StateRecord, TaskKind};
use crate::wire::{Reader, WireError, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1 {
    pub ticks: u64,
}

impl StateRecord for V1 {
    const KIND: RecordKind = TaskKind::TICKER.state_record();
    const SCHEMA: SchemaVersion = SchemaVersion::new(1);
    const SIZE: usize = 8;
    fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.ticks);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(V1 { ticks: r.u64()? })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2 {
    pub ticks: u64,
    pub last_cpu: u32,
}

impl StateRecord for V2 {
    const KIND: RecordKind = TaskKind::TICKER.state_record();
    const SCHEMA: SchemaVersion = SchemaVersion::new(2);
    const SIZE: usize = 16;
    fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.ticks);
        w.u32(self.last_cpu);
        w.u32(0);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let ticks = r.u64()?;
        let last_cpu = r.u32()?;
        r.skip(4)?;
        Ok(V2 { ticks, last_cpu })
    }
}

/// V1 → V2: the last CPU is not known yet.
pub fn v1_to_v2(old: &V1) -> V2 {
    V2 {
        ticks: old.ticks,
        last_cpu: u32::MAX,
    }
}
