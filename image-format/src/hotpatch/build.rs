//! [`PatchSpec`]: a patch's parts → patch bytes (feature `alloc`).
//!
//! The generator fills a spec from two kernel builds; tests fill one by hand.
//! [`PatchSpec::build`] lays the patch out canonically — replace entries sorted by
//! site, then new ones; each function's code at the next 16-byte boundary of the code
//! region (gaps filled with `int3`); the data region at the next 4 KiB boundary; the
//! four tables right after the fixed header; relocations sorted by place — computes the
//! digests and the patch id, and parses the result before returning it.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use sha2::{Digest as _, Sha256};

use super::error::PatchError;
use super::format::{PatchId, RelocKind, Site, TargetImage};
use super::layout as at;
use super::parse::{header_digest, parse, payload_offset};
use super::{FORMAT_VERSION, MAGIC};
use crate::error::{Digest, FormatError};
use crate::identity::Label;
use crate::wire::{Fixed, Writer};

/// Fill of the gaps between functions: `int3`.
const CODE_FILL: u8 = 0xcc;

/// A function to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    /// Demangled name without hash.
    pub name: String,
    /// The code as linked in the new build (relocation fields are overwritten by the
    /// guest).
    pub code: Vec<u8>,
    /// `Some` for a replacement (the site in the running image), `None` for a new
    /// function.
    pub site: Option<Site>,
}

/// A block of read-only data to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSpec {
    /// What it is, for display.
    pub name: String,
    /// The bytes (relocation fields are overwritten by the guest).
    pub bytes: Vec<u8>,
    /// Alignment: a power of two of at most 4096.
    pub align: u32,
}

/// A function or data block of the spec, by index into its vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Anchor {
    /// `PatchSpec::functions[i]`.
    Function(usize),
    /// `PatchSpec::data[i]`.
    Data(usize),
}

/// What a relocation of the spec points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecTarget {
    /// An image-relative offset in the running image.
    Image(u64),
    /// An offset into a function or data block of this spec.
    Patch(Anchor, u32),
}

/// A relocation of the spec: a field at `offset` inside `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelocationSpec {
    /// The function or data block holding the field.
    pub at: Anchor,
    /// Offset of the field in it.
    pub offset: u32,
    /// Field type.
    pub kind: RelocKind,
    /// `S`.
    pub target: SpecTarget,
    /// `A`.
    pub addend: i64,
    /// The target's symbol and offset, for display.
    pub symbol: String,
}

/// Everything a patch holds, before layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchSpec {
    /// Version (sequence number), at least 1.
    pub version: u32,
    /// The security version of the build the code comes from (its `.hk_svn`).
    pub svn: u32,
    /// Human label.
    pub label: Label,
    /// The image the patch applies to.
    pub target: TargetImage,
    /// Functions, in any order.
    pub functions: Vec<FunctionSpec>,
    /// Data blocks, in any order.
    pub data: Vec<DataSpec>,
    /// Relocations, in any order.
    pub relocations: Vec<RelocationSpec>,
}

impl PatchSpec {
    /// Lays out the patch, seals it and checks it with [`parse`]; the error names what
    /// the spec got wrong.
    pub fn build(&self) -> Result<Vec<u8>, PatchError> {
        let bytes = self.encode()?;
        parse(&bytes)?;
        Ok(bytes)
    }

    /// Lays out and seals the patch without parsing it.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, PatchError> {
        let layout = Layout::of(self);
        let mut strings = Strings::default();
        let (code_end, data_end) = (layout.code_end, layout.data_end);
        let data_offset = align_up(code_end, 4096);
        let payload_size = if self.data.is_empty() {
            code_end
        } else {
            data_end
        };
        let data_size = if self.data.is_empty() {
            0
        } else {
            data_end - data_offset
        };

        let mut payload = vec![0u8; payload_size];
        if let Some(code) = payload.get_mut(..code_end) {
            code.fill(CODE_FILL);
        }
        for (i, f) in self.functions.iter().enumerate() {
            let at = layout.function_at.get(i).copied().unwrap_or(0);
            if let Some(dst) = payload.get_mut(at..at + f.code.len()) {
                dst.copy_from_slice(&f.code);
            }
        }
        for (i, d) in self.data.iter().enumerate() {
            let at = layout.data_at.get(i).copied().unwrap_or(0);
            if let Some(dst) = payload.get_mut(at..at + d.bytes.len()) {
                dst.copy_from_slice(&d.bytes);
            }
        }

