//! Running inputs against a live guest and checking it after each: [`Target`] writes
//! an [`Input`]'s steps into the mailbox (through a mapping of its own, so that it can
//! write blocks the real client never would), follows the guest's answers, and
//! [`Target::check`]s that the guest survived.
//!
//! The check after every input: QEMU still runs, the status block's heartbeat advances,
//! a `Ping` is answered `Ok`, and a snapshot of every task is continuous with the one
//! taken after the previous input ([`crate::continuity`]). And what the input asked of
//! the guest ([`Expect`]): a request block that was never whole, or a sequence number
//! already used, is never answered; a damaged package or patch is never accepted; a
//! request the guest accepted (`InProgress`) is answered in the end.
//!
//! Waits poll the response and status blocks (every 200 µs, as [`Mailbox::wait_done`]
//! does) until the guest's heartbeat has advanced far enough or an answer shows, each
//! bounded by a hang guard; none waits for a fixed time.

use std::fs::OpenOptions;
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use image_format::mailbox::report::{Report, Snapshot};
use image_format::mailbox::{
    fnv1a64, BlockRead, Command, GuestState, GuestStatus, Request, RequestFlags, Response,
    ResponseState, Status, BLOCK_SIZE, DATA_OFFSET, REQUEST_OFFSET, RESPONSE_OFFSET, STATUS_OFFSET,
};
use memmap2::MmapMut;

use super::input::{Expect, Framing, Input, RawRequest, SeqSpec, Step};
use crate::continuity;
use crate::error::{Error, Result};
use crate::mailbox::Mailbox;
use crate::vm::watch::Watch;
use crate::vm::VmPaths;

/// Longest wait for anything (an answer, a heartbeat): a hang guard, not a target.
const GUARD: Duration = Duration::from_secs(120);
/// Service steps after which a request that can never be taken counts as ignored.
const QUIET_IGNORED: u64 = 3;
/// Service steps after which a whole, new request no answer showed for counts as not
/// answered (the guest reads the request block every step; snapshot and patch jobs
/// answer from the BSP's next checkpoint, well within this).
const QUIET_TAKEN: u64 = 10;
/// How often the blocks are polled.
const POLL: Duration = Duration::from_micros(200);

/// Why the fuzzer stopped: what the check found wrong with the guest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    /// QEMU is gone.
    #[error("the guest died: {0}")]
    Died(String),
    /// The heartbeat stopped, or a wait for the guest ran into the hang guard.
    #[error("the guest hangs: {0}")]
    Hang(String),
    /// The guest answered a ping with something other than `Ok`.
    #[error("the guest answered a ping with {status:?}: {message}")]
    Ping { status: Status, message: String },
    /// The snapshot after the input is not continuous with the one before.
    #[error("tasks are not continuous: {}", .0.join("; "))]
    Discontinuous(Vec<String>),
    /// The guest did what the input's [`Expect`] rules out.
    #[error("{0}")]
    Broken(String),
    /// The host side failed in a way that says something about the guest (an
    /// unreadable report, a snapshot refused).
    #[error("{0}")]
    Mailbox(String),
}

/// One request written during an input, and what became of it.
#[derive(Debug, Clone)]
struct Sent {
    seq: u64,
    command: u32,
    flags: u32,
    expect: Expect,
    /// A block the guest may take (whole and new); others must be ignored.
    may_be_taken: bool,
    in_progress: bool,
    done: Option<Status>,
    /// The guest answered a later request before an answer to this one showed: it is
    /// over (the guest takes requests in order), answered or not — the one response
    /// block may have been rewritten before it was read.
    overtaken: bool,
    /// For a stale sequence number: the response block when it was written (its seq may
    /// be this one, answered before); only a different answer is an answer to it.
    baseline: Option<Response>,
}

impl Sent {
    /// Accepted, and neither answered nor overtaken yet.
    fn busy(&self) -> bool {
        self.in_progress && self.done.is_none() && !self.overtaken
    }

