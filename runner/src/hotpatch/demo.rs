//! The hotpatch demo (`hotkernel demo --hotpatch`): boot v1, let the tasks run, then
//!
//! 1. apply `patch-a` — counters step by 2;
//! 2. stack `patch-b` — a multi-site patch: tickers (and the heartbeat) count 2;
//! 3. stack `patch-e` — replaces the function `patch-a` replaced: counters step by 3;
//! 4. remove them newest first — counters back to 2, tickers back to 1, counters back
//!    to 1;
//!
//! checking after each operation that every task carried on (snapshots before and
//! after, [`crate::continuity`] with the step rules of both sides) and that the new
//! behaviour shows; after the last removal the running text must equal v1's ELF byte
//! for byte, every site included. Headless; the CLI prints a human report or JSON.

use std::collections::BTreeSet;
use std::time::Duration;

use image_format::mailbox::report::{PatchOp, PatchReport, PatchedFunction, Snapshot};
use image_format::TaskKind;
use serde_json::{json, Value};

use super::{hex, TextCheck, TRANSIENT_ATTEMPTS};
use crate::continuity::{self, Continuity};
use crate::demo::wait_progress;
use crate::error::{Error, Result};
use crate::mailbox::Mailbox;
use crate::update;
use crate::vm::{Vm, VmConfig};

/// How long the demo waits for the guest before giving up (a hang guard).
const GUARD: Duration = Duration::from_secs(120);

/// The patches, in the order they are stacked.
pub const PATCHES: [&str; 3] = ["patch-a", "patch-b", "patch-e"];

/// Per-step increments of counters and tickers with `stack` applied (bottom first).
pub fn increments(stack: &[&str]) -> (u64, u64) {
    let counter = if stack.contains(&"patch-e") {
        3
    } else if stack.contains(&"patch-a") {
        2
    } else {
        1
    };
    let tick = if stack.contains(&"patch-b") { 2 } else { 1 };
    (counter, tick)
}

/// One apply or remove of the demo and what was verified.
#[derive(Debug, Clone)]
pub struct DemoPatchStep {
    /// The patch (variant name).
    pub patch: String,
    pub report: PatchReport,
    /// Refusals met before it went through (a CPU standing in a site).
    pub retries: u32,
    /// Continuity across the operation (snapshot right before → right after).
    pub across: Continuity,
    /// Continuity after it (right after → once every task ran again), new code only.
    pub after: Continuity,
    /// What the behaviour should be, and whether it is.
    pub behaviour: Vec<(String, bool)>,
}

impl DemoPatchStep {
    /// True only when continuity was verified and every behaviour check holds.
    pub fn state_ok(&self) -> bool {
        self.report.refused.is_none()
            && self.across.ok()
            && self.after.ok()
            && self.behaviour.iter().all(|(_, ok)| *ok)
    }

    pub fn json(&self) -> Value {
        let mut v = super::report_json(&self.report);
        v["patch"] = json!(self.patch);
        v["retries"] = json!(self.retries);
        v["state_ok"] = json!(self.state_ok());
        v["continuity"] = json!({
            "across": {"tasks": self.across.tasks_compared, "problems": self.across.problems},
            "after": {"tasks": self.after.tasks_compared, "problems": self.after.problems},
        });
        v["behaviour"] = self
            .behaviour
            .iter()
            .map(|(what, ok)| json!({"check": what, "ok": ok}))
            .collect();
        v
    }
}

/// The whole demo.
#[derive(Debug, Clone)]
pub struct HotpatchDemo {
    pub cpus: u32,
    pub steps: Vec<DemoPatchStep>,
    /// The running text against v1's ELF after the last removal.
    pub restored: TextCheck,
    /// Every site a patch wrote.
    pub sites: Vec<PatchedFunction>,
    /// Patches the guest still lists at the end.
    pub left: usize,
}

impl HotpatchDemo {
    /// Sites whose bytes are v1's again.
    pub fn sites_restored(&self) -> usize {
        self.sites
            .iter()
            .filter(|s| self.restored.restored(s.site, 16))
            .count()
    }

    pub fn ok(&self) -> bool {
        self.steps.len() == 2 * PATCHES.len()
            && self.steps.iter().all(DemoPatchStep::state_ok)
            && self.restored.identical()
            && self.sites_restored() == self.sites.len()
            && self.left == 0
    }

