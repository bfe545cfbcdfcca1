//! Physical and virtual memory: the frame allocator, the live page tables, the heap and
//! the fixed regions of the address map ([`layout`]).
//!
//! First boot builds everything from the bootloader's memory map ([`init_first_boot`]);
//! a kernel that starts by a swap adopts the frame bitmap and the mappings from the
//! machine record ([`adopt`]) and only rebuilds its heap allocator.

pub mod frames;
pub mod heap;
pub mod layout;
pub mod paging;

use core::sync::atomic::{AtomicU64, Ordering};

use bootloader_api::BootInfo;
use spin::Mutex;
use x86_64::structures::paging::PageTableFlags;

use frames::{FrameAllocator, FrameBitmap};
use layout::{HANDOFF, STAGING_BUFFER, TRAMPOLINE_PHYS};
use paging::{MapError, PageTables};

/// The frame allocator (taken after [`PAGE_TABLES`] when both are needed).
pub static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);
/// The live page tables.
pub static PAGE_TABLES: Mutex<Option<PageTables>> = Mutex::new(None);

static PHYS_OFFSET: AtomicU64 = AtomicU64::new(0);

/// Flags of plain kernel data.
pub const DATA: PageTableFlags = PageTableFlags::PRESENT
    .union(PageTableFlags::WRITABLE)
    .union(PageTableFlags::NO_EXECUTE);
/// Flags of device registers.
pub const MMIO: PageTableFlags = DATA
    .union(PageTableFlags::NO_CACHE)
    .union(PageTableFlags::WRITE_THROUGH);

/// Why memory could not be set up.
#[derive(Debug)]
pub enum MemoryError {
    NoPhysicalMapping,
    TrampolinePageTaken,
    Map(MapError),
}

impl From<MapError> for MemoryError {
    fn from(e: MapError) -> Self {
        MemoryError::Map(e)
    }
}

impl core::fmt::Display for MemoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MemoryError::NoPhysicalMapping => {
                write!(f, "the bootloader did not map physical memory")
            }
            MemoryError::TrampolinePageTaken => {
                write!(
                    f,
                    "physical page {TRAMPOLINE_PHYS:#x} (AP trampoline) is not free memory"
                )
            }
            MemoryError::Map(e) => write!(f, "{e}"),
        }
    }
}

/// Where all physical memory is mapped.
pub fn phys_offset() -> u64 {
    PHYS_OFFSET.load(Ordering::Relaxed)
}

/// A pointer to physical address `phys` through the physical-memory mapping.
pub fn phys_to_virt(phys: u64) -> *mut u8 {
    (phys_offset() + phys) as *mut u8
}

/// Runs `f` with the page tables locked.
pub fn with_tables<R>(f: impl FnOnce(&mut PageTables) -> R) -> R {
    f(PAGE_TABLES
        .lock()
        .as_mut()
        .expect("page tables used before memory::init"))
}

/// Free physical frames.
pub fn free_frames() -> u64 {
    FRAMES.lock().as_ref().map_or(0, |f| f.free_frames())
}

/// The frame bitmap's location (for the machine record).
pub fn frame_bitmap() -> FrameBitmap {
    FRAMES
        .lock()
        .as_ref()
        .expect("frame allocator not set up")
        .bitmap()
}

