//! The update history: which images have run on this machine, in order, and how long
//! each swap stopped the machine. Each kernel appends its own entry after it resumes;
//! the oldest entries are dropped beyond [`MAX_ENTRIES`].

use super::{kinds, RecordKind, SchemaVersion, StateRecord};
use crate::wire::{Reader, WireError, Writer};

/// Entries kept.
pub const MAX_ENTRIES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1 {
    /// Which kernel (1 = first boot).
    pub boot_seq: u64,
    /// major, minor, patch.
    pub version: [u16; 3],
    /// GNU build id, zero-padded.
    pub build_id: [u8; 32],
    /// Label (NUL-padded UTF-8).
    pub label: [u8; 32],
    /// Nanoseconds since first boot when this kernel started.
    pub started_ns: u64,
    /// Downtime of the swap that started it (0 for the first boot).
    pub downtime_ns: u64,
    /// Mailbox request that asked for it (0 for the first boot).
    pub request_seq: u64,
}

impl StateRecord for V1 {
    const KIND: RecordKind = kinds::HISTORY;
    const SCHEMA: SchemaVersion = SchemaVersion::new(1);
    const SIZE: usize = 8 + 8 + 32 + 32 + 8 + 8 + 8;
    fn encode(&self, w: &mut Writer<'_>) {
        w.u64(self.boot_seq);
        for v in self.version {
            w.u16(v);
        }
        w.u16(0);
        w.bytes(&self.build_id);
        w.bytes(&self.label);
        w.u64(self.started_ns);
        w.u64(self.downtime_ns);
        w.u64(self.request_seq);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let boot_seq = r.u64()?;
        let version = [r.u16()?, r.u16()?, r.u16()?];
        r.skip(2)?;
        Ok(V1 {
            boot_seq,
            version,
            build_id: r.array()?,
            label: r.array()?,
            started_ns: r.u64()?,
            downtime_ns: r.u64()?,
            request_seq: r.u64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::testing::round_trip;

    #[test]
    fn round_trips() {
        round_trip(&V1 {
            boot_seq: 3,
            version: [2, 0, 1],
            build_id: [7; 32],
            label: [b'x'; 32],
            started_ns: 123,
            downtime_ns: 456,
            request_seq: 9,
        });
    }
}
