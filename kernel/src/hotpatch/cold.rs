//! Coldpatch at boot: the runner puts the VM's applied patches in the boot image as the
//! bootloader's ramdisk (a patch set, `image_format::hotpatch::set`); the kernel checks
//! the set's digest and re-applies each patch, in order, before the other CPUs start.
//! A damaged set is reported on the console and not applied (the kernel boots
//! unpatched, never with a torn patch).

use bootloader_api::BootInfo;
use image_format::hotpatch::set::PatchSet;

use super::install;

/// Applies the patch set in the ramdisk, if there is one. BSP, before the APs start.
pub fn apply_from_ramdisk(boot_info: &BootInfo) {
    let (Some(addr), len) = (boot_info.ramdisk_addr.into_option(), boot_info.ramdisk_len) else {
        return;
    };
    if len == 0 {
        return;
    }
    // SAFETY: the bootloader mapped the ramdisk at `addr` for `len` bytes; the kernel
    // never writes it.
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, len as usize) };
    let set = match PatchSet::parse(bytes) {
        Ok(set) => set,
        Err(e) => {
            log::error!(
                "coldpatch: the patch set in the boot image is damaged ({e}); booting without it"
            );
            return;
        }
    };
    let mut applied = 0;
    for (i, patch) in set.iter().enumerate() {
        let result = patch.map_err(|e| alloc::format!("{e}")).and_then(|bytes| {
            let prepared = install::prepare(bytes).map_err(|r| alloc::format!("{r}"))?;
            install::install(prepared, |_| ())
                .map(|(applied, pause, ())| (applied, pause))
                .map_err(|(r, _, _)| alloc::format!("{r}"))
        });
        match result {
            Ok((p, _)) => {
                applied += 1;
                log::info!(
                    "coldpatch: re-applied patch {:016x} ({}), {} sites",
                    p.id,
                    p.label,
                    p.sites.len()
                );
            }
            Err(why) => log::error!(
                "coldpatch: patch {} of the boot image's set not applied: {why}",
                i + 1
            ),
        }
    }
    log::info!(
        "coldpatch: {applied} of {} patches from the boot image applied",
        set.len()
    );
}
