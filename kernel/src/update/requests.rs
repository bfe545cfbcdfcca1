//! Mailbox requests: what the update-service task (pinned to CPU 0) does each step.
//!
//! Each step it refreshes the status block, finishes what a swap left to report (in a
//! kernel that has just resumed), advances a staging in progress by one chunk, or reads
//! the request block and acts on a new request. Requests are acted on once: the service
//! state's `last_seq` crosses swaps, and a request that is torn (half written), damaged
//! or not newer than `last_seq` is ignored. Work that must stop the other CPUs is handed
//! to the BSP's checkpoint (`update::jobs`).
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};

use image_format::mailbox::report::{ImageBytes, Outcome, Report, StageReport, MAX_IMAGE_READ};
use image_format::mailbox::{
    BlockRead, Command, GuestState, Request, RequestFlags, Response, ResponseState, Status,
};
use spin::Mutex;
use updater::handoff::SwapState;

use crate::drivers::{
    doorbell,
    mailbox::{self, SharedMemory},
};
use crate::handoff_region;
use crate::tasks::update_service::UpdateServiceV1 as Service;
use crate::tasks::Next;
use crate::time::Duration;
use crate::update::jobs::{self, Job};
use crate::update::preflight::Preflight;
use crate::update::stage::{self, Progress, StagingOp};
use crate::update::window;
use crate::update::{prepare, report};

static BEAT: AtomicU64 = AtomicU64::new(0);
static STAGING: Mutex<Option<StagingOp>> = Mutex::new(None);
static STATE: Mutex<GuestState> = Mutex::new(GuestState::Running);

/// Sets the state the status block shows.
pub fn set_state(state: GuestState) {
    *STATE.lock() = state;
}

fn respond(
    mb: &SharedMemory,
    seq: u64,
    status: Status,
    message: core::fmt::Arguments<'_>,
    report: Option<Report>,
) {
    let mut r = Response::new(seq, ResponseState::Done, status);
    r.set_message(message);
    if let Some(report) = report {
        match mb.write_report(&report) {
            Ok(len) => {
                r.report_kind = report.kind();
                r.report_len = len;
            }
            Err(e) => log::error!("report does not fit the mailbox: {e}"),
        }
    }
    mb.respond(&r);
}

fn progress(mb: &SharedMemory, seq: u64, done: u64, total: u64, message: core::fmt::Arguments<'_>) {
    let mut r = Response::new(seq, ResponseState::InProgress, Status::Accepted);
    r.progress_done = done;
    r.progress_total = total;
    r.set_message(message);
    mb.respond(&r);
}

/// One step of the service.
pub fn poll(state: &mut Service) -> Next {
    doorbell::answer();
    crate::shell::run_pending();
    let Some(mb) = mailbox::shared() else {
        return Next::Period;
    };
    let beat = BEAT.fetch_add(1, Ordering::Relaxed) + 1;
    mb.write_status(&report::guest_status(*STATE.lock(), beat, &mb));

    if finish_swap(&mb) {
        state.applied += 1;
    }
    crate::update::patch_window::finish(&mb);
    if let Some(next) = continue_staging(&mb, state) {
        return next;
    }
    match mb.read_request() {
        BlockRead::Valid(request) if request.seq > state.last_seq => {
            state.last_seq = request.seq;
            handle(&mb, state, request)
        }
        BlockRead::Invalid { seq, error } if seq > state.last_seq => {
            state.last_seq = seq;
            state.refused += 1;
            respond(&mb, seq, Status::BadRequest, format_args!("{error}"), None);
            Next::Period
        }
        // Empty, torn (being written: read again next time), or already handled.
        _ => Next::Period,
    }
}

