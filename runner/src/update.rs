//! Live-update operations on a running VM, shared by the CLI, the demo, the benchmarks
//! and the integration tests: package a kernel, stage it, apply it, take snapshots.
//!
//! Every push ([`stage`], [`push_and_apply`]) first runs the host's layout guard
//! ([`crate::description::check`]) unless [`PushOptions::host_check`] is off: a package
//! the running kernel would refuse for its record layouts, regions or descriptor is
//! refused here ([`Error::RefusedBeforePush`]) and never reaches the mailbox.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use image_format::mailbox::report::{Report, Snapshot, StageReport, SwapReport};
use image_format::mailbox::{Command, RequestFlags, Response, Status};
use image_format::package::{pack, PackOptions};

use crate::build::{self, Variant};
use crate::description::{check, HostCheck};
use crate::error::{Error, Result};
use crate::mailbox::{Answer, Mailbox};
use crate::workspace;

pub use crate::mailbox::REQUEST_TIMEOUT;

/// Packs the kernel ELF at `elf` (label: the ELF's own unless `label` is given), signed
/// with the development key.
pub fn pack_elf(elf: &Path, label: Option<String>) -> Result<Vec<u8>> {
    pack_elf_signed(elf, label, None)
}

/// [`pack_elf`] signed with key `key` (`None`: the development key, `keys::load`).
pub fn pack_elf_signed(elf: &Path, label: Option<String>, key: Option<&str>) -> Result<Vec<u8>> {
    let bytes = std::fs::read(elf).map_err(|e| Error::io(format!("read {}", elf.display()), e))?;
    let package = pack(&bytes, &PackOptions { label })
        .map_err(|e| Error::Package(format!("cannot pack {}: {e}", elf.display())))?;
    crate::keys::sign(&package, &crate::keys::load(key)?)
}

/// Builds `variant` (once per process) and packs it; returns the package and its path
/// under `target/hotkernel/kernels/<variant>/kernel.hkp`.
pub fn package_variant(variant: &str) -> Result<(Vec<u8>, PathBuf)> {
    let variant = Variant::try_new(variant)?;
    let built = build::build_kernel_cached(&variant)?;
    let package = pack_elf(&built.elf, None)?;
    let path = workspace::target_dir()
        .join("hotkernel/kernels")
        .join(variant.name())
        .join("kernel.hkp");
    std::fs::write(&path, &package)
        .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    Ok((package, path))
}

/// How a package is pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOptions {
    /// The request's flags: faults to inject, the overlay's mode
    /// ([`push_and_apply`] adds `APPLY_AFTER_STAGE`).
    pub flags: RequestFlags,
    /// Compare the running kernel's image description with the package's first, and
    /// refuse before pushing what the guest would refuse (on by default). Off sends the
    /// package to the guest's own staging check, as a test of that check does, or when
    /// the caller ran [`check_before_push`] itself.
    pub host_check: bool,
    /// The health window the swap asks for ([`push_and_apply`]).
    pub health: HealthWindow,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            flags: RequestFlags::empty(),
            host_check: true,
            health: HealthWindow::Default,
        }
    }
}

/// How long the new kernel of a swap has to show it is healthy before the swap commits
/// (every CPU scheduling, every task kind stepped, no exception or panic); a failure
/// inside the window reverts to the old kernel (docs/ARCHITECTURE.md, "The health
/// window").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealthWindow {
    /// The guest's default (200 ms).
    #[default]
    Default,
    /// This many milliseconds.
    Millis(std::num::NonZeroU32),
    /// None: the swap commits as soon as the new kernel runs, and the old image's frames
    /// are freed at once (what the copy overlay needs).
    Off,
}

/// The window [`HealthWindow::Default`] asks for, in ms (0: the guest's own default).
static DEFAULT_HEALTH_MS: AtomicU32 = AtomicU32::new(0);

/// Makes [`HealthWindow::Default`] ask for `ms` milliseconds instead of the guest's
/// default (the integration tests' copy of the CLI, on a loaded host).
pub fn set_default_health_window(ms: u32) {
    DEFAULT_HEALTH_MS.store(ms, Ordering::Relaxed);
}

