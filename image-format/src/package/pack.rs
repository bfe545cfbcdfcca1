//! [`pack`]: a kernel ELF → an update package (host only).
//!
//! The kernel must be an x86_64 static PIE (`ET_DYN`, no interpreter, no needed
//! libraries) whose only dynamic relocations are `R_X86_64_RELATIVE`, with page-aligned
//! `PT_LOAD` segments (`-z separate-loadable-segments`), a GNU build-id note
//! (`--build-id=sha1`), an [`EmbeddedIdentity`] in section `.hk_identity`, its image
//! description (`updater::describe::build`) in section `.hk_schema`, and the symbols
//! `hk_bootstrap`, `hk_resume` and `hk_ap_resume`. The ELF is read with the
//! `object` crate; the package is laid out by [`PackageSpec::build`], which also parses
//! the result, so `pack` never returns a package the kernel would refuse.

use std::fmt;
use std::format;
use std::string::{String, ToString};
use std::vec::Vec;

use object::elf;
use object::read::elf::{
    Dyn as _, ElfFile64, FileHeader as _, ProgramHeader as _, Rela as _, SectionHeader as _,
};
use object::{Endianness, Object, ObjectSection, ObjectSymbol};

use super::build::{PackageSpec, SegmentSpec};
use super::image::{is_page_aligned, page_align_up, Entries, Relocation, SegmentFlags};
use super::{DESCRIPTION_MAGIC, DESCRIPTION_SECTION};
use crate::build_id::BuildId;
use crate::error::FormatError;
use crate::identity::{EmbeddedIdentity, Label};

/// Choices the packer leaves to its caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackOptions {
    /// Replaces the label the kernel embedded (at most 48 bytes of UTF-8).
    pub label: Option<String>,
}

/// Why a kernel ELF could not be packed. Each message says what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PackError {
    /// The `object` crate could not read the file as a 64-bit ELF.
    Elf(String),
    /// The ELF is not for x86_64.
    NotX86_64 {
        /// `e_machine`.
        machine: u16,
    },
    /// The ELF is not position independent.
    NotPie {
        /// `e_type`.
        e_type: u16,
    },
    /// The ELF asks for a dynamic linker or shared libraries.
    Dynamic {
        /// What it asks for (`PT_INTERP`, `DT_NEEDED`).
        what: &'static str,
    },
    /// A relocation table the packer cannot apply.
    UnsupportedRelocationTable {
        /// The dynamic tag or section (`DT_REL`, `DT_RELR`, `DT_JMPREL`).
        tag: &'static str,
    },
    /// A dynamic relocation of a type other than `R_X86_64_RELATIVE`.
    UnsupportedRelocation {
        /// `r_type`.
        r_type: u32,
        /// The slot address.
        offset: u64,
    },
    /// The relocation table could not be read.
    RelocationTable(String),
    /// No `PT_LOAD` segment.
    NoLoadSegments,
    /// A `PT_LOAD` segment is not page aligned.
    UnalignedSegment {
        /// Index among the `PT_LOAD` segments.
        index: usize,
        /// Its address.
        vaddr: u64,
    },
    /// A segment's bytes could not be read from the file.
    SegmentData {
        /// Index among the `PT_LOAD` segments.
        index: usize,
    },
    /// No `.hk_identity` section.
    MissingIdentity,
    /// No `.hk_svn` section.
    MissingSvn,
    /// `.hk_svn` is not one `u32`.
    SvnSize {
        /// The section's size.
        size: u64,
    },
    /// `.hk_identity` is not one `EmbeddedIdentity`.
    IdentitySize {
        /// The section's size.
        size: u64,
    },
    /// `.hk_identity` is not inside a loaded segment.
    IdentityNotLoaded,
    /// The identity does not parse.
    Identity(FormatError),
    /// No `.hk_schema` section.
    MissingDescription,
    /// `.hk_schema` holds no bytes (or only `NOBITS`).
    EmptyDescription,
    /// `.hk_schema` does not start with the description's magic `HKDESC01`.
    DescriptionMagic {
        /// Its first bytes (up to 8).
        found: Vec<u8>,
    },
    /// `.hk_schema` is not exactly one description (the length it states at bytes
    /// 12..16 is not the section's size).
    DescriptionSize {
        /// The section's size.
        section: u64,
        /// The length the description states (`None` when the section is too short to
        /// state one).
        stated: Option<u32>,
    },
    /// No GNU build-id note.
    MissingBuildId,
    /// The build id is longer than 32 bytes.
    BuildIdTooLong {
        /// Its length.
        len: usize,
    },
    /// A required symbol is missing.
    MissingSymbol {
        /// The symbol.
        name: &'static str,
    },
    /// A symbol or the ELF entry lies below the link base.
    BelowLinkBase {
        /// The symbol, or `e_entry`.
        name: &'static str,
        /// Its address.
        address: u64,
    },
    /// The `--label` override is not a valid label.
    Label(FormatError),
    /// The assembled package fails validation.
    Package(FormatError),
}

