//! A CPU's run queue: the tasks that CPU steps, in round-robin order.
//!
//! Only the owning CPU pops and pushes while the kernel runs; other CPUs touch a queue
//! only while its owner is parked (export, snapshot) or before it starts (spawn), so the
//! lock is uncontended in the steady state.
//!
//! [`AllTasks`] holds every queue's lock at once, for a consistent view of every task
//! while the other CPUs are parked (export, snapshots, continuity).

use alloc::boxed::Box;
use alloc::collections::VecDeque;

use spin::{Mutex, MutexGuard};

use image_format::TaskKind;

use crate::cpu::MAX_CPUS;

use super::task::Task;

pub struct RunQueue {
    tasks: Mutex<VecDeque<Box<Task>>>,
}

impl RunQueue {
    pub const fn new() -> Self {
        Self {
            tasks: Mutex::new(VecDeque::new()),
        }
    }

    pub fn push(&self, task: Box<Task>) {
        self.tasks.lock().push_back(task);
    }

    /// Appends `tasks` in order, under one acquisition of the lock.
    #[allow(
        clippy::vec_box,
        reason = "tasks move between queues as boxes: one pointer each"
    )]
    pub fn push_all(&self, tasks: alloc::vec::Vec<Box<Task>>) {
        self.tasks.lock().extend(tasks);
    }

    /// Takes the first task whose wake time has come (or the update service, when the
    /// doorbell rang), rotating the ones passed over to the back so that every task gets
    /// its turn.
    pub fn pop_ready(&self, now: u64, doorbell: bool) -> Option<Box<Task>> {
        let mut tasks = self.tasks.lock();
        for _ in 0..tasks.len() {
            let task = tasks.pop_front()?;
            if task.wake_at <= now || (doorbell && task.kind() == TaskKind::SERVICE) {
                return Some(task);
            }
            tasks.push_back(task);
        }
        None
    }

    /// Whether any task is ready at `now`.
    pub fn has_ready(&self, now: u64) -> bool {
        self.tasks.lock().iter().any(|t| t.wake_at <= now)
    }

    pub fn len(&self) -> usize {
        self.tasks.lock().len()
    }

    /// Runs `f` over every task in the queue (in order).
    pub fn for_each(&self, mut f: impl FnMut(&Task)) {
        for task in self.tasks.lock().iter() {
            f(task);
        }
    }
}

type Guard = MutexGuard<'static, VecDeque<Box<Task>>>;

/// Every task of a set of queues, with each queue's lock held (in CPU order). Holds no
/// heap memory: it is used in the stopped section of a swap.
pub struct AllTasks {
    guards: [Option<Guard>; MAX_CPUS],
}

impl AllTasks {
    /// Locks `queues` in order (at most [`MAX_CPUS`]).
    pub fn lock(queues: impl Iterator<Item = &'static RunQueue>) -> Self {
        let mut guards = [const { None }; MAX_CPUS];
        for (slot, q) in guards.iter_mut().zip(queues) {
            *slot = Some(q.tasks.lock());
        }
        AllTasks { guards }
    }

    /// Every task, CPU by CPU, each queue in its order.
    pub fn iter(&self) -> impl Iterator<Item = &Task> + Clone + '_ {
        self.guards
            .iter()
            .flatten()
            .flat_map(|g| g.iter().map(|t| &**t))
    }

    /// Every task with the index of the CPU whose queue holds it.
    pub fn by_cpu(&self) -> impl Iterator<Item = (usize, &Task)> + '_ {
        self.guards
            .iter()
            .enumerate()
            .filter_map(|(cpu, g)| g.as_ref().map(|g| (cpu, g)))
            .flat_map(|(cpu, g)| g.iter().map(move |t| (cpu, &**t)))
    }

    /// How many tasks.
    pub fn len(&self) -> usize {
        self.guards.iter().flatten().map(|g| g.len()).sum()
    }
}
