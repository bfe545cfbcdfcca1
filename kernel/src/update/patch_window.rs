//! A hotpatch's health window: the swap's transaction brought to a patch.
//!
//! A patch's new code runs from the moment its jumps are written, so an apply is not
//! final there. With every other CPU parked — every task on a run queue between two
//! steps — [`open`] exports the record set exactly as a swap does (into the half that is
//! not live) and arms the undo log for this very image: no page-table entry to restore,
//! its own pristine pages, its own resume entries, and [`PatchWindow`] (the patch's
//! sites with the bytes they held, its memory, the pristine text hash, the request).
//! Then the jumps are written and the CPUs released; each switches to the guard IDT at
//! the checkpoint where it was released (`quiesce`).
//!
//! The window closes like a swap's (`window::gate`, polled by the update service with
//! [`finish`]): every CPU scheduling again and every task kind stepped once since the
//! apply → [`commit`], and the apply is answered `Ok`. A panic, an exception or the
//! deadline make the guard copy the pristine pages over the image (the statics start
//! afresh) and enter `resume`, which takes the exported records again: every task
//! continues from its state at the apply, the work done inside the window is lost.
//! There, [`revert_sites`] writes the failed patch's sites back before anything else
//! runs, [`after_revert`] frees its memory and rebuilds the patch stack from the records
//! (the patches applied before stay), and [`report_revert`] answers `Reverted` naming
//! the failure.
//!
//! Not taken back: console output, and anything a patch's code did outside the tasks'
//! records and the image's statics (device registers, frames it allocated — leaked).
//! Lost with the statics: a package staged before the apply (its memory is freed; stage
//! it again) and a staging still in progress (its request goes unanswered).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use image_format::mailbox::report::{PatchOp, PatchReport, PatchedFunction, Report};
use image_format::mailbox::{Response, ResponseState, Status};
use spin::Mutex;
use updater::handoff::{set_text, text, PatchWindow, SetPlace, SwapState, WindowSite};

use crate::arch::{idt, text as code};
use crate::drivers::mailbox::SharedMemory;
use crate::handoff_region;
use crate::hotpatch::{self, install::Pause, Applied};
use crate::sched::{self, health};
use crate::time::{self, Duration};
use crate::update::{export, patches, swap, window};

/// The window a patch gets unless the request says otherwise.
pub const DEFAULT: Duration = Duration::from_millis(200);

/// An apply waiting for its window to close: the answer to give once it is healthy.
struct Open {
    seq: u64,
    applied: Applied,
    pause: Pause,
}

/// This kernel's statics: lost with them on a revert, which answers from the hand-off
/// region instead.
static OPEN: Mutex<Option<Open>> = Mutex::new(None);

/// Why a patch gets no window (it is applied without one, as before windows existed).
#[derive(Debug, Clone, Copy)]
pub enum NoWindow {
    /// This image kept no pristine pages (memory was short at first boot).
    NoPristinePages,
    /// More sites than the undo log holds.
    TooManySites(usize),
    /// The record set did not fit its half.
    Export,
}

impl core::fmt::Display for NoWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NoWindow::NoPristinePages => {
                write!(f, "this image's pristine pages are not kept")
            }
            NoWindow::TooManySites(n) => write!(
                f,
                "the patch writes {n} sites, the undo log holds {}",
                updater::handoff::MAX_WINDOW_SITES
            ),
            NoWindow::Export => write!(f, "the state did not fit the export area"),
        }
    }
}

/// Before the apply, while everything runs: a trial of the export [`open`] makes inside
/// the pause, into the same half (as the swap's pre-flight does at staging). Its result
/// is dropped; it is there so that the code the stopped section runs has run once —
/// under an emulator that translates code on first execution (after a swap every page
/// of code is new), that is most of a cold pause.
pub fn rehearse() {
    let mut guard = handoff_region::descriptor();
    let (_, areas) = guard.areas();
    if let Err(e) = export::export(areas.records) {
        log::warn!("the trial export for the patch's health window failed: {e}");
    }
}

