//! `hotkernel soak`: one VM, many updates in a row, every one checked.
//!
//! The VM boots `v1`; then `swaps` swaps alternate `v1 → twin → v1 …` (`twin` is v1's
//! code under another version and label, so every swap installs another image), and
//! `patches` hotpatch rounds (apply `patch-a`, then remove it) are spread over the run
//! while the VM runs `v1` (the build the patch was made from). After every operation:
//!
//! - the task snapshot is compared with the one before it ([`crate::continuity`]):
//!   every task carried on, none lost, none appeared;
//! - a swap must have been applied, to the build expected, and a patch round must leave
//!   the patch count where it should be;
//! - free memory (the guest status block's `free_frames`, read once the update service
//!   has polled twice since the answer, so what the swap left over has been freed) after
//!   each swap and each patch removal must equal its value after the first swap. Before
//!   the first swap, a removal must leave what the first removal left (the first apply
//!   makes page tables for the patch area, which stay).
//!
//! A swap the guest refuses for a reason of the moment ([`of_the_moment`]: a CPU that
//! did not park within the quiesce bound, a missed health deadline — under TCG on a
//! loaded host, a vCPU thread the host did not run for a few hundred ms) is tried again
//! up to [`SWAP_ATTEMPTS`] times, after checking that the old kernel ran on with every
//! task; each such attempt is reported ([`SoakRun::retried_swaps`]). `--strict` fails
//! at the first instead. A refused swap leaves its package staged (the next stage frees
//! it), so free memory is compared only after swaps that applied.
//!
//! The first discrepancy ends the run ([`SoakRun::failure`] says what differed). The
//! figures: downtime (the guest's own measure) over every swap, the median of the first
//! and of the last 100 (drift shows as a difference), the hotpatch pauses, free memory
//! after the first swap and at the end, the wall time.
//!
//! What it does not check: the tasks' values beyond their kinds' continuity rules, and
//! memory the guest does not count as free (a leak of heap inside the image would show
//! only once the heap grew into new frames).

use std::time::{Duration, Instant};

use image_format::mailbox::report::{Outcome, Snapshot};
use image_format::mailbox::{GuestStatus, RequestFlags, Status};
use serde_json::{json, Value};

use crate::bench::stats;
use crate::continuity;
use crate::error::Result;
use crate::hotpatch;
use crate::mailbox::Mailbox;
use crate::update::{self, HealthWindow, PushOptions, Refused};
use crate::vm::{Vm, VmConfig};

/// A hang guard for the boot and for the service's polls (not a target).
const GUARD: Duration = Duration::from_secs(300);
/// Swaps in each of the windows whose medians are compared.
pub const WINDOW: usize = 100;
/// Attempts at one swap while the guest refuses it for a passing reason.
pub const SWAP_ATTEMPTS: u32 = 3;

/// Whether the guest refused a swap for a reason of the moment, with the old kernel
/// running on: a CPU did not park within the quiesce bound, or the new kernel missed
/// its health window's deadline (and was taken back). Under TCG on a loaded host both
/// follow from the host not running a vCPU's thread for a while; a CPU that really
/// never parks or schedules fails every attempt. An exception or a panic in the new
/// kernel is never of the moment.
pub fn of_the_moment(r: &Refused) -> bool {
    r.status == Status::QuiesceTimeout
        || (r.status == Status::Reverted
            && r.message.contains("the health check's deadline passed"))
}

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoakOptions {
    pub swaps: usize,
    pub patches: usize,
    pub cpus: u32,
    /// A fault for one swap (1-based) to carry: the soak must catch what it does.
    pub inject: Option<(usize, RequestFlags)>,
    /// The health window every swap asks for.
    pub health: HealthWindow,
    /// Try a swap again when the guest refused it for a reason of the moment
    /// ([`of_the_moment`]); off, the first refusal fails the soak.
    pub retry: bool,
}

/// The first operation that went wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    /// The operation: `swap 12 (v1-twin → v1)`, `patch round 3: apply`.
    pub at: String,
    pub problems: Vec<String>,
}

