//! The mailbox device: QEMU `ivshmem-plain` (vendor 0x1af4, device 0x1110), whose BAR 2
//! is memory shared with the host. This module finds and maps it and is the only code
//! that touches it; the protocol on top is in `update::requests`.
//!
//! The host may write the request block and the data area at any moment, so no
//! reference into the BAR ever leaves this module: every access is a volatile copy
//! between the BAR and the guest's own memory ([`SharedMemory`]).

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};

use image_format::mailbox::report::Report;
use image_format::mailbox::{
    data_capacity, GuestStatus, Request, RequestRead, Response, BLOCK_SIZE, DATA_OFFSET,
    REPORT_CAPACITY, REPORT_OFFSET, REQUEST_OFFSET, RESPONSE_OFFSET, STATUS_OFFSET,
};
use image_format::FormatError;

use crate::drivers::pci;
use crate::machine;
use crate::memory::paging::MapError;

const VENDOR: u16 = 0x1af4;
const DEVICE: u16 = 0x1110;

/// The mapped shared memory.
///
/// Invariant: `virt..virt + len` is the ivshmem BAR, mapped (cacheable: it is RAM on
/// the host side) for the kernel's life, and `len` is a multiple of 8 at least the
/// protocol's fixed blocks.
#[derive(Debug, Clone, Copy)]
pub struct SharedMemory {
    virt: u64,
    len: u64,
}

/// A range outside the data area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfRange {
    pub offset: u64,
    pub len: u64,
    pub capacity: u64,
}

impl core::fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} bytes at {} exceed the mailbox data area ({} bytes)",
            self.len, self.offset, self.capacity
        )
    }
}

/// Why bytes of the data area could not be copied into the kernel's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyError {
    /// The range lies outside the data area.
    OutOfRange(OutOfRange),
    /// The kernel heap has no room for a copy of this many bytes.
    NoMemory { len: u64 },
}

impl core::fmt::Display for CopyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfRange(e) => e.fmt(f),
            Self::NoMemory { len } => write!(
                f,
                "{len} bytes do not fit the kernel heap: send a payload length that is the size of the patch"
            ),
        }
    }
}

static SHARED: spin::Once<SharedMemory> = spin::Once::new();

/// The mailbox's shared memory, once discovered or adopted.
pub fn shared() -> Option<SharedMemory> {
    SHARED.get().copied()
}

/// Finds the ivshmem device and maps its shared memory; `None` if the VM has none.
pub fn discover() -> Result<Option<SharedMemory>, MapError> {
    let Some(f) = pci::scan()
        .into_iter()
        .find(|f| f.vendor == VENDOR && f.device == DEVICE)
    else {
        return Ok(None);
    };
    let Some((phys, len)) = pci::memory_bar(f.address, 2) else {
        log::warn!("ivshmem at {} has no memory BAR 2", f.address);
        return Ok(None);
    };
    let virt = machine::map_shared(phys, len)?;
    log::info!(
        "mailbox: ivshmem at {}, {} MiB shared at {phys:#x}",
        f.address,
        len >> 20
    );
    Ok(Some(*SHARED.call_once(|| SharedMemory { virt, len })))
}

/// After a swap: the mapping the previous kernel made, from the machine record.
pub fn adopt() -> Option<SharedMemory> {
    let bar = machine::record().mailbox;
    (bar.len != 0).then(|| {
        *SHARED.call_once(|| SharedMemory {
            virt: bar.virt,
            len: bar.len,
        })
    })
}

