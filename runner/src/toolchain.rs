//! Checks that the machine has what building and booting a kernel needs, before trying:
//! QEMU, rustup, the pinned nightly with `rust-src` and `llvm-tools`, and the
//! `x86_64-unknown-none` target. Each missing piece becomes one line that says what to
//! install ([`Error::Setup`], exit status 2).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::workspace;

/// The QEMU binary the runner starts.
pub const QEMU: &str = "qemu-system-x86_64";
/// The debugger `hotkernel gdb` starts.
pub const GDB: &str = "gdb";

/// The kernel's target triple.
pub const KERNEL_TARGET: &str = "x86_64-unknown-none";

/// Components of the pinned toolchain: the `bootloader` crate's build script compiles
/// its boot stages from the standard library's sources (`rust-src`) and strips them
/// with LLVM's binutils (`llvm-tools`). (Prefix in `rustup component list`, name to
/// install.)
const COMPONENTS: &[(&str, &str)] = &[
    ("rust-src", "rust-src"),
    ("llvm-tools", "llvm-tools-preview"),
];

/// What the host needs for a given command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Booting only (a prebuilt kernel): QEMU.
    Qemu,
    /// Building and booting: QEMU and the pinned toolchain.
    BuildAndQemu,
    /// Building only: the pinned toolchain.
    Build,
    /// Debugging a running VM: GDB.
    Gdb,
}

/// Checks the host; `Err(Error::Setup)` lists every missing piece, one line each.
pub fn check(needs: Needs) -> Result<()> {
    let mut problems = Vec::new();
    if needs == Needs::Gdb {
        if find_on_path(GDB).is_none() {
            problems.push(format!(
                "{GDB} not found: run `make setup` (it installs it) or `apt-get install gdb`"
            ));
        }
    } else if needs != Needs::Build && find_on_path(QEMU).is_none() {
        problems.push(format!(
            "{QEMU} not found: run `make run` (it installs it) or `apt-get install qemu-system-x86`"
        ));
    }
    if needs != Needs::Qemu && needs != Needs::Gdb {
        problems.extend(toolchain_problems(&workspace::root()));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Setup { problems })
    }
}

/// The channel pinned by `rust-toolchain.toml` in `root`, e.g. `nightly-2026-08-01`.
pub fn pinned_channel(root: &Path) -> Option<String> {
    let text = std::fs::read_to_string(root.join("rust-toolchain.toml")).ok()?;
    parse_channel(&text)
}

fn parse_channel(toml: &str) -> Option<String> {
    toml.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "channel").then(|| value.trim().trim_matches('"').to_owned())
    })
}

fn toolchain_problems(root: &Path) -> Vec<String> {
    let setup = format!("run `make setup` in {}", root.display());
    if find_on_path("rustup").is_none() {
        return vec![format!(
            "rustup not found: install rustup, then {setup} (it installs the pinned toolchain)"
        )];
    }
    let Some(channel) = pinned_channel(root) else {
        return vec![format!(
            "{} has no `channel`: the pinned toolchain is unknown",
            root.join("rust-toolchain.toml").display()
        )];
    };
    let toolchains = rustup(&["toolchain", "list"]);
    if !has_toolchain(&toolchains, &channel) {
        return vec![format!(
            "Rust toolchain {channel} is not installed: {setup} (or `rustup toolchain install` there)"
        )];
    }
    let installed = rustup(&["component", "list", "--installed", "--toolchain", &channel]);
    let mut problems = Vec::new();
    for (prefix, component) in COMPONENTS {
        if !has_component(&installed, prefix) {
            problems.push(format!(
                "component {component} missing from {channel}: {setup} (or `rustup component add {component} --toolchain {channel}`)"
            ));
        }
    }
    if !has_component(&installed, &format!("rust-std-{KERNEL_TARGET}")) {
        problems.push(format!(
            "target {KERNEL_TARGET} missing from {channel}: {setup} (or `rustup target add {KERNEL_TARGET} --toolchain {channel}`)"
        ));
    }
    problems
}

fn rustup(args: &[&str]) -> String {
    Command::new("rustup")
        .args(args)
        // Lists only; never let rustup install anything behind the user's back.
        .env("RUSTUP_AUTO_INSTALL", "0")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// `rustup toolchain list` prints `nightly-2026-08-01-x86_64-unknown-linux-gnu (active)`.
fn has_toolchain(list: &str, channel: &str) -> bool {
    list.lines().any(|line| {
        let name = line.split_whitespace().next().unwrap_or("");
        name == channel
            || name
                .strip_prefix(channel)
                .is_some_and(|rest| rest.starts_with('-'))
    })
}

/// `rustup component list --installed` prints `llvm-tools-x86_64-unknown-linux-gnu`,
/// `rust-src`, `rust-std-x86_64-unknown-none`: a component's name, alone or followed by
/// `-<target triple>` (whose architecture, its first part, always has a digit:
/// `x86_64`, `aarch64`, `i686`, …).
fn has_component(list: &str, component: &str) -> bool {
    list.lines().map(str::trim).any(|name| {
        name == component
            || name
                .strip_prefix(component)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|triple| {
                    let arch = triple.split('-').next().unwrap_or("");
                    triple.matches('-').count() >= 2 && arch.bytes().any(|b| b.is_ascii_digit())
                })
    })
}

/// The first executable file called `name` in `$PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pinned_channel() {
        let toml = "[toolchain]\n# comment\nchannel = \"nightly-2026-08-01\"\ncomponents = [\"rust-src\"]\n";
        assert_eq!(parse_channel(toml).as_deref(), Some("nightly-2026-08-01"));
        assert_eq!(parse_channel("[toolchain]\n"), None);
    }

    #[test]
    fn finds_the_toolchain_in_rustup_output() {
        let list = "stable-x86_64-unknown-linux-gnu (default)\nnightly-2026-08-01-x86_64-unknown-linux-gnu (active)\n";
        assert!(has_toolchain(list, "nightly-2026-08-01"));
        assert!(!has_toolchain(list, "nightly-2026-08-02"));
        assert!(!has_toolchain(list, "nightly-2026-08-0"));
    }

    #[test]
    fn finds_components_by_prefix() {
        let list = "cargo-x86_64-unknown-linux-gnu\nllvm-tools-x86_64-unknown-linux-gnu\nrust-src\nrust-std-x86_64-unknown-none\n";
        assert!(has_component(list, "rust-src"));
        assert!(has_component(list, "llvm-tools"));
        assert!(has_component(list, "rust-std-x86_64-unknown-none"));
        assert!(!has_component(list, "rust-std-aarch64-unknown-none"));
        assert!(!has_component(list, "rust"));
    }

    #[test]
    fn path_lookup_finds_executables_only() {
        assert!(find_on_path("sh").is_some());
        assert!(find_on_path("surely-no-such-tool-hotkernel").is_none());
    }
}
