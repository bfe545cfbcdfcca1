//! Staging: a package travels from the mailbox's data area into the staging buffer and
//! is verified there, while every other task keeps running.
//!
//! [`begin`] copies the header in, refuses early what cannot work (too large for the
//! staging buffer, an image that may not replace this kernel), then [`advance`]
//! copies the package a chunk per step and hashes each chunk from the copy, in one pass.
//! At the end the header is parsed again from the copy (the host could have changed the
//! shared memory meanwhile: only the copy is trusted), the payload digest compared, and
//! the image laid out (`update::load`). Only then is the package "accepted".
//!
//! Trust: the request must carry the package's signature trailer right after it
//! (`image_format::signature`); [`begin`] copies the trailer and refuses an unsigned
//! package, a truncated trailer, a key this kernel does not trust, and a security version
//! below the VM's floor (`history::svn_floor`), each with its own status. [`finish`]
//! verifies the signature over the copy's header digest (timed: the stage report's
//! `verify_us`, outside the downtime).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use image_format::mailbox::{Request, RequestFlags, Status};
use image_format::package::{parse_header, Header};
use image_format::signature::{self, KeyId, Signed, Trailer, TRAILER_LEN};
use image_format::{ImageSummary, PAGE_SIZE};
use sha2::{Digest as _, Sha256};
use spin::Mutex;
use updater::describe::{Description, RegionRule};
use updater::handoff::{set_text, ImageRef};
use updater::plan::{self, Carried, Method};

use crate::drivers::mailbox::SharedMemory;
use crate::memory::layout::STAGING_BUFFER;
use crate::time::{self, Instant};
use crate::update::preflight::{self, Preflight};
use crate::update::prepare::{self, ImageSource, Prepared, SegmentSource};
use crate::{history, identity, memory, schema};

/// Bytes copied and hashed per service step.
const CHUNK: u64 = 512 * 1024;

/// Why a package was not staged: the status code for the host and a sentence for a
/// person.
#[derive(Debug, Clone)]
pub struct StageRefusal {
    pub status: Status,
    pub why: String,
}

impl StageRefusal {
    fn new(status: Status, why: String) -> Self {
        StageRefusal { status, why }
    }
}

impl core::fmt::Display for StageRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.why)
    }
}

/// A staging in progress.
pub struct StagingOp {
    pub seq: u64,
    pub flags: RequestFlags,
    /// The request's arguments (an `Apply` after the stage takes its window from them).
    pub args: [u64; 4],
    pub total: u64,
    pub done: u64,
    payload_offset: u64,
    hasher: Sha256,
    started: Instant,
    copy_ticks: u64,
    hash_ticks: u64,
    /// The signature trailer, copied at [`begin`] (only the copy is trusted).
    trailer: Trailer,
}

/// A verified, laid-out package, ready for `Apply`.
pub struct Staged {
    pub bytes: u64,
    pub summary: ImageSummary,
    pub prepared: Prepared,
    /// Copy and hash, load, in microseconds.
    pub staging_us: u64,
    pub hash_us: u64,
    pub load_us: u64,
    /// Verifying the signature, in microseconds.
    pub verify_us: u64,
    /// Who signed it.
    pub signer: KeyId,
    /// The image's security version.
    pub svn: u32,
    /// Optional records the image will drop (for the report).
    pub drops: Vec<String>,
    /// How the image will read this kernel's records and take over its regions.
    pub plan: Planned,
    /// What the dry run of the new image's bootstrap found.
    pub preflight: Preflight,
    /// The hotpatch generation the layout compared against ([`refresh_for_patches`]).
    pub patch_generation: u64,
}

/// The package staged last, if it verified.
pub static STAGED: Mutex<Option<Staged>> = Mutex::new(None);

/// The staging buffer: the package bytes, copied from the mailbox.
///
/// Invariant: [`STAGING_BUFFER`] is mapped writable at first boot (its frames reserved
/// for it and adopted by every later kernel), and the one `StagingBuffer`, in
/// [`BUFFER`], is the only view of it.
struct StagingBuffer(());

static BUFFER: Mutex<StagingBuffer> = Mutex::new(StagingBuffer(()));

