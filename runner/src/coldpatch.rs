//! Coldpatch: the VM's applied hotpatches, kept for its next boot.
//!
//! After `hotkernel patch apply` or `patch remove` succeeds in a running VM, the runner
//! makes a new boot image for that VM and installs it with the atomic double rename
//! (current → backup, new → current). The next launch of the VM checks the image's
//! checksum and boots it, and the kernel re-applies the patch set before the other CPUs
//! start (`kernel/src/hotpatch/cold.rs`).
//!
//! The boot image holds the *original* kernel plus the patch set, not a kernel with the
//! jumps written into it: the kernel's text stays byte-identical to the build (its
//! build id and text hash still check, so a later hotpatch or swap validates against
//! it exactly as after a cold boot), and the boot applies the patches through the same
//! checks as a live apply, so a kept patch can never be applied to a kernel it does not
//! fit.
//!
//! | module | what |
//! | --- | --- |
//! | [`image`] | the coldpatch image: disk, patch set, description, checksum |
//! | [`store`] | `target/hotkernel/disks/<vm>/`: the install with the double rename, crash injection |
//! | [`boot`] | which image a launch boots, and recovery from an interrupted install |
//! | [`floor`] | the VM's kept security floor: the highest SVN seen run in it (anti-rollback across boots) |
//!
//! Data comes in as the VM's name, the ELF it runs, the ids of the patches it reports
//! applied (bottom first) and, after an apply, the new patch's bytes; it leaves as
//! files in the store (the images and the VM's kept security floor) and, at launch, as a
//! [`BootChoice`] (or a refused launch, when nothing at or above the floor can boot).

pub mod boot;
pub mod floor;
pub mod image;
pub mod store;

use std::fmt;
use std::path::{Path, PathBuf};

pub use boot::{choose, BootChoice, Source};
pub use image::{Damage, Kept};
pub use store::{Step, Store, CRASH_ENV};

use crate::error::Result;
use crate::hotpatch::id_text;

/// What the next boot of a VM will have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persisted {
    /// The VM's current boot image.
    pub disk: PathBuf,
    /// Patches in its patch set, bottom first (ids).
    pub patches: Vec<u64>,
    /// Hex SHA-256 of the image (what the boot validates).
    pub checksum: String,
    /// The image's security version (its kernel's and patches' highest).
    pub svn: u32,
    /// The VM's kept floor after the install: above `svn` when the VM ran something
    /// more secure than what it now runs (a removed patch), and then the next boot
    /// refuses this image.
    pub floor: u32,
}

impl fmt::Display for Persisted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kept for the next boot: {} ({} patch(es), sha256 {})",
            self.disk.display(),
            self.patches.len(),
            image::short(&self.checksum)
        )?;
        if self.svn < self.floor {
            write!(
                f,
                "; but its security version {} is below {}, the highest this VM has run: \
                 the next boot refuses it and falls back to backup.img (`hotkernel patch forget --vm <name>` \
                 drops the kept images and the VM's kept floor)",
                self.svn, self.floor
            )?;
        }
        Ok(())
    }
}

/// Makes the next boot of VM `vm` apply exactly the patches `running` on `kernel`.
/// Every patch must be in the VM's kept image or be `added`: a patch the store never
/// saw (applied while keeping failed) cannot be re-applied, and the store is then left
/// as it was rather than made to describe a stack the VM does not run.
pub fn keep(vm: &str, kernel: &Path, running: &[u64], added: Option<&[u8]>) -> Result<Persisted> {
    let store = Store::for_vm(vm);
    let lock = store.lock()?;
    let build = image::build_id_of(kernel);
    // The kept patches are reusable only for the same kernel build.
    let kept = image::read(&store.current())
        .ok()
        .filter(|k| Some(&k.meta.kernel_build_id) == build.as_ref());
    let added = added
        .map(|bytes| {
            image_format::hotpatch::parse(bytes)
                .map(|v| (v.id().0, bytes))
                .map_err(|e| store.error(format!("the applied patch is not readable: {e}")))
        })
        .transpose()?;
    let mut patches: Vec<&[u8]> = Vec::with_capacity(running.len());
    for id in running {
        let from_store = kept.as_ref().and_then(|k| {
            k.ids
                .iter()
                .position(|kid| kid == id)
                .map(|i| k.patches[i].as_slice())
        });
        let bytes = match added {
            Some((aid, bytes)) if aid == *id => Some(bytes),
            _ => from_store,
        };
        let Some(bytes) = bytes else {
            return Err(store.error(format!(
                "the VM runs patch {} but it was never kept (it was applied while keeping \
                 failed, or for another build); the next boot keeps its previous image. \
                 Remove the patches above it and apply them again, or swap to a build with the fix",
                id_text(*id)
            )));
        };
        patches.push(bytes);
    }
    let scratch = store.dir.join("scratch");
    let image = image::make(vm, kernel, &patches, &scratch);
    let _ = std::fs::remove_dir(&scratch);
    let image = image?;
    let installed = store.install(&image, &lock)?;
    // The image describes what the VM runs now: its SVN ran.
    let meta = &installed.meta;
    let floor = floor::raise(
        &store,
        meta.svn,
        &format!(
            "kept image sha256 {}: kernel {} (SVN {}), patches [{}]",
            image::short(&installed.checksum),
            image::short(&meta.kernel_build_id),
            meta.kernel_svn,
            meta.patches
                .iter()
                .map(|p| format!("{} (SVN {})", p.id, p.svn))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        &lock,
    )
    .map_err(|e| {
        store.error(format!(
            "the new image is installed, but the VM's kept floor could not be raised to {} \
             ({e}); the next boot goes by the floor kept before",
            meta.svn
        ))
    })?;
    Ok(Persisted {
        disk: store.current(),
        patches: installed.ids,
        svn: installed.meta.svn,
        floor: floor.svn,
        checksum: installed.checksum,
    })
}

/// After a swap applied in VM `vm` to an image of security version `svn` (described as
/// `to`): that version ran, so the VM's kept floor rises to it — when the VM keeps a
/// coldpatch store (a VM that never kept a patch boots plainly, with nothing to guard).
/// Returns the floor kept now, `None` without a store.
pub fn note_swap(vm: &str, svn: u32, to: &str) -> Result<Option<u32>> {
    let store = Store::for_vm(vm);
    if !store.exists() {
        return Ok(None);
    }
    let lock = store.lock()?;
    let floor = floor::raise(&store, svn, &format!("swap to {to} (SVN {svn})"), &lock)?;
    Ok(Some(floor.svn))
}

/// Drops VM `vm`'s kept images: its next boot is a plain one. False when there were none.
pub fn forget(vm: &str) -> Result<bool> {
    Store::for_vm(vm).remove()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_swap_raises_the_kept_floor_only_of_a_vm_with_a_store() {
        let vm = format!("unit-note-swap-{}", std::process::id());
        let store = Store::for_vm(&vm);
        let _ = store.remove();
        assert_eq!(note_swap(&vm, 3, "1.0.1 \"v1-twin\"").unwrap(), None);
        assert!(!store.exists(), "no store is made for a swap");
        std::fs::create_dir_all(&store.dir).unwrap();
        assert_eq!(note_swap(&vm, 3, "1.0.1 \"v1-twin\"").unwrap(), Some(3));
        assert_eq!(note_swap(&vm, 2, "1.0.0 \"v1\"").unwrap(), Some(3));
        let kept = floor::read(&store).unwrap().unwrap();
        assert_eq!(kept.svn, 3);
        assert!(kept.raised_by.contains("v1-twin"), "{}", kept.raised_by);
        assert!(store.remove().unwrap());
    }
}
