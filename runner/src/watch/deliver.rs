//! Sending a change into the VM with each step timed: a hotpatch (delivery, then the
//! patch request, retried while a CPU stands in a site), a swap (delivery, staging, then
//! the apply request), or the removal of every applied patch.
//!
//! Delivery is the host's copy into the shared-memory mailbox; staging is the guest's
//! stage request (copy into its staging buffer, hash, layout, the dry run of the new
//! bootstrap) from the doorbell to its answer; apply is the apply request from the
//! doorbell to its answer (the swap's downtime and the patch's pause are inside it, and
//! the guest's own figures for them are in its report).

use std::time::{Duration, Instant};

use image_format::mailbox::report::{PatchReport, Report, SwapReport};
use image_format::mailbox::{Command, Request, RequestFlags};

use crate::error::{Error, Result};
use crate::hotpatch;
use crate::mailbox::{Answer, Mailbox};
use crate::update::{self, outcome, Refused};

/// Where a delivery's time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Steps {
    /// Host write into the mailbox.
    pub delivery: Duration,
    /// The guest's staging (swaps only).
    pub staging: Option<Duration>,
    /// The apply (or patch) request.
    pub apply: Duration,
}

/// Writes `payload`, sends `command` and waits for its answer; returns how long the
/// write took and the answer (whose `elapsed` is from the doorbell to `Done`).
fn call_timed(
    mb: &mut Mailbox,
    command: Command,
    flags: RequestFlags,
    payload: Option<&[u8]>,
) -> Result<(Duration, Answer)> {
    let started = Instant::now();
    if let Some(p) = payload {
        mb.write_data(p)?;
    }
    let delivery = started.elapsed();
    let seq = mb.next_seq();
    let mut request = Request::new(seq, command);
    request.flags = flags;
    request.payload_len = payload.map_or(0, |p| p.len() as u64);
    mb.send(&request)?;
    let answer = mb.wait_done(seq, update::REQUEST_TIMEOUT, |_| {})?;
    Ok((delivery, answer))
}

/// A hotpatch applied, or the guest's refusal, with the steps' times.
pub type PatchOutcome = (std::result::Result<PatchReport, Refused>, Steps);

/// Applies `patch`; a refusal of the moment (a CPU stood in a site) is tried again, at
/// most [`hotpatch::TRANSIENT_ATTEMPTS`] times.
pub fn hotpatch(mb: &mut Mailbox, patch: &[u8]) -> Result<PatchOutcome> {
    let mut steps = Steps::default();
    for attempt in 1..=hotpatch::TRANSIENT_ATTEMPTS {
        let (delivery, answer) =
            call_timed(mb, Command::PatchApply, RequestFlags::empty(), Some(patch))?;
        steps.delivery += delivery;
        steps.apply += answer.elapsed;
        let result = match outcome(answer) {
            Ok(Answer {
                report: Some(Report::Patch(r)),
                ..
            }) if r.refused.is_none() => Ok(r),
            Ok(a) => {
                return Err(Error::Mailbox(format!(
                    "the guest answered a patch apply without a patch report ({})",
                    a.response.message
                )))
            }
            Err(refused) => Err(refused),
        };
        match result {
            Err(r) if hotpatch::is_transient(&r) && attempt < hotpatch::TRANSIENT_ATTEMPTS => {}
            result => return Ok((result, steps)),
        }
    }
    unreachable!("the last attempt returns")
}

/// What a swap came to.
#[derive(Debug)]
pub enum SwapOutcome {
    /// Swapped (or rolled back: the report's outcome says which).
    Swapped(SwapReport),
    /// The guest refused to stage it; nothing was stopped.
    NotStaged(Refused),
    /// Staged, but the dry run of the new bootstrap predicts a refusal: released
    /// without applying.
    Predicted(String),
    /// Staged, then the apply was refused.
    Refused(Refused),
}

/// Stages `package`, then applies it.
pub fn swap(mb: &mut Mailbox, package: &[u8]) -> Result<(SwapOutcome, Steps)> {
    let (delivery, answer) = call_timed(mb, Command::Stage, RequestFlags::empty(), Some(package))?;
    let mut steps = Steps {
        delivery,
        staging: Some(answer.elapsed),
        apply: Duration::ZERO,
    };
    let staged = match outcome(answer) {
        Ok(a) => a,
        Err(refused) => return Ok((SwapOutcome::NotStaged(refused), steps)),
    };
    let message = staged.response.message.to_string();
    if message.contains(crate::plan::PREDICTS_REFUSAL) {
        mb.request(Command::Reset, [0; 4])?;
        return Ok((SwapOutcome::Predicted(message), steps));
    }
    let started = Instant::now();
    let applied = update::apply(mb, RequestFlags::empty())?;
    steps.apply = started.elapsed();
    Ok((
        match applied {
            Ok(report) => SwapOutcome::Swapped(report),
            Err(refused) => SwapOutcome::Refused(refused),
        },
        steps,
    ))
}

/// Removes every applied patch (down to the bottom one, `bottom`).
pub fn unpatch(mb: &mut Mailbox, bottom: u64) -> Result<PatchOutcome> {
    let started = Instant::now();
    let result = hotpatch::remove(mb, Some(bottom))?;
    Ok((
        result,
        Steps {
            apply: started.elapsed(),
            ..Steps::default()
        },
    ))
}
