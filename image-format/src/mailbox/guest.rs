//! [`GuestStatus`]: the block at `0x0000` the guest keeps up to date — which image runs,
//! in which state, on how many CPUs, and a heartbeat.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | `0x00` | 8 | magic `HKMBOX01` |
//! | `0x08` | 4 | layout version (1) |
//! | `0x0c` | 4 | state ([`GuestState`] code) |
//! | `0x10` | 8 | boot sequence: 1 at cold boot, +1 at every swap |
//! | `0x18` | 8 | heartbeat: incremented by the guest about every 10 ms |
//! | `0x20` | 4 | CPUs online |
//! | `0x24` | 4 | tasks |
//! | `0x28` | 88 | running image: version, build id, label ([`ImageSummary`]) |
//! | `0x80` | 8 | staging capacity (bytes) |
//! | `0x88` | 8 | data capacity (bytes) |
//!
//! The fields are independent, so the block has no sequence framing: the guest rewrites
//! it whole at boot, resume and state changes, and otherwise only stores the heartbeat
//! ([`GuestStatus::HEARTBEAT_OFFSET`], one aligned 8-byte store). A host that reads it
//! mid-rewrite may see old and new fields mixed; it reads again on the next poll.

use core::fmt;

use super::{LAYOUT_VERSION, MAGIC};
use crate::error::{FormatError, Result};
use crate::identity::ImageSummary;
use crate::wire::{Reader, Writer};

/// What the guest is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum GuestState {
    /// Starting: the mailbox is mapped but tasks do not run yet.
    Booting = 1,
    /// Running tasks and serving the mailbox.
    Running = 2,
    /// Copying and verifying a package.
    Staging = 3,
    /// In a live swap (quiesce to resume).
    Swapping = 4,
    /// Applying or removing a hotpatch.
    Patching = 5,
    /// Stopped (after a self-test, a panic, or a fatal error).
    Halted = 6,
}

impl GuestState {
    /// The stable code.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The state with `code`, if there is one.
    pub const fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => Self::Booting,
            2 => Self::Running,
            3 => Self::Staging,
            4 => Self::Swapping,
            5 => Self::Patching,
            6 => Self::Halted,
            _ => return None,
        })
    }
}

impl fmt::Display for GuestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Booting => "booting",
            Self::Running => "running",
            Self::Staging => "staging",
            Self::Swapping => "swapping",
            Self::Patching => "patching",
            Self::Halted => "halted",
        })
    }
}

/// The guest's status block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestStatus {
    /// 1 at cold boot, incremented by every swap.
    pub boot_seq: u64,
    /// Incremented about every 10 ms while the guest schedules.
    pub heartbeat: u64,
    /// What the guest is doing.
    pub state: GuestState,
    /// CPUs scheduling tasks.
    pub cpus_online: u32,
    /// Tasks in the task table.
    pub tasks: u32,
    /// The running image.
    pub image: ImageSummary,
    /// Size of the staging buffer: the largest package the guest accepts.
    pub staging_capacity: u64,
    /// Size of the data area the guest sees.
    pub data_capacity: u64,
    /// Free physical memory, in 4 KiB frames (constant across swaps: nothing leaks).
    pub free_frames: u64,
    /// Hotpatches applied to the running image.
    pub patches: u32,
}

impl GuestStatus {
    /// Encoded size.
    pub const SIZE: usize = 0xa0;
    /// Offset of the heartbeat, for the guest's single-field update.
    pub const HEARTBEAT_OFFSET: usize = 0x18;

    /// Writes the block into `out` (at least [`SIZE`](Self::SIZE) bytes).
    pub fn encode(&self, out: &mut [u8]) -> Result<usize> {
        let mut w = Writer::new(out);
        w.put(&MAGIC);
        w.u32(LAYOUT_VERSION);
        w.u32(self.state.code());
        w.u64(self.boot_seq);
        w.u64(self.heartbeat);
        w.u32(self.cpus_online);
        w.u32(self.tasks);
        self.image.write(&mut w);
        w.u64(self.staging_capacity);
        w.u64(self.data_capacity);
        w.u64(self.free_frames);
        w.u32(self.patches);
        w.u32(0);
        w.finish("mailbox status")
    }

    /// Reads a status block. A wrong magic means no guest has written it yet.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "mailbox status";
        let mut r = Reader::new(bytes, WHAT);
        let magic = r.array()?;
        if magic != MAGIC {
            return Err(FormatError::BadMagic {
                what: WHAT,
                expected: MAGIC,
                found: magic,
            });
        }
        let version = r.u32()?;
        if version != LAYOUT_VERSION {
            return Err(FormatError::UnsupportedVersion {
                what: "mailbox layout",
                found: version,
                supported: LAYOUT_VERSION,
            });
        }
        let code = r.u32()?;
        let state = GuestState::from_code(code).ok_or(FormatError::InvalidField {
            field: "guest state",
            value: u64::from(code),
            reason: "unknown state code",
        })?;
        Ok(Self {
            state,
            boot_seq: r.u64()?,
            heartbeat: r.u64()?,
            cpus_online: r.u32()?,
            tasks: r.u32()?,
            image: ImageSummary::read(&mut r)?,
            staging_capacity: r.u64()?,
            data_capacity: r.u64()?,
            free_frames: r.u64()?,
            patches: {
                let p = r.u32()?;
                r.u32()?;
                p
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuildId, ImageVersion, Label};
    use std::string::ToString;

    fn sample() -> GuestStatus {
        GuestStatus {
            free_frames: 1000,
            patches: 1,
            boot_seq: 3,
            heartbeat: 12345,
            state: GuestState::Running,
            cpus_online: 4,
            tasks: 9,
            image: ImageSummary {
                version: ImageVersion::new(2, 0, 0),
                build_id: BuildId::new(&[7; 20]),
                label: Label::new("v2"),
            },
            staging_capacity: 16 << 20,
            data_capacity: 31 << 20,
        }
    }

    #[test]
    fn round_trips_at_the_documented_offsets() {
        let mut block = [0u8; 4096];
        assert_eq!(sample().encode(&mut block), Ok(GuestStatus::SIZE));
        assert_eq!(&block[..8], b"HKMBOX01");
        assert_eq!(
            block[GuestStatus::HEARTBEAT_OFFSET],
            (12345u64 & 0xff) as u8
        );
        assert_eq!(&block[0x28..0x2e], &ImageVersion::new(2, 0, 0).to_bytes());
        assert_eq!(block[0x80..0x88], (16u64 << 20).to_le_bytes());
        assert_eq!(GuestStatus::decode(&block), Ok(sample()));
    }

    #[test]
    fn an_unwritten_block_is_a_bad_magic() {
        let e = GuestStatus::decode(&[0u8; 4096]).unwrap_err();
        assert!(matches!(e, FormatError::BadMagic { .. }));
        let mut block = [0u8; 256];
        sample().encode(&mut block).unwrap();
        block[0x0c] = 99;
        assert!(GuestStatus::decode(&block).is_err());
        assert!(GuestStatus::decode(&block[..0x40]).is_err());
        assert!(sample().encode(&mut [0u8; 0x40]).is_err());
        assert_eq!(GuestState::Swapping.to_string(), "swapping");
    }
}
