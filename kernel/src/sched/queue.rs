//! A CPU's run queue: the tasks that CPU steps, in round-robin order.
//!
//! The queue keeps its tasks as records, the way a swap hands them over: the task-table
//! entries in one [`Pool`], each kind's states in another ([`tasks::Pools`]), in queue
//! order — so an export copies each pool once, and after a swap the new kernel's queues
//! are the converted entries where they stand ([`RunQueue::adopt`]). What only this
//! kernel needs (when each task may run next, which pool holds its state) is beside
//! them in a slot per task.
//!
//! Only the owning CPU takes tasks out and puts them back while the kernel runs; other
//! CPUs touch a queue only while its owner is parked (export, snapshot), before it
//! starts (placement, import), or to read it (census), so the lock is uncontended in
//! the steady state. A step runs on a copy of the task, outside the lock, and the copy
//! is written back: a task never changes while its queue is locked by someone else.
//!
//! [`AllTasks`] holds every queue's lock at once, for a consistent view of every task
//! while the other CPUs are parked (export, snapshots, continuity).
#![deny(unsafe_code)]

use alloc::vec::Vec;

use spin::{Mutex, MutexGuard};

use image_format::TaskKind;
use updater::records::task_table::TaskEntry as _;

use crate::cpu::MAX_CPUS;
use crate::tasks::{self, KindIndex, Pool, Pools};

use super::task::{Task, TaskEntry};

/// What the scheduler keeps per task beside its records.
#[derive(Debug, Clone, Copy)]
struct Slot {
    kind: KindIndex,
    /// Its state's index in its kind's pool.
    state: u32,
    /// TSC value before which the task does not run.
    wake_at: u64,
}

/// The tasks of one queue.
pub struct Queue {
    entries: Pool<TaskEntry>,
    states: Pools,
    slots: Vec<Slot>,
    /// Where the round-robin search for a ready task starts.
    cursor: usize,
}

impl Queue {
    const fn new() -> Self {
        Queue {
            entries: Pool::new(),
            states: Pools::new(),
            slots: Vec::new(),
            cursor: 0,
        }
    }

    fn push(&mut self, task: Task) {
        let (kind, state) = self.states.push(task.state);
        super::health::note_present(kind);
        self.entries.push(task.entry);
        self.slots.push(Slot {
            kind,
            state,
            wake_at: 0,
        });
    }

    fn task(&self, i: usize) -> Task {
        let slot = self.slots[i];
        Task {
            entry: self.entries.as_slice()[i].clone(),
            state: self.states.get(slot.kind, slot.state),
        }
    }

    /// The kinds of the tasks queued (bit = `KindIndex`).
    pub fn kinds(&self) -> u64 {
        self.slots.iter().fold(0, |k, s| {
            k | 1u64.checked_shl(s.kind.get() as u32).unwrap_or(0)
        })
    }

    /// The task-table entries, in queue order.
    pub fn entries(&self) -> &[TaskEntry] {
        self.entries.as_slice()
    }

    /// The states, one pool per kind.
    pub fn states(&self) -> &Pools {
        &self.states
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Every task, in queue order (copies).
    pub fn tasks(&self) -> impl Iterator<Item = Task> + '_ {
        (0..self.len()).map(|i| self.task(i))
    }
}

/// A task taken out of its queue to be stepped; [`RunQueue::put_back`] returns it.
pub struct Taken {
    at: usize,
    pub kind: KindIndex,
    pub task: Task,
}

pub struct RunQueue {
    queue: Mutex<Queue>,
}

impl RunQueue {
    pub const fn new() -> Self {
        Self {
            queue: Mutex::new(Queue::new()),
        }
    }

    pub fn push(&self, task: Task) {
        self.queue.lock().push(task);
    }