impl fmt::Display for PackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PackError::*;
        match self {
            Elf(e) => write!(f, "not a 64-bit ELF file the packer can read: {e}"),
            NotX86_64 { machine } => write!(f, "ELF machine {machine} is not x86_64 (62): build the kernel for x86_64-unknown-none"),
            NotPie { e_type } => write!(
                f,
                "ELF type {e_type} is not ET_DYN (3): the kernel must be a static PIE (relocation-model=pie, the default for x86_64-unknown-none)"
            ),
            Dynamic { what } => write!(f, "the ELF has {what}: the kernel must be a static PIE with no dynamic linker or libraries"),
            UnsupportedRelocationTable { tag } => write!(
                f,
                "the ELF has a {tag} relocation table; only RELA tables of R_X86_64_RELATIVE are supported (link without -z pack-relative-relocs and without PLT relocations)"
            ),
            UnsupportedRelocation { r_type, offset } => write!(
                f,
                "dynamic relocation {} ({r_type}) at {offset:#x}: only R_X86_64_RELATIVE exists in a static-PIE kernel; something refers to a symbol the link did not resolve",
                relocation_name(*r_type)
            ),
            RelocationTable(e) => write!(f, "cannot read the dynamic relocation table: {e}"),
            NoLoadSegments => write!(f, "the ELF has no PT_LOAD segment"),
            UnalignedSegment { index, vaddr } => write!(
                f,
                "PT_LOAD segment {index} at {vaddr:#x} is not page aligned: link with -z separate-loadable-segments"
            ),
            SegmentData { index } => write!(f, "PT_LOAD segment {index}'s file bytes lie outside the file"),
            MissingIdentity => write!(
                f,
                "no .hk_identity section: the kernel must embed `#[used] #[link_section = \".hk_identity\"] static IDENTITY: image_format::EmbeddedIdentity = EmbeddedIdentity::new(..)` and read it at run time"
            ),
            IdentitySize { size } => write!(
                f,
                ".hk_identity is {size} bytes, expected {} (exactly one EmbeddedIdentity static)",
                EmbeddedIdentity::SIZE
            ),
            IdentityNotLoaded => write!(f, ".hk_identity is not inside a PT_LOAD segment: it must be part of the loaded image"),
            Identity(e) => write!(f, ".hk_identity: {e}"),
            MissingSvn => write!(
                f,
                "no .hk_svn section: the kernel must embed its security version, `#[used] #[link_section = \".hk_svn\"] static SVN: u32 = ..` (kernel/src/identity.rs)"
            ),
            SvnSize { size } => write!(
                f,
                ".hk_svn is {size} bytes, expected 4 (exactly one u32 static)"
            ),
            MissingDescription => write!(
                f,
                "no .hk_schema section: the kernel must embed its image description, `#[used] #[link_section = \".hk_schema\"] static DESCRIPTION: [u8; updater::describe::len(&DECL)] = updater::describe::build(&DECL)`, so that staging and the host can compare record layouts"
            ),
            EmptyDescription => write!(
                f,
                ".hk_schema is empty: it must hold the bytes of updater::describe::build (the image description), not a zero-sized or NOBITS section"
            ),
            DescriptionMagic { found } => write!(
                f,
                ".hk_schema starts with {}, not HKDESC01: it must hold exactly the bytes of updater::describe::build",
                found.escape_ascii()
            ),
            DescriptionSize { section, stated: Some(stated) } => write!(
                f,
                ".hk_schema is {section} bytes but the description in it states {stated}: the section must hold exactly one updater::describe::build static"
            ),
            DescriptionSize { section, stated: None } => write!(
                f,
                ".hk_schema is {section} bytes, too short for an image description (at least 16)"
            ),
            MissingBuildId => write!(f, "no GNU build-id note: link with --build-id=sha1"),
            BuildIdTooLong { len } => write!(f, "the build id is {len} bytes, at most 32 fit"),
            MissingSymbol { name } => write!(
                f,
                "symbol {name} not found: the kernel must define `#[no_mangle] extern \"C\" fn {name}` and keep its symbol table"
            ),
            BelowLinkBase { name, address } => write!(f, "{name} at {address:#x} lies below the image's first segment"),
            Label(e) => write!(f, "--label: {e}"),
            Package(e) => write!(f, "the image does not make a valid package: {e}"),
        }
    }
}

