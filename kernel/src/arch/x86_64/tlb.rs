//! Flushing this CPU's TLB.

use x86_64::registers::control::Cr3;

/// Flushes every non-global translation of this CPU (reloads CR3 with its own value).
pub fn flush_all() {
    let (frame, flags) = Cr3::read();
    // SAFETY: writing back the value just read keeps the same page tables; the only
    // effect is the flush.
    unsafe { Cr3::write(frame, flags) };
}
