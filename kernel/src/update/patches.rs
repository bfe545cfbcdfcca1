//! Patch requests from the mailbox: `PatchApply` (patch bytes in the data area;
//! `args[0]`: its health window in ms, 0 = the default, `RequestFlags::NO_HEALTH_WINDOW`:
//! none — see `update::patch_window`), `PatchRemove` (`args[0]`: the id to remove down to; 0 = the newest), `PatchList`.
//!
//! Checks and loading happen in the service task; the jumps are written (and removed)
//! by the BSP at its checkpoint with every other CPU parked (`update::jobs`), which
//! answers with a patch report: functions, sites, the pause and the CPUs parked.
#![deny(unsafe_code)]

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use image_format::mailbox::report::{PatchOp, PatchReport, PatchedFunction, Report};
use image_format::mailbox::{Command, Request, RequestFlags, Response, ResponseState, Status};

use crate::drivers::mailbox::SharedMemory;
use crate::hotpatch::install::{self, Pause, Rejected};
use crate::hotpatch::Applied;
use crate::tasks::update_service::UpdateServiceV1 as Service;
use crate::tasks::Next;
use crate::time::Duration;
use crate::update::jobs::{self, Job};
use crate::update::patch_window;

/// The report of an apply or remove of `patches` (the last one named as the patch).
pub fn report(
    op: PatchOp,
    patches: &[Applied],
    pause: Pause,
    refused: Option<String>,
) -> PatchReport {
    let named = patches.last();
    PatchReport {
        op,
        id: named.map_or(0, |p| p.id),
        version: named.map_or(0, |p| p.version),
        label: named.map_or_else(String::new, |p| p.label.clone()),
        sequence: named.map_or(0, |p| p.sequence),
        functions: patches
            .iter()
            .flat_map(|p| {
                p.sites.iter().map(|s| PatchedFunction {
                    name: s.function.clone(),
                    site: s.addr,
                })
            })
            .collect(),
        pause_ns: pause.ns,
        park_ns: pause.park_ns,
        cpus_parked: pause.cpus,
        stack_depth: crate::hotpatch::count() as u32,
        refused,
    }
}

/// Writes a finished answer.
pub fn respond(mb: &SharedMemory, seq: u64, report: PatchReport) {
    let status = if report.refused.is_some() {
        Status::PatchRefused
    } else {
        Status::Ok
    };
    respond_with(mb, seq, report, status);
}

/// Writes a finished answer with `status`.
fn respond_with(mb: &SharedMemory, seq: u64, report: PatchReport, status: Status) {
    let mut r = Response::new(seq, ResponseState::Done, status);
    r.set_message(format_args!("{report}"));
    let report = Report::Patch(report);
    if let Ok(len) = mb.write_report(&report) {
        r.report_kind = report.kind();
        r.report_len = len;
    }
    mb.respond(&r);
}

/// The report of an apply that [`install::prepare`] refused: it names the patch when
/// its bytes parsed (a refused patch has no place in the stack: sequence 0).
fn rejected_report(rejected: &Rejected) -> PatchReport {
    let mut r = report(
        PatchOp::Apply,
        &[],
        Pause::default(),
        Some(rejected.refusal.to_string()),
    );
    if let Some(p) = &rejected.patch {
        r.id = p.id;
        r.version = p.version;
        r.label = p.label.clone();
    }
    r
}

