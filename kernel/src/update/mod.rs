//! Live update: the mailbox service and, behind it, staging, the swap and hotpatches.
pub mod handoff;
pub mod service;

/// First boot: prepare the hand-off region.
pub fn init_first_boot() {
    handoff::init_first_boot();
}
