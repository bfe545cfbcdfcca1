//! The scheduler: every CPU runs [`run`], stepping the ready tasks of its own run queue
//! round-robin and halting when none is ready.
//!
//! Between two steps the CPU passes the quiesce checkpoint, the safe point where it
//! parks when a swap or a patch asks it to: no task is ever stopped in the middle of a
//! step, so every task's state is whole when it is exported.

pub mod queue;
pub mod task;

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

pub use queue::RunQueue;
pub use task::{Task, TaskId};
use updater::records::entry::TaskEntry as _;
use x86_64::instructions::interrupts;

use crate::cpu::{self, CpuId};
use crate::time::{self, Duration};
use crate::{quiesce, tasks};

static NEXT_ID: AtomicU32 = AtomicU32::new(1);
/// Tasks this kernel placed (tasks never end; a swap hands them to the next kernel).
static TASKS: AtomicUsize = AtomicUsize::new(0);
static FIRST_STEP_LOGGED: AtomicBool = AtomicBool::new(false);

/// A fresh task id (ids are never reused; after a swap, numbering continues above the
/// highest imported id).
pub fn next_task_id() -> TaskId {
    TaskId(NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// Makes sure new ids start above `id`.
pub fn reserve_ids_through(id: u32) {
    NEXT_ID.fetch_max(id + 1, Ordering::Relaxed);
}

/// Places `task` on its pinned CPU, or else on the registered CPU with the fewest tasks.
pub fn place(task: Box<Task>) {
    TASKS.fetch_add(1, Ordering::Relaxed);
    let target = match task.entry.affinity() {
        Some(cpu) if (cpu as usize) < cpu::count() => CpuId::new(cpu as usize),
        _ => cpu::all()
            .min_by_key(|c| c.queue.len())
            .map(|c| c.id)
            .unwrap_or(CpuId::BSP),
    };
    cpu::get(target)
        .expect("target CPU is registered")
        .queue
        .push(task);
}

/// Places `tasks` in order as [`place`] would, but takes each run queue's lock once:
/// after a swap the released CPUs already run their schedulers while the BSP imports,
/// and a lock per task would make the import contend with them.
pub fn place_all(tasks: alloc::vec::Vec<Box<Task>>) {
    TASKS.fetch_add(tasks.len(), Ordering::Relaxed);
    let mut lens = [usize::MAX; cpu::MAX_CPUS];
    for c in cpu::all() {
        lens[c.id.index()] = c.queue.len();
    }
    let mut batches: [alloc::vec::Vec<Box<Task>>; cpu::MAX_CPUS] =
        core::array::from_fn(|_| alloc::vec::Vec::new());
    for task in tasks {
        let target = match task.entry.affinity() {
            Some(cpu) if (cpu as usize) < cpu::count() => cpu as usize,
            _ => (0..cpu::MAX_CPUS)
                .min_by_key(|&i| lens[i])
                .unwrap_or(CpuId::BSP.index()),
        };
        lens[target] = lens[target].saturating_add(1);
        batches[target].push(task);
    }
    for c in cpu::all() {
        let batch = core::mem::take(&mut batches[c.id.index()]);
        if !batch.is_empty() {
            c.queue.push_all(batch);
        }
    }
}

/// Total tasks on all run queues.
pub fn task_count() -> usize {
    TASKS.load(Ordering::Relaxed)
}

/// The calling CPU's scheduler loop.
pub fn run() -> ! {
    let me = cpu::current();
    // When this CPU schedules again: the end of a swap's downtime for it.
    crate::update::handoff::park_control().slots[me.id.index()]
        .resumed_tsc
        .store(time::now().ticks(), Ordering::Relaxed);
    me.online.store(true, Ordering::Release);
    loop {
        quiesce::checkpoint();
        if me.id == CpuId::BSP {
            // Work that stops the other CPUs runs here, with no task in flight.
            crate::update::jobs::run_pending();
        }
        if !run_one(me) {
            // The `patch-d` variant (a hotpatch that must be refused: every CPU stands
            // in this loop) polls a few more times before halting.
            #[cfg(feature = "patch-d")]
            if (0..8).any(|_| run_one(me)) {
                continue;
            }
            idle(me);
        }
    }
}

/// Steps the first ready task of the calling CPU's queue; false if none was ready.
/// Kept out of line: the scheduler loop (every CPU stands in it) should not contain
/// the step dispatch, so changes to task code stay patchable.
#[inline(never)]
pub fn run_one(me: &'static cpu::Cpu) -> bool {
    let doorbell = me.id == CpuId::BSP && crate::update::service::kicked();
    let Some(mut task) = me.queue.pop_ready(time::now().ticks(), doorbell) else {
        return false;
    };
    let next = tasks::step(&mut task, me.id);
    task.entry.note_step(me.id.index() as u16);
    me.steps.fetch_add(1, Ordering::Relaxed);
    if me.first_step_tsc.load(Ordering::Relaxed) == 0 {
        me.first_step_tsc
            .store(time::now().ticks(), Ordering::Relaxed);
        if !FIRST_STEP_LOGGED.swap(true, Ordering::AcqRel) {
            log::info!("first task step ({} on {})", task.id(), me.id);
        }
    }
    let delay = match next {
        tasks::Next::Period => Duration::from_micros(task.entry.period_us() as u64),
        tasks::Next::After(d) => d,
    };
    task.wake_at = time::now().ticks() + time::duration_to_ticks(delay);
    me.queue.push(task);
    true
}

/// Halts until the next interrupt unless something is ready or a park was requested.
fn idle(me: &cpu::Cpu) {
    interrupts::disable();
    let urgent = quiesce::park_requested()
        || (me.id == CpuId::BSP
            && (crate::update::jobs::pending() || crate::update::service::kicked()));
    if urgent || me.queue.has_ready(time::now().ticks()) {
        interrupts::enable();
    } else {
        // `sti; hlt` is atomic with respect to interrupts: a wake IPI sent after the
        // check above ends the halt.
        interrupts::enable_and_hlt();
    }
}
