//! Import: the new kernel turns the converted records into its own live state — the
//! machine record, the channels, the history, and the tasks, which it *adopts where
//! they stand*: each CPU's run queue takes its slice of the task table and of every
//! kind's states in the record half (the exported entries where their layout did not
//! change, the bootstrap's conversions where it did). Nothing is copied per task; the
//! half is this kernel's live records from now on (`handoff_region::adopt_half`).
//!
//! The small records are read first ([`read`]), while the half can still be read as a
//! set; then [`adopt_tasks`] splits it among the queues. The bootstrap validated the
//! set before committing, so a failure here is a bug in this image, not bad input: it
//! stops the kernel with a message rather than guessing.
#![deny(unsafe_code)]

use alloc::vec::Vec;

use spin::Mutex;
use updater::record::entries_mut;
use updater::records::machine::V1 as MachineRecord;
use updater::records::task_table::TaskEntry as _;
use updater::records::{history, kinds, patch_set, patch_sites, run_queues};
use updater::recordset::{EntriesMut, RecordSet};

use crate::cpu::CpuId;
use crate::sched::{self, TaskEntry};
use crate::tasks::{self, pipeline, Pool};

/// What a converted set carries besides the machine record and the tasks.
pub struct Carried {
    pub history: Vec<history::V2>,
    pub channels: Vec<pipeline::ChannelV1>,
    pub queues: Vec<run_queues::V1>,
    /// The sites of the patches in the set (used only when the set is this image's own:
    /// a reverted hotpatch window, `update::patch_window`).
    pub patch_sites: Vec<patch_sites::V1>,
}

/// The hotpatches the previous kernel had applied (their memory is freed once the swap
/// is reported).
static HANDED_OVER: Mutex<Vec<patch_set::V1>> = Mutex::new(Vec::new());

fn all<R: updater::record::Record>(set: &RecordSet<'_>) -> Vec<R> {
    set.find(R::KIND).map_or_else(Vec::new, |r| {
        r.decode::<R>()
            .map(|e| e.unwrap_or_else(|e| panic!("{} entry does not decode: {e}", R::KIND)))
            .collect()
    })
}

/// The machine record of a converted set (before the heap exists: no allocation).
pub fn machine(set: &RecordSet<'_>) -> MachineRecord {
    match set
        .find(kinds::MACHINE)
        .and_then(|r| r.decode::<MachineRecord>().next())
    {
        Some(Ok(m)) => m,
        Some(Err(e)) => panic!("machine record does not decode: {e}"),
        None => panic!("converted set has a machine record (checked by the bootstrap)"),
    }
}

/// Reads everything but the machine and the tasks out of the converted set.
pub fn read(set: &RecordSet<'_>) -> Carried {
    let patches = all::<patch_set::V1>(set);
    for p in &patches {
        crate::hotpatch::memory::adopt(p.memory, u64::from(p.pages) * 4096);
    }
    *HANDED_OVER.lock() = patches;
    Carried {
        history: all(set),
        channels: all(set),
        queues: all(set),
        patch_sites: all(set),
    }
}

/// What [`adopt_tasks`] placed: the tasks, and the record pools that held records with
/// how many of them were adopted where they stood. Counted as the queues take them:
/// a released CPU's first step of a task copies its pool to the heap (pools are read
/// only in place), so counting later would measure the CPUs' progress instead.
#[derive(Clone, Copy, Default)]
pub struct Adoption {
    pub tasks: usize,
    pub pools: usize,
    pub in_place: usize,
}

static ADOPTED: Mutex<Adoption> = Mutex::new(Adoption {
    tasks: 0,
    pools: 0,
    in_place: 0,
});

/// Keeps what [`adopt_tasks`] placed for the swap report's log line.
pub fn note_adopted(adoption: Adoption) {
    *ADOPTED.lock() = adoption;
}

/// What [`note_adopted`] kept.
pub fn adopted() -> Adoption {
    *ADOPTED.lock()
}

/// The previous kernel's hotpatches (once).
pub fn take_handed_over_patches() -> Vec<patch_set::V1> {
    core::mem::take(&mut *HANDED_OVER.lock())
}

