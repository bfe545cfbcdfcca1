//! Live update: the mailbox service and, behind it, staging, the swap and hotpatches.
pub mod service;

/// First boot: prepare the hand-off region (placeholder).
pub fn init_first_boot() {}
