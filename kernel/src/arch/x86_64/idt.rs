//! The interrupt descriptor table, shared by every CPU.
//!
//! Every exception has a handler that names it and stops the kernel through a panic
//! (which exits QEMU with the failure code); a page fault also prints the faulting
//! address and error code. Device vectors call the handlers boot registers with
//! [`set_handlers`] (the kernel's `irq` module owns what an interrupt means); this module
//! only owns the vector numbers and the entry stubs, and imports nothing above `arch`.

use core::sync::atomic::{AtomicU64, Ordering};

use spin::Once;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode};

use super::{apic, gdt};

/// Interrupt vectors in use.
pub mod vector {
    /// Legacy PIC vectors after remapping (all masked; spurious ones land here).
    pub const PIC_BASE: u8 = 0x20;
    /// COM2 (the mailbox doorbell), ISA IRQ 3.
    pub const COM2: u8 = 0x33;
    /// COM1 (console input), ISA IRQ 4.
    pub const COM1: u8 = 0x34;
    /// Local APIC timer: the scheduling tick.
    pub const TIMER: u8 = 0x40;
    /// Wakes a halted CPU so it sees a park request (the handler only acknowledges).
    pub const WAKE: u8 = 0xf2;
    /// Local APIC error.
    pub const APIC_ERROR: u8 = 0xfe;
    /// Local APIC spurious interrupt (no EOI).
    pub const SPURIOUS: u8 = 0xff;
}

static IDT: Once<InterruptDescriptorTable> = Once::new();

/// CPUs (by index) that run on a guard IDT (a swap's health window, see `arch::park`).
static GUARDED: [core::sync::atomic::AtomicBool; updater::handoff::MAX_CPUS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; updater::handoff::MAX_CPUS];

/// What the device vectors do: each runs with interrupts disabled, before the end of
/// interrupt is sent, and must not allocate or take a lock that task code holds with
/// interrupts enabled.
#[derive(Debug, Clone, Copy)]
pub struct Handlers {
    /// The local APIC timer (every CPU).
    pub timer: fn(),
    /// COM1 input (the console).
    pub com1: fn(),
    /// COM2 input (the mailbox doorbell).
    pub com2: fn(),
}

static HANDLERS: Once<Handlers> = Once::new();

/// Registers the device handlers (boot and resume, before interrupts are enabled).
pub fn set_handlers(handlers: Handlers) {
    HANDLERS.call_once(|| handlers);
}

fn handle(pick: fn(&Handlers) -> fn()) {
    if let Some(h) = HANDLERS.get() {
        pick(h)();
    }
}

/// Builds the IDT on first use and loads it on the calling CPU (CPU index `cpu`).
pub fn load(cpu: usize) {
    IDT.call_once(build).load();
    if let Some(g) = GUARDED.get(cpu) {
        g.store(false, Ordering::Relaxed);
    }
}

/// Loads the guard IDT at `guard` on the calling CPU (CPU index `cpu`) instead of this
/// kernel's: its exception and NMI gates are the guard's, its device vectors (32–255)
/// this kernel's, copied in (the copy is the same for every CPU).
///
/// # Safety
/// - `guard` is a writable 4 KiB IDT in the hand-off region whose gates 0–31 the guard
///   owns, that no CPU uses for vectors 32–255 while they are rewritten (every CPU that
///   loaded it already holds the same gates there).
pub unsafe fn load_guarded(cpu: usize, guard: u64) {
    let own = IDT.call_once(build) as *const InterruptDescriptorTable as *const u64;
    for word in 64..512 {
        // SAFETY: both tables are 256 gates of 16 bytes; the guard's are writable
        // (caller contract); gate by gate, the value written is this kernel's.
        unsafe {
            (guard as *mut u64)
                .add(word)
                .write_volatile(own.add(word).read())
        };
    }
    let pointer = x86_64::structures::DescriptorTablePointer {
        limit: 256 * 16 - 1,
        base: x86_64::VirtAddr::new(guard),
    };
    // SAFETY: the guard IDT lives for the kernel's life (hand-off region) and every gate
    // in it is valid (caller contract and the copy above).
    unsafe { x86_64::instructions::tables::lidt(&pointer) };
    if let Some(g) = GUARDED.get(cpu) {
        g.store(true, Ordering::Relaxed);
    }
}

/// Whether the calling CPU (index `cpu`) runs on a guard IDT.
pub fn guarded(cpu: usize) -> bool {
    GUARDED.get(cpu).is_some_and(|g| g.load(Ordering::Relaxed))
}

