//! A process-wide limit on how many VMs run at once.
//!
//! A 4-vCPU TCG guest keeps several host threads busy; on a 2-core machine, tests that
//! boot QEMU in parallel would mostly slow each other down (and starve the guests'
//! timers). Every [`crate::Vm`] holds a slot for its lifetime. The limit is
//! `$HOTKERNEL_PARALLEL_VMS` (default 1). A test that needs two VMs at once must raise it.

use std::sync::{Condvar, Mutex, OnceLock};

/// Environment variable with the number of VMs one process may run at once.
pub const PARALLEL_ENV: &str = "HOTKERNEL_PARALLEL_VMS";

struct Slots {
    in_use: Mutex<usize>,
    freed: Condvar,
    limit: usize,
}

fn slots() -> &'static Slots {
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    SLOTS.get_or_init(|| Slots {
        in_use: Mutex::new(0),
        freed: Condvar::new(),
        limit: std::env::var(PARALLEL_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or(1),
    })
}

/// A held slot; dropping it lets the next VM start.
#[must_use = "the slot is released when dropped"]
pub struct Slot(());

/// Blocks until a slot is free.
pub fn acquire() -> Slot {
    let slots = slots();
    let mut in_use = slots.in_use.lock().unwrap_or_else(|e| e.into_inner());
    while *in_use >= slots.limit {
        in_use = slots.freed.wait(in_use).unwrap_or_else(|e| e.into_inner());
    }
    *in_use += 1;
    Slot(())
}

impl Drop for Slot {
    fn drop(&mut self) {
        let slots = slots();
        *slots.in_use.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        slots.freed.notify_one();
    }
}
