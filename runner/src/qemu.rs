//! The QEMU command line for a VM, and what QEMU's exit status means.
//!
//! ## Devices
//!
//! | what | QEMU option | guest sees |
//! | --- | --- | --- |
//! | boot disk | `-drive format=raw,snapshot=on,if=virtio,file=<boot.img>` | BIOS disk 0x80 (virtio-blk: SeaBIOS reads it about 1 s faster a boot than the IDE disk under TCG; the kernel has no disk driver) |
//! | console | `-chardev socket,…,server=on,wait=on` + `-serial chardev:ser0` | COM1 (0x3f8) |
//! | doorbell | `-chardev socket,…,server=on,wait=off` + `-serial chardev:bell` | COM2 (0x2f8) |
//! | mailbox | `memory-backend-file` on `/dev/shm/hotkernel-<vm>` + `ivshmem-plain` | PCI BAR2, 32 MiB |
//! | boot options | `-fw_cfg name=opt/hotkernel/cmdline,string=…` | fw_cfg file |
//! | exit | `-device isa-debug-exit,iobase=0xf4,iosize=0x04` | port 0xf4 |
//! | control | `-qmp unix:<vm>/qmp.sock,server=on,wait=off` | — |
//! | debugger | `-chardev socket,…/gdb.sock,server=on,wait=off` + `-gdb chardev:gdb0` | — (`hotkernel gdb`; attaching stops the guest until GDB continues or detaches) |
//!
//! QEMU waits for the runner to connect to the console socket before it starts the
//! guest, so no output is lost. The boot disk is opened with `snapshot=on`: the guest
//! never writes to it, and several VMs (parallel tests) can boot one image file without
//! fighting over QEMU's image write lock.
//!
//! ## Exit status (the one place it is written down)
//!
//! The guest writes `0x10` (success) or `0x11` (failure) to `isa-debug-exit`; QEMU
//! exits with `(code << 1) | 1`, i.e. 33 or 35. The runner maps 33 → 0 and 35 → 1. QEMU
//! also exits with 0 when it is told to quit (QMP `quit`) and when the guest resets or
//! triple-faults (with `-no-reboot`); the runner tells these apart by whether it (or
//! `hotkernel stop`) asked for the quit. Anything else is an error naming the status or
//! the signal.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::toolchain::QEMU;

/// Size of the shared-memory mailbox (`ivshmem-plain`), in bytes.
pub const MAILBOX_BYTES: u64 = 32 << 20;
/// The `isa-debug-exit` port.
pub const EXIT_PORT: u16 = 0xf4;
/// QEMU's exit status when the guest wrote the success code `0x10`.
pub const QEMU_STATUS_GUEST_SUCCESS: i32 = (0x10 << 1) | 1;
/// QEMU's exit status when the guest wrote the failure code `0x11`.
pub const QEMU_STATUS_GUEST_FAILURE: i32 = (0x11 << 1) | 1;
/// The fw_cfg file carrying boot options.
pub const BOOT_OPTIONS_FILE: &str = "opt/hotkernel/cmdline";
/// Environment variable whose value (split at spaces) is added to every QEMU command
/// line: a developer's tracing options such as `-d int,cpu_reset -D /tmp/qemu.log`.
pub const EXTRA_ARGS_ENV: &str = "HOTKERNEL_QEMU_ARGS";

/// The accelerator. TCG is the default: KVM is unreliable on the machines this
/// project runs on, and slow to reach the boot sector there.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    #[default]
    Tcg,
    Kvm,
}

