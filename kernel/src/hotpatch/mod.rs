//! Function-level hotpatching: the patch stack of the running image.
//!
//! A patch (made on the host from two builds, `image_format::hotpatch`) replaces whole
//! functions: its code is loaded into patch memory near the image, and a `jmp rel32` is
//! written at each replaced function's entry while every other CPU is parked
//! ([`install`]). Patches stack: each remembers the bytes it overwrote at every site
//! (the pristine bytes, or an earlier patch's jump), so removing patches in reverse order
//! ([`install::remove_through`]) restores the text exactly. The stack is this kernel's own:
//! a swap hands over only its description (`updater::records::patch_set`), never the
//! patches themselves, and the new kernel frees their memory.
//!
//! - [`install`]: validate, load, relocate, park, check stacks, write jumps;
//! - [`memory`]: patch memory within `jmp rel32` reach of the image;
//! - [`cold`]: re-applying a coldpatch at boot.
//!
//! The mailbox commands that drive it are the update layer's (`update::patches`).

pub mod cold;
pub mod install;
pub mod memory;

use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use image_format::mailbox::report::{PatchEntry, PatchList, PatchedFunction};
use spin::{Mutex, Once};

use crate::memory::layout::KERNEL_IMAGE;

/// Bytes a site's jump occupies.
pub const JUMP_LEN: usize = image_format::hotpatch::JUMP_LEN;

/// One site a patch wrote.
#[derive(Debug, Clone)]
pub struct SiteWrite {
    /// Absolute address of the function's entry.
    pub addr: u64,
    /// The replaced function's size (CPUs must not stand in `addr..addr + size`).
    pub old_size: u32,
    /// What was there before this patch (restored on removal).
    pub before: [u8; JUMP_LEN],
    /// What this patch wrote.
    pub jump: [u8; JUMP_LEN],
    /// The function's name.
    pub function: String,
}

/// An applied patch.
#[derive(Debug, Clone)]
pub struct Applied {
    pub id: u64,
    pub version: u32,
    pub label: String,
    pub sequence: u32,
    pub sites: Vec<SiteWrite>,
    /// Patch memory: start and length (whole pages); code is `code` bytes at the start.
    pub memory: (u64, u64),
    pub code: u64,
    pub applied_ns: u64,
}

impl Applied {
    /// Whether `addr` lies in this patch's code.
    pub fn contains_code(&self, addr: u64) -> bool {
        addr >= self.memory.0 && addr < self.memory.0 + self.code
    }

    fn functions(&self) -> Vec<PatchedFunction> {
        self.sites
            .iter()
            .map(|s| PatchedFunction {
                name: s.function.clone(),
                site: s.addr,
            })
            .collect()
    }

    /// As a list entry.
    pub fn entry(&self) -> PatchEntry {
        PatchEntry {
            id: self.id,
            version: self.version,
            sequence: self.sequence,
            label: self.label.clone(),
            functions: self.functions(),
            applied_ns: self.applied_ns,
        }
    }
}

/// The applied patches, bottom first.
pub static STACK: Mutex<Vec<Applied>> = Mutex::new(Vec::new());
/// Bumped by every apply and remove (the swap's overlay must include pages patched
/// since an image was staged: `update::stage::refresh_for_patches`).
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Changes with every apply and remove.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Acquire)
}

fn bump_generation() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}
/// SHA-256 of the image's text before any patch: a patch names the exact image it
/// applies to by this hash. Computed the first time it is needed (no patch applied yet).
static PRISTINE_TEXT: Once<[u8; 32]> = Once::new();

/// The patch list.
pub fn list() -> PatchList {
    PatchList {
        patches: STACK.lock().iter().map(Applied::entry).collect(),
    }
}

/// Sites written by applied patches (absolute addresses).
pub fn sites() -> Vec<u64> {
    STACK
        .lock()
        .iter()
        .flat_map(|p| p.sites.iter().map(|s| s.addr))
        .collect()
}

/// Applied patches.
pub fn count() -> usize {
    STACK.lock().len()
}

/// The pristine text hash; computes it if no patch is applied yet, or `None` when a
/// patch is applied and the hash was never taken (cannot happen: the first apply takes
/// it).
pub fn pristine_text_hash() -> Option<[u8; 32]> {
    if let Some(h) = PRISTINE_TEXT.get() {
        return Some(*h);
    }
    if count() != 0 {
        return None;
    }
    Some(*PRISTINE_TEXT.call_once(|| {
        use sha2::{Digest as _, Sha256};
        let mut hasher = Sha256::new();
        for seg in crate::image::segments().filter(|s| s.executable) {
            // SAFETY: the executable segment is mapped read-only for the image's life.
            let bytes = unsafe {
                core::slice::from_raw_parts(seg.start as *const u8, seg.file_size as usize)
            };
            hasher.update(bytes);
        }
        hasher.finalize().into()
    }))
}

/// The image's load base (sites are image-relative in patches).
pub fn image_base() -> u64 {
    KERNEL_IMAGE.start
}

/// The applied patches as hand-off records (for a swap).
pub fn records() -> Vec<updater::records::patch_set::V1> {
    STACK
        .lock()
        .iter()
        .map(|p| {
            let mut label = [0u8; 32];
            updater::handoff::set_text(&mut label, &p.label);
            updater::records::patch_set::V1 {
                id: p.id,
                version: p.version,
                sequence: p.sequence,
                sites: p.sites.len() as u32,
                memory: p.memory.0,
                pages: (p.memory.1 / 4096) as u32,
                label,
            }
        })
        .collect()
}

/// After a swap: frees the patch memory the previous kernel's patches used (the new
/// image never runs them).
pub fn free_handed_over(patches: &[updater::records::patch_set::V1]) {
    for p in patches {
        memory::free(p.memory, u64::from(p.pages) * 4096);
    }
}
