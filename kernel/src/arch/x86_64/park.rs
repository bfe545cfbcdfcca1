//! The park stub: where a CPU waits while another CPU swaps or patches the kernel.
//!
//! The stub is position-independent code assembled into the image and copied at first
//! boot into the hand-off region, so a parked CPU executes nothing in either image. On
//! entry it switches to a GDT and IDT that also live in the hand-off region (NMI →
//! `iretq`, every exception → a stub that writes `!` to COM1 and exits QEMU with the
//! failure code, every other vector → end of interrupt and return), acknowledges with a
//! timestamp, and halts — interrupts enabled only between the check of the release
//! generation and the `hlt`, atomically (`sti; hlt`) — until the release generation
//! reaches its own. A wake IPI ends the halt; the CPU's APIC timer keeps ticking, so a
//! lost IPI delays the release by one tick at most. Then it either returns into the kernel it came
//! from (restoring that kernel's GDT and IDT) or jumps to the new kernel's AP entry on a
//! fresh stack, as the control block says.
//!
//! A CPU going to a new kernel reloads CR3 first: the overlay may have pointed the
//! image's pages at other frames, and this CPU's TLB still holds the old translations.
//!
//! Register contract of the entry (`call`ed): `rdi` = park slot, `rsi` = park control,
//! `rdx` = generation. Clobbers `rax`, `rdx`, `r8` and flags. The field offsets used
//! below are pinned by `updater::handoff`'s tests.

use updater::handoff::{ParkControl, ParkSlot, TableRegister};

core::arch::global_asm!(
    r#"
    .section .text.hk_park, "ax"
    .global hk_park_stub_start
    .global hk_park_stub_end
    .global hk_park_enter
    .global hk_park_nmi
    .global hk_park_fatal
    .global hk_park_irq
hk_park_stub_start:
hk_park_enter:
    mov r8, rdx
    sgdt [rdi + 176]
    sidt [rdi + 192]
    lgdt [rsi + 32]
    lidt [rsi + 48]
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov [rdi + 24], rax
    mov [rdi + 16], r8
    lock inc dword ptr [rsi + 16]
2:
    mov rax, [rsi + 8]
    cmp rax, r8
    jae 5f
    sti
    hlt
    cli
    jmp 2b
5:
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov [rdi + 32], rax
    mov rax, [rsi + 24]
    test rax, rax
    jnz 3f
    lgdt [rdi + 176]
    lidt [rdi + 192]
    ret
3:
    mov rdx, cr3
    mov cr3, rdx
    mov rsp, [rdi + 8]
    mov rdi, [rdi + 0]
    xor ebp, ebp
    push 0
    jmp rax
hk_park_nmi:
    iretq
    // A device or IPI vector: acknowledge it at the local APIC and return. The control
    // block lies one page after the stub page; its EOI address is at offset 64.
hk_park_irq:
    push rax
    mov rax, [rip + hk_park_stub_start + 0x1000 + 64]
    mov dword ptr [rax], 0
    pop rax
    iretq
hk_park_fatal:
    mov dx, 0x3f8
    mov al, 0x21
    out dx, al
    mov dx, 0xf4
    mov eax, 0x11
    out dx, eax
4:
    cli
    hlt
    jmp 4b
hk_park_stub_end:
    .text
    "#
);

unsafe extern "C" {
    static hk_park_stub_start: u8;
    static hk_park_stub_end: u8;
    static hk_park_enter: u8;
    static hk_park_nmi: u8;
    static hk_park_fatal: u8;
    static hk_park_irq: u8;
}

fn offset_in_stub(symbol: &u8) -> u64 {
    // SAFETY: only addresses of the stub's labels are taken.
    let start = unsafe { &hk_park_stub_start as *const u8 as u64 };
    symbol as *const u8 as u64 - start
}

/// Where the stub's entry is once installed at `stub_page`.
pub fn entry_address(stub_page: u64) -> u64 {
    // SAFETY: label address only.
    stub_page + offset_in_stub(unsafe { &hk_park_enter })
}

