//! State of the `update-service` task, which serves the mailbox.

use super::{RecordKind, SchemaVersion, StateRecord, TaskKind};
use crate::wire::{Reader, WireError, Writer};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct V1 {
    /// Sequence number of the last request acted on; older or equal ones are stale.
    pub last_seq: u64,
    /// Packages accepted into the staging buffer.
    pub staged: u64,
    /// Swaps applied.
    pub applied: u64,
    /// Requests refused or rolled back.
    pub refused: u64,
    /// Patch operations (apply and remove) done.
    pub patches: u64,
}

impl StateRecord for V1 {
    const KIND: RecordKind = TaskKind::SERVICE.state_record();
    const SCHEMA: SchemaVersion = SchemaVersion::new(1);
    const SIZE: usize = 40;
    fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.last_seq);
        w.u64(self.staged);
        w.u64(self.applied);
        w.u64(self.refused);
        w.u64(self.patches);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(V1 {
            last_seq: r.u64()?,
            staged: r.u64()?,
            applied: r.u64()?,
            refused: r.u64()?,
            patches: r.u64()?,
        })
    }
}
