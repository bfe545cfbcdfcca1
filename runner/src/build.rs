//! Kernel builds: `cargo build -p kernel` for one variant, and the copy of its ELF to
//! `target/hotkernel/kernels/<variant>/kernel.elf`.
//!
//! All variants share one cargo target directory (`target/kernel`), so the ELF cargo
//! uplifts to `target/kernel/x86_64-unknown-none/kernel/kernel` belongs to whichever
//! build finished last. A file lock (`target/hotkernel/build.lock`) is therefore held
//! across the build *and* the copy: two runners building different variants at the
//! same time each copy their own output.

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

/// A kernel build variant: `v1` (no feature) or the name of a kernel cargo feature
/// (`v2`, `v3`, `broken`, `incompatible`, `twin`, `patch-a` … `patch-e`).
///
/// Invariant: the name is non-empty and made of `[a-z0-9_-]` only, so it is safe as a
/// directory name and a cargo feature. Whether the kernel has the feature is checked
/// when building ([`Error::UnknownVariant`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Variant(String);

impl Variant {
    /// The default kernel, built without features.
    pub const DEFAULT: &'static str = "v1";

    /// The default kernel, `v1`.
    pub fn v1() -> Self {
        Variant(Self::DEFAULT.to_owned())
    }

    /// Checks the name's spelling (not that the kernel has such a feature).
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

    /// The kernel cargo feature that selects this variant (`None` for `v1`).
    pub fn feature(&self) -> Option<&str> {
        (self.0 != Self::DEFAULT).then_some(self.0.as_str())
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
/// kernel --target-dir target/kernel [--features <variant>]`, then copies the ELF to
/// `target/hotkernel/kernels/<variant>/kernel.elf`, both under the build lock.
pub fn build_kernel_with(variant: &Variant, output: CargoOutput) -> Result<BuiltKernel> {
    let root = workspace::root();
    let known = kernel_features(&root)?;
    if let Some(feature) = variant.feature() {
        if !known.iter().any(|f| f == feature) {
            return Err(Error::UnknownVariant {
                name: variant.to_string(),
                known: known_list(&known),
            });
        }
    }

    let _lock = BuildLock::acquire()?;
    run_cargo(&root, variant, output)?;

    let built = root
        .join("target/kernel")
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

fn run_cargo(root: &Path, variant: &Variant, output: CargoOutput) -> Result<()> {
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(root)
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
        .arg(root.join("target/kernel"))
        // rust-toolchain.toml picks the toolchain, not a caller's override.
        .env_remove("RUSTUP_TOOLCHAIN")
        // The kernel's flags are in .cargo/config.toml; these would replace them.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS");
    if let Some(feature) = variant.feature() {
        cargo.args(["--features", feature]);
    }
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

/// The kernel's cargo features (`[features]` in `kernel/Cargo.toml`), i.e. the variants
/// besides `v1`.
pub fn kernel_features(root: &Path) -> Result<Vec<String>> {
    let manifest = root.join("kernel/Cargo.toml");
    let text = fs::read_to_string(&manifest)
        .map_err(|e| Error::io(format!("read {}", manifest.display()), e))?;
    Ok(parse_features(&text))
}

fn parse_features(manifest: &str) -> Vec<String> {
    let mut in_features = false;
    let mut features = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_features = line == "[features]";
        } else if in_features {
            if let Some((key, _)) = line.split_once('=') {
                let key = key.trim().trim_matches('"');
                if !key.is_empty() && !key.starts_with('#') && key != "default" {
                    features.push(key.to_owned());
                }
            }
        }
    }
    features
}

/// Every variant name: `v1` and the kernel's features (best effort, for messages).
pub fn known_variants() -> Vec<String> {
    let features = kernel_features(&workspace::root()).unwrap_or_default();
    std::iter::once(Variant::DEFAULT.to_owned())
        .chain(features)
        .collect()
}

fn known_list(features: &[String]) -> String {
    std::iter::once(Variant::DEFAULT)
        .chain(features.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names_are_checked() {
        assert_eq!(
            Variant::try_new("patch-a").unwrap().feature(),
            Some("patch-a")
        );
        assert_eq!(Variant::v1().feature(), None);
        assert!(Variant::try_new("").is_err());
        assert!(Variant::try_new("../v2").is_err());
        assert!(Variant::try_new("V2").is_err());
    }

    #[test]
    fn reads_features_from_the_manifest() {
        let manifest = r#"
[package]
name = "kernel"

[features]
# comment
default = []
v2 = []
"patch-a" = []
broken = ["v2"]

[dependencies]
log = "0.4"
"#;
        assert_eq!(parse_features(manifest), ["v2", "patch-a", "broken"]);
    }

    #[test]
    fn the_real_kernel_has_the_documented_variants() {
        let features = kernel_features(&workspace::root()).unwrap();
        for v in ["v2", "v3", "broken"] {
            assert!(
                features.iter().any(|f| f == v),
                "kernel lacks feature {v}: {features:?}"
            );
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
