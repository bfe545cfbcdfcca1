//! The mailbox: how the host and the guest talk through QEMU `ivshmem-plain` shared
//! memory (BAR 2, 32 MiB by default, little-endian).
//!
//! | offset | size | writer | content | type |
//! | --- | --- | --- | --- | --- |
//! | [`STATUS_OFFSET`] `0x0000` | 4 KiB | guest | who is running and how it is doing | [`GuestStatus`] |
//! | [`REQUEST_OFFSET`] `0x1000` | 4 KiB | host | the current command | [`Request`] |
//! | [`RESPONSE_OFFSET`] `0x2000` | 4 KiB | guest | progress and result of that command | [`Response`] |
//! | [`REPORT_OFFSET`] `0x3000` | 1012 KiB | guest | the result's report, binary | [`report`] (feature `alloc`) |
//! | [`DATA_OFFSET`] `0x100000` | rest | host | package or patch bytes | [`crate::package`] |
//!
//! Every block is plain data with `encode`/`decode` at documented offsets, so the guest
//! (which copies MMIO bytes with volatile accesses into a local buffer and back) and the
//! host (which maps the file) run the same code. Nothing here touches shared memory
//! itself.
//!
//! # Ordering: a request or response is never read half-written
//!
//! The request and the response are each framed by two copies of their sequence number
//! and carry an FNV-1a checksum of their fields. The writer writes everything but the
//! last field, issues a release fence, then writes the last field (`seq_end` of a
//! request, `seq_commit` of a response) — [`SealedBlock`] gives the bytes and the offset
//! of that field, and [`SealedBlock::write_to`] does exactly this for the host. The reader
//! copies the block, and [`Request::decode`]/[`Response::decode`] call it
//! [`BlockRead::Torn`] unless both copies agree and the checksum matches: it then
//! retries later. A guest acts on a request only when it is `Valid` and its sequence
//! number is newer than the last one it handled.
//!
//! # One exchange
//!
//! 1. The host writes the payload at [`DATA_OFFSET`] (for `Stage`, `PatchApply`), then
//!    the request with a new `seq`, then rings the doorbell (one byte on the guest's
//!    COM2); the guest also polls every 10 ms.
//! 2. The guest answers with a response of the same `seq`: `InProgress` with progress
//!    counters while it works, then `Done` with a [`Status`], a message and, when
//!    there is one, a report written at [`REPORT_OFFSET`] *before* the response.
//! 3. The host waits for `Done` with its `seq`, then reads the report.

mod block;
mod guest;
mod request;
mod response;

#[cfg(feature = "alloc")]
pub mod report;

pub use block::{fnv1a64, BlockRead, SealedBlock};
pub use guest::{GuestState, GuestStatus};
pub use request::{Command, Request, RequestFlags, RequestRead};
pub use response::{Message, ReportKind, Response, ResponseRead, ResponseState, Status};

/// Magic at the start of the status block.
pub const MAGIC: [u8; 8] = *b"HKMBOX01";
/// The layout this module describes.
pub const LAYOUT_VERSION: u32 = 1;
/// The guest's status block.
pub const STATUS_OFFSET: usize = 0x0000;
/// The host's request block.
pub const REQUEST_OFFSET: usize = 0x1000;
/// The guest's response block.
pub const RESPONSE_OFFSET: usize = 0x2000;
/// The guest's report area.
pub const REPORT_OFFSET: usize = 0x3000;
/// Size of the report area.
pub const REPORT_CAPACITY: usize = DATA_OFFSET - REPORT_OFFSET;
/// The host's data area (package or patch bytes).
pub const DATA_OFFSET: usize = 0x10_0000;
/// Size of each of the status, request and response blocks.
pub const BLOCK_SIZE: usize = 0x1000;
/// Default size of the shared memory (`/dev/shm/hotkernel-<vm>`).
pub const DEFAULT_SHARED_SIZE: u64 = 32 << 20;

/// Bytes of the data area in shared memory of `shared_size` bytes.
pub const fn data_capacity(shared_size: u64) -> u64 {
    shared_size.saturating_sub(DATA_OFFSET as u64)
}
