//! What a VM is launched with.

use std::path::PathBuf;

use crate::build::Variant;
use crate::qemu::Accel;

/// Which kernel to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelChoice {
    /// A build variant (`v1`, `v2`, …), built (once per process) before booting.
    Variant(String),
    /// A kernel ELF built elsewhere.
    Elf(PathBuf),
}

/// What to launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub cpus: u32,
    pub memory_mib: u32,
    pub accel: Accel,
    pub kernel: KernelChoice,
    /// `None`: a name unique to this launch (`p<pid>-<n>`), so tests run side by side.
    pub name: Option<String>,
    /// `key=value` boot options for the kernel (fw_cfg `opt/hotkernel/cmdline`).
    pub boot_opts: Vec<(String, String)>,
    /// Copy the console to stdout and QEMU's messages to stderr as they arrive.
    pub echo_serial: bool,
}

impl Default for VmConfig {
    /// 4 CPUs, 512 MiB, TCG, kernel `v1`, a unique name, no boot options, no echo.
    fn default() -> Self {
        VmConfig {
            cpus: 4,
            memory_mib: 512,
            accel: Accel::Tcg,
            kernel: KernelChoice::Variant(Variant::DEFAULT.to_owned()),
            name: None,
            boot_opts: Vec::new(),
            echo_serial: false,
        }
    }
}

impl VmConfig {
    /// The defaults with kernel variant `name`.
    pub fn variant(name: &str) -> Self {
        VmConfig {
            kernel: KernelChoice::Variant(name.to_owned()),
            ..VmConfig::default()
        }
    }

    /// Adds a boot option.
    pub fn boot_opt(mut self, key: &str, value: &str) -> Self {
        self.boot_opts.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets the CPU count.
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }
}
