//! State of the `heartbeat` task, which prints a progress line every second.

use super::{RecordKind, SchemaVersion, StateRecord, TaskKind};
use crate::wire::{Reader, WireError, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1 {
    /// Progress lines printed.
    pub beats: u64,
    /// Task steps counted at the last beat (all CPUs), to print a rate.
    pub last_total_steps: u64,
}

impl StateRecord for V1 {
    const KIND: RecordKind = TaskKind::HEARTBEAT.state_record();
    const SCHEMA: SchemaVersion = SchemaVersion::new(1);
    const SIZE: usize = 16;
    fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.beats);
        w.u64(self.last_total_steps);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(V1 {
            beats: r.u64()?,
            last_total_steps: r.u64()?,
        })
    }
}
