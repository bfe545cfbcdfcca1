//! The host side of the mailbox: the shared-memory file QEMU's `ivshmem-plain` device
//! maps into the guest (layout and framing in `image_format::mailbox`), plus the
//! doorbell (a byte on the guest's COM2).
//!
//! One exchange: write the payload into the data area, write the request block (body,
//! fence, then `seq_end` — [`image_format::mailbox::SealedBlock::write_to`]), ring the
//! doorbell, then read the response block until it answers this request's `seq` with
//! `Done`. A response is read only when whole (both sequence copies and the checksum
//! agree). One client at a time talks to one VM's mailbox: a mailbox opened for a VM
//! takes the VM's mailbox lock ([`crate::vm::lock`]) for its life ([`Mailbox::open`])
//! or for each request ([`Mailbox::open_per_request`]), or opens it to read the status
//! block only ([`Mailbox::open_status`], which sends nothing).
//!
//! A mailbox opened for a VM ([`Mailbox::open`]) also watches the VM while it waits for
//! an answer ([`crate::vm::watch`]): when QEMU is gone, the wait ends within
//! [`WATCH_EVERY`] (plus up to a second for the runner's account of the exit) with
//! [`Error::GuestDied`], which quotes the guest's panic report, instead of running into
//! its timeout.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use image_format::mailbox::report::Report;
use image_format::mailbox::{
    BlockRead, Command, GuestState, GuestStatus, Request, RequestFlags, Response, ResponseState,
    BLOCK_SIZE, DATA_OFFSET, REPORT_CAPACITY, REPORT_OFFSET, REQUEST_OFFSET, RESPONSE_OFFSET,
    STATUS_OFFSET,
};
use memmap2::MmapMut;

use crate::error::{Error, Result};
use crate::term::errln;
use crate::vm::lock::{self, MailboxLock};
use crate::vm::watch::Watch;
use crate::vm::VmPaths;

/// How often a wait for an answer checks that the VM is still there.
pub const WATCH_EVERY: Duration = Duration::from_millis(100);

/// How long a request may take before the runner gives up (a hang guard, not a target).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// An open mailbox.
pub struct Mailbox {
    map: MmapMut,
    doorbell: std::path::PathBuf,
    /// The VM's copy of the ELF it booted, when the mailbox was opened for a VM.
    booted_elf: Option<std::path::PathBuf>,
    /// The VM, when the mailbox was opened for one: a wait for an answer ends when it
    /// is gone.
    watch: Option<Watch>,
    /// The last request sent: its sequence number, command and flags.
    sent: Option<(u64, Command, RequestFlags)>,
    access: Access,
}

