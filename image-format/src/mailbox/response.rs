//! [`Response`]: the block at `0x2000` the guest writes to answer a request.
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | `0x000` | 8 | `seq`: the request answered |
//! | `0x008` | 4 | state ([`ResponseState`] code) |
//! | `0x00c` | 4 | status ([`Status`] code) |
//! | `0x010` | 8 | progress done (e.g. bytes staged) |
//! | `0x018` | 8 | progress total |
//! | `0x020` | 4 | report kind ([`ReportKind`] code; 0: none) |
//! | `0x024` | 4 | report length in bytes, at the report area |
//! | `0x028` | 2 | message length (≤ 256) |
//! | `0x02a` | 6 | reserved, zero |
//! | `0x030` | 256 | message, UTF-8, zero padded |
//! | `0x130` | 8 | checksum: FNV-1a 64 of bytes `0x000..0x130` |
//! | `0x138` | 8 | `seq_commit`: equal to `seq`, written last |
//!
//! The guest rewrites the block for every progress update of the same request; the
//! checksum is what tells the host a read caught it mid-write.

use core::fmt;

use super::block::{fnv1a64, BlockRead, SealedBlock};
use crate::error::FormatError;
use crate::wire::{Fixed, Writer};

/// Up to 256 bytes of UTF-8 for a person to read.
pub type Message = heapless::String<256>;

/// Whether the guest is still working on the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ResponseState {
    /// Working; progress counters move.
    InProgress = 1,
    /// Finished; status, message and report are final.
    Done = 2,
}

/// The report that comes with a response (see [`crate::mailbox::report`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ReportKind {
    /// No report.
    None = 0,
    /// Every task's state ([`Command::Snapshot`](super::Command::Snapshot)).
    Snapshot = 1,
    /// The result of staging a package.
    Stage = 2,
    /// The result of a swap, applied or rolled back.
    Swap = 3,
    /// The result of a hotpatch apply or remove.
    Patch = 4,
    /// The applied hotpatches.
    PatchList = 5,
    /// Bytes of the running image ([`Command::ReadImage`](super::Command::ReadImage)).
    ImageBytes = 6,
}

impl ReportKind {
    /// The stable code.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The kind with `code`, if there is one.
    pub const fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Self::None,
            1 => Self::Snapshot,
            2 => Self::Stage,
            3 => Self::Swap,
            4 => Self::Patch,
            5 => Self::PatchList,
            6 => Self::ImageBytes,
            _ => return None,
        })
    }
}

macro_rules! status_codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal => $text:literal,)*) => {
        /// The outcome of a request, as a stable reason code. `Display` says what it means.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum Status {
            $($(#[$doc])* $name = $code,)*
        }

        impl Status {
            /// The status with `code`, if there is one.
            pub const fn from_code(code: u32) -> Option<Self> {
                match code {
                    $($code => Some(Self::$name),)*
                    _ => None,
                }
            }
        }

        impl fmt::Display for Status {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $(Self::$name => $text,)*
                })
            }
        }
    };
}

