//! `table` (new in image v3): a CRC-32 running over [`TABLE`], a 320 KiB lookup table
//! in this image's read-only data (it is what makes image v3 larger than v2 by more than
//! 256 KiB), one 1 KiB block per step.
//!
//! The kind needs initialisation when an image that has it replaces one that did not:
//! its tasks and their records do not exist yet. The bootstrap reports that requirement
//! and the resume path creates them ([`spawn_initial`]).

use alloc::boxed::Box;

use updater::records::entry::TaskEntry as _;
use updater::records::TaskKind;

use crate::sched::{self, Task};
use crate::schema::{self, Table};
use crate::tasks::{Next, TaskState};

/// Words in the table.
const WORDS: usize = 80 * 1024;
/// Bytes read per step.
const BLOCK: usize = 1024;
/// Tasks created when the kind first appears.
pub const INITIAL_TASKS: usize = 2;

/// The table: a xorshift sequence, computed at compile time.
pub static TABLE: [u32; WORDS] = {
    let mut t = [0u32; WORDS];
    let mut x: u32 = 0x2545_f491;
    let mut i = 0;
    while i < WORDS {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        t[i] = x;
        i += 1;
    }
    t
};

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

pub fn initial() -> Table {
    Table {
        cursor: 0,
        rounds: 0,
        crc: 0,
    }
}

#[inline(never)]
pub fn step(state: &mut Table) -> Next {
    let start = (state.cursor as usize) / 4 % WORDS;
    let words = &TABLE[start..(start + BLOCK / 4).min(WORDS)];
    let mut crc = !state.crc;
    for w in words {
        for b in w.to_le_bytes() {
            crc = CRC_TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
        }
    }
    state.crc = !crc;
    state.cursor += (words.len() * 4) as u64;
    if state.cursor as usize >= WORDS * 4 {
        state.cursor = 0;
        state.rounds += 1;
    }
    Next::Period
}

/// Creates the kind's first tasks (first boot of v3, or the first swap into v3).
pub fn spawn_initial(pace_us: u32) {
    for _ in 0..INITIAL_TASKS {
        let id = sched::next_task_id();
        let entry = schema::TaskEntry::create(
            id.0,
            TaskKind::TABLE,
            None,
            pace_us,
            updater::records::task_table::flags::INITIALISED_BY_UPDATE,
            crate::machine::boot_seq(),
        );
        sched::place(Box::new(Task {
            entry,
            state: TaskState::Table(initial()),
            wake_at: 0,
        }));
    }
}
