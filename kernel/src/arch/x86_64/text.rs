//! Writing into the kernel's own code (hotpatch jumps and their removal): through the
//! physical-memory mapping's alias of the code page, so the code page stays read-only
//! and write protection is never lifted.

use crate::memory;

/// Writes `bytes` at `addr`, inside read-only code pages.
///
/// # Safety
/// - every other CPU must be parked outside `addr..addr + bytes.len()` (the caller
///   checked their stacks), and interrupts must be off on this CPU;
/// - the bytes must leave a valid instruction stream.
///
/// # Panics
/// If `addr` is not mapped.
pub unsafe fn write(addr: u64, bytes: &[u8]) {
    for (i, b) in bytes.iter().enumerate() {
        let at = addr + i as u64;
        let (phys, _) = memory::with_tables(|t| t.translate(at)).expect("code page is mapped");
        // x86 keeps instruction fetch coherent with stores to the same physical memory.
        // SAFETY: `phys` backs the code byte at `at`; the physical mapping is writable;
        // no CPU executes it (caller contract).
        unsafe { core::ptr::write_volatile(memory::phys_to_virt(phys), *b) };
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
