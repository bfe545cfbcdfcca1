//! [`Request`]: the block at `0x1000` the host writes to give the guest a command.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | `0x00` | 8 | `seq_begin`: the request's sequence number (≥ 1, increasing) |
//! | `0x08` | 4 | command ([`Command`] code) |
//! | `0x0c` | 4 | flags ([`RequestFlags`]) |
//! | `0x10` | 8 | payload length: bytes at the data area (`Stage`, `PatchApply`) |
//! | `0x18` | 32 | 4 arguments, `u64` each (per command, see [`Command`]) |
//! | `0x38` | 8 | checksum: FNV-1a 64 of bytes `0x00..0x38` |
//! | `0x40` | 8 | `seq_end`: equal to `seq_begin`, written last |
//!
//! The host writes the whole block, a release fence, then `seq_end`
//! ([`Request::seal`] and [`SealedBlock::write_to`]). The guest copies the block
//! (reading `seq_end` first and `seq_begin` last) and decodes the copy.

use core::fmt;

use super::block::{fnv1a64, BlockRead, SealedBlock};
use crate::error::FormatError;
use crate::wire::{Fixed, Writer};

/// A command from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Command {
    /// Answer `Ok` with the running image in the message. No arguments.
    Ping = 1,
    /// Copy the package at the data area (payload length bytes) into the staging
    /// buffer while hashing it, verify it, answer with a stage report. With
    /// [`RequestFlags::APPLY_AFTER_STAGE`], go on to `Apply` if it verifies.
    Stage = 2,
    /// Swap to the staged image; the new kernel answers with a swap report (or the old
    /// one, after a rollback). Fault-injection flags apply. `args[0]`: the health
    /// window in milliseconds (0: the guest's default, 200 ms; no window with
    /// [`RequestFlags::NO_HEALTH_WINDOW`]); `Stage` with `APPLY_AFTER_STAGE` takes it too.
    Apply = 3,
    /// Answer with a snapshot report of every task.
    Snapshot = 4,
    /// Apply the patch at the data area (payload length bytes).
    PatchApply = 5,
    /// Remove patch `args[0]` (0: the most recent one).
    PatchRemove = 6,
    /// List the applied patches in the message.
    PatchList = 7,
    /// Forget the staged package, if any. No arguments.
    Reset = 8,
    /// Answer with `args[1]` bytes (at most
    /// [`MAX_IMAGE_READ`](super::report::MAX_IMAGE_READ)) of the running image from
    /// virtual address `args[0]`, as an image-bytes report. The range must lie inside
    /// the image's loaded span.
    ReadImage = 9,
}

impl Command {
    /// The stable code.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The command with `code`, if there is one.
    pub const fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            1 => Self::Ping,
            2 => Self::Stage,
            3 => Self::Apply,
            4 => Self::Snapshot,
            5 => Self::PatchApply,
            6 => Self::PatchRemove,
            7 => Self::PatchList,
            8 => Self::Reset,
            9 => Self::ReadImage,
            _ => return None,
        })
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ping => "ping",
            Self::Stage => "stage",
            Self::Apply => "apply",
            Self::Snapshot => "snapshot",
            Self::PatchApply => "patch-apply",
            Self::PatchRemove => "patch-remove",
            Self::PatchList => "patch-list",
            Self::Reset => "reset",
            Self::ReadImage => "read-image",
        })
    }
}

