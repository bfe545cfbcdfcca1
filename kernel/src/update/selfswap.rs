//! Self-test support: this kernel's own ELF file (left in memory by the bootloader) as
//! an image source, so that self-test mode can run a complete swap — load, quiesce,
//! export, bootstrap, overlay, resume — without a host or a package.
//!
//! The file is read through the physical-memory mapping; `object` parses it. The
//! bootloader maps the kernel's segments onto the file's own frames, so the file's
//! writable segments *are* the running kernel's statics: the swap loads this image's
//! pristine pages instead (`image::keep_pristine_pages`, taken at first boot before
//! anything the heap holds is in a static) — otherwise the new kernel would start with
//! the old one's live statics, pointers into a heap that no longer exists.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

use object::elf::{FileHeader64, PT_LOAD, R_X86_64_RELATIVE, SHT_RELA, SHT_SYMTAB};
use object::read::elf::{FileHeader, ProgramHeader, Rela, SectionHeader, Sym};
use object::LittleEndian as LE;
use updater::handoff::ImageRef;

use crate::memory;
use crate::update::prepare::{ImageSource, SegmentSource};

static FILE_PHYS: AtomicU64 = AtomicU64::new(0);
static FILE_LEN: AtomicU64 = AtomicU64::new(0);
/// Remembers where the bootloader left this kernel's ELF file (first boot).
pub fn remember_file(phys: u64, len: u64) {
    FILE_PHYS.store(phys, Ordering::Relaxed);
    FILE_LEN.store(len, Ordering::Relaxed);
}

/// The bytes of the writable segment at `vaddr` (from the base) of `len` bytes, from
/// this image's pristine pages, assembled once into memory of their own.
fn pristine_segment(vaddr: u64, len: u64) -> Option<&'static [u8]> {
    let start = crate::memory::layout::KERNEL_IMAGE.start + vaddr;
    let pages = crate::image::pristine();
    let mut bytes = alloc::vec![0u8; len as usize];
    for (at, chunk) in bytes.chunks_mut(4096).enumerate() {
        let page = start + at as u64 * 4096;
        let (_, phys) = pages.iter().find(|(p, _)| *p == page)?;
        // SAFETY: the copy is a frame of its own for the image's life (image.rs),
        // mapped through the physical-memory map.
        let copy = unsafe { core::slice::from_raw_parts(memory::phys_to_virt(*phys), 4096) };
        chunk.copy_from_slice(&copy[..chunk.len()]);
    }
    Some(alloc::boxed::Box::leak(bytes.into_boxed_slice()))
}

fn file() -> Option<&'static [u8]> {
    let (phys, len) = (
        FILE_PHYS.load(Ordering::Relaxed),
        FILE_LEN.load(Ordering::Relaxed),
    );
    (len != 0).then(|| {
        // SAFETY: the bootloader's copy of the kernel file is in memory it reserved (not
        // usable, so never allocated) and mapped through the physical mapping.
        unsafe { core::slice::from_raw_parts(memory::phys_to_virt(phys), len as usize) }
    })
}

/// The parts of the file a load needs.
pub struct OwnImage {
    pub segments: Vec<SegmentSource<'static>>,
    pub relocations: Vec<(u64, i64)>,
    pub span: u64,
    pub entries: [u64; 3],
}

/// Parses this kernel's file. `None` when the file is not available or not as expected.
pub fn own_image() -> Option<OwnImage> {
    let data = file()?;
    let header = FileHeader64::<LE>::parse(data).ok()?;
    let mut segments = Vec::new();
    let mut span = 0;
    for ph in header.program_headers(LE, data).ok()? {
        if ph.p_type(LE) != PT_LOAD {
            continue;
        }
        let flags = ph.p_flags(LE);
        let vaddr = ph.p_vaddr(LE);
        let bytes = if flags & object::elf::PF_W != 0 {
            // The live segment is the running kernel's statics: load the first-boot copy.
            // (Segments start on a page: the linker keeps loadable segments apart.)
            pristine_segment(vaddr, ph.p_filesz(LE))?
        } else {
            ph.data(LE, data).ok()?
        };
        span = span.max(vaddr + ph.p_memsz(LE));
        segments.push(SegmentSource {
            vaddr,
            data: bytes,
            mem_size: ph.p_memsz(LE),
            flags: flags & 7,
        });
    }
    let sections = header.sections(LE, data).ok()?;
    let mut relocations = Vec::new();
    for section in sections.iter() {
        // The dynamic relocations are the allocated RELA section (`.rela.dyn`); the
        // non-allocated ones are --emit-relocs' static relocations, for the differ.
        if section.sh_type(LE) == SHT_RELA
            && section.sh_flags(LE) & object::elf::SHF_ALLOC as u64 != 0
        {
            let relas: &[object::elf::Rela64<LE>] = section.data_as_array(LE, data).ok()?;
            for r in relas {
                if r.r_type(LE, false) != R_X86_64_RELATIVE {
                    return None;
                }
                relocations.push((r.r_offset(LE), r.r_addend(LE)));
            }
        }
    }
    let symbols = sections.symbols(LE, data, SHT_SYMTAB).ok()?;
    let find = |name: &[u8]| {
        symbols
            .iter()
            .find(|s| s.name(LE, symbols.strings()).ok() == Some(name))
            .map(|s| s.st_value(LE))
    };
    let entries = [
        find(b"hk_bootstrap")?,
        find(b"hk_resume")?,
        find(b"hk_ap_resume")?,
    ];
    Some(OwnImage {
        segments,
        relocations,
        span: span.next_multiple_of(4096),
        entries,
    })
}

impl OwnImage {
    /// As a load source, with this kernel's identity.
    pub fn source(&self) -> ImageSource<'_, core::iter::Copied<core::slice::Iter<'_, (u64, i64)>>> {
        ImageSource {
            identity: ImageRef {
                ..crate::update::swap::own_image_ref()
            },
            link_base: 0,
            span: self.span,
            segments: &self.segments,
            relocations: self.relocations.iter().copied(),
            bootstrap: self.entries[0],
            resume: self.entries[1],
            ap_resume: self.entries[2],
        }
    }
}
