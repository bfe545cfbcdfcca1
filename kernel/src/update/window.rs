//! A swap's health window, from the kernel that runs after it: the new kernel's check
//! and commit, and the old kernel's account of a revert. A hotpatch's window uses the
//! same check ([`gate`]) and revert; what differs is `update::patch_window`'s.
//!
//! The window opens at the overlay (the bootstrap arms the undo log,
//! `updater::handoff::Undo`) and lasts until the new kernel is healthy — every CPU
//! scheduling again, every task kind with tasks stepped once (`sched::health`) — or its
//! deadline passes. [`gate`] decides, on the bootstrap processor, polled by the update
//! service until the swap is reported: healthy → [`commit`] (the window closes, each
//! CPU goes back to its own IDT at its next checkpoint, the old image's frames and
//! pristine pages are freed); the deadline passed → the guard reverts the swap
//! (`handoff_region::fail_window`). An exception or a panic inside the window gets
//! there without this module (the guard IDT, the panic handler).
//!
//! After a revert the *old* kernel runs this module's other half: [`revert_reason`]
//! says what failed, [`release_after_revert`] frees what the failed kernel was loaded
//! in and what it was given, and the undo log is cleared.
//!
//! Work the new kernel did inside the window is lost with it, like an aborted
//! transaction: its task steps (the old kernel resumes from the records it exported,
//! which the new one only read), its heap, and any frame it allocated (leaked). What
//! cannot be taken back: console output, mailbox answers, and a failure after the
//! window closed.

use alloc::format;
use alloc::string::String;
use core::sync::atomic::{AtomicBool, Ordering};

use updater::handoff::{cause, text, Descriptor, PristinePage};

use crate::handoff_region;
use crate::memory::{self, layout};
use crate::sched::health;
use crate::time;

/// What the health window says about the swap being finished.
pub enum Gate {
    /// No window (or it closed): report as usual.
    Closed,
    /// Still open and not healthy yet: ask again later.
    Waiting,
    /// Healthy: commit, then report.
    Healthy,
    /// This kernel is the old one, back after a revert: report that.
    Reverted,
}

/// Set by the old kernel at its resume after a revert, until it reported.
static REVERTED: AtomicBool = AtomicBool::new(false);

/// At the resume of the old kernel after a revert (its bootstrap processor, before any
/// other CPU is released): closes the window — the guard no longer reverts on an NMI,
/// the CPUs load this kernel's own IDT — and remembers to report the revert.
pub fn note_reverted() {
    REVERTED.store(true, Ordering::Release);
    // The guard raised a park generation for the revert; this CPU answered it by doing
    // the revert (it must not park for it at its next checkpoint).
    let control = handoff_region::park_control();
    control.slots[crate::cpu::CpuId::BSP.index()]
        .parked_gen
        .store(control.request.load(Ordering::Acquire), Ordering::Relaxed);
    let undo = handoff_region::undo();
    undo.armed.store(0, Ordering::Release);
    undo.reverting.store(0, Ordering::Release);
}

/// Whether this kernel said its window is open (once; statics start afresh per kernel).
static SAID_OPEN: AtomicBool = AtomicBool::new(false);

/// Logs, once, that this kernel's window is open and how long it has left. The update
/// service says it at its first poll after the swap: a console line costs about a
/// millisecond under TCG, which in the resume itself would be downtime.
pub fn say_open() {
    let undo = handoff_region::undo();
    if undo.armed.load(Ordering::Acquire) == 0 || SAID_OPEN.swap(true, Ordering::Relaxed) {
        return;
    }
    let left = undo.deadline_tsc.saturating_sub(time::now().ticks());
    log::info!(
        "health window open: {} µs left",
        time::ticks_to_nanos(left) / 1000
    );
}

/// Decides (see the module doc). Fails the window, never returning, when the deadline
/// passed without the kernel being healthy.
pub fn gate() -> Gate {
    if REVERTED.load(Ordering::Acquire) {
        return Gate::Reverted;
    }
    let undo = handoff_region::undo();
    if undo.armed.load(Ordering::Acquire) == 0 {
        return Gate::Closed;
    }
    match health::missing() {
        (None, None) => Gate::Healthy,
        (cpu, kind) => {
            if time::now().ticks() < undo.deadline_tsc {
                return Gate::Waiting;
            }
            let why = match (cpu, kind) {
                (Some(cpu), _) => {
                    format!("the health check's deadline passed: {cpu} never scheduled again")
                }
                (None, Some(kind)) => {
                    format!("the health check's deadline passed: no {kind} task stepped")
                }
                (None, None) => unreachable!("healthy above"),
            };
            handoff_region::fail_window(cause::DEADLINE, &why)
        }
    }
}

fn frames(pages: &[PristinePage], count: u32) -> impl Iterator<Item = u64> + '_ {
    let offset = memory::phys_offset();
    pages[..(count as usize).min(pages.len())]
        .iter()
        .map(move |p| p.copy - offset)
}

