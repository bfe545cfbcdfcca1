//! Installing and removing patches.
//!
//! [`prepare`] runs while everything else runs: it checks the patch names this exact
//! image (build id, header hash, pristine text hash), that every site still holds what
//! the patch expects (the pristine bytes, or the jump of the patch below it in the
//! stack), loads the code into patch memory and relocates it. [`install`] then parks
//! every other CPU, refuses if any CPU's call stack (its return addresses, walked from
//! frame pointers) stands inside a function about to be replaced, writes the jumps,
//! and releases the CPUs. [`remove_through`] takes patches off in reverse order the same
//! way, refusing while a CPU stands in patch code, and restores every site's bytes.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use image_format::hotpatch::{self, FunctionKind, PatchError, ORIGINAL_LEN};

use super::{image_base, memory, Applied, SiteWrite, JUMP_LEN, STACK};
use crate::arch::{park, text};
use crate::cpu;
use crate::handoff_region;
use crate::memory::layout::stack_slot;
use crate::quiesce::{self, Parked};
use crate::time::{self, Duration};

/// Why a patch was not applied or removed. The running image is unchanged.
#[derive(Debug, Clone)]
pub enum PatchRefusal {
    Format(PatchError),
    WrongImage(String),
    SiteModified {
        function: String,
        addr: u64,
    },
    AlreadyApplied(u64),
    Memory(String),
    Relocation(String),
    CpuInSite {
        cpu: usize,
        function: String,
        at: u64,
    },
    CpuInPatch {
        cpu: usize,
        id: u64,
        at: u64,
    },
    Quiesce(String),
    NotApplied(u64),
    NothingApplied,
    /// The signature trailer is missing, short, by an untrusted key or does not verify.
    Signature(image_format::signature::SignatureError),
    /// The patch's security version is below the VM's floor.
    SvnRollback {
        svn: u32,
        floor: u32,
    },
}

impl PatchRefusal {
    /// The status the response carries: the signature's and anti-rollback's own codes,
    /// `PatchRefused` for the rest.
    pub fn status(&self) -> image_format::mailbox::Status {
        use image_format::mailbox::Status;
        match self {
            PatchRefusal::Signature(e) => Status::from_signature(e),
            PatchRefusal::SvnRollback { .. } => Status::SvnRollback,
            _ => Status::PatchRefused,
        }
    }
}

impl core::fmt::Display for PatchRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PatchRefusal::Format(e) => write!(f, "not a valid patch: {e}"),
            // "the patch is unsigned: …", "the patch is signed by key …, which …"; the
            // others name the signature themselves ("the signature by key … does not verify").
            PatchRefusal::Signature(
                e @ (image_format::signature::SignatureError::Unsigned
                | image_format::signature::SignatureError::Untrusted { .. }),
            ) => write!(f, "the patch is {e}"),
            PatchRefusal::Signature(e) => write!(f, "{e}"),
            PatchRefusal::SvnRollback { svn, floor } => write!(
                f,
                "the patch's security version {svn} is lower than {floor}, the highest that ran in this VM: refused (anti-rollback)"
            ),
            PatchRefusal::WrongImage(why) => write!(f, "the patch is for another image: {why}"),
            PatchRefusal::SiteModified { function, addr } => write!(
                f,
                "the bytes at {function} ({addr:#x}) are not what the patch expects: the site was modified"
            ),
            PatchRefusal::AlreadyApplied(id) => write!(f, "patch {id:016x} is already applied"),
            PatchRefusal::Memory(e) => write!(f, "no patch memory: {e}"),
            PatchRefusal::Relocation(e) => write!(f, "{e}"),
            PatchRefusal::CpuInSite { cpu, function, at } => {
                write!(f, "cpu{cpu} stands in {function} (return address {at:#x}): it cannot be replaced now")
            }
            PatchRefusal::CpuInPatch { cpu, id, at } => {
                write!(f, "cpu{cpu} is running code of patch {id:016x} (at {at:#x}): it cannot be removed now")
            }
            PatchRefusal::Quiesce(e) => write!(f, "{e}"),
            PatchRefusal::NotApplied(id) => write!(f, "no applied patch has id {id:016x}"),
            PatchRefusal::NothingApplied => write!(f, "no patch is applied: there is nothing to remove"),
        }
    }
}

