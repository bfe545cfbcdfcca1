//! The mailbox device: QEMU `ivshmem-plain` (vendor 0x1af4, device 0x1110), whose BAR 2
//! is memory shared with the host. This module finds and maps it; the protocol on top is
//! in `update::service`.

use crate::drivers::pci;
use crate::machine;
use crate::memory::paging::MapError;

const VENDOR: u16 = 0x1af4;
const DEVICE: u16 = 0x1110;

/// The mapped shared memory.
#[derive(Debug, Clone, Copy)]
pub struct SharedMemory {
    pub phys: u64,
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
    Ok(Some(SharedMemory { phys, virt, len }))
}

/// After a swap: the mapping the previous kernel made, from the machine record.
pub fn adopt() -> Option<SharedMemory> {
    let (phys, virt, len) = machine::record().mailbox;
    (len != 0).then(|| *SHARED.call_once(|| SharedMemory { phys, virt, len }))
}