impl std::error::Error for PackError {}

/// Turns a kernel ELF into package bytes.
pub fn pack(elf_bytes: &[u8], opts: &PackOptions) -> Result<Vec<u8>, PackError> {
    let file =
        ElfFile64::<Endianness>::parse(elf_bytes).map_err(|e| PackError::Elf(e.to_string()))?;
    let endian = file.endian();
    let header = file.elf_header();
    if header.e_machine(endian) != elf::EM_X86_64 {
        return Err(PackError::NotX86_64 {
            machine: header.e_machine(endian),
        });
    }
    if header.e_type(endian) != elf::ET_DYN {
        return Err(PackError::NotPie {
            e_type: header.e_type(endian),
        });
    }
    let phdrs = file.elf_program_headers();
    if phdrs.iter().any(|p| p.p_type(endian) == elf::PT_INTERP) {
        return Err(PackError::Dynamic {
            what: "a PT_INTERP program header",
        });
    }

    let segments = load_segments(&file)?;
    let link_base = segments.first().map_or(0, |s| s.vaddr);
    let relocations = relocations(&file, &segments)?;
    let mut identity = identity(&file, &segments)?;
    if let Some(label) = &opts.label {
        identity = identity.with_label(Label::try_new(label).map_err(PackError::Label)?);
    }
    let build_id = match file.build_id() {
        Ok(Some(id)) => {
            BuildId::try_new(id).map_err(|_| PackError::BuildIdTooLong { len: id.len() })?
        }
        _ => return Err(PackError::MissingBuildId),
    };
    let offset = |name, address: u64| {
        address
            .checked_sub(link_base)
            .ok_or(PackError::BelowLinkBase { name, address })
    };
    let entries = Entries {
        kernel: offset("e_entry", file.entry())?,
        bootstrap: offset("hk_bootstrap", symbol(&file, "hk_bootstrap")?)?,
        resume: offset("hk_resume", symbol(&file, "hk_resume")?)?,
        ap_resume: offset("hk_ap_resume", symbol(&file, "hk_ap_resume")?)?,
    };
    let description = description(&file)?;
    let svn = svn(&file)?;
    let spec = PackageSpec {
        identity,
        build_id,
        entries,
        segments,
        relocations,
        description,
        svn,
    };
    spec.build().map_err(PackError::Package)
}

type Elf<'a> = ElfFile64<'a, Endianness>;

/// Packed relative relocations (`-z pack-relative-relocs`); `object` 0.36 has no names for them.
const DT_RELRSZ: u32 = 35;
const DT_RELR: u32 = 36;

/// The `PT_LOAD` segments with their bytes, flags (RELRO where `PT_GNU_RELRO` covers
/// them), sorted by address.
fn load_segments(file: &Elf<'_>) -> Result<Vec<SegmentSpec>, PackError> {
    let endian = file.endian();
    let phdrs = file.elf_program_headers();
    let relro = phdrs
        .iter()
        .find(|p| p.p_type(endian) == elf::PT_GNU_RELRO)
        .map(|p| {
            let start = p.p_vaddr(endian);
            let end = start.saturating_add(p.p_memsz(endian));
            (start, page_align_up(end).unwrap_or(u64::MAX))
        });
    let mut out = Vec::new();
    for (index, p) in phdrs
        .iter()
        .filter(|p| p.p_type(endian) == elf::PT_LOAD)
        .enumerate()
    {
        let vaddr = p.p_vaddr(endian);
        let mem_size = p.p_memsz(endian);
        if mem_size == 0 {
            continue;
        }
        if !is_page_aligned(vaddr) {
            return Err(PackError::UnalignedSegment { index, vaddr });
        }
        let bytes = p
            .data(endian, file.data())
            .map_err(|_| PackError::SegmentData { index })?;
        let mut flags = SegmentFlags::from_bits_truncate(
            p.p_flags(endian) & (elf::PF_R | elf::PF_W | elf::PF_X),
        );
        let end = vaddr.saturating_add(mem_size);
        if relro.is_some_and(|(start, relro_end)| vaddr >= start && end <= relro_end) {
            flags |= SegmentFlags::RELRO;
        }
        out.push(SegmentSpec {
            vaddr,
            mem_size,
            flags,
            bytes: bytes.to_vec(),
        });
    }
    if out.is_empty() {
        return Err(PackError::NoLoadSegments);
    }
    out.sort_by_key(|s| s.vaddr);
    Ok(out)
}

