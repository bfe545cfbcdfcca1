//! Coldpatch: the VM's applied hotpatches, kept for its next boot.
//!
//! (Interface only; the implementation is being written.) After `hotkernel patch apply`
//! or `patch remove` succeeds in a running VM, the runner writes a new boot image for
//! that VM — its kernel plus the applied patches as a patch set in the bootloader's
//! ramdisk — and replaces the VM's current boot image with the atomic double rename
//! (current → backup, new → current). The next boot of the VM validates the image's
//! checksum and boots it; the kernel re-applies the patch set before the APs start.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::vm::VmState;

/// What the next boot of a VM will have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persisted {
    /// The VM's current boot image.
    pub disk: PathBuf,
    /// Patches in its patch set, bottom first (ids).
    pub patches: Vec<u64>,
    /// Hex SHA-256 of the image (what the boot validates).
    pub checksum: String,
}

impl fmt::Display for Persisted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kept for the next boot: {} ({} patches, sha256 {})",
            self.disk.display(),
            self.patches.len(),
            &self.checksum[..self.checksum.len().min(16)]
        )
    }
}

/// After `patch` (a patch package) was applied in the running VM `vm`: its next boot
/// re-applies it on top of the patches kept before.
pub fn persist_apply(vm: &VmState, patch: &[u8]) -> Result<Persisted> {
    let _ = (vm, patch);
    Err(Error::Mailbox("coldpatch is not built yet".into()))
}

/// After the patches `removed` (ids) were removed from the running VM `vm`: its next
/// boot no longer applies them.
pub fn persist_remove(vm: &VmState, removed: &[u64]) -> Result<Persisted> {
    let _ = (vm, removed);
    Err(Error::Mailbox("coldpatch is not built yet".into()))
}
