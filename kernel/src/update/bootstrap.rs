//! The bootstrap: this image's code, run from the staging window by the old kernel,
//! before anything of the old kernel is overwritten.
//!
//! It checks the descriptor ABI, compares versions and capability fields with the
//! running image, converts every exported record to the versions this image reads
//! (the converter chain), validates the result against this image's task kinds, and
//! notes its initialisation requirements. Only when all of that succeeded does it commit
//! and run the overlay, which ends in this image's resume entry; otherwise it writes the
//! reason into the descriptor and returns to the old kernel, which resumes.
//!
//! It runs with this image's statics in the staging copy, no heap, no logger and no
//! interrupts, on the hand-off stack: everything it needs comes through the descriptor.

use core::sync::atomic::Ordering;

use updater::convert::{self, ReconcileLog};
use updater::handoff::{
    inject, set_text, ConversionLog, Descriptor, SwapState, DESCRIPTOR_MAGIC, HANDOFF_ABI_VERSION,
    MAX_CONVERSIONS, MAX_WARNINGS, PREFLIGHT_OK,
};
use updater::records::entry::TaskEntry as _;
use updater::records::task_table::flags as task_flags;
use updater::records::{RecordKind, SchemaVersion, TaskKind};
use updater::recordset::RecordSet;

use crate::arch::tsc;
use crate::identity;
use crate::schema;
use crate::update::{handoff_bytes, overlay};
use image_format::{Capabilities, ImageVersion};

/// Initialisation requirements (bits of `Descriptor::init_requirements`).
pub mod requirement {
    /// Create the first tasks of the `table` kind (it did not exist before this image).
    pub const CREATE_TABLE_TASKS: u64 = 1 << 0;
}

/// Status returned to the old kernel when the bootstrap refuses.
pub const REFUSED: u64 = 1;

struct DescriptorLog<'a> {
    d: &'a mut Descriptor,
}

impl DescriptorLog<'_> {
    fn warn(&mut self, args: core::fmt::Arguments<'_>) {
        let i = self.d.warning_count as usize;
        if i < MAX_WARNINGS {
            let mut buf = FixedText::<96>::new();
            let _ = core::fmt::write(&mut buf, args);
            set_text(&mut self.d.warnings[i], buf.as_str());
            self.d.warning_count += 1;
        }
    }
}

impl ReconcileLog for DescriptorLog<'_> {
    fn converted(&mut self, kind: RecordKind, from: SchemaVersion, to: SchemaVersion, count: u32) {
        let i = self.d.conversion_count as usize;
        if i < MAX_CONVERSIONS {
            self.d.conversions[i] = ConversionLog {
                kind: kind.get(),
                from: from.get(),
                to: to.get(),
                count,
                ..Default::default()
            };
            self.d.conversion_count += 1;
        }
    }
    fn dropped(&mut self, kind: RecordKind, version: SchemaVersion, entries: u32) {
        self.warn(format_args!(
            "dropped optional {kind} {version} ({entries} entries): this image does not read it"
        ));
    }
}

/// A formatter into a fixed buffer (the bootstrap has no heap).
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
    ImageVersion {
        major: raw[0],
        minor: raw[1],
        patch: raw[2],
    }
}

/// The checks and conversions; `Err` carries the reason.
fn reconcile(d: &mut Descriptor) -> Result<(), FixedText<160>> {
    use core::fmt::Write;
    let mut why = FixedText::<160>::new();
    if d.magic != DESCRIPTOR_MAGIC || d.abi_version != HANDOFF_ABI_VERSION {
        let _ = write!(
            why,
            "hand-off ABI {} is not this image's ({HANDOFF_ABI_VERSION})",
            d.abi_version
        );
        return Err(why);
    }
    // Versions: the running image must be one this image may replace.
    let old = version_of(d.old_image.version);
    let replaces = identity::IDENTITY.replaces();
    if !replaces.contains(old) {
        let _ = write!(
            why,
            "this image replaces versions {replaces}; the running kernel is {old}"
        );
        return Err(why);
    }
    // Capability fields: everything this image needs, the old one must provide.
    let provided = Capabilities::from_bits_retain(d.old_image.caps_provided);
    let missing = identity::IDENTITY.caps_required().missing_from(provided);
    if !missing.is_empty() {
        let _ = write!(
            why,
            "the running kernel lacks required capabilities {missing:?}"
        );
        return Err(why);
    }
    if d.inject & inject::RECONCILE_FAIL != 0 {
        let _ = write!(
            why,
            "injected reconciliation failure (test fault injection)"
        );
        return Err(why);
    }
    // Persistent data and data structures: the converter chain.
    let (exported, converted) = (d.exported, d.converted);
    // SAFETY: both areas are in the hand-off region, disjoint, and owned by the
    // coordinator (this CPU) for the duration of the swap.
    let (input, output) = unsafe {
        (
            handoff_bytes(exported.0, exported.1),
            handoff_bytes(converted.0, converted.1),
        )
    };
    let reads: [convert::Reads; 16] = {
        let mut r = [convert::Reads {
            kind: image_format::kinds::MACHINE,
            version: SchemaVersion::new(1),
        }; 16];
        for (slot, read) in r.iter_mut().zip(identity::reads()) {
            *slot = read;
        }
        r
    };
    let n_reads = identity::read_count().min(16);
    let len = {
        let mut log = DescriptorLog { d };
        match convert::reconcile(input, &reads[..n_reads], identity::STEPS, output, &mut log) {
            Ok(len) => len,
            Err(e) => {
                let _ = write!(why, "{e}");
                return Err(why);
            }
        }
    };
    d.converted.1 = len as u64;
    // Check the converted state against this image's own kinds.
    let set = match RecordSet::parse(&output[..len]) {
        Ok(s) => s,
        Err(e) => {
            let _ = write!(why, "converted records unreadable: {e}");
            return Err(why);
        }
    };
    let (kept, dropped) = match validate_tasks(&set) {
        Ok(counts) => counts,
        Err(e) => return Err(e),
    };
    if dropped > 0 {
        DescriptorLog { d }.warn(format_args!(
            "{dropped} optional tasks of kinds this image lacks will not be resumed"
        ));
    }
    d.tasks_after = kept;
    // Hotpatches: they fix the exact build they were made for. Into another build they
    // are dropped (that build is expected to contain the fixes, and the report names
    // each); into the same build the fixes would silently vanish, so refuse.
    if let Some(patches) = set.find(image_format::kinds::PATCH_SET) {
        let n = patches.header.entries;
        if n > 0 {
            let same_build = d.old_image.build_id == d.new_image.build_id
                && d.old_image.build_id_len == d.new_image.build_id_len;
            if same_build {
                let _ = write!(
                    why,
                    "the new image is the running build without its {n} hotpatch(es); remove them first or push a build that contains the fixes"
                );
                return Err(why);
            }
            let mut log = DescriptorLog { d };
            for p in patches
                .decode::<updater::records::patch_set::V1>()
                .flatten()
            {
                log.warn(format_args!(
                    "hotpatch {:016x} ({}) dropped: the new image is another build",
                    p.id,
                    updater::handoff::text(&p.label)
                ));
            }
        }
    }
    // Initialisation requirements: kinds new in this image start fresh.
    d.init_requirements = 0;
    if identity::knows_task_kind(TaskKind::TABLE)
        && set.find(TaskKind::TABLE.state_record()).is_none()
    {
        d.init_requirements |= requirement::CREATE_TABLE_TASKS;
    }
    Ok(())
}

