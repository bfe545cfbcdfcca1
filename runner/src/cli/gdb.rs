//! `hotkernel gdb [--vm NAME] [-- GDB-ARGS…]`: sets GDB up for the VM ([`crate::gdb`])
//! and becomes it (`exec`), so the terminal, Ctrl-C (which stops the guest in GDB) and
//! GDB's exit status are GDB's own.

use std::os::unix::process::CommandExt;

use clap::Args;

use super::VmArgs;
use crate::error::{Error, Result};
use crate::gdb;
use crate::mailbox::Mailbox;
use crate::term::errln;
use crate::toolchain::{self, Needs};
use crate::vm::VmState;

/// Options of `hotkernel gdb`.
#[derive(Debug, Clone, Args)]
pub struct GdbArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Arguments for gdb, after `--` (e.g. `-- -batch -ex 'info symbol 0x…'`).
    #[arg(last = true, value_name = "GDB-ARGS")]
    pub gdb_args: Vec<String>,
}

pub fn gdb(args: GdbArgs) -> Result<u8> {
    toolchain::check(Needs::Gdb)?;
    let state = VmState::load(&args.vm.name)?;
    let mut mailbox = Mailbox::open(&state.paths)?;
    let session = gdb::prepare(&state, &mut mailbox)?;
    drop(mailbox);
    errln!(
        "hotkernel: gdb on VM `{}`: kernel {}{}; attaching stops the guest until you `continue` or `detach`",
        state.name,
        session.kernel_elf.display(),
        match session.patches.len() {
            0 => String::new(),
            1 => ", 1 hotpatch".to_owned(),
            n => format!(", {n} hotpatches"),
        }
    );
    let e = gdb::command(&session, &args.gdb_args).exec();
    Err(Error::io(format!("run {}", toolchain::GDB), e))
}
