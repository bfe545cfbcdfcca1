//! State of `table` tasks (new in image v3): a CRC-32 running over the image's large
//! lookup table, one block per step. An image that starts them for the first time must
//! initialise them (the bootstrap's "initialisation requirement").

use super::{RecordKind, SchemaVersion, StateRecord, TaskKind};
use crate::wire::{Reader, WireError, Writer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1 {
    /// Byte offset of the next block.
    pub cursor: u64,
    /// Completed passes over the table.
    pub rounds: u32,
    /// CRC-32 of everything read so far.
    pub crc: u32,
}

impl StateRecord for V1 {
    const KIND: RecordKind = TaskKind::TABLE.state_record();
    const SCHEMA: SchemaVersion = SchemaVersion::new(1);
    const SIZE: usize = 16;
    fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.cursor);
        w.u32(self.rounds);
        w.u32(self.crc);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(V1 {
            cursor: r.u64()?,
            rounds: r.u32()?,
            crc: r.u32()?,
        })
    }
}
