//! What each device interrupt means to the kernel. The entry stubs and vector numbers
//! are in `arch::x86_64::idt`, which calls these through the handlers [`register`]
//! installs (boot and resume); they run with interrupts disabled and must not allocate
//! or take a lock that task code holds with interrupts enabled.
#![deny(unsafe_code)]

use core::sync::atomic::Ordering;

use crate::arch::{apic, idt, tsc};
use crate::{console, cpu, drivers, handoff_region, shell};

/// Installs this module's handlers for the device vectors.
pub fn register() {
    idt::set_handlers(idt::Handlers {
        timer,
        com1: console_input,
        com2: doorbell,
    });
}

/// Timer ticks between two flushes of a CPU's whole TLB (10 ms at 1 kHz).
const TICKS_PER_TLB_FLUSH: u64 = 10;

/// Local APIC timer tick on the calling CPU.
///
/// Every [`TICKS_PER_TLB_FLUSH`] ticks the CPU also flushes its TLB. On hardware that
/// costs a few refills. Under QEMU/TCG it keeps the vCPU's software TLB small: QEMU
/// re-sizes that TLB at each full flush from a use count that every access to the local
/// APIC's page inflates (QEMU 7.2 refills that entry on each access and counts it
/// again), and it walks every vCPU's TLB each time a page gets its first translated
/// code — which a swap does for every page of new code. Without these flushes the TLBs
/// doubled at each swap, and a swap's downtime grew from 4 ms to 100–400 ms within a
/// dozen swaps (docs/BENCHMARKS.md).
///
/// It is also the last backstop of a health window: when the deadline passed long ago
/// (twice the guard's park wait after the checkpoints' backstop) and no CPU got back to
/// its scheduler to fail the window — a task step that never returns on every CPU, as a
/// hotpatch's new code can make it — the tick fails it.
pub fn timer() {
    if let Some(me) = cpu::try_current() {
        let ticks = me.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        if ticks % TICKS_PER_TLB_FLUSH == 0 {
            crate::arch::tlb::flush_all();
        }
    }
    let undo = handoff_region::undo();
    if undo.armed.load(Ordering::Acquire) != 0
        && undo.reverting.load(Ordering::Acquire) == 0
        && tsc::read()
            > undo
                .deadline_tsc
                .saturating_add(undo.park_wait_ticks.saturating_mul(2))
    {
        // The interrupted step is abandoned: acknowledge the tick, or the resumed
        // kernel's timer stays masked behind it.
        apic::end_of_interrupt();
        handoff_region::fail_window(
            updater::handoff::cause::DEADLINE,
            "the health check's deadline passed and no CPU got back to its scheduler: a task step never returns",
        );
    }
}

/// Bytes typed on the console (COM1).
pub fn console_input() {
    while let Some(byte) = console::receive_byte() {
        shell::push_byte(byte);
    }
}

/// The host rang the mailbox doorbell (COM2).
pub fn doorbell() {
    drivers::doorbell::ring();
}
