//! Controlling a VM that does not exit by itself: QMP status and quit, the state other
//! commands find it by, and cleanup when it ends or is dropped.

use std::path::Path;

use hotkernel_tests::{boot_and_expect, mode, Check, GuestExit, VmState};

#[test]
fn qmp_sees_a_running_guest_and_quit_stops_it() {
    let vm = boot_and_expect(mode("run"), &["CPUs online"]);
    let status = vm.status().check("query-status");
    assert!(status.running, "{status:?}");
    assert_eq!(status.status, "running");
    assert_eq!(vm.quit().check("quit"), GuestExit::Stopped);
    assert!(vm.has_exited());
    let paths = vm.paths().clone();
    drop(vm);
    assert_eq!(
        kept_files(&paths.dir),
        ["console.log"],
        "only the console log is kept in {}",
        paths.dir.display()
    );
    assert!(
        !paths.mailbox.exists(),
        "{} left behind",
        paths.mailbox.display()
    );
}

#[test]
fn a_running_vm_publishes_its_state() {
    let vm = boot_and_expect(mode("run"), &["CPUs online"]);
    let state = VmState::load(vm.name()).check("loading state.json");
    assert_eq!(state.runner_pid, std::process::id());
    assert_eq!(state.cpus, 4);
    assert_eq!(state.variant.as_deref(), Some("v1"));
    assert_eq!(state.paths, *vm.paths());
    assert_eq!(state.kernel_elf, vm.kernel().elf);
    assert!(state.boot_opts.contains(&"mode=run".to_owned()));
    assert!(Path::new(&format!("/proc/{}", state.qemu_pid)).exists());
    // QEMU sized the mailbox's backing file: the guest has its shared memory.
    let mailbox = std::fs::metadata(&state.paths.mailbox).expect("the mailbox file exists");
    assert_eq!(mailbox.len(), hotkernel::qemu::MAILBOX_BYTES);
    for socket in [
        &state.paths.serial_socket,
        &state.paths.qmp_socket,
        &state.paths.doorbell_socket,
    ] {
        assert!(socket.exists(), "{} missing", socket.display());
    }
}

#[test]
fn dropping_a_vm_kills_qemu_and_removes_its_files() {
    let vm = boot_and_expect(mode("run"), &["CPUs online"]);
    let state = VmState::load(vm.name()).check("loading state.json");
    drop(vm);
    let proc_dir = format!("/proc/{}", state.qemu_pid);
    assert!(
        !Path::new(&proc_dir).exists(),
        "QEMU (pid {}) still runs",
        state.qemu_pid
    );
    assert_eq!(kept_files(&state.paths.dir), ["console.log"]);
    assert!(!state.paths.mailbox.exists());
    assert!(!state.paths.serial_socket.exists());
}

/// The names of the files in `dir`, sorted.
fn kept_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
