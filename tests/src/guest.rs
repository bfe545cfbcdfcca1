//! [`Guest`]: a booted VM with its mailbox open, and the checks the update tests share
//! (snapshots, continuity, waiting for the guest's own progress).
//!
//! Waits here are on conditions the guest makes true (an answer, a heartbeat, a task's
//! step count), each bounded by [`HANG_GUARD`]; nothing sleeps to let time pass.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use hotkernel::continuity::{self, Continuity};
use hotkernel::mailbox::{Answer, Mailbox};
use hotkernel::update::{self, PushOptions, Refused};
use image_format::mailbox::report::{Snapshot, StageReport, SwapReport};
use image_format::mailbox::{
    BlockRead, Command, GuestState, GuestStatus, RequestFlags, Response, RESPONSE_OFFSET,
};
use image_format::TaskKind;

use crate::{Check, Vm, VmConfig, HANG_GUARD};

/// A running guest and its mailbox.
pub struct Guest {
    pub vm: Vm,
    pub mailbox: Mailbox,
}

/// The health window of the swaps tests apply: longer than the guest's default
/// (200 ms), because a test VM shares 2 host cores with other VMs and builds, and a
/// new kernel that is merely slow must not be reverted. (The CLI tests use the default.)
pub const TEST_HEALTH_WINDOW: update::HealthWindow = match std::num::NonZeroU32::new(1000) {
    Some(ms) => update::HealthWindow::Millis(ms),
    None => update::HealthWindow::Default,
};

impl Guest {
    /// Boots `cfg`, waits for its `CPUs online` line and for its mailbox to say it runs.
    #[track_caller]
    pub fn boot(cfg: VmConfig) -> Guest {
        let vm = Vm::launch(cfg).check("launching the VM");
        if let Err(e) = vm.wait_for_line("CPUs online", HANG_GUARD) {
            panic!(
                "waiting for `CPUs online`: {e}\nQEMU's messages:\n{}",
                vm.qemu_stderr()
            );
        }
        // Per request: the tests run `hotkernel` commands against this VM meanwhile.
        let mailbox = Mailbox::open_per_request(vm.paths()).check("opening the mailbox");
        mailbox
            .wait_running(HANG_GUARD)
            .check("waiting for the guest to run");
        Guest { vm, mailbox }
    }

    /// The last `n` console lines, for failure messages.
    pub fn console_tail(&self, n: usize) -> String {
        let lines = self.vm.serial_lines();
        let from = lines.len().saturating_sub(n);
        lines[from..]
            .iter()
            .map(|l| format!("  | {}\n", l.text))
            .collect()
    }

    /// `result`'s value, or a panic naming `what`, the error, the guest's status and
    /// the end of its console (a request the guest never answers is otherwise hard to
    /// tell from one it answered wrongly).
    #[track_caller]
    fn host_side<T>(&self, result: hotkernel::Result<T>, what: &str) -> T {
        match result {
            Ok(v) => v,
            Err(e) => panic!(
                "{what}: {e}\nguest status: {:?}\nVM exited: {}\nconsole:\n{}QEMU's messages:\n{}",
                self.mailbox.status(),
                self.vm.has_exited(),
                self.console_tail(40),
                self.vm.qemu_stderr()
            ),
        }
    }