/// A soak's figures, over the operations it ran.
#[derive(Debug, Clone, Default)]
pub struct SoakRun {
    pub asked: (usize, usize),
    pub cpus: u32,
    pub tasks: usize,
    /// Downtime of each swap applied, in µs, in order.
    pub downtimes_us: Vec<f64>,
    /// Pause of each patch apply and removal, in µs.
    pub apply_us: Vec<f64>,
    pub remove_us: Vec<f64>,
    /// Patch operations refused for a passing reason and tried again.
    pub retries: u32,
    /// Swap attempts refused for a passing reason and tried again: what the guest said.
    pub retried_swaps: Vec<String>,
    /// Free frames at boot, after the first swap, and after the last operation.
    pub free_boot: u64,
    pub free_after_first_swap: Option<u64>,
    pub free_end: u64,
    pub wall: Duration,
    pub failure: Option<Discrepancy>,
}

impl SoakRun {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// Swaps applied.
    pub fn swaps(&self) -> usize {
        self.downtimes_us.len()
    }

    /// Patch rounds completed (applied and removed).
    pub fn patch_rounds(&self) -> usize {
        self.remove_us.len()
    }

    /// Median downtime of the first and of the last [`WINDOW`] swaps (they overlap when
    /// fewer than twice as many ran).
    pub fn window_medians(&self) -> (f64, f64) {
        let d = &self.downtimes_us;
        let w = WINDOW.min(d.len());
        (stats(&d[..w]).1, stats(&d[d.len() - w..]).1)
    }

    /// The longest downtime and its swap (1-based), if any swap applied.
    pub fn longest(&self) -> Option<(f64, usize)> {
        self.downtimes_us
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, &us)| (us, i + 1))
    }

    pub fn json(&self) -> Value {
        let figures = |v: &[f64]| {
            let (min, median, p99) = stats(v);
            json!({"min": min, "median": median, "p99": p99})
        };
        let (first, last) = self.window_medians();
        json!({
            "passed": self.passed(),
            "cpus": self.cpus,
            "tasks": self.tasks,
            "swaps": {"asked": self.asked.0, "applied": self.swaps()},
            "patch_rounds": {"asked": self.asked.1, "done": self.patch_rounds(), "retries": self.retries},
            "swaps_retried": self.retried_swaps,
            "downtime_us": figures(&self.downtimes_us),
            "downtime_longest": self.longest().map(|(us, swap)| json!({"us": us, "swap": swap})),
            "downtime_median_first_100_us": first,
            "downtime_median_last_100_us": last,
            "patch_pause_us": {"apply": figures(&self.apply_us), "remove": figures(&self.remove_us)},
            "free_frames": {
                "boot": self.free_boot,
                "after_first_swap": self.free_after_first_swap,
                "end": self.free_end,
            },
            "wall_s": self.wall.as_secs_f64(),
            "failure": self.failure.as_ref().map(|f| json!({"at": f.at, "problems": f.problems})),
        })
    }
}

/// How many patch rounds come before swap `i` (index `swaps`: after the last swap), for
/// `patches` rounds spread evenly over the moments the VM runs `v1` (before the first
/// swap and after every even one).
pub fn schedule(swaps: usize, patches: usize) -> Vec<usize> {
    let slots: Vec<usize> = (0..=swaps).step_by(2).collect();
    let mut at = vec![0; swaps + 1];
    for k in 0..patches {
        at[slots[k * slots.len() / patches]] += 1;
    }
    at
}

/// What differs from `before` to `after` across one operation: continuity, and free
/// memory (`free`: now and the value it must equal) when given.
pub fn differences(before: &Snapshot, after: &Snapshot, free: Option<(u64, u64)>) -> Vec<String> {
    let mut problems = continuity::check(before, after, &[]).problems;
    if let Some((now, expected)) = free {
        if now != expected {
            problems.push(format!(
                "free memory is {now} frames, {expected} expected ({:+} frames)",
                now as i128 - expected as i128
            ));
        }
    }
    problems
}