impl Accel {
    fn as_str(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One boot option, `key=value`, passed to the kernel through fw_cfg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootOpt {
    pub key: String,
    pub value: String,
}

impl BootOpt {
    /// Checks that the option survives the trip: no whitespace (the kernel splits on
    /// it), no `=` in the key, a non-empty key.
    pub fn new(key: &str, value: &str) -> Result<Self> {
        let word = format!("{key}={value}");
        let bad = key.is_empty() || key.contains('=') || word.chars().any(char::is_whitespace);
        if bad {
            return Err(Error::BootOption(word));
        }
        Ok(BootOpt {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

impl FromStr for BootOpt {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| Error::BootOption(s.to_owned()))?;
        BootOpt::new(key, value)
    }
}

impl fmt::Display for BootOpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.key, self.value)
    }
}

/// Everything the QEMU command line depends on.
#[derive(Debug, Clone)]
pub struct QemuSpec {
    pub cpus: u32,
    pub memory_mib: u32,
    pub accel: Accel,
    pub boot_image: PathBuf,
    pub serial_socket: PathBuf,
    pub doorbell_socket: PathBuf,
    pub qmp_socket: PathBuf,
    pub gdb_socket: PathBuf,
    pub mailbox: PathBuf,
    pub boot_opts: Vec<BootOpt>,
}

impl QemuSpec {
    /// QEMU's arguments (without the program name).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |parts: &[&str]| args.extend(parts.iter().map(OsString::from));
        push(&["-machine", "pc", "-accel", self.accel.as_str()]);
        push(&[
            "-m",
            &self.memory_mib.to_string(),
            "-smp",
            &self.cpus.to_string(),
        ]);
        push(&[
            "-display",
            "none",
            "-monitor",
            "none",
            "-nic",
            "none",
            "-no-reboot",
        ]);
        push(&[
            "-drive",
            &format!(
                "format=raw,snapshot=on,if=virtio,file={}",
                escape(&self.boot_image)
            ),
        ]);
        push(&[
            "-device",
            &format!("isa-debug-exit,iobase={EXIT_PORT:#x},iosize=0x04"),
        ]);
        push(&[
            "-chardev",
            &format!(
                "socket,id=ser0,path={},server=on,wait=on",
                escape(&self.serial_socket)
            ),
            "-serial",
            "chardev:ser0",
        ]);
        push(&[
            "-chardev",
            &format!(
                "socket,id=bell,path={},server=on,wait=off",
                escape(&self.doorbell_socket)
            ),
            "-serial",
            "chardev:bell",
        ]);
        push(&[
            "-qmp",
            &format!("unix:{},server=on,wait=off", escape(&self.qmp_socket)),
        ]);
        push(&[
            "-chardev",
            &format!(
                "socket,id=gdb0,path={},server=on,wait=off",
                escape(&self.gdb_socket)
            ),
            "-gdb",
            "chardev:gdb0",
        ]);
        push(&[
            "-object",
            &format!(
                "memory-backend-file,id=hkmb,share=on,mem-path={},size={}M",
                escape(&self.mailbox),
                MAILBOX_BYTES >> 20
            ),
            "-device",
            "ivshmem-plain,memdev=hkmb",
        ]);
        if !self.boot_opts.is_empty() {
            let line = self
                .boot_opts
                .iter()
                .map(BootOpt::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            push(&[
                "-fw_cfg",
                &format!("name={BOOT_OPTIONS_FILE},string={}", escape_str(&line)),
            ]);
        }
        // A developer's extra QEMU options (`-d int -D /tmp/q.log`, …), split at spaces.
        if let Some(extra) = std::env::var_os(EXTRA_ARGS_ENV) {
            args.extend(
                extra
                    .to_string_lossy()
                    .split_whitespace()
                    .map(OsString::from),
            );
        }
        args
    }

    /// The QEMU process, not yet started: its own process group (the terminal's
    /// Ctrl-C reaches the runner only, which then quits QEMU cleanly), stdin and stdout
    /// closed, stderr piped (the runner keeps it for error messages).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(QEMU);
        cmd.args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0);
        cmd
    }
}

/// QEMU option values separate with commas; a literal comma is written twice.
fn escape(path: &std::path::Path) -> String {
    escape_str(&path.to_string_lossy())
}

fn escape_str(s: &str) -> String {
    s.replace(',', ",,")
}

/// How a VM ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestExit {
    /// The guest reported success (`0x10`, QEMU status 33).
    Success,
    /// The guest reported failure (`0x11`, QEMU status 35).
    Failure,
    /// QEMU quit because the runner or `hotkernel stop` asked it to.
    Stopped,
    /// Anything else: QEMU's own status or the signal that ended it.
    Other(ExitStatus),
}

impl GuestExit {
    /// Classifies QEMU's exit status; `stop_requested` says whether a QMP `quit` was sent.
    pub fn from_status(status: ExitStatus, stop_requested: bool) -> Self {
        match status.code() {
            Some(QEMU_STATUS_GUEST_SUCCESS) => GuestExit::Success,
            Some(QEMU_STATUS_GUEST_FAILURE) => GuestExit::Failure,
            Some(0) if stop_requested => GuestExit::Stopped,
            _ => GuestExit::Other(status),
        }
    }

    /// The `hotkernel` binary's exit status for this ending, or the error to report.
    pub fn runner_exit_code(self, stderr: &str) -> Result<u8> {
        match self {
            GuestExit::Success | GuestExit::Stopped => Ok(0),
            GuestExit::Failure => Ok(1),
            GuestExit::Other(status) => Err(Error::QemuExit {
                description: describe_status(status),
                stderr: stderr.to_owned(),
            }),
        }
    }
}

impl fmt::Display for GuestExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestExit::Success => f.write_str("guest reported success"),
            GuestExit::Failure => f.write_str("guest reported failure"),
            GuestExit::Stopped => f.write_str("stopped on request"),
            GuestExit::Other(status) => f.write_str(&describe_status(*status)),
        }
    }
}

