//! The overlay: install the new image at the old one's base, set its page permissions,
//! enter it.
//!
//! This is the point of no return. It runs in the new image's bootstrap (from the
//! staging window) after reconciliation succeeded, with interrupts off, every other CPU
//! parked and the BSP on the hand-off stack. Before the first page changes the BSP
//! switches to the GDT and IDT in the hand-off region (the old ones are about to go), so
//! any exception from here on is reported by the park stub's fatal handler instead of
//! jumping into a half-installed image. Every check was done before.
//!
//! Only the pages that differ are installed (the loader listed them: every writable
//! page, and every read-only page whose bytes changed). Two methods:
//! - **remap** (default): point the image's page-table entries at the frames the loader
//!   already filled with the new bytes (relocated for this base); the old frames go to
//!   the reclaim list for the new kernel to free. No old frame is written.
//! - **copy** (the seed's literal method): `rep movsq` the prepared bytes over the old
//!   frames.
//!
//! Measured under QEMU/TCG (docs/BENCHMARKS.md): writing into frames that hold
//! translated code costs the emulator a self-modifying-code check per store, so copy is
//! far slower than remap there; on hardware the two differ by the copy's bandwidth.
//!
//! With a health window (the undo log armed by the bootstrap), every page-table entry is
//! recorded in the undo log before it changes, and the CPU switches to the guard IDT
//! rather than the parked CPUs' one: a fault from here on takes the swap back.

use core::sync::atomic::Ordering;

use updater::handoff::{Descriptor, OverlayMethod, Undo, UndoPte};
use x86_64::registers::control::{Cr0, Cr0Flags, Cr3};
use x86_64::structures::paging::mapper::TranslateResult;
use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB, Translate,
};
use x86_64::VirtAddr;

use crate::arch::tsc;
use crate::handoff_region;
use crate::memory::layout::PHYS_MAP;

/// Segment flag bits (as in the package format): read 4, write 2, execute 1.
const W: u64 = 2;
const X: u64 = 1;

/// The page flags page `offset` (from the base) gets under the new image's segments.
fn flags_at(d: &Descriptor, offset: u64) -> PageTableFlags {
    let mut flags = PageTableFlags::PRESENT | PageTableFlags::NO_EXECUTE;
    for seg in &d.segments[..(d.segment_count as usize).min(d.segments.len())] {
        let start = seg.offset & !0xfff;
        if offset >= start && offset < seg.offset + seg.mem_size {
            if seg.flags & W != 0 {
                flags |= PageTableFlags::WRITABLE;
            }
            if seg.flags & X != 0 {
                flags.remove(PageTableFlags::NO_EXECUTE);
            }
        }
    }
    flags
}

/// The address (through the physical map) of the level-1 entry that maps `virt`, if
/// every level is present and none maps a large page.
fn entry_of(l4_phys: u64, virt: u64) -> Option<u64> {
    const PRESENT: u64 = 1;
    const HUGE: u64 = 1 << 7;
    const ADDRESS: u64 = 0x000f_ffff_ffff_f000;
    let mut table = l4_phys;
    for level in (0..4u64).rev() {
        let entry = PHYS_MAP + table + ((virt >> (12 + 9 * level)) & 511) * 8;
        if level == 0 {
            return Some(entry);
        }
        // SAFETY: `table` is a page-table frame (CR3's, or one a present entry points
        // to), mapped through the physical map; reading an entry has no side effect.
        let value = unsafe { (entry as *const u64).read_volatile() };
        if value & PRESENT == 0 || value & HUGE != 0 {
            return None;
        }
        table = value & ADDRESS;
    }
    None
}

/// The undo log's record of the pages whose entries it holds (one bit per page of the
/// image), so each entry is recorded once, with the value it had before the swap.
struct Recorder<'u> {
    undo: Option<&'u mut Undo>,
    l4: u64,
    base: u64,
    done: [u64; updater::handoff::MAX_UNDO_PTES / 64],
}

impl Recorder<'_> {
    /// Records page `base + at`'s entry before it changes (when the window is armed).
    fn before_change(&mut self, at: u64) {
        let Some(u) = self.undo.as_deref_mut() else {
            return;
        };
        let page = (at / 4096) as usize;
        let (word, bit) = (page / 64, 1u64 << (page % 64));
        if self.done.get(word).is_none_or(|w| w & bit != 0) {
            return;
        }
        let Some(entry) = entry_of(self.l4, self.base + at) else {
            return;
        };
        let n = u.pte_count as usize;
        if let Some(slot) = u.ptes.get_mut(n) {
            // SAFETY: `entry` is the present level-1 entry of a mapped page (above).
            let old = unsafe { (entry as *const u64).read_volatile() };
            *slot = UndoPte { entry, old };
            u.pte_count += 1;
            self.done[word] |= bit;
        }
    }
}

fn frame_of(tables: &OffsetPageTable<'_>, virt: u64) -> Option<PhysFrame<Size4KiB>> {
    match tables.translate(VirtAddr::new(virt)) {
        TranslateResult::Mapped { frame, .. } => {
            Some(PhysFrame::containing_address(frame.start_address()))
        }
        _ => None,
    }
}

