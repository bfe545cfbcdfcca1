//! Starting application processors: INIT-SIPI-SIPI through a real-mode trampoline.
//!
//! The trampoline below is assembled into the image and copied at boot to the physical
//! page [`TRAMPOLINE_PHYS`] (below 1 MiB, identity-mapped by the memory code). An AP
//! starts there in real mode, loads a temporary GDT, enters protected mode, enables PAE,
//! long mode and paging with the kernel's own page tables (so CR3 must lie below 4 GiB),
//! and jumps to the 64-bit entry with its stack and argument taken from the slots at the
//! end of the page. The BSP fills those slots for one AP at a time and waits until that
//! AP has signalled it no longer needs them.

use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::registers::control::Cr3;

use super::{apic, tsc};
use crate::memory::layout::TRAMPOLINE_PHYS;

core::arch::global_asm!(
    r#"
    .section .text.hk_trampoline, "ax"
    .global hk_trampoline_start
    .global hk_trampoline_end
    .global hk_trampoline_cr3
    .global hk_trampoline_stack
    .global hk_trampoline_entry
    .global hk_trampoline_arg
    .set TRAMP, {base}

    .code16
hk_trampoline_start:
    cli
    cld
    mov ax, cs
    mov ds, ax
    lgdt [TRAMP_GDTR_OFFSET]
    mov eax, cr0
    or eax, 1
    mov cr0, eax
    // jmp far 0x08:(TRAMP + prot32 - start), 16-bit offset form
    .byte 0xea
    .word TRAMP + (2f - hk_trampoline_start)
    .word 0x08

    .code32
2:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov eax, cr4
    or eax, 1 << 5
    mov cr4, eax
    mov eax, [TRAMP_CR3_ADDRESS]
    mov cr3, eax
    mov ecx, 0xc0000080
    rdmsr
    or eax, (1 << 8) | (1 << 11)
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16) | 1
    mov cr0, eax
    // jmp far 0x18:(TRAMP + long64 - start), 32-bit offset form
    .byte 0xea
    .long TRAMP + (3f - hk_trampoline_start)
    .word 0x18

    .code64
3:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rsp, [rip + hk_trampoline_stack]
    mov rdi, [rip + hk_trampoline_arg]
    mov rax, [rip + hk_trampoline_entry]
    push 0
    jmp rax

    .balign 8
hk_trampoline_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00af9a000000ffff
hk_trampoline_gdtr:
    .word 4 * 8 - 1
    .long TRAMP + (hk_trampoline_gdt - hk_trampoline_start)
    .balign 8
hk_trampoline_cr3:   .quad 0
hk_trampoline_stack: .quad 0
hk_trampoline_entry: .quad 0
hk_trampoline_arg:   .quad 0
hk_trampoline_end:
    .set TRAMP_GDTR_OFFSET, hk_trampoline_gdtr - hk_trampoline_start
    .set TRAMP_CR3_ADDRESS, TRAMP + (hk_trampoline_cr3 - hk_trampoline_start)
    .text
    "#,
    base = const TRAMPOLINE_PHYS,
);

unsafe extern "C" {
    static hk_trampoline_start: u8;
    static hk_trampoline_end: u8;
    static hk_trampoline_cr3: u8;
    static hk_trampoline_stack: u8;
    static hk_trampoline_entry: u8;
    static hk_trampoline_arg: u8;
}

/// Set by an AP as soon as it runs Rust code: the trampoline's slots are free again.
static STARTED: AtomicBool = AtomicBool::new(false);

/// What an AP needs to start.
#[derive(Debug, Clone, Copy)]
pub struct ApStart {
    pub apic_id: u32,
    pub stack_top: u64,
    /// TSC ticks per millisecond (the waits of the INIT-SIPI-SIPI protocol).
    pub tsc_per_ms: u64,
    pub arg: u64,
}

/// Why an AP did not start.
#[derive(Debug, Clone, Copy)]
pub enum SmpError {
    /// The page tables lie above 4 GiB, out of reach of the 32-bit `mov cr3`.
    PageTablesAbove4G(u64),
    /// The AP never reached its entry.
    NoResponse { apic_id: u32 },
}