fn handle(mb: &SharedMemory, state: &mut Service, request: Request) -> Next {
    let seq = request.seq;
    let changes = matches!(
        request.command,
        Command::Stage | Command::Apply | Command::PatchApply | Command::PatchRemove
    );
    if changes
        && handoff_region::undo()
            .armed
            .load(core::sync::atomic::Ordering::Acquire)
            != 0
    {
        state.refused += 1;
        respond(
            mb,
            seq,
            Status::Busy,
            format_args!(
                "the last update's health window is still open: try again once it is reported"
            ),
            None,
        );
        return Next::Period;
    }
    let queues_job = matches!(
        request.command,
        Command::Apply | Command::Snapshot | Command::PatchApply | Command::PatchRemove
    );
    let busy = queues_job && jobs::waiting();
    jobs::release_held();
    if busy {
        // Refused before any work (a patch is not even loaded); `jobs::request` would
        // refuse it too.
        state.refused += 1;
        log::warn!(
            "{:?} request {seq} refused (busy): an earlier request's work has not run yet",
            request.command
        );
        respond(
            mb,
            seq,
            Status::Busy,
            format_args!(
                "an earlier request's work has not run yet: try again once it is answered"
            ),
            None,
        );
        return Next::Period;
    }
    match request.command {
        Command::Ping => {
            respond(
                mb,
                seq,
                Status::Ok,
                format_args!("running {}", crate::identity::describe()),
                None,
            );
            Next::Period
        }
        Command::Stage => match stage::begin(mb, &request) {
            Ok(op) => {
                progress(
                    mb,
                    seq,
                    0,
                    op.total,
                    format_args!("staging {} bytes", op.total),
                );
                set_state(GuestState::Staging);
                *STAGING.lock() = Some(op);
                Next::After(Duration::ZERO)
            }
            Err(refusal) => {
                state.refused += 1;
                log::warn!("package refused: {refusal}");
                respond(mb, seq, refusal.status, format_args!("{refusal}"), None);
                Next::Period
            }
        },
        Command::Apply => {
            if stage::STAGED.lock().is_none() {
                state.refused += 1;
                respond(
                    mb,
                    seq,
                    Status::NotStaged,
                    format_args!("no package is staged: push one first"),
                    None,
                );
                return Next::Period;
            }
            match stage::refresh_for_patches() {
                Ok(true) => log::info!(
                    "hotpatches changed since staging: the staged image was laid out again"
                ),
                Ok(false) => {}
                Err(refusal) => {
                    state.refused += 1;
                    respond(
                        mb,
                        seq,
                        refusal.status,
                        format_args!("the staged image could not be laid out again: {refusal}"),
                        None,
                    );
                    return Next::Period;
                }
            }
            start_apply(mb, seq, request.flags, request.args);
            Next::Period
        }
        Command::Snapshot => {
            let _queued = jobs::request(Job::Snapshot { seq }, request.flags); // or answered `Busy`
            Next::Period
        }
        Command::Reset => {
            *stage::STAGED.lock() = None;
            prepare::release_staging();
            respond(
                mb,
                seq,
                Status::Ok,
                format_args!("staging buffer cleared"),
                None,
            );
            Next::Period
        }
        Command::ReadImage => {
            let (address, len) = (request.args[0], request.args[1]);
            match usize::try_from(len)
                .ok()
                .filter(|&n| n <= MAX_IMAGE_READ)
                .and_then(|n| crate::image::read(address, n))
            {
                Some(bytes) => respond(
                    mb,
                    seq,
                    Status::Ok,
                    format_args!("{len} bytes at {address:#x}"),
                    Some(Report::ImageBytes(ImageBytes { address, bytes })),
                ),
                None => respond(
                    mb,
                    seq,
                    Status::BadRequest,
                    format_args!(
                        "{len} bytes at {address:#x} do not lie inside one segment of the \
                         running image (or exceed {MAX_IMAGE_READ} bytes)"
                    ),
                    None,
                ),
            }
            Next::Period
        }
        Command::PatchApply | Command::PatchRemove | Command::PatchList => {
            crate::update::patches::handle(mb, state, request)
        }
    }
}

