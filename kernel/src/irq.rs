//! What each device interrupt means to the kernel. The entry stubs and vector numbers
//! are in `arch::x86_64::idt`; these functions run with interrupts disabled and must
//! not allocate or take a lock that task code holds with interrupts enabled.

use core::sync::atomic::Ordering;

use crate::{console, cpu, drivers, shell, update};

/// Local APIC timer tick on the calling CPU.
pub fn timer() {
    if let Some(ptr) = crate::arch::percpu::current_ptr() {
        // SAFETY: the GS base points at this CPU's leaked `Cpu` (cpu::install).
        let me = unsafe { &*(ptr as *const cpu::Cpu) };
        me.ticks.fetch_add(1, Ordering::Relaxed);
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
    drivers::doorbell::drain();
    update::service::kick();
}
