//! `counter`: adds to a number each step.
//!
//! v1 adds 1. v2 (state v2) adds `stride` and remembers the CPU that stepped it.

use crate::cpu::CpuId;
use crate::schema::Counter;
use crate::tasks::Next;

#[cfg(not(any(feature = "v2", feature = "v3", feature = "broken")))]
pub fn initial() -> Counter {
    Counter { count: 0 }
}

#[cfg(any(feature = "v2", feature = "v3", feature = "broken"))]
pub fn initial() -> Counter {
    Counter {
        stride: 1,
        last_cpu: updater::records::counter::UNKNOWN_CPU,
        count: 0,
    }
}

/// Per-step increment of a v1 counter. The `patch-a` variant (a hotpatch test) makes it
/// 2, and `patch-e` (a patch stacked on patch-a's, replacing the same function) 3.
#[cfg(not(any(feature = "v2", feature = "v3", feature = "broken")))]
#[cfg(not(any(feature = "patch-a", feature = "patch-e")))]
const V1_INCREMENT: u64 = 1;
#[cfg(not(any(feature = "v2", feature = "v3", feature = "broken")))]
#[cfg(all(feature = "patch-a", not(feature = "patch-e")))]
const V1_INCREMENT: u64 = 2;
#[cfg(not(any(feature = "v2", feature = "v3", feature = "broken")))]
#[cfg(feature = "patch-e")]
const V1_INCREMENT: u64 = 3;

#[cfg(not(any(feature = "v2", feature = "v3", feature = "broken")))]
#[inline(never)]
pub fn step(state: &mut Counter, _cpu: CpuId) -> Next {
    state.count += V1_INCREMENT;
    Next::Period
}

#[cfg(any(feature = "v2", feature = "v3", feature = "broken"))]
#[inline(never)]
pub fn step(state: &mut Counter, cpu: CpuId) -> Next {
    state.count += state.stride as u64;
    state.last_cpu = cpu.index() as u32;
    Next::Period
}

#[cfg(not(any(feature = "v2", feature = "v3", feature = "broken")))]
pub fn observe(state: &Counter) -> [u64; 4] {
    [state.count, V1_INCREMENT, u64::MAX, 0]
}

#[cfg(any(feature = "v2", feature = "v3", feature = "broken"))]
pub fn observe(state: &Counter) -> [u64; 4] {
    [state.count, state.stride as u64, state.last_cpu as u64, 0]
}
