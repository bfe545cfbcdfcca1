//! `hotkernel watch [--vm NAME] [--run] [--tree DIR] [-v]`: rebuild on every save and
//! put the change into the running VM the cheapest safe way ([`crate::watch`]).
//!
//! Ctrl-C stops watching; the VM runs on — unless `--run` started it, then it stops
//! too. With `--run` the console and the `[watch]` lines share the terminal.

use std::path::PathBuf;

use clap::Args;

use super::VmArgs;
use crate::build::{self, CargoOutput, Variant};
use crate::error::Result;
use crate::toolchain::{self, Needs};
use crate::vm::{KernelChoice, Vm, VmConfig};
use crate::watch::{self, say, Options};
use crate::workspace;

/// Options of `hotkernel watch`.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Boot the VM (this tree's kernel, 4 CPUs) and watch in one terminal; Ctrl-C stops
    /// both.
    #[arg(long)]
    pub run: bool,
    /// CPUs of the VM `--run` boots.
    #[arg(long, default_value_t = 4, requires = "run", value_parser = clap::value_parser!(u32).range(1..=255))]
    pub cpus: u32,
    /// The workspace to watch and build (default: this checkout).
    #[arg(long, value_name = "DIR")]
    pub tree: Option<PathBuf>,
    /// Print every change's plan and report in full.
    #[arg(short, long)]
    pub verbose: bool,
}

pub fn watch(args: WatchArgs) -> Result<u8> {
    toolchain::check(if args.run {
        Needs::BuildAndQemu
    } else {
        Needs::Build
    })?;
    // Ctrl-C ends the watch (and stops the VM only if `--run` started it).
    super::signals::end_gracefully();
    let tree = args.tree.clone().unwrap_or_else(workspace::root);
    let mut opts = Options::new(&args.vm.name, &tree);
    opts.verbose = args.verbose;
    let vm = if args.run {
        // The first build of the tree is the one the VM boots: a copy of v1 in this
        // checkout, the tree's own otherwise.
        let kernel = if args.tree.is_none() {
            build::build_kernel_cached_with(&Variant::v1(), CargoOutput::Inherit)?;
            KernelChoice::Variant(Variant::DEFAULT.to_owned())
        } else {
            let built = build::build_tree(&tree, &opts.target_dir, "watch", CargoOutput::Inherit)?;
            KernelChoice::Elf(crate::plan::builds::keep(&args.vm.name, &built)?)
        };
        let cfg = VmConfig {
            kernel,
            name: Some(args.vm.name.clone()),
            echo_serial: true,
            ..VmConfig::default()
        }
        .cpus(args.cpus);
        let vm = Vm::launch(cfg)?;
        say(&format!(
            "VM `{}` booted ({} CPUs); its console follows, mixed with these lines",
            vm.name(),
            args.cpus
        ));
        Some(vm)
    } else {
        // Fails early, with the remedy, when no such VM runs.
        crate::vm::VmState::load(&args.vm.name)?;
        None
    };
    let vm_ended = || vm.as_ref().is_some_and(Vm::has_exited);
    watch::run(&opts, &|| {
        super::signals::received().is_some() || vm_ended()
    })?;
    if let Some(vm) = &vm {
        if !vm.has_exited() {
            say(&format!(
                "stopping VM `{}` (watch --run started it)",
                vm.name()
            ));
            vm.quit()?;
        } else {
            say(&format!("VM `{}` ended", vm.name()));
        }
    }
    Ok(0)
}
