//! The local APIC in xAPIC (MMIO) mode: identity, end of interrupt, inter-processor
//! interrupts and the per-CPU timer.
//!
//! The register page is mapped uncached in the device window by the memory code; its
//! address is set once with [`set_base`] and shared by every CPU (each CPU sees its own
//! APIC at the same physical address). After a swap the new kernel adopts the mapping
//! from the machine record and calls [`set_base`] again.
//!
//! Why not the `x2apic` crate: we need xAPIC MMIO through our own mapping, explicit
//! waits on the ICR delivery status, and to reprogram an APIC that an earlier kernel
//! left running; its builder owns all of that.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::registers::model_specific::Msr;

const IA32_APIC_BASE: u32 = 0x1b;

mod reg {
    pub const ID: usize = 0x20;
    pub const TPR: usize = 0x80;
    pub const EOI: usize = 0xb0;
    pub const ISR: usize = 0x100;
    pub const SVR: usize = 0xf0;
    pub const ESR: usize = 0x280;
    pub const ICR_LOW: usize = 0x300;
    pub const ICR_HIGH: usize = 0x310;
    pub const LVT_TIMER: usize = 0x320;
    pub const LVT_LINT0: usize = 0x350;
    pub const LVT_ERROR: usize = 0x370;
    pub const TIMER_INITIAL: usize = 0x380;
    pub const TIMER_CURRENT: usize = 0x390;
    pub const TIMER_DIVIDE: usize = 0x3e0;
}

const LVT_MASKED: u32 = 1 << 16;
const TIMER_PERIODIC: u32 = 1 << 17;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_ALL_EXCLUDING_SELF: u32 = 0b11 << 18;

/// Divide configuration 0b1011 = divide by 1.
const TIMER_DIVIDE_BY_1: u32 = 0b1011;

static BASE: AtomicU64 = AtomicU64::new(0);

/// Records where the register page is mapped (virtual, uncached).
pub fn set_base(virt: u64) {
    BASE.store(virt, Ordering::Release);
}

fn read(offset: usize) -> u32 {
    let base = BASE.load(Ordering::Relaxed);
    debug_assert!(base != 0, "local APIC used before it was mapped");
    // SAFETY: `base` is the uncached mapping of this CPU's APIC page (set_base), and
    // `offset` is one of the aligned 32-bit registers in `reg`.
    unsafe { core::ptr::read_volatile((base as usize + offset) as *const u32) }
}

fn write(offset: usize, value: u32) {
    let base = BASE.load(Ordering::Relaxed);
    debug_assert!(base != 0, "local APIC used before it was mapped");
    // SAFETY: as in `read`; writes to these registers have the documented effects only.
    unsafe { core::ptr::write_volatile((base as usize + offset) as *mut u32, value) }
}

/// Enables the calling CPU's APIC: spurious vector, error vector, priority 0, LINT0
/// masked (the legacy PIC is not used), LINT1 left as NMI.
pub fn enable_this_cpu(spurious_vector: u8, error_vector: u8) {
    // SAFETY: setting the global-enable bit of IA32_APIC_BASE keeps the APIC at its
    // current address; it is already enabled by firmware on every CPU QEMU emulates.
    unsafe {
        let mut msr = Msr::new(IA32_APIC_BASE);
        let value = msr.read();
        msr.write(value | (1 << 11));
    }
    write(reg::TPR, 0);
    write(reg::LVT_LINT0, LVT_MASKED);
    write(reg::LVT_ERROR, error_vector as u32);
    write(reg::ESR, 0);
    write(reg::SVR, 0x100 | spurious_vector as u32);
    end_of_interrupt();
}

/// Virtual address of the end-of-interrupt register (for code outside this module that
/// must acknowledge interrupts itself, like the park stub).
pub fn eoi_address() -> u64 {
    BASE.load(Ordering::Acquire) + reg::EOI as u64
}

/// The calling CPU's APIC id.
pub fn id() -> u32 {
    read(reg::ID) >> 24
}

/// Signals the end of the interrupt being handled.
pub fn end_of_interrupt() {
    write(reg::EOI, 0);
}

/// Acknowledges every interrupt the calling CPU's APIC still counts as in service. A
/// revert can leave the bootstrap processor's interrupted handler unacknowledged — the
/// guard's NMI may come in the middle of one — and the resumed kernel would then never
/// see that vector (or any below its priority) again. Each end of interrupt clears the
/// highest bit of the in-service register; there are at most 256.
pub fn clear_in_service() {
    for _ in 0..256 {
        if (0..8).all(|i| read(reg::ISR + 0x10 * i) == 0) {
            return;
        }
        end_of_interrupt();
    }
}

/// Reads (and clears) the error status register.
pub fn read_error_status() -> u32 {
    write(reg::ESR, 0);
    read(reg::ESR)
}

fn wait_for_delivery() {
    while read(reg::ICR_LOW) & ICR_DELIVERY_PENDING != 0 {
        core::hint::spin_loop();
    }
}

fn send(destination: u32, command: u32) {
    wait_for_delivery();
    write(reg::ICR_HIGH, destination << 24);
    write(reg::ICR_LOW, command);
    wait_for_delivery();
}

/// Sends a fixed interrupt `vector` to every CPU but the caller.
pub fn send_ipi_to_others(vector: u8) {
    send(0, ICR_ALL_EXCLUDING_SELF | vector as u32);
}

/// INIT IPI (assert), the first step of starting an application processor.
pub fn send_init(destination: u32) {
    send(destination, ICR_INIT | ICR_LEVEL_ASSERT);
}

/// STARTUP IPI: the target starts in real mode at physical `page << 12`.
pub fn send_startup(destination: u32, page: u8) {
    send(destination, ICR_STARTUP | page as u32);
}

/// Starts the timer in periodic mode: `vector` every `initial_count` bus clocks.
pub fn start_periodic_timer(vector: u8, initial_count: u32) {
    write(reg::TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
    write(reg::LVT_TIMER, TIMER_PERIODIC | vector as u32);
    write(reg::TIMER_INITIAL, initial_count);
}

/// Stops (and masks) the timer.
pub fn stop_timer() {
    write(reg::LVT_TIMER, LVT_MASKED);
    write(reg::TIMER_INITIAL, 0);
}

/// Measures the timer's input clock against the TSC: returns timer counts per
/// `tsc_ticks` TSC ticks. The timer is left stopped.
pub fn measure_timer(tsc_ticks: u64) -> u32 {
    write(reg::TIMER_DIVIDE, TIMER_DIVIDE_BY_1);
    write(reg::LVT_TIMER, LVT_MASKED);
    write(reg::TIMER_INITIAL, u32::MAX);
    let start = super::tsc::read();
    while super::tsc::read() - start < tsc_ticks {
        core::hint::spin_loop();
    }
    let remaining = read(reg::TIMER_CURRENT);
    stop_timer();
    u32::MAX - remaining
}