impl StagingBuffer {
    /// The first `len` bytes.
    ///
    /// # Panics
    /// If `len` exceeds the buffer (callers check against `STAGING_BUFFER.len` first).
    fn bytes(&self, len: u64) -> &[u8] {
        assert!(len <= STAGING_BUFFER.len, "staging buffer overrun");
        // SAFETY: the type's invariant; `len` is within the buffer.
        unsafe { core::slice::from_raw_parts(STAGING_BUFFER.start as *const u8, len as usize) }
    }

    /// The first `len` bytes, to write.
    ///
    /// # Panics
    /// If `len` exceeds the buffer.
    fn bytes_mut(&mut self, len: u64) -> &mut [u8] {
        assert!(len <= STAGING_BUFFER.len, "staging buffer overrun");
        // SAFETY: the type's invariant; `len` is within the buffer.
        unsafe { core::slice::from_raw_parts_mut(STAGING_BUFFER.start as *mut u8, len as usize) }
    }
}

/// What staging decided from the two descriptions (`updater::plan::swap`).
pub struct Planned {
    /// Record kinds the new image converts: one line each, as the report says it.
    pub converted: Vec<String>,
    /// Record kinds taken as they stand.
    pub unchanged: usize,
    /// Regions that grow, mapped now (unmapped again if this package is dropped).
    pub grown: Vec<Grown>,
    /// Regions that shrink (the new kernel frees their tails).
    pub shrunk: Vec<String>,
}

/// A region's growth, mapped at staging with fresh frames. Dropping it (another
/// package staged, or this one discarded) unmaps it again; after a swap the new kernel
/// owns it (this value is never dropped: it lived in the old kernel's heap).
pub struct Grown {
    pub name: &'static str,
    pub start: u64,
    pub len: u64,
    pub from: u64,
    pub to: u64,
}

impl Drop for Grown {
    fn drop(&mut self) {
        if let Err(e) = memory::unmap_and_free(self.start, self.len) {
            log::warn!("could not unmap the growth of `{}`: {e}", self.name);
        }
    }
}

impl Planned {
    /// One clause per decision, for the stage response.
    pub fn summary(&self) -> String {
        let mut out = format!("{} records unchanged", self.unchanged);
        for c in &self.converted {
            out.push_str(", ");
            out.push_str(c);
        }
        for g in &self.grown {
            out.push_str(&format!(
                "; {} grows {} → {} KiB ({} pages mapped now)",
                g.name,
                g.from / 1024,
                g.to / 1024,
                g.len / 4096
            ));
        }
        for s in &self.shrunk {
            out.push_str("; ");
            out.push_str(s);
        }
        out
    }
}

/// A region that will grow: its name, start, and its length now and in the new image.
struct Growth {
    name: &'static str,
    start: u64,
    from: u64,
    to: u64,
}

/// The plan of a swap from this kernel to the image `header` describes: refused with
/// the kind, the fields and the rule, or the decisions (nothing mapped yet).
fn plan_for(header: &Header<'_>) -> Result<(Planned, Vec<Growth>), StageRefusal> {
    let theirs = Description::parse(header.description()).map_err(|e| {
        StageRefusal::new(
            Status::Malformed,
            format!("the package's image description: {e}"),
        )
    })?;
    let ours = schema::description();
    let mut planned = Planned {
        converted: Vec::new(),
        unchanged: 0,
        grown: Vec::new(),
        shrunk: Vec::new(),
    };
    let resizes = plan::swap(&ours, &theirs, |c| match c {
        Carried::Read(p) if p.method() == Method::Unchanged => planned.unchanged += 1,
        Carried::Read(p) => {
            planned
                .converted
                .push(format!("{} {}→{} {}", p.kind, p.from, p.to, p.method()))
        }
        Carried::Dropped { .. } | Carried::New { .. } => {}
    })
    .map_err(|e| StageRefusal::new(e.status(), e.to_string()))?;
    let mut grow = Vec::new();
    for r in resizes.iter() {
        // Only this kernel's own region names are mapped (they are `'static`).
        let Some(own) = ours.region(r.name) else {
            continue;
        };
        let name = crate::memory::layout::INHERITED
            .iter()
            .find(|d| d.name == own.name && d.rule == RegionRule::Resizable)
            .map(|d| d.name);
        match name {
            Some(name) if r.new > r.running => grow.push(Growth {
                name,
                start: r.start,
                from: r.running,
                to: r.new,
            }),
            Some(name) => planned.shrunk.push(format!(
                "{name} shrinks {} → {} KiB (the new kernel frees the rest)",
                r.running / 1024,
                r.new / 1024
            )),
            None => {}
        }
    }
    Ok((planned, grow))
}

