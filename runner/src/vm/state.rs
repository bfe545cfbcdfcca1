//! A VM's state directory, `target/hotkernel/vm/<name>/`, through which other commands
//! (`status`, `stop`, later `push` and `patch`) find a running VM.
//!
//! | file | what |
//! | --- | --- |
//! | `owner.lock` | locked by the runner for the VM's whole life: a VM is live iff it is locked |
//! | `state.json` | [`VmState`]: pids, sockets, mailbox, kernel |
//! | `kernel.elf` | the ELF the VM booted (a link or copy: a rebuild does not change it) |
//! | `mailbox.lock` | held by the command using the mailbox, with its pid and command line ([`super::lock`]) |
//! | `stop-requested` | written by `hotkernel stop` before it quits QEMU, so the runner knows the quit was asked for |
//! | `gdb/` | what `hotkernel gdb` generated: its script, an ELF of symbols per applied patch |
//! | `serial.sock`, `doorbell.sock`, `qmp.sock`, `gdb.sock` | QEMU's sockets (in a short directory under `/tmp/hotkernel-<uid>/` instead when this path is too long for a unix socket) |
//! | `console.log` (`console.log.old`) | the guest's console, every boot of this name ([`super::console`]); **kept** when the VM ends |
//!
//! When the VM ends, every file but the console logs is removed. A VM without a name
//! (the tests', `demo`'s, `bench`'s: [`unique_name`]) leaves a directory with its log;
//! the newest [`KEEP_UNNAMED_LOGS`] of those are kept, older ones are removed by the
//! next runner's clean-up ([`reap_stale`]).
//!
//! The mailbox is `/dev/shm/hotkernel-<name>`; the runner holds a lock on it too, so two
//! checkouts that both run a VM called `default` do not share a mailbox.
//!
//! Liveness is a lock, not a pid: the kernel releases a dead process's locks, so a state
//! left by a killed runner is recognised (and cleaned up) by the next runner whatever
//! became of the pid.

use std::collections::hash_map::DefaultHasher;
use std::fs::{self, File, TryLockError};
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::qemu::Accel;
use crate::qmp::Qmp;
use crate::workspace;

/// Longest path a unix socket address holds (`sun_path` is 108 bytes with the NUL).
const SOCKET_PATH_MAX: usize = 107;
/// Longest VM name.
const NAME_MAX: usize = 48;
/// Console logs of VMs without a name that [`reap_stale`] keeps.
pub const KEEP_UNNAMED_LOGS: usize = 32;
/// The files a VM's directory keeps after the VM ended.
const KEPT_FILES: [&str; 2] = ["console.log", "console.log.old"];

/// A name for a VM launched without one: `p<pid>-<n>`, unique to this process and call.
pub fn unique_name() -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!(
        "p{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Whether `name` is one [`unique_name`] makes.
fn is_unnamed(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix('p')
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(pid, n)| digits(pid) && digits(n))
}

/// Checks a VM name: 1–48 characters from `[A-Za-z0-9_.-]`, not starting with `.`
/// (it becomes a directory and a file name in `/dev/shm`).
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= NAME_MAX
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::State {
            path: workspace::vm_root().join(name),
            message: format!(
                "`{name}` is not a usable VM name: use 1–{NAME_MAX} letters, digits, `_`, `-`, `.`"
            ),
        })
    }
}

/// Where a VM's files are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmPaths {
    /// `target/hotkernel/vm/<name>`.
    pub dir: PathBuf,
    pub state_file: PathBuf,
    pub stop_marker: PathBuf,
    /// `dir`, or a short directory under `/tmp/hotkernel-<uid>/` when `dir` is too long
    /// for unix socket paths.
    pub sockets_dir: PathBuf,
    pub serial_socket: PathBuf,
    pub doorbell_socket: PathBuf,
    pub qmp_socket: PathBuf,
    /// The mailbox's backing file, `/dev/shm/hotkernel-<name>`.
    pub mailbox: PathBuf,
}

impl VmPaths {
    /// The paths of the VM called `name` in this workspace.
    pub fn for_name(name: &str) -> Self {
        let dir = workspace::vm_root().join(name);
        let sockets_dir = sockets_dir_for(&dir);
        VmPaths {
            state_file: dir.join("state.json"),
            stop_marker: dir.join("stop-requested"),
            serial_socket: sockets_dir.join("serial.sock"),
            doorbell_socket: sockets_dir.join("doorbell.sock"),
            qmp_socket: sockets_dir.join("qmp.sock"),
            mailbox: PathBuf::from(format!("/dev/shm/hotkernel-{name}")),
            sockets_dir,
            dir,
        }
    }

