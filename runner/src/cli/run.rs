//! `hotkernel run`: build, boot, bridge the console, stop on `--seconds`, Ctrl-C or
//! `hotkernel stop`, and exit with the guest's verdict.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::RunArgs;
use crate::build::{self, CargoOutput, Variant};
use crate::error::{Error, Result};
use crate::qemu::GuestExit;
use crate::toolchain::{self, Needs};
use crate::vm::{KernelChoice, Vm, VmConfig};

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
    eprintln!(
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
    stop_on_interrupt(&vm)?;
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
    // The guest's last line may lack its newline.
    let _ = io::stdout().flush();
    eprintln!();
    let code = exit.runner_exit_code(&vm.qemu_stderr())?;
    match exit {
        GuestExit::Stopped => eprintln!(
            "hotkernel: VM `{}` stopped after {:.1} s",
            vm.name(),
            started.elapsed().as_secs_f64()
        ),
        other => eprintln!("hotkernel: {other} (exit status {code})"),
    }
    Ok(code)
}

/// Ctrl-C (and SIGTERM, SIGHUP) asks QEMU to quit; a second one kills it. QEMU runs in
/// its own process group, so the terminal's signal reaches only the runner.
fn stop_on_interrupt(vm: &Vm) -> Result<()> {
    let handle = vm.handle();
    let presses = AtomicUsize::new(0);
    ctrlc::set_handler(move || {
        if presses.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!("\nhotkernel: stopping (Ctrl-C again kills QEMU)");
            if let Err(e) = handle.stop() {
                eprintln!("hotkernel: {e}; killing QEMU");
                handle.kill();
            }
        } else {
            handle.kill();
        }
    })
    .map_err(|e| Error::io("install the Ctrl-C handler", io::Error::other(e)))
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
