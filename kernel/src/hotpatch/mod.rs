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

/// Every site of the applied patches as hand-off records (with [`records`]: a revert to
/// this image rebuilds the stack from both, [`restore`]).
pub fn site_records() -> Vec<updater::records::patch_sites::V1> {
    let stack = STACK.lock();
    let mut out = Vec::new();
    for p in stack.iter() {
        for (i, s) in p.sites.iter().enumerate() {
            let mut before = [0u8; 8];
            before[..JUMP_LEN].copy_from_slice(&s.before);
            let mut jump = [0u8; 8];
            jump[..JUMP_LEN].copy_from_slice(&s.jump);
            let mut function = [0u8; 96];
            updater::handoff::set_text(&mut function, &s.function);
            out.push(updater::records::patch_sites::V1 {
                patch: p.id,
                addr: s.addr,
                code: p.code,
                applied_ns: p.applied_ns,
                old_size: s.old_size,
                index: i as u32,
                before,
                jump,
                function,
            });
        }
    }
    out
}

/// After a hotpatch's health window was reverted: this image resumed from its own
/// records, its statics (the stack among them) afresh, while its text still holds the
/// jumps of the patches applied before the failed one. Rebuilds the stack as it was at
/// the apply from the patch set and its sites, and the pristine text hash from
/// `text_hash` (the import counted their memory as live already).
pub fn restore(
    patches: Vec<updater::records::patch_set::V1>,
    sites: &[updater::records::patch_sites::V1],
    text_hash: [u8; 32],
) {
    PRISTINE_TEXT.call_once(|| text_hash);
    let mut stack = STACK.lock();
    stack.clear();
    let mut patches = patches;
    patches.sort_by_key(|p| p.sequence);
    for p in patches {
        let mut mine: Vec<_> = sites.iter().filter(|s| s.patch == p.id).collect();
        mine.sort_by_key(|s| s.index);
        let site = |s: &updater::records::patch_sites::V1| {
            let mut before = [0u8; JUMP_LEN];
            before.copy_from_slice(&s.before[..JUMP_LEN]);
            let mut jump = [0u8; JUMP_LEN];
            jump.copy_from_slice(&s.jump[..JUMP_LEN]);
            SiteWrite {
                addr: s.addr,
                old_size: s.old_size,
                before,
                jump,
                function: String::from(updater::handoff::text(&s.function)),
            }
        };
        stack.push(Applied {
            id: p.id,
            version: p.version,
            label: String::from(updater::handoff::text(&p.label)),
            sequence: p.sequence,
            sites: mine.iter().map(|s| site(s)).collect(),
            memory: (p.memory, u64::from(p.pages) * 4096),
            code: mine.first().map_or(0, |s| s.code),
            applied_ns: mine.first().map_or(0, |s| s.applied_ns),
        });
    }
    drop(stack);
    bump_generation();
}

/// After a swap: frees the patch memory the previous kernel's patches used (the new
/// image never runs them).
pub fn free_handed_over(patches: &[updater::records::patch_set::V1]) {
    for p in patches {
        memory::free(p.memory, u64::from(p.pages) * 4096);
    }
}