/// The running soak: its VM's mailbox and the last snapshot.
struct Soak<'a> {
    mb: Mailbox,
    last: Snapshot,
    run: SoakRun,
    progress: &'a mut dyn FnMut(&str),
    /// Free frames after the first patch removal.
    free_after_removal: Option<u64>,
    retry: bool,
}

/// The build a swap goes to and its label: odd swaps go to `twin`, even ones back.
fn target(swap: usize) -> (&'static str, &'static str) {
    if !swap.is_multiple_of(2) {
        ("twin", "v1-twin")
    } else {
        ("v1", "v1")
    }
}

impl Soak<'_> {
    /// The status block once the update service has polled twice since now (what an
    /// update left over is freed by then, and the block tells of it).
    fn settled(&self) -> Result<GuestStatus> {
        let beat = self.mb.status()?.heartbeat;
        let deadline = Instant::now() + GUARD;
        while self.mb.status()?.heartbeat <= beat + 1 {
            if Instant::now() > deadline {
                return Err(crate::error::Error::Mailbox(format!(
                    "the update service stopped polling (heartbeat stuck at {beat})"
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.mb.status()
    }

    fn fail(&mut self, at: String, problems: Vec<String>) -> bool {
        self.run.failure = Some(Discrepancy { at, problems });
        false
    }

    /// Takes the snapshot after an operation and compares; `true` when all is well.
    fn compare(
        &mut self,
        at: String,
        free: Option<(u64, u64)>,
        mut problems: Vec<String>,
    ) -> Result<bool> {
        let after = update::snapshot(&mut self.mb)?;
        problems.extend(differences(&self.last, &after, free));
        self.last = after;
        self.run.free_end = self.mb.status()?.free_frames;
        Ok(problems.is_empty() || self.fail(at, problems))
    }

    /// Swap number `n` (1-based) with `package`: up to [`SWAP_ATTEMPTS`] attempts while
    /// the guest refuses it for a passing reason ([`of_the_moment`]), each followed by
    /// the continuity check (the old kernel must run on with every task).
    fn swap(
        &mut self,
        n: usize,
        package: &[u8],
        flags: RequestFlags,
        health: HealthWindow,
    ) -> Result<bool> {
        let (_, label) = target(n);
        let from = target(n - 1).1;
        let at = format!("swap {n} ({from} → {label})");
        let opts = PushOptions::with_flags(flags)
            .without_host_check()
            .with_health(health);
        let mut attempt = 1;
        let problems = loop {
            let outcome = update::push_and_apply(&mut self.mb, package, &opts, |_| {})?;
            match outcome {
                Ok(r) if r.outcome == Outcome::Applied && r.to.label.as_str() == label => {
                    self.run.downtimes_us.push(r.downtime_ns as f64 / 1000.0);
                    break Vec::new();
                }
                Ok(r) => match r.outcome {
                    Outcome::RolledBack { reason } => {
                        break vec![format!("rolled back, {from} runs on: {reason}")]
                    }
                    Outcome::Applied => {
                        break vec![format!(
                            "applied, but the guest now runs {}",
                            r.to.label.as_str()
                        )]
                    }
                },
                Err(refused)
                    if self.retry && of_the_moment(&refused) && attempt < SWAP_ATTEMPTS =>
                {
                    let why = format!("{at}: attempt {attempt} refused for the moment: {refused}");
                    (self.progress)(&format!("{why}; trying again"));
                    self.run.retried_swaps.push(why);
                    // The old kernel runs on: every task must have carried on.
                    if !self.compare(format!("{at}, attempt {attempt}"), None, Vec::new())? {
                        return Ok(false);
                    }
                    attempt += 1;
                }
                Err(refused) => break vec![format!("refused: {refused}")],
            }
        };
        if !problems.is_empty() {
            // A refused swap leaves its package staged (the next stage frees it): free
            // memory is not compared.
            return self.compare(at, None, problems);
        }
        let free = self.settled()?.free_frames;
        let expected = *self.run.free_after_first_swap.get_or_insert(free);
        let ok = self.compare(at.clone(), Some((free, expected)), problems)?;
        if ok {
            let every = if self.run.asked.0 <= 100 { 1 } else { 10 };
            if n.is_multiple_of(every) || n == self.run.asked.0 {
                (self.progress)(&format!(
                    "{at}: downtime {:.0} µs, {} tasks continuous, {free} frames free",
                    self.run.downtimes_us.last().copied().unwrap_or(0.0),
                    self.last.tasks.len()
                ));
            }
        }
        Ok(ok)
    }

    /// Patch round `n` (1-based): apply `patch`, compare, remove it, compare.
    fn patch_round(&mut self, n: usize, patch: &[u8]) -> Result<bool> {
        let (applied, retries) = hotpatch::retrying(
            || hotpatch::apply(&mut self.mb, patch),
            hotpatch::TRANSIENT_ATTEMPTS,
        )?;
        self.run.retries += retries;
        let at = format!("patch round {n}: apply");
        let mut problems = Vec::new();
        match applied {
            Ok(r) => self.run.apply_us.push(r.pause_ns as f64 / 1000.0),
            Err(r) => problems.push(format!("refused: {}", hotpatch::refusal_reason(&r))),
        }
        let patches = self.settled()?.patches;
        if patches != 1 && problems.is_empty() {
            problems.push(format!(
                "{patches} patches applied after the apply, 1 expected"
            ));
        }
        if !self.compare(at, None, problems)? {
            return Ok(false);
        }
        let (removed, retries) = hotpatch::retrying(
            || hotpatch::remove(&mut self.mb, None),
            hotpatch::TRANSIENT_ATTEMPTS,
        )?;
        self.run.retries += retries;
        let at = format!("patch round {n}: remove");
        let mut problems = Vec::new();
        match removed {
            Ok(r) => self.run.remove_us.push(r.pause_ns as f64 / 1000.0),
            Err(r) => problems.push(format!("refused: {}", hotpatch::refusal_reason(&r))),
        }
        let status = self.settled()?;
        if status.patches != 0 && problems.is_empty() {
            problems.push(format!(
                "{} patches applied after the removal, 0 expected",
                status.patches
            ));
        }
        let free = status.free_frames;
        // After the first swap, its value; before it, the first removal's.
        let expected = match self.run.free_after_first_swap {
            Some(f) => f,
            None => *self.free_after_removal.get_or_insert(free),
        };
        let ok = self.compare(at, Some((free, expected)), problems)?;
        if ok {
            (self.progress)(&format!(
                "patch round {n}/{}: apply {:.0} µs, remove {:.0} µs, {} tasks continuous",
                self.run.asked.1,
                self.run.apply_us.last().copied().unwrap_or(0.0),
                self.run.remove_us.last().copied().unwrap_or(0.0),
                self.last.tasks.len()
            ));
        }
        Ok(ok)
    }
}

/// Runs the soak; `progress` hears a line per operation (every tenth swap past 100).
/// `Err(_)` is a failure of the host side (no build, no VM, no answer); what the guest
/// did wrong is [`SoakRun::failure`].
pub fn run(opts: &SoakOptions, progress: &mut dyn FnMut(&str)) -> Result<SoakRun> {
    let started = Instant::now();
    progress("building and packing v1 and twin");
    let v1 = update::package_variant("v1")?.0;
    let twin = update::package_variant("twin")?.0;
    let patch = if opts.patches > 0 {
        progress("making patch-a (v1 → patch-a)");
        Some(hotpatch::patch_between("v1", "patch-a")?)
    } else {
        None
    };
    progress(&format!("booting v1 on {} CPUs", opts.cpus));
    let vm = Vm::launch(VmConfig::variant("v1").cpus(opts.cpus))?;
    vm.wait_for_line("first task step", GUARD)?;
    let mb = Mailbox::open(vm.paths())?;
    mb.wait_running(GUARD)?;
    // The host's check reads every built ELF: once per package, not in the loop.
    update::check_before_push(&mb, &twin)?;
    update::check_before_push(&mb, &v1)?;
    let mut mb = mb;
    let last = update::snapshot(&mut mb)?;
    let free_boot = mb.status()?.free_frames;
    let mut soak = Soak {
        mb,
        run: SoakRun {
            asked: (opts.swaps, opts.patches),
            cpus: opts.cpus,
            tasks: last.tasks.len(),
            free_boot,
            free_end: free_boot,
            ..SoakRun::default()
        },
        last,
        progress,
        free_after_removal: None,
        retry: opts.retry,
    };
    let rounds = schedule(opts.swaps, opts.patches);
    let mut round = 0;
    'ops: for (i, &before_swap) in rounds.iter().enumerate() {
        for _ in 0..before_swap {
            round += 1;
            if let Some(patch) = &patch {
                if !soak.patch_round(round, patch)? {
                    break 'ops;
                }
            }
        }
        let n = i + 1;
        if n > opts.swaps {
            break;
        }
        let package = if target(n).0 == "twin" { &twin } else { &v1 };
        let flags = match opts.inject {
            Some((at, flags)) if at == n => flags,
            _ => RequestFlags::empty(),
        };
        if !soak.swap(n, package, flags, opts.health)? {
            break;
        }
    }
    let _ = vm.quit();
    soak.run.wall = started.elapsed();
    Ok(soak.run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_format::mailbox::report::{KindInfo, TaskSnapshot};
    use image_format::TaskKind;
    use updater::continuity::Clause;

    fn snap(value: u64, steps: u64) -> Snapshot {
        Snapshot {
            tsc_hz: 1,
            tsc: 0,
            tasks: vec![TaskSnapshot {
                id: 1,
                kind: TaskKind::COUNTER.raw(),
                schema: 1,
                cpu: 0,
                flags: 0,
                steps,
                values: [value, 1, 0, 0],
            }],
            kinds: vec![KindInfo {
                id: TaskKind::COUNTER.raw(),
                name: "counter".into(),
                continuity: vec![Clause::GrowsPerStep {
                    value: 0,
                    per_step: 1,
                }
                .encode()],
            }],
        }
    }

    #[test]
    fn patch_rounds_fall_where_v1_runs_and_are_spread() {
        assert_eq!(schedule(6, 2), [1, 0, 0, 0, 1, 0, 0]);
        assert_eq!(schedule(4, 0), [0; 5]);
        let at = schedule(1000, 10);
        assert_eq!(at.iter().sum::<usize>(), 10);
        assert!(at.iter().enumerate().all(|(i, &n)| n == 0 || i % 2 == 0));
        assert_eq!(schedule(1, 3), [3, 0], "more rounds than moments: stacked");
    }

    #[test]
    fn a_skipped_value_or_lost_memory_is_a_difference() {
        assert!(differences(&snap(5, 5), &snap(9, 9), Some((100, 100))).is_empty());
        let skipped = differences(&snap(5, 5), &snap(12, 9), None);
        assert!(
            skipped[0].starts_with("task 1 (counter): value 0 grew from 5 to 12"),
            "{skipped:?}"
        );
        let leaked = differences(&snap(5, 5), &snap(9, 9), Some((97, 100)));
        assert_eq!(
            leaked,
            ["free memory is 97 frames, 100 expected (-3 frames)"]
        );
        let lost = differences(
            &snap(5, 5),
            &Snapshot {
                tasks: vec![],
                ..snap(0, 0)
            },
            None,
        );
        assert!(lost.iter().any(|p| p.contains("was lost")), "{lost:?}");
    }

    #[test]
    fn the_windows_are_the_first_and_last_hundred() {
        let run = SoakRun {
            downtimes_us: (0..300).map(|i| if i < 100 { 1.0 } else { 5.0 }).collect(),
            ..SoakRun::default()
        };
        assert_eq!(run.window_medians(), (1.0, 5.0));
        let short = SoakRun {
            downtimes_us: vec![3.0, 1.0, 2.0],
            ..SoakRun::default()
        };
        assert_eq!(short.window_medians(), (2.0, 2.0));
    }
}