/// The protocol's blocks, as this guest reads and writes them (layout and framing in
/// `image_format::mailbox`). The host writes the request block and the data area; the
/// guest writes the status, response and report blocks.
impl SharedMemory {
    /// Copies `dst.len()` bytes from `offset` of the BAR.
    ///
    /// # Panics
    /// If the range is outside the BAR (the offsets are the protocol's constants and
    /// checked lengths).
    fn copy_out(&self, offset: usize, dst: &mut [u8]) {
        assert!(
            offset as u64 + dst.len() as u64 <= self.len,
            "mailbox read out of range"
        );
        let src = (self.virt + offset as u64) as *const u8;
        let words = dst.len() / 8;
        let aligned = offset.is_multiple_of(8);
        for (i, chunk) in dst.chunks_mut(8).enumerate() {
            if aligned && i < words {
                // SAFETY: inside the mapped BAR (checked above, invariant), 8-byte
                // aligned; a volatile load, since the host writes this memory.
                let w = unsafe { core::ptr::read_volatile(src.add(i * 8) as *const u64) };
                chunk.copy_from_slice(&w.to_le_bytes());
            } else {
                for (j, b) in chunk.iter_mut().enumerate() {
                    // SAFETY: as above, one byte.
                    *b = unsafe { core::ptr::read_volatile(src.add(i * 8 + j)) };
                }
            }
        }
    }

    /// Copies `src` to `offset` of the BAR.
    ///
    /// # Panics
    /// If the range is outside the BAR.
    fn copy_in(&self, offset: usize, src: &[u8]) {
        assert!(
            offset as u64 + src.len() as u64 <= self.len,
            "mailbox write out of range"
        );
        let dst = (self.virt + offset as u64) as *mut u8;
        for (i, b) in src.iter().enumerate() {
            // SAFETY: inside the mapped BAR (checked above, invariant); the guest owns
            // the blocks it writes (status, response, report).
            unsafe { core::ptr::write_volatile(dst.add(i), *b) };
        }
    }

    /// The current request block, read once.
    pub fn read_request(&self) -> RequestRead {
        let mut buf = [0u8; Request::SIZE];
        self.copy_out(REQUEST_OFFSET, &mut buf);
        Request::decode(&buf)
    }

    /// Writes a response: body, fence, then the commit field.
    pub fn respond(&self, response: &Response) {
        let sealed = response.seal();
        self.copy_in(RESPONSE_OFFSET, sealed.body());
        fence(Ordering::Release);
        self.copy_in(RESPONSE_OFFSET + sealed.commit_offset(), sealed.commit());
    }

    /// Writes a report into the report area; returns its length.
    pub fn write_report(&self, report: &Report) -> Result<u32, FormatError> {
        let mut buf = vec![0u8; REPORT_CAPACITY];
        let len = report.encode(&mut buf)?;
        self.copy_in(REPORT_OFFSET, &buf[..len]);
        Ok(len as u32)
    }

    /// Writes the status block.
    pub fn write_status(&self, status: &GuestStatus) {
        let mut buf = [0u8; BLOCK_SIZE];
        match status.encode(&mut buf) {
            Ok(len) => self.copy_in(STATUS_OFFSET, &buf[..len]),
            Err(e) => log::error!("mailbox status not written: {e}"),
        }
    }

    /// Copies `dst.len()` bytes from `offset` of the data area (package or patch bytes).
    pub fn read_data(&self, offset: u64, dst: &mut [u8]) -> Result<(), OutOfRange> {
        let capacity = self.data_capacity();
        let len = dst.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > capacity) {
            return Err(OutOfRange {
                offset,
                len,
                capacity,
            });
        }
        self.copy_out(DATA_OFFSET + offset as usize, dst);
        Ok(())
    }

    /// The first `len` bytes of the data area, copied. The host chooses `len`: a copy
    /// the heap has no room for is refused, never an allocation failure (which panics).
    pub fn data_to_vec(&self, len: u64) -> Result<Vec<u8>, CopyError> {
        let capacity = self.data_capacity();
        if len > capacity {
            return Err(CopyError::OutOfRange(OutOfRange {
                offset: 0,
                len,
                capacity,
            }));
        }
        let mut out = Vec::new();
        if out.try_reserve_exact(len as usize).is_err() {
            return Err(CopyError::NoMemory { len });
        }
        out.resize(len as usize, 0);
        self.read_data(0, &mut out).map_err(CopyError::OutOfRange)?;
        Ok(out)
    }

    /// Bytes the data area holds.
    pub fn data_capacity(&self) -> u64 {
        data_capacity(self.len)
    }
}
