//! Patch memory: pages in the patch area (`memory::layout::PATCH_AREA`), within 2 GiB
//! of the image so that `jmp rel32` and `call rel32` reach both ways. Code pages end
//! up read-only and executable, data pages read-only; they are unmapped and their frames
//! freed when the patch is removed.
#![deny(unsafe_code)]

use spin::Mutex;
use x86_64::structures::paging::PageTableFlags;

use crate::memory::layout::PATCH_AREA;
use crate::memory::{self, paging::MapError, DATA};

/// The patch area's allocation: the next free address, and how many allocations of
/// this kernel are live (mapped and not freed yet).
struct Area {
    next: u64,
    live: usize,
}

static AREA: Mutex<Area> = Mutex::new(Area {
    next: PATCH_AREA.start,
    live: 0,
});

/// Maps `len` bytes (rounded to pages) of fresh writable memory; returns its start.
/// Addresses are handed out upwards and start again at the bottom once nothing this
/// kernel allocated is live (a loaded patch not yet installed counts, as an applied
/// one does).
pub fn allocate(len: u64) -> Result<u64, MapError> {
    let mut area = AREA.lock();
    if area.live == 0 {
        area.next = PATCH_AREA.start;
    }
    let size = len.max(1).next_multiple_of(4096);
    if area.next + size > PATCH_AREA.end() {
        return Err(MapError::OutOfFrames);
    }
    let start = area.next;
    memory::with_tables(|t| t.map_fresh(start, size, DATA))?;
    area.next += size + 4096; // a guard page between patches
    area.live += 1;
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

/// Unmaps memory [`allocate`] returned (or [`adopt`] counted) and frees its frames.
pub fn free(start: u64, len: u64) {
    let mut area = AREA.lock();
    unmap(start, len);
    area.live = area.live.saturating_sub(1);
}

/// Counts memory a previous kernel's patch holds (after a swap) as live until it is
/// freed with [`free`]: this kernel allocates above it meanwhile.
pub fn adopt(start: u64, len: u64) {
    let mut area = AREA.lock();
    let end = start + len.max(1).next_multiple_of(4096) + 4096;
    area.next = area.next.max(end);
    area.live += 1;
}

/// Unmaps memory of a patch this kernel never counted and frees its frames: the patch a
/// reverted health window took back (its allocation was lost with the statics). The
/// next allocation may reuse its addresses.
pub fn discard(start: u64, len: u64) {
    let _area = AREA.lock();
    unmap(start, len);
}

fn unmap(start: u64, len: u64) {
    memory::with_tables(|t| {
        let _ = t.unmap(start, len.next_multiple_of(4096), true);
    });
}
