//! What a task kind is: the one trait a kernel developer implements to add one.
//!
//! A kind is a stable id, a state record and a step function that runs to completion.
//! Everything per-kind elsewhere — the [`TaskState`](super::TaskState) enum, the step
//! dispatch, `observe`, export and import, the identity's schema table, both continuity
//! checks and the initialisation of kinds new to a machine — is derived from the list
//! in `tasks/mod.rs`, never written per kind. `docs/EXTENDING.md` walks through adding
//! one.

use updater::continuity::Clause;
use updater::convert::Step;
use updater::record::{Plain, Record};
use updater::records::TaskKind;

use crate::cpu::CpuId;
use crate::time::Duration;

use super::TaskState;

/// A task kind.
pub trait Kind {
    /// The kind's stable id. Never reused for another kind, even after this one is
    /// dropped (`image_format::kinds` lists the ids in use).
    const ID: TaskKind;
    /// Its name in logs, snapshots and reports.
    const NAME: &'static str;
    /// Its state, in the schema version this image reads and writes: a
    /// `#[derive(Record)]` struct without padding, so that the states of a run queue
    /// cross a swap as one copy and are adopted where they stand. A layout change is a
    /// new version; where the change is not mechanical (see `docs/EXTENDING.md`), a
    /// converter in [`STEPS`](Self::STEPS) too.
    type State: Record + Plain;
    /// The converters of its state this image carries (N → N+1 each).
    const STEPS: &'static [Step] = &[];
    /// Whether an image without this kind may drop its tasks (with a warning) instead
    /// of refusing the swap.
    const OPTIONAL: bool = false;
    /// What may change between two observations of one task: the rule both the
    /// kernel's self-check and the host apply to [`observe`](Self::observe)'s values.
    const CONTINUITY: &'static [Clause];
    /// The tasks to create when an image with this kind replaces one without it (the
    /// bootstrap's initialisation requirement). `None`: the kind starts with no tasks
    /// after such a swap (its tasks are created at first boot only).
    const INITIAL: Option<Initial<Self::State>> = None;

    /// Runs one step of a task; returns when it wants to run again.
    fn step(state: &mut Self::State, ctx: &Ctx<'_>) -> Next;

    /// Four numbers that show a task's progress (snapshots, the console, continuity).
    fn observe(state: &Self::State) -> [u64; 4];
}

/// The first tasks of a kind, created by the swap that brings the kind to a machine.
#[derive(Debug, Clone, Copy)]
pub struct Initial<S> {
    /// How many.
    pub tasks: usize,
    /// Their period.
    pub period_us: u32,
    /// The state of the `i`-th one.
    pub state: fn(usize) -> S,
}

/// What a step knows about where it runs.
pub struct Ctx<'a> {
    /// The CPU running the step.
    pub cpu: CpuId,
    /// The task's id.
    pub task: u32,
    /// Every task of the kernel, for kinds that report on the others (heartbeat).
    pub census: &'a dyn Census,
}

/// A view of every task (the scheduler provides it).
pub trait Census {
    /// Calls `f` with the state of every task on a run queue (not those being stepped
    /// at this instant on other CPUs).
    fn each(&self, f: &mut dyn FnMut(&TaskState));
}

/// When a task wants to run again.
#[derive(Debug, Clone, Copy)]
pub enum Next {
    /// After its period (from the task table).
    Period,
    /// After this long.
    After(Duration),
}

/// The record kind holding the states of kind `K` (for a state record's
/// `#[record(kind = …)]`).
pub const fn state_record<K: Kind>() -> updater::records::RecordKind {
    K::ID.state_record()
}

/// What the image says about one of its kinds (snapshots, identity, continuity).
#[derive(Debug, Clone, Copy)]
pub struct KindInfo {
    pub id: TaskKind,
    pub name: &'static str,
    pub continuity: &'static [Clause],
}

impl KindInfo {
    /// The description of kind `K`.
    pub const fn of<K: Kind>() -> KindInfo {
        KindInfo {
            id: K::ID,
            name: K::NAME,
            continuity: K::CONTINUITY,
        }
    }
}
