//! `hotkernel run`: build, boot, bridge the console, stop on `--seconds`, a signal
//! (Ctrl-C, SIGTERM, SIGHUP: [`super::signals`]) or `hotkernel stop`, and exit with the
//! guest's verdict.

use std::io;
use std::time::{Duration, Instant};

use super::{signals, RunArgs};
use crate::build::{self, CargoOutput, Variant};
use crate::error::{Error, Result};
use crate::qemu::GuestExit;
use crate::term::errln;
use crate::toolchain::{self, Needs};
use crate::vm::{KernelChoice, Vm, VmConfig};

/// How long the console's last bytes may take to reach the terminal once the VM ended.
const ECHO_DRAIN: Duration = Duration::from_secs(5);

pub fn run(args: RunArgs) -> Result<u8> {
    let kernel = match &args.kernel {
        Some(elf) => {
            toolchain::check(Needs::Qemu)?;
            KernelChoice::Elf(elf.clone())
        }
        None => {
            toolchain::check(Needs::BuildAndQemu)?;
            let variant = Variant::try_new(&args.variant)?;
            // Build with cargo's output on the terminal; the launch reuses this build.
            build::build_kernel_cached_with(&variant, CargoOutput::Inherit)?;
            KernelChoice::Variant(args.variant.clone())
        }
    };
    let seconds = args.seconds.map(Duration::from_secs_f64);
    let cfg = VmConfig {
        cpus: args.cpus,
        memory_mib: args.memory,
        accel: args.accel,
        kernel,
        name: Some(args.name.clone()),
        boot_opts: args
            .boot_opts
            .iter()
            .map(|o| (o.key.clone(), o.value.clone()))
            .collect(),
        echo_serial: true,
    };
    let vm = Vm::launch(cfg)?;
    errln!(
        "hotkernel: VM `{}`: {} CPUs, {} MiB, {}, kernel {} — {}",
        vm.name(),
        args.cpus,
        args.memory,
        args.accel.to_string().to_uppercase(),
        vm.kernel()
            .variant
            .as_ref()
            .map_or_else(|| vm.kernel().elf.display().to_string(), Variant::to_string),
        match seconds {
            Some(s) => format!("stops after {:.1} s (or Ctrl-C)", s.as_secs_f64()),
            None => "Ctrl-C stops it".to_owned(),
        }
    );
    errln!("hotkernel: console log {}", vm.console_log().display());
    if let Some(choice) = vm.coldpatch() {
        errln!("hotkernel: {}", choice.line);
    }
    forward_terminal_input(&vm)?;

    let started = Instant::now();
    let exit = match seconds {
        None => vm.wait_exit(Duration::MAX)?,
        Some(limit) => match vm.wait_exit(limit) {
            Ok(exit) => exit,
            Err(Error::Timeout { .. }) => vm.quit()?,
            Err(e) => return Err(e),
        },
    };
    let dropped = vm.drain_echo(ECHO_DRAIN);
    // The guest's last line may lack its newline.
    errln!();
    if dropped > 0 {
        errln!(
            "hotkernel: {dropped} bytes of the console were not shown (the terminal did not keep up); {} has them",
            vm.console_log().display()
        );
    }
    // QEMU's messages were already echoed to stderr as they came.
    let code = exit.runner_exit_code("")?;
    match exit {
        GuestExit::Stopped => errln!(
            "hotkernel: VM `{}` stopped{} after {:.1} s",
            vm.name(),
            signals::received().map_or_else(String::new, |s| format!(" by {}", signals::name(s))),
            started.elapsed().as_secs_f64()
        ),
        other => errln!("hotkernel: {other} (exit status {code})"),
    };
    Ok(code)
}

/// Lines typed on the terminal go to the guest's console (its shell).
fn forward_terminal_input(vm: &Vm) -> Result<()> {
    let mut console = vm.console_input()?;
    std::thread::Builder::new()
        .name("stdin".to_owned())
        .spawn(move || {
            let _ = io::copy(&mut io::stdin().lock(), &mut console);
        })
        .map_err(|e| Error::io("start the input thread", e))?;
    Ok(())
}
