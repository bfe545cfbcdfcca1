//! The hotpatch pause benchmark (`hotkernel bench patch`): on a fresh v1 VM, `rounds`
//! times apply `patch-a` and remove it. The pause is the guest's own measure (TSC, from
//! the first park IPI to the release of every CPU). Figures are printed, never asserted.

use std::time::Duration;

use serde_json::{json, Value};

use super::TRANSIENT_ATTEMPTS;
use crate::bench::stats;
use crate::demo::wait_progress;
use crate::error::{Error, Result};
use crate::mailbox::Mailbox;
use crate::update;
use crate::vm::{Vm, VmConfig};

const GUARD: Duration = Duration::from_secs(300);

/// One configuration's pauses, in µs, in the order measured.
#[derive(Debug, Clone, Default)]
pub struct PauseRun {
    pub cpus: u32,
    pub apply_us: Vec<f64>,
    pub remove_us: Vec<f64>,
    /// Of each pause, the park round trip (first IPI → last acknowledgement).
    pub apply_park_us: Vec<f64>,
    pub remove_park_us: Vec<f64>,
    /// CPUs the guest parked (the same for every round).
    pub cpus_parked: u32,
    /// Refusals of the moment (a CPU stood in the site) that were tried again.
    pub retries: u32,
}

/// min, median, p99 and the first value, as JSON.
fn figures(values: &[f64]) -> Value {
    let (min, median, p99) = stats(values);
    json!({"min": min, "median": median, "p99": p99, "first": values.first()})
}

impl PauseRun {
    pub fn json(&self) -> Value {
        json!({
            "cpus": self.cpus,
            "cpus_parked": self.cpus_parked,
            "rounds": self.apply_us.len(),
            "apply_pause_us": figures(&self.apply_us),
            "remove_pause_us": figures(&self.remove_us),
            "apply_park_us": figures(&self.apply_park_us),
            "remove_park_us": figures(&self.remove_park_us),
            "retries": self.retries,
        })
    }
}

/// Boots v1 on `cpus` CPUs, lets the tasks run, then applies and removes `patch`
/// `rounds` times.
/// Each apply has the health window `window`.
pub fn run(
    cpus: u32,
    rounds: usize,
    patch: &[u8],
    window: update::HealthWindow,
) -> Result<PauseRun> {
    let vm = Vm::launch(VmConfig::variant("v1").cpus(cpus))?;
    vm.wait_for_line("first task step", GUARD)?;
    let mut mb = Mailbox::open(vm.paths())?;
    mb.wait_running(GUARD)?;
    let start = update::snapshot(&mut mb)?;
    wait_progress(&mut mb, &start, 20)?;
    let mut run = PauseRun {
        cpus,
        ..PauseRun::default()
    };
    for round in 0..rounds {
        let (applied, retries) = super::retrying(
            || super::apply_with(&mut mb, patch, window),
            TRANSIENT_ATTEMPTS,
        )?;
        run.retries += retries;
        let applied = applied.map_err(|r| Error::PatchRefused {
            what: format!("apply {round}"),
            reason: super::refusal_reason(&r),
        })?;
        let (removed, retries) =
            super::retrying(|| super::remove(&mut mb, None), TRANSIENT_ATTEMPTS)?;
        run.retries += retries;
        let removed = removed.map_err(|r| Error::PatchRefused {
            what: format!("removal {round}"),
            reason: super::refusal_reason(&r),
        })?;
        run.cpus_parked = applied.cpus_parked;
        run.apply_us.push(applied.pause_ns as f64 / 1000.0);
        run.remove_us.push(removed.pause_ns as f64 / 1000.0);
        run.apply_park_us.push(applied.park_ns as f64 / 1000.0);
        run.remove_park_us.push(removed.park_ns as f64 / 1000.0);
    }
    let _ = vm.quit();
    Ok(run)
}
