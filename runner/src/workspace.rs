//! Where things are: the workspace root and the runner's output directories.
//!
//! Everything the runner writes lives under `<root>/target/`:
//!
//! | path | what |
//! | --- | --- |
//! | `target/kernel/` | cargo's target directory for kernel builds |
//! | `target/hotkernel/build.lock` | held across a kernel build and the copy of its ELF |
//! | `target/hotkernel/kernels/<variant>/kernel.elf` | the built kernel of a variant |
//! | `target/hotkernel/kernels/<variant>/boot.img` | its BIOS boot image |
//! | `target/hotkernel/vm/<name>/` | a running VM's state (sockets, `state.json`) |

use std::path::{Path, PathBuf};

/// Environment variable that overrides the workspace root (for a runner binary used
/// outside the tree it was built from).
pub const ROOT_ENV: &str = "HOTKERNEL_ROOT";

/// The workspace root: `$HOTKERNEL_ROOT`, else the directory above this crate's
/// manifest as it was at compile time.
pub fn root() -> PathBuf {
    match std::env::var_os(ROOT_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => compiled_root().to_path_buf(),
    }
}

fn compiled_root() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest)
}

/// `<root>/target`.
pub fn target_dir() -> PathBuf {
    root().join("target")
}

/// `<root>/target/hotkernel`: everything the runner makes besides cargo's own output.
pub fn hotkernel_dir() -> PathBuf {
    target_dir().join("hotkernel")
}

/// `<root>/target/hotkernel/kernels/<name>`: one kernel's ELF and boot image.
pub fn kernel_dir(name: &str) -> PathBuf {
    hotkernel_dir().join("kernels").join(name)
}

/// `<root>/target/hotkernel/vm`: one directory per running VM.
pub fn vm_root() -> PathBuf {
    hotkernel_dir().join("vm")
}

/// A temporary name next to `path`, unique to this process and call, for writing a
/// file that is then renamed over `path`.
pub fn temp_path_for(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_root_is_the_workspace() {
        assert!(compiled_root().join("Cargo.toml").is_file());
        assert!(compiled_root().join("runner").is_dir());
    }

    #[test]
    fn temporary_names_are_unique_siblings() {
        let a = temp_path_for(Path::new("/x/boot.img"));
        let b = temp_path_for(Path::new("/x/boot.img"));
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/x")));
        assert!(a
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("boot.img.tmp"));
    }
}
