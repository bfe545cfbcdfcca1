//! A running VM: QEMU with the guest's console captured (in memory, in the VM's console
//! log, and on the terminal when asked), its state directory, and the ways it can end.
//! The CLI's `run` and the integration tests both go through [`Vm`].
//!
//! | module | what |
//! | --- | --- |
//! | [`state`] | the VM's directory, `state.json`, who owns a name |
//! | [`console`] | the console log kept across swaps, boots and the VM's end; panic reports |
//! | [`watch`] | is a VM still there, from any process; what happened when it is not |
//! | [`lock`] | one command at a time on a VM's mailbox |
//! | [`registry`] | every VM this process runs, for a signal handler to stop |
//! | [`slots`] | how many VMs one process runs at once |
//!
//! ```no_run
//! use std::time::Duration;
//! use hotkernel::{GuestExit, Vm, VmConfig};
//!
//! let vm = Vm::launch(VmConfig::variant("v1").boot_opt("mode", "selftest"))?;
//! vm.wait_for_line("selftest: all", Duration::from_secs(120))?;
//! assert_eq!(vm.wait_exit(Duration::from_secs(60))?, GuestExit::Success);
//! # Ok::<(), hotkernel::Error>(())
//! ```

mod config;
pub mod console;
mod kernel;
pub mod lock;
pub mod registry;
pub mod slots;
pub mod state;
pub mod watch;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, ChildStderr, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::build::Variant;
use crate::coldpatch::{self, BootChoice};
use crate::error::{Error, Result};
use crate::qemu::{describe_status, BootOpt, GuestExit, QemuSpec};
use crate::qmp::{self, Qmp, RunState};
use crate::serial::{self, LineWait, SerialLine, SerialLog};
use crate::term::{errln, Echo};
use crate::toolchain;
use console::ConsoleLog;

pub use config::{KernelChoice, VmConfig};
pub use kernel::BootedKernel;
pub use state::{VmPaths, VmState};

/// How long QEMU may take to open its console socket.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long QEMU may take to exit once told to quit.
const QUIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of console output quoted in errors.
const TAIL_LINES: usize = 30;

/// The QEMU process and, once it has ended, its status.
struct Process {
    child: Child,
    status: Option<ExitStatus>,
}

/// What the VM's threads and handles share.
struct Shared {
    log: Arc<SerialLog>,
    process: Mutex<Process>,
    exited: Condvar,
    stop_requested: AtomicBool,
    stderr: Mutex<String>,
    paths: VmPaths,
    console: ConsoleLog,
}

