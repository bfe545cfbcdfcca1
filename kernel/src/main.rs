//! hotkernel: a small SMP kernel that replaces itself while it runs.
//!
//! Boot order is in [`boot`] and its mirror after a swap in [`resume`]; the live update
//! is in [`update`]. Architecture code lives in [`arch`], memory in [`memory`],
//! scheduling in [`sched`] and the task kinds in [`tasks`]. Imports run one way, from
//! `arch` up to `boot`/`resume` (the layers are in `docs/ARCHITECTURE.md`); the few
//! upward calls are hooks `boot::register_hooks` installs.
#![no_std]
#![no_main]
#![feature(abi_x86_interrupt)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod arch;
mod boot;
mod bootargs;
mod console;
mod continuity;
mod cpu;
mod drivers;
mod handoff_region;
mod history;
mod hotpatch;
mod identity;
mod image;
mod interrupts;
mod irq;
mod machine;
mod memory;
mod panic;
mod quiesce;
mod resume;
mod sched;
mod schema;
mod selftest;
mod shell;
mod smp;
mod tasks;
mod time;
mod update;

bootloader_api::entry_point!(boot::kernel_main, config = &boot::BOOTLOADER_CONFIG);
