//! The image a package describes: its geometry, segments and relocations.
//!
//! These are the typed values [`super::Header`] hands out after validation; the
//! builder takes them in to write a package.

use core::fmt;

use crate::PAGE_SIZE;

/// Offsets of the image's entry points from its link base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Entries {
    /// The ELF entry (`e_entry`): where the bootloader starts a cold boot.
    pub kernel: u64,
    /// `hk_bootstrap`: run from the staging window by the old kernel during a swap.
    pub bootstrap: u64,
    /// `hk_resume`: where the bootstrap jumps after the overlay.
    pub resume: u64,
    /// `hk_ap_resume`: where parked application processors are released to.
    pub ap_resume: u64,
}

impl Entries {
    /// `(name, offset)` for each entry, in header order.
    pub fn named(&self) -> [(&'static str, u64); 4] {
        [
            ("kernel", self.kernel),
            ("bootstrap", self.bootstrap),
            ("resume", self.resume),
            ("AP resume", self.ap_resume),
        ]
    }
}

/// Where the image lives in its own address space.
///
/// An image placed so that its link base lands at address `L` has the load bias
/// `L - link_base`: every virtual address `v` of the image is at `v + bias`, and every
/// relocation writes `bias + addend` (see [`Relocation`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Geometry {
    /// The lowest virtual address of the image (the first segment's), page aligned.
    /// Static PIE kernels link at 0.
    pub link_base: u64,
    /// Page-aligned size from the link base to the end of the last segment: the
    /// memory the image needs, `.bss` included.
    pub image_span: u64,
    /// Entry points, as offsets from the link base.
    pub entries: Entries,
}

impl Geometry {
    /// The load bias for an image whose link base is placed at `load_address`.
    pub const fn bias_for(&self, load_address: u64) -> u64 {
        load_address.wrapping_sub(self.link_base)
    }
}

bitflags::bitflags! {
    /// A segment's permissions (the ELF `p_flags` bits) and whether it is RELRO.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct SegmentFlags: u32 {
        /// Executable (ELF `PF_X`).
        const X = 1;
        /// Writable (ELF `PF_W`).
        const W = 2;
        /// Readable (ELF `PF_R`).
        const R = 4;
        /// Inside the ELF's `PT_GNU_RELRO` range: written by relocation, then
        /// read-only. The loader may map it read-only once relocations are applied.
        const RELRO = 0x10;
    }
}

/// `R W X` columns as `readelf -l` prints them, plus `relro`.
impl fmt::Display for SegmentFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = |flag, ch| if self.contains(flag) { ch } else { ' ' };
        write!(
            f,
            "{}{}{}",
            c(Self::R, 'R'),
            c(Self::W, 'W'),
            c(Self::X, 'E')
        )?;
        if self.contains(Self::RELRO) {
            f.write_str(" relro")?;
        }
        Ok(())
    }
}

/// One loadable segment: `file_size` bytes from the payload at `payload_offset`,
/// placed at `vaddr`, followed by zeros up to `mem_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Offset of the file bytes from the start of the payload (4 KiB aligned).
    pub payload_offset: u64,
    /// Virtual address as linked (page aligned).
    pub vaddr: u64,
    /// Bytes stored in the payload.
    pub file_size: u64,
    /// Bytes of memory; the part past `file_size` is zero (`.bss`).
    pub mem_size: u64,
    /// Permissions.
    pub flags: SegmentFlags,
}

impl Segment {
    /// One past the last byte of memory (saturated; validated segments do not overflow).
    pub const fn mem_end(&self) -> u64 {
        self.vaddr.saturating_add(self.mem_size)
    }

    /// One past the last file byte in memory.
    pub const fn file_end(&self) -> u64 {
        self.vaddr.saturating_add(self.file_size)
    }

    /// True if `vaddr..vaddr + len` lies inside this segment's file bytes.
    pub const fn holds_file_bytes(&self, vaddr: u64, len: u64) -> bool {
        match vaddr.checked_add(len) {
            Some(end) => vaddr >= self.vaddr && end <= self.file_end(),
            None => false,
        }
    }

    /// True if the loader writes relocations into this segment.
    pub const fn is_relocatable(&self) -> bool {
        self.flags
            .intersects(SegmentFlags::W.union(SegmentFlags::RELRO))
    }

    /// True if the segment holds code.
    pub const fn is_executable(&self) -> bool {
        self.flags.contains(SegmentFlags::X)
    }
}

/// An `R_X86_64_RELATIVE` relocation: the 8-byte slot at virtual address `offset`
/// receives `bias + addend`, where `bias` is the image's load bias
/// ([`Geometry::bias_for`]). For an image linked at 0, `bias` is the load address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relocation {
    /// Virtual address (as linked) of the 8-byte slot.
    pub offset: u64,
    /// The addend.
    pub addend: i64,
}

impl Relocation {
    /// The value to write for load bias `bias`.
    pub const fn value(&self, bias: u64) -> u64 {
        bias.wrapping_add(self.addend as u64)
    }
}

/// `value` rounded up to a multiple of 4 KiB, or `None` on overflow.
pub(crate) const fn page_align_up(value: u64) -> Option<u64> {
    match value.checked_add(PAGE_SIZE - 1) {
        Some(v) => Some(v & !(PAGE_SIZE - 1)),
        None => None,
    }
}

/// True if `value` is a multiple of 4 KiB.
pub(crate) const fn is_page_aligned(value: u64) -> bool {
    value.is_multiple_of(PAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn relocation_adds_the_bias() {
        let r = Relocation {
            offset: 0x1f000,
            addend: 0x6000,
        };
        let g = Geometry::default();
        assert_eq!(
            r.value(g.bias_for(0xffff_ffff_8000_0000)),
            0xffff_ffff_8000_6000
        );
        let r = Relocation {
            offset: 0,
            addend: -8,
        };
        assert_eq!(r.value(0x1000), 0xff8);
    }

    #[test]
    fn segment_ranges() {
        let s = Segment {
            payload_offset: 0,
            vaddr: 0x1000,
            file_size: 0x10,
            mem_size: 0x2000,
            flags: SegmentFlags::R | SegmentFlags::W,
        };
        assert!(s.holds_file_bytes(0x1008, 8));
        assert!(!s.holds_file_bytes(0x100c, 8));
        assert!(!s.holds_file_bytes(u64::MAX, 8));
        assert_eq!(s.mem_end(), 0x3000);
        assert!(s.is_relocatable() && !s.is_executable());
        assert_eq!(s.flags.to_string(), "RW ");
        assert_eq!(
            (SegmentFlags::R | SegmentFlags::RELRO).to_string(),
            "R   relro"
        );
        assert_eq!(page_align_up(0x1001), Some(0x2000));
        assert_eq!(page_align_up(u64::MAX), None);
    }
}