/// First boot: frame allocator from the memory map, page tables, heap, the staging
/// buffer, the hand-off region and the identity-mapped trampoline page.
pub fn init_first_boot(boot_info: &BootInfo) -> Result<(), MemoryError> {
    let offset = boot_info
        .physical_memory_offset
        .into_option()
        .ok_or(MemoryError::NoPhysicalMapping)?;
    PHYS_OFFSET.store(offset, Ordering::Relaxed);
    // SAFETY: the bootloader maps all physical memory at `offset`, and its memory map's
    // usable regions are free when the kernel starts.
    let mut frames = unsafe { FrameAllocator::from_memory_map(&boot_info.memory_regions, offset) };
    if !frames.mark_used(TRAMPOLINE_PHYS / 4096) {
        return Err(MemoryError::TrampolinePageTaken);
    }
    *FRAMES.lock() = Some(frames);
    // SAFETY: physical memory is mapped at `offset`; this is the only PageTables.
    *PAGE_TABLES.lock() = Some(unsafe { PageTables::active(offset) });
    with_tables(|t| -> Result<(), MemoryError> {
        heap::init(t)?;
        t.map_fresh(STAGING_BUFFER.start, STAGING_BUFFER.len, DATA)?;
        t.map_fresh(HANDOFF.start, HANDOFF.len, DATA)?;
        // SAFETY: the trampoline frame was reserved above; mapping it at its own
        // address (executable) is what the AP needs the instant it enables paging.
        unsafe {
            t.map_physical(
                TRAMPOLINE_PHYS,
                TRAMPOLINE_PHYS,
                4096,
                PageTableFlags::PRESENT | PageTableFlags::WRITABLE,
            )?
        };
        Ok(())
    })
}

/// The heap of this image after a swap, over the one the previous kernel had
/// (`running`, from its machine record): a larger one was mapped by the previous
/// kernel at staging; the tail of a smaller one is unmapped and its frames freed here.
/// Returns this image's heap span (for the machine record).
pub fn adopt_heap(running: updater::records::machine::Span) -> updater::records::machine::Span {
    let heap = layout::HEAP;
    if running.start == heap.start && running.len > heap.len {
        let tail = running.len - heap.len;
        if let Err(e) = with_tables(|t| t.unmap(heap.end(), tail, true)) {
            log::warn!("the heap shrank, but its old tail could not be freed: {e}");
        }
    }
    updater::records::machine::Span {
        start: heap.start,
        len: heap.len,
    }
}

/// A frame of its own for a copy of `page` (4096 bytes at a mapped address), or `None`
/// when memory is out: the copy's physical address.
pub fn copy_to_fresh_frame(page: u64) -> Option<u64> {
    let frame = FRAMES.lock().as_mut()?.allocate()?;
    let phys = frame.start_address().as_u64();
    // SAFETY: the frame was just taken from the allocator (no other user) and is mapped
    // through the physical-memory map; `page` is a mapped, readable page (caller
    // contract: an address of this image).
    unsafe { core::ptr::copy_nonoverlapping(page as *const u8, phys_to_virt(phys), 4096) };
    Some(phys)
}

/// Gives frame `phys` back to the allocator.
pub fn free_frame(phys: u64) {
    if let Some(f) = FRAMES.lock().as_mut() {
        f.deallocate(x86_64::structures::paging::PhysFrame::containing_address(
            x86_64::PhysAddr::new(phys),
        ));
    }
}

/// Maps `[start, start + len)` with fresh frames (a region that grows, at staging).
pub fn map_fresh(start: u64, len: u64) -> Result<(), MapError> {
    with_tables(|t| t.map_fresh(start, len, DATA))
}

/// Unmaps `[start, start + len)` and frees its frames (growth a refused swap did not use).
pub fn unmap_and_free(start: u64, len: u64) -> Result<(), MapError> {
    with_tables(|t| t.unmap(start, len, true))
}

/// After a swap: adopt the frame bitmap and the page tables another kernel left, and
/// start an empty heap over the heap region.
///
/// # Safety
/// - `bitmap` and `phys_offset` must come from the machine record the previous kernel
///   exported, and describe the live machine.
pub unsafe fn adopt(bitmap: FrameBitmap, phys_offset: u64) {
    PHYS_OFFSET.store(phys_offset, Ordering::Relaxed);
    // SAFETY: caller contract: the bitmap is live and ours now.
    *FRAMES.lock() = Some(unsafe { FrameAllocator::adopt(bitmap, phys_offset) });
    // SAFETY: caller contract; this kernel has no other PageTables.
    *PAGE_TABLES.lock() = Some(unsafe { PageTables::active(phys_offset) });
    heap::rebuild();
}