/// Copies the stub into `stub_page` and builds the parked CPUs' GDT at `gdt_page` and
/// IDT at `idt_page`, recording their registers in `control`, with `lapic_eoi` the
/// virtual address of the local APIC's EOI register. The control block must be the page
/// right after `stub_page` (the interrupt handler finds it there).
///
/// # Safety
/// - the three pages must be mapped writable, belong to the hand-off region, and no CPU
///   may be parked (executing the stub) while they are rewritten;
/// - the caller makes `stub_page` executable (and read-only) afterwards.
pub unsafe fn install(
    stub_page: u64,
    gdt_page: u64,
    idt_page: u64,
    control: &mut ParkControl,
    lapic_eoi: u64,
) {
    assert_eq!(
        control as *mut ParkControl as u64,
        stub_page + 0x1000,
        "control block must follow the stub page"
    );
    // SAFETY: the stub labels delimit bytes of this image; the destination page is
    // writable and unused (caller contract), and the stub is far smaller than a page.
    unsafe {
        let start = &hk_park_stub_start as *const u8;
        let len = &hk_park_stub_end as *const u8 as usize - start as usize;
        assert!(len <= 4096, "park stub larger than a page");
        core::ptr::copy_nonoverlapping(start, stub_page as *mut u8, len);
    }
    // GDT: null, 64-bit kernel code (0x08), kernel data (0x10) — the same selectors as
    // every kernel's own GDT, so the loaded CS and SS stay valid.
    let gdt = [0u64, 0x00af_9a00_0000_ffff, 0x00cf_9200_0000_ffff];
    for (i, entry) in gdt.iter().enumerate() {
        // SAFETY: gdt_page is writable (caller contract); 3 entries fit.
        unsafe { (gdt_page as *mut u64).add(i).write_volatile(*entry) };
    }
    control.gdtr = TableRegister {
        limit: (gdt.len() * 8 - 1) as u16,
        base: gdt_page,
    };
    // IDT: exceptions are fatal except NMI, which returns at once; the spurious vector
    // returns without EOI; every other vector is acknowledged and returns.
    // SAFETY: label addresses only.
    let (nmi, fatal, irq) = unsafe {
        (
            offset_in_stub(&hk_park_nmi),
            offset_in_stub(&hk_park_fatal),
            offset_in_stub(&hk_park_irq),
        )
    };
    for vector in 0..256u64 {
        let handler = stub_page
            + match vector {
                2 | 0xff => nmi,
                0..=31 => fatal,
                _ => irq,
            };
        let low = (handler & 0xffff) | 0x08 << 16 | 0x8e << 40 | ((handler >> 16) & 0xffff) << 48;
        let high = handler >> 32;
        // SAFETY: idt_page is writable (caller contract); 256 entries of 16 bytes fit.
        unsafe {
            (idt_page as *mut u64)
                .add(2 * vector as usize)
                .write_volatile(low);
            (idt_page as *mut u64)
                .add(2 * vector as usize + 1)
                .write_volatile(high);
        }
    }
    control.idtr = TableRegister {
        limit: 256 * 16 - 1,
        base: idt_page,
    };
    control
        .lapic_eoi
        .store(lapic_eoi, core::sync::atomic::Ordering::Relaxed);
}

/// Parks the calling CPU: calls the installed stub, which returns only if the CPU is
/// released back into this kernel.
///
/// # Safety
/// - interrupts must be disabled;
/// - `entry` must be the installed stub's entry, `slot` the calling CPU's slot and
///   `control` the park control block, all in the hand-off region;
/// - if the release sends the CPU to a new kernel, nothing on this CPU's stack is used
///   again.
pub unsafe fn park(entry: u64, slot: &ParkSlot, control: &ParkControl, generation: u64) {
    // SAFETY: caller contract; the stub follows the register contract in the module doc
    // and clobbers only caller-saved registers.
    unsafe {
        core::arch::asm!(
            "call {entry}",
            entry = in(reg) entry,
            in("rdi") slot as *const ParkSlot,
            in("rsi") control as *const ParkControl,
            in("rdx") generation,
            clobber_abi("C"),
        );
    }
}

/// Return addresses on the calling CPU's stack, by walking frame pointers while they
/// stay inside `[stack_low, stack_high)`.
pub fn return_addresses(stack_low: u64, stack_high: u64, out: &mut [u64]) -> usize {
    let mut rbp: u64;
    // SAFETY: reading rbp has no side effects.
    unsafe {
        core::arch::asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags))
    };
    let mut n = 0;
    while n < out.len() && rbp >= stack_low && rbp + 16 <= stack_high && rbp.is_multiple_of(8) {
        // Frame pointers: [rbp] is the caller's rbp, [rbp+8] a return address.
        // SAFETY: rbp lies inside this CPU's mapped stack (checked above).
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        out[n] = ret;
        n += 1;
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    n
}
