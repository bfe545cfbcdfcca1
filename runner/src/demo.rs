//! The demo: boot v1 on a few CPUs, let the tasks run, swap to v2 and then v3, and
//! check after each swap that every task carried on (snapshots before and after,
//! [`crate::continuity`]) and that the changed behaviour shows. Headless; the CLI prints
//! a human report or one JSON object.

use std::time::{Duration, Instant};

use image_format::mailbox::report::{Outcome, Snapshot, SwapReport};
use image_format::mailbox::RequestFlags;
use image_format::TaskKind;
use serde_json::{json, Value};

use crate::continuity::{self, Continuity};
use crate::error::{Error, Result};
use crate::mailbox::Mailbox;
use crate::update;
use crate::vm::{Vm, VmConfig};

/// The kernel's image base: after a swap the running code lives there again.
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;

/// How long the demo waits for anything before giving up (a hang guard).
const GUARD: Duration = Duration::from_secs(120);

/// One swap of the demo and what was verified.
#[derive(Debug, Clone)]
pub struct DemoSwap {
    pub target: String,
    pub report: SwapReport,
    /// Continuity across the swap (snapshot right before the apply → right after).
    pub across: Continuity,
    /// Continuity after it (right after → once every task ran again), under the new code.
    pub after: Continuity,
    /// What the new behaviour should look like, and whether it does.
    pub behaviour: Vec<(String, bool)>,
    /// Image base unchanged and back at the kernel base.
    pub addresses_ok: bool,
}

impl DemoSwap {
    /// True only when the swap applied and continuity, behaviour and addresses check out.
    pub fn state_ok(&self) -> bool {
        matches!(self.report.outcome, Outcome::Applied)
            && self.across.ok()
            && self.after.ok()
            && self.behaviour.iter().all(|(_, ok)| *ok)
            && self.addresses_ok
    }

    pub fn json(&self) -> Value {
        let mut v = crate::report::swap_json(&self.report, Some(self.state_ok()));
        v["target"] = json!(self.target);
        v["continuity"] = json!({
            "across_swap": {"tasks": self.across.tasks_compared, "dropped": self.across.tasks_dropped,
                             "added": self.across.tasks_added, "problems": self.across.problems},
            "after_swap": {"tasks": self.after.tasks_compared, "problems": self.after.problems},
        });
        v["behaviour"] = self
            .behaviour
            .iter()
            .map(|(what, ok)| json!({"check": what, "ok": ok}))
            .collect();
        v["addresses_ok"] = json!(self.addresses_ok);
        v
    }
}

/// The whole demo.
#[derive(Debug, Clone)]
pub struct DemoRun {
    pub cpus: u32,
    pub swaps: Vec<DemoSwap>,
}

impl DemoRun {
    pub fn ok(&self) -> bool {
        !self.swaps.is_empty() && self.swaps.iter().all(DemoSwap::state_ok)
    }

    pub fn json(&self) -> Value {
        json!({
            "demo": "swap",
            "cpus": self.cpus,
            "ok": self.ok(),
            "swaps": self.swaps.iter().map(DemoSwap::json).collect::<Vec<_>>(),
        })
    }
}

