//! The run queues: how many tasks each CPU steps. The task table lists tasks CPU by CPU
//! (CPU 0's first, each queue in its order), so this record is what splits it again:
//! the new kernel gives CPU `cpu` the next `tasks` entries, and each kind's states in
//! the same order, where they stand.
//!
//! - V1: `cpu, tasks`.

use super::kinds;

#[derive(Debug, Clone, PartialEq, Eq, crate::Record)]
#[record(kind = kinds::RUN_QUEUES, version = 1)]
#[repr(C)]
pub struct V1 {
    /// The CPU's index.
    pub cpu: u32,
    /// Tasks on its queue.
    pub tasks: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::testing::round_trip;

    #[test]
    fn round_trips() {
        round_trip(&V1 {
            cpu: 3,
            tasks: 1024,
        });
    }
}