    /// The guest's status block (retried while the guest rewrites it).
    #[track_caller]
    pub fn status(&self) -> GuestStatus {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            if let Ok(s) = self.mailbox.status() {
                return s;
            }
            assert!(Instant::now() < deadline, "no readable guest status");
            std::thread::yield_now();
        }
    }

    /// Every task's state, all CPUs stopped.
    #[track_caller]
    pub fn snapshot(&mut self) -> Snapshot {
        let r = update::snapshot(&mut self.mailbox);
        self.host_side(r, "taking a snapshot")
    }

    /// Pings the guest (a request that changes nothing) and returns its answer.
    #[track_caller]
    pub fn ping(&mut self) -> Answer {
        let r = self.mailbox.call(
            Command::Ping,
            RequestFlags::empty(),
            None,
            [0; 4],
            HANG_GUARD,
            |_| {},
        );
        self.host_side(r, "ping")
    }

    /// Stages `package`: the stage report and the answer, or the guest's refusal. The
    /// host's layout guard runs first; a package it refuses panics the test with the
    /// refusal (use [`Guest::stage_unchecked`] to test the guest's own check).
    #[track_caller]
    pub fn stage(&mut self, package: &[u8]) -> Result<(StageReport, Answer), Refused> {
        self.stage_with(package, &PushOptions::default())
    }

    /// [`Guest::stage`] without the host's check: the guest's staging check decides.
    #[track_caller]
    pub fn stage_unchecked(&mut self, package: &[u8]) -> Result<(StageReport, Answer), Refused> {
        self.stage_with(package, &PushOptions::default().without_host_check())
    }

    /// Stages `package` with `opts`; a refusal of the host's check is a panic (the
    /// library's [`hotkernel::Error::RefusedBeforePush`] names the rule and the field).
    #[track_caller]
    pub fn stage_with(
        &mut self,
        package: &[u8],
        opts: &PushOptions,
    ) -> Result<(StageReport, Answer), Refused> {
        let r = update::stage(&mut self.mailbox, package, opts, |_| {});
        self.host_side(r, "staging")
    }

    /// Stages `package` and expects the guest to accept it.
    #[track_caller]
    pub fn stage_ok(&mut self, package: &[u8]) -> StageReport {
        match self.stage(package) {
            Ok((r, _)) => r,
            Err(refused) => panic!(
                "the guest refused a good package: {refused}\n{}",
                self.console_tail(20)
            ),
        }
    }

    /// Applies the staged package with `flags`: the swap report, or the refusal (whose
    /// report, after a rollback, is the swap report with the reason).
    #[track_caller]
    pub fn apply(&mut self, flags: RequestFlags) -> Result<SwapReport, Refused> {
        let r = update::apply_with(&mut self.mailbox, flags, TEST_HEALTH_WINDOW);
        self.host_side(r, "applying")
    }

    /// Applies the staged package with the conversion of `kind` failing on purpose.
    pub fn apply_with_converter_fault(
        &mut self,
        kind: image_format::RecordKind,
    ) -> Result<SwapReport, Refused> {
        let r = update::apply_faulting(
            &mut self.mailbox,
            RequestFlags::empty(),
            TEST_HEALTH_WINDOW,
            Some(kind),
        );
        self.host_side(r, "applying")
    }

    /// Applies the staged package and expects the swap to take effect.
    #[track_caller]
    pub fn apply_ok(&mut self) -> SwapReport {
        match self.apply(RequestFlags::empty()) {
            Ok(r) => {
                assert_eq!(
                    r.outcome,
                    image_format::mailbox::report::Outcome::Applied,
                    "an Ok answer carries an applied report"
                );
                r
            }
            Err(refused) => panic!("the swap was refused: {refused}\n{}", self.console_tail(30)),
        }
    }

    /// Waits until the update service has run `polls` more times, seen from its
    /// heartbeat in the status block. The service writes the heartbeat at the start of
    /// each poll, before it reads the request block; so once the value has changed
    /// after this call began, a poll has started, and read the request block, after
    /// everything the host wrote before the call. A swap restarts the count, so this
    /// counts changes, not increments.
    #[track_caller]
    pub fn wait_polls(&self, polls: u32) {
        let deadline = Instant::now() + HANG_GUARD;
        let mut last = self.status().heartbeat;
        let mut seen = 0;
        while seen < polls {
            let now = self.status().heartbeat;
            if now != last {
                seen += 1;
                last = now;
            } else {
                assert!(
                    Instant::now() < deadline,
                    "the update service stopped polling (heartbeat stuck at {now})\n{}",
                    self.console_tail(20)
                );
                std::thread::sleep(Duration::from_micros(500));
            }
        }
    }

    /// The response block as it is now, read straight from the shared memory (not
    /// through the client, which only waits for a given request's answer).
    pub fn raw_response(&self) -> BlockRead<Response> {
        let file = File::open(&self.vm.paths().mailbox).expect("opening the mailbox file");
        let mut block = vec![0u8; Response::SIZE];
        file.read_exact_at(&mut block, RESPONSE_OFFSET as u64)
            .expect("reading the response block");
        Response::decode(&block)
    }

    /// Takes snapshots until every task of `base` (of a kind not in `except`) has run
    /// more steps than in `base`; returns that snapshot. Between snapshots it waits for
    /// a few service polls, so the tasks get guest time to run.
    #[track_caller]
    pub fn wait_all_progress(&mut self, base: &Snapshot, except: &[TaskKind]) -> Snapshot {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let now = self.snapshot();
            let stuck: Vec<String> = base
                .tasks
                .iter()
                .filter(|b| !except.contains(&TaskKind::from_raw(b.kind)))
                .filter(|b| !now.tasks.iter().any(|a| a.id == b.id && a.steps > b.steps))
                .map(|b| format!("{} ({}) on cpu{}", b.id, kind_name(b.kind), b.cpu))
                .collect();
            if stuck.is_empty() {
                return now;
            }
            assert!(
                Instant::now() < deadline,
                "tasks made no progress: {stuck:?}\n{now}\n{}",
                self.console_tail(20)
            );
            self.wait_polls(10);
        }
    }

    /// Asserts the guest's status block names `label` as the running image, after
    /// `boot_seq - 1` swaps, and says it is Running. The service rewrites the whole
    /// block at each poll, so the block is read after two more polls: it shows the
    /// guest's state after everything answered so far.
    #[track_caller]
    pub fn assert_running(&self, label: &str, boot_seq: u64) {
        let s = self.assert_image(label, boot_seq);
        assert_eq!(
            s.state,
            GuestState::Running,
            "the status block says {} two polls after the last answer: {s:?}",
            s.state
        );
    }

    /// [`Guest::assert_running`] without the state: the running image and boot
    /// sequence only. Returns the status read.
    #[track_caller]
    pub fn assert_image(&self, label: &str, boot_seq: u64) -> GuestStatus {
        self.wait_polls(2);
        let s = self.status();
        assert_eq!(s.image.label.as_str(), label, "running image: {s:?}");
        assert_eq!(s.boot_seq, boot_seq, "boot sequence: {s:?}");
        s
    }
}