/// Takes snapshots until every task of `kinds` (all when empty) ran at least `steps`
/// more steps than in `since`, and every task that is new since then ran at least once.
pub fn wait_progress(mb: &mut Mailbox, since: &Snapshot, steps: u64) -> Result<Snapshot> {
    let deadline = Instant::now() + GUARD;
    loop {
        let now = update::snapshot(mb)?;
        let done = now.tasks.iter().all(|t| {
            // The heartbeat steps once a second and the service only when asked:
            // they are not waited for.
            if t.kind == TaskKind::HEARTBEAT.raw() || t.kind == TaskKind::SERVICE.raw() {
                return true;
            }
            match since.tasks.iter().find(|b| b.id == t.id) {
                Some(b) => t.steps >= b.steps + steps,
                None => t.steps >= 1,
            }
        });
        if done {
            return Ok(now);
        }
        if Instant::now() > deadline {
            return Err(Error::Mailbox(format!(
                "tasks did not make {steps} steps of progress within {GUARD:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn of_kind(
    s: &Snapshot,
    kind: TaskKind,
) -> impl Iterator<Item = &image_format::mailbox::report::TaskSnapshot> {
    s.tasks.iter().filter(move |t| t.kind == kind.raw())
}

/// Swaps to `target`'s package and verifies; `dropped` are the task kinds the target no
/// longer runs.
fn swap_and_verify(
    mb: &mut Mailbox,
    target: &str,
    dropped: &[TaskKind],
    cpus: u32,
) -> Result<DemoSwap> {
    let (package, _) = update::package_variant(target)?;
    match update::stage(mb, &package, &update::PushOptions::default(), |_| {})? {
        Ok(_) => {}
        Err(refused) => return Err(Error::Mailbox(format!("{target} was refused: {refused}"))),
    }
    let before = update::snapshot(mb)?;
    let report = match update::apply(mb, RequestFlags::empty())? {
        Ok(r) => r,
        Err(refused) => {
            return Err(Error::Mailbox(format!(
                "swap to {target} refused: {refused}"
            )))
        }
    };
    let right_after = update::snapshot(mb)?;
    let later = wait_progress(mb, &right_after, 20)?;
    let across = continuity::check(&before, &right_after, dropped);
    let after = continuity::check(&right_after, &later, &[]);
    let mut behaviour = Vec::new();
    match target {
        "v2" => {
            behaviour.push((
                "every LCG steps with rule 2 (v2's new step)".to_owned(),
                of_kind(&later, TaskKind::LCG).count() > 0
                    && of_kind(&later, TaskKind::LCG).all(|t| t.values[3] == 2),
            ));
            behaviour.push((
                "every counter records the CPU that stepped it (state v2)".to_owned(),
                of_kind(&later, TaskKind::COUNTER).all(|t| t.values[2] < u64::from(cpus)),
            ));
        }
        "v3" => {
            behaviour.push((
                "no ticker task is left (v3 removed the kind)".to_owned(),
                of_kind(&later, TaskKind::TICKER).count() == 0,
            ));
            let first: Vec<_> = of_kind(&right_after, TaskKind::TABLE).collect();
            behaviour.push((
                "table tasks were created and run over the new table".to_owned(),
                !first.is_empty()
                    && of_kind(&later, TaskKind::TABLE)
                        .all(|t| t.steps >= 1 && (t.values[0] > 0 || t.values[1] > 0)),
            ));
        }
        _ => {}
    }
    let addresses_ok = report.new_image_base == KERNEL_BASE
        && report.old_image_base == KERNEL_BASE
        && report.staging_base != KERNEL_BASE;
    Ok(DemoSwap {
        target: target.to_owned(),
        report,
        across,
        after,
        behaviour,
        addresses_ok,
    })
}

/// Runs the demo on `cpus` CPUs. `progress` hears what is happening (for the human output).
pub fn run(cpus: u32, mut progress: impl FnMut(&str)) -> Result<DemoRun> {
    progress("building and packing v1, v2, v3");
    for v in ["v2", "v3"] {
        update::package_variant(v)?;
    }
    progress(&format!("booting v1 on {cpus} CPUs"));
    let vm = Vm::launch(VmConfig::variant("v1").cpus(cpus))?;
    vm.wait_for_line("first task step", GUARD)?;
    let mut mb = Mailbox::open(vm.paths())?;
    mb.wait_running(GUARD)?;
    let start = update::snapshot(&mut mb)?;
    wait_progress(&mut mb, &start, 50)?;
    let mut swaps = Vec::new();
    for (target, dropped) in [("v2", &[][..]), ("v3", &[TaskKind::TICKER][..])] {
        progress(&format!("swapping to {target}"));
        let swap = swap_and_verify(&mut mb, target, dropped, cpus)?;
        progress(&format!(
            "{} → {}: downtime {:.0} µs, state {}",
            swap.report.from,
            swap.report.to,
            swap.report.downtime_ns as f64 / 1000.0,
            if swap.state_ok() { "ok" } else { "NOT ok" }
        ));
        swaps.push(swap);
    }
    let _ = vm.quit();
    Ok(DemoRun { cpus, swaps })
}
