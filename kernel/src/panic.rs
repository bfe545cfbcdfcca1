//! The panic handler: print where and why on COM1 — and the return addresses on the
//! panicking CPU's stack (frame pointers are kept: `addr2line -e kernel.elf` names
//! them) — then leave QEMU with the failure code (or, inside a swap's health window,
//! take the swap back). Reports of CPUs that panic at once come one after another
//! (`console::panic_report`), written to the port directly: the console lock may be
//! held by this CPU.
#![deny(unsafe_code)]

use core::fmt::Write as _;
use core::panic::PanicInfo;

use crate::arch::{self, ExitCode};
use crate::console;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    x86_64::instructions::interrupts::disable();
    // Serialised: several CPUs failing at once print one report after another.
    console::panic_report(arch::cpu_index(), || {
        match info.location() {
            Some(at) => console::emergency_print(format_args!(
                "\nKERNEL PANIC on cpu{} at {at}\n  {}\n",
                arch::cpu_index(),
                info.message()
            )),
            None => console::emergency_print(format_args!(
                "\nKERNEL PANIC on cpu{}\n  {}\n",
                arch::cpu_index(),
                info.message()
            )),
        }
        let slot = crate::memory::layout::stack_slot(arch::cpu_index());
        let mut calls = [0u64; 16];
        let n = arch::park::return_addresses(slot.start, slot.end(), &mut calls);
        console::emergency_print(format_args!("  return addresses:"));
        for a in &calls[..n] {
            console::emergency_print(format_args!(" {a:#x}"));
        }
        console::emergency_print(format_args!("\n"));
    });
    if crate::handoff_region::undo()
        .armed
        .load(core::sync::atomic::Ordering::Acquire)
        != 0
    {
        // Inside a swap's health window: this kernel is new and failed; the swap is
        // taken back and the old kernel resumes (`arch::park`, the guard).
        let mut why = crate::update::bootstrap::FixedText::<160>::new();
        let _ = match info.location() {
            Some(at) => write!(why, "panic at {at}: {}", info.message()),
            None => write!(why, "panic: {}", info.message()),
        };
        crate::handoff_region::fail_window(updater::handoff::cause::PANIC, why.as_str());
    }
    arch::exit_qemu(ExitCode::Failure)
}