status_codes! {
    /// Done, successfully.
    Ok = 0 => "ok",
    /// Accepted; the work goes on (with `InProgress`).
    Accepted = 1 => "accepted, in progress",
    /// The data is not a hotkernel package.
    BadMagic = 2 => "not a hotkernel package (bad magic)",
    /// The package format version is not one this kernel reads.
    UnsupportedFormat = 3 => "package format version not supported by the running kernel",
    /// The package is shorter than it says.
    Truncated = 4 => "package truncated",
    /// The package header is damaged.
    HeaderDigest = 5 => "package header digest mismatch (damaged header)",
    /// The package payload is damaged.
    PayloadDigest = 6 => "package payload digest mismatch (damaged payload)",
    /// The package does not fit the staging buffer.
    TooLarge = 7 => "package larger than the staging buffer",
    /// The new image may not replace the running version.
    Incompatible = 8 => "the new image may not replace the running version",
    /// A record the running kernel exports cannot be converted to what the new image reads.
    SchemaUnconvertible = 9 => "a state record cannot be converted to the new image's schema",
    /// The new image requires a capability the running kernel lacks.
    CapabilityMissing = 10 => "the new image requires a capability the running kernel lacks",
    /// `Apply` without a staged package.
    NotStaged = 11 => "no package is staged",
    /// Another request is being served.
    Busy = 12 => "busy with another request",
    /// The swap failed and the old kernel carries on, unchanged.
    RolledBack = 13 => "the swap failed and was rolled back; the old kernel runs on",
    /// An application processor did not park in time; nothing changed.
    QuiesceTimeout = 14 => "a CPU did not park in time; the swap was abandoned",
    /// A hotpatch apply or remove was refused (the reason says why).
    PatchRefused = 15 => "the patch operation was refused; the running image is unchanged",
    /// The request is not understood (unknown command or flags, bad arguments).
    BadRequest = 16 => "bad request (unknown command, flag or argument)",
    /// A bug in the guest.
    Internal = 17 => "internal error in the guest",
    /// The package is malformed (a field or table breaks the format's rules).
    Malformed = 18 => "malformed package",
    /// A record's layout changed while its schema version did not (the layout guard).
    LayoutUnbumped = 19 => "a record's layout changed without a new schema version",
    /// The new image's address map cannot take over the running one's (a region moved,
    /// a fixed one changed size, or one is missing), or its memory could not be mapped.
    RegionMismatch = 20 => "the new image's address map does not fit the running kernel's",
    /// The new kernel failed inside its health window; the old kernel runs again.
    Reverted = 21 => "the new code failed its health check; the swap or patch was taken back",
    /// The package or patch carries no signature trailer.
    Unsigned = 22 => "the package or patch is not signed",
    /// Signed by a key the running kernel does not trust.
    UntrustedKey = 23 => "signed by a key the running kernel does not trust",
    /// The signature does not verify against the header digest (made over another
    /// header, or damaged).
    BadSignature = 24 => "the signature does not verify against this header",
    /// The signature trailer is cut short, or breaks the trailer's rules.
    SignatureTruncated = 25 => "the signature trailer is truncated or malformed",
    /// The security version is below the highest that ever ran in this VM.
    SvnRollback = 26 => "the security version is lower than one that already ran (anti-rollback)",
    /// A test's injected fault stopped the request; nothing changed.
    Injected = 27 => "an injected fault stopped the request; the running kernel is unchanged",
}

impl Status {
    /// The stable code.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The status of a refused signature.
    pub const fn from_signature(error: &crate::signature::SignatureError) -> Self {
        use crate::signature::SignatureError as E;
        match error {
            E::Unsigned => Self::Unsigned,
            E::Truncated { .. } | E::Malformed { .. } => Self::SignatureTruncated,
            E::Untrusted { .. } => Self::UntrustedKey,
            E::Mismatch { .. } => Self::BadSignature,
        }
    }

    /// True for every status that reports a failure.
    pub const fn is_error(self) -> bool {
        !matches!(self, Self::Ok | Self::Accepted)
    }

    /// The status a guest answers when a package fails to parse with `error`.
    pub const fn from_error(error: &FormatError) -> Self {
        match error {
            FormatError::BadMagic { .. } => Self::BadMagic,
            FormatError::UnsupportedVersion { .. } => Self::UnsupportedFormat,
            FormatError::Truncated { .. } => Self::Truncated,
            FormatError::HeaderDigest { .. } => Self::HeaderDigest,
            FormatError::PayloadDigest { .. } => Self::PayloadDigest,
            FormatError::TooLarge { .. } => Self::TooLarge,
            _ => Self::Malformed,
        }
    }
}

/// The guest's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request answered.
    pub seq: u64,
    /// Working or done.
    pub state: ResponseState,
    /// The outcome (`Accepted` while in progress).
    pub status: Status,
    /// Units done (bytes staged, CPUs parked, …).
    pub progress_done: u64,
    /// Units in all.
    pub progress_total: u64,
    /// Text for a person: what happened, or why not.
    pub message: Message,
    /// The report written at the report area, if any.
    pub report_kind: ReportKind,
    /// Its length in bytes.
    pub report_len: u32,
}

