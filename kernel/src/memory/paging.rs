//! Page tables: the live tables (CR3 never changes, across swaps too) edited through
//! the `x86_64` crate's `OffsetPageTable` over the physical-memory mapping.
//!
//! Every mapping operation takes the page-table lock, then the frame lock for each frame
//! it allocates (always in that order).

use x86_64::registers::control::Cr3;
use x86_64::structures::paging::mapper::{MapToError, TranslateResult, UnmapError};
use x86_64::structures::paging::{
    FrameAllocator as X86FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags,
    PhysFrame, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

use super::FRAMES;

/// Why a mapping operation failed.
#[derive(Debug, Clone, Copy)]
pub enum MapError {
    OutOfFrames,
    AlreadyMapped { virt: u64 },
    NotMapped { virt: u64 },
    HugePage { virt: u64 },
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::OutOfFrames => write!(f, "out of physical memory"),
            MapError::AlreadyMapped { virt } => write!(f, "page {virt:#x} is already mapped"),
            MapError::NotMapped { virt } => write!(f, "page {virt:#x} is not mapped"),
            MapError::HugePage { virt } => write!(f, "page {virt:#x} is part of a huge page"),
        }
    }
}

impl MapError {
    /// What mapping `page` failed with.
    fn of_map(e: MapToError<Size4KiB>, page: Page<Size4KiB>) -> Self {
        let virt = page.start_address().as_u64();
        match e {
            MapToError::FrameAllocationFailed => MapError::OutOfFrames,
            MapToError::PageAlreadyMapped(_) => MapError::AlreadyMapped { virt },
            MapToError::ParentEntryHugePage => MapError::HugePage { virt },
        }
    }
}

/// Frame source for new page tables: the global allocator.
struct GlobalFrames;

// SAFETY: frames handed out by the bitmap allocator are unused until freed.
unsafe impl X86FrameAllocator<Size4KiB> for GlobalFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        FRAMES.lock().as_mut()?.allocate()
    }
}

/// The live page tables.
pub struct PageTables {
    inner: OffsetPageTable<'static>,
    phys_offset: u64,
}

impl PageTables {
    /// Wraps the active tables.
    ///
    /// # Safety
    /// - all physical memory must be mapped at `phys_offset`;
    /// - only one `PageTables` may exist (it is kept in [`super::PAGE_TABLES`]).
    pub unsafe fn active(phys_offset: u64) -> Self {
        let (frame, _) = Cr3::read();
        let l4 = (phys_offset + frame.start_address().as_u64()) as *mut PageTable;
        // SAFETY: CR3 holds the level-4 table, reachable through the physical mapping,
        // and this is its only mutable view (caller contract).
        let inner = unsafe { OffsetPageTable::new(&mut *l4, VirtAddr::new(phys_offset)) };
        Self { inner, phys_offset }
    }

    /// Physical address of the level-4 table.
    pub fn root(&self) -> u64 {
        Cr3::read().0.start_address().as_u64()
    }

    /// Maps `len` bytes at `virt` to fresh zeroed frames with `flags`.
    pub fn map_fresh(
        &mut self,
        virt: u64,
        len: u64,
        flags: PageTableFlags,
    ) -> Result<(), MapError> {
        for (done, page) in pages(virt, len).enumerate() {
            if let Err(e) = self.map_fresh_page(page, flags) {
                // All or nothing: what this call mapped before the failure goes again.
                let _ = self.unmap(virt, done as u64 * 4096, true);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Maps one page to a fresh zeroed frame; the frame goes back if the page cannot be
    /// mapped.
    fn map_fresh_page(
        &mut self,
        page: Page<Size4KiB>,
        flags: PageTableFlags,
    ) -> Result<(), MapError> {
        let frame = GlobalFrames.allocate_frame().ok_or(MapError::OutOfFrames)?;
        // SAFETY: the frame is fresh (allocator), not mapped anywhere else yet; zeroing
        // it through the physical-memory window touches nothing else.
        unsafe {
            core::ptr::write_bytes(
                (self.phys_offset + frame.start_address().as_u64()) as *mut u8,
                0,
                4096,
            );
        }
        // SAFETY: mapping a fresh frame nobody else refers to at a page of ours.
        match unsafe { self.inner.map_to(page, frame, flags, &mut GlobalFrames) } {
            Ok(flush) => {
                flush.flush();
                Ok(())
            }
            Err(e) => {
                if let Some(f) = FRAMES.lock().as_mut() {
                    f.deallocate(frame);
                }
                Err(MapError::of_map(e, page))
            }
        }
    }

    /// Maps `len` bytes at `virt` to the physical range at `phys` (device memory or
    /// frames owned elsewhere).
    ///
    /// # Safety
    /// - the physical range must be safe to access with `flags` (device registers need
    ///   `NO_CACHE`), and nothing else may assume it is unmapped.
    pub unsafe fn map_physical(
        &mut self,
        virt: u64,
        phys: u64,
        len: u64,
        flags: PageTableFlags,
    ) -> Result<(), MapError> {
        for (i, page) in pages(virt, len).enumerate() {
            let frame = PhysFrame::containing_address(PhysAddr::new(phys + i as u64 * 4096));
            // SAFETY: caller contract.
            unsafe {
                self.inner
                    .map_to(page, frame, flags, &mut GlobalFrames)
                    .map_err(|e| MapError::of_map(e, page))?
                    .flush()
            };
        }
        Ok(())
    }

    /// Unmaps `len` bytes at `virt`; returns each frame to the allocator when `free`.
    pub fn unmap(&mut self, virt: u64, len: u64, free: bool) -> Result<(), MapError> {
        for page in pages(virt, len) {
            match self.inner.unmap(page) {
                Ok((frame, flush)) => {
                    flush.flush();
                    if free {
                        if let Some(f) = FRAMES.lock().as_mut() {
                            f.deallocate(frame);
                        }
                    }
                }
                Err(UnmapError::PageNotMapped) => {
                    return Err(MapError::NotMapped {
                        virt: page.start_address().as_u64(),
                    })
                }
                Err(_) => {
                    return Err(MapError::HugePage {
                        virt: page.start_address().as_u64(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Changes the flags of every mapped page in `len` bytes at `virt`.
    pub fn set_flags(
        &mut self,
        virt: u64,
        len: u64,
        flags: PageTableFlags,
    ) -> Result<(), MapError> {
        for page in pages(virt, len) {
            // SAFETY: the caller decides the permissions; the mapping target stays.
            unsafe {
                self.inner
                    .update_flags(page, flags)
                    .map_err(|_| MapError::NotMapped {
                        virt: page.start_address().as_u64(),
                    })?
                    .flush();
            }
        }
        Ok(())
    }

    /// The physical address `virt` maps to, and the page flags.
    pub fn translate(&self, virt: u64) -> Option<(u64, PageTableFlags)> {
        match self.inner.translate(VirtAddr::new(virt)) {
            TranslateResult::Mapped {
                frame,
                offset,
                flags,
            } => Some((frame.start_address().as_u64() + offset, flags)),
            _ => None,
        }
    }
}

/// The 4 KiB pages covering `len` bytes from `virt` (`virt` page-aligned).
pub fn pages(virt: u64, len: u64) -> impl Iterator<Item = Page<Size4KiB>> {
    let first = Page::<Size4KiB>::containing_address(VirtAddr::new(virt));
    let count = len.div_ceil(4096);
    (0..count).map(move |i| first + i)
}
