//! A tiny console shell: lines typed on COM1 are commands (`help`, `tasks`, `mem`).
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
        "help" => crate::println!("commands: help, tasks, mem"),
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
        other => crate::println!("unknown command `{other}` (try `help`)"),
    }
}

fn task_steps(t: &sched::Task) -> u64 {
    use updater::records::task_table::TaskEntry as _;
    t.entry.steps()
}
