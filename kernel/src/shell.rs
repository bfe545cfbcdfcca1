//! A tiny console shell: lines typed on COM1 are commands (`help`, `tasks`, `mem`,
//! `alloc <MiB>`).
//!
//! The COM1 interrupt handler only queues bytes ([`push_byte`]); the heartbeat CPU runs
//! complete lines from task context ([`run_pending`]), where it may print and allocate.
#![deny(unsafe_code)]

use spin::Mutex;

use crate::{cpu, memory, sched, tasks};

const LINE_MAX: usize = 64;

struct LineBuffer {
    bytes: [u8; LINE_MAX],
    len: usize,
    ready: bool,
}

static LINE: Mutex<LineBuffer> = Mutex::new(LineBuffer {
    bytes: [0; LINE_MAX],
    len: 0,
    ready: false,
});

/// Called from the COM1 interrupt: appends a byte; a newline completes the line.
pub fn push_byte(byte: u8) {
    let mut line = LINE.lock();
    if line.ready {
        return; // the previous command has not run yet
    }
    match byte {
        b'\r' | b'\n' => line.ready = line.len > 0,
        _ if line.len < LINE_MAX => {
            let n = line.len;
            line.bytes[n] = byte;
            line.len += 1;
        }
        _ => {}
    }
}

/// Runs a completed command line, if any (task context).
pub fn run_pending() {
    let mut buf = [0u8; LINE_MAX];
    // The interrupt handler takes the same lock: hold it with interrupts off.
    let taken = x86_64::instructions::interrupts::without_interrupts(|| {
        let mut line = LINE.lock();
        if !line.ready {
            return None;
        }
        let n = line.len;
        buf[..n].copy_from_slice(&line.bytes[..n]);
        line.len = 0;
        line.ready = false;
        Some(n)
    });
    let Some(len) = taken else { return };
    let command = core::str::from_utf8(&buf[..len]).unwrap_or("").trim();
    match command {
        "help" => crate::println!("commands: help, tasks, mem, alloc <MiB>"),
        "tasks" => {
            for c in cpu::all() {
                sched::queue(c.id).for_each(|t| {
                    let v = tasks::observe(&t.state);
                    crate::println!(
                        "{:>6} {:<14} {} steps={:<10} {:?}",
                        t.id(),
                        tasks::name(t.kind()),
                        c.id,
                        task_steps(t),
                        v
                    );
                });
            }
            crate::println!("{} tasks", sched::task_count());
        }
        "mem" => {
            let (used, free) = memory::heap::usage();
            crate::println!(
                "frames free: {}  heap used: {used}  heap free: {free}",
                memory::free_frames()
            );
        }
        other => match other.strip_prefix("alloc ").map(str::trim) {
            Some(mib) => match mib.parse::<u64>() {
                Ok(mib) => alloc(mib),
                Err(_) => crate::println!("alloc: `{mib}` is not a number of MiB"),
            },
            None => crate::println!("unknown command `{other}` (try `help`)"),
        },
    }
}

/// Allocates `mib` MiB from the heap, writes every page of it and frees it again: shows
/// where in the heap region the memory is (after a swap to a larger heap, in its new
/// part) or why it cannot be had.
fn alloc(mib: u64) {
    let len = (mib * 1024 * 1024) as usize;
    let mut block: alloc::vec::Vec<u8> = alloc::vec::Vec::new();
    if block.try_reserve_exact(len).is_err() {
        let (used, free) = memory::heap::usage();
        crate::println!(
            "alloc: cannot allocate {mib} MiB: the heap is {} MiB ({used} bytes used, {free} free)",
            memory::layout::HEAP.len >> 20
        );
        return;
    }
    block.resize(len, 0);
    for page in block.chunks_mut(4096) {
        page[0] = 0xa5;
    }
    let start = block.as_ptr() as u64;
    let heap = memory::layout::HEAP;
    crate::println!(
        "alloc: {mib} MiB at {start:#x}..{:#x}, offsets {}..{} MiB of the {} MiB heap, every page written",
        start + len as u64,
        (start - heap.start) >> 20,
        (start + len as u64 - heap.start).div_ceil(1024 * 1024),
        heap.len >> 20
    );
}

fn task_steps(t: &sched::Task) -> u64 {
    use updater::records::task_table::TaskEntry as _;
    t.entry.steps()
}