    pub fn json(&self) -> Value {
        json!({
            "demo": "hotpatch",
            "cpus": self.cpus,
            "ok": self.ok(),
            "patches": self.steps.iter().map(DemoPatchStep::json).collect::<Vec<_>>(),
            "restored": {
                "text_bytes_compared": self.restored.compared,
                "identical_to_v1": self.restored.identical(),
                "sites_checked": self.sites.len(),
                "sites_restored": self.sites_restored(),
                "differences": self.restored.differences.iter().map(|d| json!({
                    "address": format!("{:#x}", d.address),
                    "expected": hex(&d.expected),
                    "found": hex(&d.found),
                })).collect::<Vec<_>>(),
            },
            "patches_left": self.left,
        })
    }
}

/// Whether every task of `kind` that stepped between `a` and `b` advanced its first
/// value by exactly `by` per step, and at least one did.
fn advances_by(a: &Snapshot, b: &Snapshot, kind: TaskKind, by: u64) -> bool {
    let mut seen = false;
    for t in b.tasks.iter().filter(|t| t.kind == kind.raw()) {
        let Some(old) = a.tasks.iter().find(|o| o.id == t.id) else {
            continue;
        };
        let d = t.steps.saturating_sub(old.steps);
        if d == 0 {
            continue;
        }
        seen = true;
        if t.values[0].checked_sub(old.values[0]) != Some(by * d) {
            return false;
        }
    }
    seen
}

fn names(r: &PatchReport) -> BTreeSet<&str> {
    r.functions.iter().map(|f| f.name.as_str()).collect()
}

/// Applies (`Some(patch)`) or removes the newest patch, and verifies. `stack` is the
/// stack before the operation, bottom first.
fn step(
    mb: &mut Mailbox,
    name: &str,
    patch: Option<&[u8]>,
    stack: &[&str],
    applied: &[PatchReport],
) -> Result<DemoPatchStep> {
    let mut after_stack = stack.to_vec();
    match patch {
        Some(_) => after_stack.push(name),
        None => {
            after_stack.pop();
        }
    }
    let (counter, tick) = increments(&after_stack);
    let before = update::snapshot(mb)?;
    let (report, retries) = match patch {
        Some(bytes) => super::retrying(|| super::apply(mb, bytes), TRANSIENT_ATTEMPTS)?,
        None => super::retrying(|| super::remove(mb, None), TRANSIENT_ATTEMPTS)?,
    };
    let (report, retries) = match report {
        Ok(r) => (r, retries),
        Err(refused) => {
            let op = if patch.is_some() { "apply" } else { "removal" };
            return Err(Error::PatchRefused {
                what: format!("the {op} of {name}"),
                reason: super::refusal_reason(&refused),
            });
        }
    };
    let right_after = update::snapshot(mb)?;
    let later = wait_progress(mb, &right_after, 20)?;
    let across = continuity::check(&before, &right_after, &[]);
    let after = continuity::check(&right_after, &later, &[]);
    let mut behaviour = vec![
        (
            format!("every counter advances by {counter} per step"),
            advances_by(&right_after, &later, TaskKind::COUNTER, counter),
        ),
        (
            format!("every ticker advances by {tick} per step"),
            advances_by(&right_after, &later, TaskKind::TICKER, tick),
        ),
        (
            format!("{} patches applied", after_stack.len()),
            report.stack_depth as usize == after_stack.len(),
        ),
    ];
    match (report.op, name) {
        (PatchOp::Apply, "patch-b") => behaviour.push((
            format!("multi-site: {} sites written", report.functions.len()),
            report.functions.len() >= 2,
        )),
        (PatchOp::Apply, "patch-e") => {
            let a = applied.iter().find(|r| r.label == "patch-a");
            let shared: Vec<&str> = a.map_or_else(Vec::new, |a| {
                names(a).intersection(&names(&report)).copied().collect()
            });
            behaviour.push((
                format!(
                    "replaces the function patch-a replaced ({})",
                    shared.join(", ")
                ),
                !shared.is_empty(),
            ));
        }
        (PatchOp::Remove, _) => {
            let was = applied.iter().find(|r| r.label == name);
            behaviour.push((
                format!("restores every site {name} wrote"),
                was.is_some_and(|w| names(w) == names(&report)) && report.label == name,
            ));
        }
        _ => {}
    }
    Ok(DemoPatchStep {
        patch: name.to_owned(),
        report,
        retries,
        across,
        after,
        behaviour,
    })
}

