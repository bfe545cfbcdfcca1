//! Each route of a change carried out, and its one summary line: what changed, how it
//! went in, pause or downtime, tasks kept, and the time split
//! (`build · generate|pack · delivery · staging · apply`).

use std::time::{Duration, Instant};

use image_format::mailbox::report::{Method, Outcome, SwapReport};

use super::deliver::{self, SwapOutcome};
use super::{say, Options};
use crate::coldpatch;
use crate::description::RecordOutcome;
use crate::error::Result;
use crate::hotpatch;
use crate::mailbox::Mailbox;
use crate::plan::{builds, short_name, Plan, Running, SwapCheck};
use crate::vm::VmState;

/// Where one change's time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Times {
    pub build: Duration,
    pub generate: Duration,
    pub pack: Duration,
    pub delivery: Option<Duration>,
    pub staging: Option<Duration>,
    pub apply: Option<Duration>,
    /// Keeping the patches for the next boot (coldpatch), after a hotpatch.
    pub keep: Option<Duration>,
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1e3)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

impl Times {
    /// `build 8.10 s · generate 96 ms · delivery 0.1 ms · apply 9.8 ms (after the build 106 ms)`;
    /// `hotpatch` picks generate (a hotpatch) or pack (a swap).
    fn line(&self, hotpatch: bool) -> String {
        let mut parts = vec![format!("build {}", ms(self.build))];
        let mut after = Duration::ZERO;
        let mut add = |name: &str, d: Option<Duration>, parts: &mut Vec<String>| {
            if let Some(d) = d {
                after += d;
                parts.push(format!("{name} {}", ms(d)));
            }
        };
        if hotpatch {
            add("generate", Some(self.generate), &mut parts);
        } else {
            add("plan", Some(self.generate), &mut parts);
            add("pack", Some(self.pack), &mut parts);
        }
        add("delivery", self.delivery, &mut parts);
        add("staging", self.staging, &mut parts);
        add("apply", self.apply, &mut parts);
        let mut line = format!("{} (after the build {})", parts.join(" · "), ms(after));
        if let Some(keep) = self.keep {
            line.push_str(&format!(", then kept for the next boot in {}", ms(keep)));
        }
        line
    }
}

/// `f, g and 3 more`.
fn few(names: &[String]) -> String {
    const SHOWN: usize = 3;
    let shown: Vec<String> = names.iter().take(SHOWN).map(|n| short_name(n)).collect();
    match names.len() {
        0 => "no function".to_owned(),
        n if n <= SHOWN => shown.join(", "),
        n => format!("{} and {} more", shown.join(", "), n - SHOWN),
    }
}

/// What changed, in words: functions and record kinds.
fn what_changed(plan: &Plan) -> String {
    let functions = plan.changed();
    let functions = format!("{} function(s) ({})", functions.len(), few(&functions));
    let mut out = String::new();
    if let SwapCheck::Passed(p) = &plan.swap {
        let kinds: Vec<String> = p
            .records
            .iter()
            .filter_map(|r| match r {
                RecordOutcome::Read {
                    method: updater::plan::Method::Unchanged,
                    ..
                } => None,
                RecordOutcome::Read {
                    kind,
                    from,
                    to,
                    method,
                    ..
                } => Some(format!("{kind} {from}→{to} {method}")),
                RecordOutcome::Dropped { kind, .. } => Some(format!("{kind} dropped")),
                RecordOutcome::New { kind, .. } => Some(format!("{kind} added")),
            })
            .collect();
        if !kinds.is_empty() {
            out = format!("records {}; ", kinds.join(", "));
        }
    }
    out + &functions
}

/// Nothing to do, or refused: the VM is as it was.
pub fn not_applied(n: u32, plan: &Plan, times: &Times) -> String {
    match plan.route {
        crate::plan::Route::Nothing => format!(
            "#{n} nothing to apply: {} | build {}",
            plan.reason,
            ms(times.build)
        ),
        _ => format!(
            "#{n} refused: {}; the VM runs on as it was | {}",
            plan.reason,
            times.line(false)
        ),
    }
}

fn tasks_now(mb: &Mailbox) -> Option<u32> {
    mb.status().ok().map(|s| s.tasks)
}