/// Answers a patch request.
pub fn handle(mb: &SharedMemory, state: &mut Service, request: Request) -> Next {
    let seq = request.seq;
    match request.command {
        Command::PatchApply => {
            // Only a private copy is trusted: the host could change the shared memory.
            let bytes: Vec<u8> = match mb.data_to_vec(request.payload_len) {
                Ok(bytes) => bytes,
                Err(e) => {
                    state.refused += 1;
                    let mut r = Response::new(seq, ResponseState::Done, Status::BadRequest);
                    r.set_message(format_args!("{e}"));
                    mb.respond(&r);
                    return Next::Period;
                }
            };
            let window = if request.flags.contains(RequestFlags::NO_HEALTH_WINDOW) {
                None
            } else if request.args[0] == 0 {
                Some(patch_window::DEFAULT)
            } else {
                Some(Duration::from_millis(request.args[0]))
            };
            match install::prepare(&bytes) {
                Ok(prepared) => {
                    if window.is_some() {
                        patch_window::rehearse();
                    }
                    let mut r = Response::new(seq, ResponseState::InProgress, Status::Accepted);
                    r.set_message(format_args!("patch loaded; writing its jumps"));
                    mb.respond(&r);
                    // Or answered `Busy`, its memory freed.
                    let _queued = jobs::request(
                        Job::PatchApply {
                            seq,
                            prepared: alloc::boxed::Box::new(prepared),
                            window,
                        },
                        request.flags,
                    );
                }
                Err(rejected) => {
                    state.refused += 1;
                    log::warn!("patch apply refused: {rejected}");
                    respond_with(
                        mb,
                        seq,
                        rejected_report(&rejected),
                        rejected.refusal.status(),
                    );
                }
            }
        }
        Command::PatchRemove => {
            let id = (request.args[0] != 0).then_some(request.args[0]);
            let _queued = jobs::request(Job::PatchRemove { seq, id }, request.flags);
            // or `Busy`
        }
        Command::PatchList => {
            let list = crate::hotpatch::list();
            let mut r = Response::new(seq, ResponseState::Done, Status::Ok);
            r.set_message(format_args!("{} patches applied", list.patches.len()));
            let report = Report::PatchList(list);
            if let Ok(len) = mb.write_report(&report) {
                r.report_kind = report.kind();
                r.report_len = len;
            }
            mb.respond(&r);
        }
        _ => {}
    }
    state.patches += 1;
    Next::Period
}

/// The BSP's half of `PatchApply`: with a health window of `window` (`None`: none),
/// the answer waits for the window to close (`patch_window::finish`).
pub fn run_apply(
    mb: &SharedMemory,
    seq: u64,
    prepared: install::Prepared,
    window: Option<Duration>,
) {
    let open = |applied: &Applied| window.map(|length| patch_window::open(seq, applied, length));
    match install::install(prepared, open) {
        Ok((applied, pause, opened)) => {
            log::info!(
                "patch {:016x} ({}) applied: {} sites, pause {} µs",
                applied.id,
                applied.label,
                applied.sites.len(),
                pause.ns / 1000
            );
            match opened {
                Some(Ok(())) => {
                    log::info!(
                        "health window open: {} ms",
                        window.map_or(0, |w| w.as_millis())
                    );
                    patch_window::wait(seq, applied, pause);
                    return;
                }
                Some(Err(why)) => log::warn!("no health window for this patch: {why}"),
                None => {}
            }
            respond(
                mb,
                seq,
                report(PatchOp::Apply, core::slice::from_ref(&applied), pause, None),
            );
        }
        Err((refusal, pause, described)) => {
            log::warn!("patch {:016x} refused: {refusal}", described.id);
            // Named with the functions it would have replaced; not in the stack.
            let mut r = report(
                PatchOp::Apply,
                core::slice::from_ref(&described),
                pause,
                Some(refusal.to_string()),
            );
            r.sequence = 0;
            respond(mb, seq, r);
        }
    }
}

/// The BSP's half of `PatchRemove`.
pub fn run_remove(mb: &SharedMemory, seq: u64, id: Option<u64>) {
    match install::remove_through(id) {
        Ok((removed, pause)) => {
            log::info!(
                "{} patch(es) removed, pause {} µs",
                removed.len(),
                pause.ns / 1000
            );
            respond(mb, seq, report(PatchOp::Remove, &removed, pause, None));
        }
        Err((refusal, pause)) => {
            log::warn!("patch removal refused: {refusal}");
            respond(
                mb,
                seq,
                report(PatchOp::Remove, &[], pause, Some(refusal.to_string())),
            );
        }
    }
}
