//! Writing into the kernel's own code: the only place write protection is lifted while
//! the kernel runs (hotpatch jumps and their removal).

use x86_64::registers::control::{Cr0, Cr0Flags};

/// Writes `bytes` at `addr`, inside read-only code pages.
///
/// # Safety
/// - every other CPU must be parked outside `addr..addr + bytes.len()` (the caller
///   checked their stacks), and interrupts must be off on this CPU;
/// - `addr` must be mapped, and the bytes must leave a valid instruction stream.
pub unsafe fn write(addr: u64, bytes: &[u8]) {
    // SAFETY (numbered): 1. clearing CR0.WP lets ring 0 write read-only pages; it is
    // restored right after; 2. the destination is mapped and no CPU executes it (caller
    // contract); x86 keeps instruction fetch coherent with these stores.
    unsafe {
        let cr0 = Cr0::read();
        Cr0::write(cr0 - Cr0Flags::WRITE_PROTECT);
        core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len());
        Cr0::write(cr0);
    }
}

/// Reads `N` bytes of code at `addr`.
///
/// # Safety
/// - `addr..addr + N` must be mapped.
pub unsafe fn read<const N: usize>(addr: u64) -> [u8; N] {
    let mut out = [0u8; N];
    // SAFETY: mapped (caller contract); a plain read of code bytes.
    unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, out.as_mut_ptr(), N) };
    out
}
