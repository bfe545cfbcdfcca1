//! The runner's own life, through the real `hotkernel` command in a process of its own:
//! a signal stops its VM even after its terminal went away, and a guest that dies while
//! the command waits for its answer is reported as dead, with its panic, at once.
//!
//! The tests wait for what the command prints (a console line, an error) and for its
//! exit, each within [`HANG_GUARD`]; nothing waits for a duration.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hotkernel::update::REQUEST_TIMEOUT;
use hotkernel::{workspace, KernelChoice};
use hotkernel_tests::{patches, Check, Guest, VmConfig, VmState, HANG_GUARD};

/// One VM at a time in this binary: the commands' VMs are not counted by the helpers'
/// slots.
static ONE_VM: Mutex<()> = Mutex::new(());

fn one_vm() -> std::sync::MutexGuard<'static, ()> {
    ONE_VM.lock().unwrap_or_else(|e| e.into_inner())
}

fn hotkernel() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hotkernel-cli"))
}

/// Waits for `child` to exit within [`HANG_GUARD`]; kills it (and fails) otherwise.
#[track_caller]
fn wait_exit(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the command") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: the command did not return within {HANG_GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` exists (a zombie counts as gone).
fn process_exists(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rfind(')')
            .and_then(|at| stat[at + 1..].split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
        Err(_) => false,
    }
}

/// `hotkernel run 2>&1 | tee`, then the reader goes away and `signal` arrives: the
/// command stops QEMU and returns with 128 + the signal's number.
fn signal_after_the_terminal_closed(signal: &str, number: i32) {
    let _one = one_vm();
    let kernel = patches::kernel("v1");
    let name = format!("lifecycle-{}-{}", signal.to_lowercase(), std::process::id());
    let (reader, writer) = std::io::pipe().expect("a pipe");
    let mut child = hotkernel()
        .args(["run", "--cpus", "2", "--name", &name, "--kernel"])
        .arg(&kernel.path)
        .stdin(Stdio::null())
        .stdout(writer.try_clone().expect("a second pipe end"))
        .stderr(writer)
        .spawn()
        .expect("starting `hotkernel run`");

    // The console's echo says the guest is up (and the command has published its state).
    let mut output = BufReader::new(reader);
    let mut seen = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        let n = output
            .read_line(&mut line)
            .expect("reading the command's output");
        assert!(n > 0, "the command ended before the guest was up:\n{seen}");
        seen.push_str(&line);
        if line.contains("CPUs online") {
            break;
        }
    }
    let state = VmState::load(&name).check("loading the VM's state.json");
    assert!(process_exists(state.qemu_pid), "QEMU is not running");
    // The terminal goes away: every later write of the command fails with EPIPE.
    drop(output);

    let kill = Command::new("kill")
        .args([format!("-{signal}"), child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(kill.success(), "kill -{signal} failed");
    let status = wait_exit(&mut child, signal);
    assert_eq!(
        status.code(),
        Some(128 + number),
        "{signal}: the command's status is {status}"
    );
    assert!(
        !process_exists(state.qemu_pid),
        "{signal}: QEMU (pid {}) still runs",
        state.qemu_pid
    );
    assert!(
        VmState::load(&name).is_err(),
        "{signal}: the VM's state is left behind"
    );
    let log = std::fs::read_to_string(state.paths.console_log()).expect("the console log");
    assert!(log.contains("CPUs online"), "{log}");
    assert!(
        log.contains("--- hotkernel: VM ended: stopped on request"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&state.paths.dir);
}

#[test]
fn sigterm_stops_the_vm_after_the_terminal_closed() {
    signal_after_the_terminal_closed("TERM", 15);
}

#[test]
fn sighup_stops_the_vm_after_the_terminal_closed() {
    signal_after_the_terminal_closed("HUP", 1);
}

#[test]
fn sigint_stops_the_vm_after_the_terminal_closed() {
    signal_after_the_terminal_closed("INT", 2);
}

/// The `apply-panic` kernel panics when asked to swap: `hotkernel swap` says the VM
/// died, quoting the panic and its location, instead of waiting for an answer until
/// its request times out.
#[test]
fn a_guest_that_dies_during_a_swap_is_reported_with_its_panic() {
    let _one = one_vm();
    let name = format!("lifecycle-dies-{}", std::process::id());
    let package = patches::package("twin");
    let dir = workspace::hotkernel_dir().join("test-tmp");
    std::fs::create_dir_all(&dir).expect("creating the test directory");
    let package_file = dir.join(format!("{name}.hkpkg"));
    std::fs::write(&package_file, &package).expect("writing the package");
    let guest = Guest::boot(
        VmConfig {
            kernel: KernelChoice::Elf(patches::kernel("apply-panic").path.clone()),
            name: Some(name.clone()),
            ..VmConfig::default()
        }
        .cpus(2),
    );

    let started = Instant::now();
    let mut child = hotkernel()
        .args(["swap", "--vm", &name, "--package"])
        .arg(&package_file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting `hotkernel swap`");
    let mut stderr = child.stderr.take().expect("the command's stderr");
    let mut stdout = child.stdout.take().expect("the command's stdout");
    let status = wait_exit(&mut child, "swap to a guest that dies");
    let elapsed = started.elapsed();
    let (mut err, mut out) = (String::new(), String::new());
    stderr.read_to_string(&mut err).expect("reading stderr");
    stdout.read_to_string(&mut out).expect("reading stdout");
    let _ = std::fs::remove_file(&package_file);

    assert_eq!(status.code(), Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        elapsed < REQUEST_TIMEOUT,
        "the command waited {elapsed:?}, as long as the request's timeout: {err}"
    );
    assert!(
        err.contains(&format!("VM `{name}` ended before answering request")),
        "{err}"
    );
    assert!(
        err.contains("deliberate panic on the swap request"),
        "the panic message is missing: {err}"
    );
    assert!(
        err.contains("kernel/src/update/requests.rs:"),
        "the panic's location is missing: {err}"
    );
    assert!(
        err.contains(&guest.vm.console_log().display().to_string()),
        "the console log is not named: {err}"
    );
    assert!(guest.vm.has_exited());
    let log = std::fs::read_to_string(guest.vm.console_log()).expect("the console log");
    assert!(log.contains("KERNEL PANIC"), "{log}");
    let dir = guest.vm.paths().dir.clone();
    drop(guest);
    assert!(
        Path::new(&dir).join("console.log").exists(),
        "the console log is kept after the VM ended"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