    /// `owner.lock`, locked by the VM's runner while it lives.
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("owner.lock")
    }

    /// `kernel.elf`: the ELF the VM booted, kept for its life (a rebuild overwrites the
    /// build's copy; `hotkernel patch make --vm` needs the exact image).
    pub fn booted_elf(&self) -> PathBuf {
        self.dir.join("kernel.elf")
    }

    /// `gdb.sock`: QEMU's gdbstub (`hotkernel gdb`), with the other sockets.
    pub fn gdb_socket(&self) -> PathBuf {
        self.sockets_dir.join("gdb.sock")
    }

    /// `gdb/`: what `hotkernel gdb` generates for the debugger (its script, the
    /// symbols of the applied patches).
    pub fn gdb_dir(&self) -> PathBuf {
        self.dir.join("gdb")
    }

    /// `console.log`: the guest's console, across swaps and boots ([`super::console`]).
    pub fn console_log(&self) -> PathBuf {
        self.dir.join(KEPT_FILES[0])
    }
}

/// `dir` if `dir/doorbell.sock` (the longest socket name) fits a socket address, else
/// `/tmp/hotkernel-<uid>/<hash of dir>`.
fn sockets_dir_for(dir: &Path) -> PathBuf {
    if dir.join("doorbell.sock").as_os_str().len() <= SOCKET_PATH_MAX {
        return dir.to_path_buf();
    }
    let mut hasher = DefaultHasher::new();
    dir.hash(&mut hasher);
    short_tmp_root().join(format!("{:016x}", hasher.finish()))
}

fn short_tmp_root() -> PathBuf {
    let uid = fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(0);
    PathBuf::from(format!("/tmp/hotkernel-{uid}"))
}

/// What `state.json` records about a running VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmState {
    pub name: String,
    /// The process that launched the VM (the `hotkernel` runner or a test).
    pub runner_pid: u32,
    pub qemu_pid: u32,
    pub cpus: u32,
    pub memory_mib: u32,
    pub accel: Accel,
    pub paths: VmPaths,
    pub kernel_elf: PathBuf,
    /// The build variant, `None` for a kernel given by path.
    pub variant: Option<String>,
    pub boot_image: PathBuf,
    pub boot_opts: Vec<String>,
    /// Launch time, milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
}

impl VmState {
    /// Reads the state of the VM called `name`.
    pub fn load(name: &str) -> Result<Self> {
        check_name(name)?;
        let paths = VmPaths::for_name(name);
        let text = match fs::read_to_string(&paths.state_file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::VmNotFound {
                    name: name.to_owned(),
                    state: paths.state_file,
                })
            }
            Err(e) => return Err(Error::io(format!("read {}", paths.state_file.display()), e)),
        };
        serde_json::from_str(&text).map_err(|e| Error::State {
            path: paths.state_file.clone(),
            message: e.to_string(),
        })
    }

    /// Writes `state.json` (through a temporary file and a rename).
    pub fn store(&self) -> Result<()> {
        let file = &self.paths.state_file;
        let tmp = file.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("VmState serialises");
        fs::write(&tmp, text).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        fs::rename(&tmp, file).map_err(|e| Error::io(format!("rename {}", tmp.display()), e))
    }
}

/// Whether a live runner owns the VM called `name`.
pub fn is_live(name: &str) -> bool {
    let lock = VmPaths::for_name(name).lock_file();
    let Ok(file) = File::open(&lock) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(_) => true,
    }
}

/// The right to run a VM under a name: holds the directory's lock and the mailbox's
/// lock until [`Claim::release`] (or drop), which removes every file of the VM.
pub struct Claim {
    pub name: String,
    pub paths: VmPaths,
    lock: Option<File>,
    mailbox: Option<File>,
}

impl Claim {
    /// Claims `name`: fails if a live runner has it; cleans up what a dead one left.
    pub fn take(name: &str) -> Result<Self> {
        check_name(name)?;
        let paths = VmPaths::for_name(name);
        let lock = lock_dir(name, &paths)?;
        clean_leftovers(&paths);
        let mut claim = Claim {
            name: name.to_owned(),
            paths,
            lock: Some(lock),
            mailbox: None,
        };
        let sockets = &claim.paths.sockets_dir;
        fs::create_dir_all(sockets)
            .map_err(|e| Error::io(format!("create {}", sockets.display()), e))?;
        claim.mailbox = Some(lock_mailbox(name, &claim.paths.mailbox)?);
        Ok(claim)
    }

