//! Two commands against one VM at once are serialised on its mailbox lock, never
//! interleaved (`hotkernel::vm::lock`), through the real `hotkernel` command in
//! processes of their own:
//!
//! - two `push`es of one package: both get the whole verdict (`accepted …`);
//! - `swap` and `tasks` at once: the swap applies, and `tasks` lists one kernel's
//!   snapshot, whole (the header's task count is the number of task lines);
//! - `patch apply` and `swap` at once: one goes before the other, whole — the patch is
//!   applied to v1 and the swap then drops it, or the swap goes first and the patch
//!   (made for v1's build) is refused by twin; either way twin runs, unpatched;
//! - a command that may not wait (`HOTKERNEL_LOCK_WAIT=0`) is refused with a message
//!   naming the holder's command and pid.
//!
//! To make the commands overlap for certain, the test takes the VM's lock first,
//! starts both, waits until each has said it waits (`waiting for … to finish with VM`),
//! then lets go. Nothing waits for a duration.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use hotkernel::vm::lock;
use hotkernel::workspace;
use hotkernel_tests::{patches, Guest, VmConfig, HANG_GUARD};

/// A running `hotkernel` command: its stdout and stderr are read on threads; a line
/// of stderr saying it waits for the lock is signalled on `waiting`.
struct Running {
    child: Child,
    stdout: JoinHandle<String>,
    stderr: JoinHandle<String>,
}

fn start(args: &[&str], waiting: &mpsc::Sender<String>, env: &[(&str, &str)]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hotkernel-cli"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting hotkernel");
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let stdout = std::thread::spawn(move || std::io::read_to_string(out).unwrap_or_default());
    let waiting = waiting.clone();
    let what = args.join(" ");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if line.contains("to finish with VM") {
                let _ = waiting.send(what.clone());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    Running {
        child,
        stdout,
        stderr,
    }
}

/// Waits for the command (its output closes when it exits): exit code, stdout, stderr.
fn finish(mut r: Running) -> (Option<i32>, String, String) {
    let stdout = r.stdout.join().expect("stdout reader");
    let stderr = r.stderr.join().expect("stderr reader");
    let status = r.child.wait().expect("waiting for hotkernel");
    (status.code(), stdout, stderr)
}

/// The VM's lock, taken by this test: the commands started now must wait.
fn hold(g: &Guest) -> lock::MailboxLock {
    lock::acquire(g.vm.name(), g.vm.paths(), Duration::ZERO, |h| {
        panic!("the VM's mailbox lock is held by {h}")
    })
    .expect("taking the VM's mailbox lock")
}

/// Waits until `n` commands said they wait for the lock.
fn until_waiting(rx: &mpsc::Receiver<String>, n: usize) {
    for i in 0..n {
        if rx.recv_timeout(HANG_GUARD).is_err() {
            panic!("only {i} of {n} commands said they wait for the VM's lock");
        }
    }
}

/// `package` in a file the commands can read.
fn package_file(variant: &str, tag: &str) -> PathBuf {
    let dir = workspace::hotkernel_dir().join("test-tmp");
    std::fs::create_dir_all(&dir).expect("creating the test directory");
    let path = dir.join(format!("concurrent-{tag}-{}.hkpkg", std::process::id()));
    std::fs::write(&path, patches::package(variant)).expect("writing the package");
    path
}

#[test]
fn two_pushes_at_once_each_get_the_whole_verdict() {
    let g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let vm = g.vm.name().to_owned();
    let file = package_file("twin", "push");
    let file = file.to_str().expect("a UTF-8 path");
    let (tx, rx) = mpsc::channel();
    let held = hold(&g);
    let a = start(&["push", file, "--vm", &vm], &tx, &[]);
    let b = start(&["push", file, "--vm", &vm], &tx, &[]);
    until_waiting(&rx, 2);
    drop(held);
    for (name, r) in [("first", a), ("second", b)] {
        let (code, out, err) = finish(r);
        assert_eq!(code, Some(0), "{name} push:\n{out}\n{err}");
        assert!(
            err.contains("waiting for `concurrent-")
                && err.contains(&format!("to finish with VM `{vm}`")),
            "{name} push does not say whom it waited for: {err}"
        );
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines
                .first()
                .is_some_and(|l| l.starts_with("accepted 1.0.1 \"v1-twin\"")),
            "{name} push's verdict: {out}"
        );
        assert_eq!(
            lines.len(),
            3,
            "{name} push's whole verdict and nothing else: {out}"
        );
    }
    let _ = std::fs::remove_file(file);
}

