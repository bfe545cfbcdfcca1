//! Commands on a running VM, found by name: `status` and `stop`.

use std::fs::File;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::VmArgs;
use crate::error::{Error, Result};
use crate::qmp::Qmp;
use crate::term::outln;
use crate::vm::state::{self, Claim, VmState};

/// How long `stop` waits for the runner to clean up after QEMU quit.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// The state of a live VM, or an error (after cleaning up a dead one's leftovers).
fn live_state(name: &str) -> Result<VmState> {
    let state = VmState::load(name)?;
    if state::is_live(name) {
        return Ok(state);
    }
    if let Ok(mut claim) = Claim::take(name) {
        claim.release();
    }
    Err(Error::VmNotFound {
        name: name.to_owned(),
        state: state.paths.state_file,
    })
}

pub fn status(args: VmArgs) -> Result<u8> {
    let state = live_state(&args.name)?;
    let run_state =
        Qmp::connect(&state.paths.qmp_socket, Duration::from_secs(10))?.query_status()?;
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let up = now_ms.saturating_sub(state.started_unix_ms) as f64 / 1000.0;
    let kernel = state.variant.as_deref().unwrap_or("(given by path)");
    outln!("VM `{}`: {} (up {up:.1} s)", state.name, run_state.status);
    outln!(
        "  runner pid {}, QEMU pid {}",
        state.runner_pid,
        state.qemu_pid
    );
    outln!(
        "  {} CPUs, {} MiB, {}",
        state.cpus,
        state.memory_mib,
        state.accel.to_string().to_uppercase()
    );
    outln!("  kernel {kernel}: {}", state.kernel_elf.display());
    outln!(
        "  boot options: {}",
        if state.boot_opts.is_empty() {
            "(none)".to_owned()
        } else {
            state.boot_opts.join(" ")
        }
    );
    match crate::mailbox::Mailbox::open_status(&state.paths).and_then(|m| m.status()) {
        Ok(g) => {
            outln!(
                "  running {} — kernel #{} since cold boot, {} ({})",
                g.image,
                g.boot_seq,
                g.state,
                if g.patches == 0 {
                    "no hotpatch".to_owned()
                } else {
                    format!("{} hotpatches", g.patches)
                }
            );
            outln!(
                "  {} CPUs online, {} tasks, {} MiB free",
                g.cpus_online,
                g.tasks,
                (g.free_frames * 4096) >> 20
            );
        }
        Err(e) => outln!("  guest: {e}"),
    }
    outln!("  mailbox {}", state.paths.mailbox.display());
    outln!("  console {}", state.paths.serial_socket.display());
    outln!("  QMP {}", state.paths.qmp_socket.display());
    Ok(0)
}

pub fn stop(args: VmArgs) -> Result<u8> {
    let state = live_state(&args.name)?;
    let marker = &state.paths.stop_marker;
    File::create(marker).map_err(|e| Error::io(format!("create {}", marker.display()), e))?;
    Qmp::connect(&state.paths.qmp_socket, Duration::from_secs(10))?.quit()?;
    wait_until_released(&args.name)?;
    outln!("stopped VM `{}`", args.name);
    Ok(0)
}

/// Blocks until the VM's runner has cleaned up and released its lock.
fn wait_until_released(name: &str) -> Result<()> {
    let lock_path = state::VmPaths::for_name(name).lock_file();
    let Ok(file) = File::open(&lock_path) else {
        return Ok(());
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(file.lock());
    });
    match rx.recv_timeout(STOP_TIMEOUT) {
        Ok(_) => Ok(()),
        Err(_) => Err(Error::State {
            path: lock_path,
            message: format!(
                "QEMU was told to quit but the runner still holds the VM after {} s",
                STOP_TIMEOUT.as_secs()
            ),
        }),
    }
}