/// What the host found in the response block.
pub type ResponseRead = BlockRead<Response>;

const SEQ: usize = 0x000;
const STATE: usize = 0x008;
const STATUS: usize = 0x00c;
const PROGRESS_DONE: usize = 0x010;
const PROGRESS_TOTAL: usize = 0x018;
const REPORT_KIND: usize = 0x020;
const REPORT_LEN: usize = 0x024;
const MESSAGE_LEN: usize = 0x028;
const RESERVED: usize = 0x02a;
const MESSAGE: usize = 0x030;
const CHECKSUM: usize = 0x130;
const SEQ_COMMIT: usize = 0x138;

impl Response {
    /// Encoded size.
    pub const SIZE: usize = 0x140;
    /// Offset of `seq_commit`, the field written last.
    pub const SEQ_COMMIT_OFFSET: usize = SEQ_COMMIT;

    /// A response to `seq` with no progress, message or report.
    pub fn new(seq: u64, state: ResponseState, status: Status) -> Self {
        Self {
            seq,
            state,
            status,
            progress_done: 0,
            progress_total: 0,
            message: Message::new(),
            report_kind: ReportKind::None,
            report_len: 0,
        }
    }

    /// Replaces the message with `args`, cut at 256 bytes (on a character boundary).
    pub fn set_message(&mut self, args: fmt::Arguments<'_>) {
        self.message.clear();
        let _ = fmt::write(&mut Truncating(&mut self.message), args);
    }

    /// The encoded block, with `seq_commit` to be written last.
    pub fn seal(&self) -> SealedBlock<{ Response::SIZE }> {
        let mut b = [0u8; Self::SIZE];
        let mut w = Writer::new(&mut b);
        w.u64(self.seq);
        w.u32(self.state as u32);
        w.u32(self.status.code());
        w.u64(self.progress_done);
        w.u64(self.progress_total);
        w.u32(self.report_kind.code());
        w.u32(self.report_len);
        w.u16(self.message.len() as u16);
        w.seek(MESSAGE);
        w.put(self.message.as_bytes());
        let checksum = fnv1a64(b.get(..CHECKSUM).unwrap_or(&[]));
        let mut w = Writer::new(&mut b);
        w.seek(CHECKSUM);
        w.u64(checksum);
        w.u64(self.seq);
        SealedBlock::new(b, SEQ_COMMIT)
    }

    /// Reads a copy of the response block.
    pub fn decode(bytes: &[u8]) -> ResponseRead {
        let Ok(f) = Fixed::new(bytes, Self::SIZE, "mailbox response") else {
            return BlockRead::Torn;
        };
        let (seq, seq_commit) = (f.u64(SEQ), f.u64(SEQ_COMMIT));
        if seq == 0 && seq_commit == 0 {
            return BlockRead::Empty;
        }
        let fields = f.bytes().get(..CHECKSUM).unwrap_or(&[]);
        if seq != seq_commit || f.u64(CHECKSUM) != fnv1a64(fields) {
            return BlockRead::Torn;
        }
        match Self::fields(seq, &f) {
            Ok(r) => BlockRead::Valid(r),
            Err(error) => BlockRead::Invalid { seq, error },
        }
    }

