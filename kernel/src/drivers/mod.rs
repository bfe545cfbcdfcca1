//! Device drivers: PCI configuration space, the shared-memory mailbox (ivshmem) and its
//! doorbell (COM2).
pub mod doorbell;
pub mod mailbox;
pub mod pci;