/// The channels, before the tasks: the released CPUs step producers and consumers as
/// soon as their queues hold them, and must find the values in flight.
pub fn channels(channels: Vec<pipeline::ChannelV1>) {
    pipeline::import_channels(channels.into_iter());
}

/// Gives every CPU its tasks, where they stand in `half` (the converted set at `at`);
/// returns what was placed.
pub fn adopt_tasks(half: &'static mut [u8], at: usize, queues: &[run_queues::V1]) -> Adoption {
    let mut entries = EntriesMut::split(half, at)
        .unwrap_or_else(|e| panic!("converted set (checked by the bootstrap): {e}"));
    let (_, table) = entries
        .take(kinds::TASK_TABLE)
        .expect("task table (checked by the bootstrap)");
    let mut rest: &'static mut [TaskEntry] =
        entries_mut(table).unwrap_or_else(|e| panic!("task table in place: {e}"));
    let mut states = tasks::Adopter::new(&mut entries)
        .unwrap_or_else(|e| panic!("{} states in place: {}", e.kind, e.error));
    let mut placed = Adoption::default();
    for q in queues {
        let n = (q.tasks as usize).min(rest.len());
        let (mine, tail) = core::mem::take(&mut rest).split_at_mut(n);
        rest = tail;
        let mut counts = [0u32; tasks::KINDS.len()];
        let mut all_known = true;
        let mut highest = 0;
        for e in mine.iter() {
            highest = highest.max(e.id());
            match tasks::kind_index(e.kind()) {
                Some(k) => counts[k.get()] += 1,
                None => all_known = false, // optional, checked by the bootstrap
            }
        }
        // Ids are never reused, not even those of tasks dropped here.
        sched::reserve_ids_through(highest);
        let Some(pools) = states.take(&counts) else {
            panic!(
                "CPU {} lost task states between bootstrap and import",
                q.cpu
            )
        };
        let entries = if all_known {
            Pool::Adopted(mine)
        } else {
            Pool::Owned(
                mine.iter()
                    .filter(|e| tasks::kind_index(e.kind()).is_some())
                    .cloned()
                    .collect(),
            )
        };
        let (held, in_place) = pools.held();
        let has_entries = !entries.as_slice().is_empty();
        placed.tasks += entries.len();
        placed.pools += held + usize::from(has_entries);
        placed.in_place += in_place + usize::from(has_entries && entries.is_adopted());
        sched::adopt_queue(CpuId::new(q.cpu as usize), entries, pools);
    }
    placed
}

/// Creates the first tasks of every kind the bootstrap found new to the machine
/// (`bits`: bit `i` is `identity::KIND_IDS[i]`). Returns (kind, tasks created) of each.
pub fn meet_init_requirements(bits: u64) -> Vec<(updater::records::TaskKind, usize)> {
    let mut created = Vec::new();
    for (i, &kind) in crate::identity::KIND_IDS.iter().enumerate().take(64) {
        if bits & (1 << i) == 0 {
            continue;
        }
        let n = tasks::initial_tasks(kind, |state, period_us| {
            sched::place(sched::new_task(
                state,
                None,
                period_us,
                updater::records::task_table::flags::INITIALISED_BY_UPDATE,
            ))
        });
        if n > 0 {
            log::info!(
                "initialised {n} {} tasks (new kind in this image)",
                tasks::name(kind)
            );
            created.push((kind, n));
        }
    }
    *INITIALISED.lock() = created.clone();
    created
}

/// What [`meet_init_requirements`] created at this kernel's resume.
static INITIALISED: spin::Mutex<Vec<(updater::records::TaskKind, usize)>> =
    spin::Mutex::new(Vec::new());

/// The tasks this kernel created by initialisation at its resume, for the swap report.
pub fn initialised() -> Vec<image_format::mailbox::report::Initialised> {
    INITIALISED
        .lock()
        .iter()
        .take(image_format::mailbox::report::MAX_INITIALISED)
        .map(|&(kind, n)| image_format::mailbox::report::Initialised {
            kind,
            name: alloc::string::String::from(tasks::name(kind)),
            count: u32::try_from(n).unwrap_or(u32::MAX),
        })
        .collect()
}