/// The dynamic relocations: from `PT_DYNAMIC`'s `DT_RELA` table if there is one (what a
/// loader reads), else from the `.rela.dyn` section. Static relocations kept by
/// `--emit-relocs` (`.rela.text`, …) are not dynamic and are ignored.
fn relocations(file: &Elf<'_>, segments: &[SegmentSpec]) -> Result<Vec<Relocation>, PackError> {
    let endian = file.endian();
    let data = file.data();
    let table_err = |e: object::Error| PackError::RelocationTable(e.to_string());
    let dynamic = file
        .elf_program_headers()
        .iter()
        .find(|p| p.p_type(endian) == elf::PT_DYNAMIC);
    let rela: &[elf::Rela64<Endianness>] = if let Some(p) = dynamic {
        let entries = p.dynamic(endian, data).map_err(table_err)?.unwrap_or(&[]);
        let tag = |t: u32| {
            entries
                .iter()
                .find(|d| d.tag32(endian) == Some(t))
                .map(|d| d.d_val(endian))
        };
        if entries
            .iter()
            .any(|d| d.tag32(endian) == Some(elf::DT_NEEDED))
        {
            return Err(PackError::Dynamic {
                what: "DT_NEEDED (shared libraries)",
            });
        }
        for (t, size, name) in [
            (elf::DT_REL, elf::DT_RELSZ, "DT_REL"),
            (DT_RELR, DT_RELRSZ, "DT_RELR"),
            (elf::DT_JMPREL, elf::DT_PLTRELSZ, "DT_JMPREL"),
        ] {
            if tag(t).is_some() && tag(size).unwrap_or(0) > 0 {
                return Err(PackError::UnsupportedRelocationTable { tag: name });
            }
        }
        match (tag(elf::DT_RELA), tag(elf::DT_RELASZ)) {
            (Some(at), Some(size)) if size > 0 => {
                if tag(elf::DT_RELAENT).is_some_and(|e| e != 24) {
                    return Err(PackError::RelocationTable("DT_RELAENT is not 24".into()));
                }
                let bytes = bytes_at(segments, at, size).ok_or_else(|| {
                    PackError::RelocationTable(format!(
                        "DT_RELA {at:#x}+{size:#x} is not in a loaded segment"
                    ))
                })?;
                object::pod::slice_from_all_bytes(bytes).map_err(|()| {
                    PackError::RelocationTable("DT_RELASZ is not a multiple of 24".into())
                })?
            }
            _ => &[],
        }
    } else {
        let sections = file.elf_section_table();
        match sections.section_by_name(endian, b".rela.dyn") {
            Some((_, s)) => s
                .rela(endian, data)
                .map_err(table_err)?
                .map_or(&[][..], |(r, _)| r),
            None => &[],
        }
    };
    rela.iter()
        .map(|r| {
            let offset = r.r_offset(endian);
            match r.r_type(endian, false) {
                elf::R_X86_64_RELATIVE => Ok(Relocation {
                    offset,
                    addend: r.r_addend(endian),
                }),
                r_type => Err(PackError::UnsupportedRelocation { r_type, offset }),
            }
        })
        .collect()
}

/// The file bytes at `vaddr..vaddr + size`, if one segment holds them.
fn bytes_at(segments: &[SegmentSpec], vaddr: u64, size: u64) -> Option<&[u8]> {
    let s = segments
        .iter()
        .find(|s| s.vaddr <= vaddr && vaddr < s.vaddr.saturating_add(s.mem_size))?;
    let start = usize::try_from(vaddr - s.vaddr).ok()?;
    s.bytes
        .get(start..start.checked_add(usize::try_from(size).ok()?)?)
}

