//! The update history: one entry per kernel that has run on the machine, oldest first,
//! with the downtime of the swap that started it. It crosses every swap.
//!
//! Version 2 adds each kernel's security version and `svn_floor`, the highest security
//! version that ran in the VM up to and including that entry: the last entry's floor is
//! what a package or patch's SVN is compared with (anti-rollback). It survives the
//! dropping of the oldest entries because every entry carries it. From version 1 both
//! read as 0 (converted by field), which refuses nothing.

use super::kinds;

/// Most entries kept (the oldest are dropped first).
pub const MAX_ENTRIES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, crate::Record)]
#[record(kind = kinds::HISTORY, version = 2)]
#[repr(C)]
pub struct V2 {
    pub boot_seq: u64,
    pub started_ns: u64,
    pub downtime_ns: u64,
    pub request_seq: u64,
    pub build_id: [u8; 32],
    pub label: [u8; 32],
    pub version: [u16; 3],
    pub reserved: u16,
    /// This kernel's security version.
    pub svn: u32,
    /// The highest security version that ran in the VM, this kernel included.
    pub svn_floor: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::testing::round_trip;

    #[test]
    fn round_trips() {
        round_trip(&V2 {
            boot_seq: 3,
            version: [2, 0, 1],
            build_id: [7; 32],
            label: [b'x'; 32],
            started_ns: 123,
            downtime_ns: 456,
            request_seq: 9,
            reserved: 0,
            svn: 2,
            svn_floor: 3,
        });
    }
}
