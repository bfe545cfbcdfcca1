//! The kernel heap: a `linked_list_allocator` over the fixed [`HEAP`] region.
//!
//! At first boot the region is mapped to fresh frames; a new kernel after a swap keeps
//! the pages and starts an empty allocator over them ([`rebuild`]): the old heap is dead
//! once the hand-off records are written.

use linked_list_allocator::LockedHeap;
use x86_64::structures::paging::PageTableFlags;

use super::layout::HEAP;
use super::paging::{MapError, PageTables};

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Maps the heap region and starts the allocator over it (first boot).
pub fn init(tables: &mut PageTables) -> Result<(), MapError> {
    let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::NO_EXECUTE;
    tables.map_fresh(HEAP.start, HEAP.len, flags)?;
    rebuild();
    Ok(())
}

/// Starts an empty allocator over the (already mapped) heap region.
pub fn rebuild() {
    // The region was mapped by `init` at first boot, or by an earlier kernel (recorded
    // in the machine record) after a swap.
    // SAFETY: the heap region is mapped writable, and nothing allocated from an earlier
    // allocator over it is used any more.
    unsafe {
        ALLOCATOR
            .lock()
            .init(HEAP.start as *mut u8, HEAP.len as usize)
    };
}

/// Bytes in use and bytes free.
pub fn usage() -> (usize, usize) {
    let heap = ALLOCATOR.lock();
    (heap.used(), heap.free())
}
