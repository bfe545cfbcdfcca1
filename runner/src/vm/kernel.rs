//! The kernel a VM boots: built (once per process and variant) and put in a boot image.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use super::KernelChoice;
use crate::build::{self, Variant};
use crate::diskimage;
use crate::error::{Error, Result};
use crate::toolchain::{self, Needs};

/// The kernel a VM boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootedKernel {
    pub elf: PathBuf,
    /// `None` for a kernel given by path.
    pub variant: Option<Variant>,
    pub boot_image: PathBuf,
}

/// Builds and images the kernel; a variant once per process.
pub(super) fn prepare(choice: &KernelChoice) -> Result<BootedKernel> {
    match choice {
        KernelChoice::Variant(name) => {
            check_host_once(Needs::BuildAndQemu)?;
            let variant = Variant::try_new(name)?;
            type Slot = Arc<OnceLock<Result<BootedKernel, String>>>;
            static PREPARED: OnceLock<Mutex<HashMap<Variant, Slot>>> = OnceLock::new();
            let slot: Slot = PREPARED
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(variant.clone())
                .or_default()
                .clone();
            slot.get_or_init(|| {
                let built = build::build_kernel_cached(&variant).map_err(|e| e.to_string())?;
                let boot_image = diskimage::for_kernel(&built).map_err(|e| e.to_string())?;
                Ok(BootedKernel {
                    elf: built.elf,
                    variant: Some(variant.clone()),
                    boot_image,
                })
            })
            .clone()
            .map_err(Error::Again)
        }
        KernelChoice::Elf(elf) => {
            check_host_once(Needs::Qemu)?;
            Ok(BootedKernel {
                elf: elf.clone(),
                variant: None,
                boot_image: diskimage::for_elf(elf)?,
            })
        }
    }
}

/// The host check, once per process and kind of need.
fn check_host_once(needs: Needs) -> Result<()> {
    static QEMU_ONLY: OnceLock<Result<(), Vec<String>>> = OnceLock::new();
    static FULL: OnceLock<Result<(), Vec<String>>> = OnceLock::new();
    let cell = if needs == Needs::Qemu {
        &QEMU_ONLY
    } else {
        &FULL
    };
    cell.get_or_init(|| {
        toolchain::check(needs).map_err(|e| match e {
            Error::Setup { problems } => problems,
            other => vec![other.to_string()],
        })
    })
    .clone()
    .map_err(|problems| Error::Setup { problems })
}