/// A task kind's name (the well-known ones; snapshots carry the running image's).
pub fn kind_name(raw: u16) -> &'static str {
    TaskKind::from_raw(raw).name()
}

/// What a test expects of the counters between two snapshots, on top of each kind's
/// own continuity rule: their count grew by between `counter.0` and `counter.1` per
/// step (the increments of the images before and after an update).
#[derive(Debug, Clone, Copy)]
pub struct StepRules {
    pub counter: (u64, u64),
}

impl Default for StepRules {
    fn default() -> Self {
        Self { counter: (1, 1) }
    }
}

impl StepRules {
    /// Problems with the counters of `before` → `after`.
    fn problems(&self, before: &Snapshot, after: &Snapshot) -> Vec<String> {
        let (lo, hi) = (
            self.counter.0.min(self.counter.1),
            self.counter.0.max(self.counter.1),
        );
        tasks_of(before, TaskKind::COUNTER)
            .into_iter()
            .filter_map(|b| {
                let a = after.tasks.iter().find(|a| a.id == b.id)?;
                let d = a.steps.checked_sub(b.steps)?;
                let grew = a.values[0].checked_sub(b.values[0])?;
                (grew < d * lo || grew > d * hi).then(|| {
                    format!(
                        "counter {}: grew by {grew} in {d} steps, the test expects {}..={}",
                        b.id,
                        d * lo,
                        d * hi
                    )
                })
            })
            .collect()
    }
}

/// Checks continuity from `before` to `after` (each kind's rule, and `rules`) and
/// panics with every problem found.
#[track_caller]
pub fn assert_continuous(
    what: &str,
    before: &Snapshot,
    after: &Snapshot,
    rules: StepRules,
    dropped: &[TaskKind],
) -> Continuity {
    let mut c = continuity::check(before, after, dropped);
    c.problems.extend(rules.problems(before, after));
    assert!(
        c.ok(),
        "{what}: continuity broken:\n  {}\nbefore:\n{before}\nafter:\n{after}",
        c.problems.join("\n  ")
    );
    c
}

/// The tasks of `kind` in `snapshot`.
pub fn tasks_of(
    snapshot: &Snapshot,
    kind: TaskKind,
) -> Vec<&image_format::mailbox::report::TaskSnapshot> {
    snapshot
        .tasks
        .iter()
        .filter(|t| TaskKind::from_raw(t.kind) == kind)
        .collect()
}

/// Guest seconds between two snapshots, from their TSC stamps.
pub fn guest_seconds(before: &Snapshot, after: &Snapshot) -> f64 {
    assert_eq!(before.tsc_hz, after.tsc_hz, "the TSC frequency changed");
    assert!(after.tsc >= before.tsc, "the TSC went back");
    (after.tsc - before.tsc) as f64 / after.tsc_hz as f64
}
