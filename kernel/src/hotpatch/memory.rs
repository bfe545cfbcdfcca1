//! Patch memory: pages in the patch area (`memory::layout::PATCH_AREA`), within 2 GiB
//! of the image so that `jmp rel32` and `call rel32` reach both ways. Code pages end
//! up read-only and executable, data pages read-only; they are unmapped and their frames
//! freed when the patch is removed.
#![deny(unsafe_code)]

use spin::Mutex;
use x86_64::structures::paging::PageTableFlags;

use crate::memory::layout::PATCH_AREA;
use crate::memory::{self, paging::MapError, DATA};

/// Next free address in the patch area (reset when no patch is applied).
static NEXT: Mutex<u64> = Mutex::new(PATCH_AREA.start);

/// Maps `len` bytes (rounded to pages) of fresh writable memory; returns its start.
pub fn allocate(len: u64, none_applied: bool) -> Result<u64, MapError> {
    let mut next = NEXT.lock();
    if none_applied {
        *next = PATCH_AREA.start;
    }
    let size = len.max(1).next_multiple_of(4096);
    if *next + size > PATCH_AREA.end() {
        return Err(MapError::OutOfFrames);
    }
    let start = *next;
    memory::with_tables(|t| t.map_fresh(start, size, DATA))?;
    *next += size + 4096; // a guard page between patches
    Ok(start)
}

/// Final permissions: `code` bytes read-only executable, the rest read-only.
pub fn seal(start: u64, len: u64, code: u64) -> Result<(), MapError> {
    let code_pages = code.next_multiple_of(4096);
    memory::with_tables(|t| -> Result<(), MapError> {
        if code_pages > 0 {
            t.set_flags(start, code_pages, PageTableFlags::PRESENT)?;
        }
        if len > code_pages {
            t.set_flags(
                start + code_pages,
                len - code_pages,
                PageTableFlags::PRESENT | PageTableFlags::NO_EXECUTE,
            )?;
        }
        Ok(())
    })
}

/// Unmaps patch memory and frees its frames.
pub fn free(start: u64, len: u64) {
    memory::with_tables(|t| {
        let _ = t.unmap(start, len.next_multiple_of(4096), true);
    });
}
