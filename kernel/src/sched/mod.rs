//! The scheduler: every CPU runs [`run`], stepping the ready tasks of its own run queue
//! round-robin and halting when none is ready.
//!
//! Between two steps the CPU passes the quiesce checkpoint, the safe point where it
//! parks when a swap or a patch asks it to: no task is ever stopped in the middle of a
//! step, so every task's state is whole when it is exported. On the bootstrap
//! processor the same point runs the coordinator's pending work (a swap, a patch, a
//! snapshot): the update layer registers it with [`set_coordinator`] at boot, so the
//! scheduler does not depend on it.
#![deny(unsafe_code)]

pub mod health;
pub mod queue;
pub mod task;

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

pub use queue::{AllTasks, RunQueue};
use spin::Once;
pub use task::{Task, TaskEntry, TaskId, TASK_TABLE_STEPS};
use updater::records::task_table::TaskEntry as _;
use x86_64::instructions::interrupts;

use crate::cpu::{self, CpuId, MAX_CPUS};
use crate::tasks::{self, Census, Ctx, TaskState};
use crate::time::{self, Duration};
use crate::{drivers, handoff_region, quiesce};

static NEXT_ID: AtomicU32 = AtomicU32::new(1);
/// Tasks this kernel placed (tasks never end; a swap hands them to the next kernel).
static TASKS: AtomicUsize = AtomicUsize::new(0);
static FIRST_STEP_LOGGED: AtomicBool = AtomicBool::new(false);
/// One run queue per CPU.
static QUEUES: [RunQueue; MAX_CPUS] = [const { RunQueue::new() }; MAX_CPUS];

/// What the bootstrap processor runs at its checkpoint, and whether it has work.
struct Coordinator {
    run: fn(),
    pending: fn() -> bool,
}

static COORDINATOR: Once<Coordinator> = Once::new();

/// Registers the coordinator's work (boot and resume, before scheduling starts).
pub fn set_coordinator(run: fn(), pending: fn() -> bool) {
    COORDINATOR.call_once(|| Coordinator { run, pending });
}

/// The run queue of CPU `cpu`.
pub fn queue(cpu: CpuId) -> &'static RunQueue {
    &QUEUES[cpu.index()]
}

/// Every task of every registered CPU, with each queue locked (only while the other
/// CPUs are parked, or for a moment: the owners cannot schedule meanwhile).
pub fn lock_all() -> AllTasks {
    AllTasks::lock(cpu::all().map(|c| queue(c.id)))
}

/// A fresh task id (ids are never reused; after a swap, numbering continues above the
/// highest imported id).
pub fn next_task_id() -> TaskId {
    TaskId(NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// Makes sure new ids start above `id`.
pub fn reserve_ids_through(id: u32) {
    NEXT_ID.fetch_max(id + 1, Ordering::Relaxed);
}

/// A new task of `state`'s kind (its task-table entry created by this kernel).
pub fn new_task(state: TaskState, affinity: Option<CpuId>, period_us: u32, flags: u32) -> Task {
    let id = next_task_id();
    let entry = TaskEntry::create(
        id.0,
        state.kind(),
        affinity.map(|c| c.index() as u16),
        period_us,
        flags,
        crate::machine::boot_seq(),
    );
    Task { entry, state }
}

/// The CPU a task goes to: its pinned CPU, or the one whose queue is shortest by `len`.
fn target(task: &Task, len: impl Fn(usize) -> usize) -> usize {
    match task.entry.affinity() {
        Some(cpu) if (cpu as usize) < cpu::count() => cpu as usize,
        _ => (0..cpu::count()).min_by_key(|&i| len(i)).unwrap_or(0),
    }
}

/// Places `task` on its pinned CPU, or else on the registered CPU with the fewest tasks.
pub fn place(task: Task) {
    TASKS.fetch_add(1, Ordering::Relaxed);
    let to = target(&task, |i| QUEUES[i].len());
    QUEUES[to].push(task);
}

/// Gives CPU `cpu` the tasks a swap left for it, where they stand (see
/// [`RunQueue::adopt`]).
pub fn adopt_queue(cpu: CpuId, entries: tasks::Pool<TaskEntry>, states: tasks::Pools) {
    TASKS.fetch_add(entries.len(), Ordering::Relaxed);
    QUEUES[cpu.index()].adopt(entries, states);
}

/// The task kinds with tasks on some queue (bit = `KindIndex`), for a health window.
pub fn kinds_present() -> u64 {
    lock_all().queues().fold(0, |k, q| k | q.kinds())
}

/// Makes every task ready now: a health window opened without a swap sees every kind
/// step at once, not after its period (a heartbeat's is a second).
pub fn wake_all() {
    for c in cpu::all() {
        queue(c.id).wake_all();
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
    handoff_region::park_control().slots[me.id.index()]
        .resumed_tsc
        .store(time::now().ticks(), Ordering::Relaxed);
    me.online.store(true, Ordering::Release);
    // Pairs with the fence in `quiesce::park_others`: either the coordinator counts this
    // CPU, or this CPU's first checkpoint sees its request.
    core::sync::atomic::fence(Ordering::SeqCst);
    let coordinator = COORDINATOR.get().filter(|_| me.id == CpuId::BSP);
    loop {
        quiesce::checkpoint();
        health::note_scheduling(me.id);
        if let Some(c) = coordinator {
            // Work that stops the other CPUs runs here, with no task in flight.
            (c.run)();
        }
        if !run_one(me) {
            idle(me, coordinator);
        }
    }
}

/// Every task on a run queue, for a step that reports on the others.
struct Queues;

impl Census for Queues {
    fn each(&self, f: &mut dyn FnMut(&TaskState)) {
        for c in cpu::all() {
            queue(c.id).for_each(|t| f(&t.state));
        }
    }
}

/// Steps the first ready task of the calling CPU's queue; false if none was ready.
/// Kept out of line: the scheduler loop (every CPU stands in it) should not contain
/// the step dispatch, so changes to task code stay patchable.
#[inline(never)]
pub fn run_one(me: &'static cpu::Cpu) -> bool {
    let doorbell = me.id == CpuId::BSP && drivers::doorbell::rung();
    let q = queue(me.id);
    let Some(mut taken) = q.take_ready(time::now().ticks(), doorbell) else {
        return false;
    };
    let task = &mut taken.task;
    let ctx = Ctx {
        cpu: me.id,
        task: task.id().0,
        census: &Queues,
    };
    health::before_step();
    let next = tasks::step(&mut task.state, &ctx);
    task.entry.note_step(me.id.index() as u16);
    health::note_step(taken.kind);
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
    q.put_back(taken, time::now().ticks() + time::duration_to_ticks(delay));
    true
}

/// Halts until the next interrupt unless something is ready or a park was requested.
fn idle(me: &cpu::Cpu, coordinator: Option<&Coordinator>) {
    interrupts::disable();
    let urgent = quiesce::park_requested()
        || coordinator.is_some_and(|c| (c.pending)())
        || (me.id == CpuId::BSP && drivers::doorbell::rung());
    if urgent || queue(me.id).has_ready(time::now().ticks()) {
        interrupts::enable();
    } else {
        // `sti; hlt` is atomic with respect to interrupts: a wake IPI sent after the
        // check above ends the halt.
        interrupts::enable_and_hlt();
    }
}
