//! The swap, as the old kernel's coordinator runs it (phases 4–6; the new image's
//! bootstrap and resume do 6–8).
//!
//! Runs on the BSP at its scheduler checkpoint (no task in flight on this CPU), with
//! interrupts off: park every other CPU, export the state, fill the descriptor, enter
//! the new image's bootstrap on the hand-off stack. The bootstrap either never returns
//! (the new kernel resumes) or returns a refusal, in which case nothing has been
//! overwritten: the old kernel releases the CPUs and carries on, every task as it was.
//! The coordinator holds the descriptor guard from the reset to the end: the descriptor
//! and the record areas are its alone for the whole swap.

use core::sync::atomic::Ordering;

use updater::handoff::{
    inject, set_text, text, Descriptor, ImageRef, OverlayMethod, SetPlace, SwapClock, SwapState,
    LAYOUT_FINGERPRINT, MAX_RECLAIM,
};

use alloc::string::String;

use crate::arch::tsc;
use crate::cpu::{self, CpuId};
use crate::handoff_region;
use crate::identity;
use crate::memory::layout::KERNEL_IMAGE;
use crate::quiesce;
use crate::time::Duration;
use crate::update::{enter, export, prepare::Prepared};

/// How long the coordinator waits for every CPU to park.
pub const PARK_BOUND: Duration = Duration::from_millis(200);

/// The health window a swap gets unless the request says otherwise.
pub const DEFAULT_HEALTH_WINDOW: Duration = Duration::from_millis(200);

// SAFETY: both symbols are defined by this image's own assembly (`resume.rs`) with
// these types; only their addresses are taken, nothing is read or called here.
unsafe extern "C" {
    /// This image's resume and AP entries (`resume.rs`), where a revert sends the CPUs.
    static hk_resume: u8;
    fn hk_ap_resume(index: u64) -> !;
}

/// Why a swap did not happen. The old kernel is running, state intact.
#[derive(Debug)]
pub enum SwapRefusal {
    /// Not every CPU parked in time.
    Quiesce(quiesce::QuiesceTimeout),
    /// The state did not fit the export area.
    Export(updater::recordset::RecordSetError),
    /// The new image's bootstrap refused, for this reason.
    Bootstrap(String),
    /// A test asked the old kernel to fail after its export.
    InjectedAfterExport,
    /// The copy overlay writes over the old image's frames, which a revert needs.
    CopyWithWindow,
    /// A test asked for a failure past the point of no return, and the swap would have
    /// no health window to take it back (the VM would be lost: nothing to test).
    InjectedWithoutWindow(&'static str),
}

impl core::fmt::Display for SwapRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SwapRefusal::Quiesce(e) => write!(f, "quiesce failed: {e}"),
            SwapRefusal::Export(e) => write!(f, "export failed: {e}"),
            SwapRefusal::Bootstrap(reason) => {
                write!(f, "the new image's bootstrap refused: {reason}")
            }
            SwapRefusal::InjectedAfterExport => {
                write!(
                    f,
                    "injected failure after the export (test fault injection)"
                )
            }
            SwapRefusal::CopyWithWindow => write!(
                f,
                "the copy overlay writes over the old image's frames, which a revert inside the health window needs: swap with --health-ms 0 to copy without a window"
            ),
            SwapRefusal::InjectedWithoutWindow(why) => write!(
                f,
                "an injected failure after the overlay needs a health window to take the swap back, and this swap has none ({why}): without one the VM would be lost"
            ),
        }
    }
}

/// This image, as the descriptor's `old_image`.
pub fn own_image_ref() -> ImageRef {
    let mut r = ImageRef::EMPTY;
    let id = identity::this();
    let version = id.version();
    r.version = [version.major, version.minor, version.patch, 0];
    let (len, build_id) = crate::image::build_id_bytes();
    r.build_id = build_id;
    r.build_id_len = len as u64;
    set_text(&mut r.label, id.label().as_str());
    r.caps_required = id.caps_required().bits();
    r.caps_provided = id.caps_provided().bits();
    r.base = KERNEL_IMAGE.start;
    r.span = crate::image::span();
    r
}

