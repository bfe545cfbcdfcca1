//! The `hotkernel` command line.
//!
//! `hotkernel` alone (or with `run`'s options) is `hotkernel run`. Exit status: 0 when
//! the guest reported success or was stopped on request, 1 when it reported failure or
//! anything went wrong, 2 when the host lacks a tool (the message says what to install)
//! or the command line is wrong, 128 + the signal's number when SIGINT (130), SIGHUP
//! (129) or SIGTERM (143) ended it (every VM it ran is stopped first: [`signals`]).
//! Everything printed goes through [`crate::term`], so a closed terminal ends nothing.

mod bench;
mod build;
mod demo;
mod fuzz;
mod gdb;
mod key;
mod patch;
mod plan;
mod run;
pub mod signals;
mod soak;
pub(crate) mod update;
mod vmcmd;
mod watch;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::error::{Error, Result};
use crate::qemu::{Accel, BootOpt};
use crate::term::errln;

/// Build, boot and live-update the hotkernel kernel in QEMU.
#[derive(Debug, Parser)]
#[command(name = "hotkernel", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of `run`, the default command.
    #[command(flatten)]
    pub run: RunArgs,
}

/// The subcommands.
///
/// Adding one (`pack`, `inspect`, `push`, `swap`, `demo`, `bench`, `patch`): a variant
/// here with its own `Args` struct, a module `cli/<name>.rs` with
/// `pub fn <name>(args) -> Result<u8>` (the exit status), and one arm in [`dispatch`].
/// Commands that act on a running VM take [`VmArgs`] (`--vm NAME`) and find it with
/// [`crate::vm::VmState::load`].
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build the kernel, boot it and bridge its console to this terminal (the default).
    Run(RunArgs),
    /// Build a kernel variant and its boot image; print the ELF's path.
    Build(BuildArgs),
    /// Show a running VM.
    Status(VmArgs),
    /// Stop a running VM (QMP quit); its `hotkernel run` exits with status 0.
    Stop(VmArgs),
    /// Make an update package from a kernel ELF.
    Pack(update::PackArgs),
    /// Signing keys: new, list, export.
    Key(key::KeyArgs),
    /// Print a package's header (identity, compatibility, segments, digests).
    Inspect(update::InspectArgs),
    /// Send a package to a running VM; print the guest's verdict (and swap with --apply).
    Push(update::PushArgs),
    /// Build (or take) a package and swap the running VM's kernel to it.
    Swap(update::SwapArgs),
    /// List the running VM's tasks (a snapshot taken with every CPU stopped).
    Tasks(VmArgs),
    /// Headless demo: v1 → v2 → v3 with continuity checked after each swap.
    Demo(demo::DemoArgs),
    /// Benchmarks: delivery throughput, swap downtime, hotpatch pause.
    Bench(bench::BenchArgs),
    /// Hotpatches: make one from two builds; apply, list and remove them in a running VM.
    Patch(patch::PatchArgs),
    /// GDB on a running VM (its gdbstub), with the symbols of the kernel it runs now and
    /// of its applied hotpatches; arguments after `--` go to gdb.
    Gdb(gdb::GdbArgs),
    /// How a new build would go into the running VM (hotpatch, swap or refused) and why;
    /// changes nothing.
    Plan(plan::PlanArgs),
    /// Rebuild on every save and put the change into the running VM (hotpatch, swap, or
    /// nothing with the reason).
    Watch(watch::WatchArgs),
    /// Write mutated and random requests into a live guest's mailbox; check it survives.
    Fuzz(fuzz::FuzzArgs),
    /// Many swaps (v1 ⇄ twin) and hotpatch rounds on one VM, each checked for
    /// continuity and free memory; stops at the first discrepancy.
    Soak(soak::SoakArgs),
}

