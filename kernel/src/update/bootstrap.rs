//! The bootstrap: this image's code, run from the staging window by the old kernel,
//! before anything of the old kernel is overwritten.
//!
//! It asks `updater::reconcile` — versions, capability fields, the converter chain,
//! the tasks against this image's kinds, the patch-set rule, the initialisation
//! requirements — with this image's declarations (`identity::image`), and writes the
//! answer into the descriptor. Only when it succeeded does it commit and run the
//! overlay, which ends in this image's resume entry; otherwise it writes the reason and
//! returns to the old kernel, which resumes.
//!
//! It runs with this image's statics in the staging copy, no heap, no logger and no
//! interrupts, on the hand-off stack: everything it needs comes through the descriptor.

use core::fmt::Write as _;
use core::sync::atomic::Ordering;

use updater::handoff::{
    inject, method, set_text, ConversionLog, Descriptor, ImageRef, SetPlace, SwapState,
    DESCRIPTOR_MAGIC, PREFLIGHT_OK,
};
use updater::reconcile::{self, By, Log, Reconciled, Request, Running, Warning};
use updater::records::{RecordKind, SchemaVersion};

use crate::arch::tsc;
use crate::handoff_region::RecordAreas;
use crate::identity;
use crate::sched::TaskEntry;
use crate::update::overlay;
use image_format::{Capabilities, ImageVersion};

/// Status returned to the old kernel when the bootstrap refuses.
pub const REFUSED: u64 = 1;

/// Writes what reconcile did into the descriptor's logs. Entries beyond the logs'
/// capacity are counted, not stored: the report says how many it does not list.
struct DescriptorLog<'a> {
    d: &'a mut Descriptor,
}

impl DescriptorLog<'_> {
    fn push(&mut self, entry: ConversionLog) {
        let i = self.d.conversion_count as usize;
        if let Some(slot) = self.d.conversions.get_mut(i) {
            *slot = entry;
        }
        self.d.conversion_count += 1;
    }
}

/// `+added −dropped` names into a NUL-padded field, whole names only.
fn names(field: &mut [u8; 48], added: &[&str], dropped: &[&str]) {
    let mut text = FixedText::<48>::new();
    let signed = added
        .iter()
        .map(|n| ('+', *n))
        .chain(dropped.iter().map(|n| ('-', *n)));
    for (i, (sign, name)) in signed.enumerate() {
        let sep = if i == 0 { "" } else { " " };
        let before = text.len;
        if write!(text, "{sep}{sign}{name}").is_err() {
            text.len = before; // a name that does not fit is left out whole
            break;
        }
    }
    set_text(field, text.as_str());
}

impl Log for DescriptorLog<'_> {
    fn unchanged(&mut self, kind: RecordKind, version: SchemaVersion, count: u32) {
        self.push(ConversionLog {
            kind: kind.get(),
            from: version.get(),
            to: version.get(),
            method: method::UNCHANGED,
            count,
            ..ConversionLog::EMPTY
        });
    }

    fn converted(
        &mut self,
        kind: RecordKind,
        from: SchemaVersion,
        to: SchemaVersion,
        count: u32,
        by: By<'_>,
    ) {
        let mut entry = ConversionLog {
            kind: kind.get(),
            from: from.get(),
            to: to.get(),
            method: method::CONVERTER,
            count,
            ..ConversionLog::EMPTY
        };
        if let By::Fields(plan) = by {
            entry.method = method::FIELDS;
            entry.added = plan.added_count as u16;
            entry.dropped = plan.dropped_count as u16;
            names(&mut entry.names, plan.added(), plan.dropped());
        }
        self.push(entry);
    }

    fn warn(&mut self, warning: Warning) {
        let i = self.d.warning_count as usize;
        if let Some(slot) = self.d.warnings.get_mut(i) {
            let mut text = FixedText::<96>::new();
            let _ = write!(text, "{warning}");
            set_text(slot, text.as_str());
        }
        self.d.warning_count += 1;
    }
}

/// A formatter into a fixed buffer (the bootstrap has no heap); text that does not fit
/// is cut at a character boundary.
pub struct FixedText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> FixedText<N> {
    pub fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> core::fmt::Write for FixedText<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            let mut tmp = [0u8; 4];
            let bytes = c.encode_utf8(&mut tmp).as_bytes();
            if self.len + bytes.len() > N {
                return Err(core::fmt::Error);
            }
            self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(())
    }
}