/// Opens the window for `applied` (request `seq`, `length` long). Call on the BSP with
/// interrupts off and every other CPU parked, before the jumps are written (the sites
/// still hold what the patch found). On `Err` nothing is armed.
pub fn open(seq: u64, applied: &Applied, length: Duration) -> Result<(), NoWindow> {
    if applied.sites.len() > updater::handoff::MAX_WINDOW_SITES {
        return Err(NoWindow::TooManySites(applied.sites.len()));
    }
    let mut guard = handoff_region::descriptor();
    {
        let (d, areas) = guard.areas();
        let e = export::export(areas.records).map_err(|_| NoWindow::Export)?;
        d.record_half = handoff_region::export_half();
        d.exported = SetPlace {
            at: 0,
            len: e.end as u64,
        };
        d.converted = SetPlace::default();
        d.state.store(SwapState::Idle as u32, Ordering::Relaxed);
        d.request_seq = seq;
        d.inject = 0;
        d.init_requirements = 0;
        d.failure = [0; 160];
        d.tasks_before = e.tasks as u32;
    }
    // SAFETY: the BSP with every other CPU parked and the descriptor guard held: no
    // other CPU touches the undo log until it is armed below.
    let u = unsafe { handoff_region::undo_mut() };
    if !swap::reset_undo(u) {
        return Err(NoWindow::NoPristinePages);
    }
    // A package staged before the apply: a revert forgets it with the statics, so the
    // undo log keeps what to free then — its memory (below) and its pristine pages.
    let staged_span = match crate::update::stage::STAGED.lock().as_ref() {
        Some(s) => {
            u.next_pristine_count = s.prepared.pristine_count;
            u.next_pristine = s.prepared.pristine;
            s.prepared.span
        }
        None => 0,
    };
    let mut label = [0u8; 32];
    set_text(&mut label, &applied.label);
    let mut w = PatchWindow {
        active: 1,
        site_count: applied.sites.len() as u32,
        request_seq: seq,
        id: applied.id,
        version: applied.version,
        label,
        memory: applied.memory.0,
        memory_len: applied.memory.1,
        text_hash: hotpatch::pristine_text_hash().unwrap_or_default(),
        staged_span,
        mapped_span: crate::machine::record().image.len,
        ..PatchWindow::EMPTY
    };
    for (slot, s) in w.sites.iter_mut().zip(&applied.sites) {
        // SAFETY: the site is mapped text of this image (checked when it was prepared).
        let now: [u8; WindowSite::LEN] = unsafe { code::read(s.addr) };
        slot.addr = s.addr;
        slot.before[..WindowSite::LEN].copy_from_slice(&now);
    }
    u.patch = w;
    u.deadline_tsc = time::now().ticks() + time::duration_to_ticks(length);
    // Every task steps once the CPUs are released, each kind through the new code if
    // it calls it: the window need not wait for the longest period.
    sched::wake_all();
    health::watch_present(sched::kinds_present());
    u.armed.store(1, Ordering::Release);
    drop(guard);
    // This CPU's exceptions go to the guard from now on; the others switch when they
    // are released.
    // SAFETY: the guard IDT is the hand-off region's; its device gates are rewritten
    // with the same values by every CPU that loads it.
    unsafe { idt::load_guarded(crate::cpu::CpuId::BSP.index(), handoff_region::guard_idt()) };
    Ok(())
}

/// After the jumps are written and the CPUs released: the answer waits for the window.
pub fn wait(seq: u64, applied: Applied, pause: Pause) {
    *OPEN.lock() = Some(Open {
        seq,
        applied,
        pause,
    });
}

/// Closes the window: the patch is final. (This image's pristine pages stay its own,
/// unlike a swap's commit, which frees the old image's.)
fn commit() {
    health::stop();
    // SAFETY: the bootstrap processor, closing the window; the other CPUs read only the
    // atomics.
    let undo = unsafe { handoff_region::undo_mut() };
    undo.patch.active = 0;
    // A staged package's pristine pages are still its own.
    undo.next_pristine_count = 0;
    undo.armed.store(0, Ordering::Release);
}