/// Queues the swap: `health_ms` is the request's health window (0: the default).
fn start_apply(mb: &SharedMemory, seq: u64, flags: RequestFlags, args: [u64; 4]) {
    let health_ms = args[0];
    progress(mb, seq, 0, 1, format_args!("applying the staged image"));
    set_state(GuestState::Swapping);
    let window = if flags.contains(RequestFlags::NO_HEALTH_WINDOW) {
        None
    } else if health_ms == 0 {
        Some(crate::update::swap::DEFAULT_HEALTH_WINDOW)
    } else {
        Some(Duration::from_millis(health_ms))
    };
    if !jobs::request(
        Job::Apply {
            seq,
            flags,
            window,
            args,
        },
        flags,
    ) {
        set_state(GuestState::Running);
    }
}

/// Advances a staging in progress; `Some` when the service has more to do right away.
fn continue_staging(mb: &SharedMemory, state: &mut Service) -> Option<Next> {
    let mut guard = STAGING.lock();
    let op = guard.as_mut()?;
    match stage::advance(op, mb) {
        Progress::Copied => {
            progress(
                mb,
                op.seq,
                op.done,
                op.total,
                format_args!("staging: {} of {} bytes", op.done, op.total),
            );
            Some(Next::After(Duration::ZERO))
        }
        Progress::Finished(result) => {
            let (seq, flags, args) = (op.seq, op.flags, op.args);
            *guard = None;
            drop(guard);
            set_state(GuestState::Running);
            match result {
                Ok(()) if flags.contains(RequestFlags::INJECT_FAIL_AFTER_STAGE) => {
                    *stage::STAGED.lock() = None;
                    prepare::release_staging();
                    log::warn!("injected failure after staging: the staged package is discarded");
                    respond(
                        mb,
                        seq,
                        Status::Injected,
                        format_args!("injected failure after staging (test fault injection): the staged package was discarded; the running kernel is unchanged"),
                        None,
                    );
                }
                Ok(()) => {
                    state.staged += 1;
                    let staged = stage::STAGED.lock();
                    let s = staged.as_ref().expect("staged after a successful stage");
                    log::info!(
                        "staged {} ({} bytes, SVN {}): copied and hashed in {} µs, signature by key {} verified in {} µs, laid out in {} µs",
                        s.summary,
                        s.bytes,
                        s.svn,
                        s.staging_us,
                        s.signer,
                        s.verify_us,
                        s.load_us
                    );
                    let report = StageReport {
                        bytes: s.bytes,
                        staging_us: s.staging_us,
                        hash_us: s.hash_us,
                        verify_us: s.verify_us,
                        signer: s.signer.0,
                        svn: s.svn,
                        image: s.summary,
                    };
                    let verdict = match &s.preflight {
                        Preflight::Reconciles { conversions, warnings } => alloc::format!(
                            "its bootstrap's dry run reconciles ({conversions} records, {warnings} warnings)"
                        ),
                        Preflight::WouldRefuse(why) => {
                            alloc::format!("its bootstrap's dry run predicts a refusal: {why}")
                        }
                        Preflight::ExportFailed(why) => alloc::format!("the trial export failed: {why}"),
                    };
                    let mut message = alloc::format!(
                        "accepted {} ({} pages to overlay); {verdict}; {}",
                        s.summary,
                        s.prepared.pages_to_copy,
                        s.plan.summary()
                    );
                    for drop in &s.drops {
                        message.push_str("; ");
                        message.push_str(drop);
                    }
                    drop(staged);
                    if flags.contains(RequestFlags::APPLY_AFTER_STAGE) {
                        let _ = report;
                        start_apply(mb, seq, flags, args);
                    } else {
                        respond(
                            mb,
                            seq,
                            Status::Ok,
                            format_args!("{message}"),
                            Some(Report::Stage(report)),
                        );
                    }
                }
                Err(refusal) => {
                    state.refused += 1;
                    log::warn!("package refused: {refusal}");
                    respond(mb, seq, refusal.status, format_args!("{refusal}"), None);
                }
            }
            Some(Next::Period)
        }
    }
}

