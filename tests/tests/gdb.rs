//! `hotkernel gdb`: GDB in batch mode against a running VM names a running function by
//! its address — in the kernel the VM booted, inside an applied hotpatch (its new code
//! in patch memory), and after a swap to a kernel whose layout moved the function.
//!
//! Needs Debian's `gdb` (`scripts/setup.sh` installs it); without it the test says
//! "skipped" and returns.

use std::process::Command;

use hotkernel::toolchain;
use hotkernel::KernelChoice;
use hotkernel_tests::{patches, Guest, VmConfig};

const COUNTER_STEP: &str = "kernel::tasks::counter::step";

/// `hotkernel gdb --vm <vm> -- -batch -ex 'info symbol <addr>'`: what GDB said, and
/// what the command said on stderr (which kernel ELF it loaded).
#[track_caller]
fn info_symbol(vm: &str, addr: u64) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hotkernel-cli"))
        .args(["gdb", "--vm", vm, "--", "-batch", "-ex"])
        .arg(format!("info symbol {addr:#x}"))
        .output()
        .expect("running `hotkernel gdb`");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "hotkernel gdb: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status,
    );
    (stdout, stderr)
}

/// The line of GDB's output that answers `info symbol`.
#[track_caller]
fn answer(output: &str) -> &str {
    output
        .lines()
        .find(|l| l.contains(" in section ") || l.starts_with("No symbol matches"))
        .unwrap_or_else(|| panic!("no answer to `info symbol` in:\n{output}"))
}

/// Where the `jmp rel32` at `site` goes, decoded from the running image's bytes.
#[track_caller]
fn jump_target(g: &mut Guest, site: u64) -> u64 {
    let bytes = g.read_image(site, 5);
    assert_eq!(
        bytes[0], 0xe9,
        "the patched site {site:#x} holds {bytes:02x?}"
    );
    let rel = i32::from_le_bytes(bytes[1..5].try_into().unwrap());
    (site + 5).wrapping_add_signed(i64::from(rel))
}

#[test]
fn running_functions_resolve_before_a_swap_in_a_patch_and_after_a_moving_swap() {
    if toolchain::find_on_path(toolchain::GDB).is_none() {
        println!("skipped: gdb is not installed (scripts/setup.sh installs it)");
        return;
    }
    let name = format!("gdb-{}", std::process::id());
    let mut g = Guest::boot(
        VmConfig {
            kernel: KernelChoice::Elf(patches::kernel("v1").path.clone()),
            name: Some(name.clone()),
            ..VmConfig::default()
        }
        .cpus(2),
    );

    // v1, as booted: an address inside the function names it, at its offset.
    let v1 = patches::function("v1", COUNTER_STEP);
    let (said, loaded) = info_symbol(&name, v1.addr + 1);
    assert!(
        answer(&said).contains("::tasks::counter::step + 1 in section .text"),
        "{said}"
    );
    assert!(
        loaded.contains(&format!("vm/{name}/kernel.elf")),
        "{loaded}"
    );

    // patch-a replaces counter::step: its new code, in patch memory, has the name.
    let report = g.patch_apply_ok(&patches::patch("v1", "patch-a"));
    let site = report
        .functions
        .iter()
        .find(|f| f.name == COUNTER_STEP)
        .expect("patch-a replaces counter::step")
        .site;
    assert_eq!(site, v1.addr);
    let code = jump_target(&mut g, site);
    let (said, loaded) = info_symbol(&name, code + 1);
    assert!(loaded.contains("1 hotpatch"), "{loaded}");
    let line = answer(&said);
    assert!(
        line.starts_with(&format!("{COUNTER_STEP} + 1 in section .text of"))
            && line.contains("/gdb/patch-"),
        "the patch's code is not named: {said}"
    );

    // A swap to v2 (which drops the patch) moves counter::step: GDB follows.
    g.stage_ok(&patches::package("v2"));
    g.apply_ok();
    let v2 = patches::function("v2", COUNTER_STEP);
    assert_ne!(v2.addr, v1.addr, "v2 was expected to move counter::step");
    let (said, loaded) = info_symbol(&name, v2.addr + 1);
    assert!(
        answer(&said).contains("::tasks::counter::step + 1 in section .text"),
        "after the swap: {said}"
    );
    assert!(
        loaded.contains("kernels/v2/kernel.elf") && !loaded.contains("hotpatch"),
        "after the swap, the symbols are v2's alone: {loaded}"
    );
    let (said, _) = info_symbol(&name, code + 1);
    assert!(
        answer(&said).starts_with("No symbol matches"),
        "the dropped patch still has symbols: {said}"
    );
    let dir = g.vm.paths().dir.clone();
    drop(g);
    let _ = std::fs::remove_dir_all(dir);
}
