//! Kernel builds: `cargo build -p kernel` for one variant, and the copy of its ELF to
//! `target/hotkernel/kernels/<variant>/kernel.elf`. `v1` is this tree's kernel, built
//! in place; every other variant is built in its own tree, this tree with the
//! variant's edit file applied (`variant::prepare`).
//!
//! `v1` builds into `target/kernel`, each other variant into a target directory of its
//! own (`variant::target_dir`). A file lock (`target/hotkernel/build.lock`) is held
//! across the build *and* the copy of the ELF, so two runners building at the same
//! time each copy their own output.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};

use crate::error::{Error, Result};
use crate::toolchain::KERNEL_TARGET;
use crate::workspace;

/// The cargo profile every kernel is built with (see the root `Cargo.toml`).
pub const KERNEL_PROFILE: &str = "kernel";

/// A kernel build variant: `v1` (this tree's kernel) or the name of an edit file in
/// `tests/variants/` (`v2`, `v3`, `broken`, `incompatible`, `twin`, `patch-a` …).
///
/// Invariant: the name is non-empty and made of `[a-z0-9_-]` only, so it is safe as a
/// directory name and a package version's build metadata. Whether the edit file exists
/// is checked when building ([`Error::UnknownVariant`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Variant(String);

impl Variant {
    /// This tree's kernel.
    pub const DEFAULT: &'static str = "v1";

    /// The default kernel, `v1`.
    pub fn v1() -> Self {
        Variant(Self::DEFAULT.to_owned())
    }

    /// Checks the name's spelling (not that an edit file of that name exists).
    pub fn try_new(name: &str) -> Result<Self> {
        let ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Variant(name.to_owned()))
        } else {
            Err(Error::UnknownVariant {
                name: name.to_owned(),
                known: known_variants().join(", "),
            })
        }
    }

    /// The variant's name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// Whether this is this tree's own kernel (`v1`), built without an edit.
    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Variant {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Variant::try_new(s)
    }
}

/// A built kernel: its ELF (a stable copy, not cargo's uplifted file) and the variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltKernel {
    pub elf: PathBuf,
    pub variant: Variant,
}

/// Where cargo's output goes during a build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CargoOutput {
    /// Captured; shown (in the error) only when the build fails. For tests.
    Capture,
    /// Straight to the terminal, as `cargo build` would. For the CLI.
    Inherit,
}

/// Builds a variant with cargo's output captured (shown only on failure).
pub fn build_kernel(variant: &Variant) -> Result<BuiltKernel> {
    build_kernel_with(variant, CargoOutput::Capture)
}

/// Builds a variant at most once per process (later calls return the first result).
/// Tests use this: every test that boots `v2` shares one build.
pub fn build_kernel_cached(variant: &Variant) -> Result<BuiltKernel> {
    build_kernel_cached_with(variant, CargoOutput::Capture)
}

/// [`build_kernel_cached`] with cargo's output going where `output` says (for the
/// first build; later calls build nothing).
pub fn build_kernel_cached_with(variant: &Variant, output: CargoOutput) -> Result<BuiltKernel> {
    type Slot = Arc<OnceLock<Result<BuiltKernel, String>>>;
    static BUILDS: OnceLock<Mutex<HashMap<Variant, Slot>>> = OnceLock::new();
    let slot: Slot = {
        let mut builds = BUILDS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        builds.entry(variant.clone()).or_default().clone()
    };
    slot.get_or_init(|| build_kernel_with(variant, output).map_err(|e| e.to_string()))
        .clone()
        .map_err(Error::Again)
}

/// Builds a variant: `cargo build -p kernel --target x86_64-unknown-none --profile
/// kernel` in this tree into `target/kernel` (`v1`), or in the variant's tree into its
/// own target directory, then copies the ELF to `target/hotkernel/kernels/<variant>/kernel.elf`, both under
/// the build lock.
pub fn build_kernel_with(variant: &Variant, output: CargoOutput) -> Result<BuiltKernel> {
    let root = workspace::root();
    let _lock = BuildLock::acquire()?;
    let (tree, target_dir) = if variant.is_default() {
        (root.clone(), root.join("target/kernel"))
    } else {
        (
            crate::variant::prepare(&root, variant.name())?,
            crate::variant::target_dir(variant.name()),
        )
    };
    run_cargo(&tree, &target_dir, variant.name(), output)?;

    let built = target_dir
        .join(KERNEL_TARGET)
        .join(KERNEL_PROFILE)
        .join("kernel");
    let dir = workspace::kernel_dir(variant.name());
    fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let elf = dir.join("kernel.elf");
    copy_if_changed(&built, &elf)?;
    Ok(BuiltKernel {
        elf,
        variant: variant.clone(),
    })
}

