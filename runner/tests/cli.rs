//! The `hotkernel` binary as a user runs it: exit statuses, messages, and commands that
//! find a running VM by name. Tests that boot QEMU take turns (one VM at a time).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};

const HOTKERNEL: &str = env!("CARGO_BIN_EXE_hotkernel");

/// One booting test at a time.
fn vm_turn() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn hotkernel(args: &[&str]) -> Output {
    Command::new(HOTKERNEL)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run hotkernel")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A VM name unique to this test process.
fn vm_name(test: &str) -> String {
    format!("cli-{test}-{}", std::process::id())
}

#[test]
fn missing_tools_are_named_with_what_to_install_and_exit_2() {
    let empty = std::env::temp_dir().join(format!("hotkernel-empty-path-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let out = Command::new(HOTKERNEL)
        .args(["run", "--seconds", "1"])
        .env("PATH", &empty)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("qemu-system-x86_64 not found")
                && l.contains("apt-get install qemu-system-x86")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("rustup not found") && l.contains("make setup")),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn build_prints_the_elf_path_and_unknown_variants_are_named() {
    let out = hotkernel(&["build"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let elf = Path::new(stdout.trim());
    assert!(
        elf.ends_with("target/hotkernel/kernels/v1/kernel.elf"),
        "{stdout}"
    );
    let bytes = std::fs::read(elf).unwrap();
    assert_eq!(&bytes[..4], b"\x7fELF");
    assert!(elf.with_file_name("boot.img").is_file());

    let out = hotkernel(&["build", "--variant", "nonesuch"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unknown kernel variant `nonesuch`: known variants are v1, v2"),
        "{stderr}"
    );
}

#[test]
fn the_guest_verdict_is_the_exit_status() {
    let _turn = vm_turn();
    let name = vm_name("verdict");
    let ok = hotkernel(&["run", "--name", &name, "--boot-opt", "mode=selftest"]);
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    assert!(text(&ok.stderr).contains("guest reported success"));

    let failed = hotkernel(&["run", "--name", &name, "--boot-opt", "mode=panic"]);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stderr));
    assert!(
        text(&failed.stdout).contains("KERNEL PANIC"),
        "the console reaches stdout"
    );
    assert!(text(&failed.stderr).contains("guest reported failure"));
}

#[test]
fn run_for_some_seconds_stops_the_vm_with_0() {
    let _turn = vm_turn();
    let name = vm_name("seconds");
    // Without a subcommand, the options are `run`'s.
    let out = hotkernel(&["--cpus", "2", "--seconds", "2", "--name", &name]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("VM `{name}` stopped after")),
        "{stderr}"
    );
    // Its state is removed on exit; its console log is kept.
    let paths = hotkernel::VmPaths::for_name(&name);
    assert!(!paths.state_file.exists(), "state removed on exit");
    assert!(!paths.mailbox.exists(), "mailbox removed on exit");
    assert!(paths.dir.join("console.log").exists(), "console log kept");
}

/// Waits (hang guard: the child's own exit) for a stdout line containing `needle`.
fn wait_for_stdout(child: &mut Child, needle: &str) -> Vec<String> {
    let stdout = child.stdout.as_mut().unwrap();
    let mut seen = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let done = line.contains(needle);
        seen.push(line);
        if done {
            return seen;
        }
    }
    panic!(
        "hotkernel ended before printing `{needle}`:\n{}",
        seen.join("\n")
    );
}

#[test]
fn status_and_stop_find_a_running_vm_by_name() {
    let _turn = vm_turn();
    let name = vm_name("stop");
    let mut run = Command::new(HOTKERNEL)
        .args(["run", "--name", &name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_stdout(&mut run, "CPUs online");

    let again = hotkernel(&["run", "--name", &name, "--seconds", "1"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains(&format!("a VM named `{name}` is already running")));

    let status = hotkernel(&["status", "--vm", &name]);
    let report = text(&status.stdout);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(
        report.contains(&format!("VM `{name}`: running")),
        "{report}"
    );
    assert!(
        report.contains(&format!("runner pid {}", run.id())),
        "{report}"
    );

    let stop = hotkernel(&["stop", "--vm", &name]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    let finished = run.wait_with_output().unwrap();
    let stderr = text(&finished.stderr);
    assert_eq!(finished.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopped after"), "{stderr}");

    let gone = hotkernel(&["status", "--vm", &name]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(text(&gone.stderr).contains(&format!("no VM named `{name}` is running")));
}
