//! The task kinds this image knows, and what each kind's step does.
//!
//! A [`TaskState`] holds a task's state in the record version this image reads
//! (`schema.rs`); [`step`] maps the kind to this image's step function. After a swap the
//! new kernel maps the same kinds to its own functions, so the code of a task can change
//! while its state carries on.

pub mod counter;
pub mod heartbeat;
pub mod lcg;
pub mod pipeline;
pub mod service;
#[cfg(feature = "v3")]
pub mod table;
#[cfg(not(feature = "v3"))]
pub mod ticker;

use alloc::boxed::Box;

use updater::records::entry::TaskEntry as _;
use updater::records::TaskKind;

use crate::cpu::{self, CpuId};
use crate::sched::{self, Task};
use crate::schema;
use crate::time::Duration;

/// A task's state, by kind.
#[derive(Clone)]
pub enum TaskState {
    Counter(schema::Counter),
    Lcg(schema::Lcg),
    Producer(schema::Producer),
    Consumer(schema::Consumer),
    #[cfg(not(feature = "v3"))]
    Ticker(schema::Ticker),
    Heartbeat(schema::Heartbeat),
    Service(schema::Service),
    #[cfg(feature = "v3")]
    Table(schema::Table),
}

/// Advances a progress count by one step's worth. Inlined into several step functions,
/// so a change to it changes each of them (the `patch-b` variant, a multi-site hotpatch
/// test, counts two per step).
#[inline(always)]
pub fn tick(count: &mut u64) {
    #[cfg(not(feature = "patch-b"))]
    {
        *count += 1;
    }
    #[cfg(feature = "patch-b")]
    {
        *count += 2;
    }
}

/// When a task wants to run again.
#[derive(Debug, Clone, Copy)]
pub enum Next {
    /// After its period (from the task table).
    Period,
    /// After this long.
    After(Duration),
}

/// Runs one step of `task` on CPU `cpu`.
pub fn step(task: &mut Task, cpu: CpuId) -> Next {
    let id = task.id();
    match &mut task.state {
        TaskState::Counter(s) => counter::step(s, cpu),
        TaskState::Lcg(s) => lcg::step(s),
        TaskState::Producer(s) => pipeline::produce(s),
        TaskState::Consumer(s) => pipeline::consume(s, id),
        #[cfg(not(feature = "v3"))]
        TaskState::Ticker(s) => ticker::step(s),
        TaskState::Heartbeat(s) => heartbeat::step(s),
        TaskState::Service(s) => service::step(s),
        #[cfg(feature = "v3")]
        TaskState::Table(s) => table::step(s),
    }
}

/// What the demo workload consists of (boot options `tasks=`, `pace=`).
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Tasks in all (boot option `tasks=`); the demo kinds take what the fixed ones
    /// leave, half counters and half LCGs, at least 2.
    pub tasks: usize,
    /// Period of demo tasks, in microseconds.
    pub pace_us: u32,
}

fn spawn(kind: TaskKind, state: TaskState, affinity: Option<CpuId>, period_us: u32, flags: u32) {
    let id = sched::next_task_id();
    let entry = schema::TaskEntry::create(
        id.0,
        kind,
        affinity.map(|c| c.index() as u16),
        period_us,
        flags,
        crate::machine::boot_seq(),
    );
    sched::place(Box::new(Task {
        entry,
        state,
        wake_at: 0,
    }));
}

/// Creates the demo workload on the registered CPUs (first boot only; after a swap the
/// tasks come from the hand-off records).
pub fn spawn_demo(workload: Workload) {
    let cpus = cpu::count();
    spawn(
        TaskKind::SERVICE,
        TaskState::Service(schema::Service::default()),
        Some(CpuId::BSP),
        10_000,
        0,
    );
    spawn(
        TaskKind::HEARTBEAT,
        TaskState::Heartbeat(heartbeat::initial()),
        Some(CpuId::BSP),
        1_000_000,
        0,
    );
    let pace = workload.pace_us;
    // Service, heartbeat, two pipelines, and two tickers (before v3) or the table
    // tasks (v3) are always there.
    #[cfg(not(feature = "v3"))]
    let fixed = 8;
    #[cfg(feature = "v3")]
    let fixed = 6 + table::INITIAL_TASKS;
    let compute = workload.tasks.saturating_sub(fixed).max(2);
    for i in 0..compute {
        if i % 2 == 0 {
            spawn(
                TaskKind::COUNTER,
                TaskState::Counter(counter::initial()),
                None,
                pace,
                0,
            );
        } else {
            spawn(
                TaskKind::LCG,
                TaskState::Lcg(lcg::initial(i as u64)),
                None,
                pace,
                0,
            );
        }
    }
    // Two pipelines; each producer and consumer pinned to different CPUs when there
    // are two or more, so values cross between CPUs.
    for p in 0..2u32 {
        let channel = pipeline::create_channel();
        let producer_cpu = CpuId::new((1 + 2 * p as usize) % cpus);
        let consumer_cpu = CpuId::new((2 + 2 * p as usize) % cpus);
        spawn(
            TaskKind::PRODUCER,
            TaskState::Producer(pipeline::producer(channel)),
            Some(producer_cpu),
            pace,
            0,
        );
        spawn(
            TaskKind::CONSUMER,
            TaskState::Consumer(pipeline::consumer(channel)),
            Some(consumer_cpu),
            pace,
            0,
        );
    }
    #[cfg(not(feature = "v3"))]
    for _ in 0..2 {
        spawn(
            TaskKind::TICKER,
            TaskState::Ticker(ticker::initial()),
            None,
            pace * 10,
            updater::records::task_table::flags::OPTIONAL,
        );
    }
    #[cfg(feature = "v3")]
    table::spawn_initial(pace);
}

/// Four numbers that show a task's progress, for snapshots and progress lines:
/// counter `[count, stride, last_cpu, 0]`, lcg `[x, steps, seed, rule]`, producer
/// `[next, channel]`, consumer `[expected, sum, errors, channel]`, others their counters.
#[inline(never)]
pub fn observe(state: &TaskState) -> [u64; 4] {
    match state {
        TaskState::Counter(s) => counter::observe(s),
        TaskState::Lcg(s) => [s.x, s.steps, s.seed, schema::LCG_RULE.id],
        TaskState::Producer(s) => [s.next, s.channel as u64, 0, 0],
        TaskState::Consumer(s) => [s.expected, s.sum, s.errors, s.channel as u64],
        #[cfg(not(feature = "v3"))]
        TaskState::Ticker(s) => [s.ticks, 0, 0, 0],
        TaskState::Heartbeat(s) => [s.beats, 0, 0, 0],
        TaskState::Service(s) => [s.last_seq, s.staged, s.applied, s.refused],
        #[cfg(feature = "v3")]
        TaskState::Table(s) => [s.cursor, s.rounds as u64, s.crc as u64, 0],
    }
}

/// Creates what a swap's initialisation requirements ask for (bits from the bootstrap).
pub fn meet_init_requirements(bits: u64) {
    #[cfg(feature = "v3")]
    if bits & crate::update::bootstrap::requirement::CREATE_TABLE_TASKS != 0 {
        table::spawn_initial(1000);
        log::info!(
            "initialised {} table tasks (new kind in this image)",
            table::INITIAL_TASKS
        );
    }
    #[cfg(not(feature = "v3"))]
    let _ = bits;
}