/// Closes the window: the swap is final. Frees the old image's pristine pages, keeps
/// this image's (for a revert *to* it from the next swap).
pub fn commit() {
    health::stop();
    // SAFETY: the bootstrap processor, finishing the swap; the other CPUs read only the
    // atomics (`armed`), and nothing else writes the undo log once the window is open.
    let undo = unsafe { handoff_region::undo_mut() };
    undo.armed.store(0, Ordering::Release);
    for phys in frames(&undo.pristine, undo.pristine_count) {
        memory::free_frame(phys);
    }
    undo.pristine_count = 0;
    let offset = memory::phys_offset();
    let next =
        &undo.next_pristine[..(undo.next_pristine_count as usize).min(undo.next_pristine.len())];
    crate::image::adopt_pristine(next.iter().map(|p| (p.page, p.copy - offset)));
    undo.next_pristine_count = 0;
}

/// What the failed kernel did, for the report (after a revert).
pub fn revert_reason(d: &Descriptor) -> String {
    format!(
        "the new kernel failed inside its health window: {}; the swap was taken back and {} runs again, every task from its state at the swap",
        failure(d),
        crate::identity::describe()
    )
}

/// What failed inside the window (after a revert): the exception, the panic or the
/// missed deadline.
pub fn failure(d: &Descriptor) -> String {
    let undo = handoff_region::undo();
    match undo.cause.load(Ordering::Acquire) {
        cause::EXCEPTION => {
            let vector = undo.vector.load(Ordering::Relaxed);
            let mut s = format!(
                "CPU with APIC id {} took exception {vector} ({}) at rip {:#x}, error code {:#x}",
                undo.apic_id.load(Ordering::Relaxed),
                exception_name(vector),
                undo.rip.load(Ordering::Relaxed),
                undo.error_code.load(Ordering::Relaxed),
            );
            if vector == 14 {
                s.push_str(&format!(
                    ", address {:#x}",
                    undo.cr2.load(Ordering::Relaxed)
                ));
            }
            s
        }
        cause::PANIC | cause::DEADLINE => String::from(text(&d.failure)),
        other => format!("unknown cause {other}"),
    }
}

fn exception_name(vector: u32) -> &'static str {
    match vector {
        0 => "divide error",
        1 => "debug",
        3 => "breakpoint",
        4 => "overflow",
        5 => "bound range",
        6 => "invalid opcode",
        7 => "device not available",
        8 => "double fault",
        10 => "invalid TSS",
        11 => "segment not present",
        12 => "stack-segment fault",
        13 => "general protection",
        14 => "page fault",
        16 => "x87 floating point",
        17 => "alignment check",
        18 => "machine check",
        19 => "SIMD floating point",
        _ => "reserved",
    }
}

/// After a revert: frees what the failed kernel was loaded in (the staging window and
/// the overlay source, `span` bytes each), what was mapped for it beyond this image
/// (image growth up to `mapped_span`, a larger heap) and its pristine pages; clears the
/// undo log.
pub fn release_after_revert(span: u64, mapped_span: u64) {
    let usable = crate::update::prepare::usable_frame();
    memory::with_tables(|t| {
        let _ = t.unmap(layout::STAGING_WINDOW.start, span, true);
        let _ = t.unmap(layout::OVERLAY_SOURCE.start, span, true);
        let own = crate::image::span();
        for at in (own..mapped_span).step_by(4096) {
            if let Some((phys, _)) = t.translate(layout::KERNEL_IMAGE.start + at) {
                let _ = t.unmap(layout::KERNEL_IMAGE.start + at, 4096, usable(phys));
            }
        }
        // A heap mapped larger for the failed kernel: up to where the mapping ends.
        let heap = layout::HEAP;
        let mut at = heap.end();
        while at < heap.start + 16 * heap.len && t.translate(at).is_some() {
            let _ = t.unmap(at, 4096, true);
            at += 4096;
        }
    });
    crate::machine::update(|m| m.image.len = crate::image::span());
    // SAFETY: the bootstrap processor of the old kernel, after the revert; nothing else
    // uses the undo log now.
    let undo = unsafe { handoff_region::undo_mut() };
    for phys in frames(&undo.next_pristine, undo.next_pristine_count) {
        memory::free_frame(phys);
    }
    undo.next_pristine_count = 0;
    clear_revert();
}

/// After a revert was reported: the undo log is empty again.
pub fn clear_revert() {
    // SAFETY: the bootstrap processor of the kernel that resumed after the revert;
    // nothing else uses the undo log now.
    let undo = unsafe { handoff_region::undo_mut() };
    undo.pte_count = 0;
    undo.patch.active = 0;
    undo.cause.store(0, Ordering::Relaxed);
    REVERTED.store(false, Ordering::Release);
}
