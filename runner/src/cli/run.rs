//! `hotkernel run`: build, boot, bridge the console, stop on `--seconds`, Ctrl-C or
//! `hotkernel stop`, and exit with the guest's verdict.

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::RunArgs;
use crate::build::{self, CargoOutput, Variant};
use crate::error::{Error, Result};
use crate::qemu::GuestExit;
use crate::toolchain::{self, Needs};
use crate::vm::{KernelChoice, Vm, VmConfig, VmHandle};

pub fn run(args: RunArgs) -> Result<u8> {
    // Installed first: a Ctrl-C while QEMU starts must not orphan it.
    let interrupts = Arc::new(Interrupts::default());
    {
        let interrupts = interrupts.clone();
        ctrlc::set_handler(move || interrupts.on_signal())
            .map_err(|e| Error::io("install the Ctrl-C handler", io::Error::other(e)))?;
    }
    let kernel = match &args.kernel {
        Some(elf) => {
            toolchain::check(Needs::Qemu)?;
            KernelChoice::Elf(elf.clone())
        }
        None => {
            toolchain::check(Needs::BuildAndQemu)?;
            let variant = Variant::try_new(&args.variant)?;
            // Build with cargo's output on the terminal; the launch reuses this build.
            let built = build::build_kernel_cached_with(&variant, CargoOutput::Inherit);
            if interrupts.pressed() {
                eprintln!("hotkernel: interrupted before the VM started");
                return Ok(130);
            }
            built?;
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
    if let Some(choice) = vm.coldpatch() {
        eprintln!("hotkernel: {}", choice.line);
    }
    interrupts.attach(vm.handle());
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
    // QEMU's messages were already echoed to stderr as they came.
    let code = exit.runner_exit_code("")?;
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
/// its own process group, so the terminal's signal reaches only the runner (and a
/// `cargo build` it is running).
#[derive(Default)]
struct Interrupts {
    presses: AtomicUsize,
    vm: Mutex<Option<VmHandle>>,
}

impl Interrupts {
    fn pressed(&self) -> bool {
        self.presses.load(Ordering::SeqCst) > 0
    }

    /// The signal handler (on its own thread).
    fn on_signal(&self) {
        let first = self.presses.fetch_add(1, Ordering::SeqCst) == 0;
        let vm = self.vm.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match vm {
            None => eprintln!("\nhotkernel: interrupted"),
            Some(vm) if first => {
                eprintln!("\nhotkernel: stopping (Ctrl-C again kills QEMU)");
                stop_or_kill(&vm);
            }
            Some(vm) => vm.kill(),
        }
    }

    /// The VM is up: from now on a signal stops it; one that came during the start
    /// stops it now.
    fn attach(&self, vm: VmHandle) {
        *self.vm.lock().unwrap_or_else(|e| e.into_inner()) = Some(vm.clone());
        if self.pressed() {
            stop_or_kill(&vm);
        }
    }
}

fn stop_or_kill(vm: &VmHandle) {
    if let Err(e) = vm.stop() {
        eprintln!("hotkernel: {e}; killing QEMU");
        vm.kill();
    }
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
