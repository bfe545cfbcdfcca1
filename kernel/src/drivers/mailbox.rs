//! The mailbox device: QEMU `ivshmem-plain` (vendor 0x1af4, device 0x1110), whose BAR 2
//! is memory shared with the host. This module finds and maps it; the protocol on top is
//! in `update::service`.

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
#[derive(Debug, Clone, Copy)]
pub struct SharedMemory {
    pub virt: u64,
    pub len: u64,
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
    let (_, virt, len) = machine::record().mailbox;
    (len != 0).then(|| *SHARED.call_once(|| SharedMemory { virt, len }))
}

/// The protocol's blocks, as this guest reads and writes them (layout and framing in
/// `image_format::mailbox`). The host writes the request block and the data area; the
/// guest writes the status, response and report blocks.
impl SharedMemory {
    fn area(&self, offset: usize, len: usize) -> &'static mut [u8] {
        assert!(
            offset as u64 + len as u64 <= self.len,
            "mailbox area out of range"
        );
        // The host writes only the request block and the data area, which the guest
        // copies out of before using, and only while it has a request outstanding.
        // SAFETY: the BAR is mapped for the kernel's life (`discover`/`adopt`), and the
        // offsets come from the protocol's constants.
        unsafe { core::slice::from_raw_parts_mut((self.virt + offset as u64) as *mut u8, len) }
    }

    /// The current request block, read once with volatile loads.
    pub fn read_request(&self) -> RequestRead {
        let mut buf = [0u8; Request::SIZE];
        let src = self.area(REQUEST_OFFSET, Request::SIZE);
        for (b, s) in buf.iter_mut().zip(src.iter()) {
            // SAFETY: `s` is a byte of the mapped request block; a volatile read keeps
            // the copy from being merged with later reads.
            *b = unsafe { core::ptr::read_volatile(s) };
        }
        Request::decode(&buf)
    }

    /// Writes a response: body, fence, then the commit field.
    pub fn respond(&self, response: &Response) {
        let _ = response
            .seal()
            .write_to(self.area(RESPONSE_OFFSET, BLOCK_SIZE));
    }

    /// Writes a report into the report area; returns its length.
    pub fn write_report(&self, report: &Report) -> Result<u32, FormatError> {
        let area = self.area(REPORT_OFFSET, REPORT_CAPACITY);
        report.encode(area).map(|n| n as u32)
    }

    /// Writes the status block.
    pub fn write_status(&self, status: &GuestStatus) {
        if let Err(e) = status.encode(self.area(STATUS_OFFSET, BLOCK_SIZE)) {
            log::error!("mailbox status not written: {e}");
        }
    }

    /// The data area (package or patch bytes), `len` bytes of it.
    pub fn data(&self, len: u64) -> Option<&'static [u8]> {
        let capacity = data_capacity(self.len);
        (len <= capacity).then(|| &*self.area(DATA_OFFSET, len as usize))
    }

    /// Bytes the data area holds.
    pub fn data_capacity(&self) -> u64 {
        data_capacity(self.len)
    }
}