/// Every task-table entry names a kind this image knows (or is optional), and every
/// kept task has exactly one state entry. Returns (kept, dropped).
fn validate_tasks(set: &RecordSet<'_>) -> Result<(u32, u32), FixedText<160>> {
    use core::fmt::Write;
    let mut why = FixedText::<160>::new();
    let Some(table) = set.find(image_format::kinds::TASK_TABLE) else {
        let _ = write!(why, "no task table was exported");
        return Err(why);
    };
    if let Err(e) = table.check_size::<schema::TaskEntry>(false) {
        let _ = write!(why, "{e}");
        return Err(why);
    }
    let (mut kept, mut dropped) = (0u32, 0u32);
    // Export writes states in task-table order, and conversion keeps the order, so the
    // n-th task of a kind owns the n-th entry of that kind's state record.
    let mut cursor = [0usize; 32];
    for (i, entry) in table.decode::<schema::TaskEntry>().enumerate() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let _ = write!(why, "task-table entry {i}: {e}");
                return Err(why);
            }
        };
        let kind = entry.kind();
        if !identity::knows_task_kind(kind) {
            if entry.flags() & task_flags::OPTIONAL != 0 {
                dropped += 1;
                continue;
            }
            let _ = write!(
                why,
                "task {} is of kind {} ({}), which this image does not have",
                entry.id(),
                kind.raw(),
                kind
            );
            return Err(why);
        }
        let Some(states) = set.find(kind.state_record()) else {
            let _ = write!(why, "task {} ({kind}) has no state record", entry.id());
            return Err(why);
        };
        let k = (kind.raw() as usize).min(cursor.len() - 1);
        let j = cursor[k];
        cursor[k] += 1;
        let found = j < states.header.entries as usize && {
            let e = states.entry(j);
            e.len() >= 4 && u32::from_le_bytes([e[0], e[1], e[2], e[3]]) == entry.id()
        };
        if !found {
            let _ = write!(why, "task {} ({kind}) has no state entry", entry.id());
            return Err(why);
        }
        kept += 1;
    }
    Ok((kept, dropped))
}

/// The bootstrap entry. Returns only to refuse (status [`REFUSED`]).
///
/// # Safety
/// Called by the old kernel through `update::enter::call_bootstrap`: interrupts off,
/// every other CPU parked, on the hand-off stack, with `descriptor` the hand-off
/// descriptor prepared for this image.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hk_bootstrap(descriptor: *mut Descriptor) -> u64 {
    // SAFETY: caller contract: the descriptor is valid and exclusively ours.
    let d = unsafe { &mut *descriptor };
    let dry_run = d.inject & inject::DRY_RUN != 0;
    match reconcile(d) {
        Ok(()) if dry_run => PREFLIGHT_OK,
        Ok(()) => {
            d.clock.reconciled.store(tsc::read(), Ordering::Relaxed);
            d.state
                .store(SwapState::Committed as u32, Ordering::Release);
            // SAFETY: reconciliation succeeded; the overlay's contract is the
            // bootstrap's (interrupts off, others parked, on the hand-off stack).
            unsafe { overlay::overlay_and_resume(d) }
        }
        Err(reason) => {
            set_text(&mut d.failure, reason.as_str());
            if !dry_run {
                d.state
                    .store(SwapState::RolledBack as u32, Ordering::Release);
            }
            REFUSED
        }
    }
}
