//! State of `ticker` tasks: a tick count. Cosmetic, so a kernel exports it as an
//! optional record; image v3 no longer has the kind and drops these tasks with a
//! warning.

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