impl HealthWindow {
    /// From `--health-ms`: 0 is no window, nothing the guest's default.
    pub fn from_millis(ms: Option<u32>) -> Self {
        match ms.map(std::num::NonZeroU32::new) {
            None => Self::Default,
            Some(None) => Self::Off,
            Some(Some(ms)) => Self::Millis(ms),
        }
    }

    /// The request's flags and arguments for this window (a swap's Apply and a
    /// PatchApply read it alike: `args[0]` ms, or `NO_HEALTH_WINDOW`).
    pub fn request(self, flags: RequestFlags) -> (RequestFlags, [u64; 4]) {
        match self {
            Self::Default => (
                flags,
                [
                    u64::from(DEFAULT_HEALTH_MS.load(Ordering::Relaxed)),
                    0,
                    0,
                    0,
                ],
            ),
            Self::Millis(ms) => (flags, [u64::from(ms.get()), 0, 0, 0]),
            Self::Off => (flags | RequestFlags::NO_HEALTH_WINDOW, [0; 4]),
        }
    }
}

impl PushOptions {
    /// The default options with `flags`.
    pub fn with_flags(flags: RequestFlags) -> Self {
        Self {
            flags,
            ..Self::default()
        }
    }

    /// These options without the host's check.
    pub fn without_host_check(self) -> Self {
        Self {
            host_check: false,
            ..self
        }
    }

    /// These options with the health window `health`.
    pub fn with_health(self, health: HealthWindow) -> Self {
        Self { health, ..self }
    }
}

/// The host's check of `package` before a push, without the push: whether it compared
/// (with the plan) or why it could not (the guest checks at staging anyway). A refusal
/// is [`Error::RefusedBeforePush`]. A caller that prints the check's note, or pushes one
/// package many times, checks with this and pushes with
/// [`PushOptions::without_host_check`].
pub fn check_before_push(mailbox: &Mailbox, package: &[u8]) -> Result<HostCheck> {
    Ok(check::before_push(mailbox, package)?)
}

fn check_if_asked(mailbox: &Mailbox, package: &[u8], opts: &PushOptions) -> Result<()> {
    if opts.host_check {
        check_before_push(mailbox, package)?;
    }
    Ok(())
}

/// A finished request that failed: the guest's status and message.
#[derive(Debug, Clone)]
pub struct Refused {
    pub status: Status,
    pub message: String,
    pub report: Option<Report>,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status,
            self.status.code(),
            self.message
        )
    }
}

/// The answer, or the guest's refusal when its status is an error.
// Both sides carry the guest's report; one is made per mailbox request, so boxing the
// refusal would buy nothing.
#[allow(clippy::result_large_err)]
pub(crate) fn outcome(answer: Answer) -> std::result::Result<Answer, Refused> {
    if answer.response.status.is_error() {
        Err(Refused {
            status: answer.response.status,
            message: answer.response.message.to_string(),
            report: answer.report,
        })
    } else {
        Ok(answer)
    }
}

/// Stages `package` in the VM behind `mailbox`. `Ok(Err(_))` is the guest's refusal;
/// `Err(Error::RefusedBeforePush(_))` the host's check's, before anything was pushed;
/// any other `Err(_)` a failure of the host side (no guest, no answer).
pub fn stage(
    mailbox: &mut Mailbox,
    package: &[u8],
    opts: &PushOptions,
    progress: impl FnMut(&Response),
) -> Result<std::result::Result<(StageReport, Answer), Refused>> {
    check_if_asked(mailbox, package, opts)?;
    let answer = mailbox.call(
        Command::Stage,
        opts.flags,
        Some(package),
        [0; 4],
        REQUEST_TIMEOUT,
        progress,
    )?;
    Ok(outcome(answer).map(|a| {
        let report = match &a.report {
            Some(Report::Stage(r)) => r.clone(),
            _ => StageReport::default(),
        };
        (report, a)
    }))
}

