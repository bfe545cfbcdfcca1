//! Live update: the mailbox service and, behind it, staging, the swap and hotpatches.
//!
//! - [`service`]: the task that serves the mailbox;
//! - [`load`]: lays a staged image out in the staging window and the overlay source;
//! - [`swap`]: the coordinator (quiesce, export, enter the bootstrap);
//! - [`export`], [`enter`]: the old kernel's side;
//! - [`bootstrap`], [`overlay`], [`resume`], [`import`]: the new image's side;
//! - [`handoff`]: the hand-off region as this kernel sees it.
pub mod bootstrap;
pub mod enter;
pub mod export;
pub mod handoff;
pub mod import;
pub mod jobs;
pub mod load;
pub mod overlay;
pub mod preflight;
pub mod report;
pub mod resume;
pub mod selfswap;
pub mod service;
pub mod stage;
pub mod swap;

/// First boot: prepare the hand-off region.
pub fn init_first_boot() {
    handoff::init_first_boot();
}

/// A byte area of the hand-off region (for the bootstrap, which may not use locks).
///
/// # Safety
/// See [`handoff::area`].
pub unsafe fn handoff_bytes(offset: u64, len: u64) -> &'static mut [u8] {
    // SAFETY: forwarded contract.
    unsafe { handoff::area(offset, len) }
}