/// In the old kernel, back after the guard took the swap back: reports the failure
/// (status `Reverted`, a rolled-back swap report naming it) and frees what the failed
/// kernel was given.
fn report_revert(mb: &SharedMemory, guard: &mut handoff_region::DescriptorGuard) {
    let reason = window::revert_reason(guard);
    let r = report::swap_report(
        guard,
        Outcome::RolledBack {
            reason: reason.clone(),
        },
    );
    log::warn!("{reason}");
    let (span, mapped_span, seq) = (guard.new_image.span, guard.mapped_span, guard.request_seq);
    guard
        .state
        .store(SwapState::RolledBack as u32, Ordering::Release);
    window::release_after_revert(span, mapped_span.max(span));
    set_state(GuestState::Running);
    respond(
        mb,
        seq,
        Status::Reverted,
        format_args!("{reason}"),
        Some(Report::Swap(r)),
    );
}

/// In a kernel that has just resumed from a swap: once every CPU schedules again,
/// reports the swap to the host, records its downtime in the history, and frees what
/// the old kernel loaded. Returns whether it reported.
fn finish_swap(mb: &SharedMemory) -> bool {
    let mut guard = handoff_region::descriptor();
    if guard.state.load(Ordering::Acquire) != SwapState::Resumed as u32 {
        return false;
    }
    window::say_open();
    match window::gate() {
        window::Gate::Waiting => return false,
        window::Gate::Healthy => window::commit(),
        window::Gate::Reverted if crate::update::patch_window::reverting_patch() => {
            crate::update::patch_window::report_revert(mb, &mut guard);
            return false; // the patch was taken back
        }
        window::Gate::Reverted => {
            report_revert(mb, &mut guard);
            return false; // nothing was applied
        }
        window::Gate::Closed => {
            if crate::cpu::online_count() < crate::cpu::count() {
                return false; // an AP has not scheduled yet: the downtime is not over
            }
            // No window: the swap is final as soon as it runs.
            window::commit();
        }
    }
    let r = report::swap_report(&guard, Outcome::Applied);
    crate::history::set_own_downtime(r.downtime_ns);
    let (d, areas) = guard.areas();
    // The previous kernel's hotpatches never run here: free their memory.
    crate::hotpatch::free_handed_over(&crate::update::import::take_handed_over_patches());
    log::info!(
        "resumed as {} (kernel #{})",
        crate::identity::describe(),
        crate::machine::boot_seq()
    );
    let crate::update::import::Adoption {
        tasks,
        pools,
        in_place,
    } = crate::update::import::adopted();
    log::info!("adopted {tasks} tasks: {in_place} of {pools} record pools where they stood");
    log::info!(
        "swap {} → {}: downtime {} µs, {} tasks before, {} after",
        r.from,
        r.to,
        r.downtime_ns / 1000,
        r.tasks_before,
        r.tasks_after
    );
    let seq = d.request_seq;
    d.state.store(SwapState::Reported as u32, Ordering::Release);
    let span = d.new_image.span;
    let remapped = if d.overlay_method == updater::handoff::OverlayMethod::Remap as u32 {
        &d.copy_runs[..(d.copy_run_count as usize).min(d.copy_runs.len())]
    } else {
        &[][..]
    };
    let count = (d.reclaim_count as usize).min(areas.reclaim.len());
    let mapped_span = d.mapped_span;
    prepare::release_after_swap(
        span,
        remapped,
        &areas.reclaim[..count],
        mapped_span.max(span),
    );
    drop(guard);
    let to = r.to;
    respond(
        mb,
        seq,
        Status::Ok,
        format_args!("swapped to {to}"),
        Some(Report::Swap(r)),
    );
    set_state(GuestState::Running);
    true
}