fn build() -> InterruptDescriptorTable {
    let mut idt = InterruptDescriptorTable::new();
    idt.divide_error.set_handler_fn(divide_error);
    idt.debug.set_handler_fn(debug);
    idt.non_maskable_interrupt.set_handler_fn(nmi);
    idt.breakpoint.set_handler_fn(breakpoint);
    idt.overflow.set_handler_fn(overflow);
    idt.bound_range_exceeded
        .set_handler_fn(bound_range_exceeded);
    idt.invalid_opcode.set_handler_fn(invalid_opcode);
    idt.device_not_available
        .set_handler_fn(device_not_available);
    // SAFETY: the IST index names a stack every CPU's TSS sets (gdt::init_this_cpu).
    unsafe {
        idt.double_fault
            .set_handler_fn(double_fault)
            .set_stack_index(gdt::DOUBLE_FAULT_IST_INDEX);
    }
    idt.invalid_tss.set_handler_fn(invalid_tss);
    idt.segment_not_present.set_handler_fn(segment_not_present);
    idt.stack_segment_fault.set_handler_fn(stack_segment_fault);
    idt.general_protection_fault
        .set_handler_fn(general_protection_fault);
    idt.page_fault.set_handler_fn(page_fault);
    idt.x87_floating_point.set_handler_fn(x87_floating_point);
    idt.alignment_check.set_handler_fn(alignment_check);
    idt.machine_check.set_handler_fn(machine_check);
    idt.simd_floating_point.set_handler_fn(simd_floating_point);
    idt.virtualization.set_handler_fn(virtualization);
    idt.cp_protection_exception.set_handler_fn(cp_protection);
    idt.hv_injection_exception.set_handler_fn(hv_injection);
    idt.vmm_communication_exception
        .set_handler_fn(vmm_communication);
    idt.security_exception.set_handler_fn(security_exception);

    for v in vector::PIC_BASE..vector::PIC_BASE + 16 {
        idt[v].set_handler_fn(legacy_pic_spurious);
    }
    idt[vector::COM2].set_handler_fn(com2);
    idt[vector::COM1].set_handler_fn(com1);
    idt[vector::TIMER].set_handler_fn(timer);
    idt[vector::WAKE].set_handler_fn(wake);
    idt[vector::APIC_ERROR].set_handler_fn(apic_error);
    idt[vector::SPURIOUS].set_handler_fn(spurious);
    idt
}

macro_rules! fatal_exception {
    ($name:ident, $text:literal) => {
        extern "x86-interrupt" fn $name(frame: InterruptStackFrame) {
            panic!(concat!("exception: ", $text, "\n{:#?}"), frame);
        }
    };
    ($name:ident, $text:literal, code) => {
        extern "x86-interrupt" fn $name(frame: InterruptStackFrame, code: u64) {
            panic!(
                concat!("exception: ", $text, " (error code {:#x})\n{:#?}"),
                code, frame
            );
        }
    };
}

fatal_exception!(divide_error, "divide error");
fatal_exception!(debug, "debug");
fatal_exception!(breakpoint, "breakpoint");
fatal_exception!(overflow, "overflow");
fatal_exception!(bound_range_exceeded, "bound range exceeded");
fatal_exception!(invalid_opcode, "invalid opcode");
fatal_exception!(device_not_available, "device not available");
fatal_exception!(invalid_tss, "invalid TSS", code);
fatal_exception!(segment_not_present, "segment not present", code);
fatal_exception!(stack_segment_fault, "stack-segment fault", code);
fatal_exception!(general_protection_fault, "general protection fault", code);
fatal_exception!(x87_floating_point, "x87 floating point");
fatal_exception!(alignment_check, "alignment check", code);
fatal_exception!(simd_floating_point, "SIMD floating point");
fatal_exception!(virtualization, "virtualization");
fatal_exception!(cp_protection, "control protection", code);
fatal_exception!(hv_injection, "hypervisor injection");
fatal_exception!(vmm_communication, "VMM communication", code);
fatal_exception!(security_exception, "security exception", code);

/// NMIs seen (an NMI may arrive while this CPU holds the console lock, so it only counts).
pub static NMI_COUNT: AtomicU64 = AtomicU64::new(0);

extern "x86-interrupt" fn nmi(_frame: InterruptStackFrame) {
    NMI_COUNT.fetch_add(1, Ordering::Relaxed);
}

extern "x86-interrupt" fn machine_check(frame: InterruptStackFrame) -> ! {
    panic!("exception: machine check\n{:#?}", frame);
}

extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, code: u64) -> ! {
    panic!(
        "exception: double fault (error code {:#x})\n{:#?}",
        code, frame
    );
}

extern "x86-interrupt" fn page_fault(frame: InterruptStackFrame, code: PageFaultErrorCode) {
    let address = Cr2::read_raw();
    panic!(
        "exception: page fault at {:#x} ({:?}, error code {:#x}) from rip {:#x}",
        address,
        code,
        code.bits(),
        frame.instruction_pointer.as_u64()
    );
}

extern "x86-interrupt" fn legacy_pic_spurious(_frame: InterruptStackFrame) {
    // The legacy PICs are masked; a spurious IRQ 7/15 needs no acknowledgement.
}

extern "x86-interrupt" fn timer(_frame: InterruptStackFrame) {
    handle(|h| h.timer);
    apic::end_of_interrupt();
}

extern "x86-interrupt" fn com1(_frame: InterruptStackFrame) {
    handle(|h| h.com1);
    apic::end_of_interrupt();
}

extern "x86-interrupt" fn com2(_frame: InterruptStackFrame) {
    handle(|h| h.com2);
    apic::end_of_interrupt();
}

extern "x86-interrupt" fn wake(_frame: InterruptStackFrame) {
    apic::end_of_interrupt();
}

extern "x86-interrupt" fn apic_error(_frame: InterruptStackFrame) {
    let status = apic::read_error_status();
    log::error!("local APIC error, ESR {:#x}", status);
    apic::end_of_interrupt();
}

extern "x86-interrupt" fn spurious(_frame: InterruptStackFrame) {}