/// Options of `hotkernel run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Virtual CPUs.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=255))]
    pub cpus: u32,
    /// Guest memory.
    #[arg(long, value_name = "MiB", default_value_t = 512, value_parser = clap::value_parser!(u32).range(64..))]
    pub memory: u32,
    /// Accelerator: TCG (default) or KVM (opt-in; unreliable on some hosts).
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    pub accel: Accel,
    /// Stop the VM after this many seconds (exit status 0); default: run until the guest
    /// exits or Ctrl-C.
    #[arg(long, value_name = "S", value_parser = positive_seconds)]
    pub seconds: Option<f64>,
    /// Kernel variant to build and boot (`v1`, `v2`, `v3`, `broken`, …).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "v1",
        conflicts_with = "kernel"
    )]
    pub variant: String,
    /// Boot this kernel ELF instead of building one.
    #[arg(long, value_name = "ELF")]
    pub kernel: Option<PathBuf>,
    /// Name of the VM, for `status`, `stop` and the other commands' `--vm`.
    #[arg(long, value_name = "VM", default_value = "default")]
    pub name: String,
    /// Boot option for the kernel, `key=value` (repeatable): `mode=run|selftest|panic`,
    /// `log=info|debug|trace`, `tasks=N`, `pace=us`.
    #[arg(long = "boot-opt", value_name = "KEY=VALUE")]
    pub boot_opts: Vec<BootOpt>,
}

/// Options of `hotkernel build`.
#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Kernel variant (`v1` is this tree's kernel, the others are edit files in
    /// tests/variants/).
    #[arg(long, value_name = "NAME", default_value = "v1")]
    pub variant: String,
}

/// Which running VM a command acts on.
#[derive(Debug, Clone, Args)]
pub struct VmArgs {
    /// The VM's name (`hotkernel run --name`).
    #[arg(long = "vm", value_name = "NAME", default_value = "default")]
    pub name: String,
}

fn positive_seconds(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Ok(s),
        _ => Err(format!("`{text}` is not a positive number of seconds")),
    }
}

/// Runs one command; returns the exit status.
pub fn dispatch(cli: Cli) -> Result<u8> {
    match cli.command {
        None => run::run(cli.run),
        Some(Command::Run(args)) => run::run(args),
        Some(Command::Build(args)) => build::build(args),
        Some(Command::Status(args)) => vmcmd::status(args),
        Some(Command::Stop(args)) => vmcmd::stop(args),
        Some(Command::Pack(args)) => update::pack(args),
        Some(Command::Key(args)) => key::key(args),
        Some(Command::Inspect(args)) => update::inspect(args),
        Some(Command::Push(args)) => update::push(args),
        Some(Command::Swap(args)) => update::swap(args),
        Some(Command::Tasks(args)) => update::tasks(args),
        Some(Command::Demo(args)) => demo::demo(args),
        Some(Command::Bench(args)) => bench::bench(args),
        Some(Command::Patch(args)) => patch::patch(args),
        Some(Command::Gdb(args)) => gdb::gdb(args),
        Some(Command::Plan(args)) => plan::plan(args),
        Some(Command::Watch(args)) => watch::watch(args),
        Some(Command::Fuzz(args)) => fuzz::fuzz(args),
        Some(Command::Soak(args)) => soak::soak(args),
    }
}