    /// Removes the VM's files but its console logs, and releases the locks.
    pub fn release(&mut self) {
        if self.lock.is_none() {
            return;
        }
        remove_files(&self.paths);
        let _ = fs::remove_file(&self.paths.mailbox);
        let _ = fs::remove_file(self.paths.lock_file());
        // Fails, as it should, while the directory holds a console log.
        let _ = fs::remove_dir(&self.paths.dir);
        // Unlock only after the files are gone: the next runner finds a clean slate.
        self.mailbox = None;
        self.lock = None;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.release();
    }
}

/// Locks `<dir>/owner.lock`, making sure the locked file is still the one at that path
/// (a runner that was cleaning up a dead VM of this name may have removed it meanwhile).
fn lock_dir(name: &str, paths: &VmPaths) -> Result<File> {
    let lock_path = paths.lock_file();
    for _ in 0..5 {
        fs::create_dir_all(&paths.dir)
            .map_err(|e| Error::io(format!("create {}", paths.dir.display()), e))?;
        let file = match File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
        {
            Ok(file) => file,
            // Another runner removed the directory just now (it was cleaning up).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("open {}", lock_path.display()), e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let pid = VmState::load(name).map(|s| s.runner_pid).unwrap_or(0);
                return Err(Error::VmRunning {
                    name: name.to_owned(),
                    pid,
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::io(format!("lock {}", lock_path.display()), e))
            }
        }
        let same = match (file.metadata(), fs::metadata(&lock_path)) {
            (Ok(held), Ok(at_path)) => held.ino() == at_path.ino() && held.dev() == at_path.dev(),
            _ => false,
        };
        if same {
            return Ok(file);
        }
    }
    Err(Error::State {
        path: paths.dir.clone(),
        message: "another runner keeps recreating this VM's directory".to_owned(),
    })
}

fn lock_mailbox(name: &str, mailbox: &Path) -> Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(mailbox)
        .map_err(|e| Error::io(format!("create the mailbox {}", mailbox.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::State {
            path: mailbox.to_path_buf(),
            message: format!(
                "another hotkernel (another checkout?) runs a VM called `{name}` with this mailbox; pick another `--name`"
            ),
        }),
        Err(TryLockError::Error(e)) => Err(Error::io(format!("lock {}", mailbox.display()), e)),
    }
}

/// With the directory's lock held: whatever is there belongs to a dead runner. A QEMU
/// it left running is asked to quit (through its own QMP socket, so no stranger's
/// process can be hit), then its files are removed.
fn clean_leftovers(paths: &VmPaths) {
    if let Ok(text) = fs::read_to_string(&paths.state_file) {
        if let Ok(old) = serde_json::from_str::<VmState>(&text) {
            if let Ok(qmp) = Qmp::connect(&old.paths.qmp_socket, Duration::from_millis(200)) {
                let _ = qmp.quit();
            }
            remove_files(&old.paths);
            remove_unowned_mailbox(&old.paths.mailbox);
        }
    }
    remove_files(paths);
    remove_unowned_mailbox(&paths.mailbox);
}

/// Removes a VM's sockets, stop marker and state; not its lock file, directory or
/// mailbox (those go last, in [`Claim::release`]).
fn remove_files(paths: &VmPaths) {
    for file in [
        &paths.serial_socket,
        &paths.doorbell_socket,
        &paths.qmp_socket,
        &paths.gdb_socket(),
    ] {
        let _ = fs::remove_file(file);
    }
    let _ = fs::remove_dir_all(paths.gdb_dir());
    if paths.sockets_dir != paths.dir {
        let _ = fs::remove_dir(&paths.sockets_dir);
    }
    let _ = fs::remove_file(&paths.stop_marker);
    let _ = fs::remove_file(paths.booted_elf());
    let _ = fs::remove_file(&paths.state_file);
    let _ = fs::remove_file(super::lock::path(paths));
}

/// Removes a mailbox file unless a live runner (of any checkout) holds its lock.
fn remove_unowned_mailbox(mailbox: &Path) {
    if let Ok(file) = File::open(mailbox) {
        if file.try_lock().is_ok() {
            let _ = fs::remove_file(mailbox);
        }
    }
}

