//! x86_64 support. The rest of the kernel uses this interface:
//!
//! - [`gdt::init_this_cpu`], [`idt::load`]: descriptor tables of the calling CPU;
//! - [`pic::disable`], [`apic`], [`ioapic`]: interrupt controllers;
//! - [`tsc::read`], [`tsc::calibrate`]: the time stamp counter;
//! - [`acpi::read_platform`]: the processors and interrupt routing the firmware reports;
//! - [`smp::start_application_processors`]: INIT-SIPI-SIPI through the real-mode trampoline;
//! - [`percpu::install`], [`cpu_index`]: which CPU is running;
//! - [`fw_cfg::read_file`]: QEMU's firmware configuration (boot options);
//! - [`park`]: the stub parked CPUs wait in during a swap or a patch;
//! - [`halt`], [`exit_qemu`].

pub mod acpi;
pub mod apic;
pub mod fw_cfg;
pub mod gdt;
pub mod idt;
pub mod ioapic;
pub mod park;
pub mod percpu;
pub mod pic;
pub mod smp;
pub mod text;
pub mod tlb;
pub mod tsc;

use qemu_exit::QEMUExit;

/// Most CPUs the kernel supports (per-CPU tables here and above are this long).
pub const MAX_CPUS: usize = 16;

/// Index of the calling CPU (0 = bootstrap processor), or 0 before per-CPU data exists.
pub fn cpu_index() -> usize {
    percpu::current_index()
}

/// How the kernel leaves QEMU (device `isa-debug-exit` at port 0xf4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Written as 0x10; QEMU exits with status 33.
    Success,
    /// Written as 0x11; QEMU exits with status 35.
    Failure,
}

/// Ends the virtual machine with `code`. Never returns.
pub fn exit_qemu(code: ExitCode) -> ! {
    // 0x21 >> 1 = 0x10 is what `exit_success` writes.
    let device = qemu_exit::X86::new(0xf4, 0x21);
    match code {
        ExitCode::Success => device.exit_success(),
        ExitCode::Failure => device.exit(0x11),
    }
}