bitflags::bitflags! {
    /// Request flags: fault injection (tests of the failure paths) and options.
    /// A guest refuses a request with bits it does not know (`BadRequest`), so an
    /// injection is never silently ignored.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct RequestFlags: u32 {
        /// `Apply`: the new image's bootstrap reports a reconciliation failure, so the
        /// old kernel must roll back.
        const INJECT_RECONCILE_FAIL = 1 << 0;
        /// `Apply`: one application processor does not acknowledge the park IPI, so the
        /// quiesce must time out and the old kernel carry on.
        const INJECT_AP_NO_ACK = 1 << 1;
        /// `Apply`: fail right after the old kernel exported its records, so the
        /// rollback must restore from them.
        const INJECT_FAIL_AFTER_EXPORT = 1 << 2;
        /// `Stage`: fail once the package is staged (copied, verified, laid out): the
        /// staging is discarded and the old kernel carries on (`Status::Injected`).
        const INJECT_FAIL_AFTER_STAGE = 1 << 3;
        /// `Stage`: the pre-flight's dry run of the new bootstrap fails, so the answer
        /// predicts a refusal (the package stays staged).
        const INJECT_PREFLIGHT_FAIL = 1 << 4;
        /// `Apply`: the conversion of the record kind `args[1]` fails in the new image's
        /// bootstrap, so the old kernel must roll back.
        const INJECT_CONVERTER_FAIL = 1 << 5;
        /// `Apply`: the new kernel panics in its resume, after the overlay (the health
        /// window reverts the swap; a swap without one refuses this, `BadRequest`: the
        /// VM would be lost).
        const INJECT_FAIL_IN_RESUME = 1 << 6;
        /// `Apply`: the new kernel's first task step panics (its first scheduling
        /// round; the health window reverts the swap; refused without one, as above).
        const INJECT_FAIL_FIRST_ROUND = 1 << 7;
        /// `Stage`: go on to `Apply` (with the same flags) once the package verifies,
        /// saving a round trip.
        const APPLY_AFTER_STAGE = 1 << 8;
        /// `Apply`: the overlay copies every page of the new image, not only the pages
        /// that differ from the running one (to measure one against the other).
        const OVERLAY_FULL = 1 << 9;
        /// `Apply`: the overlay copies the new bytes over the old image's frames (the
        /// seed's literal method) instead of switching the image's page-table entries to
        /// the frames prepared at staging (the default).
        const OVERLAY_COPY = 1 << 10;
        /// `Apply`: no health window — the swap commits as soon as the new kernel runs,
        /// and the old image's frames are freed at once (the copy overlay needs it).
        const NO_HEALTH_WINDOW = 1 << 11;
        /// `Apply`, `Snapshot`, `PatchApply`, `PatchRemove` (tests of a request that
        /// comes while one's work waits for the bootstrap processor): the work waits
        /// until the guest has read the next request, instead of running at the BSP's
        /// next checkpoint.
        const HOLD_JOB = 1 << 12;
        /// `Apply` (a test of a park asked for at once after a swap): the new kernel
        /// parks the other CPUs once right after it releases them into itself, before
        /// it wakes them — as a snapshot or a hotpatch the new kernel's service takes at
        /// once would, while a CPU may still be leaving the park stub.
        const INJECT_PARK_IN_RESUME = 1 << 13;
    }
}

/// A command with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Sequence number: at least 1, larger than every earlier request's.
    pub seq: u64,
    /// What to do.
    pub command: Command,
    /// Fault injection and options.
    pub flags: RequestFlags,
    /// Bytes of payload at the data area.
    pub payload_len: u64,
    /// Per-command arguments (see [`Command`]).
    pub args: [u64; 4],
}

/// What the guest found in the request block.
pub type RequestRead = BlockRead<Request>;

const SEQ_BEGIN: usize = 0x00;
const COMMAND: usize = 0x08;
const FLAGS: usize = 0x0c;
const PAYLOAD_LEN: usize = 0x10;
const ARGS: usize = 0x18;
const CHECKSUM: usize = 0x38;
const SEQ_END: usize = 0x40;

impl Request {
    /// Encoded size.
    pub const SIZE: usize = 0x48;
    /// Offset of `seq_end`, the field written last.
    pub const SEQ_END_OFFSET: usize = SEQ_END;

    /// `command` as request `seq`, with no flags, payload or arguments.
    pub const fn new(seq: u64, command: Command) -> Self {
        Self {
            seq,
            command,
            flags: RequestFlags::empty(),
            payload_len: 0,
            args: [0; 4],
        }
    }

    /// The encoded block, with `seq_end` to be written last.
    pub fn seal(&self) -> SealedBlock<{ Request::SIZE }> {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer::new(&mut b);
        w.u64(self.seq);
        w.u32(self.command.code());
        w.u32(self.flags.bits());
        w.u64(self.payload_len);
        for a in self.args {
            w.u64(a);
        }
        let checksum = fnv1a64(b.get(..CHECKSUM).unwrap_or(&[]));
        let mut w = Writer::new(&mut b);
        w.seek(CHECKSUM);
        w.u64(checksum);
        w.u64(self.seq);
        SealedBlock::new(b, SEQ_END)
    }

    /// Writes the request into the request block of the host's mapping: everything,
    /// a release fence, then `seq_end`.
    pub fn encode_into(&self, block: &mut [u8]) -> crate::Result<()> {
        self.seal().write_to(block)
    }

