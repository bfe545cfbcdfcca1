//! Coordinator jobs: the update work that stops other CPUs (a swap, a consistent
//! snapshot). The service task asks for them; the BSP runs them between two of its task
//! steps ([`run_pending`], which boot and resume register as the scheduler's
//! coordinator hook), so no task is in flight on the coordinating CPU either.
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicBool, Ordering};
use image_format::mailbox::report::{Outcome, Report};
use image_format::mailbox::{GuestState, RequestFlags, Response, ResponseState, Status};

use spin::Mutex;
use updater::handoff::inject;

use crate::drivers::mailbox;
use crate::handoff_region;
use crate::quiesce;
use crate::time::Duration;
use crate::update::{report, requests, stage, swap};

/// Work for the BSP.
pub enum Job {
    /// Swap to the staged image (request `seq`) with a health window of `window`.
    Apply {
        seq: u64,
        flags: RequestFlags,
        window: Option<Duration>,
        /// The request's arguments (`args[1]`: the record kind of an injected
        /// converter failure).
        args: [u64; 4],
    },
    /// Report every task's state, all CPUs stopped (request `seq`).
    Snapshot { seq: u64 },
    /// Write a loaded patch's jumps, with a health window of `window`.
    PatchApply {
        seq: u64,
        prepared: alloc::boxed::Box<crate::hotpatch::install::Prepared>,
        window: Option<Duration>,
    },
    /// Remove patches down to `id` (`None`: the newest).
    PatchRemove { seq: u64, id: Option<u64> },
}

impl Job {
    /// The request the job answers.
    fn seq(&self) -> u64 {
        match self {
            Job::Apply { seq, .. }
            | Job::Snapshot { seq }
            | Job::PatchApply { seq, .. }
            | Job::PatchRemove { seq, .. } => *seq,
        }
    }

    /// What the job does, for a refusal's message.
    fn what(&self) -> &'static str {
        match self {
            Job::Apply { .. } => "a swap",
            Job::Snapshot { .. } => "a snapshot",
            Job::PatchApply { .. } => "a patch apply",
            Job::PatchRemove { .. } => "a patch removal",
        }
    }
}

static PENDING: Mutex<Option<Job>> = Mutex::new(None);

/// The waiting job is held back until the next request is read (`RequestFlags::HOLD_JOB`).
static HELD: AtomicBool = AtomicBool::new(false);

/// Queues `job` for the BSP's next checkpoint. One job waits at a time: while another
/// one does, `job`'s request is answered `Busy` here and `job` is dropped (a loaded
/// patch frees its memory); returns whether it was queued. A request is never dropped
/// unanswered, and a waiting job is never replaced.
pub fn request(job: Job, flags: RequestFlags) -> bool {
    let mut pending = PENDING.lock();
    let Some(waiting) = pending.as_ref() else {
        HELD.store(flags.contains(RequestFlags::HOLD_JOB), Ordering::Release);
        *pending = Some(job);
        return true;
    };
    let (waiting, seq, what) = (waiting.what(), job.seq(), job.what());
    drop(pending);
    log::warn!("{what} refused: {waiting} requested earlier has not run yet");
    respond(
        seq,
        Status::Busy,
        format_args!("{what} must wait: {waiting} requested earlier has not run yet; try again"),
        None,
    );
    false
}

/// Whether a job waits (held back or not): a request for another one is refused.
pub fn waiting() -> bool {
    PENDING.lock().is_some()
}

/// Whether a job is ready for the BSP (the scheduler's question).
pub fn pending() -> bool {
    !HELD.load(Ordering::Acquire) && waiting()
}

/// The next request was read: a held job may run.
pub fn release_held() {
    HELD.store(false, Ordering::Release);
}

