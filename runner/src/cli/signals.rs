//! SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal went away) stop every VM this
//! process runs, and the command ends with status 128 + the signal's number, as a shell
//! reports a command that a signal ended.
//!
//! - The first signal stops the VMs on a thread of its own
//!   ([`crate::vm::registry::stop_all`]: QMP `quit`, then a kill for any QEMU still
//!   running after [`GRACE`]) and refuses new ones. The command sees its VM end and
//!   finishes; [`super::main`] then exits with the signal's status. A command that runs
//!   no VM exits at once.
//! - A second signal kills the VMs and exits at once.
//! - A command that has not finished [`FINISH`] after its VMs stopped is not waited for.
//!
//! The message about stopping is printed while the VMs stop, never before: a terminal
//! that is gone or does not read never keeps a VM running. QEMU runs in its own process
//! group, so a terminal's signal reaches only the runner (and a `cargo build` it runs).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::error::{Error, Result};
use crate::term::errln;
use crate::vm::registry;

/// How long QEMU may take to quit before it is killed.
pub const GRACE: Duration = Duration::from_secs(5);
/// How long the command may take to finish once its VMs stopped.
pub const FINISH: Duration = Duration::from_secs(10);

/// The first signal received (0: none).
static FIRST: AtomicI32 = AtomicI32::new(0);
/// Set by a command that ends by itself when asked ([`end_gracefully`]).
static GRACEFUL: AtomicBool = AtomicBool::new(false);

/// For a command that polls [`received`] and ends by itself (`watch`): a first signal
/// while this process runs no VM only asks it to stop (it finishes what it is doing and
/// returns its own status); with a VM of its own, the VM is stopped as always.
pub fn end_gracefully() {
    GRACEFUL.store(true, Ordering::SeqCst);
}

/// Whether the command ends by itself on a signal ([`end_gracefully`]).
pub fn graceful() -> bool {
    GRACEFUL.load(Ordering::SeqCst)
}

/// Starts the thread that handles the signals (before anything starts a VM).
pub fn install() -> Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| Error::io("install the signal handlers", e))?;
    std::thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            for signal in signals.forever() {
                on_signal(signal);
            }
        })
        .map_err(|e| Error::io("start the signal thread", e))?;
    Ok(())
}

/// The first signal this process received, if any.
pub fn received() -> Option<i32> {
    match FIRST.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// The exit status of a command a signal ended: 128 + its number.
pub fn exit_status(signal: i32) -> u8 {
    u8::try_from(128 + signal).unwrap_or(u8::MAX)
}

/// `SIGINT`, `SIGTERM`, `SIGHUP`.
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

fn on_signal(signal: i32) {
    let first = FIRST
        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
        .is_ok();
    if !first {
        registry::kill_all();
        std::process::exit(i32::from(exit_status(FIRST.load(Ordering::SeqCst))));
    }
    let running = registry::running();
    if running == 0 && graceful() {
        return;
    }
    let stopper = std::thread::Builder::new()
        .name("stop".to_owned())
        .spawn(move || {
            if registry::stop_all(GRACE) > 0 {
                // The command normally finishes long before this.
                std::thread::sleep(FINISH);
            }
            std::process::exit(i32::from(exit_status(signal)));
        });
    if stopper.is_err() {
        registry::kill_all();
        std::process::exit(i32::from(exit_status(signal)));
    }
    if running > 0 {
        errln!(
            "\nhotkernel: {}: stopping the VM (another signal kills it at once)",
            name(signal)
        );
    }
}