/// Builds the kernel of the workspace at `tree` (a checkout, or a copy made by
/// [`crate::variant::copy_tree`]) into `target_dir`, under the build lock; returns cargo's
/// ELF there (the next build of that tree overwrites it: copy it to keep it). `label`
/// names the build in messages. `hotkernel watch` builds this way.
pub fn build_tree(
    tree: &Path,
    target_dir: &Path,
    label: &str,
    output: CargoOutput,
) -> Result<PathBuf> {
    let _lock = BuildLock::acquire()?;
    run_cargo(tree, target_dir, label, output)?;
    Ok(target_dir
        .join(KERNEL_TARGET)
        .join(KERNEL_PROFILE)
        .join("kernel"))
}

/// `cargo build` of the kernel in the workspace at `tree`, into `target_dir`.
fn run_cargo(tree: &Path, target_dir: &Path, variant: &str, output: CargoOutput) -> Result<()> {
    // Every kernel built here trusts the keys in `target/hotkernel/keys` (the dev key
    // is made there on first build); variant trees are copies, so they are told where.
    crate::keys::dev_key()?;
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(tree)
        .env("HOTKERNEL_TRUSTED_KEYS", crate::keys::trusted_dir())
        .args([
            "build",
            "-p",
            "kernel",
            "--target",
            KERNEL_TARGET,
            "--profile",
            KERNEL_PROFILE,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        // rust-toolchain.toml picks the toolchain, not a caller's override.
        .env_remove("RUSTUP_TOOLCHAIN")
        // The kernel's flags are in .cargo/config.toml; these would replace them.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    let what = format!("run `cargo build` for kernel variant `{variant}`");
    let (status, text) = match output {
        CargoOutput::Inherit => {
            let status = cargo
                .stdin(Stdio::null())
                .status()
                .map_err(|e| Error::io(&what, e))?;
            (status, String::new())
        }
        CargoOutput::Capture => {
            let out = cargo
                .stdin(Stdio::null())
                .output()
                .map_err(|e| Error::io(&what, e))?;
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stderr));
            (out.status, format!(":\n{}", text.trim_end()))
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(Error::KernelBuild {
            variant: variant.to_string(),
            status: format!("cargo {status}"),
            output: text,
        })
    }
}

/// The exclusive lock on `target/hotkernel/build.lock`; released on drop.
struct BuildLock(File);

impl BuildLock {
    fn acquire() -> Result<Self> {
        let dir = workspace::hotkernel_dir();
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let path = dir.join("build.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        file.lock()
            .map_err(|e| Error::io(format!("lock {}", path.display()), e))?;
        Ok(BuildLock(file))
    }
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Copies `from` to `to` unless `to` already has the same bytes, so that an unchanged
/// kernel keeps its modification time (the boot image is rebuilt only when it changed).
/// The copy goes through a temporary file and a rename: readers see the old or the new
/// ELF, never half of one. (Called with the build lock held.)
fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let new = fs::read(from).map_err(|e| Error::io(format!("read {}", from.display()), e))?;
    if fs::read(to).is_ok_and(|old| old == new) {
        return Ok(());
    }
    let tmp = workspace::temp_path_for(to);
    fs::write(&tmp, &new).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    fs::rename(&tmp, to)
        .map_err(|e| Error::io(format!("rename {} to {}", tmp.display(), to.display()), e))
}

/// Every variant name: `v1` and the edit files in `tests/variants/` (for messages).
pub fn known_variants() -> Vec<String> {
    std::iter::once(Variant::DEFAULT.to_owned())
        .chain(crate::variant::known(&workspace::root()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_are_checked() {
        assert!(!Variant::try_new("patch-a").unwrap().is_default());
        assert!(Variant::v1().is_default());
        assert!(Variant::try_new("").is_err());
        assert!(Variant::try_new("../v2").is_err());
        assert!(Variant::try_new("V2").is_err());
    }

    #[test]
    fn the_tree_has_the_documented_variants() {
        let known = known_variants();
        for v in [
            "v1",
            "v2",
            "v3",
            "twin",
            "broken",
            "incompatible",
            "patch-a",
        ] {
            assert!(known.iter().any(|k| k == v), "no variant {v}: {known:?}");
        }
    }

    #[test]
    fn unchanged_files_are_not_rewritten() {
        let dir = std::env::temp_dir().join(format!("hotkernel-copy-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        fs::write(&a, b"one").unwrap();
        copy_if_changed(&a, &b).unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"one");
        let before = fs::metadata(&b).unwrap().modified().unwrap();
        copy_if_changed(&a, &b).unwrap();
        assert_eq!(fs::metadata(&b).unwrap().modified().unwrap(), before);
        fs::write(&a, b"two").unwrap();
        copy_if_changed(&a, &b).unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"two");
        fs::remove_dir_all(&dir).unwrap();
    }
}