/// Maps the growth of every region that grows (before anything stops).
fn map_growth(planned: &mut Planned, grow: Vec<Growth>) -> Result<(), StageRefusal> {
    for Growth {
        name,
        start,
        from,
        to,
    } in grow
    {
        let (at, len) = (start + from, to - from);
        memory::map_fresh(at, len).map_err(|e| {
            let _ = memory::unmap_and_free(at, len);
            StageRefusal::new(
                Status::RegionMismatch,
                format!(
                    "the new image's `{name}` is {} KiB, this kernel's {} KiB, and the {} KiB more cannot be mapped: {e}",
                    to / 1024,
                    from / 1024,
                    len / 1024
                ),
            )
        })?;
        planned.grown.push(Grown {
            name,
            start: at,
            len,
            from,
            to,
        });
    }
    Ok(())
}

fn refusal_of(e: &image_format::FormatError) -> StageRefusal {
    StageRefusal::new(Status::from_error(e), e.to_string())
}

/// Refuses an image whose security version is below the highest that ran in this VM.
fn check_svn(what: &str, svn: u32) -> Result<(), StageRefusal> {
    let floor = history::svn_floor();
    if svn < floor {
        return Err(StageRefusal::new(
            Status::SvnRollback,
            format!(
                "the {what}'s security version {svn} is lower than {floor}, the highest that ran in this VM: refused (anti-rollback)"
            ),
        ));
    }
    Ok(())
}

/// Reads the signature trailer that follows the package's `total` bytes in the data
/// area (the request carries `len` bytes) and refuses what cannot verify: no trailer, a
/// short or malformed one, a key this kernel does not trust.
fn read_trailer(mailbox: &SharedMemory, total: u64, len: u64) -> Result<Trailer, StageRefusal> {
    let refuse = |e: signature::SignatureError| {
        StageRefusal::new(Status::from_signature(&e), format!("the package is {e}"))
    };
    let after = len.saturating_sub(total);
    let mut bytes = [0u8; TRAILER_LEN + 1];
    let n = (after as usize).min(bytes.len());
    mailbox
        .read_data(total, &mut bytes[..n])
        .map_err(|e| StageRefusal::new(Status::BadRequest, e.to_string()))?;
    let trailer = signature::find(&bytes[..n]).map_err(refuse)?;
    if !trailer.is_trusted_by(identity::trust::TRUSTED_KEYS) {
        return Err(refuse(signature::SignatureError::Untrusted {
            key: trailer.key_id(),
        }));
    }
    Ok(trailer)
}

/// Checks that `header` may replace this kernel; returns the optional records it drops.
fn compatible(header: &Header<'_>) -> Result<Vec<String>, StageRefusal> {
    match updater::compat::check(identity::this(), header.identity()) {
        Ok(drops) => Ok(drops
            .iter()
            .map(|d| {
                format!(
                    "the new image does not read optional {} {}: it will be dropped",
                    d.kind, d.exported
                )
            })
            .collect()),
        Err(e) => {
            let status = match e {
                updater::compat::Incompatibility::Version { .. } => Status::Incompatible,
                updater::compat::Incompatibility::Capability { .. } => Status::CapabilityMissing,
                updater::compat::Incompatibility::Unread { .. } => Status::SchemaUnconvertible,
            };
            Err(StageRefusal::new(status, e.to_string()))
        }
    }
}