    fn fields(seq: u64, f: &Fixed<'_>) -> crate::Result<Self> {
        let invalid = |field, value: u32, reason| FormatError::InvalidField {
            field,
            value: u64::from(value),
            reason,
        };
        let state = match f.u32(STATE) {
            1 => ResponseState::InProgress,
            2 => ResponseState::Done,
            other => return Err(invalid("response state", other, "unknown state code")),
        };
        let code = f.u32(STATUS);
        let status =
            Status::from_code(code).ok_or(invalid("status", code, "unknown status code"))?;
        let code = f.u32(REPORT_KIND);
        let report_kind = ReportKind::from_code(code).ok_or(invalid(
            "report kind",
            code,
            "unknown report kind",
        ))?;
        if !f.is_zero(RESERVED, MESSAGE - RESERVED) {
            return Err(invalid("response reserved bytes", 0, "must be zero"));
        }
        let len = f.u16(MESSAGE_LEN);
        let text = f
            .bytes()
            .get(MESSAGE..MESSAGE.saturating_add(usize::from(len)))
            .filter(|_| usize::from(len) <= 256)
            .ok_or(invalid(
                "message length",
                u32::from(len),
                "more than 256 bytes",
            ))?;
        let text = core::str::from_utf8(text).map_err(|e| FormatError::InvalidField {
            field: "message byte",
            value: e.valid_up_to() as u64,
            reason: "is not valid UTF-8",
        })?;
        let mut message = Message::new();
        let _ = message.push_str(text);
        Ok(Self {
            seq,
            state,
            status,
            progress_done: f.u64(PROGRESS_DONE),
            progress_total: f.u64(PROGRESS_TOTAL),
            message,
            report_kind,
            report_len: f.u32(REPORT_LEN),
        })
    }
}

/// A `fmt::Write` that drops what does not fit, keeping whole characters.
struct Truncating<'a>(&'a mut Message);

impl fmt::Write for Truncating<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.0.push(c).is_err() {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::string::ToString;

    fn sample() -> Response {
        let mut r = Response::new(7, ResponseState::Done, Status::RolledBack);
        r.progress_done = 3;
        r.progress_total = 4;
        r.report_kind = ReportKind::Swap;
        r.report_len = 900;
        r.set_message(format_args!("reconcile failed: {}", "injected"));
        r
    }

    #[test]
    fn round_trips() {
        let sealed = sample().seal();
        assert_eq!(Response::decode(sealed.bytes()), BlockRead::Valid(sample()));
        assert_eq!(sealed.commit_offset(), 0x138);
        assert_eq!(&sealed.bytes()[MESSAGE..MESSAGE + 9], b"reconcile");
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let mut r = sample();
        let long = "é".repeat(200);
        r.set_message(format_args!("{long}"));
        assert_eq!(r.message.len(), 256);
        assert!(matches!(Response::decode(r.seal().bytes()), BlockRead::Valid(d) if d == r));
    }

    #[test]
    fn torn_and_invalid() {
        assert_eq!(Response::decode(&[0u8; 512]), BlockRead::Empty);
        let mut b = *sample().seal().bytes();
        b[PROGRESS_DONE] = 9; // a newer progress update half written
        assert_eq!(Response::decode(&b), BlockRead::Torn);
        let mut b = *sample().seal().bytes();
        b[STATUS] = 200;
        let sum = fnv1a64(&b[..CHECKSUM]).to_le_bytes();
        b[CHECKSUM..CHECKSUM + 8].copy_from_slice(&sum);
        assert!(matches!(
            Response::decode(&b),
            BlockRead::Invalid { seq: 7, .. }
        ));
    }

    #[test]
    fn statuses_have_stable_codes_and_meanings() {
        for code in 0..=27 {
            let s = Status::from_code(code).unwrap();
            assert_eq!(s.code(), code);
            assert!(!s.to_string().is_empty());
        }
        assert_eq!(Status::from_code(28), None);
        assert_eq!(Status::PayloadDigest.code(), 6);
        assert_eq!(Status::SvnRollback.code(), 26);
        assert!(!Status::Ok.is_error() && Status::Busy.is_error());
        let e = FormatError::PayloadDigest {
            stored: [0; 32],
            computed: [1; 32],
        };
        assert_eq!(Status::from_error(&e), Status::PayloadDigest);
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Response::decode(&bytes);
        }

        #[test]
        fn any_response_round_trips(seq in 1u64.., status in 0u32..=21, done in any::<u64>(), text in "\\PC{0,100}") {
            let mut r = Response::new(seq, ResponseState::InProgress, Status::from_code(status).unwrap());
            r.progress_done = done;
            r.set_message(format_args!("{text}"));
            prop_assert_eq!(Response::decode(r.seal().bytes()), BlockRead::Valid(r));
        }
    }
}
