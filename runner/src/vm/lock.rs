//! One command at a time on a VM's mailbox.
//!
//! The mailbox has one request block, one response block and one data area: two
//! clients writing it at once would mix their requests, payloads and answers, and two
//! commands that each take several requests (stage, then apply) would apply each
//! other's packages. So a client takes `<vm dir>/mailbox.lock` (an exclusive `flock`)
//! before it sends anything, and writes its pid and command line into the file for
//! whoever waits:
//!
//! - a command holds it for as long as its [`crate::mailbox::Mailbox`] lives
//!   ([`crate::mailbox::Mailbox::open`]); a long-lived client that waits between
//!   requests (the tests' guest handle) takes it per request instead
//!   ([`crate::mailbox::Mailbox::open_per_request`]); reading the status block takes
//!   no lock ([`crate::mailbox::Mailbox::open_status`]);
//! - a second client waits up to [`wait_limit`] (120 s, or `HOTKERNEL_LOCK_WAIT`
//!   seconds; 0 refuses at once), saying once on stderr `waiting for <command> (pid N)
//!   to finish with VM X`, then gives up with [`Error::VmBusy`], which names the holder.
//!
//! The kernel drops a dead process's `flock`, so a killed command never leaves the VM
//! locked. The lock is advisory: a program that writes the mailbox file without it is
//! not stopped (nothing in this tree does).

use std::fs::{self, File, TryLockError};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::vm::VmPaths;

/// How long a client waits for the lock by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(120);
/// How often a waiting client tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(20);

/// The exclusive right to the mailbox of one VM; released on drop.
#[derive(Debug)]
pub struct MailboxLock {
    file: File,
}

impl Drop for MailboxLock {
    fn drop(&mut self) {
        // Who held it last is no longer true: empty the file before unlocking.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// Who holds a VM's mailbox lock, as its holder wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "`{}` (pid {pid})", self.command),
            None => write!(f, "another command"),
        }
    }
}

/// `<vm dir>/mailbox.lock`.
pub fn path(paths: &VmPaths) -> PathBuf {
    paths.dir.join("mailbox.lock")
}

/// The wait `HOTKERNEL_LOCK_WAIT` asks for (seconds), else [`DEFAULT_WAIT`].
pub fn wait_limit() -> Duration {
    std::env::var("HOTKERNEL_LOCK_WAIT")
        .ok()
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map_or(DEFAULT_WAIT, Duration::from_secs_f64)
}

/// This process's command line, short: the program's file name and its arguments.
fn this_command() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .map_or(p.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let mut text = std::iter::once(program)
        .chain(args)
        .collect::<Vec<_>>()
        .join(" ");
    if text.len() > 160 {
        let mut end = 157;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

/// What the holder of `lock` wrote (a file being rewritten reads as no holder).
pub fn holder(lock: &Path) -> Holder {
    let text = fs::read_to_string(lock).unwrap_or_default();
    let mut lines = text.lines();
    let pid = lines.next().and_then(|l| l.trim().parse().ok());
    let command = lines.next().unwrap_or("").to_owned();
    Holder { pid, command }
}

/// Takes the mailbox lock of the VM `vm` (files `paths`), waiting up to `wait`;
/// `on_wait` hears the holder once, when the lock is not free at first.
pub fn acquire(
    vm: &str,
    paths: &VmPaths,
    wait: Duration,
    mut on_wait: impl FnMut(&Holder),
) -> Result<MailboxLock> {
    let lock_path = path(paths);
    let started = Instant::now();
    let mut told = false;
    loop {
        let file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("open {}", lock_path.display()), e))?;
        match file.try_lock() {
            Ok(()) => {
                // A runner cleaning up the VM may have removed the file meanwhile: the
                // lock counts only on the file at the path.
                let same = match (file.metadata(), fs::metadata(&lock_path)) {
                    (Ok(held), Ok(at)) => held.ino() == at.ino() && held.dev() == at.dev(),
                    _ => false,
                };
                if same {
                    let mut lock = MailboxLock { file };
                    write_holder(&mut lock.file, &lock_path)?;
                    return Ok(lock);
                }
                continue;
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format!("lock {}", lock_path.display()), e))
            }
        }
        let waited = started.elapsed();
        if waited >= wait {
            return Err(Error::VmBusy {
                vm: vm.to_owned(),
                holder: holder(&lock_path).to_string(),
                waited,
            });
        }
        if !told {
            told = true;
            on_wait(&holder(&lock_path));
        }
        std::thread::sleep(RETRY_EVERY.min(wait - waited));
    }
}

fn write_holder(file: &mut File, path: &Path) -> Result<()> {
    let text = format!("{}\n{}\n", std::process::id(), this_command());
    file.set_len(0)
        .and_then(|()| {
            use std::io::Seek;
            file.rewind()?;
            file.write_all(text.as_bytes())
        })
        .map_err(|e| Error::io(format!("write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(tag: &str) -> VmPaths {
        let dir = std::env::temp_dir().join(format!("hk-lock-{tag}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        VmPaths {
            dir,
            ..VmPaths::for_name("lock-test")
        }
    }

    #[test]
    fn a_second_client_waits_then_is_refused_naming_the_first() {
        let p = paths("busy");
        let first = acquire("x", &p, Duration::ZERO, |_| panic!("free at first")).unwrap();
        let held = holder(&path(&p));
        assert_eq!(held.pid, Some(std::process::id()));
        assert!(!held.command.is_empty());
        let mut heard = Vec::new();
        let err = acquire("x", &p, Duration::from_millis(60), |h| {
            heard.push(h.clone())
        })
        .unwrap_err();
        assert_eq!(
            heard,
            std::slice::from_ref(&held),
            "told once, of the holder"
        );
        let text = err.to_string();
        assert!(
            text.contains(&format!("(pid {})", std::process::id())) && text.contains("VM `x`"),
            "{text}"
        );
        drop(first);
        assert_eq!(holder(&path(&p)).pid, None, "released: no holder");
        let again = acquire("x", &p, Duration::ZERO, |_| panic!("released")).unwrap();
        drop(again);
        let _ = fs::remove_dir_all(&p.dir);
    }

    #[test]
    fn a_waiting_client_gets_the_lock_when_it_is_released() {
        let p = paths("wait");
        let first = acquire("y", &p, Duration::ZERO, |_| {}).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p2 = p.clone();
        let waiter = std::thread::spawn(move || {
            acquire("y", &p2, Duration::from_secs(30), |_| tx.send(()).unwrap()).map(drop)
        });
        // Released only once the waiter said it waits.
        rx.recv().unwrap();
        drop(first);
        waiter.join().unwrap().unwrap();
        let _ = fs::remove_dir_all(&p.dir);
    }
}