/// Polled by the update service: answers the apply once its window closed healthy (or
/// fails the window at its deadline, never returning). Returns whether it answered.
pub fn finish(mb: &SharedMemory) -> bool {
    let mut open = OPEN.lock();
    let Some(o) = open.as_ref() else {
        return false;
    };
    match window::gate() {
        window::Gate::Waiting => return false,
        window::Gate::Healthy | window::Gate::Closed => commit(),
        // The statics (this one among them) were reset by the revert: not reached.
        window::Gate::Reverted => return false,
    }
    log::info!(
        "patch {:016x} ({}) healthy: every CPU scheduled and every task kind stepped",
        o.applied.id,
        o.applied.label
    );
    let o = open.take().expect("checked above");
    drop(open);
    patches::respond(
        mb,
        o.seq,
        patches::report(
            PatchOp::Apply,
            core::slice::from_ref(&o.applied),
            o.pause,
            None,
        ),
    );
    true
}

/// Whether the revert this kernel resumed from took back a hotpatch (not a swap).
pub fn reverting_patch() -> bool {
    handoff_region::undo().patch.active != 0
}

/// At the resume after a reverted patch window, as soon as the memory is adopted and
/// before anything else runs: the failed patch's sites hold their bytes again.
pub fn revert_sites() {
    let w = &handoff_region::undo().patch;
    for s in &w.sites[..(w.site_count as usize).min(w.sites.len())] {
        // SAFETY: every other CPU is parked (in the guard, by the revert), interrupts are
        // off; the bytes are what the site held before the failed patch wrote its jump.
        unsafe { code::write(s.addr, &s.before[..WindowSite::LEN]) };
    }
}

/// At the resume after a reverted patch window, with a heap and the records read: frees
/// the failed patch's memory and rebuilds the stack of the patches applied before it.
pub fn after_revert(sites: &[updater::records::patch_sites::V1]) {
    let w = &handoff_region::undo().patch;
    // Not counted (the import adopted only the patches in the records): unmapped, and its
    // addresses are free for the next patch.
    hotpatch::memory::discard(w.memory, w.memory_len);
    hotpatch::restore(
        crate::update::import::take_handed_over_patches(),
        sites,
        w.text_hash,
    );
    log::warn!(
        "patch {:016x} ({}) taken back: its {} sites restored, {} patches still applied",
        w.id,
        text(&w.label),
        w.site_count,
        hotpatch::count()
    );
}

/// In the kernel resumed after a reverted patch window: answers the apply `Reverted`
/// with what failed, and empties the undo log.
pub fn report_revert(mb: &SharedMemory, guard: &mut handoff_region::DescriptorGuard) {
    let w = handoff_region::undo().patch;
    let reason = format!(
        "patch {:016x} ({}) failed inside its health window: {}; the patch was removed and every task resumed from its state at the apply",
        w.id,
        text(&w.label),
        window::failure(guard)
    );
    log::warn!("{reason}");
    guard
        .state
        .store(SwapState::RolledBack as u32, Ordering::Release);
    if w.staged_span != 0 {
        log::warn!(
            "the package staged before the apply is forgotten with the revert: stage it again"
        );
    }
    // Frees what a staged package was given — its memory and its pristine pages (nothing
    // when none was) — and empties the undo log.
    window::release_after_revert(w.staged_span, w.mapped_span.max(w.staged_span));
    crate::update::requests::set_state(image_format::mailbox::GuestState::Running);
    let functions: Vec<PatchedFunction> = w.sites[..(w.site_count as usize).min(w.sites.len())]
        .iter()
        .map(|s| PatchedFunction {
            name: String::new(),
            site: s.addr,
        })
        .collect();
    let report = PatchReport {
        op: PatchOp::Apply,
        id: w.id,
        version: w.version,
        label: String::from(text(&w.label)),
        sequence: 0,
        functions,
        pause_ns: 0,
        park_ns: 0,
        cpus_parked: 0,
        stack_depth: hotpatch::count() as u32,
        refused: Some(reason.clone()),
    };
    let mut r = Response::new(w.request_seq, ResponseState::Done, Status::Reverted);
    r.set_message(format_args!("{reason}"));
    let report = Report::Patch(report);
    if let Ok(len) = mb.write_report(&report) {
        r.report_kind = report.kind();
        r.report_len = len;
    }
    mb.respond(&r);
}