    /// Replaces the queue with records a swap left: `entries` (the queue's task-table
    /// entries, in order) and `states` (their states, per kind in the same order).
    ///
    /// # Panics
    /// If an entry's kind is not this image's or the pools do not hold one state per
    /// task (the import checked both).
    pub fn adopt(&self, entries: Pool<TaskEntry>, states: Pools) {
        let mut next = [0u32; tasks::KINDS.len()];
        let slots: Vec<Slot> = entries
            .as_slice()
            .iter()
            .map(|e| {
                let kind = tasks::kind_index(e.kind()).expect("import kept only known kinds");
                let state = next[kind.get()];
                next[kind.get()] += 1;
                Slot {
                    kind,
                    state,
                    wake_at: 0,
                }
            })
            .collect();
        let mut present = 0u64;
        for (i, &n) in next.iter().enumerate() {
            if n > 0 {
                present |= 1 << i;
            }
            let kind = tasks::kind_index(tasks::KINDS[i].id).expect("a kind of this image");
            assert_eq!(
                states.len(kind) as u32,
                n,
                "{} states for {n} {} tasks",
                states.len(kind),
                tasks::KINDS[i].name
            );
        }
        super::health::note_present_all(present);
        *self.queue.lock() = Queue {
            entries,
            states,
            slots,
            cursor: 0,
        };
    }

    /// Takes the first task from the cursor on whose wake time has come (or the update
    /// service, when the doorbell rang), so that every task gets its turn.
    pub fn take_ready(&self, now: u64, doorbell: bool) -> Option<Taken> {
        let mut q = self.queue.lock();
        let n = q.len();
        for k in 0..n {
            let at = (q.cursor + k) % n;
            let slot = q.slots[at];
            let service = || tasks::KINDS[slot.kind.get()].id == TaskKind::SERVICE;
            if slot.wake_at <= now || (doorbell && service()) {
                q.cursor = at + 1;
                return Some(Taken {
                    at,
                    kind: slot.kind,
                    task: q.task(at),
                });
            }
        }
        None
    }

    /// Writes a stepped task back, to run again at `wake_at`.
    pub fn put_back(&self, taken: Taken, wake_at: u64) {
        let mut q = self.queue.lock();
        let slot = &mut q.slots[taken.at];
        slot.wake_at = wake_at;
        let (kind, state) = (slot.kind, slot.state);
        q.states.put(kind, state, taken.task.state);
        q.entries.as_mut_slice()[taken.at] = taken.task.entry;
    }

    /// Makes every task ready now (as after a swap, whose adopted tasks are all ready).
    pub fn wake_all(&self) {
        for s in self.queue.lock().slots.iter_mut() {
            s.wake_at = 0;
        }
    }

    /// Whether any task is ready at `now`.
    pub fn has_ready(&self, now: u64) -> bool {
        self.queue.lock().slots.iter().any(|s| s.wake_at <= now)
    }

    pub fn len(&self) -> usize {
        self.queue.lock().len()
    }

    /// Runs `f` over every task in the queue (copies, in order).
    pub fn for_each(&self, mut f: impl FnMut(&Task)) {
        for task in self.queue.lock().tasks() {
            f(&task);
        }
    }
}

type Guard = MutexGuard<'static, Queue>;

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
            *slot = Some(q.queue.lock());
        }
        AllTasks { guards }
    }

    /// Every queue, in CPU order.
    pub fn queues(&self) -> impl Iterator<Item = &Queue> + Clone + '_ {
        self.guards.iter().flatten().map(|g| &**g)
    }

    /// Every task, CPU by CPU, each queue in its order (copies).
    pub fn iter(&self) -> impl Iterator<Item = Task> + '_ {
        self.queues().flat_map(|q| q.tasks())
    }

    /// Every task with the index of the CPU whose queue holds it.
    pub fn by_cpu(&self) -> impl Iterator<Item = (usize, Task)> + '_ {
        self.guards
            .iter()
            .enumerate()
            .filter_map(|(cpu, g)| g.as_ref().map(|g| (cpu, g)))
            .flat_map(|(cpu, g)| g.tasks().map(move |t| (cpu, t)))
    }

    /// How many tasks.
    pub fn len(&self) -> usize {
        self.queues().map(Queue::len).sum()
    }
}
