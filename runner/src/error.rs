//! The runner's one error type. Every message says what went wrong and, where there is
//! one, what to do about it; the binary prints it as is.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::vm::watch::Death;

/// `Result` with the runner's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong on the host side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Tools the runner needs are missing; one line per missing piece, each saying
    /// what to install.
    #[error("{}", .problems.join("\n"))]
    Setup { problems: Vec<String> },

    /// A package could not be made or read.
    #[error("{0}")]
    Package(String),

    /// The host compared the running kernel's image description with the package's
    /// and refused: nothing was pushed, the VM is untouched. The message is the one the
    /// guest would give; `--no-host-check` sends the package to the guest's own check.
    #[error(transparent)]
    RefusedBeforePush(#[from] crate::description::HostRefusal),

    /// A hotpatch could not be made or read (an unreadable ELF or patch, a bad label).
    #[error("{0}")]
    Patch(String),

    /// `hotkernel gdb` could not set GDB up (no gdbstub, no ELF of the running kernel).
    #[error("gdb: {0}")]
    Gdb(String),

    /// The guest refused a hotpatch operation the caller needed to succeed (the demo,
    /// the benchmark); `hotkernel patch apply|remove` print refusals instead.
    #[error("{what} was refused by the guest: {reason}")]
    PatchRefused { what: String, reason: String },

    /// The mailbox protocol failed (no guest, no answer, an unreadable report).
    #[error("mailbox: {0}")]
    Mailbox(String),

    /// A file-system or process operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },

    /// No edit file of this name in `tests/variants/`.
    #[error("unknown kernel variant `{name}`: known variants are {known} (edit files in tests/variants/)")]
    UnknownVariant { name: String, known: String },

    /// A variant's edit file does not apply to this tree (it was written against other
    /// sources): git's message and the rejected hunks.
    #[error("variant `{variant}`: its edit file {edit} does not apply to this tree: {message}{}", rejected_suffix(.rejected))]
    VariantEdit {
        variant: String,
        edit: String,
        message: String,
        rejected: String,
    },

    /// A program the runner needs is not installed.
    #[error("`{tool}` was not found: {install}")]
    MissingTool { tool: String, install: String },

    /// `cargo build` of the kernel failed; `output` is cargo's own output (empty when it
    /// already went to the terminal).
    #[error("building kernel variant `{variant}` failed ({status}){output}")]
    KernelBuild {
        variant: String,
        status: String,
        output: String,
    },

    /// An error already met once in this process (a cached build that failed),
    /// repeated for a later caller.
    #[error("{0}")]
    Again(String),

    /// The bootloader crate could not make the boot image.
    #[error("cannot make the boot image {image} from {kernel}: {message}")]
    DiskImage {
        kernel: PathBuf,
        image: PathBuf,
        message: String,
    },

    /// A VM's coldpatch store (its kept boot images) could not be written or read.
    #[error("coldpatch store {store}: {message}")]
    Coldpatch { store: PathBuf, message: String },

    /// A boot option is not a `key=value` word QEMU's fw_cfg can carry.
    #[error("boot option `{0}` must be `key=value` without spaces")]
    BootOption(String),

    /// QEMU could not be started, or ended before the VM was up.
    #[error("QEMU did not start: {message}{}", stderr_suffix(.stderr))]
    QemuStart { message: String, stderr: String },

    /// QEMU ended in a way that is neither the guest's success nor its failure.
    #[error("{description}{}", stderr_suffix(.stderr))]
    QemuExit { description: String, stderr: String },

    /// A QMP exchange failed.
    #[error("QMP on {socket}: {message}")]
    Qmp { socket: PathBuf, message: String },

    /// No VM of this name is running.
    #[error("no VM named `{name}` is running (no state at {state}); start one with `hotkernel run --name {name}`")]
    VmNotFound { name: String, state: PathBuf },

    /// A live VM already has this name.
    #[error("a VM named `{name}` is already running (runner pid {pid}); stop it with `hotkernel stop --vm {name}` or pick another `--name`")]
    VmRunning { name: String, pid: u32 },

    /// A VM's `state.json` could not be read.
    #[error("VM state {path} is unreadable ({message}); delete that directory if no VM of that name runs")]
    State { path: PathBuf, message: String },

    /// Waiting for the guest took longer than the hang guard.
    #[error("timed out after {:.1}s waiting for {what}{}", .waited.as_secs_f64(), tail_suffix(.tail))]
    Timeout {
        what: String,
        waited: Duration,
        tail: String,
    },

    /// The VM ended while something was still expected from it.
    #[error("the VM ended ({exit}) before {what}{}", tail_suffix(.tail))]
    VmEnded {
        what: String,
        exit: String,
        tail: String,
    },

    /// The VM ended (QEMU exited) while the runner waited for the guest's answer to a
    /// mailbox request: how QEMU ended, the guest's panic report if it printed one, and
    /// where its console is kept.
    #[error("{}", guest_died(.vm, .waiting_for, .death))]
    GuestDied {
        vm: String,
        /// What the runner was waiting for: `request 3 (snapshot)`.
        waiting_for: String,
        death: Box<Death>,
    },

    /// Another command held the VM's mailbox for as long as this one would wait
    /// ([`crate::vm::lock`]).
    #[error("VM `{vm}` is busy: {holder} is using its mailbox, and this command waited {:.0} s for it; run this again when that has finished (HOTKERNEL_LOCK_WAIT=SECONDS waits longer)", .waited.as_secs_f64())]
    VmBusy {
        vm: String,
        /// The holder, as it wrote itself into the lock file: `` `hotkernel push …` (pid 12) ``.
        holder: String,
        waited: Duration,
    },

    /// A signal (Ctrl-C, SIGTERM, SIGHUP) stopped this process's VMs; no VM is launched
    /// after it.
    #[error("interrupted: a signal stopped this process's VMs, and no new one is started")]
    Interrupted,
}

impl Error {
    /// Shorthand for [`Error::Io`].
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// The exit status the `hotkernel` binary reports for this error: 2 when the
    /// machine lacks something (it needs an install, not a code change), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Setup { .. } => 2,
            _ => 1,
        }
    }
}

fn stderr_suffix(stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        String::new()
    } else {
        format!("\nQEMU said:\n{stderr}")
    }
}

fn guest_died(vm: &str, waiting_for: &str, death: &Death) -> String {
    let exit = death.exit.as_deref().unwrap_or(
        "QEMU is gone, and its runner wrote nothing about how it ended (was it killed too?)",
    );
    let what = match &death.panic {
        Some(panic) => format!("{panic}\n  QEMU: {exit}"),
        None => format!("{exit}{}", tail_suffix(&death.tail)),
    };
    format!(
        "VM `{vm}` ended before answering {waiting_for}: {what}\n  its console is kept in {}",
        death.log.display()
    )
}

fn tail_suffix(tail: &str) -> String {
    if tail.trim().is_empty() {
        "; the guest printed nothing on its serial console".to_owned()
    } else {
        format!("; last serial lines:\n{tail}")
    }
}

fn rejected_suffix(rejected: &str) -> String {
    if rejected.is_empty() {
        String::new()
    } else {
        format!(
            "\nrejected hunks (update the edit file: scripts/variant.sh edit <name>):\n{rejected}"
        )
    }
}