        let mut relocs = Vec::with_capacity(self.relocations.len());
        for (i, r) in self.relocations.iter().enumerate() {
            let place = layout
                .resolve(r.at, r.offset)
                .ok_or_else(|| bad_anchor(i))?;
            let target = match r.target {
                SpecTarget::Image(v) => (1u8, v),
                SpecTarget::Patch(a, off) => (
                    2u8,
                    layout.resolve(a, off).ok_or_else(|| bad_anchor(i))? as u64,
                ),
            };
            relocs.push((place, r, target));
        }
        relocs.sort_by_key(|(place, _, _)| *place);

        let fn_table = at::FIXED_SIZE;
        let data_table = fn_table + self.functions.len() * at::function::SIZE;
        let rel_table = data_table + self.data.len() * at::data::SIZE;
        let str_table = rel_table + relocs.len() * at::relocation::SIZE;
        let mut table = Vec::new();
        {
            let mut fns = Vec::with_capacity(self.functions.len() * at::function::SIZE);
            for &i in &layout.order {
                let Some(f) = self.functions.get(i) else {
                    continue;
                };
                let (name_at, name_len) = strings.add(&f.name);
                let site = f.site.unwrap_or(Site {
                    offset: 0,
                    old_size: 0,
                    original: [0; 16],
                });
                let mut e = [0u8; at::function::SIZE];
                let mut w = Writer::new(&mut e);
                w.u8(if f.site.is_some() { 1 } else { 2 });
                w.put(&[0; 3]);
                w.u32(name_at);
                w.u32(name_len);
                w.u32(layout.function_at.get(i).copied().unwrap_or(0) as u32);
                w.u32(f.code.len() as u32);
                w.u32(site.old_size);
                w.u64(site.offset);
                w.put(&site.original);
                let _ = w.finish("function entry");
                fns.extend_from_slice(&e);
            }
            table.extend_from_slice(&fns);
        }
        for (i, d) in self.data.iter().enumerate() {
            let (name_at, name_len) = strings.add(&d.name);
            let mut e = [0u8; at::data::SIZE];
            let mut w = Writer::new(&mut e);
            w.u32(layout.data_at.get(i).copied().unwrap_or(0) as u32);
            w.u32(d.bytes.len() as u32);
            w.u32(d.align);
            w.u32(name_at);
            w.u32(name_len);
            w.u32(0);
            let _ = w.finish("data entry");
            table.extend_from_slice(&e);
        }
        for (place, r, (kind, value)) in &relocs {
            let (name_at, name_len) = strings.add(&r.symbol);
            let mut e = [0u8; at::relocation::SIZE];
            let mut w = Writer::new(&mut e);
            w.u32(*place as u32);
            w.u8(r.kind.code());
            w.u8(*kind);
            w.u16(0);
            w.u64(*value);
            w.i64(r.addend);
            w.u32(name_at);
            w.u32(name_len);
            let _ = w.finish("relocation entry");
            table.extend_from_slice(&e);
        }
        table.extend_from_slice(&strings.bytes);
        let header_size = str_table + strings.bytes.len();
        let payload_at = payload_offset(header_size);

        let mut out = vec![0u8; payload_at + payload.len()];
        let total = out.len() as u64;
        let payload_digest: Digest = Sha256::digest(&payload).into();
        let mut w = Writer::new(&mut out);
        w.put(&MAGIC);
        w.u16(FORMAT_VERSION);
        w.u16(0);
        w.u32(u32::try_from(header_size).unwrap_or(u32::MAX));
        w.u64(total);
        w.seek(at::PAYLOAD_DIGEST);
        w.put(&payload_digest);
        w.u64(PatchId::from_payload_digest(&payload_digest).0);
        w.u32(self.version);
        w.u32(self.svn);
        w.put(self.label.as_bytes());
        w.u8(self.target.build_id.len());
        w.seek(at::TARGET_BUILD_ID);
        w.put(self.target.build_id.padded());
        w.put(&self.target.header_hash);
        w.put(&self.target.text_hash);
        w.u64(self.target.text_offset);
        w.u64(self.target.text_size);
        w.u32(code_end as u32);
        w.u32(data_offset as u32);
        w.u32(data_size as u32);
        w.u32(self.functions.len() as u32);
        w.u32(self.data.len() as u32);
        w.u32(relocs.len() as u32);
        w.u32(strings.bytes.len() as u32);
        w.u32(0);
        w.u64(fn_table as u64);
        w.u64(data_table as u64);
        w.u64(rel_table as u64);
        w.u64(str_table as u64);
        w.put(&table);
        w.seek(payload_at);
        w.put(&payload);
        w.finish("patch")?;
        reseal(&mut out)?;
        Ok(out)
    }
}