/// Applies the plan's patch; falls back to a swap when the guest refuses it for good.
pub fn hotpatch(
    n: u32,
    state: &VmState,
    mb: &mut Mailbox,
    running: &Running,
    plan: &Plan,
    mut times: Times,
    opts: &Options,
) -> Result<String> {
    let Some(patch) = &plan.patch else {
        return Ok(format!("#{n} no patch was made; nothing applied"));
    };
    let (result, steps) = deliver::hotpatch(mb, patch)?;
    times.delivery = Some(steps.delivery);
    times.apply = Some(steps.apply);
    let report = match result {
        Ok(r) => r,
        Err(refused) if refused.status == image_format::mailbox::Status::Reverted => {
            // Its code ran and failed inside the health window: a swap to the same code
            // would fail alike. The guest says what failed.
            let label = match &refused.report {
                Some(image_format::mailbox::report::Report::Patch(p)) => {
                    format!(" {} \"{}\"", hotpatch::id_text(p.id), p.label)
                }
                _ => String::new(),
            };
            return Ok(format!(
                "#{n} hotpatch{label} reverted: {}; the VM runs on as it was | {}",
                refused.message,
                times.line(true)
            ));
        }
        Err(refused) => {
            let reason = hotpatch::refusal_reason(&refused);
            say(&format!(
                "#{n} the guest refused the hotpatch ({reason}): swapping instead"
            ));
            return swap(n, mb, plan, times, opts);
        }
    };
    if let Some(id) = crate::hotpatch::elf::build_id(&hotpatch::read(&plan.new.elf)?) {
        builds::record_patch(&state.name, report.id, &id)?;
    }
    let started = Instant::now();
    let ids: Vec<u64> = hotpatch::list(mb)?.patches.iter().map(|p| p.id).collect();
    let kept = coldpatch::keep(&state.name, &running.elf, &ids, Some(patch));
    times.keep = Some(started.elapsed());
    if let Err(e) = &kept {
        say(&format!(
            "#{n} warning: not kept for the next boot: {e} (the patch runs)"
        ));
    }
    if opts.verbose {
        for f in &report.functions {
            say(&format!("  replaced {} at {:#x}", f.name, f.site));
        }
    }
    let tasks = tasks_now(mb).map_or_else(String::new, |t| format!(", all {t} tasks kept"));
    Ok(format!(
        "#{n} hotpatch {} \"{}\" (stack {}): {} — pause {:.1} µs, {} other CPU(s) parked{tasks} | {}",
        hotpatch::id_text(report.id),
        report.label,
        report.stack_depth,
        few(&plan.changed()),
        report.pause_ns as f64 / 1000.0,
        report.cpus_parked,
        times.line(true)
    ))
}

fn swap_report_lines(r: &SwapReport) {
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| format!("{} {:.1}", p.phase.name(), p.ns as f64 / 1000.0))
        .collect();
    say(&format!("  phases (µs): {}", phases.join(", ")));
    for c in r
        .conversions
        .iter()
        .filter(|c| c.method != Method::Unchanged)
    {
        say(&format!("  {c}"));
    }
    for w in &r.warnings {
        say(&format!("  warning: {w}"));
    }
}

/// Swaps to the plan's package.
pub fn swap(
    n: u32,
    mb: &mut Mailbox,
    plan: &Plan,
    mut times: Times,
    opts: &Options,
) -> Result<String> {
    let (outcome, steps) = deliver::swap(mb, &plan.package)?;
    times.delivery = Some(steps.delivery);
    times.staging = steps.staging;
    times.apply = (steps.apply > Duration::ZERO).then_some(steps.apply);
    let line = match outcome {
        SwapOutcome::Swapped(r) => {
            if opts.verbose {
                swap_report_lines(&r);
            }
            match &r.outcome {
                Outcome::Applied => {
                    if let Ok(h) = image_format::package::parse_header(&plan.package) {
                        if let Err(e) = crate::coldpatch::note_swap(&opts.vm, h.svn(), &r.to.to_string()) {
                            say(&format!("  warning: the VM's kept security floor was not raised: {e}"));
                        }
                    }
                    let dropped = match plan.patches.len() {
                        0 => String::new(),
                        k => format!(", {k} patch(es) dropped"),
                    };
                    format!(
                        "#{n} swap {} → {}: {} — downtime {:.1} ms, tasks {} → {}{dropped} | {}",
                        r.from,
                        r.to,
                        what_changed(plan),
                        r.downtime_ns as f64 / 1e6,
                        r.tasks_before,
                        r.tasks_after,
                        times.line(false)
                    )
                }
                Outcome::RolledBack { reason } => format!(
                    "#{n} swap rolled back: {reason}; the VM runs the old kernel with its tasks | {}",
                    times.line(false)
                ),
            }
        }
        SwapOutcome::NotStaged(r) => format!(
            "#{n} refused by the guest's staging: {}; the VM runs on as it was | {}",
            r.message,
            times.line(false)
        ),
        SwapOutcome::Predicted(message) => format!(
            "#{n} refused: the guest's dry run of the new bootstrap predicts a refusal ({message}); released, the VM runs on as it was | {}",
            times.line(false)
        ),
        SwapOutcome::Refused(r) if r.status == image_format::mailbox::Status::Reverted => format!(
            "#{n} swap reverted: {} | {}",
            r.message,
            times.line(false)
        ),
        SwapOutcome::Refused(r) => format!(
            "#{n} swap refused: {}; the VM runs on as it was | {}",
            r.message,
            times.line(false)
        ),
    };
    Ok(line)
}

/// Removes every applied patch: the new build is the running base.
pub fn unpatch(
    n: u32,
    state: &VmState,
    mb: &mut Mailbox,
    running: &Running,
    plan: &Plan,
    mut times: Times,
) -> Result<String> {
    let Some(bottom) = plan.patches.first() else {
        return Ok(format!("#{n} nothing to apply: no patch is applied"));
    };
    let (result, steps) = deliver::unpatch(mb, bottom.id)?;
    times.apply = Some(steps.apply);
    Ok(match result {
        Ok(r) => {
            let started = Instant::now();
            if let Err(e) = coldpatch::keep(&state.name, &running.elf, &[], None) {
                say(&format!(
                    "#{n} warning: the next boot may keep patches: {e}"
                ));
            }
            times.keep = Some(started.elapsed());
            format!(
                "#{n} removed {} patch(es): the VM runs its base build again — pause {:.1} µs | {}",
                plan.patches.len(),
                r.pause_ns as f64 / 1000.0,
                times.line(true)
            )
        }
        Err(refused) => format!(
            "#{n} removing the patches was refused: {}; the VM runs on as it was",
            hotpatch::refusal_reason(&refused)
        ),
    })
}
