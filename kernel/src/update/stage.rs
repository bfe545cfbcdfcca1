//! Staging: a package travels from the mailbox's data area into the staging buffer and
//! is verified there, while every other task keeps running.
//!
//! [`begin`] reads the header in place, refuses early what cannot work (too large for
//! the staging buffer, an image that may not replace this kernel), then [`advance`]
//! copies the package a chunk per step and hashes each chunk from the copy, in one pass.
//! At the end the header is parsed again from the copy (the host could have changed the
//! shared memory meanwhile: only the copy is trusted), the payload digest compared, and
//! the image laid out (`update::load`). Only then is the package "accepted".

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use image_format::mailbox::{Request, RequestFlags, Status};
use image_format::package::{parse_header, Header};
use image_format::{ImageSummary, PAGE_SIZE};
use sha2::{Digest as _, Sha256};
use spin::Mutex;
use updater::handoff::{set_text, ImageRef};

use crate::drivers::mailbox::SharedMemory;
use crate::identity;
use crate::memory::layout::STAGING_BUFFER;
use crate::time::{self, Instant};
use crate::update::load::{self, ImageSource, Loaded, SegmentSource};
use crate::update::preflight::{self, Preflight};

/// Bytes copied and hashed per service step.
const CHUNK: u64 = 512 * 1024;

/// A refusal: the status code for the host and a sentence for a person.
pub type Refusal = (Status, String);

/// A staging in progress.
pub struct StagingOp {
    pub seq: u64,
    pub flags: RequestFlags,
    pub total: u64,
    pub done: u64,
    payload_offset: u64,
    hasher: Sha256,
    started: Instant,
    copy_ticks: u64,
    hash_ticks: u64,
}

/// A verified, laid-out package, ready for `Apply`.
pub struct Staged {
    pub bytes: u64,
    pub summary: ImageSummary,
    pub loaded: Loaded,
    /// Copy and hash, load, in microseconds.
    pub staging_us: u64,
    pub hash_us: u64,
    pub load_us: u64,
    /// Optional records the image will drop (for the report).
    pub drops: Vec<String>,
    /// What the dry run of the new image's bootstrap found.
    pub preflight: Preflight,
    /// The hotpatch generation the layout compared against ([`refresh_for_patches`]).
    pub patch_generation: u64,
}

/// The package staged last, if it verified.
pub static STAGED: Mutex<Option<Staged>> = Mutex::new(None);

fn staging_buffer(len: u64) -> &'static mut [u8] {
    assert!(len <= STAGING_BUFFER.len);
    // SAFETY: the staging buffer is mapped writable at first boot, used only by the
    // update service (this module, on CPU 0), and `len` is within it.
    unsafe { core::slice::from_raw_parts_mut(STAGING_BUFFER.start as *mut u8, len as usize) }
}

fn refusal_of(e: &image_format::FormatError) -> Refusal {
    (Status::from_error(e), e.to_string())
}

/// Checks that `header` may replace this kernel; returns the optional records it drops.
fn compatible(header: &Header<'_>) -> Result<Vec<String>, Refusal> {
    match updater::compat::check(&identity::IDENTITY, header.identity()) {
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
                _ => Status::SchemaUnconvertible,
            };
            Err((status, e.to_string()))
        }
    }
}

/// Starts staging the package a `Stage` request names.
pub fn begin(mailbox: &SharedMemory, request: &Request) -> Result<StagingOp, Refusal> {
    let len = request.payload_len;
    let Some(data) = mailbox.data(len) else {
        return Err((
            Status::BadRequest,
            format!(
                "payload of {len} bytes exceeds the data area ({} bytes)",
                mailbox.data_capacity()
            ),
        ));
    };
    let header = parse_header(data).map_err(|e| refusal_of(&e))?;
    header
        .check_fits("staging buffer", STAGING_BUFFER.len)
        .map_err(|e| refusal_of(&e))?;
    if header.total_size() > len {
        return Err((
            Status::Truncated,
            format!(
                "the package is {} bytes but the request carries {len}",
                header.total_size()
            ),
        ));
    }
    compatible(&header)?;
    *STAGED.lock() = None;
    load::release_staging();
    Ok(StagingOp {
        seq: request.seq,
        flags: request.flags,
        total: header.total_size(),
        done: 0,
        payload_offset: header.payload_offset(),
        hasher: Sha256::new(),
        started: time::now(),
        copy_ticks: 0,
        hash_ticks: 0,
    })
}

/// What a step of staging did.
pub enum Progress {
    /// More to copy.
    Copied,
    /// Finished: staged, or refused.
    Finished(Result<(), Refusal>),
}

/// Copies and hashes the next chunk; verifies and loads after the last.
pub fn advance(op: &mut StagingOp, mailbox: &SharedMemory) -> Progress {
    let Some(data) = mailbox.data(op.total) else {
        return Progress::Finished(Err((Status::Internal, "data area shrank".into())));
    };
    let staged = staging_buffer(op.total);
    let end = (op.done + CHUNK).min(op.total);
    let (from, to) = (op.done as usize, end as usize);
    let t0 = time::now();
    staged[from..to].copy_from_slice(&data[from..to]);
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
    Progress::Finished(finish(op))
}

fn finish(op: &mut StagingOp) -> Result<(), Refusal> {
    let digest: [u8; 32] = core::mem::take(&mut op.hasher).finalize().into();
    let bytes = &*staging_buffer(op.total);
    // Only the copy is trusted from here on.
    let header = parse_header(bytes).map_err(|e| refusal_of(&e))?;
    header
        .check_payload_digest(&digest)
        .map_err(|e| refusal_of(&e))?;
    let drops = compatible(&header)?;
    let staging_us = op.started.elapsed().as_micros() as u64;
    let hash_us = time::ticks_to_nanos(op.hash_ticks) / 1000;

    let load_started = time::now();
    let (loaded, preflight) = lay_out(bytes, &header)?;
    let load_us = load_started.elapsed().as_micros() as u64;
    *STAGED.lock() = Some(Staged {
        preflight,
        bytes: op.total,
        summary: header.summary(),
        loaded,
        staging_us,
        hash_us,
        load_us,
        drops,
        patch_generation: crate::hotpatch::generation(),
    });
    Ok(())
}

/// Lays the verified package (`bytes` in the staging buffer, its `header`) out in the staging window
/// and the overlay source, against the text running now, and runs the pre-flight.
fn lay_out(bytes: &[u8], header: &Header<'_>) -> Result<(Loaded, Preflight), Refusal> {
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
    let loaded = load::load(&source)
        .map_err(|e| (Status::Internal, format!("cannot lay the image out: {e}")))?;
    let preflight = preflight::run(&loaded, &source);
    Ok((loaded, preflight))
}

/// Before a swap: if hotpatches were applied or removed since the package was staged,
/// the running text is no longer what the layout compared against (a page that held
/// the same bytes as the new image may now hold a jump into patch memory), so the
/// package is laid out again from the staging buffer, which still holds the verified
/// copy. Returns whether it had to.
pub fn refresh_for_patches() -> Result<bool, Refusal> {
    let mut guard = STAGED.lock();
    let Some(staged) = guard.as_mut() else {
        return Ok(false);
    };
    let now = crate::hotpatch::generation();
    if staged.patch_generation == now {
        return Ok(false);
    }
    let bytes = &*staging_buffer(staged.bytes);
    let header = parse_header(bytes).map_err(|e| refusal_of(&e))?;
    let started = time::now();
    let laid_out = lay_out(bytes, &header);
    match laid_out {
        Ok((loaded, preflight)) => {
            staged.loaded = loaded;
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
