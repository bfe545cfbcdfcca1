//! What the guest tells the host: its status block, swap reports and snapshots, built
//! from the descriptor, the park slots and the run queues (types in
//! `image_format::mailbox`).
#![deny(unsafe_code)]

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use image_format::mailbox::report::{
    Conversion, KindInfo, Method, Outcome, PhaseId, PhaseTime, Snapshot, SwapReport, TaskSnapshot,
};
use image_format::mailbox::{GuestState, GuestStatus};
use image_format::{BuildId, ImageSummary, ImageVersion, Label, RecordKind, SchemaVersion};
use updater::handoff::{text, Descriptor, ImageRef};
use updater::records::task_table::TaskEntry as _;

use crate::drivers::mailbox::SharedMemory;
use crate::handoff_region;
use crate::memory::layout::STAGING_BUFFER;
use crate::{cpu, identity, machine, sched, tasks, time};

/// An image reference from the descriptor, as a report summary.
pub fn summary_of(r: &ImageRef) -> ImageSummary {
    let len = (r.build_id_len as usize).min(32);
    ImageSummary {
        version: ImageVersion::new(r.version[0], r.version[1], r.version[2]),
        build_id: BuildId::new(&r.build_id[..len]),
        label: Label::try_new(text(&r.label)).unwrap_or_default(),
    }
}

/// This image, as a report summary.
pub fn own_summary() -> ImageSummary {
    identity::this().summary(crate::image::build_id())
}

/// The status block for `state`.
pub fn guest_status(state: GuestState, heartbeat: u64, mailbox: &SharedMemory) -> GuestStatus {
    GuestStatus {
        boot_seq: machine::boot_seq(),
        heartbeat,
        state,
        cpus_online: cpu::online_count() as u32,
        tasks: sched::task_count() as u32,
        image: own_summary(),
        staging_capacity: STAGING_BUFFER.len,
        data_capacity: mailbox.data_capacity(),
        free_frames: crate::memory::free_frames(),
        patches: crate::hotpatch::count() as u32,
    }
}

/// The TSC at which every CPU was scheduling again (the end of the downtime).
fn all_scheduling() -> u64 {
    cpu::all()
        .map(|c| {
            handoff_region::park_control().slots[c.id.index()]
                .resumed_tsc
                .load(Ordering::Relaxed)
        })
        .max()
        .unwrap_or(0)
}

/// The swap described by `d`, with `outcome`.
pub fn swap_report(d: &Descriptor, outcome: Outcome) -> SwapReport {
    let c = &d.clock;
    let t = |v: &core::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    let applied = matches!(outcome, Outcome::Applied);
    // The swap is over when the BSP has placed every task and every CPU schedules again
    // (the CPUs released early set themselves up while the BSP imported).
    let end = if applied {
        all_scheduling().max(t(&c.reinitialised))
    } else {
        time::now().ticks()
    };
    let ns = |a: u64, b: u64| {
        if a == 0 || b == 0 {
            0
        } else {
            time::ticks_to_nanos(b.saturating_sub(a))
        }
    };
    let mut phases = Vec::new();
    let mut push = |phase, a, b| {
        if a != 0 && b != 0 {
            phases.push(PhaseTime {
                phase,
                ns: ns(a, b),
            });
        }
    };
    push(PhaseId::Quiesce, t(&c.park_ipi), t(&c.all_parked));
    push(PhaseId::Export, t(&c.all_parked), t(&c.exported));
    push(PhaseId::Reconcile, t(&c.exported), t(&c.reconciled));
    push(PhaseId::Overlay, t(&c.reconciled), t(&c.overlaid));
    push(PhaseId::Reinit, t(&c.overlaid), t(&c.reinitialised));
    if applied {
        // Released CPUs set themselves up while the BSP re-initialised: this phase starts
        // at their release and overlaps the previous one.
        push(PhaseId::Release, t(&c.all_released), end);
    }
    let conversions = d.conversions[..(d.conversion_count as usize).min(d.conversions.len())]
        .iter()
        .filter_map(|l| {
            Some(Conversion {
                kind: RecordKind::try_new(l.kind).ok()?,
                from: SchemaVersion::try_new(l.from).ok()?,
                to: SchemaVersion::try_new(l.to).ok()?,
                method: Method::from_code(l.method)?,
                entries: l.count,
                added: l.added,
                dropped: l.dropped,
                names: String::from(text(&l.names)),
            })
        })
        .collect();
    let mut warnings: Vec<String> = d.warnings[..(d.warning_count as usize).min(d.warnings.len())]
        .iter()
        .map(|w| String::from(text(w)))
        .collect();
    // The descriptor's logs hold a fixed number; the rest were counted.
    let unlisted = |count: u32, held: usize| (count as usize).saturating_sub(held);
    match unlisted(d.warning_count, d.warnings.len()) {
        0 => {}
        n => warnings.push(alloc::format!(
            "{n} more warnings not listed (the descriptor holds {})",
            d.warnings.len()
        )),
    }
    match unlisted(d.conversion_count, d.conversions.len()) {
        0 => {}
        n => warnings.push(alloc::format!(
            "{n} more conversion steps not listed (the descriptor holds {})",
            d.conversions.len()
        )),
    }
    SwapReport {
        from: summary_of(&d.old_image),
        to: summary_of(&d.new_image),
        tasks_before: d.tasks_before,
        tasks_after: if applied {
            d.tasks_after
        } else {
            d.tasks_before
        },
        cpus_parked: d.cpus_parked,
        downtime_ns: ns(t(&c.park_ipi), end),
        phases,
        conversions,
        warnings,
        outcome,
        old_image_base: d.old_image.base,
        new_image_base: d.new_image.base,
        staging_base: d.staging_base,
        initialised: if applied {
            crate::update::import::initialised()
        } else {
            Vec::new()
        },
    }
}

/// Every task, with every other CPU parked by the caller, and this image's kinds.
pub fn snapshot() -> Snapshot {
    let all = sched::lock_all();
    let tasks = all
        .by_cpu()
        .map(|(cpu, t)| TaskSnapshot {
            id: t.id().0,
            kind: t.kind().raw(),
            schema: identity::schema_of(t.kind().state_record()).map_or(0, |s| s.current().get()),
            cpu: cpu as u16,
            flags: t.entry.flags() as u16,
            steps: t.entry.steps(),
            values: tasks::observe(&t.state),
        })
        .collect();
    drop(all);
    Snapshot {
        tsc_hz: time::tsc_hz(),
        tsc: time::now().ticks(),
        tasks,
        kinds: tasks::KINDS
            .iter()
            .map(|k| KindInfo {
                id: k.id.raw(),
                name: String::from(k.name),
                continuity: k.continuity.iter().map(|c| c.encode()).collect(),
            })
            .collect(),
    }
}
