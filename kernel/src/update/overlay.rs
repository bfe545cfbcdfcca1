//! The overlay: copy the new image over the old one, set its page permissions, enter it.
//!
//! This is the point of no return. It runs in the new image's bootstrap (from the
//! staging window) after reconciliation succeeded, with interrupts off, every other CPU
//! parked and the BSP on the hand-off stack. Before the first byte is written the BSP
//! switches to the GDT and IDT in the hand-off region (the old ones are about to be
//! overwritten), so any exception from here on is reported by the park stub's fatal
//! handler instead of jumping into half-copied code. The copy is one `rep movsq` per run
//! of pages that differ (computed by the loader: writable pages always, read-only pages
//! when their bytes changed); every check was done before it.

use core::sync::atomic::Ordering;

use updater::handoff::{Descriptor, ParkControl, PARK_CONTROL_OFFSET};
use x86_64::registers::control::{Cr0, Cr0Flags, Cr3};
use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, Size4KiB,
};
use x86_64::VirtAddr;

use crate::arch::tsc;
use crate::memory::layout::{HANDOFF, PHYS_MAP};

/// Segment flag bits (as in the package format): read 4, write 2, execute 1.
const W: u64 = 2;
const X: u64 = 1;

/// Copies the prepared image over the old one and jumps to the new resume entry.
///
/// # Safety
/// - interrupts are off, every other CPU is parked in the park stub, and the BSP runs
///   on the hand-off stack, in code that is not part of the old image;
/// - `d` describes an image laid out (relocated for `new_image.base`) at
///   `overlay_source`, whose span is mapped at `new_image.base`.
pub unsafe fn overlay_and_resume(d: &mut Descriptor) -> ! {
    // SAFETY: the control block is in the hand-off region, initialised at first boot.
    let control = unsafe { &*((HANDOFF.start + PARK_CONTROL_OFFSET) as *const ParkControl) };
    let (gdtr, idtr) = (control.gdtr, control.idtr);
    let base = d.new_image.base;
    let source = d.overlay_source;
    let runs = d.copy_runs;
    let run_count = (d.copy_run_count as usize).min(runs.len());
    // SAFETY (numbered):
    // 1. the hand-off GDT has the same code/data selectors as every kernel's, so the
    //    loaded segment registers stay valid; its IDT reports any exception and stops;
    // 2. clearing CR0.WP lets the copy write the old image's read-only pages; it is set
    //    again before the new kernel runs;
    // 3. every run lies within the new image's span, mapped at both the overlay source
    //    and the base (the loader prepared both), page-aligned; the regions are disjoint.
    unsafe {
        core::arch::asm!("lgdt [{}]", "lidt [{}]", in(reg) &gdtr, in(reg) &idtr, options(readonly, nostack));
        Cr0::write(Cr0::read() - Cr0Flags::WRITE_PROTECT);
        for run in &runs[..run_count] {
            let offset = run.first_page as u64 * 4096;
            core::arch::asm!(
                "rep movsq",
                inout("rcx") run.pages as u64 * 512 => _,
                inout("rsi") source + offset => _,
                inout("rdi") base + offset => _,
                options(nostack),
            );
        }
    }
    d.clock.overlaid.store(tsc::read(), Ordering::Relaxed);
    // Page permissions of the new layout: text read-only and executable, everything else
    // not executable, only data writable.
    let (l4_frame, _) = Cr3::read();
    // SAFETY: all physical memory is mapped at PHYS_MAP (bootloader configuration, the
    // same in every image), and this is the only page-table view in use on this CPU.
    let mut tables = unsafe {
        let l4 = &mut *((PHYS_MAP + l4_frame.start_address().as_u64()) as *mut PageTable);
        OffsetPageTable::new(l4, VirtAddr::new(PHYS_MAP))
    };
    for seg in &d.segments[..(d.segment_count as usize).min(d.segments.len())] {
        let mut flags = PageTableFlags::PRESENT;
        if seg.flags & W != 0 {
            flags |= PageTableFlags::WRITABLE;
        }
        if seg.flags & X == 0 {
            flags |= PageTableFlags::NO_EXECUTE;
        }
        let first = Page::<Size4KiB>::containing_address(VirtAddr::new(base + seg.offset));
        let last = Page::<Size4KiB>::containing_address(VirtAddr::new(
            base + seg.offset + seg.mem_size.max(1) - 1,
        ));
        for page in Page::range_inclusive(first, last) {
            // SAFETY: the page is mapped (the loader prepared the whole span); only its
            // permission bits change. The flush happens once, below.
            if let Ok(flush) = unsafe { tables.update_flags(page, flags) } {
                flush.ignore();
            }
        }
    }
    x86_64::instructions::tlb::flush_all();
    // SAFETY: the copy and permission changes are done; write protection comes back on.
    unsafe { Cr0::write(Cr0::read() | Cr0Flags::WRITE_PROTECT) };
    let resume = d.resume_entry;
    // SAFETY: `resume` is the new image's `hk_resume` at its final base, which switches
    // to the BSP's stack itself; the descriptor stays valid (hand-off region).
    unsafe {
        core::arch::asm!("jmp {}", in(reg) resume, in("rdi") d as *mut Descriptor, options(noreturn));
    }
}
