//! BIOS boot images, made with the `bootloader` crate's `DiskImageBuilder`.
//!
//! An image holds the bootloader's stages, the kernel ELF and optionally a ramdisk (the
//! coldpatch feature puts a patch set there). It is rebuilt only when it is older than
//! its inputs, and written through a temporary file and a rename, so a QEMU already
//! running from the previous image keeps reading a whole file.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bootloader::DiskImageBuilder;

use crate::build::BuiltKernel;
use crate::error::{Error, Result};
use crate::workspace;

/// What goes into a boot image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// The kernel ELF.
    pub kernel: PathBuf,
    /// A file the bootloader loads next to the kernel and reports in `BootInfo::ramdisk_*`.
    pub ramdisk: Option<PathBuf>,
}

/// The boot image of a built variant: `target/hotkernel/kernels/<variant>/boot.img`.
pub fn for_kernel(built: &BuiltKernel) -> Result<PathBuf> {
    let out = workspace::kernel_dir(built.variant.name()).join("boot.img");
    ensure(
        &ImageSpec {
            kernel: built.elf.clone(),
            ramdisk: None,
        },
        &out,
    )?;
    Ok(out)
}

/// The boot image of a kernel ELF given by path (`hotkernel run --kernel ELF`):
/// `target/hotkernel/kernels/elf-<hash of the path>/boot.img`.
pub fn for_elf(elf: &Path) -> Result<PathBuf> {
    let canonical = elf
        .canonicalize()
        .map_err(|e| Error::io(format!("find kernel ELF {}", elf.display()), e))?;
    let mut hasher = DefaultHasher::new();
    canonical.hash(&mut hasher);
    let out = workspace::kernel_dir(&format!("elf-{:016x}", hasher.finish())).join("boot.img");
    ensure(
        &ImageSpec {
            kernel: canonical,
            ramdisk: None,
        },
        &out,
    )?;
    Ok(out)
}

/// Makes `out` from `spec` unless `out` is newer than every input.
pub fn ensure(spec: &ImageSpec, out: &Path) -> Result<()> {
    if is_fresh(spec, out) {
        return Ok(());
    }
    create(spec, out)
}

/// Makes the image `out` from `spec` (always).
pub fn create(spec: &ImageSpec, out: &Path) -> Result<()> {
    let fail = |message: String| Error::DiskImage {
        kernel: spec.kernel.clone(),
        image: out.to_path_buf(),
        message,
    };
    if !spec.kernel.is_file() {
        return Err(fail("the kernel ELF does not exist".to_owned()));
    }
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    }
    let mut builder = DiskImageBuilder::new(spec.kernel.clone());
    if let Some(ramdisk) = &spec.ramdisk {
        builder.set_ramdisk(ramdisk.clone());
    }
    let tmp = workspace::temp_path_for(out);
    if let Err(e) = builder.create_bios_image(&tmp) {
        let _ = fs::remove_file(&tmp);
        return Err(fail(format!("{e:#}")));
    }
    fs::rename(&tmp, out)
        .map_err(|e| Error::io(format!("rename {} to {}", tmp.display(), out.display()), e))
}

fn is_fresh(spec: &ImageSpec, out: &Path) -> bool {
    let Some(made) = modified(out) else {
        return false;
    };
    let inputs = std::iter::once(&spec.kernel).chain(spec.ramdisk.as_ref());
    inputs
        .map(|p| modified(p))
        .all(|input| input.is_some_and(|t| t <= made))
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_kernel_is_reported() {
        let out =
            std::env::temp_dir().join(format!("hotkernel-img-test-{}.img", std::process::id()));
        let err = create(
            &ImageSpec {
                kernel: PathBuf::from("/nonexistent/kernel.elf"),
                ramdisk: None,
            },
            &out,
        )
        .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        assert!(!out.exists());
    }

    #[test]
    fn freshness_follows_modification_times() {
        let dir = std::env::temp_dir().join(format!("hotkernel-fresh-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (kernel, img) = (dir.join("k"), dir.join("i"));
        let spec = ImageSpec {
            kernel: kernel.clone(),
            ramdisk: None,
        };
        fs::write(&kernel, b"k").unwrap();
        assert!(!is_fresh(&spec, &img), "no image yet");
        fs::write(&img, b"i").unwrap();
        assert!(is_fresh(&spec, &img));
        let later =
            fs::metadata(&img).unwrap().modified().unwrap() + std::time::Duration::from_secs(1);
        fs::File::options()
            .write(true)
            .open(&kernel)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert!(!is_fresh(&spec, &img), "kernel newer than image");
        let with_missing_ramdisk = ImageSpec {
            ramdisk: Some(dir.join("missing")),
            ..spec
        };
        assert!(!is_fresh(&with_missing_ramdisk, &img));
        fs::remove_dir_all(&dir).unwrap();
    }
}