fn bad_anchor(index: usize) -> PatchError {
    FormatError::InvalidField {
        field: "relocation spec",
        value: index as u64,
        reason: "names a function or data block the spec does not have",
    }
    .into()
}

fn align_up(x: usize, align: usize) -> usize {
    x.div_ceil(align) * align
}

/// Where each function and data block of a spec lands in the payload.
struct Layout {
    /// Function indices in table order: replace entries by site, then new ones.
    order: Vec<usize>,
    function_at: Vec<usize>,
    data_at: Vec<usize>,
    code_end: usize,
    data_end: usize,
}

impl Layout {
    fn of(spec: &PatchSpec) -> Self {
        let mut order: Vec<usize> = (0..spec.functions.len()).collect();
        order.sort_by_key(|&i| {
            let f = spec.functions.get(i);
            match f.and_then(|f| f.site) {
                Some(site) => (0u8, site.offset, i),
                None => (1u8, 0, i),
            }
        });
        let mut function_at = vec![0usize; spec.functions.len()];
        let mut end = 0usize;
        for &i in &order {
            let at = align_up(end, 16);
            if let Some(slot) = function_at.get_mut(i) {
                *slot = at;
            }
            end = at + spec.functions.get(i).map_or(0, |f| f.code.len());
        }
        let code_end = end;
        let mut data_at = Vec::with_capacity(spec.data.len());
        let mut end = align_up(code_end, 4096);
        for d in &spec.data {
            let at = align_up(end, d.align.max(1) as usize);
            data_at.push(at);
            end = at + d.bytes.len();
        }
        Self {
            order,
            function_at,
            data_at,
            code_end,
            data_end: end,
        }
    }

    fn resolve(&self, anchor: Anchor, offset: u32) -> Option<usize> {
        let base = match anchor {
            Anchor::Function(i) => *self.function_at.get(i)?,
            Anchor::Data(i) => *self.data_at.get(i)?,
        };
        base.checked_add(offset as usize)
    }
}

/// The string table, each distinct string stored once.
#[derive(Default)]
struct Strings {
    bytes: Vec<u8>,
    seen: BTreeMap<String, (u32, u32)>,
}

impl Strings {
    fn add(&mut self, s: &str) -> (u32, u32) {
        if s.is_empty() {
            return (0, 0);
        }
        if let Some(&at) = self.seen.get(s) {
            return at;
        }
        let at = (self.bytes.len() as u32, s.len() as u32);
        self.bytes.extend_from_slice(s.as_bytes());
        self.seen.insert(String::from(s), at);
        at
    }
}

/// Recomputes the payload digest, the patch id and the header digest in place, after
/// editing a patch on purpose (tests make patches that are wrong in one field this way).
pub fn reseal(bytes: &mut [u8]) -> Result<(), PatchError> {
    let header_size =
        Fixed::new(bytes, at::FIXED_SIZE, "patch header")?.u32(at::HEADER_SIZE) as usize;
    if bytes.len() < header_size {
        return Err(FormatError::Truncated {
            what: "patch header",
            needed: header_size as u64,
            got: bytes.len() as u64,
        }
        .into());
    }
    let payload_at = payload_offset(header_size);
    // A signature trailer after `total_size` is not payload.
    let total = Fixed::new(bytes, at::FIXED_SIZE, "patch header")?.u64(at::TOTAL_SIZE);
    let end = usize::try_from(total)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let payload: Digest = Sha256::digest(bytes.get(payload_at..end).unwrap_or(&[])).into();
    if let Some(field) = bytes.get_mut(at::PAYLOAD_DIGEST..at::PATCH_ID) {
        field.copy_from_slice(&payload);
    }
    if let Some(field) = bytes.get_mut(at::PATCH_ID..at::PATCH_VERSION) {
        field.copy_from_slice(&PatchId::from_payload_digest(&payload).0.to_le_bytes());
    }
    let header = header_digest(bytes.get(..header_size).unwrap_or(&[]));
    if let Some(field) = bytes.get_mut(at::HEADER_DIGEST..at::PAYLOAD_DIGEST) {
        field.copy_from_slice(&header);
    }
    Ok(())
}