impl core::fmt::Display for SmpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SmpError::PageTablesAbove4G(a) => write!(
                f,
                "page-table root {a:#x} is above 4 GiB; APs cannot load it"
            ),
            SmpError::NoResponse { apic_id } => {
                write!(f, "CPU with APIC id {apic_id} did not start")
            }
        }
    }
}

/// Marks the calling AP as started; its entry calls this first.
pub fn signal_started() {
    STARTED.store(true, Ordering::Release);
}

fn offset_of(symbol: &u8) -> usize {
    // SAFETY: only taking addresses of the trampoline's labels.
    let start = unsafe { &hk_trampoline_start as *const u8 as usize };
    symbol as *const u8 as usize - start
}

/// Copies the trampoline to its physical page, reachable through `phys_offset`.
///
/// # Safety
/// - the page at [`TRAMPOLINE_PHYS`] must be reserved for the trampoline and
///   identity-mapped (executable) in the current page tables.
pub unsafe fn install_trampoline(phys_offset: u64) -> Result<(), SmpError> {
    let cr3 = Cr3::read().0.start_address().as_u64();
    if cr3 >= 1 << 32 {
        return Err(SmpError::PageTablesAbove4G(cr3));
    }
    // SAFETY: the trampoline labels delimit bytes of this image.
    let (start, len) = unsafe {
        let start = &hk_trampoline_start as *const u8;
        (
            start,
            &hk_trampoline_end as *const u8 as usize - start as usize,
        )
    };
    let page = (phys_offset + TRAMPOLINE_PHYS) as *mut u8;
    // SAFETY: the destination page is reserved for the trampoline (caller contract) and
    // mapped through the physical-memory mapping; the source is in the image.
    unsafe {
        core::ptr::copy_nonoverlapping(start, page, len);
        // SAFETY (numbered): 1. the slot offsets are inside the copied bytes;
        // 2. slots are 8-byte aligned in the assembly above.
        let cr3_slot = page.add(offset_of(&hk_trampoline_cr3)) as *mut u64;
        cr3_slot.write_volatile(cr3);
    }
    Ok(())
}

/// Starts one AP and waits until it runs `entry(arg)` on `stack_top`.
///
/// # Safety
/// - [`install_trampoline`] succeeded and nothing has overwritten the page since;
/// - `entry` must be a function that never returns and calls [`signal_started`] first;
/// - `stack_top` must be the top of a mapped stack owned by that AP.
pub unsafe fn start_ap(
    phys_offset: u64,
    ap: ApStart,
    entry: extern "C" fn(u64) -> !,
) -> Result<(), SmpError> {
    let page = (phys_offset + TRAMPOLINE_PHYS) as *mut u8;
    STARTED.store(false, Ordering::Release);
    // SAFETY: as in install_trampoline; the slots are inside the page.
    unsafe {
        (page.add(offset_of(&hk_trampoline_stack)) as *mut u64).write_volatile(ap.stack_top);
        (page.add(offset_of(&hk_trampoline_entry)) as *mut u64)
            .write_volatile(entry as usize as u64);
        (page.add(offset_of(&hk_trampoline_arg)) as *mut u64).write_volatile(ap.arg);
    }
    let vector = (TRAMPOLINE_PHYS >> 12) as u8;
    let wait = |ms: u64| tsc::read() + ms * ap.tsc_per_ms;
    apic::send_init(ap.apic_id);
    let settle = wait(10);
    while tsc::read() < settle {
        core::hint::spin_loop();
    }
    for _attempt in 0..2 {
        apic::send_startup(ap.apic_id, vector);
        // Under TCG a vCPU thread may wait for a host core: allow a generous bound.
        let deadline = wait(500);
        while tsc::read() < deadline {
            if STARTED.load(Ordering::Acquire) {
                return Ok(());
            }
            core::hint::spin_loop();
        }
    }
    Err(SmpError::NoResponse {
        apic_id: ap.apic_id,
    })
}