fn identity(file: &Elf<'_>, segments: &[SegmentSpec]) -> Result<EmbeddedIdentity, PackError> {
    let section = file
        .section_by_name(".hk_identity")
        .ok_or(PackError::MissingIdentity)?;
    if section.size() != EmbeddedIdentity::SIZE as u64 {
        return Err(PackError::IdentitySize {
            size: section.size(),
        });
    }
    let loaded = bytes_at(segments, section.address(), section.size())
        .ok_or(PackError::IdentityNotLoaded)?;
    EmbeddedIdentity::parse(loaded).map_err(PackError::Identity)
}

/// The ELF section a kernel embeds its security version in: one `u32`, little-endian.
pub const SVN_SECTION: &str = ".hk_svn";

/// The security version in `.hk_svn`.
fn svn(file: &Elf<'_>) -> Result<u32, PackError> {
    let section = file
        .section_by_name(SVN_SECTION)
        .ok_or(PackError::MissingSvn)?;
    let bytes = section.data().map_err(|e| PackError::Elf(e.to_string()))?;
    let array: [u8; 4] = bytes.try_into().map_err(|_| PackError::SvnSize {
        size: bytes.len() as u64,
    })?;
    Ok(u32::from_le_bytes(array))
}

/// The security version a kernel ELF embeds in `.hk_svn`, or why it cannot be read.
pub fn elf_svn(elf_bytes: &[u8]) -> Result<u32, PackError> {
    let file =
        ElfFile64::<Endianness>::parse(elf_bytes).map_err(|e| PackError::Elf(e.to_string()))?;
    svn(&file)
}

/// The bytes of `.hk_schema`, checked only as far as the packer can say what the kernel
/// should change; the package's own checks (placement, length, stated length) follow
/// in [`PackageSpec::build`].
fn description(file: &Elf<'_>) -> Result<Vec<u8>, PackError> {
    let section = file
        .section_by_name(DESCRIPTION_SECTION)
        .ok_or(PackError::MissingDescription)?;
    let bytes = section.data().map_err(|e| PackError::Elf(e.to_string()))?;
    if bytes.is_empty() {
        return Err(PackError::EmptyDescription);
    }
    if !bytes.starts_with(&DESCRIPTION_MAGIC) {
        let shown = bytes.get(..8).unwrap_or(bytes);
        return Err(PackError::DescriptionMagic {
            found: shown.to_vec(),
        });
    }
    let stated = bytes
        .get(12..16)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_le_bytes);
    if stated.map(u64::from) != Some(bytes.len() as u64) {
        return Err(PackError::DescriptionSize {
            section: bytes.len() as u64,
            stated,
        });
    }
    Ok(bytes.to_vec())
}

/// The image description in a kernel ELF's `.hk_schema` section, as [`pack`] copies it
/// into a package (the host compares it with a running kernel's before pushing).
pub fn elf_description(elf_bytes: &[u8]) -> Result<Vec<u8>, PackError> {
    let file =
        ElfFile64::<Endianness>::parse(elf_bytes).map_err(|e| PackError::Elf(e.to_string()))?;
    description(&file)
}

fn symbol(file: &Elf<'_>, name: &'static str) -> Result<u64, PackError> {
    file.symbols()
        .chain(file.dynamic_symbols())
        .find(|s| !s.is_undefined() && s.name() == Ok(name))
        .map(|s| s.address())
        .ok_or(PackError::MissingSymbol { name })
}

/// The name of an x86_64 relocation type, for error messages.
fn relocation_name(r_type: u32) -> &'static str {
    match r_type {
        elf::R_X86_64_NONE => "R_X86_64_NONE",
        elf::R_X86_64_64 => "R_X86_64_64",
        elf::R_X86_64_PC32 => "R_X86_64_PC32",
        elf::R_X86_64_GLOB_DAT => "R_X86_64_GLOB_DAT",
        elf::R_X86_64_JUMP_SLOT => "R_X86_64_JUMP_SLOT",
        elf::R_X86_64_RELATIVE => "R_X86_64_RELATIVE",
        elf::R_X86_64_DTPMOD64 => "R_X86_64_DTPMOD64",
        elf::R_X86_64_DTPOFF64 => "R_X86_64_DTPOFF64",
        elf::R_X86_64_TPOFF64 => "R_X86_64_TPOFF64",
        elf::R_X86_64_IRELATIVE => "R_X86_64_IRELATIVE",
        _ => "an unknown type",
    }
}

#[cfg(test)]
mod tests;
