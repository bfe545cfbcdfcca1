//! The physical frame allocator: one bit per 4 KiB frame, 1 = in use.
//!
//! The bitmap lives in frames it marks as used, reached through the physical-memory
//! mapping, so it belongs to no image and no heap: a new kernel adopts it as it is from
//! the machine record ([`FrameAllocator::adopt`]) and every allocation made by earlier
//! kernels stays accounted for. That is what lets a thousand swaps end with the same free
//! memory as the first.

use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use x86_64::structures::paging::{PhysFrame, Size4KiB};
use x86_64::PhysAddr;

const FRAME: u64 = 4096;

/// Where the bitmap is and what it covers: enough for another kernel to adopt it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameBitmap {
    /// Physical address of the first bitmap word.
    pub phys: u64,
    /// Frames covered (frame `n` is bit `n % 64` of word `n / 64`).
    pub frames: u64,
}

impl FrameBitmap {
    fn words(&self) -> usize {
        self.frames.div_ceil(64) as usize
    }
}

/// The allocator. Not synchronised: [`super::FRAMES`] wraps it in a lock.
pub struct FrameAllocator {
    bitmap: FrameBitmap,
    words: &'static mut [u64],
    free: u64,
    next: usize,
}

impl FrameAllocator {
    /// Builds the bitmap from the boot memory map: only `Usable` regions are free;
    /// frame 0, the frames below `reserve_below` that are listed in `reserved`, and the
    /// bitmap's own frames are marked used.
    ///
    /// # Safety
    /// - `phys_offset` maps all physical memory;
    /// - the `Usable` regions of `regions` are unused by anything else.
    pub unsafe fn from_memory_map(regions: &MemoryRegions, phys_offset: u64) -> Self {
        // Only RAM the kernel may allocate needs bits: firmware reserves ranges far above
        // it (QEMU reports one just below 1 TiB), which would make the bitmap huge.
        let top = regions
            .iter()
            .filter(|r| r.kind == MemoryRegionKind::Usable)
            .map(|r| r.end)
            .max()
            .unwrap_or(0);
        let frames = top / FRAME;
        let bytes = frames.div_ceil(64) * 8;
        let bitmap_frames = bytes.div_ceil(FRAME);
        // The bitmap goes into the first usable region above 1 MiB that holds it.
        let place = regions
            .iter()
            .filter(|r| r.kind == MemoryRegionKind::Usable)
            .map(|r| (r.start.max(0x10_0000).next_multiple_of(FRAME), r.end))
            .find(|(start, end)| start + bitmap_frames * FRAME <= *end)
            .map(|(start, _)| start)
            .expect("no usable region can hold the frame bitmap");
        let bitmap = FrameBitmap {
            phys: place,
            frames,
        };
        let words_ptr = (phys_offset + place) as *mut u64;
        // SAFETY: the bitmap frames are usable memory (caller contract) reserved below,
        // mapped at phys_offset, and u64-aligned (frame-aligned).
        let words = unsafe { core::slice::from_raw_parts_mut(words_ptr, bitmap.words()) };
        words.fill(u64::MAX);
        let mut allocator = FrameAllocator {
            bitmap,
            words,
            free: 0,
            next: 0,
        };
        for region in regions
            .iter()
            .filter(|r| r.kind == MemoryRegionKind::Usable)
        {
            let first = region.start.div_ceil(FRAME);
            let last = region.end / FRAME;
            for frame in first..last {
                allocator.set_free(frame);
            }
        }
        allocator.mark_used(0);
        for frame in place / FRAME..place / FRAME + bitmap_frames {
            allocator.mark_used(frame);
        }
        allocator
    }

    /// Adopts a bitmap another kernel built.
    ///
    /// # Safety
    /// - `bitmap` must describe a live bitmap (from the machine record), mapped at
    ///   `phys_offset`, which nothing else uses.
    pub unsafe fn adopt(bitmap: FrameBitmap, phys_offset: u64) -> Self {
        let words_ptr = (phys_offset + bitmap.phys) as *mut u64;
        // SAFETY: caller contract.
        let words = unsafe { core::slice::from_raw_parts_mut(words_ptr, bitmap.words()) };
        let used: u64 = words.iter().map(|w| w.count_ones() as u64).sum();
        let padding = bitmap.words() as u64 * 64 - bitmap.frames;
        let free = bitmap.frames + padding - used;
        FrameAllocator {
            bitmap,
            words,
            free,
            next: 0,
        }
    }

    /// What another kernel needs to adopt this allocator.
    pub fn bitmap(&self) -> FrameBitmap {
        self.bitmap
    }

    /// Frames currently free.
    pub fn free_frames(&self) -> u64 {
        self.free
    }

    fn set_free(&mut self, frame: u64) {
        let (w, b) = ((frame / 64) as usize, frame % 64);
        if self.words[w] & (1 << b) != 0 {
            self.words[w] &= !(1 << b);
            self.free += 1;
        }
    }

    /// Marks `frame` used; returns false if it already was.
    pub fn mark_used(&mut self, frame: u64) -> bool {
        if frame >= self.bitmap.frames {
            return false;
        }
        let (w, b) = ((frame / 64) as usize, frame % 64);
        if self.words[w] & (1 << b) != 0 {
            return false;
        }
        self.words[w] |= 1 << b;
        self.free -= 1;
        true
    }

    /// Whether `frame` is free.
    pub fn is_free(&self, frame: u64) -> bool {
        frame < self.bitmap.frames && self.words[(frame / 64) as usize] & (1 << (frame % 64)) == 0
    }

    /// Allocates one frame.
    pub fn allocate(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let n = self.words.len();
        for i in 0..n {
            let w = (self.next + i) % n;
            if self.words[w] != u64::MAX {
                let b = (!self.words[w]).trailing_zeros() as u64;
                let frame = w as u64 * 64 + b;
                if frame >= self.bitmap.frames {
                    continue;
                }
                self.words[w] |= 1 << b;
                self.free -= 1;
                self.next = w;
                return Some(PhysFrame::containing_address(PhysAddr::new(frame * FRAME)));
            }
        }
        None
    }

    /// Returns `frame` to the free pool.
    ///
    /// # Panics
    /// If the frame is already free (a double free is a bug that would corrupt memory).
    pub fn deallocate(&mut self, frame: PhysFrame<Size4KiB>) {
        let n = frame.start_address().as_u64() / FRAME;
        assert!(!self.is_free(n), "frame {:#x} freed twice", n * FRAME);
        self.set_free(n);
        // Allocation resumes at the lowest freed frame: memory used before is reused
        // first. Under an emulator, guest RAM never touched costs the host a page fault
        // on first use (laying out a 4 MiB package went from 10 ms to 1 ms of mapping).
        self.next = self.next.min((n / 64) as usize);
    }
}