/// What a mailbox may send, and under which lock.
#[derive(Debug)]
enum Access {
    /// The VM's mailbox lock, held for the mailbox's life.
    Exclusive(#[allow(dead_code)] MailboxLock),
    /// The VM's mailbox lock, taken for each [`Mailbox::call`].
    PerRequest { vm: String, paths: Box<VmPaths> },
    /// Reads the status block; sends nothing.
    StatusOnly,
    /// A backing file opened directly ([`Mailbox::open_file`]): no lock.
    File,
}

/// The VM's name: its state directory's.
fn vm_name(paths: &VmPaths) -> String {
    paths
        .dir
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Takes the mailbox lock of the VM `vm`, saying on stderr whom it waits for.
fn take_lock(vm: &str, paths: &VmPaths) -> Result<MailboxLock> {
    lock::acquire(vm, paths, lock::wait_limit(), |holder| {
        errln!("hotkernel: waiting for {holder} to finish with VM `{vm}`");
    })
}

/// What a finished request returned.
#[derive(Debug)]
pub struct Answer {
    pub response: Response,
    pub report: Option<Report>,
    /// From writing the request to seeing `Done`.
    pub elapsed: Duration,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

impl Mailbox {
    /// Opens the mailbox of the VM whose files are `paths`, holding the VM's mailbox
    /// lock until dropped: no other client sends anything meanwhile. When another holds
    /// it, waits for it ([`lock::wait_limit`]), saying so on stderr, then fails with
    /// [`Error::VmBusy`].
    pub fn open(paths: &VmPaths) -> Result<Self> {
        let vm = vm_name(paths);
        let held = take_lock(&vm, paths)?;
        Self::open_vm(paths, Access::Exclusive(held))
    }

    /// Opens the mailbox of the VM whose files are `paths` for a client that waits
    /// between requests: each [`Mailbox::call`] takes the VM's mailbox lock for its
    /// exchange (as [`Mailbox::open`] waits for it). The framing primitives
    /// ([`Mailbox::send`], [`Mailbox::wait_done`]) take no lock.
    pub fn open_per_request(paths: &VmPaths) -> Result<Self> {
        let access = Access::PerRequest {
            vm: vm_name(paths),
            paths: Box::new(paths.clone()),
        };
        Self::open_vm(paths, access)
    }

    /// Opens the mailbox of the VM whose files are `paths` to read its status block
    /// only, without the lock: a request through it is refused.
    pub fn open_status(paths: &VmPaths) -> Result<Self> {
        Self::open_vm(paths, Access::StatusOnly)
    }

    fn open_vm(paths: &VmPaths, access: Access) -> Result<Self> {
        let mut mb = Self::open_file(&paths.mailbox, &paths.doorbell_socket)?;
        mb.booted_elf = Some(paths.booted_elf());
        mb.watch = Some(Watch::for_vm(paths));
        mb.access = access;
        Ok(mb)
    }

    fn sends(&self) -> Result<()> {
        match self.access {
            Access::StatusOnly => Err(Error::Mailbox(
                "this mailbox was opened to read the VM's status only (Mailbox::open_status); open it with Mailbox::open to send requests".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Opens a mailbox backing file directly.
    pub fn open_file(file: &Path, doorbell: &Path) -> Result<Self> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(file)
            .map_err(io(format!("open the mailbox {}", file.display())))?;
        // QEMU and the guest change the file under us: every block is copied out and
        // validated (sequence framing and checksum) before use.
        #[allow(unsafe_code)]
        // SAFETY: the file is the VM's shared memory; the host writes only its own blocks.
        let map = unsafe { MmapMut::map_mut(&f) }
            .map_err(io(format!("map the mailbox {}", file.display())))?;
        if map.len() < DATA_OFFSET {
            return Err(Error::Mailbox(format!(
                "mailbox {} is only {} bytes",
                file.display(),
                map.len()
            )));
        }
        Ok(Self {
            map,
            doorbell: doorbell.to_owned(),
            booted_elf: None,
            watch: None,
            sent: None,
            access: Access::File,
        })
    }

    /// Where the VM keeps the ELF it booted (`None` for a mailbox opened by file): the
    /// first place the host looks for the image the VM runs.
    pub fn booted_elf(&self) -> Option<&Path> {
        self.booted_elf.as_deref()
    }

    /// Bytes the data area holds.
    pub fn data_capacity(&self) -> usize {
        self.map.len() - DATA_OFFSET
    }

    /// The guest's status block (an error until a guest wrote it).
    pub fn status(&self) -> Result<GuestStatus> {
        let block = self.map[STATUS_OFFSET..STATUS_OFFSET + BLOCK_SIZE].to_vec();
        GuestStatus::decode(&block).map_err(|e| Error::Mailbox(format!("no guest status yet: {e}")))
    }

    /// Waits until a guest has written its status and is running.
    pub fn wait_running(&self, timeout: Duration) -> Result<GuestStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(s) = self.status() {
                if s.state == GuestState::Running {
                    return Ok(s);
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Mailbox(format!(
                    "the guest did not report running within {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn read_response(&self) -> BlockRead<Response> {
        let block = self.map[RESPONSE_OFFSET..RESPONSE_OFFSET + Response::SIZE].to_vec();
        Response::decode(&block)
    }

    fn read_request(&self) -> BlockRead<Request> {
        let block = self.map[REQUEST_OFFSET..REQUEST_OFFSET + Request::SIZE].to_vec();
        Request::decode(&block)
    }

    /// A sequence number newer than any request written or answered so far.
    pub fn next_seq(&self) -> u64 {
        let last_request = match self.read_request() {
            BlockRead::Valid(r) => r.seq,
            BlockRead::Invalid { seq, .. } => seq,
            _ => 0,
        };
        let last_response = match self.read_response() {
            BlockRead::Valid(r) => r.seq,
            _ => 0,
        };
        last_request.max(last_response) + 1
    }

    /// Writes `payload` into the data area.
    pub fn write_data(&mut self, payload: &[u8]) -> Result<()> {
        self.sends()?;
        if payload.len() > self.data_capacity() {
            return Err(Error::Mailbox(format!(
                "{} bytes do not fit the mailbox's data area ({} bytes)",
                payload.len(),
                self.data_capacity()
            )));
        }
        self.map[DATA_OFFSET..DATA_OFFSET + payload.len()].copy_from_slice(payload);
        Ok(())
    }

    /// Writes `request` (complete, framed) and rings the doorbell.
    pub fn send(&mut self, request: &Request) -> Result<()> {
        self.sends()?;
        let sealed = request.seal();
        sealed
            .write_to(&mut self.map[REQUEST_OFFSET..REQUEST_OFFSET + BLOCK_SIZE])
            .map_err(|e| Error::Mailbox(e.to_string()))?;
        self.sent = Some((request.seq, request.command, request.flags));
        self.ring();
        Ok(())
    }

    /// Writes only the first part of a request block, never its `seq_end`: a request
    /// the guest must ignore (for tests of the framing).
    pub fn send_torn(&mut self, request: &Request) {
        let sealed = request.seal();
        let body = sealed.body();
        self.map[REQUEST_OFFSET..REQUEST_OFFSET + body.len()].copy_from_slice(body);
        self.ring();
    }

    /// One byte on the guest's COM2 (best effort: the guest also polls).
    pub fn ring(&self) {
        if let Ok(mut s) = UnixStream::connect(&self.doorbell) {
            let _ = s.write_all(b"!");
        }
    }

    /// Waits until the guest answers `seq` with `Done`, calling `progress` with each
    /// in-progress answer seen; then reads the report the response names. Ends with
    /// [`Error::GuestDied`] as soon as the VM is seen gone (a mailbox opened for a VM).
    pub fn wait_done(
        &self,
        seq: u64,
        timeout: Duration,
        mut progress: impl FnMut(&Response),
    ) -> Result<Answer> {
        let start = Instant::now();
        let mut last_progress = 0;
        let mut next_watch = start + WATCH_EVERY;
        loop {
            if let BlockRead::Valid(r) = self.read_response() {
                if r.seq == seq {
                    match r.state {
                        ResponseState::Done => {
                            let area =
                                self.map[REPORT_OFFSET..REPORT_OFFSET + REPORT_CAPACITY].to_vec();
                            let report = Report::read(&r, &area).map_err(|e| {
                                Error::Mailbox(format!("the guest's report is unreadable: {e}"))
                            })?;
                            return Ok(Answer {
                                response: r,
                                report,
                                elapsed: start.elapsed(),
                            });
                        }
                        ResponseState::InProgress
                            if r.progress_done != last_progress || last_progress == 0 =>
                        {
                            last_progress = r.progress_done.max(1);
                            progress(&r);
                        }
                        _ => {}
                    }
                }
            }
            if Instant::now() >= next_watch {
                next_watch = Instant::now() + WATCH_EVERY;
                if let Some(err) = self.guest_died(seq) {
                    return Err(err);
                }
            }
            if start.elapsed() > timeout {
                return Err(Error::Mailbox(format!(
                    "no answer to request {seq} within {timeout:?}"
                )));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// [`Error::GuestDied`] when the watched VM is gone (and did not answer `seq` as it
    /// went: an answer written just before the exit still counts).
    fn guest_died(&self, seq: u64) -> Option<Error> {
        let watch = self.watch.as_ref()?;
        let death = watch.death()?;
        if matches!(self.read_response(), BlockRead::Valid(r) if r.seq == seq && r.state == ResponseState::Done)
        {
            return None;
        }
        let waiting_for = match self.sent {
            Some((sent, Command::Stage, flags))
                if sent == seq && flags.contains(RequestFlags::APPLY_AFTER_STAGE) =>
            {
                format!("request {seq} (stage, then swap)")
            }
            Some((sent, command, _)) if sent == seq => format!("request {seq} ({command})"),
            _ => format!("request {seq}"),
        };
        Some(Error::GuestDied {
            vm: watch.name().to_owned(),
            waiting_for,
            death: Box::new(death),
        })
    }

    /// A request without payload or flags, answered within [`REQUEST_TIMEOUT`] (no
    /// progress shown): a list, a snapshot, a removal, a reset.
    pub fn request(&mut self, command: Command, args: [u64; 4]) -> Result<Answer> {
        self.call(
            command,
            RequestFlags::empty(),
            None,
            args,
            REQUEST_TIMEOUT,
            |_| {},
        )
    }

    /// Sends `command` (with `payload` in the data area) and waits for the answer.
    pub fn call(
        &mut self,
        command: Command,
        flags: RequestFlags,
        payload: Option<&[u8]>,
        args: [u64; 4],
        timeout: Duration,
        progress: impl FnMut(&Response),
    ) -> Result<Answer> {
        self.sends()?;
        // Held until the answer is read (or the wait fails).
        let _exchange = match &self.access {
            Access::PerRequest { vm, paths } => Some(take_lock(vm, paths)?),
            _ => None,
        };
        if let Some(p) = payload {
            self.write_data(p)?;
        }
        let seq = self.next_seq();
        let mut request = Request::new(seq, command);
        request.flags = flags;
        request.payload_len = payload.map_or(0, |p| p.len() as u64);
        request.args = args;
        self.send(&request)?;
        self.wait_done(seq, timeout, progress)
    }
}
