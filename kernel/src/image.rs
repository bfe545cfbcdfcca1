//! This image, as it is loaded: its base, its segments and its GNU build id, read from
//! its own ELF and program headers (the first loadable segment starts at file offset 0,
//! so they are mapped at the base) — and its **pristine pages**: copies of its writable
//! pages as they were before it ran, kept in frames of their own for the image's life.
//! A swap from this image hands them to the guard: if the new kernel fails inside its
//! health window, the guard copies them back, and this image resumes with its statics'
//! first values (`arch::park`, `updater::handoff::Undo`).

use object::elf::{FileHeader64, NT_GNU_BUILD_ID, PF_W, PF_X, PT_LOAD, PT_NOTE};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian;

use alloc::vec::Vec;

use spin::Mutex;

use crate::memory::{self, layout::KERNEL_IMAGE};

/// This image's pristine pages: (page address, physical address of its copy).
static PRISTINE: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

/// A loadable segment of the running image (addresses are virtual, absolute).
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub start: u64,
    pub mem_size: u64,
    pub file_size: u64,
    pub executable: bool,
    pub writable: bool,
}

/// The running image's headers: at most the first 4 KiB page.
fn header_bytes() -> &'static [u8] {
    // The image is linked with separate loadable segments, the first PT_LOAD at offset 0.
    // SAFETY: so its first page holds the ELF and program headers, mapped read-only for
    // the life of the image.
    unsafe { core::slice::from_raw_parts(KERNEL_IMAGE.start as *const u8, 4096) }
}

fn header() -> &'static FileHeader64<LittleEndian> {
    FileHeader64::<LittleEndian>::parse(header_bytes())
        .expect("the running image has a valid ELF header")
}

/// The loadable segments.
pub fn segments() -> impl Iterator<Item = Segment> {
    let h = header();
    let phdrs = h
        .program_headers(LittleEndian, header_bytes())
        .expect("program headers in the first page");
    phdrs
        .iter()
        .filter(|p| p.p_type(LittleEndian) == PT_LOAD)
        .map(|p| {
            let flags = p.p_flags(LittleEndian);
            Segment {
                start: KERNEL_IMAGE.start + p.p_vaddr(LittleEndian),
                mem_size: p.p_memsz(LittleEndian),
                file_size: p.p_filesz(LittleEndian),
                executable: flags & PF_X != 0,
                writable: flags & PF_W != 0,
            }
        })
}

/// Every page of the writable segments, by address.
pub fn writable_pages() -> impl Iterator<Item = u64> {
    segments().filter(|s| s.writable).flat_map(|s| {
        let first = s.start & !0xfff;
        (first..s.start + s.mem_size).step_by(4096)
    })
}

/// First boot: copies the writable pages as they are now — their statics untouched but
/// for the few the first steps of boot set, which a resume sets again — into frames of
/// their own. Returns how many pages were kept (0 when memory is out: no revert to this
/// image is possible then, and a swap says so).
pub fn keep_pristine_pages() -> usize {
    let mut kept = Vec::new();
    for page in writable_pages() {
        match memory::copy_to_fresh_frame(page) {
            Some(phys) => kept.push((page, phys)),
            None => {
                for (_, phys) in kept {
                    memory::free_frame(phys);
                }
                return 0;
            }
        }
    }
    let n = kept.len();
    *PRISTINE.lock() = kept;
    n
}

/// After a swap into this image (or a revert to it): its pristine pages, kept by the
/// kernel that staged it.
pub fn adopt_pristine(pages: impl Iterator<Item = (u64, u64)>) {
    *PRISTINE.lock() = pages.collect();
}

/// The pristine pages (page address, copy's physical address).
pub fn pristine() -> Vec<(u64, u64)> {
    PRISTINE.lock().clone()
}

/// Bytes from the base to the end of the last segment, rounded up to a page.
pub fn span() -> u64 {
    segments()
        .map(|s| s.start + s.mem_size - KERNEL_IMAGE.start)
        .max()
        .unwrap_or(0)
        .next_multiple_of(4096)
}

/// The GNU build id (20 bytes for `--build-id=sha1`).
pub fn build_id() -> image_format::BuildId {
    let (len, bytes) = build_id_bytes();
    image_format::BuildId::new(&bytes[..len])
}

/// The build id's bytes, zero-padded to 32, and how many are meaningful.
pub fn build_id_bytes() -> (usize, [u8; 32]) {
    let mut out = [0u8; 32];
    let h = header();
    let Ok(phdrs) = h.program_headers(LittleEndian, header_bytes()) else {
        return (0, out);
    };
    for p in phdrs.iter().filter(|p| p.p_type(LittleEndian) == PT_NOTE) {
        let start = KERNEL_IMAGE.start + p.p_vaddr(LittleEndian);
        let len = p.p_memsz(LittleEndian) as usize;
        // SAFETY: PT_NOTE lies inside a loaded read-only segment of this image.
        let data = unsafe { core::slice::from_raw_parts(start as *const u8, len) };
        // Notes: namesz, descsz, type, name (padded to 4), desc (padded to 4).
        let mut at = 0;
        while at + 12 <= data.len() {
            let word = |i: usize| {
                u32::from_le_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]) as usize
            };
            let (namesz, descsz, kind) = (word(at), word(at + 4), word(at + 8) as u32);
            let desc = at + 12 + namesz.next_multiple_of(4);
            if desc + descsz > data.len() {
                break;
            }
            if kind == NT_GNU_BUILD_ID {
                let n = descsz.min(32);
                out[..n].copy_from_slice(&data[desc..desc + n]);
                return (n, out);
            }
            at = desc + descsz.next_multiple_of(4);
        }
    }
    (0, out)
}

/// SHA-256 of the ELF header and the program header table, as loaded (a hotpatch
/// names the image it applies to with this).
pub fn header_hash() -> [u8; 32] {
    use object::read::elf::FileHeader as _;
    use sha2::{Digest as _, Sha256};
    let h = header();
    let bytes = header_bytes();
    let ehsize = h.e_ehsize(LittleEndian) as usize;
    let phoff = h.e_phoff(LittleEndian) as usize;
    let phlen = h.e_phnum(LittleEndian) as usize * h.e_phentsize(LittleEndian) as usize;
    let mut hasher = Sha256::new();
    hasher.update(&bytes[..ehsize.min(bytes.len())]);
    hasher.update(&bytes[phoff.min(bytes.len())..(phoff + phlen).min(bytes.len())]);
    hasher.finalize().into()
}

/// A copy of `len` bytes of the running image from `address`, if the range lies inside
/// one loaded segment (what `ReadImage` answers with; the host compares the bytes with
/// its ELF).
pub fn read(address: u64, len: usize) -> Option<alloc::vec::Vec<u8>> {
    let end = address.checked_add(len as u64)?;
    segments().find(|s| address >= s.start && end <= s.start + s.mem_size)?;
    // Text is written only with every other CPU parked (hotpatch), not by this CPU now.
    // SAFETY: the range lies inside a loaded segment, which stays mapped and readable
    // for as long as this image runs.
    let bytes = unsafe { core::slice::from_raw_parts(address as *const u8, len) };
    Some(bytes.to_vec())
}