/// Runs the demo on `cpus` CPUs. `progress` hears what is happening.
pub fn run(cpus: u32, mut progress: impl FnMut(&str)) -> Result<HotpatchDemo> {
    progress("building v1, patch-a, patch-b, patch-e and making the patches (against v1)");
    let v1_elf = super::read(&super::variant_elf("v1")?)?;
    let patches = PATCHES
        .iter()
        .map(|p| super::patch_between("v1", p))
        .collect::<Result<Vec<_>>>()?;
    progress(&format!("booting v1 on {cpus} CPUs"));
    let vm = Vm::launch(VmConfig::variant("v1").cpus(cpus))?;
    vm.wait_for_line("first task step", GUARD)?;
    let mut mb = Mailbox::open(vm.paths())?;
    mb.wait_running(GUARD)?;
    let start = update::snapshot(&mut mb)?;
    wait_progress(&mut mb, &start, 50)?;

    let mut steps = Vec::new();
    let mut applied: Vec<PatchReport> = Vec::new();
    let mut stack: Vec<&str> = Vec::new();
    let mut load_base = None;
    for (name, patch) in PATCHES.iter().zip(&patches) {
        progress(&format!("applying {name}"));
        let s = step(&mut mb, name, Some(patch), &stack, &applied)?;
        announce(&mut progress, &s);
        load_base = load_base.or_else(|| super::load_base(patch, &s.report));
        stack.push(name);
        applied.push(s.report.clone());
        steps.push(s);
    }
    while let Some(name) = stack.last().copied() {
        progress(&format!("removing {name}"));
        let s = step(&mut mb, name, None, &stack, &applied)?;
        announce(&mut progress, &s);
        stack.pop();
        steps.push(s);
    }
    let load_base = load_base.ok_or_else(|| {
        Error::Patch("no reported site matches the patch's sites: cannot locate the image".into())
    })?;
    progress("comparing the running text with v1's ELF");
    let restored = super::compare_text(&mut mb, &v1_elf, load_base)?;
    let left = super::list(&mut mb)?.patches.len();
    let mut sites: Vec<PatchedFunction> = Vec::new();
    for f in applied.iter().flat_map(|r| &r.functions) {
        if !sites.iter().any(|s| s.site == f.site) {
            sites.push(f.clone());
        }
    }
    let _ = vm.quit();
    Ok(HotpatchDemo {
        cpus,
        steps,
        restored,
        sites,
        left,
    })
}

fn announce(progress: &mut impl FnMut(&str), s: &DemoPatchStep) {
    progress(&format!(
        "{} {}: {} sites, pause {:.1} µs, {} CPUs parked, state {}",
        s.report.op,
        s.patch,
        s.report.functions.len(),
        s.report.pause_ns as f64 / 1000.0,
        s.report.cpus_parked,
        if s.state_ok() { "ok" } else { "NOT ok" }
    ));
}

#[cfg(test)]
mod tests {
    use image_format::mailbox::report::TaskSnapshot;

    use super::*;

    fn snap(tasks: &[(u32, TaskKind, u64, u64)]) -> Snapshot {
        Snapshot {
            tsc_hz: 1,
            tsc: 0,
            tasks: tasks
                .iter()
                .map(|&(id, kind, steps, value)| TaskSnapshot {
                    id,
                    kind: kind.raw(),
                    schema: 1,
                    cpu: 0,
                    flags: 0,
                    steps,
                    values: [value, 0, 0, 0],
                })
                .collect(),
            kinds: Vec::new(),
        }
    }

    #[test]
    fn increments_follow_the_stack() {
        assert_eq!(increments(&[]), (1, 1));
        assert_eq!(increments(&["patch-a"]), (2, 1));
        assert_eq!(increments(&["patch-a", "patch-b"]), (2, 2));
        assert_eq!(increments(&["patch-a", "patch-b", "patch-e"]), (3, 2));
    }

    #[test]
    fn advancing_needs_every_stepped_task_exact_and_one_at_least() {
        let a = snap(&[(1, TaskKind::COUNTER, 10, 20), (2, TaskKind::COUNTER, 5, 5)]);
        let b = snap(&[(1, TaskKind::COUNTER, 13, 26), (2, TaskKind::COUNTER, 5, 5)]);
        assert!(advances_by(&a, &b, TaskKind::COUNTER, 2));
        assert!(!advances_by(&a, &b, TaskKind::COUNTER, 1));
        assert!(
            !advances_by(&a, &a, TaskKind::COUNTER, 2),
            "nothing stepped: nothing shown"
        );
        assert!(!advances_by(&a, &b, TaskKind::TICKER, 1));
    }
}
