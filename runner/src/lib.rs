//! `hotkernel`, the host side: builds kernels and boot images, runs them in QEMU, and
//! talks to the guest (console, QMP, and the shared-memory mailbox).
//!
//! The binary (`hotkernel`) is a thin layer over [`cli`]; the integration tests use
//! [`Vm`] directly. Module by concept:
//!
//! | module | concept |
//! | --- | --- |
//! | [`toolchain`] | is the host ready (QEMU, pinned nightly, components)? |
//! | [`build`] | kernel builds, one per variant |
//! | [`variant`] | variants as edit files applied to a scratch copy of the tree |
//! | [`coldpatch`] | applied hotpatches kept for a VM's next boot (double rename) |
//! | [`continuity`] | did every task carry on across an update (two snapshots)? |
//! | [`description`] | image descriptions (`.hk_schema`): read, printed, and compared before a push |
//! | [`diskimage`] | BIOS boot images |
//! | [`hotpatch`] | hotpatches: make from two builds, apply / list / remove, verify the text |
//! | [`gdb`] | `hotkernel gdb`: GDB on a VM's gdbstub with the running kernel's and patches' symbols |
//! | [`qemu`] | QEMU's command line and what its exit status means |
//! | [`serial`] | the guest console: timestamped lines, the bytes handed on |
//! | [`soak`] | `hotkernel soak`: many updates on one VM, each checked |
//! | [`term`] | the runner's own output: writes that tolerate a closed terminal, the console's echo |
//! | [`qmp`] | QEMU Machine Protocol client |
//! | [`mailbox`] | the shared-memory mailbox: requests, responses, reports |
//! | [`plan`] | the advisor: would a new build go in as a hotpatch, a swap, or be refused, and why |
//! | [`update`] | live-update operations: pack, stage, apply, snapshot |
//! | [`vm`] | a running VM, its state directory, its console log; is it still there |
//! | [`watch`] | `hotkernel watch`: rebuild on save, apply the cheapest safe way |
//! | [`fuzz`] | `hotkernel fuzz`: mutated requests into a live guest's mailbox, checked after each |
//! | [`cli`] | the `hotkernel` command |
//! | [`workspace`] | where things are on disk |
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
// Output goes through `term`, which survives a closed stdout or stderr.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod bench;
pub mod build;
pub mod cli;
pub mod coldpatch;
pub mod continuity;
pub mod demo;
pub mod description;
pub mod diskimage;
pub mod error;
pub mod fuzz;
pub mod gdb;
pub mod hotpatch;
pub mod keys;
pub mod mailbox;
pub mod plan;
pub mod qemu;
pub mod qmp;
pub mod report;
pub mod serial;
pub mod soak;
pub mod term;
pub mod toolchain;
pub mod update;
pub mod variant;
pub mod vm;
pub mod watch;
pub mod workspace;

pub use build::{build_kernel, build_kernel_cached, BuiltKernel, Variant};
pub use error::{Error, Result};
pub use qemu::{Accel, GuestExit};
pub use serial::SerialLine;
pub use vm::{BootedKernel, KernelChoice, Vm, VmConfig, VmHandle, VmPaths, VmState};