pub(crate) fn reset(d: &mut Descriptor, loaded: &Prepared, request_seq: u64, inject_bits: u64) {
    d.state.store(SwapState::Idle as u32, Ordering::Relaxed);
    d.request_seq = request_seq;
    d.inject = inject_bits;
    d.old_image = own_image_ref();
    d.new_image = loaded.identity;
    d.staging_base = crate::memory::layout::STAGING_WINDOW.start;
    d.overlay_source = crate::memory::layout::OVERLAY_SOURCE.start;
    d.bootstrap_entry = loaded.bootstrap_entry;
    d.resume_entry = loaded.resume_entry;
    d.ap_entry = loaded.ap_entry;
    d.segment_count = loaded.segment_count as u64;
    d.segments = loaded.segments;
    d.mapped_span = crate::machine::record().image.len;
    if inject_bits & inject::OVERLAY_FULL != 0 {
        d.copy_runs = [Default::default(); updater::handoff::MAX_COPY_RUNS];
        d.copy_runs[0] = updater::handoff::CopyRun {
            first_page: 0,
            pages: (loaded.span / 4096) as u32,
        };
        d.copy_run_count = 1;
    } else {
        d.copy_runs = loaded.copy_runs;
        d.copy_run_count = loaded.copy_run_count;
    }
    let pages: u64 = d.copy_runs[..d.copy_run_count as usize]
        .iter()
        .map(|r| r.pages as u64)
        .sum();
    d.overlay_method = if inject_bits & inject::OVERLAY_COPY != 0 || pages > MAX_RECLAIM as u64 {
        OverlayMethod::Copy as u32
    } else {
        OverlayMethod::Remap as u32
    };
    d.reclaim_count = 0;
    include_patched_pages(d);
    d.layout_fingerprint = LAYOUT_FINGERPRINT;
    d.record_half = handoff_region::export_half();
    d.exported = SetPlace::default();
    d.converted = SetPlace::default();
    d.clock = SwapClock::default();
    d.cpus_parked = 0;
    d.tasks_before = 0;
    d.tasks_after = 0;
    d.conversion_count = 0;
    d.warning_count = 0;
    d.failure = [0; 160];
    d.init_requirements = 0;
}

/// Adds the pages holding hotpatch jumps to the overlay's runs: the loader compared the
/// image as it was when the package was staged, and a patch applied since then made
/// those pages differ from the new image (even when the loader found them equal).
fn include_patched_pages(d: &mut Descriptor) {
    let base = d.new_image.base;
    let span = d.new_image.span;
    let mut pages: alloc::vec::Vec<u32> = d.copy_runs[..d.copy_run_count as usize]
        .iter()
        .flat_map(|r| r.first_page..r.first_page + r.pages)
        .collect();
    for site in crate::hotpatch::sites() {
        for at in [site, site + crate::hotpatch::JUMP_LEN as u64 - 1] {
            if at >= base && at < base + span {
                pages.push(((at - base) / 4096) as u32);
            }
        }
    }
    pages.sort_unstable();
    pages.dedup();
    d.copy_runs = [Default::default(); updater::handoff::MAX_COPY_RUNS];
    d.copy_run_count = 0;
    for p in pages {
        updater::handoff::add_page(&mut d.copy_runs, &mut d.copy_run_count, p);
    }
}

/// Empties the undo log and fills what every window's revert needs: the CPUs, the
/// local APIC, this image's resume entries and its own pristine pages — what a revert
/// copies back (a swap's new kernel frees them otherwise). Returns whether those pages
/// are kept (none kept: no window is possible). The caller arms it.
pub(crate) fn reset_undo(u: &mut updater::handoff::Undo) -> bool {
    u.armed.store(0, Ordering::Relaxed);
    u.reverting.store(0, Ordering::Relaxed);
    u.cause.store(0, Ordering::Relaxed);
    u.vector.store(0, Ordering::Relaxed);
    u.apic_id.store(0, Ordering::Relaxed);
    u.rip.store(0, Ordering::Relaxed);
    u.error_code.store(0, Ordering::Relaxed);
    u.cr2.store(0, Ordering::Relaxed);
    u.pte_count = 0;
    u.deadline_tsc = 0;
    u.bsp_apic_id = cpu::get(CpuId::BSP).map_or(0, |c| c.apic_id);
    u.cpus = cpu::count() as u32;
    u.lapic_base = crate::machine::record().lapic_virt;
    // SAFETY: label and function addresses only.
    u.resume_entry = unsafe { &hk_resume as *const u8 as u64 };
    u.ap_entry = hk_ap_resume as unsafe extern "C" fn(u64) -> ! as usize as u64;
    u.park_wait_ticks = crate::time::duration_to_ticks(Duration::from_millis(100));
    u.next_pristine_count = 0;
    u.patch.active = 0;
    u.patch.site_count = 0;
    let own = crate::image::pristine();
    let kept = !own.is_empty() && own.len() <= u.pristine.len();
    let offset = crate::memory::phys_offset();
    u.pristine_count = if kept { own.len() as u32 } else { 0 };
    for (slot, &(page, phys)) in u.pristine.iter_mut().zip(own.iter()) {
        *slot = updater::handoff::PristinePage {
            page,
            copy: offset + phys,
        };
    }
    kept
}