/// The binary's `main`: parses, runs, reports.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before anything starts a VM: a signal while QEMU starts must not orphan it.
    if let Err(e) = signals::install() {
        errln!("hotkernel: {e}");
        return ExitCode::from(e.exit_code());
    }
    let result = dispatch(cli);
    if let Some(signal) = signals::received().filter(|_| !(signals::graceful() && result.is_ok())) {
        // What failed after a signal failed because of it (its VM was stopped).
        if result.is_err() {
            errln!(
                "hotkernel: {}: stopped before it finished; every VM it started is stopped",
                signals::name(signal)
            );
        }
        return ExitCode::from(signals::exit_status(signal));
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(Error::Setup { problems }) => {
            for problem in &problems {
                errln!("hotkernel: {problem}");
            }
            ExitCode::from(2)
        }
        Err(e) => {
            errln!("hotkernel: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("hotkernel").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn no_subcommand_means_run() {
        let cli = parse(&["--cpus", "2", "--seconds", "10"]);
        assert!(cli.command.is_none());
        assert_eq!((cli.run.cpus, cli.run.seconds), (2, Some(10.0)));
        let cli = parse(&[]);
        assert_eq!(
            (cli.run.cpus, cli.run.memory, cli.run.accel),
            (4, 512, Accel::Tcg)
        );
        assert_eq!(
            (cli.run.variant.as_str(), cli.run.name.as_str()),
            ("v1", "default")
        );
    }

    #[test]
    fn run_takes_every_option() {
        let cli = parse(&[
            "run",
            "--cpus",
            "8",
            "--memory",
            "1024",
            "--accel",
            "kvm",
            "--variant",
            "v2",
            "--name",
            "a",
            "--boot-opt",
            "mode=selftest",
            "--boot-opt",
            "log=debug",
        ]);
        let Some(Command::Run(run)) = cli.command else {
            panic!("not run")
        };
        assert_eq!((run.cpus, run.memory, run.accel), (8, 1024, Accel::Kvm));
        assert_eq!(run.variant, "v2");
        assert_eq!(
            run.boot_opts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["mode=selftest", "log=debug"]
        );
    }

    #[test]
    fn bad_command_lines_are_refused() {
        let refused = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("hotkernel").chain(args.iter().copied())).is_err()
        };
        assert!(refused(&["--cpus", "0"]));
        assert!(refused(&["--seconds", "0"]));
        assert!(refused(&["--seconds", "soon"]));
        assert!(refused(&["--accel", "hvf"]));
        assert!(refused(&["--boot-opt", "novalue"]));
        assert!(refused(&["--variant", "v2", "--kernel", "k.elf"]));
        assert!(
            refused(&["--cpus", "2", "status"]),
            "run options do not mix with a subcommand"
        );
    }

    #[test]
    fn pack_checks_against_an_elf_or_a_vm_but_not_both() {
        let Some(Command::Pack(pack)) = parse(&["pack", "k.elf", "-o", "k.hkp"]).command else {
            panic!("not pack")
        };
        assert_eq!((pack.against, pack.vm), (None, None));
        let Some(Command::Pack(pack)) =
            parse(&["pack", "k.elf", "-o", "k.hkp", "--against", "old.elf"]).command
        else {
            panic!("not pack")
        };
        assert_eq!(pack.against, Some(PathBuf::from("old.elf")));
        let Some(Command::Pack(pack)) =
            parse(&["pack", "k.elf", "-o", "k.hkp", "--vm", "a"]).command
        else {
            panic!("not pack")
        };
        assert_eq!(pack.vm.as_deref(), Some("a"));
        assert!(Cli::try_parse_from([
            "hotkernel",
            "pack",
            "k.elf",
            "-o",
            "k.hkp",
            "--against",
            "old.elf",
            "--vm",
            "a"
        ])
        .is_err());
    }

    #[test]
    fn swap_push_and_inspect_take_their_new_flags() {
        let Some(Command::Swap(swap)) = parse(&["swap", "--no-host-check"]).command else {
            panic!("not swap")
        };
        assert!(swap.no_host_check);
        let Some(Command::Swap(swap)) = parse(&["swap"]).command else {
            panic!("not swap")
        };
        assert!(!swap.no_host_check, "the host checks by default");
        let Some(Command::Push(push)) = parse(&["push", "p.hkp", "--no-host-check"]).command else {
            panic!("not push")
        };
        assert!(push.no_host_check);
        for flag in ["-v", "--verbose"] {
            let Some(Command::Inspect(inspect)) = parse(&["inspect", "p.hkp", flag]).command else {
                panic!("not inspect")
            };
            assert!(inspect.verbose);
        }
    }

    #[test]
    fn vm_commands_default_to_the_default_vm() {
        let Some(Command::Stop(stop)) = parse(&["stop"]).command else {
            panic!()
        };
        assert_eq!(stop.name, "default");
        let Some(Command::Status(status)) = parse(&["status", "--vm", "x"]).command else {
            panic!()
        };
        assert_eq!(status.name, "x");
    }
}
