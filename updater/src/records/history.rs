//! The update history: one entry per kernel that has run on the machine, oldest first,
//! with the downtime of the swap that started it. It crosses every swap.

use super::kinds;

/// Most entries kept (the oldest are dropped first).
pub const MAX_ENTRIES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, crate::Record)]
#[record(kind = kinds::HISTORY, version = 1)]
#[repr(C)]
pub struct V1 {
    pub boot_seq: u64,
    pub started_ns: u64,
    pub downtime_ns: u64,
    pub request_seq: u64,
    pub build_id: [u8; 32],
    pub label: [u8; 32],
    pub version: [u16; 3],
    pub reserved: u16,
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
            reserved: 0,
        });
    }
}