    fn outcome(&self) -> Outcome {
        match (self.done, self.overtaken) {
            (Some(status), _) => Outcome::Answered(status),
            (None, true) => Outcome::Overtaken,
            (None, false) => Outcome::NoAnswer,
        }
    }
}

/// What became of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered `Done` with this status.
    Answered(Status),
    /// A later request was answered before an answer to this one showed.
    Overtaken,
    /// No answer showed, and none came to a later request of the input either.
    NoAnswer,
}

/// An outcome's name in the counts.
pub fn outcome_name(outcome: Outcome) -> String {
    match outcome {
        Outcome::Answered(status) => format!("{status:?}"),
        Outcome::Overtaken => "overtaken".to_owned(),
        Outcome::NoAnswer => "no answer".to_owned(),
    }
}

/// A live guest the fuzzer writes to.
pub struct Target {
    mailbox: Mailbox,
    map: MmapMut,
    watch: Watch,
    /// The largest sequence number written or answered: the next one is above it.
    high_water: u64,
    /// The largest sequence number the guest answered: a stale one is at most this.
    answered: u64,
    sent: Vec<Sent>,
    previous: Option<Snapshot>,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

impl Target {
    /// Opens the mailbox of the VM whose files are `paths`, pings it and takes the first
    /// snapshot.
    pub fn open(paths: &VmPaths) -> Result<Self> {
        let mailbox = Mailbox::open(paths)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&paths.mailbox)
            .map_err(io(format!("open the mailbox {}", paths.mailbox.display())))?;
        // SAFETY: the VM's shared memory, as `Mailbox::open_file` maps it: the guest
        // changes it under us, so every block is copied out before it is decoded, and
        // the host writes only its own blocks (request and data).
        #[allow(unsafe_code)]
        let map = unsafe { MmapMut::map_mut(&file) }
            .map_err(io(format!("map the mailbox {}", paths.mailbox.display())))?;
        if map.len() <= DATA_OFFSET {
            return Err(Error::Mailbox(format!(
                "mailbox {} is only {} bytes",
                paths.mailbox.display(),
                map.len()
            )));
        }
        let high_water = mailbox.next_seq().saturating_sub(1);
        let mut t = Target {
            mailbox,
            map,
            watch: Watch::for_vm(paths),
            high_water,
            answered: high_water,
            sent: Vec::new(),
            previous: None,
        };
        mailbox_ok(t.check())?;
        Ok(t)
    }

    /// The mailbox, for the guest's status.
    pub fn mailbox(&self) -> &Mailbox {
        &self.mailbox
    }

    fn status(&self) -> Option<GuestStatus> {
        let block = self
            .map
            .get(STATUS_OFFSET..STATUS_OFFSET + BLOCK_SIZE)?
            .to_vec();
        GuestStatus::decode(&block).ok()
    }

