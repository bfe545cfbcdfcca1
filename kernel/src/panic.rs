//! The panic handler: print where and why on COM1, then leave QEMU with the failure
//! code. It writes to the port without taking the console lock, which this CPU may
//! already hold.
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
    arch::exit_qemu(ExitCode::Failure)
}