/// A sentence about a QEMU exit status that is not the guest's verdict.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(0), _) => "QEMU exited with status 0 without the guest's exit code: the guest reset \
                         or triple-faulted (QEMU runs with -no-reboot), or someone else quit it"
            .to_owned(),
        (Some(1), _) => "QEMU exited with status 1 (QEMU's own error, see its message)".to_owned(),
        (Some(code), _) => format!(
            "QEMU exited with status {code}, which is neither the guest's success ({QEMU_STATUS_GUEST_SUCCESS}) \
             nor its failure ({QEMU_STATUS_GUEST_FAILURE})"
        ),
        (None, Some(signal)) => format!("QEMU was killed by signal {signal}{}", signal_name(signal)),
        (None, None) => format!("QEMU ended with {status}"),
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        1 => " (SIGHUP)",
        2 => " (SIGINT)",
        6 => " (SIGABRT)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> QemuSpec {
        QemuSpec {
            cpus: 4,
            memory_mib: 512,
            accel: Accel::Tcg,
            boot_image: "/t/boot,1.img".into(),
            serial_socket: "/t/vm/serial.sock".into(),
            doorbell_socket: "/t/vm/doorbell.sock".into(),
            qmp_socket: "/t/vm/qmp.sock".into(),
            gdb_socket: "/t/vm/gdb.sock".into(),
            mailbox: "/dev/shm/hotkernel-x".into(),
            boot_opts: vec![
                BootOpt::new("mode", "selftest").unwrap(),
                BootOpt::new("log", "debug").unwrap(),
            ],
        }
    }

    fn joined(spec: &QemuSpec) -> String {
        spec.args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn command_line_has_every_device() {
        let line = joined(&spec());
        for expected in [
            "-machine pc -accel tcg -m 512 -smp 4",
            "-display none -monitor none -nic none -no-reboot",
            "-drive format=raw,snapshot=on,if=virtio,file=/t/boot,,1.img",
            "-device isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-chardev socket,id=ser0,path=/t/vm/serial.sock,server=on,wait=on -serial chardev:ser0",
            "-chardev socket,id=bell,path=/t/vm/doorbell.sock,server=on,wait=off -serial chardev:bell",
            "-qmp unix:/t/vm/qmp.sock,server=on,wait=off",
            "-object memory-backend-file,id=hkmb,share=on,mem-path=/dev/shm/hotkernel-x,size=32M -device ivshmem-plain,memdev=hkmb",
            "-fw_cfg name=opt/hotkernel/cmdline,string=mode=selftest log=debug",
        ] {
            assert!(line.contains(expected), "missing `{expected}` in {line}");
        }
        // The console must be the first serial port (COM1), the doorbell the second.
        assert!(line.find("chardev:ser0").unwrap() < line.find("chardev:bell").unwrap());
    }

    #[test]
    fn kvm_is_opt_in_and_boot_options_are_optional() {
        let mut s = spec();
        s.accel = Accel::Kvm;
        s.boot_opts.clear();
        let line = joined(&s);
        assert!(line.contains("-accel kvm"));
        assert!(!line.contains("-fw_cfg"));
        assert_eq!(Accel::default(), Accel::Tcg);
    }

    #[test]
    fn boot_options_are_validated() {
        assert_eq!(
            "mode=run".parse::<BootOpt>().unwrap(),
            BootOpt::new("mode", "run").unwrap()
        );
        assert_eq!("flag=".parse::<BootOpt>().unwrap().value, "");
        assert!("mode".parse::<BootOpt>().is_err());
        assert!("=x".parse::<BootOpt>().is_err());
        assert!("mode=a b".parse::<BootOpt>().is_err());
        assert_eq!("a=b=c".parse::<BootOpt>().unwrap().value, "b=c");
    }

    #[test]
    fn exit_statuses_map_as_documented() {
        let code = |c: i32| ExitStatus::from_raw(c << 8);
        assert_eq!(GuestExit::from_status(code(33), false), GuestExit::Success);
        assert_eq!(GuestExit::from_status(code(35), true), GuestExit::Failure);
        assert_eq!(GuestExit::from_status(code(0), true), GuestExit::Stopped);
        assert_eq!(
            GuestExit::from_status(code(0), false),
            GuestExit::Other(code(0))
        );
        assert_eq!(GuestExit::Success.runner_exit_code("").unwrap(), 0);
        assert_eq!(GuestExit::Stopped.runner_exit_code("").unwrap(), 0);
        assert_eq!(GuestExit::Failure.runner_exit_code("").unwrap(), 1);
        let err = GuestExit::from_status(code(1), false)
            .runner_exit_code("qemu: bad option")
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("status 1") && text.contains("bad option"),
            "{text}"
        );
        let killed = GuestExit::from_status(ExitStatus::from_raw(9), false);
        assert!(
            killed.to_string().contains("signal 9 (SIGKILL)"),
            "{killed}"
        );
        let reset = GuestExit::from_status(code(0), false).to_string();
        assert!(reset.contains("triple-faulted"), "{reset}");
    }
}