/// Cleans up every VM directory whose runner is gone (tests that were killed leave
/// them behind), keeping console logs; then removes the logs of VMs without a name
/// beyond the newest [`KEEP_UNNAMED_LOGS`]. Live VMs are untouched.
pub fn reap_stale() {
    let Ok(entries) = fs::read_dir(workspace::vm_root()) else {
        return;
    };
    let mut unnamed_logs = Vec::new();
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if check_name(&name).is_err() || is_live(&name) {
            continue;
        }
        if holds_more_than_logs(&entry.path()) {
            if let Ok(mut claim) = Claim::take(&name) {
                claim.release();
            }
        }
        if is_unnamed(&name) {
            let modified = fs::metadata(VmPaths::for_name(&name).console_log())
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            unnamed_logs.push((modified, name));
        }
    }
    unnamed_logs.sort_unstable_by(|a, b| b.cmp(a));
    for (_, name) in unnamed_logs.iter().skip(KEEP_UNNAMED_LOGS) {
        let dir = VmPaths::for_name(name).dir;
        for kept in KEPT_FILES {
            let _ = fs::remove_file(dir.join(kept));
        }
        let _ = fs::remove_dir(&dir);
    }
}

/// Whether `dir` holds anything besides console logs (a VM's state, locks, sockets).
fn holds_more_than_logs(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .any(|e| !KEPT_FILES.iter().any(|kept| e.file_name() == *kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["default", "t123-4", "a.b_c"] {
            check_name(good).unwrap();
        }
        for bad in ["", ".hidden", "a/b", "with space", &"x".repeat(49)] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn socket_paths_fit_a_socket_address() {
        let short = Path::new("/work/main/target/hotkernel/vm/default");
        assert_eq!(sockets_dir_for(short), short);
        let long = PathBuf::from(format!("/{}/target/hotkernel/vm/default", "d".repeat(90)));
        let fallback = sockets_dir_for(&long);
        assert!(fallback.starts_with("/tmp/"), "{}", fallback.display());
        assert!(fallback.join("doorbell.sock").as_os_str().len() <= SOCKET_PATH_MAX);
        assert_eq!(fallback, sockets_dir_for(&long), "stable for one directory");
        let paths = VmPaths::for_name("default");
        assert!(paths.qmp_socket.as_os_str().len() <= SOCKET_PATH_MAX);
        assert_eq!(paths.mailbox, Path::new("/dev/shm/hotkernel-default"));
    }

    #[test]
    fn a_claim_excludes_others_and_cleans_up() {
        let name = format!("unit-claim-{}", std::process::id());
        let mut claim = Claim::take(&name).unwrap();
        assert!(is_live(&name));
        assert!(claim.paths.mailbox.exists());
        assert!(matches!(Claim::take(&name), Err(Error::VmRunning { .. })));
        let state = VmState {
            name: name.clone(),
            runner_pid: std::process::id(),
            qemu_pid: 1,
            cpus: 4,
            memory_mib: 512,
            accel: Accel::Tcg,
            paths: claim.paths.clone(),
            kernel_elf: "/k.elf".into(),
            variant: Some("v1".into()),
            boot_image: "/boot.img".into(),
            boot_opts: vec!["mode=run".into()],
            started_unix_ms: 1,
        };
        state.store().unwrap();
        assert_eq!(VmState::load(&name).unwrap(), state);
        fs::write(claim.paths.console_log(), b"the guest's console\n").unwrap();
        claim.release();
        assert_eq!(
            fs::read_dir(&claim.paths.dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect::<Vec<_>>(),
            ["console.log"],
            "only the console log is kept"
        );
        fs::remove_file(claim.paths.console_log()).unwrap();
        fs::remove_dir(&claim.paths.dir).unwrap();
        assert!(!claim.paths.mailbox.exists());
        assert!(!is_live(&name));
        assert!(matches!(
            VmState::load(&name),
            Err(Error::VmNotFound { .. })
        ));
    }

    #[test]
    fn a_dead_runners_leftovers_are_reclaimed() {
        let name = format!("unit-stale-{}", std::process::id());
        let paths = VmPaths::for_name(&name);
        fs::create_dir_all(&paths.dir).unwrap();
        fs::write(paths.lock_file(), b"").unwrap();
        fs::write(&paths.mailbox, b"old").unwrap();
        fs::write(&paths.stop_marker, b"").unwrap();
        assert!(!is_live(&name));
        let mut claim = Claim::take(&name).unwrap();
        assert!(!paths.stop_marker.exists(), "leftovers removed");
        assert_eq!(fs::read(&paths.mailbox).unwrap(), b"", "a fresh mailbox");
        claim.release();
    }

    #[test]
    fn unnamed_vms_are_recognised_by_their_name() {
        let name = unique_name();
        assert!(is_unnamed(&name), "{name}");
        assert_ne!(unique_name(), name);
        for named in [
            "default",
            "p",
            "p12",
            "p12-",
            "p-3",
            "px-1",
            "p1-2x",
            "cli-stop-12",
        ] {
            assert!(!is_unnamed(named), "{named}");
        }
    }
}