/// Installs the prepared image and jumps to the new resume entry.
///
/// # Safety
/// - interrupts are off, every other CPU is parked in the park stub, and the BSP runs
///   on the hand-off stack, in code that is not part of the old image;
/// - `d` describes an image laid out (relocated for `new_image.base`) at
///   `overlay_source`, whose whole span is mapped at `new_image.base`;
/// - `reclaim` is the hand-off region's reclaim area;
/// - `undo`, when given, is the armed undo log (the health window is open).
pub unsafe fn overlay_and_resume(
    d: &mut Descriptor,
    reclaim: &mut [u64],
    undo: Option<&mut Undo>,
) -> ! {
    let control = handoff_region::park_control();
    let gdtr = control.gdtr;
    // With a window the guard catches what goes wrong from here on; without one the
    // parked CPUs' IDT reports it and stops.
    let idtr = match undo {
        Some(_) => updater::handoff::TableRegister {
            limit: 256 * 16 - 1,
            base: handoff_region::guard_idt(),
        },
        None => control.idtr,
    };
    let base = d.new_image.base;
    let span = d.new_image.span;
    let source = d.overlay_source;
    let runs = d.copy_runs;
    let run_count = (d.copy_run_count as usize).min(runs.len());
    let (l4_frame, _) = Cr3::read();
    // SAFETY: all physical memory is mapped at PHYS_MAP (bootloader configuration, the
    // same in every image), and this is the only page-table view in use on this CPU.
    let mut tables = unsafe {
        let l4 = &mut *((PHYS_MAP + l4_frame.start_address().as_u64()) as *mut PageTable);
        OffsetPageTable::new(l4, VirtAddr::new(PHYS_MAP))
    };
    let mut reclaimed = 0usize;
    let remap = d.overlay_method == OverlayMethod::Remap as u32;
    let mut recorder = Recorder {
        undo,
        l4: l4_frame.start_address().as_u64(),
        base,
        done: [0; updater::handoff::MAX_UNDO_PTES / 64],
    };

    // Clearing CR0.WP lets the copy write the old image's read-only pages; it is set
    // again before the new kernel runs. The hand-off IDT reports any exception and stops.
    // SAFETY: the hand-off GDT has the same code/data selectors as every kernel's, so
    // the loaded segment registers stay valid; WP is restored below.
    unsafe {
        core::arch::asm!("lgdt [{}]", "lidt [{}]", in(reg) &gdtr, in(reg) &idtr, options(readonly, nostack));
        Cr0::write(Cr0::read() - Cr0Flags::WRITE_PROTECT);
    }
    for run in &runs[..run_count] {
        let offset = run.first_page as u64 * 4096;
        if remap {
            for page in 0..run.pages as u64 {
                let at = offset + page * 4096;
                let (Some(new), Some(old)) =
                    (frame_of(&tables, source + at), frame_of(&tables, base + at))
                else {
                    continue; // the loader mapped both; a gap here would be a loader bug
                };
                let page = Page::<Size4KiB>::containing_address(VirtAddr::new(base + at));
                recorder.before_change(at);
                // SAFETY: the page is mapped (to `old`); it is pointed at `new`, which
                // holds the same page of the new image, relocated for this base.
                unsafe {
                    if let Ok((_, flush)) = tables.unmap(page) {
                        flush.ignore();
                    }
                    let mut none = NoFrames;
                    if let Ok(flush) = tables.map_to(page, new, flags_at(d, at), &mut none) {
                        flush.ignore();
                    }
                }
                if reclaimed < reclaim.len() {
                    reclaim[reclaimed] = old.start_address().as_u64();
                    reclaimed += 1;
                }
            }
        } else {
            // SAFETY: the run lies within the span, mapped at both the overlay source and
            // the base, page-aligned; the two regions are disjoint; WP is off.
            unsafe {
                core::arch::asm!(
                    "rep movsq",
                    inout("rcx") run.pages as u64 * 512 => _,
                    inout("rsi") source + offset => _,
                    inout("rdi") base + offset => _,
                    options(nostack),
                );
            }
        }
    }
    d.reclaim_count = reclaimed as u64;
    d.clock.overlaid.store(tsc::read(), Ordering::Relaxed);
    // Permissions of the new layout on every page: text read-only and executable,
    // everything else not executable, only data writable.
    for at in (0..span).step_by(4096) {
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(base + at));
        recorder.before_change(at);
        // SAFETY: the page is mapped (the loader prepared the whole span); only its
        // permission bits change. The flush happens once, below.
        if let Ok(flush) = unsafe { tables.update_flags(page, flags_at(d, at)) } {
            flush.ignore();
        }
    }
    x86_64::instructions::tlb::flush_all();
    // SAFETY: the image is installed; write protection comes back on.
    unsafe { Cr0::write(Cr0::read() | Cr0Flags::WRITE_PROTECT) };
    let resume = d.resume_entry;
    // SAFETY: `resume` is the new image's `hk_resume` at its final base, which switches
    // to the BSP's stack itself; the descriptor stays valid (hand-off region).
    unsafe {
        core::arch::asm!("jmp {}", in(reg) resume, in("rdi") d as *mut Descriptor, options(noreturn));
    }
}

/// Remapping never needs a new page table (every level exists: the page was mapped),
/// so the mapper gets no frames.
struct NoFrames;

// SAFETY: it hands out no frames at all.
unsafe impl x86_64::structures::paging::FrameAllocator<Size4KiB> for NoFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        None
    }
}