fn version_of(raw: [u16; 4]) -> ImageVersion {
    ImageVersion::new(raw[0], raw[1], raw[2])
}

fn build_id(r: &ImageRef) -> &[u8] {
    &r.build_id[..(r.build_id_len as usize).min(r.build_id.len())]
}

/// Runs reconcile on the descriptor's request and the record half: the exported set is
/// where the descriptor says, the converted set goes right after it. A refusal's reason
/// is written into the descriptor (`failure`).
fn reconcile(d: &mut Descriptor, half: &mut [u8]) -> Result<Reconciled, ()> {
    let (old, new) = (d.old_image, d.new_image);
    let running = Running {
        version: version_of(old.version),
        caps_provided: Capabilities::from_bits_retain(old.caps_provided),
        build_id: build_id(&old),
    };
    let request = Request {
        abi_version: d.abi_version,
        magic_ok: d.magic == DESCRIPTOR_MAGIC,
        layout_fingerprint: d.layout_fingerprint,
        inject_failure: d.inject & inject::RECONCILE_FAIL != 0,
        inject_converter: (d.inject & inject::CONVERTER_FAIL != 0)
            .then(|| {
                updater::records::RecordKind::try_new(
                    (d.inject >> inject::CONVERTER_KIND_SHIFT) as u16,
                )
                .ok()
            })
            .flatten(),
    };
    let exported = d.exported;
    let end = (exported.at.saturating_add(exported.len) as usize)
        .next_multiple_of(8)
        .min(half.len());
    let (exported_part, out) = half.split_at_mut(end);
    let image = identity::image(build_id(&new));
    let result = reconcile::reconcile::<TaskEntry, _>(
        request,
        &running,
        &image,
        exported_part,
        exported.at as usize,
        out,
        &mut DescriptorLog { d },
    );
    result.map_err(|refusal| {
        let mut text = FixedText::<160>::new();
        let _ = write!(text, "{refusal}");
        set_text(&mut d.failure, text.as_str());
    })
}

/// The bootstrap entry. Returns only to refuse (status [`REFUSED`]) or, in a dry run,
/// with [`PREFLIGHT_OK`].
///
/// # Safety
/// Called by the old kernel through `update::enter::call_bootstrap`: interrupts off,
/// every other CPU parked, on the hand-off stack, holding its descriptor guard, with
/// `descriptor` the hand-off descriptor prepared for this image.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hk_bootstrap(descriptor: *mut Descriptor) -> u64 {
    // SAFETY: caller contract: the descriptor is valid and exclusively ours.
    let d = unsafe { &mut *descriptor };
    // SAFETY: caller contract: the old kernel holds the guard and waits for us, and
    // the descriptor's record half is the one it exported into.
    let areas = unsafe { RecordAreas::for_bootstrap(d.record_half) };
    let dry_run = d.inject & inject::DRY_RUN != 0;
    match reconcile(d, areas.records) {
        Ok(r) => {
            d.converted = SetPlace {
                at: r.at as u64,
                len: (r.end - r.at) as u64,
            };
            d.tasks_after = r.tasks_kept;
            d.init_requirements = r.init_required;
            if dry_run {
                return PREFLIGHT_OK;
            }
            d.clock.reconciled.store(tsc::read(), Ordering::Relaxed);
            d.state
                .store(SwapState::Committed as u32, Ordering::Release);
            // The health window opens here, if the old kernel prepared one: until the
            // new kernel proves healthy, a failure takes the swap back (`arch::park`).
            // SAFETY: the bootstrap is the coordinating CPU's code; the old kernel filled
            // the undo log and waits; no other CPU runs.
            let undo = unsafe { crate::handoff_region::undo_mut() };
            let undo = (undo.deadline_tsc != 0).then(|| {
                undo.deadline_tsc += tsc::read();
                undo.armed.store(1, Ordering::Release);
                undo
            });
            // SAFETY: reconciliation succeeded; the overlay's contract is the
            // bootstrap's (interrupts off, others parked, on the hand-off stack).
            unsafe { overlay::overlay_and_resume(d, areas.reclaim, undo) }
        }
        Err(()) => {
            if !dry_run {
                d.state
                    .store(SwapState::RolledBack as u32, Ordering::Release);
            }
            REFUSED
        }
    }
}
