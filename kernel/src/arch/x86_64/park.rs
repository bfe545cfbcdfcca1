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
//! fresh stack, as the control block says — read before it stamps `release_tsc`, which
//! tells the coordinator it may change that for the next park.
//!
//! A CPU going to a new kernel reloads CR3 first: the overlay may have pointed the
//! image's pages at other frames, and this CPU's TLB still holds the old translations.
//!
//! Register contract of the entry (`call`ed): `rdi` = park slot, `rsi` = park control,
//! `rdx` = generation. Clobbers `rax`, `rdx`, `r8` and flags. The field offsets used
//! below are pinned by `updater::handoff`'s tests.
//!
//! **The guard** (the same page): the code that reverts a swap whose new kernel fails
//! inside its health window (`updater::handoff::Undo`). During the window every CPU
//! runs on the guard IDT, also in the hand-off region: exceptions 0–31 enter
//! `hk_guard_exception` (the vector, RIP, error code and CR2 are recorded), NMI enters
//! `hk_guard_nmi`, and the device vectors are the new kernel's own gates (it copies
//! them in). The new kernel's panic handler and health check enter `hk_guard_trigger`
//! (`edi` = the cause). The first CPU to fail raises a park generation; every CPU but
//! the bootstrap processor sends it an NMI and parks; the bootstrap processor, on the
//! hand-off stack, NMIs the others, waits (bounded) for them to park, writes back the
//! page-table entries of the undo log (the old image is mapped again), copies the old
//! image's first-boot writable pages over it, and jumps to the old image's resume entry
//! with the descriptor — the old kernel then starts as after a swap, from its own
//! exported records, and releases the parked CPUs into its AP entry.

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
    // Where to go, read before the release is stamped: a coordinator that sees the stamp
    // may set the entry for its next park (`quiesce::park_others`).
    mov r8, [rsi + 24]
    rdtsc
    shl rdx, 32
    or rax, rdx
    mov [rdi + 32], rax
    test r8, r8
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
    jmp r8
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

    // ---- the guard: exception entries, 16 bytes each, vector = (entry - base) / 16 ----
    .balign 16
hk_guard_exceptions:
    .irp v, 0,1,2,3,4,5,6,7
    .balign 16
    push 0
    push \v
    jmp hk_guard_exception
    .endr
    .balign 16
    push 8
    jmp hk_guard_exception
    .balign 16
    push 0
    push 9
    jmp hk_guard_exception
    .irp v, 10,11,12,13,14
    .balign 16
    push \v
    jmp hk_guard_exception
    .endr
    .irp v, 15,16
    .balign 16
    push 0
    push \v
    jmp hk_guard_exception
    .endr
    .balign 16
    push 17
    jmp hk_guard_exception
    .irp v, 18,19,20
    .balign 16
    push 0
    push \v
    jmp hk_guard_exception
    .endr
    .balign 16
    push 21
    jmp hk_guard_exception
    .irp v, 22,23,24,25,26,27,28
    .balign 16
    push 0
    push \v
    jmp hk_guard_exception
    .endr
    .irp v, 29,30
    .balign 16
    push \v
    jmp hk_guard_exception
    .endr
    .balign 16
    push 0
    push 31
    jmp hk_guard_exception

    // An exception: [rsp] vector, [rsp+8] error code, [rsp+16] RIP. The first failure
    // is recorded (cause 1), then the revert.
hk_guard_exception:
    cli
    lea r11, [rip + hk_park_stub_start + 0x6000]
    xor eax, eax
    mov ecx, 1
    lock cmpxchg dword ptr [r11 + 8], ecx
    jne 20f
    mov rax, [rsp]
    mov dword ptr [r11 + 12], eax
    mov rax, [rsp + 8]
    mov [r11 + 40], rax
    mov rax, [rsp + 16]
    mov [r11 + 32], rax
    mov rax, cr2
    mov [r11 + 48], rax
    mov rax, [r11 + 56]
    mov eax, dword ptr [rax + 0x20]
    shr eax, 24
    mov dword ptr [r11 + 16], eax
