//! [`PackageSpec`]: an image's parts → package bytes.
//!
//! The packer fills a spec from an ELF; tests fill one by hand. [`PackageSpec::build`]
//! lays the package out canonically (segment table right after the fixed header,
//! relocation table right after it, the image description right after that, each
//! segment's bytes at the next 4 KiB boundary of the payload), computes both digests, and parses the result before returning it, so
//! it never hands out a package the kernel would refuse.

use alloc::vec;
use alloc::vec::Vec;

use super::header::payload_offset;
use super::image::{page_align_up, Entries, Relocation, SegmentFlags};
use super::layout as at;
use super::{parse, reseal, FORMAT_VERSION, MAGIC};
use crate::build_id::BuildId;
use crate::error::Result;
use crate::identity::EmbeddedIdentity;
use crate::wire::Writer;

/// One segment to put in a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSpec {
    /// Virtual address as linked (page aligned).
    pub vaddr: u64,
    /// Memory size (at least `bytes.len()`).
    pub mem_size: u64,
    /// Permissions.
    pub flags: SegmentFlags,
    /// The file bytes.
    pub bytes: Vec<u8>,
}

/// Everything a package holds, before layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageSpec {
    /// The image's identity.
    pub identity: EmbeddedIdentity,
    /// The image's build id.
    pub build_id: BuildId,
    /// Entry points as offsets from the link base (the first segment's address).
    pub entries: Entries,
    /// Segments sorted by address.
    pub segments: Vec<SegmentSpec>,
    /// `R_X86_64_RELATIVE` relocations.
    pub relocations: Vec<Relocation>,
    /// The image description (the kernel's `.hk_schema` bytes, `HKDESC01` …).
    pub description: Vec<u8>,
    /// The image's security version (the kernel's `.hk_svn`).
    pub svn: u32,
}

impl PackageSpec {
    /// The link base: the first segment's address.
    pub fn link_base(&self) -> u64 {
        self.segments.first().map_or(0, |s| s.vaddr)
    }

    /// The image span: page-aligned end of the last segment minus the link base.
    pub fn image_span(&self) -> u64 {
        let end = self
            .segments
            .last()
            .map_or(0, |s| s.vaddr.saturating_add(s.mem_size));
        page_align_up(end)
            .unwrap_or(u64::MAX)
            .saturating_sub(self.link_base())
    }

    /// Lays out the package, seals it with its digests and checks it with
    /// [`parse`](super::parse); the error names what the spec got wrong.
    pub fn build(&self) -> Result<Vec<u8>> {
        let bytes = self.encode();
        parse(&bytes)?;
        Ok(bytes)
    }

    /// Lays out and seals the package without checking it (tests use it to make
    /// packages that are wrong on purpose).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let seg_table = at::FIXED_SIZE;
        let seg_len = self.segments.len().saturating_mul(at::SEGMENT_ENTRY_SIZE);
        let rel_table = seg_table.saturating_add(seg_len);
        let rel_len = self
            .relocations
            .len()
            .saturating_mul(at::RELOCATION_ENTRY_SIZE);
        // Both tables' entries are multiples of 8 bytes: the description is 8-aligned.
        let description = rel_table.saturating_add(rel_len);
        let header_size = description.saturating_add(self.description.len());
        let payload_at = payload_offset(header_size) as usize;

        let mut offsets = Vec::with_capacity(self.segments.len());
        let mut payload_size = 0usize;
        for s in &self.segments {
            let at = page_align_up(payload_size as u64).unwrap_or(u64::MAX) as usize;
            offsets.push(at);
            payload_size = at.saturating_add(s.bytes.len());
        }
        let mut out = vec![0u8; payload_at.saturating_add(payload_size)];
        let total = out.len() as u64;

        let mut w = Writer::new(&mut out);
        w.put(&MAGIC);
        w.u16(FORMAT_VERSION);
        w.u16(0);
        w.u32(u32::try_from(header_size).unwrap_or(u32::MAX));
        w.u64(total);
        w.seek(at::BUILD_ID_LEN);
        w.u8(self.build_id.len());
        w.seek(at::BUILD_ID);
        w.put(self.build_id.padded());
        w.put(&self.identity.to_bytes());
        w.u64(self.link_base());
        w.u64(self.image_span());
        w.u64(self.entries.kernel);
        w.u64(self.entries.bootstrap);
        w.u64(self.entries.resume);
        w.u64(self.entries.ap_resume);
        w.u32(self.segments.len() as u32);
        w.u32(self.relocations.len() as u32);
        w.u64(seg_table as u64);
        w.u64(rel_table as u64);
        w.u64(description as u64);
        w.u32(u32::try_from(self.description.len()).unwrap_or(u32::MAX));
        w.u32(self.svn);
        for (s, &at) in self.segments.iter().zip(&offsets) {
            w.u64(at as u64);
            w.u64(s.vaddr);
            w.u64(s.bytes.len() as u64);
            w.u64(s.mem_size);
            w.u32(s.flags.bits());
            w.u32(0);
        }
        for r in &self.relocations {
            w.u64(r.offset);
            w.i64(r.addend);
        }
        w.put(&self.description);
        for (s, &at) in self.segments.iter().zip(&offsets) {
            w.seek(payload_at.saturating_add(at));
            w.put(&s.bytes);
        }
        let _ = w.finish("package");
        let _ = reseal(&mut out);
        out
    }
}