#[test]
fn tasks_during_a_swap_lists_one_kernel_whole() {
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let vm = g.vm.name().to_owned();
    let tasks_before = g.snapshot().tasks.len();
    let file = package_file("twin", "swap");
    let file = file.to_str().expect("a UTF-8 path");
    let (tx, rx) = mpsc::channel();
    let held = hold(&g);
    let swap = start(&["swap", "--package", file, "--vm", &vm], &tx, &[]);
    let tasks = start(&["tasks", "--vm", &vm], &tx, &[]);
    until_waiting(&rx, 2);
    drop(held);
    let (code, out, err) = finish(swap);
    assert_eq!(code, Some(0), "swap:\n{out}\n{err}");
    assert!(
        out.starts_with("swapped 1.0.0 \"v1\" (build") && out.contains("→ 1.0.1 \"v1-twin\""),
        "{out}"
    );
    let (code, out, err) = finish(tasks);
    assert_eq!(code, Some(0), "tasks:\n{out}\n{err}");
    let mut lines = out.lines();
    let header = lines.next().unwrap_or_default();
    let kernel = ["1.0.0 \"v1\"", "1.0.1 \"v1-twin\""]
        .into_iter()
        .find(|k| header.starts_with(k))
        .unwrap_or_else(|| panic!("tasks names neither kernel: {out}"));
    let seq = if kernel.contains("twin") { 2 } else { 1 };
    assert!(
        header.contains(&format!("kernel #{seq}, 2 CPUs, {tasks_before} tasks")),
        "{out}"
    );
    assert!(
        lines
            .next()
            .is_some_and(|l| l.trim_start().starts_with("id")),
        "{out}"
    );
    assert_eq!(lines.count(), tasks_before, "one line per task: {out}");
    // The swap went in; the guest runs on and answers this test's own requests.
    g.assert_running("v1-twin", 2);
    let _ = std::fs::remove_file(file);
}

#[test]
fn a_swap_during_a_patch_apply_goes_before_or_after_it_whole() {
    let g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let vm = g.vm.name().to_owned();
    let package = package_file("twin", "patch-swap");
    let package = package.to_str().expect("a UTF-8 path");
    let patch = package.replace(".hkpkg", ".hkp");
    std::fs::write(&patch, patches::patch("v1", "patch-a")).expect("writing the patch");
    let (tx, rx) = mpsc::channel();
    let held = hold(&g);
    let apply = start(&["patch", "apply", &patch, "--vm", &vm], &tx, &[]);
    let swap = start(&["swap", "--package", package, "--vm", &vm], &tx, &[]);
    until_waiting(&rx, 2);
    drop(held);
    let (applied, patch_out, patch_err) = finish(apply);
    let (swapped, swap_out, swap_err) = finish(swap);
    assert_eq!(swapped, Some(0), "swap:\n{swap_out}\n{swap_err}");
    assert!(
        swap_out.starts_with("swapped 1.0.0 \"v1\" (build"),
        "{swap_out}"
    );
    match applied {
        Some(0) => {
            assert!(patch_out.starts_with("applied patch "), "{patch_out}");
            println!("the patch went first; the swap dropped it");
        }
        Some(1) => {
            assert!(patch_out.contains("refused"), "{patch_out}\n{patch_err}");
            println!("the swap went first; twin refused v1's patch: {patch_out}");
        }
        other => panic!("patch apply ended with {other:?}:\n{patch_out}\n{patch_err}"),
    }
    g.assert_running("v1-twin", 2);
    g.assert_patch_count(0);
    let _ = hotkernel::coldpatch::forget(&vm);
    let _ = std::fs::remove_file(package);
    let _ = std::fs::remove_file(&patch);
}

#[test]
fn a_command_that_may_not_wait_is_refused_naming_the_holder() {
    let g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let vm = g.vm.name().to_owned();
    let (tx, _rx) = mpsc::channel();
    let held = hold(&g);
    let tasks = start(
        &["tasks", "--vm", &vm],
        &tx,
        &[("HOTKERNEL_LOCK_WAIT", "0")],
    );
    let (code, out, err) = finish(tasks);
    drop(held);
    assert_eq!(code, Some(1), "tasks:\n{out}\n{err}");
    assert!(out.is_empty(), "nothing listed: {out}");
    assert!(
        err.contains(&format!("VM `{vm}` is busy: `concurrent-"))
            && err.contains(&format!(
                "(pid {}) is using its mailbox",
                std::process::id()
            )),
        "{err}"
    );
    // Released, the same command runs.
    let (code, out, err) = finish(start(
        &["tasks", "--vm", &vm],
        &tx,
        &[("HOTKERNEL_LOCK_WAIT", "0")],
    ));
    assert_eq!(code, Some(0), "tasks after the release:\n{out}\n{err}");
}