20:
    jmp hk_guard_fail

    // Called by the new kernel (panic, missed deadline): edi = the cause.
hk_guard_trigger:
    cli
    lea r11, [rip + hk_park_stub_start + 0x6000]
    xor eax, eax
    lock cmpxchg dword ptr [r11 + 8], edi
    jne 21f
    mov rax, [r11 + 56]
    mov eax, dword ptr [rax + 0x20]
    shr eax, 24
    mov dword ptr [r11 + 16], eax
21:
    jmp hk_guard_fail

    // NMI during the window: a revert in progress parks this CPU (or, on the bootstrap
    // processor, does the revert); otherwise it returns.
hk_guard_nmi:
    push rax
    lea rax, [rip + hk_park_stub_start + 0x6000]
    cmp dword ptr [rax + 4], 0
    pop rax
    jne hk_guard_fail
    iretq

    // Any CPU, interrupts off. The first one raises the park generation of the revert
    // (reverting: 0 → 1 while it does, → 2 when the generation is raised).
hk_guard_fail:
    cli
    lea r11, [rip + hk_park_stub_start + 0x6000]
    lea rsi, [rip + hk_park_stub_start + 0x1000]
    xor eax, eax
    mov ecx, 1
    lock cmpxchg dword ptr [r11 + 4], ecx
    jne 22f
    mov dword ptr [rsi + 16], 0
    lock inc qword ptr [rsi]
    mov dword ptr [r11 + 4], 2
22:
    cmp dword ptr [r11 + 4], 2
    je 23f
    pause
    jmp 22b
23:
    mov rax, [r11 + 56]
    mov eax, dword ptr [rax + 0x20]
    shr eax, 24
    cmp eax, dword ptr [r11 + 20]
    je hk_guard_revert
    // Not the bootstrap processor: make sure it knows (an NMI reaches it even with
    // interrupts off), then park.
    mov rcx, [r11 + 56]
    mov edx, dword ptr [r11 + 20]
    shl edx, 24
    mov dword ptr [rcx + 0x310], edx
    mov dword ptr [rcx + 0x300], 0x4400
    lea rdi, [rsi + 128]
    mov ecx, 16
24:
    cmp qword ptr [rdi + 208], rax
    je 25f
    add rdi, 256
    dec ecx
    jnz 24b
26:
    cli
    hlt
    jmp 26b
25:
    mov rdx, [rsi]
    call hk_park_enter
    jmp 26b

    // The bootstrap processor undoes the swap.
hk_guard_revert:
    lgdt [rsi + 32]
    lidt [rsi + 48]
    lea rsp, [rip + hk_park_stub_start + 0x1f000]
    mov rax, [r11 + 56]
    mov dword ptr [rax + 0x310], 0
    mov dword ptr [rax + 0x300], 0xc4400
    rdtsc
    shl rdx, 32
    or rax, rdx
    add rax, [r11 + 88]
    mov r9, rax
    mov ecx, dword ptr [r11 + 24]
    dec ecx
27:
    cmp dword ptr [rsi + 16], ecx
    jae 28f
    rdtsc
    shl rdx, 32
    or rax, rdx
    cmp rax, r9
    jae 28f
    pause
    jmp 27b
28:
    // The old image's page-table entries, then a TLB flush.
    mov ecx, dword ptr [r11 + 96]
    lea r8, [r11 + 104]
29:
    test ecx, ecx
    jz 30f
    mov rax, [r8]
    mov rdx, [r8 + 8]
    mov [rax], rdx
    add r8, 16
    dec ecx
    jmp 29b
30:
    mov rax, cr3
    mov cr3, rax
    // Its statics as they were before it first ran (read-only-after-relocation pages
    // among them: written with CR0.WP clear).
    mov rax, cr0
    btr rax, 16
    mov cr0, rax
    mov r10d, dword ptr [r11 + 100]
    lea r8, [r11 + 104 + 16 * 2048]