/// Applies the staged package; the answer carries the swap report (applied, or rolled
/// back with the reason).
pub fn apply(
    mailbox: &mut Mailbox,
    flags: RequestFlags,
) -> Result<std::result::Result<SwapReport, Refused>> {
    apply_with(mailbox, flags, HealthWindow::Default)
}

/// [`apply`] with the health window `health`.
pub fn apply_with(
    mailbox: &mut Mailbox,
    flags: RequestFlags,
    health: HealthWindow,
) -> Result<std::result::Result<SwapReport, Refused>> {
    apply_faulting(mailbox, flags, health, None)
}

/// [`apply_with`], the conversion of `converter_fault` failing on purpose (with
/// `RequestFlags::INJECT_CONVERTER_FAIL`: a test of the rollback from each converter).
pub fn apply_faulting(
    mailbox: &mut Mailbox,
    flags: RequestFlags,
    health: HealthWindow,
    converter_fault: Option<image_format::RecordKind>,
) -> Result<std::result::Result<SwapReport, Refused>> {
    let (mut flags, mut args) = health.request(flags);
    if let Some(kind) = converter_fault {
        flags |= RequestFlags::INJECT_CONVERTER_FAIL;
        args[1] = u64::from(kind.get());
    }
    let answer = mailbox.call(Command::Apply, flags, None, args, REQUEST_TIMEOUT, |_| {})?;
    swap_outcome(answer)
}

fn swap_outcome(answer: Answer) -> Result<std::result::Result<SwapReport, Refused>> {
    Ok(match outcome(answer) {
        Ok(Answer {
            report: Some(Report::Swap(r)),
            ..
        }) => Ok(r),
        Ok(a) => {
            return Err(Error::Mailbox(format!(
                "the guest answered apply without a swap report ({})",
                a.response.message
            )))
        }
        Err(refused) => Err(refused),
    })
}

/// Stages and applies in one request (`APPLY_AFTER_STAGE`), after the host's check
/// as [`stage`].
pub fn push_and_apply(
    mailbox: &mut Mailbox,
    package: &[u8],
    opts: &PushOptions,
    progress: impl FnMut(&Response),
) -> Result<std::result::Result<SwapReport, Refused>> {
    check_if_asked(mailbox, package, opts)?;
    let (flags, args) = opts
        .health
        .request(opts.flags | RequestFlags::APPLY_AFTER_STAGE);
    let answer = mailbox.call(
        Command::Stage,
        flags,
        Some(package),
        args,
        REQUEST_TIMEOUT,
        progress,
    )?;
    swap_outcome(answer)
}

/// Every task's state, taken with all CPUs stopped.
pub fn snapshot(mailbox: &mut Mailbox) -> Result<Snapshot> {
    let answer = mailbox.request(Command::Snapshot, [0; 4])?;
    match outcome(answer) {
        Ok(Answer {
            report: Some(Report::Snapshot(s)),
            ..
        }) => Ok(s),
        Ok(_) => Err(Error::Mailbox("snapshot answered without a report".into())),
        Err(r) => Err(Error::Mailbox(format!("snapshot refused: {r}"))),
    }
}

/// `len` bytes of the running image at virtual address `address`, as its CPUs see them
/// (at most [`MAX_IMAGE_READ`](image_format::mailbox::report::MAX_IMAGE_READ)).
pub fn read_image(mailbox: &mut Mailbox, address: u64, len: usize) -> Result<Vec<u8>> {
    let answer = mailbox.request(Command::ReadImage, [address, len as u64, 0, 0])?;
    match outcome(answer) {
        Ok(Answer {
            report: Some(Report::ImageBytes(b)),
            ..
        }) if b.address == address && b.bytes.len() == len => Ok(b.bytes),
        Ok(_) => Err(Error::Mailbox(format!(
            "read of {len} bytes at {address:#x} answered without those bytes"
        ))),
        Err(r) => Err(Error::Mailbox(format!("read of the image refused: {r}"))),
    }
}
