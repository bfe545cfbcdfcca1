//! Per-CPU pointer: the GS base of each CPU points at that CPU's per-CPU structure (the
//! kernel's `cpu::Cpu`).
//!
//! The structure must start with two machine words: a pointer to itself and the CPU's
//! index, so that both can be read with one `gs:`-relative load without knowing its type.

use core::sync::atomic::{AtomicBool, Ordering};

use x86_64::registers::model_specific::GsBase;
use x86_64::VirtAddr;

/// Set once the bootstrap processor has installed its pointer; before that (early boot,
/// or early in a resume) every CPU reports index 0.
static READY: AtomicBool = AtomicBool::new(false);

/// Makes `cpu` the calling CPU's per-CPU structure.
///
/// # Safety
/// - `cpu` must point to a `#[repr(C)]` structure whose first field is a pointer to
///   itself and whose second is its `usize` index, valid for the rest of this kernel's
///   life;
/// - every CPU must call this before it logs or schedules.
pub unsafe fn install(cpu: *const u8) {
    GsBase::write(VirtAddr::from_ptr(cpu));
    READY.store(true, Ordering::Release);
}

/// The calling CPU's structure pointer, once installed.
pub fn current_ptr() -> Option<*const u8> {
    if !READY.load(Ordering::Acquire) {
        return None;
    }
    let ptr: *const u8;
    // SAFETY: every CPU installs its GS base before READY can be observed by it (install
    // contract), and offset 0 holds the structure's self pointer.
    unsafe {
        core::arch::asm!("mov {}, gs:[0]", out(reg) ptr, options(nostack, readonly, preserves_flags));
    }
    Some(ptr)
}

/// The calling CPU's index, or 0 before per-CPU data exists.
pub fn current_index() -> usize {
    if !READY.load(Ordering::Acquire) {
        return 0;
    }
    let index: usize;
    // SAFETY: as in `current_ptr`; offset 8 holds the index.
    unsafe {
        core::arch::asm!("mov {}, gs:[8]", out(reg) index, options(nostack, readonly, preserves_flags));
    }
    index
}