    /// (boot sequence, heartbeat), read again while the guest rewrites the block.
    fn beat(&self) -> std::result::Result<(u64, u64), Finding> {
        let deadline = Instant::now() + GUARD;
        loop {
            if let Some(s) = self.status() {
                return Ok((s.boot_seq, s.heartbeat));
            }
            self.alive()?;
            if Instant::now() > deadline {
                return Err(Finding::Hang("the status block stays unreadable".into()));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Service steps since `start` (a swap restarts the count: any step of the new
    /// kernel counts from there).
    fn beats_since(&self, start: (u64, u64)) -> std::result::Result<u64, Finding> {
        let (boot, beat) = self.beat()?;
        Ok(if boot == start.0 {
            beat.saturating_sub(start.1)
        } else {
            beat.saturating_add(1)
        })
    }

    fn alive(&self) -> std::result::Result<(), Finding> {
        match self.watch.death() {
            None => Ok(()),
            Some(death) => Err(Finding::Died(
                Error::GuestDied {
                    vm: self.watch.name().to_owned(),
                    waiting_for: "the fuzzer's next step".into(),
                    death: Box::new(death),
                }
                .to_string(),
            )),
        }
    }

    fn wait_beats(&mut self, beats: u64) -> std::result::Result<(), Finding> {
        let start = self.beat()?;
        let deadline = Instant::now() + GUARD;
        let mut next_watch = Instant::now();
        while self.beats_since(start)? < beats {
            self.record();
            if Instant::now() >= next_watch {
                self.alive()?;
                next_watch = Instant::now() + Duration::from_millis(100);
            }
            if Instant::now() > deadline {
                return Err(Finding::Hang(format!(
                    "the heartbeat did not advance {beats} times within {GUARD:?}"
                )));
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// The response block, when it is whole.
    fn observe(&self) -> Option<Response> {
        let block = self
            .map
            .get(RESPONSE_OFFSET..RESPONSE_OFFSET + Response::SIZE)?;
        // A copy: the guest may rewrite the block while it is decoded.
        let copy: Vec<u8> = block.to_vec();
        match Response::decode(&copy) {
            BlockRead::Valid(r) => Some(r),
            _ => None,
        }
    }

    /// Notes the response block's answer, if it is to one of this input's requests.
    fn record(&mut self) {
        let Some(r) = self.observe() else { return };
        self.high_water = self.high_water.max(r.seq);
        if r.state == ResponseState::Done {
            self.answered = self.answered.max(r.seq);
        }
        for s in self
            .sent
            .iter_mut()
            .filter(|s| s.seq < r.seq && s.done.is_none())
        {
            s.overtaken = true;
        }
        if let Some(s) = self
            .sent
            .iter_mut()
            .find(|s| s.seq == r.seq && s.baseline.as_ref() != Some(&r))
        {
            match r.state {
                ResponseState::Done => s.done = Some(r.status),
                ResponseState::InProgress => s.in_progress = true,
            }
        }
    }

    fn write_block(&mut self, bytes: &[u8]) {
        if let Some(dst) = self
            .map
            .get_mut(REQUEST_OFFSET..REQUEST_OFFSET + bytes.len())
        {
            dst.copy_from_slice(bytes);
        }
    }

    /// Writes `Request::SIZE` bytes: the body, a release fence, then `seq_end`.
    fn write_sealed(&mut self, block: &[u8; Request::SIZE]) {
        self.write_block(&block[..Request::SEQ_END_OFFSET]);
        fence(Ordering::Release);
        self.write_block(block);
    }

    fn write_data(&mut self, offset: u64, bytes: &[u8]) -> std::result::Result<(), Finding> {
        let at = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(DATA_OFFSET))
            .filter(|&at| at.saturating_add(bytes.len()) <= self.map.len());
        match at.and_then(|at| self.map.get_mut(at..at + bytes.len())) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(Finding::Mailbox(format!(
                "{} bytes at {offset} do not fit the data area: the input does not suit this VM",
                bytes.len()
            ))),
        }
    }

    /// Writes `r` as its framing says and rings the doorbell; returns its sequence
    /// number.
    fn send(&mut self, r: &RawRequest) -> std::result::Result<u64, Finding> {
        self.record();
        let seq = match r.seq {
            SeqSpec::Next { skip } => self.high_water + 1 + u64::from(skip),
            SeqSpec::Stale { back } => self.answered.saturating_sub(u64::from(back)).max(1),
        };
        let mut block = encode(seq, r);
        let mut may_be_taken = matches!(r.seq, SeqSpec::Next { .. });
        if let SeqSpec::Next { .. } = r.seq {
            self.high_water = seq;
        }
        match &r.framing {
            Framing::Sealed => self.write_sealed(&block),
            Framing::BodyOnly => {
                self.write_block(&block[..Request::SEQ_END_OFFSET]);
                may_be_taken = false;
            }
            Framing::SeqEndDiffers { delta } => {
                let end = seq.wrapping_add((*delta).max(1));
                block[Request::SEQ_END_OFFSET..].copy_from_slice(&end.to_le_bytes());
                self.write_sealed(&block);
                may_be_taken = false;
            }
            Framing::BadChecksum { xor } => {
                let at = Request::SEQ_END_OFFSET - 8;
                let sum = u64::from_le_bytes(block_u64(&block, at)) ^ (*xor).max(1);
                block[at..at + 8].copy_from_slice(&sum.to_le_bytes());
                self.write_sealed(&block);
                may_be_taken = false;
            }
            Framing::SeqChangedAfter { beats, delta } => {
                self.write_sealed(&block);
                self.mailbox.ring();
                self.wait_beats(u64::from(*beats))?;
                let changed = seq.wrapping_add((*delta).max(1));
                self.high_water = self.high_water.max(changed);
                self.write_block(&changed.to_le_bytes());
            }
            Framing::Slow { beats } => {
                self.write_block(&block[..Request::SEQ_END_OFFSET]);
                self.mailbox.ring();
                self.wait_beats(u64::from(*beats))?;
                self.write_block(&block);
            }
            Framing::Garbage { bytes } => {
                let mut g = [0u8; Request::SIZE];
                let n = bytes.len().min(Request::SIZE);
                g[..n].copy_from_slice(&bytes[..n]);
                // Random bytes are whole only if both copies of the sequence number
                // agree and the checksum matches; make sure they do not.
                if g[..8] == g[Request::SEQ_END_OFFSET..] {
                    g[Request::SEQ_END_OFFSET] ^= 1;
                }
                self.write_sealed(&g);
                may_be_taken = false;
            }
        }
        self.mailbox.ring();
        let baseline = match r.seq {
            SeqSpec::Stale { .. } => self.observe(),
            SeqSpec::Next { .. } => None,
        };
        self.sent.push(Sent {
            baseline,
            seq,
            command: r.command,
            flags: r.flags,
            expect: r.expect,
            may_be_taken,
            in_progress: false,
            done: None,
            overtaken: false,
        });
        Ok(seq)
    }

    /// Waits until the guest took the last request (see [`Step::Taken`]).
    fn taken(&mut self) -> std::result::Result<(), Finding> {
        let Some(last) = self.sent.len().checked_sub(1) else {
            return Ok(());
        };
        let start = self.beat()?;
        let since = Instant::now();
        loop {
            self.record();
            let s = &self.sent[last];
            if s.in_progress || s.done.is_some() || self.beats_since(start)? >= QUIET_TAKEN {
                return Ok(());
            }
            self.alive()?;
            if since.elapsed() > GUARD {
                return Err(Finding::Hang(format!(
                    "the heartbeat did not advance {QUIET_TAKEN} times within {GUARD:?}"
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the last request is answered, or the guest has plainly moved on
    /// without answering it (and finished whatever else of this input it accepted).
    fn settle(&mut self) -> std::result::Result<(), Finding> {
        let Some(last) = self.sent.len().checked_sub(1) else {
            return Ok(());
        };
        let start = self.beat()?;
        let since = Instant::now();
        let mut next_watch = since;
        loop {
            self.record();
            let s = &self.sent[last];
            let busy = self.sent.iter().any(Sent::busy);
            if s.done.is_some() && !busy {
                return Ok(());
            }
            let quiet = if s.may_be_taken {
                QUIET_TAKEN
            } else {
                QUIET_IGNORED
            };
            if !busy && self.beats_since(start)? >= quiet {
                return Ok(());
            }
            if Instant::now() >= next_watch {
                self.alive()?;
                next_watch = Instant::now() + Duration::from_millis(100);
            }
            if since.elapsed() > GUARD {
                let pending: Vec<String> = self
                    .sent
                    .iter()
                    .filter(|s| s.busy())
                    .map(|s| format!("request {} (command {})", s.seq, s.command))
                    .collect();
                return Err(Finding::Hang(format!(
                    "{} accepted but not answered within {GUARD:?}",
                    pending.join(", ")
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Takes back what this input's requests did when they succeeded: a package staged
    /// and not applied (`Reset`), patches applied (`PatchRemove`, once each).
    fn undo(&mut self) -> std::result::Result<(), Finding> {
        self.record();
        let staged = self.sent.iter().any(|s| {
            s.command == Command::Stage.code()
                && s.flags & RequestFlags::APPLY_AFTER_STAGE.bits() == 0
                && s.done == Some(Status::Ok)
        });
        let patches = self
            .sent
            .iter()
            .filter(|s| s.command == Command::PatchApply.code() && s.done == Some(Status::Ok))
            .count();
        if patches > 0 {
            // A snapshot while the patches are in: a counter's state records the step
            // its code takes, so only snapshots on both sides of each change let the
            // continuity check follow it.
            self.check()?;
        }
        let mut undo = Vec::new();
        if staged {
            undo.push(Command::Reset);
        }
        undo.extend(std::iter::repeat_n(Command::PatchRemove, patches));
        for command in undo {
            let seq = self.send(&internal(command))?;
            self.settle()?;
            match self.sent.iter().find(|s| s.seq == seq).map(Sent::outcome) {
                Some(Outcome::Answered(Status::Ok)) => {}
                other => {
                    return Err(Finding::Broken(format!(
                        "taking back an accepted input with {command} got {}",
                        other.map_or_else(|| "nothing".to_owned(), outcome_name)
                    )))
                }
            }
        }
        Ok(())
    }

    /// Runs `input`; returns each of its requests with what became of it (after the
    /// check, which ends every wait).
    pub fn run(&mut self, input: &Input) -> std::result::Result<Vec<(u32, Outcome)>, Finding> {
        self.sent.clear();
        for step in &input.steps {
            match step {
                Step::Data { offset, bytes } => self.write_data(*offset, bytes)?,
                Step::Request(r) => {
                    self.send(r)?;
                }
                Step::Beats { beats } => self.wait_beats(u64::from(*beats))?,
                Step::Taken => self.taken()?,
                Step::Settle => self.settle()?,
                Step::Undo => {
                    self.settle()?;
                    let n = self.sent.len();
                    self.undo()?;
                    self.sent.truncate(n);
                }
            }
        }
        self.settle()?;
        let outcomes: Vec<(u32, Outcome)> =
            self.sent.iter().map(|s| (s.command, s.outcome())).collect();
        self.expectations()?;
        self.check()?;
        Ok(outcomes)
    }

    fn expectations(&self) -> std::result::Result<(), Finding> {
        for s in &self.sent {
            match (s.expect, s.done) {
                (Expect::Ignored, Some(status)) => {
                    return Err(Finding::Broken(format!(
                        "request {} (command {}) should have been ignored (torn or stale) but was answered {status:?}",
                        s.seq, s.command
                    )))
                }
                (Expect::Refused, Some(status)) if !status.is_error() => {
                    return Err(Finding::Broken(format!(
                        "request {} (command {}) with a damaged payload was answered {status:?}",
                        s.seq, s.command
                    )))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Sends `command` as a whole new request and waits for its answer.
    fn call(&mut self, command: Command) -> std::result::Result<crate::mailbox::Answer, Finding> {
        self.alive()?;
        let seq = self.send(&internal(command))?;
        let answer = self
            .mailbox
            .wait_done(seq, GUARD, |_| {})
            .map_err(|e| match e {
                Error::GuestDied { .. } => Finding::Died(e.to_string()),
                e => Finding::Hang(format!("{command}: {e}")),
            })?;
        self.answered = self.answered.max(seq);
        Ok(answer)
    }

    /// The check after an input: alive, heartbeat, ping, continuity, and the status
    /// block back to `Running` (no staging or swap left half done).
    pub fn check(&mut self) -> std::result::Result<(), Finding> {
        self.alive()?;
        self.wait_beats(1)?;
        let since = Instant::now();
        loop {
            match self.status().map(|s| s.state) {
                Some(GuestState::Running) => break,
                state if since.elapsed() > GUARD => {
                    return Err(Finding::Hang(format!(
                        "the status block says {} for {GUARD:?} after the input",
                        state.map_or_else(|| "nothing readable".to_owned(), |s| s.to_string())
                    )))
                }
                _ => {
                    self.alive()?;
                    std::thread::sleep(POLL);
                }
            }
        }
        let ping = self.call(Command::Ping)?;
        if ping.response.status != Status::Ok {
            return Err(Finding::Ping {
                status: ping.response.status,
                message: ping.response.message.to_string(),
            });
        }
        let answer = self.call(Command::Snapshot)?;
        let snapshot = match answer.report {
            Some(Report::Snapshot(s)) if answer.response.status == Status::Ok => s,
            _ => {
                return Err(Finding::Mailbox(format!(
                    "a snapshot was answered {:?} without a snapshot report: {}",
                    answer.response.status, answer.response.message
                )))
            }
        };
        if let Some(before) = &self.previous {
            let c = continuity::check(before, &snapshot, &[]);
            if !c.ok() {
                return Err(Finding::Discontinuous(c.problems));
            }
        }
        self.previous = Some(snapshot);
        Ok(())
    }

    /// Tasks in the last snapshot.
    pub fn tasks(&self) -> usize {
        self.previous.as_ref().map_or(0, |s| s.tasks.len())
    }
}

fn mailbox_ok(r: std::result::Result<(), Finding>) -> Result<()> {
    r.map_err(|f| Error::Mailbox(format!("the guest fails the fuzzer's first check: {f}")))
}

fn internal(command: Command) -> RawRequest {
    RawRequest {
        seq: SeqSpec::Next { skip: 0 },
        command: command.code(),
        flags: 0,
        payload_len: 0,
        args: [0; 4],
        framing: Framing::Sealed,
        expect: Expect::Any,
    }
}

fn block_u64(block: &[u8; Request::SIZE], at: usize) -> [u8; 8] {
    let mut b = [0u8; 8];
    if let Some(s) = block.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    b
}

/// The request block for `r` as request `seq`, whole and with a right checksum (the
/// command and flags as given, known or not).
pub fn encode(seq: u64, r: &RawRequest) -> [u8; Request::SIZE] {
    let mut b = [0u8; Request::SIZE];
    let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    put(0x00, &seq.to_le_bytes());
    put(0x08, &r.command.to_le_bytes());
    put(0x0c, &r.flags.to_le_bytes());
    put(0x10, &r.payload_len.to_le_bytes());
    for (i, a) in r.args.iter().enumerate() {
        put(0x18 + 8 * i, &a.to_le_bytes());
    }
    put(Request::SEQ_END_OFFSET, &seq.to_le_bytes());
    let sum = fnv1a64(&b[..Request::SEQ_END_OFFSET - 8]);
    b[Request::SEQ_END_OFFSET - 8..Request::SEQ_END_OFFSET].copy_from_slice(&sum.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_matches_the_real_request_for_known_commands() {
        let r = RawRequest {
            seq: SeqSpec::Next { skip: 0 },
            command: Command::Stage.code(),
            flags: RequestFlags::APPLY_AFTER_STAGE.bits(),
            payload_len: 4096,
            args: [1, 2, 3, 4],
            framing: Framing::Sealed,
            expect: Expect::Any,
        };
        let mut real = Request::new(9, Command::Stage);
        real.flags = RequestFlags::APPLY_AFTER_STAGE;
        real.payload_len = 4096;
        real.args = [1, 2, 3, 4];
        assert_eq!(&encode(9, &r), real.seal().bytes());
        let unknown = RawRequest { command: 77, ..r };
        assert!(matches!(
            Request::decode(&encode(9, &unknown)),
            BlockRead::Invalid { seq: 9, .. }
        ));
    }
}
