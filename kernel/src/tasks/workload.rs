//! The demo workload a first boot starts (boot options `tasks=`, `pace=`): the update
//! service and the heartbeat on CPU 0, counters and LCG streams, two producer/consumer
//! pipelines across CPUs, and two tickers. After a swap the tasks come from the
//! hand-off records instead.

use alloc::vec::Vec;

use updater::records::task_table::flags;

use super::{counter, heartbeat, lcg, pipeline, ticker, update_service, TaskState};
use crate::cpu::CpuId;

/// What the demo workload consists of.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// Tasks in all (boot option `tasks=`); the counters and LCGs take what the fixed
    /// ones leave, at least 2.
    pub tasks: usize,
    /// Period of demo tasks, in microseconds.
    pub pace_us: u32,
}

/// A task to create: its state and how the scheduler should run it.
pub struct NewTask {
    pub state: TaskState,
    pub affinity: Option<CpuId>,
    pub period_us: u32,
    /// Task-table flags (`updater::records::task_table::flags`).
    pub flags: u32,
}

fn task(state: TaskState, affinity: Option<CpuId>, period_us: u32, flags: u32) -> NewTask {
    NewTask {
        state,
        affinity,
        period_us,
        flags,
    }
}

/// The demo workload on `cpus` CPUs, in creation order.
pub fn demo(workload: Workload, cpus: usize) -> Vec<NewTask> {
    let pace = workload.pace_us;
    let mut out = Vec::with_capacity(workload.tasks.max(10));
    out.push(task(
        TaskState::Service(update_service::UpdateServiceV1::default()),
        Some(CpuId::BSP),
        10_000,
        0,
    ));
    out.push(task(
        TaskState::Heartbeat(heartbeat::initial()),
        Some(CpuId::BSP),
        1_000_000,
        0,
    ));
    // Service, heartbeat, two pipelines and two tickers are always there.
    let fixed = 8;
    let compute = workload.tasks.saturating_sub(fixed).max(2);
    for i in 0..compute {
        let state = if i % 2 == 0 {
            TaskState::Counter(counter::initial())
        } else {
            TaskState::Lcg(lcg::initial(i as u64))
        };
        out.push(task(state, None, pace, 0));
    }
    // Two pipelines; each producer and consumer pinned to different CPUs when there
    // are two or more, so values cross between CPUs.
    for p in 0..2usize {
        let channel = pipeline::create_channel();
        let producer_cpu = CpuId::new((1 + 2 * p) % cpus);
        let consumer_cpu = CpuId::new((2 + 2 * p) % cpus);
        out.push(task(
            TaskState::Producer(pipeline::producer(channel)),
            Some(producer_cpu),
            pace,
            0,
        ));
        out.push(task(
            TaskState::Consumer(pipeline::consumer(channel)),
            Some(consumer_cpu),
            pace,
            0,
        ));
    }
    for _ in 0..2 {
        out.push(task(
            TaskState::Ticker(ticker::initial()),
            None,
            pace * 10,
            flags::OPTIONAL,
        ));
    }
    out
}
