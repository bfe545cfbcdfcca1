//! The panic handler: print where and why on COM1 — and the return addresses on the
//! panicking CPU's stack (frame pointers are kept: `addr2line -e kernel.elf` names
//! them) — then leave QEMU with the failure code. It writes to the port without taking
//! the console lock, which this CPU may already hold.
#![deny(unsafe_code)]

use core::panic::PanicInfo;

use crate::arch::{self, ExitCode};
use crate::console;

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    x86_64::instructions::interrupts::disable();
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
    arch::exit_qemu(ExitCode::Failure)
}