31:
    test r10d, r10d
    jz 32f
    mov rdi, [r8]
    mov rsi, [r8 + 8]
    mov ecx, 512
    rep movsq
    add r8, 16
    dec r10d
    jmp 31b
32:
    mov rax, cr0
    bts rax, 16
    mov cr0, rax
    lea rdi, [rip + hk_park_stub_start - 0x1000]
    jmp qword ptr [r11 + 64]
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
    static hk_guard_exceptions: u8;
    static hk_guard_nmi: u8;
    static hk_guard_trigger: u8;
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

/// Where the guard's trigger (`edi` = cause) is once the stub is installed at
/// `stub_page`.
pub fn guard_trigger_address(stub_page: u64) -> u64 {
    // SAFETY: label address only.
    stub_page + offset_in_stub(unsafe { &hk_guard_trigger })
}

/// One IDT gate (interrupt gate, kernel code selector 0x08, present, DPL 0).
fn gate(handler: u64, ist: u64) -> (u64, u64) {
    let low = (handler & 0xffff)
        | 0x08 << 16
        | (ist & 7) << 32
        | 0x8e << 40
        | ((handler >> 16) & 0xffff) << 48;
    (low, handler >> 32)
}

/// Writes gate `vector` of the IDT at `idt`.
///
/// # Safety
/// - `idt` is a writable 4 KiB IDT that no CPU uses while it is rewritten, or whose
///   entry changes from one valid gate to another.
unsafe fn write_gate(idt: u64, vector: u64, (low, high): (u64, u64)) {
    // SAFETY: caller contract; 256 entries of 16 bytes fit the page.
    unsafe {
        (idt as *mut u64)
            .add(2 * vector as usize)
            .write_volatile(low);
        (idt as *mut u64)
            .add(2 * vector as usize + 1)
            .write_volatile(high);
    }
}

/// Copies the stub into `stub_page` and builds the parked CPUs' GDT at `gdt_page` and
/// IDT at `idt_page` and the guard IDT at `guard_idt_page` (exceptions and NMI to the
/// guard, every other vector acknowledged until a new kernel copies its own gates in),
/// recording the registers in `control`, with `lapic_eoi` the virtual address of the
/// local APIC's EOI register. The control block must be the page right after
/// `stub_page` (the interrupt handler finds it there), and the undo log at
/// `stub_page + 0x6000`.
///
/// # Safety
/// - the three pages must be mapped writable, belong to the hand-off region, and no CPU
///   may be parked (executing the stub) while they are rewritten;
/// - the caller makes `stub_page` executable (and read-only) afterwards.
pub unsafe fn install(
    stub_page: u64,
    gdt_page: u64,
    idt_page: u64,
    guard_idt_page: u64,
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
        // The guard's entries are found by their place: 16 bytes each.
        debug_assert_eq!(offset_in_stub(&hk_guard_exceptions) % 16, 0);
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
    // SAFETY: label addresses only.
    let (exceptions, guard_nmi) = unsafe {
        (
            offset_in_stub(&hk_guard_exceptions),
            offset_in_stub(&hk_guard_nmi),
        )
    };
    for vector in 0..256u64 {
        let handler = stub_page
            + match vector {
                2 | 0xff => nmi,
                0..=31 => fatal,
                _ => irq,
            };
        let guard = match vector {
            2 => gate(stub_page + guard_nmi, 0),
            // A double fault runs on the IST stack of the kernel's TSS (IST1).
            8 => gate(stub_page + exceptions + 16 * vector, 1),
            0..=31 => gate(stub_page + exceptions + 16 * vector, 0),
            0xff => gate(stub_page + nmi, 0),
            _ => gate(stub_page + irq, 0),
        };
        // SAFETY: both pages are writable and unused (caller contract).
        unsafe {
            write_gate(idt_page, vector, gate(handler, 0));
            write_gate(guard_idt_page, vector, guard);
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