/// Fills the undo log for a swap with a health window of `window` (`None`: no window):
/// how to take the swap back if the new kernel fails before it proves healthy. Returns
/// why there is no window when one was asked for but cannot be had (a warning).
fn prepare_undo(
    d: &Descriptor,
    loaded: &Prepared,
    window: Option<Duration>,
) -> Option<&'static str> {
    // SAFETY: the coordinating CPU, holding the descriptor guard; no other CPU writes
    // the undo log, and none reads its plain fields until the bootstrap arms it.
    let u = unsafe { handoff_region::undo_mut() };
    let own = reset_undo(u);
    // The new image's pristine pages travel with the swap either way.
    u.next_pristine_count = loaded.pristine_count;
    u.next_pristine = loaded.pristine;
    let window = window?;
    let why_not = if !own {
        Some("this image's pristine pages are not kept")
    } else if d.overlay_method != OverlayMethod::Remap as u32 {
        Some("the overlay copies over the old image")
    } else if d.new_image.span.max(d.mapped_span) / 4096 > u.ptes.len() as u64 {
        Some("the image is larger than the undo log")
    } else {
        None
    };
    if why_not.is_some() {
        return why_not;
    }
    // Until the bootstrap opens the window: its length (the bootstrap adds the TSC).
    u.deadline_tsc = crate::time::duration_to_ticks(window);
    None
}

/// Applies `loaded` with a health window of `window`. Returns only if the swap was
/// refused (or, after the new kernel failed inside its window, never: the old kernel
/// resumes anew).
pub fn apply(
    loaded: &Prepared,
    request_seq: u64,
    inject_bits: u64,
    window: Option<Duration>,
) -> SwapRefusal {
    debug_assert_eq!(cpu::current().id, CpuId::BSP);
    if window.is_some() && inject_bits & inject::OVERLAY_COPY != 0 {
        return SwapRefusal::CopyWithWindow;
    }
    let fails_late = inject_bits & (inject::FAIL_IN_RESUME | inject::FAIL_FIRST_ROUND) != 0;
    if window.is_none() && fails_late {
        return SwapRefusal::InjectedWithoutWindow("it was asked for without one");
    }
    x86_64::instructions::interrupts::disable();
    let mut guard = handoff_region::descriptor();
    reset(&mut guard, loaded, request_seq, inject_bits);
    if let Some(why) = prepare_undo(&guard, loaded, window) {
        if fails_late {
            guard
                .state
                .store(SwapState::RolledBack as u32, Ordering::Release);
            drop(guard);
            x86_64::instructions::interrupts::enable();
            return SwapRefusal::InjectedWithoutWindow(why);
        }
        log::warn!("no health window for this swap: {why}");
        let i = guard.warning_count as usize;
        if let Some(slot) = guard.warnings.get_mut(i) {
            set_text(
                slot,
                &alloc::format!("no health window for this swap: {why}"),
            );
        }
        guard.warning_count += 1;
    }
    let refusal = stop_and_enter(&mut guard, inject_bits);
    guard
        .state
        .store(SwapState::RolledBack as u32, Ordering::Release);
    drop(guard);
    x86_64::instructions::interrupts::enable();
    refusal
}

/// Parks the other CPUs, exports, and enters the bootstrap; returns only to refuse,
/// with the CPUs released again.
fn stop_and_enter(guard: &mut handoff_region::DescriptorGuard, inject_bits: u64) -> SwapRefusal {
    let ignore = (inject_bits & inject::AP_NO_ACK != 0 && cpu::count() > 1)
        .then(|| CpuId::new(cpu::count() - 1));
    let parked = match quiesce::park_others(PARK_BOUND, ignore) {
        Ok(p) => p,
        Err(e) => {
            set_text(&mut guard.failure, "quiesce timed out");
            return SwapRefusal::Quiesce(e);
        }
    };
    {
        let (d, areas) = guard.areas();
        d.clock
            .park_ipi
            .store(parked.ipi_at.ticks(), Ordering::Relaxed);
        d.clock
            .all_parked
            .store(parked.all_parked_at.ticks(), Ordering::Relaxed);
        d.cpus_parked = parked.cpus as u32;
        match export::export(areas.records) {
            Ok(e) => {
                d.exported = SetPlace {
                    at: 0,
                    len: e.end as u64,
                };
                d.tasks_before = e.tasks as u32;
                if inject_bits & inject::KEEP_EXPORT_COPY != 0 {
                    if let Some(spare) = areas.spare {
                        spare[..e.end].copy_from_slice(&areas.records[..e.end]);
                    }
                }
            }
            Err(e) => {
                quiesce::release(parked);
                return SwapRefusal::Export(e);
            }
        }
        d.clock.exported.store(tsc::read(), Ordering::Relaxed);
        d.state.store(SwapState::Exported as u32, Ordering::Release);
        if inject_bits & inject::FAIL_AFTER_EXPORT != 0 {
            set_text(&mut d.failure, "injected failure after the export");
            quiesce::release(parked);
            return SwapRefusal::InjectedAfterExport;
        }
    }
    let entry = guard.bootstrap_entry;
    // SAFETY: interrupts are off, every other CPU is parked, the entry is the loaded
    // image's bootstrap in the staging window, the descriptor describes it, and this
    // CPU holds the guard while the bootstrap runs.
    let _status = unsafe { enter::call_bootstrap(entry, guard.as_mut_ptr()) };

    // Back here only if the bootstrap refused: nothing was overwritten.
    let reason = String::from(text(&guard.failure));
    quiesce::release(parked);
    SwapRefusal::Bootstrap(reason)
}