/// A patch loaded into patch memory, ready for its jumps. Dropped without being
/// installed (refused, or its request abandoned), it frees that memory: nothing stays
/// mapped in the patch area that no applied patch owns.
pub struct Prepared {
    pub applied: Applied,
    /// The patch's security version: once it runs, the VM's floor is at least this.
    svn: u32,
    /// Whether the patch memory is still this value's to free (not once installed).
    owns_memory: bool,
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if self.owns_memory {
            memory::free(self.applied.memory.0, self.applied.memory.1);
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the stack says a site holds now: the top-most jump written there, if any.
fn current_expectation(addr: u64) -> Option<[u8; JUMP_LEN]> {
    STACK
        .lock()
        .iter()
        .rev()
        .find_map(|p| p.sites.iter().find(|s| s.addr == addr).map(|s| s.jump))
}

/// Which patch a refusal is about, once its bytes parsed.
#[derive(Debug, Clone)]
pub struct PatchName {
    pub id: u64,
    pub version: u32,
    pub label: String,
}

/// A patch [`prepare`] refused: why, and which patch it was (`None` when the bytes are
/// not a valid patch).
#[derive(Debug, Clone)]
pub struct Rejected {
    pub refusal: PatchRefusal,
    pub patch: Option<PatchName>,
}

impl core::fmt::Display for Rejected {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.refusal.fmt(f)
    }
}

/// Checks and loads `bytes`.
pub fn prepare(bytes: &[u8]) -> Result<Prepared, Rejected> {
    let view = hotpatch::parse(bytes).map_err(|e| {
        bad_trailer(bytes).unwrap_or(Rejected {
            refusal: PatchRefusal::Format(e),
            patch: None,
        })
    })?;
    prepare_view(&view).map_err(|refusal| Rejected {
        refusal,
        patch: Some(PatchName {
            id: view.id().0,
            version: view.version(),
            label: String::from(view.label().as_str()),
        }),
    })
}

/// When `bytes` fail to parse only because of what follows the patch (a well-formed
/// patch, then a signature trailer of the wrong length), the signature's refusal: a
/// truncated trailer is refused with its own status, as for a package.
fn bad_trailer(bytes: &[u8]) -> Option<Rejected> {
    let field = bytes.get(hotpatch::layout::TOTAL_SIZE..hotpatch::layout::TOTAL_SIZE + 8)?;
    let total = usize::try_from(u64::from_le_bytes(field.try_into().ok()?)).ok()?;
    let (patch, after) = (bytes.get(..total)?, bytes.get(total..)?);
    let view = hotpatch::parse(patch).ok()?;
    let e = image_format::signature::find(after).err()?;
    Some(Rejected {
        refusal: PatchRefusal::Signature(e),
        patch: Some(PatchName {
            id: view.id().0,
            version: view.version(),
            label: String::from(view.label().as_str()),
        }),
    })
}

fn prepare_view(view: &hotpatch::PatchView<'_>) -> Result<Prepared, PatchRefusal> {
    let trailer = image_format::signature::find(view.trailer()).map_err(PatchRefusal::Signature)?;
    trailer
        .verify(
            image_format::signature::Signed::Patch,
            &view.header_digest(),
            crate::identity::trust::TRUSTED_KEYS,
        )
        .map_err(PatchRefusal::Signature)?;
    let floor = crate::history::svn_floor();
    if view.svn() < floor {
        return Err(PatchRefusal::SvnRollback {
            svn: view.svn(),
            floor,
        });
    }
    let target = view.target();
    let own = crate::image::build_id();
    if target.build_id != own {
        return Err(PatchRefusal::WrongImage(format!(
            "built for build {}, this is build {own}",
            target.build_id
        )));
    }
    if target.header_hash != crate::image::header_hash() {
        return Err(PatchRefusal::WrongImage(
            "the ELF header hash differs".into(),
        ));
    }
    match super::pristine_text_hash() {
        Some(h) if h == target.text_hash => {}
        Some(h) => {
            return Err(PatchRefusal::WrongImage(format!(
                "text hash {} is not this image's {}",
                hex(&target.text_hash[..8]),
                hex(&h[..8])
            )))
        }
        None => {
            return Err(PatchRefusal::WrongImage(
                "this image's pristine text hash is unknown".into(),
            ))
        }
    }
    let id = view.id().0;
    if STACK.lock().iter().any(|p| p.id == id) {
        return Err(PatchRefusal::AlreadyApplied(id));
    }
    let base = image_base();
    // Every site must hold exactly what the patch expects.
    for f in view.functions().filter(|f| f.kind == FunctionKind::Replace) {
        let Some(site) = f.site else { continue };
        let addr = base + site.offset;
        // SAFETY: the site lies in the image's text (the target hashes matched).
        let now: [u8; ORIGINAL_LEN] = unsafe { text::read(addr) };
        let head = current_expectation(addr).unwrap_or_else(|| {
            let mut h = [0u8; JUMP_LEN];
            h.copy_from_slice(&site.original[..JUMP_LEN]);
            h
        });
        if now[..JUMP_LEN] != head || now[JUMP_LEN..] != site.original[JUMP_LEN..] {
            return Err(PatchRefusal::SiteModified {
                function: f.name.to_string(),
                addr,
            });
        }
    }
    // Load and relocate.
    let payload = view.payload();
    let start =
        memory::allocate(payload.len() as u64).map_err(|e| PatchRefusal::Memory(e.to_string()))?;
    let len = (payload.len() as u64).max(1).next_multiple_of(4096);
    // SAFETY: `start` was just mapped writable for `len` bytes, for this patch only.
    let mem = unsafe { core::slice::from_raw_parts_mut(start as *mut u8, payload.len()) };
    mem.copy_from_slice(payload);
    if let Err(e) = hotpatch::apply::relocate(view, mem, base, start) {
        memory::free(start, len);
        return Err(PatchRefusal::Relocation(e.to_string()));
    }
    let code = u64::from(view.code_size());
    if let Err(e) = memory::seal(start, len, code) {
        memory::free(start, len);
        return Err(PatchRefusal::Memory(e.to_string()));
    }
    let mut sites = Vec::new();
    for f in view.functions().filter(|f| f.kind == FunctionKind::Replace) {
        let Some(site) = f.site else { continue };
        let addr = base + site.offset;
        match hotpatch::apply::jump(addr, start + u64::from(f.code_offset)) {
            Ok(jump) => sites.push(SiteWrite {
                addr,
                old_size: site.old_size,
                before: [0; JUMP_LEN],
                jump,
                function: f.name.to_string(),
            }),
            Err(e) => {
                memory::free(start, len);
                return Err(PatchRefusal::Relocation(e.to_string()));
            }
        }
    }
    Ok(Prepared {
        applied: Applied {
            id,
            version: view.version(),
            label: String::from(view.label().as_str()),
            sequence: 0,
            sites,
            memory: (start, len),
            code,
            applied_ns: 0,
        },
        svn: view.svn(),
        owns_memory: true,
    })
}

/// The outcome of a stop: how long, how many CPUs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pause {
    pub ns: u64,
    /// Of which parking (first IPI → last acknowledgement).
    pub park_ns: u64,
    pub cpus: u32,
}

