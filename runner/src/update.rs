//! Live-update operations on a running VM, shared by the CLI, the demo, the benchmarks
//! and the integration tests: package a kernel, stage it, apply it, take snapshots.

use std::path::{Path, PathBuf};
use std::time::Duration;

use image_format::mailbox::report::{Report, Snapshot, StageReport, SwapReport};
use image_format::mailbox::{Command, RequestFlags, Response, Status};
use image_format::package::{pack, PackOptions};

use crate::build::{self, Variant};
use crate::error::{Error, Result};
use crate::mailbox::{Answer, Mailbox};
use crate::workspace;

/// How long a request may take before the runner gives up (a hang guard, not a target).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Packs the kernel ELF at `elf` (label: the ELF's own unless `label` is given).
pub fn pack_elf(elf: &Path, label: Option<String>) -> Result<Vec<u8>> {
    let bytes = std::fs::read(elf).map_err(|e| Error::io(format!("read {}", elf.display()), e))?;
    pack(&bytes, &PackOptions { label })
        .map_err(|e| Error::Package(format!("cannot pack {}: {e}", elf.display())))
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
/// `Err(_)` a failure of the host side (no guest, no answer).
pub fn stage(
    mailbox: &mut Mailbox,
    package: &[u8],
    flags: RequestFlags,
    progress: impl FnMut(&Response),
) -> Result<std::result::Result<(StageReport, Answer), Refused>> {
    let answer = mailbox.call(
        Command::Stage,
        flags,
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
    let answer = mailbox.call(Command::Apply, flags, None, [0; 4], REQUEST_TIMEOUT, |_| {})?;
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

/// Stages and applies in one request (`APPLY_AFTER_STAGE`).
pub fn push_and_apply(
    mailbox: &mut Mailbox,
    package: &[u8],
    flags: RequestFlags,
    progress: impl FnMut(&Response),
) -> Result<std::result::Result<SwapReport, Refused>> {
    let answer = mailbox.call(
        Command::Stage,
        flags | RequestFlags::APPLY_AFTER_STAGE,
        Some(package),
        [0; 4],
        REQUEST_TIMEOUT,
        progress,
    )?;
    swap_outcome(answer)
}

/// Every task's state, taken with all CPUs stopped.
pub fn snapshot(mailbox: &mut Mailbox) -> Result<Snapshot> {
    let answer = mailbox.call(
        Command::Snapshot,
        RequestFlags::empty(),
        None,
        [0; 4],
        REQUEST_TIMEOUT,
        |_| {},
    )?;
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
    let answer = mailbox.call(
        Command::ReadImage,
        RequestFlags::empty(),
        None,
        [address, len as u64, 0, 0],
        REQUEST_TIMEOUT,
        |_| {},
    )?;
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