impl Shared {
    fn process(&self) -> MutexGuard<'_, Process> {
        self.process.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for QEMU to end and records its status (called once the console closed,
    /// i.e. QEMU is exiting, or after a kill), and how it ended in the console log.
    fn reap(&self) {
        let mut process = self.process();
        let mut ended = None;
        if process.status.is_none() {
            if let Ok(status) = process.child.wait() {
                process.status = Some(status);
                ended = Some(status);
            }
        }
        drop(process);
        if let Some(status) = ended {
            let exit = GuestExit::from_status(status, self.stop_requested());
            self.console.end(&match (exit, status.code()) {
                (GuestExit::Other(_), _) | (_, None) => exit.to_string(),
                (_, Some(code)) => format!("{exit} (QEMU status {code})"),
            });
        }
        self.exited.notify_all();
    }

    /// Waits until QEMU has ended and been reaped, or `deadline`. Returns whether it has.
    fn wait_exited(&self, deadline: Instant) -> bool {
        let mut process = self.process();
        loop {
            if process.status.is_some() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            process = self
                .exited
                .wait_timeout(process, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn kill(&self) {
        let mut process = self.process();
        if process.status.is_none() {
            let _ = process.child.kill();
        }
    }

    fn stop_requested(&self) -> bool {
        self.stop_requested.load(Ordering::SeqCst) || self.paths.stop_marker.exists()
    }

    /// Asks QEMU to quit through QMP; does not wait. Asking twice sends one `quit`.
    fn request_quit(&self) -> Result<()> {
        if self.stop_requested.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        self.send_quit(Duration::from_secs(10))
    }

    /// Sends QMP `quit` (connecting within `timeout`) unless QEMU has ended.
    fn send_quit(&self, timeout: Duration) -> Result<()> {
        if self.process().status.is_some() {
            return Ok(());
        }
        Qmp::connect(&self.paths.qmp_socket, timeout)?.quit()
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// A cloneable handle that can stop the VM from another thread (a Ctrl-C handler).
#[derive(Clone)]
pub struct VmHandle(Arc<Shared>);

impl VmHandle {
    /// Asks QEMU to quit (QMP `quit`); the VM's owner sees [`GuestExit::Stopped`].
    pub fn stop(&self) -> Result<()> {
        self.0.request_quit()
    }

    /// Kills QEMU at once.
    pub fn kill(&self) {
        self.0.stop_requested.store(true, Ordering::SeqCst);
        self.0.kill();
    }
}

/// A running VM. Dropping it kills QEMU and removes the VM's files but its console log.
pub struct Vm {
    name: String,
    kernel: BootedKernel,
    coldpatch: Option<BootChoice>,
    launched_at: Instant,
    shared: Arc<Shared>,
    console: Mutex<UnixStream>,
    echo: Option<Echo>,
    reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<()>>,
    claim: state::Claim,
    _slot: slots::Slot,
}

impl Vm {
    /// Builds the kernel (once per process and variant), makes its boot image, starts
    /// QEMU and connects its console. Returns once the console is connected (QEMU only
    /// starts the guest then, so every line is captured).
    pub fn launch(cfg: VmConfig) -> Result<Vm> {
        let boot_opts = cfg
            .boot_opts
            .iter()
            .map(|(k, v)| BootOpt::new(k, v))
            .collect::<Result<Vec<_>>>()?;
        let kernel = kernel::prepare(&cfg.kernel)?;
        let slot = slots::acquire();
        reap_stale_once();
        let name = cfg.name.clone().unwrap_or_else(state::unique_name);
        let claim = state::Claim::take(&name)?;
        let paths = claim.paths.clone();
        keep_booted_elf(&kernel.elf, &paths.booted_elf())?;
        // A named VM boots its kept coldpatch image, if it has one that checks and is not
        // below the VM's kept security floor (or is refused launch: see `coldpatch::boot`).
        let coldpatch = match &cfg.name {
            Some(name) => coldpatch::choose(name, &kernel.elf)?,
            None => None,
        };
        let boot_image = coldpatch
            .as_ref()
            .and_then(|c| c.image.clone())
            .unwrap_or_else(|| kernel.boot_image.clone());

        let spec = QemuSpec {
            cpus: cfg.cpus,
            memory_mib: cfg.memory_mib,
            accel: cfg.accel,
            boot_image: boot_image.clone(),
            serial_socket: paths.serial_socket.clone(),
            doorbell_socket: paths.doorbell_socket.clone(),
            qmp_socket: paths.qmp_socket.clone(),
            gdb_socket: paths.gdb_socket(),
            mailbox: paths.mailbox.clone(),
            boot_opts: boot_opts.clone(),
        };
        let console = ConsoleLog::open_for_boot(
            &paths.console_log(),
            &name,
            &format!(
                "kernel {} ({}), {} CPUs, {} MiB, {}, boot options `{}`, runner pid {}",
                kernel
                    .variant
                    .as_ref()
                    .map_or_else(|| "given by path".to_owned(), Variant::to_string),
                kernel.elf.display(),
                cfg.cpus,
                cfg.memory_mib,
                cfg.accel,
                boot_opts
                    .iter()
                    .map(BootOpt::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                std::process::id()
            ),
        )?;
        let echo = if cfg.echo_serial {
            Some(Echo::start().map_err(|e| Error::io("start the console echo thread", e))?)
        } else {
            None
        };
        let launched_at = Instant::now();
        let (shared, stderr_pipe) = registry::spawn_listed(|| {
            let mut child = spec.command().spawn().map_err(|e| Error::QemuStart {
                message: format!("cannot run {}: {e}", toolchain::QEMU),
                stderr: String::new(),
            })?;
            let stderr_pipe = child.stderr.take();
            let shared = Arc::new(Shared {
                log: Arc::new(SerialLog::default()),
                process: Mutex::new(Process {
                    child,
                    status: None,
                }),
                exited: Condvar::new(),
                stop_requested: AtomicBool::new(false),
                stderr: Mutex::new(String::new()),
                paths: paths.clone(),
                console,
            });
            Ok((shared, stderr_pipe))
        })?;
        let qemu_pid = shared.process().child.id();
        let stderr_reader =
            stderr_pipe.map(|pipe| spawn_stderr_reader(pipe, shared.clone(), cfg.echo_serial));

        // From here on, `Starting`'s drop kills QEMU if anything fails.
        let mut starting = Starting {
            shared: shared.clone(),
            stderr_reader,
            armed: true,
        };
        VmState {
            name: name.clone(),
            runner_pid: std::process::id(),
            qemu_pid,
            cpus: cfg.cpus,
            memory_mib: cfg.memory_mib,
            accel: cfg.accel,
            paths: paths.clone(),
            kernel_elf: kernel.elf.clone(),
            variant: kernel.variant.as_ref().map(Variant::to_string),
            boot_image,
            boot_opts: boot_opts.iter().map(BootOpt::to_string).collect(),
            started_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
        .store()?;

        // QEMU creates the console socket, then waits for this connection to start the guest.
        let mut qemu_still_starting = || match shared.process().child.try_wait() {
            Ok(Some(status)) => Err(Error::QemuStart {
                message: describe_status(status),
                stderr: String::new(),
            }),
            _ => Ok(()),
        };
        let stream = qmp::connect_retrying(
            &paths.serial_socket,
            START_TIMEOUT,
            &mut qemu_still_starting,
        )
        .map_err(|e| starting.with_stderr(e))?;
        let input = stream
            .try_clone()
            .map_err(|e| Error::io("duplicate the console socket", e))?;
        let reader = {
            let (copy, close) = (shared.clone(), shared.clone());
            let echo = echo.clone();
            let on_bytes = move |bytes: &[u8]| {
                copy.console.append(bytes);
                if let Some(echo) = &echo {
                    echo.send(bytes);
                }
            };
            serial::spawn_reader(stream, shared.log.clone(), on_bytes, move || close.reap())
                .map_err(|e| Error::io("start the console thread", e))?
        };
        let stderr_reader = starting.started();
        Ok(Vm {
            name,
            kernel,
            coldpatch,
            launched_at,
            shared,
            console: Mutex::new(input),
            echo,
            reader: Some(reader),
            stderr_reader,
            claim,
            _slot: slot,
        })
    }

    /// What the VM's coldpatch store made it boot (`None`: it has no store).
    pub fn coldpatch(&self) -> Option<&BootChoice> {
        self.coldpatch.as_ref()
    }

    /// The VM's name (its directory under `target/hotkernel/vm/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The VM's files: sockets, mailbox, state.
    pub fn paths(&self) -> &VmPaths {
        &self.claim.paths
    }

    /// The VM's console log (see [`console`]): kept after the VM ends.
    pub fn console_log(&self) -> &std::path::Path {
        self.shared.console.path()
    }

    /// Waits up to `timeout` for the console's echo to reach the terminal (a VM launched
    /// with [`VmConfig::echo_serial`]); returns how many bytes it dropped because the
    /// terminal did not keep up.
    pub fn drain_echo(&self, timeout: Duration) -> u64 {
        match &self.echo {
            Some(echo) => {
                echo.drain(timeout);
                echo.dropped()
            }
            None => 0,
        }
    }

    /// The kernel it booted.
    pub fn kernel(&self) -> &BootedKernel {
        &self.kernel
    }

    /// When QEMU was started.
    pub fn launched_at(&self) -> Instant {
        self.launched_at
    }

    /// A handle that can stop the VM from another thread.
    pub fn handle(&self) -> VmHandle {
        VmHandle(self.shared.clone())
    }

    /// Waits for the first console line containing `needle` (since boot). `timeout` is
    /// a hang guard: make it generous. Fails early if the VM ends first; either error
    /// quotes the last console lines.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> Result<SerialLine> {
        self.wait_for_line_from(0, needle, timeout)
    }

    /// Like [`Vm::wait_for_line`], among lines with index `from` or later (pass
    /// `earlier.index + 1` to wait for the next occurrence).
    pub fn wait_for_line_from(
        &self,
        from: usize,
        needle: &str,
        timeout: Duration,
    ) -> Result<SerialLine> {
        let what = format!("a console line containing `{needle}`");
        match self
            .shared
            .log
            .wait_for(from, deadline(timeout), |line| line.contains(needle))
        {
            LineWait::Found(line) => Ok(line),
            LineWait::TimedOut => Err(Error::Timeout {
                what,
                waited: timeout,
                tail: self.shared.log.tail(TAIL_LINES),
            }),
            LineWait::Closed => Err(Error::VmEnded {
                exit: self.describe_end(),
                what,
                tail: self.shared.log.tail(TAIL_LINES),
            }),
        }
    }

    /// Every console line so far.
    pub fn serial_lines(&self) -> Vec<SerialLine> {
        self.shared.log.lines()
    }

    /// The console output so far, as text.
    pub fn serial_log(&self) -> String {
        self.shared.log.text()
    }

    /// What QEMU wrote on stderr so far (without its "waiting for connection" notice).
    pub fn qemu_stderr(&self) -> String {
        self.shared.stderr()
    }

    /// Types `text` and a newline on the guest's console.
    pub fn send_line(&self, text: &str) -> Result<()> {
        let mut console = self.console.lock().unwrap_or_else(|e| e.into_inner());
        console
            .write_all(format!("{text}\n").as_bytes())
            .map_err(|e| Error::io("write to the guest console", e))
    }

    /// A second handle on the console socket, for forwarding a terminal's input.
    pub fn console_input(&self) -> Result<UnixStream> {
        let console = self.console.lock().unwrap_or_else(|e| e.into_inner());
        console
            .try_clone()
            .map_err(|e| Error::io("duplicate the console socket", e))
    }

    /// A fresh QMP session (QEMU serves one at a time: drop it when done).
    pub fn qmp(&self) -> Result<Qmp> {
        Qmp::connect(&self.paths().qmp_socket, Duration::from_secs(10))
    }

    /// QMP `query-status`.
    pub fn status(&self) -> Result<RunState> {
        self.qmp()?.query_status()
    }

    /// Whether QEMU has ended.
    pub fn has_exited(&self) -> bool {
        self.shared.process().status.is_some()
    }

    /// Waits up to `timeout` for QEMU to end and says how it ended.
    pub fn wait_exit(&self, timeout: Duration) -> Result<GuestExit> {
        let deadline = deadline(timeout);
        let mut process = self.shared.process();
        loop {
            if let Some(status) = process.status {
                return Ok(GuestExit::from_status(status, self.shared.stop_requested()));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Timeout {
                    what: "the VM to exit".to_owned(),
                    waited: timeout,
                    tail: self.shared.log.tail(TAIL_LINES),
                });
            }
            process = self
                .shared
                .exited
                .wait_timeout(process, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Stops the VM through QMP `quit` and waits for QEMU to end. A VM that already
    /// ended just reports how.
    pub fn quit(&self) -> Result<GuestExit> {
        if let Err(e) = self.shared.request_quit() {
            // QEMU may have exited between the check and the connection.
            if !self.has_exited() {
                return Err(e);
            }
        }
        self.wait_exit(QUIT_TIMEOUT)
    }

    /// Kills QEMU (SIGKILL) and waits for it.
    pub fn kill(&self) {
        self.shared.kill();
        self.shared.reap();
    }

    fn describe_end(&self) -> String {
        match self.wait_exit(Duration::from_secs(5)) {
            Ok(exit) => exit.to_string(),
            Err(_) => "console closed".to_owned(),
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.shared.stop_requested.store(true, Ordering::SeqCst);
        self.shared.kill();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.shared.reap();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        self.claim.release();
    }
}

/// A QEMU that has been spawned but whose console is not connected yet: dropping it
/// kills QEMU.
struct Starting {
    shared: Arc<Shared>,
    stderr_reader: Option<JoinHandle<()>>,
    armed: bool,
}

impl Starting {
    /// QEMU is up: hands over the stderr thread and no longer kills QEMU on drop.
    fn started(mut self) -> Option<JoinHandle<()>> {
        self.armed = false;
        self.stderr_reader.take()
    }

    /// Adds QEMU's stderr to a start-up error (QEMU has ended or is killed first).
    fn with_stderr(&mut self, error: Error) -> Error {
        self.shared.kill();
        self.shared.reap();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        match error {
            Error::QemuStart { message, .. } => Error::QemuStart {
                message,
                stderr: self.shared.stderr(),
            },
            other => Error::QemuStart {
                message: other.to_string(),
                stderr: self.shared.stderr(),
            },
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.shared.kill();
        self.shared.reap();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
    }
}

fn spawn_stderr_reader(pipe: ChildStderr, shared: Arc<Shared>, echo: bool) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name("qemu-stderr".to_owned())
        .spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                // QEMU announces that it waits for the console socket; that is expected.
                if line.contains("QEMU waiting for connection on") {
                    continue;
                }
                if echo {
                    errln!("{line}");
                }
                let mut stderr = shared.stderr.lock().unwrap_or_else(|e| e.into_inner());
                if stderr.len() < 64 * 1024 {
                    stderr.push_str(&line);
                    stderr.push('\n');
                }
            }
        })
        .expect("spawn a thread")
}

fn reap_stale_once() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(state::reap_stale);
}

/// Keeps the ELF the VM boots at `kept` for its life: a hard link (the build replaces
/// its copy by a rename, so the link keeps the old file), else a copy.
fn keep_booted_elf(elf: &std::path::Path, kept: &std::path::Path) -> Result<()> {
    let _ = std::fs::remove_file(kept);
    if std::fs::hard_link(elf, kept).is_ok() {
        return Ok(());
    }
    std::fs::copy(elf, kept)
        .map(|_| ())
        .map_err(|e| Error::io(format!("copy {} to {}", elf.display(), kept.display()), e))
}

fn deadline(timeout: Duration) -> Instant {
    let now = Instant::now();
    // "Forever" (Duration::MAX) saturates at a century.
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}