/// Every return address on every CPU's stack: the parked ones (recorded when they
/// parked) and the caller's own, walked now.
fn call_stacks(parked: &Parked) -> Vec<(usize, u64)> {
    let control = handoff_region::park_control();
    let me = cpu::current().id;
    let mut out = Vec::new();
    for c in cpu::all() {
        if c.id == me {
            let range = stack_slot(me.index());
            let mut ras = [0u64; 32];
            let n = park::return_addresses(range.start, range.end(), &mut ras);
            out.extend(ras[..n].iter().map(|&a| (me.index(), a)));
        } else {
            let slot = &control.slots[c.id.index()];
            if slot.parked_gen.load(Ordering::Acquire) < parked.generation() {
                continue; // not parked by this stop (it cannot be running anything of ours)
            }
            out.extend(
                slot.return_addresses
                    .iter()
                    .map(|a| a.load(Ordering::Relaxed))
                    .take_while(|&a| a != 0)
                    .map(|a| (c.id.index(), a)),
            );
        }
    }
    out
}

fn stop() -> Result<Parked, PatchRefusal> {
    quiesce::park_others(Duration::from_millis(200), None)
        .map_err(|e| PatchRefusal::Quiesce(e.to_string()))
}

/// Releases the parked CPUs. The pause runs from the first park IPI to the release
/// (the wake IPI sent after it only ends their halt sooner).
fn resume(parked: Parked) -> Pause {
    let cpus = parked.cpus as u32;
    let released = quiesce::release(parked);
    Pause {
        ns: released.pause.as_nanos() as u64,
        park_ns: released.park.as_nanos() as u64,
        cpus,
    }
}