fn inject_bits(flags: RequestFlags, args: [u64; 4]) -> u64 {
    let mut bits = 0;
    if flags.contains(RequestFlags::INJECT_CONVERTER_FAIL) {
        bits |= inject::CONVERTER_FAIL | (args[1] & 0xffff) << inject::CONVERTER_KIND_SHIFT;
    }
    if flags.contains(RequestFlags::INJECT_FAIL_IN_RESUME) {
        bits |= inject::FAIL_IN_RESUME;
    }
    if flags.contains(RequestFlags::INJECT_FAIL_FIRST_ROUND) {
        bits |= inject::FAIL_FIRST_ROUND;
    }
    if flags.contains(RequestFlags::INJECT_PARK_IN_RESUME) {
        bits |= inject::PARK_IN_RESUME;
    }
    if flags.contains(RequestFlags::INJECT_RECONCILE_FAIL) {
        bits |= inject::RECONCILE_FAIL;
    }
    if flags.contains(RequestFlags::INJECT_AP_NO_ACK) {
        bits |= inject::AP_NO_ACK;
    }
    if flags.contains(RequestFlags::INJECT_FAIL_AFTER_EXPORT) {
        bits |= inject::FAIL_AFTER_EXPORT;
    }
    if flags.contains(RequestFlags::OVERLAY_FULL) {
        bits |= inject::OVERLAY_FULL;
    }
    if flags.contains(RequestFlags::OVERLAY_COPY) {
        bits |= inject::OVERLAY_COPY;
    }
    bits
}

fn respond(seq: u64, status: Status, message: core::fmt::Arguments<'_>, report: Option<Report>) {
    let Some(mb) = mailbox::shared() else { return };
    let mut r = Response::new(seq, ResponseState::Done, status);
    r.set_message(message);
    if let Some(report) = report {
        if let Ok(len) = mb.write_report(&report) {
            r.report_kind = report.kind();
            r.report_len = len;
        }
    }
    mb.respond(&r);
}

/// Runs the pending job, if any (BSP only, between task steps).
pub fn run_pending() {
    if HELD.load(Ordering::Acquire) {
        return;
    }
    let Some(job) = PENDING.lock().take() else {
        return;
    };
    match job {
        Job::Apply {
            seq,
            flags,
            window,
            args,
        } => {
            let prepared = stage::STAGED.lock().as_ref().map(|s| s.prepared);
            let Some(prepared) = prepared else {
                requests::set_state(GuestState::Running);
                respond(
                    seq,
                    Status::NotStaged,
                    format_args!("no package is staged"),
                    None,
                );
                return;
            };
            // Returns only if the swap did not happen; the new kernel answers otherwise.
            let refusal = swap::apply(&prepared, seq, inject_bits(flags, args), window);
            let status = match refusal {
                swap::SwapRefusal::Quiesce(_) => Status::QuiesceTimeout,
                swap::SwapRefusal::CopyWithWindow | swap::SwapRefusal::InjectedWithoutWindow(_) => {
                    Status::BadRequest
                }
                _ => Status::RolledBack,
            };
            let reason = alloc::format!("{refusal}");
            let r = report::swap_report(
                &handoff_region::descriptor(),
                Outcome::RolledBack {
                    reason: reason.clone(),
                },
            );
            log::warn!("swap refused, old kernel continues: {reason}");
            // The old kernel runs on: the status block says so before the host hears.
            requests::set_state(GuestState::Running);
            respond(seq, status, format_args!("{reason}"), Some(Report::Swap(r)));
        }
        Job::PatchApply {
            seq,
            prepared,
            window,
        } => {
            if let Some(mb) = mailbox::shared() {
                crate::update::patches::run_apply(&mb, seq, *prepared, window);
            }
        }
        Job::PatchRemove { seq, id } => {
            if let Some(mb) = mailbox::shared() {
                crate::update::patches::run_remove(&mb, seq, id);
            }
        }
        Job::Snapshot { seq } => {
            let parked = x86_64::instructions::interrupts::without_interrupts(|| {
                quiesce::park_others(Duration::from_millis(500), None)
            });
            match parked {
                Ok(p) => {
                    let snapshot = report::snapshot();
                    quiesce::release(p);
                    let n = snapshot.tasks.len();
                    respond(
                        seq,
                        Status::Ok,
                        format_args!("{n} tasks"),
                        Some(Report::Snapshot(snapshot)),
                    );
                }
                Err(e) => respond(seq, Status::QuiesceTimeout, format_args!("{e}"), None),
            }
        }
    }
}
