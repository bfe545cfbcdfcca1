//! Every VM this process launched and still runs, so that a signal handler can stop
//! them all ([`stop_all`]): each QEMU is asked to quit (QMP `quit`), those that have not
//! exited within a grace period are killed, and no VM is launched after that. A VM is
//! listed from the moment its QEMU is spawned — under the list's lock, so a signal
//! never falls between the spawn and the listing — until its [`super::Vm`] is dropped.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use super::Shared;
use crate::error::{Error, Result};

struct Launched {
    /// [`stop_all`] ran: launches are refused.
    closed: bool,
    vms: Vec<Weak<Shared>>,
}

static LAUNCHED: Mutex<Launched> = Mutex::new(Launched {
    closed: false,
    vms: Vec::new(),
});

fn launched() -> MutexGuard<'static, Launched> {
    LAUNCHED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `spawn` (which starts QEMU) with the list locked, and lists the VM it returns.
/// After [`stop_all`], refuses with [`Error::Interrupted`] without running it.
pub(super) fn spawn_listed<T>(
    spawn: impl FnOnce() -> Result<(Arc<Shared>, T)>,
) -> Result<(Arc<Shared>, T)> {
    let mut list = launched();
    if list.closed {
        return Err(Error::Interrupted);
    }
    let (shared, more) = spawn()?;
    list.vms.retain(|vm| vm.strong_count() > 0);
    list.vms.push(Arc::downgrade(&shared));
    Ok((shared, more))
}

/// Stops every VM this process runs: QMP `quit` to each, then a kill for those still
/// running after `grace`. Refuses launches from now on. Returns how many VMs were
/// running. Their owners see them end ([`super::GuestExit::Stopped`], or QEMU killed).
pub fn stop_all(grace: Duration) -> usize {
    let vms = close_and_list();
    for vm in &vms {
        vm.stop_requested
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // A QMP client that holds the socket delays `quit`; the kill below does not wait.
        let vm = vm.clone();
        let _ = std::thread::Builder::new()
            .name("quit".to_owned())
            .spawn(move || {
                let _ = vm.send_quit(Duration::from_secs(2));
            });
    }
    let deadline = Instant::now() + grace;
    for vm in &vms {
        if !vm.wait_exited(deadline) {
            vm.kill();
        }
    }
    vms.len()
}

/// Kills every VM this process runs at once; refuses launches from now on.
pub fn kill_all() {
    for vm in close_and_list() {
        vm.stop_requested
            .store(true, std::sync::atomic::Ordering::SeqCst);
        vm.kill();
    }
}

fn close_and_list() -> Vec<Arc<Shared>> {
    let mut list = launched();
    list.closed = true;
    list.vms.iter().filter_map(Weak::upgrade).collect()
}

/// How many VMs this process runs.
pub fn running() -> usize {
    launched()
        .vms
        .iter()
        .filter(|vm| vm.upgrade().is_some_and(|vm| vm.process().status.is_none()))
        .count()
}