/// Parks every other CPU, checks stacks, calls `before_jumps` (every other CPU parked,
/// the sites as the patch found them: a health window opens there), writes the jumps,
/// releases. BSP only, between task steps, interrupts are disabled inside.
///
/// On a refusal the patch memory is freed and the patch's description (what it would
/// have written) comes back with the reason.
#[allow(
    clippy::result_large_err,
    reason = "the refusal carries the patch it refused"
)]
pub fn install<T>(
    mut prepared: Prepared,
    before_jumps: impl FnOnce(&Applied) -> T,
) -> Result<(Applied, Pause, T), (PatchRefusal, Pause, Applied)> {
    let result = x86_64::instructions::interrupts::without_interrupts(|| {
        let parked = stop().map_err(|r| (r, Pause::default()))?;
        // A return address `ra` lies inside `[site, site + size)` when `ra - 1` does.
        for (cpu, ra) in call_stacks(&parked) {
            if let Some(s) = prepared
                .applied
                .sites
                .iter()
                .find(|s| ra > s.addr && ra <= s.addr + u64::from(s.old_size))
            {
                let refusal = PatchRefusal::CpuInSite {
                    cpu,
                    function: s.function.clone(),
                    at: ra,
                };
                return Err((refusal, resume(parked)));
            }
        }
        let opened = before_jumps(&prepared.applied);
        for s in prepared.applied.sites.iter_mut() {
            // SAFETY: every other CPU is parked and none stands in this function
            // (checked above); interrupts are off; the site is mapped text.
            unsafe {
                s.before = text::read(s.addr);
                text::write(s.addr, &s.jump);
            }
        }
        Ok((resume(parked), opened))
    });
    match result {
        Ok((pause, opened)) => {
            let mut stack = STACK.lock();
            prepared.applied.sequence = stack.len() as u32 + 1;
            prepared.applied.applied_ns = time::since_boot().as_nanos() as u64;
            stack.push(prepared.applied.clone());
            drop(stack);
            // Its code runs: a package or patch below its security version is a rollback
            // from now on (a patch window's revert takes the history back with the rest).
            crate::history::raise_floor(prepared.svn);
            // The memory is the applied patch's now (freed when it is removed).
            prepared.owns_memory = false;
            super::bump_generation();
            Ok((prepared.applied.clone(), pause, opened))
        }
        Err((refusal, pause)) => {
            // Dropping `prepared` frees its memory.
            Err((refusal, pause, prepared.applied.clone()))
        }
    }
}

/// Removes, newest first, every patch down to and including `id` (`None`: only the
/// newest). Returns the removed patches, newest first.
pub fn remove_through(id: Option<u64>) -> Result<(Vec<Applied>, Pause), (PatchRefusal, Pause)> {
    let victims: Vec<Applied> = {
        let stack = STACK.lock();
        let Some(top) = stack.last() else {
            let refusal = id.map_or(PatchRefusal::NothingApplied, PatchRefusal::NotApplied);
            return Err((refusal, Pause::default()));
        };
        let id = id.unwrap_or(top.id);
        let Some(at) = stack.iter().position(|p| p.id == id) else {
            return Err((PatchRefusal::NotApplied(id), Pause::default()));
        };
        stack[at..].iter().rev().cloned().collect()
    };
    let pause = x86_64::instructions::interrupts::without_interrupts(|| {
        let parked = stop().map_err(|r| (r, Pause::default()))?;
        for (cpu, ra) in call_stacks(&parked) {
            if let Some(p) = victims.iter().find(|p| p.contains_code(ra.wrapping_sub(1))) {
                let refusal = PatchRefusal::CpuInPatch {
                    cpu,
                    id: p.id,
                    at: ra,
                };
                return Err((refusal, resume(parked)));
            }
        }
        for p in &victims {
            for s in p.sites.iter().rev() {
                // SAFETY: every other CPU is parked and none runs this patch's code;
                // interrupts are off; restoring the bytes this patch overwrote.
                unsafe { text::write(s.addr, &s.before) };
            }
        }
        Ok(resume(parked))
    })?;
    let mut stack = STACK.lock();
    let keep = stack.len() - victims.len();
    stack.truncate(keep);
    drop(stack);
    super::bump_generation();
    for p in &victims {
        memory::free(p.memory.0, p.memory.1);
    }
    Ok((victims, pause))
}