    /// Reads a copy of the request block.
    pub fn decode(bytes: &[u8]) -> RequestRead {
        let Ok(f) = Fixed::new(bytes, Self::SIZE, "mailbox request") else {
            return BlockRead::Torn;
        };
        let (seq, seq_end) = (f.u64(SEQ_BEGIN), f.u64(SEQ_END));
        if seq == 0 && seq_end == 0 {
            return BlockRead::Empty;
        }
        let fields = f.bytes().get(..CHECKSUM).unwrap_or(&[]);
        if seq != seq_end || f.u64(CHECKSUM) != fnv1a64(fields) {
            return BlockRead::Torn;
        }
        let invalid = |field, value, reason| BlockRead::Invalid {
            seq,
            error: FormatError::InvalidField {
                field,
                value,
                reason,
            },
        };
        let code = f.u32(COMMAND);
        let Some(command) = Command::from_code(code) else {
            return invalid("command", u64::from(code), "unknown command code");
        };
        let raw_flags = f.u32(FLAGS);
        let Some(flags) = RequestFlags::from_bits(raw_flags) else {
            return invalid("request flags", u64::from(raw_flags), "unknown flag bits");
        };
        let mut args = [0u64; 4];
        for (i, a) in args.iter_mut().enumerate() {
            *a = f.u64(ARGS.saturating_add(i.saturating_mul(8)));
        }
        BlockRead::Valid(Self {
            seq,
            command,
            flags,
            payload_len: f.u64(PAYLOAD_LEN),
            args,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Request {
        Request {
            seq: 42,
            command: Command::Stage,
            flags: RequestFlags::APPLY_AFTER_STAGE | RequestFlags::INJECT_AP_NO_ACK,
            payload_len: 123_456,
            args: [1, 2, 3, u64::MAX],
        }
    }

    #[test]
    fn round_trips() {
        let mut shared = [0u8; 4096];
        sample().encode_into(&mut shared).unwrap();
        assert_eq!(Request::decode(&shared), BlockRead::Valid(sample()));
        assert_eq!(shared[0x40], 42);
        assert_eq!(&shared[..Request::SIZE], sample().seal().bytes());
    }

    #[test]
    fn empty_and_torn_blocks() {
        assert_eq!(Request::decode(&[0u8; 4096]), BlockRead::Empty);
        assert_eq!(Request::decode(&[0u8; 10]), BlockRead::Torn);
        // The host has written the body of request 43 but not yet its seq_end.
        let mut shared = [0u8; 4096];
        sample().encode_into(&mut shared).unwrap();
        let next = Request {
            seq: 43,
            ..sample()
        }
        .seal();
        shared[..Request::SEQ_END_OFFSET].copy_from_slice(next.body());
        assert_eq!(Request::decode(&shared), BlockRead::Torn);
        shared[Request::SEQ_END_OFFSET..Request::SIZE].copy_from_slice(next.commit());
        assert!(matches!(Request::decode(&shared), BlockRead::Valid(r) if r.seq == 43));
        // A damaged field with matching seqs fails the checksum.
        shared[0x20] ^= 1;
        assert_eq!(Request::decode(&shared), BlockRead::Torn);
    }

    #[test]
    fn unknown_codes_are_invalid_not_torn() {
        let mut b = *sample().seal().bytes();
        b[COMMAND] = 99;
        let sum = fnv1a64(&b[..CHECKSUM]).to_le_bytes();
        b[CHECKSUM..CHECKSUM + 8].copy_from_slice(&sum);
        assert!(matches!(
            Request::decode(&b),
            BlockRead::Invalid {
                seq: 42,
                error: FormatError::InvalidField {
                    field: "command",
                    value: 99,
                    ..
                }
            }
        ));
        let mut b = *sample().seal().bytes();
        b[FLAGS + 3] = 0x80;
        let sum = fnv1a64(&b[..CHECKSUM]).to_le_bytes();
        b[CHECKSUM..CHECKSUM + 8].copy_from_slice(&sum);
        assert!(matches!(
            Request::decode(&b),
            BlockRead::Invalid { seq: 42, .. }
        ));
    }

    proptest! {
        #[test]
        fn any_request_round_trips(seq in 1u64.., code in 1u32..=8, flags in any::<u32>(), len in any::<u64>(), args in any::<[u64; 4]>()) {
            let r = Request {
                seq,
                command: Command::from_code(code).unwrap(),
                flags: RequestFlags::from_bits_truncate(flags),
                payload_len: len,
                args,
            };
            prop_assert_eq!(Request::decode(r.seal().bytes()), BlockRead::Valid(r));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Request::decode(&bytes);
        }
    }
}
