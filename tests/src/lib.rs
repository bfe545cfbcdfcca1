//! Helpers for the integration tests in `tests/tests/`: they boot real kernels in QEMU
//! through the runner library ([`hotkernel::Vm`]).
//!
//! - Kernels are built once per test binary and variant; VMs run one at a time per test
//!   binary (`HOTKERNEL_PARALLEL_VMS` raises that), so tests may run on many threads.
//! - Timeouts are hang guards only ([`HANG_GUARD`]): a test waits for the guest's lines
//!   and exit, never for a duration, and asserts nothing about how long things took.
//! - Failures panic with the runner's own message, which quotes the last console lines.
//! - Update tests talk to a [`Guest`] (a VM with its mailbox open) and build their
//!   packages with [`packages`]: real variants, or real ones changed in one field.
//!
//! ```no_run
//! use hotkernel_tests::{boot_and_expect, Check, VmConfig, GuestExit, HANG_GUARD};
//!
//! let vm = boot_and_expect(VmConfig::variant("v1").boot_opt("mode", "selftest"), &["CPUs online", "selftest: all"]);
//! assert_eq!(vm.wait_exit(HANG_GUARD).check("self-test exit"), GuestExit::Success);
//! ```

// The helpers return the runner's `Refused` (it carries the guest's report) as the
// runner does; see `hotkernel::update::outcome`.
#![allow(clippy::result_large_err)]

use std::time::Duration;

mod guest;
pub mod packages;
pub mod patches;
pub mod swaps;

pub use guest::{assert_continuous, guest_seconds, kind_name, tasks_of, Guest, StepRules};
pub use hotkernel::{Error, GuestExit, KernelChoice, SerialLine, Vm, VmConfig, VmPaths, VmState};

/// How long any single wait may take before the test is declared hung. Generous: a
/// loaded 2-core CI machine runs TCG guests slowly, and no test measures time with it.
pub const HANG_GUARD: Duration = Duration::from_secs(180);

/// `Result::unwrap` that panics with the error's message (`Display`, which for the
/// runner's errors includes the console tail) rather than its `Debug` form.
pub trait Check<T> {
    fn check(self, what: &str) -> T;
}

impl<T> Check<T> for Result<T, Error> {
    #[track_caller]
    fn check(self, what: &str) -> T {
        match self {
            Ok(value) => value,
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// Launches a VM and waits for each of `lines` in order (each one after the previous
/// one's line), as substrings of console lines. Returns the running VM.
#[track_caller]
pub fn boot_and_expect(cfg: VmConfig, lines: &[&str]) -> Vm {
    let vm = Vm::launch(cfg).check("launching the VM");
    expect_lines(&vm, 0, lines);
    vm
}

/// Waits for each of `lines` in order, starting at console line `from`; returns the
/// matched lines.
#[track_caller]
pub fn expect_lines(vm: &Vm, from: usize, lines: &[&str]) -> Vec<SerialLine> {
    let mut next = from;
    let mut found = Vec::new();
    for needle in lines {
        let line = vm
            .wait_for_line_from(next, needle, HANG_GUARD)
            .check(&format!("waiting for `{needle}`"));
        next = line.index + 1;
        found.push(line);
    }
    found
}

/// The default VM (4 CPUs, v1) with boot option `mode=<mode>`.
pub fn mode(mode: &str) -> VmConfig {
    VmConfig::default().boot_opt("mode", mode)
}
