//! What a health window waits for, as the scheduler sees it: every CPU scheduling
//! again, and every task kind this kernel has tasks of stepped at least once since the
//! swap (or the hotpatch) opened it. The update layer asks ([`missing`]) and decides (commit, or revert
//! when the window's deadline passes); this module only counts.
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::cpu::{self, CpuId};
use crate::tasks::{self, KindIndex};

/// Counting while a window is open.
static WATCHING: AtomicBool = AtomicBool::new(false);
/// Kinds with tasks on a queue, and kinds stepped (bit = `KindIndex`).
static PRESENT: AtomicU64 = AtomicU64::new(0);
static STEPPED: AtomicU64 = AtomicU64::new(0);
/// CPUs that passed their scheduler loop since the window opened (bit = CPU index).
static SCHEDULED: AtomicU64 = AtomicU64::new(0);

fn bit(kind: KindIndex) -> u64 {
    1u64.checked_shl(kind.get() as u32).unwrap_or(0)
}

/// Fault injection: the next task step on any CPU panics (the new kernel's first
/// scheduling round fails).
static FAIL_FIRST_STEP: AtomicBool = AtomicBool::new(false);

/// Makes the next task step panic (fault injection at resume).
pub fn fail_first_step() {
    FAIL_FIRST_STEP.store(true, Ordering::Release);
}

/// Before a task step: panics once if a test asked for it.
pub(super) fn before_step() {
    if FAIL_FIRST_STEP.load(Ordering::Relaxed) && FAIL_FIRST_STEP.swap(false, Ordering::AcqRel) {
        panic!(
            "injected failure in the new kernel's first scheduling round (test fault injection)"
        );
    }
}

/// Starts counting (at resume, with the window open).
pub fn watch() {
    STEPPED.store(0, Ordering::Relaxed);
    SCHEDULED.store(0, Ordering::Relaxed);
    WATCHING.store(true, Ordering::Release);
}

/// Starts counting with `kinds` the kinds that have tasks (a hotpatch's window: the
/// queues keep their tasks, nothing adopts them).
pub fn watch_present(kinds: u64) {
    PRESENT.store(kinds, Ordering::Relaxed);
    watch();
}

/// Stops counting (the window closed).
pub fn stop() {
    WATCHING.store(false, Ordering::Release);
}

/// A task of `kind` is on a queue.
pub(super) fn note_present(kind: KindIndex) {
    if WATCHING.load(Ordering::Relaxed) {
        PRESENT.fetch_or(bit(kind), Ordering::Relaxed);
    }
}

/// Kinds `kinds` have tasks (a queue adopted them).
pub(super) fn note_present_all(kinds: u64) {
    PRESENT.fetch_or(kinds, Ordering::Relaxed);
}

/// CPU `cpu` is in its scheduler loop (once per round).
pub(super) fn note_scheduling(cpu: CpuId) {
    if WATCHING.load(Ordering::Relaxed) {
        let b = 1u64.checked_shl(cpu.index() as u32).unwrap_or(0);
        if SCHEDULED.load(Ordering::Relaxed) & b == 0 {
            SCHEDULED.fetch_or(b, Ordering::Relaxed);
        }
    }
}

/// A task of `kind` finished a step.
pub(super) fn note_step(kind: KindIndex) {
    if WATCHING.load(Ordering::Relaxed) && STEPPED.load(Ordering::Relaxed) & bit(kind) == 0 {
        STEPPED.fetch_or(bit(kind), Ordering::Relaxed);
    }
}

/// What the window still waits for: the first CPU not scheduling yet, and the first
/// kind with tasks not stepped yet (`None`, `None`: healthy).
pub fn missing() -> (Option<CpuId>, Option<&'static str>) {
    let scheduled = SCHEDULED.load(Ordering::Acquire);
    let cpu = cpu::all()
        .find(|c| {
            !c.online.load(Ordering::Acquire)
                || scheduled & 1u64.checked_shl(c.id.index() as u32).unwrap_or(0) == 0
        })
        .map(|c| c.id);
    let waiting = PRESENT.load(Ordering::Acquire) & !STEPPED.load(Ordering::Acquire);
    let kind = (waiting != 0)
        .then(|| tasks::KINDS.get(waiting.trailing_zeros() as usize))
        .flatten()
        .map(|k| k.name);
    (cpu, kind)
}
