//! Whether a VM is still there, as any process can tell — the one that runs it, or a
//! `hotkernel swap --vm NAME` in another terminal — and what happened when it is not.
//!
//! Alive means: QEMU's process (its pid from `state.json`) exists, is not a zombie, and
//! is this VM's QEMU (its command line names the VM's mailbox, so a reused pid does not
//! count). When no pid is known, the console log decides: its last boot's section has
//! no end line yet. A VM that is gone is described by [`Watch::death`]: how QEMU ended
//! (the runner's end line in the console log), the guest's panic report, the last
//! console lines.

use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::console::{self, GuestPanic};
use super::state::{VmPaths, VmState};

/// How long [`Watch::death`] waits for the runner to write how QEMU ended, once QEMU
/// is gone (the runner writes it as soon as it has reaped QEMU).
const ENDING_WAIT: Duration = Duration::from_secs(1);
/// Console lines quoted when the guest printed no panic report.
const TAIL_LINES: usize = 20;

/// A VM to watch, found by its files.
#[derive(Debug, Clone)]
pub struct Watch {
    name: String,
    qemu_pid: Option<u32>,
    mailbox: PathBuf,
    log: PathBuf,
}

/// What became of a VM that is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Death {
    /// How QEMU ended, as its runner wrote it (`None`: the runner wrote nothing, e.g. it
    /// was killed too).
    pub exit: Option<String>,
    /// The guest's first panic report since the VM booted.
    pub panic: Option<GuestPanic>,
    /// The last console lines (quoted when there is no panic report).
    pub tail: String,
    /// The console log, which keeps the whole story.
    pub log: PathBuf,
}

impl Watch {
    /// Watches the VM whose files are `paths` (its pid from `state.json`, if readable).
    pub fn for_vm(paths: &VmPaths) -> Watch {
        let name = paths
            .dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let qemu_pid = VmState::load(&name).ok().map(|s| s.qemu_pid);
        Watch {
            name,
            qemu_pid,
            mailbox: paths.mailbox.clone(),
            log: paths.console_log(),
        }
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the VM's QEMU is still running (see the module doc).
    pub fn is_alive(&self) -> bool {
        match self.qemu_pid {
            Some(pid) => qemu_running(pid, &self.mailbox),
            None => console::ending(&console::last_boot(&self.log)).is_none(),
        }
    }

    /// `None` while the VM is alive; once it is gone, what happened (waiting up to a
    /// second for its runner's account of QEMU's end).
    pub fn death(&self) -> Option<Death> {
        if self.is_alive() {
            return None;
        }
        let deadline = Instant::now() + ENDING_WAIT;
        let mut section = console::last_boot(&self.log);
        while console::ending(&section).is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            section = console::last_boot(&self.log);
        }
        let lines: Vec<&str> = section
            .lines()
            .filter(|l| !l.starts_with(console::MARK))
            .collect();
        let tail = lines[lines.len().saturating_sub(TAIL_LINES)..]
            .iter()
            .map(|l| format!("  | {l}"))
            .collect::<Vec<_>>()
            .join("\n");
        Some(Death {
            exit: console::ending(&section),
            panic: GuestPanic::first(&section),
            tail,
            log: self.log.clone(),
        })
    }
}

/// Whether `pid` is a live (not zombie) process whose command line names `mailbox`.
fn qemu_running(pid: u32, mailbox: &std::path::Path) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S …`: the state follows the last `)` (comm may hold anything).
    let state = stat
        .rfind(')')
        .and_then(|at| stat[at + 1..].split_whitespace().next());
    if matches!(state, Some("Z" | "X") | None) {
        return false;
    }
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = mailbox.as_os_str().as_encoded_bytes();
    !needle.is_empty() && cmdline.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn a_process_counts_only_while_it_runs_and_names_the_mailbox() {
        let mailbox = format!("/dev/shm/hotkernel-watch-test-{}", std::process::id());
        // A shell that waits for a line that never comes, with the mailbox as its `$0`.
        let mut child = Command::new("sh")
            .args(["-c", "read line", &mailbox])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        // Until the child has exec'd, its command line is this test's.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !qemu_running(pid, mailbox.as_ref()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(qemu_running(pid, mailbox.as_ref()));
        assert!(!qemu_running(pid, "/dev/shm/hotkernel-another".as_ref()));
        child.kill().unwrap();
        // Killed but not reaped: a zombie, which is not running.
        let deadline = Instant::now() + Duration::from_secs(30);
        while qemu_running(pid, mailbox.as_ref()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!qemu_running(pid, mailbox.as_ref()));
        child.wait().unwrap();
        assert!(!qemu_running(pid, mailbox.as_ref()));
    }
}