/// Starts staging the package a `Stage` request names: copies its header in and checks
/// it.
pub fn begin(mailbox: &SharedMemory, request: &Request) -> Result<StagingOp, StageRefusal> {
    let len = request.payload_len;
    if len > mailbox.data_capacity() {
        return Err(StageRefusal::new(
            Status::BadRequest,
            format!(
                "payload of {len} bytes exceeds the data area ({} bytes)",
                mailbox.data_capacity()
            ),
        ));
    }
    let mut buffer = BUFFER.lock();
    // The header's own size is in its fixed part; nothing past the payload is read.
    let fixed = (image_format::package::layout::FIXED_SIZE as u64).min(len);
    let copy = |buffer: &mut StagingBuffer, n: u64| {
        mailbox
            .read_data(0, buffer.bytes_mut(n))
            .map_err(|e| StageRefusal::new(Status::BadRequest, e.to_string()))
    };
    copy(&mut buffer, fixed)?;
    let at = image_format::package::layout::HEADER_SIZE;
    let declared = buffer
        .bytes(fixed)
        .get(at..at + 4)
        .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let header_len = u64::from(declared.min(image_format::package::MAX_HEADER_SIZE)).min(len);
    copy(&mut buffer, header_len.max(fixed))?;
    let header = parse_header(buffer.bytes(header_len.max(fixed))).map_err(|e| refusal_of(&e))?;
    header
        .check_fits("staging buffer", STAGING_BUFFER.len)
        .map_err(|e| refusal_of(&e))?;
    if header.total_size() > len {
        return Err(StageRefusal::new(
            Status::Truncated,
            format!(
                "the package is {} bytes but the request carries {len}",
                header.total_size()
            ),
        ));
    }
    let trailer = read_trailer(mailbox, header.total_size(), len)?;
    check_svn("package", header.svn())?;
    compatible(&header)?;
    plan_for(&header)?;
    *STAGED.lock() = None;
    prepare::release_staging();
    Ok(StagingOp {
        seq: request.seq,
        flags: request.flags,
        args: request.args,
        total: header.total_size(),
        done: 0,
        payload_offset: header.payload_offset(),
        hasher: Sha256::new(),
        started: time::now(),
        copy_ticks: 0,
        hash_ticks: 0,
        trailer,
    })
}

/// What a step of staging did.
pub enum Progress {
    /// More to copy.
    Copied,
    /// Finished: staged, or refused.
    Finished(Result<(), StageRefusal>),
}

/// Copies and hashes the next chunk; verifies and prepares after the last.
pub fn advance(op: &mut StagingOp, mailbox: &SharedMemory) -> Progress {
    let mut buffer = BUFFER.lock();
    let end = (op.done + CHUNK).min(op.total);
    let (from, to) = (op.done as usize, end as usize);
    let t0 = time::now();
    let staged = buffer.bytes_mut(op.total);
    if let Err(e) = mailbox.read_data(op.done, &mut staged[from..to]) {
        return Progress::Finished(Err(StageRefusal::new(Status::Internal, e.to_string())));
    }
    let t1 = time::now();
    let hash_from = from.max(op.payload_offset as usize);
    if hash_from < to {
        op.hasher.update(&staged[hash_from..to]);
    }
    let t2 = time::now();
    op.copy_ticks += t1.ticks() - t0.ticks();
    op.hash_ticks += t2.ticks() - t1.ticks();
    op.done = end;
    if op.done < op.total {
        return Progress::Copied;
    }
    Progress::Finished(finish(op, &buffer))
}

fn finish(op: &mut StagingOp, buffer: &StagingBuffer) -> Result<(), StageRefusal> {
    let digest: [u8; 32] = core::mem::take(&mut op.hasher).finalize().into();
    let bytes = buffer.bytes(op.total);
    // Only the copy is trusted from here on.
    let header = parse_header(bytes).map_err(|e| refusal_of(&e))?;
    header
        .check_payload_digest(&digest)
        .map_err(|e| refusal_of(&e))?;
    let verify_started = time::now();
    let signer = op
        .trailer
        .verify(
            Signed::Package,
            &header.header_digest(),
            identity::trust::TRUSTED_KEYS,
        )
        .map_err(|e| {
            StageRefusal::new(Status::from_signature(&e), format!("the package is {e}"))
        })?;
    let verify_us = verify_started.elapsed().as_micros() as u64;
    check_svn("package", header.svn())?;
    let drops = compatible(&header)?;
    let (mut plan, grow) = plan_for(&header)?;
    map_growth(&mut plan, grow)?;
    let staging_us = op.started.elapsed().as_micros() as u64;
    let hash_us = time::ticks_to_nanos(op.hash_ticks) / 1000;

    let load_started = time::now();
    let inject_preflight = op.flags.contains(RequestFlags::INJECT_PREFLIGHT_FAIL);
    let (prepared, preflight) = lay_out(bytes, &header, inject_preflight)?;
    let load_us = load_started.elapsed().as_micros() as u64;
    *STAGED.lock() = Some(Staged {
        preflight,
        bytes: op.total,
        summary: header.summary(),
        prepared,
        staging_us,
        hash_us,
        load_us,
        verify_us,
        signer,
        svn: header.svn(),
        drops,
        plan,
        patch_generation: crate::hotpatch::generation(),
    });
    Ok(())
}

