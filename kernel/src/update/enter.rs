//! Entering the new image's bootstrap from the old kernel.
//!
//! The bootstrap runs on a stack in the hand-off region: the old kernel's stack is not
//! in either image, but the bootstrap must not depend on anything the overlay or the
//! new kernel may reuse. If the bootstrap refuses, it returns here and the old kernel
//! continues on its own stack with nothing overwritten.

use updater::handoff::{Descriptor, BOOTSTRAP_STACK_OFFSET, BOOTSTRAP_STACK_SIZE};

use crate::memory::layout::HANDOFF;

/// Calls the bootstrap at `entry` with `descriptor`, on the hand-off stack. Returns the
/// bootstrap's status (it returns only to refuse; on success it never comes back).
///
/// # Safety
/// - interrupts must be disabled and every other CPU parked;
/// - `entry` must be the `hk_bootstrap` of an image loaded and relocated in the staging
///   window, and `descriptor` the hand-off descriptor filled for it.
pub unsafe fn call_bootstrap(entry: u64, descriptor: *mut Descriptor) -> u64 {
    let stack_top = HANDOFF.start + BOOTSTRAP_STACK_OFFSET + BOOTSTRAP_STACK_SIZE;
    let status: u64;
    // r12 is callee-saved in the SysV ABI, so the bootstrap preserves the old stack
    // pointer kept there; the call leaves rsp 16-byte aligned minus the return address.
    // SAFETY: caller contract, and the stack switch follows the ABI (above).
    unsafe {
        core::arch::asm!(
            "mov r12, rsp",
            "mov rsp, {stack}",
            "call {entry}",
            "mov rsp, r12",
            stack = in(reg) stack_top,
            entry = in(reg) entry,
            in("rdi") descriptor,
            lateout("rax") status,
            out("r12") _,
            clobber_abi("C"),
        );
    }
    status
}