/// Lays the verified package (`bytes` in the staging buffer, its `header`) out in the staging window
/// and the overlay source, against the text running now, and runs the pre-flight.
/// Lays the image out and runs the pre-flight (failing it on purpose with
/// `inject_preflight`: a test of the prediction).
fn lay_out(
    bytes: &[u8],
    header: &Header<'_>,
    inject_preflight: bool,
) -> Result<(Prepared, Preflight), StageRefusal> {
    let payload = &bytes[header.payload_offset() as usize..];
    let segments: Vec<SegmentSource<'_>> = header
        .segments()
        .map(|s| SegmentSource {
            vaddr: s.vaddr,
            data: &payload[s.payload_offset as usize..(s.payload_offset + s.file_size) as usize],
            mem_size: s.mem_size,
            flags: s.flags.bits() & 7,
        })
        .collect();
    let geometry = header.geometry();
    let summary = header.summary();
    let mut identity = ImageRef::EMPTY;
    let v = summary.version;
    identity.version = [v.major, v.minor, v.patch, 0];
    identity.build_id = *summary.build_id.padded();
    identity.build_id_len = summary.build_id.len() as u64;
    set_text(&mut identity.label, summary.label.as_str());
    identity.caps_required = header.identity().caps_required().bits();
    identity.caps_provided = header.identity().caps_provided().bits();
    let source = ImageSource {
        identity,
        link_base: geometry.link_base,
        span: geometry.image_span.next_multiple_of(PAGE_SIZE),
        segments: &segments,
        relocations: header.relocations().map(|r| (r.offset, r.addend)),
        bootstrap: geometry.entries.bootstrap,
        resume: geometry.entries.resume,
        ap_resume: geometry.entries.ap_resume,
    };
    let prepared = prepare::prepare(&source).map_err(|e| {
        StageRefusal::new(Status::Internal, format!("cannot lay the image out: {e}"))
    })?;
    let preflight = preflight::run(&prepared, &source, inject_preflight);
    Ok((prepared, preflight))
}

/// Before a swap: if hotpatches were applied or removed since the package was staged,
/// the running text is no longer what the layout compared against (a page that held
/// the same bytes as the new image may now hold a jump into patch memory), so the
/// package is laid out again from the staging buffer, which still holds the verified
/// copy. Returns whether it had to.
pub fn refresh_for_patches() -> Result<bool, StageRefusal> {
    // The buffer's lock before the staged one, as in `advance`.
    let buffer = BUFFER.lock();
    let mut guard = STAGED.lock();
    let Some(staged) = guard.as_mut() else {
        return Ok(false);
    };
    let now = crate::hotpatch::generation();
    if staged.patch_generation == now {
        return Ok(false);
    }
    let bytes = buffer.bytes(staged.bytes);
    let header = parse_header(bytes).map_err(|e| refusal_of(&e))?;
    let started = time::now();
    let laid_out = lay_out(bytes, &header, false);
    match laid_out {
        Ok((prepared, preflight)) => {
            staged.prepared = prepared;
            staged.preflight = preflight;
            staged.patch_generation = now;
            staged.load_us = started.elapsed().as_micros() as u64;
            Ok(true)
        }
        Err(e) => {
            *guard = None;
            Err(e)
        }
    }
}
