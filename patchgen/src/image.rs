//! [`Image`]: one linked kernel ELF as the differ sees it — sections classified by what
//! a patch may do with them, the static symbol table, the relocations `--emit-relocs`
//! kept (per target section, sorted), and the facts a patch binds to (build id,
//! header hash, text hash).
//!
//! Addresses stay link-time virtual addresses here; [`Image::link_base`] (the first
//! `PT_LOAD`'s address) turns them into the image-relative offsets a patch carries.

use std::collections::BTreeMap;

use object::elf;
use object::read::elf::{
    ElfFile64, FileHeader as _, ProgramHeader as _, Rela as _, SectionHeader as _, Sym as _,
};
use object::{Endianness, Object as _, ObjectSection as _};
use sha2::{Digest as _, Sha256};

use image_format::build_id::BuildId;
use image_format::error::Digest;
use image_format::hotpatch::TargetImage;
use image_format::identity::EmbeddedIdentity;

/// What a patch may do with the bytes of a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SectionKind {
    /// Executable code.
    Code,
    /// Read-only data (`.rodata`): may be carried in a patch when it changed.
    ReadOnly,
    /// Read-only after relocation (`.data.rel.ro`, `.got`): like read-only data.
    Relro,
    /// Writable data with initial bytes (`.data`).
    Writable,
    /// Writable zero-initialized data (`.bss`).
    Bss,
    /// Not loaded (symbols, debug info, relocations).
    NotLoaded,
}

impl SectionKind {
    /// Writable at run time: live state a patch must not touch.
    pub fn is_writable(self) -> bool {
        matches!(self, Self::Writable | Self::Bss)
    }
}

/// A section header, reduced.
#[derive(Debug, Clone)]
pub(crate) struct Section {
    pub name: String,
    pub addr: u64,
    pub size: u64,
    pub kind: SectionKind,
    /// File bytes (`None` for `NOBITS`).
    pub file: Option<(usize, usize)>,
    pub align: u64,
}

impl Section {
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// The type of a symbol, as far as the differ cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SymKind {
    Func,
    Object,
    NoType,
    Section,
    Other,
}

/// A static symbol.
#[derive(Debug, Clone)]
pub(crate) struct Symbol {
    pub name: String,
    pub kind: SymKind,
    pub addr: u64,
    pub size: u64,
    /// Section index, for symbols defined in a section.
    pub section: Option<usize>,
    /// `SHN_ABS`.
    pub absolute: bool,
}

/// A relocation kept by `--emit-relocs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reloc {
    /// Virtual address of the field.
    pub offset: u64,
    pub r_type: u32,
    /// Index into [`Image::symbols`].
    pub sym: usize,
    pub addend: i64,
}

/// Whether the image embeds an identity, and if so which.
#[derive(Debug, Clone)]
pub(crate) enum IdentityState {
    Present(EmbeddedIdentity),
    Absent,
    Malformed(String),
}

/// One kernel build.
pub(crate) struct Image<'a> {
    pub data: &'a [u8],
    pub link_base: u64,
    pub sections: Vec<Section>,
    pub symbols: Vec<Symbol>,
    /// Relocations per section they apply to, sorted by offset.
    pub relocs: BTreeMap<usize, Vec<Reloc>>,
    pub target: TargetImage,
    pub identity: IdentityState,
    /// Loaded sections (index) sorted by address, for address lookups.
    by_addr: Vec<usize>,
}

impl<'a> Image<'a> {
    /// Reads a kernel ELF. The error says what the file lacks.
    pub fn parse(data: &'a [u8]) -> Result<Self, String> {
        let file = ElfFile64::<Endianness>::parse(data).map_err(|e| e.to_string())?;
        let endian = file.endian();
        let header = file.elf_header();
        if header.e_machine(endian) != elf::EM_X86_64 {
            return Err("not an x86_64 ELF".into());
        }
        let phdrs = file.elf_program_headers();
        let loads: Vec<_> = phdrs
            .iter()
            .filter(|p| p.p_type(endian) == elf::PT_LOAD)
            .collect();
        let link_base = loads
            .iter()
            .map(|p| p.p_vaddr(endian))
            .min()
            .ok_or("no PT_LOAD segment")?;
        let relro = phdrs
            .iter()
            .find(|p| p.p_type(endian) == elf::PT_GNU_RELRO)
            .map(|p| {
                (
                    p.p_vaddr(endian),
                    p.p_vaddr(endian).saturating_add(p.p_memsz(endian)),
                )
            });

        let exec: Vec<_> = loads
            .iter()
            .filter(|p| p.p_flags(endian) & elf::PF_X != 0)
            .collect();
        let [text] = exec.as_slice() else {
            return Err(format!(
                "{} executable PT_LOAD segments; the kernel must have exactly one",
                exec.len()
            ));
        };
        let text_bytes = text
            .data(endian, data)
            .map_err(|_| "the executable segment lies outside the file")?;
        let ph_start = header.e_phoff(endian) as usize;
        let ph_len = usize::from(header.e_phnum(endian)) * usize::from(header.e_phentsize(endian));
        let eh = data
            .get(..usize::from(header.e_ehsize(endian)))
            .ok_or("truncated ELF header")?;
        let ph = data
            .get(ph_start..ph_start.saturating_add(ph_len))
            .ok_or("program headers outside the file")?;
        let mut h = Sha256::new();
        h.update(eh);
        h.update(ph);
        let header_hash: Digest = h.finalize().into();
        let build_id = match file.build_id() {
            Ok(Some(id)) => BuildId::try_new(id).map_err(|e| e.to_string())?,
            _ => return Err("no GNU build-id note: link with --build-id=sha1".into()),
        };
        let target = TargetImage {
            build_id,
            header_hash,
            text_hash: Sha256::digest(text_bytes).into(),
            text_offset: text.p_vaddr(endian) - link_base,
            text_size: text.p_filesz(endian),
        };

        let table = file.elf_section_table();
        let mut sections = Vec::new();
        for s in table.iter() {
            let flags = s.sh_flags(endian);
            let addr = s.sh_addr(endian);
            let size = s.sh_size(endian);
            let nobits = s.sh_type(endian) == elf::SHT_NOBITS;
            let kind = if flags & u64::from(elf::SHF_ALLOC) == 0 {
                SectionKind::NotLoaded
            } else if flags & u64::from(elf::SHF_EXECINSTR) != 0 {
                SectionKind::Code
            } else if flags & u64::from(elf::SHF_WRITE) == 0 {
                SectionKind::ReadOnly
            } else if relro.is_some_and(|(lo, hi)| addr >= lo && addr.saturating_add(size) <= hi) {
                SectionKind::Relro
            } else if nobits {
                SectionKind::Bss
            } else {
                SectionKind::Writable
            };
            let file = (!nobits).then(|| {
                let (off, len) = s.file_range(endian).unwrap_or((0, 0));
                (off as usize, off.saturating_add(len) as usize)
            });
            sections.push(Section {
                name: String::from_utf8_lossy(table.section_name(endian, s).unwrap_or(b""))
                    .into_owned(),
                addr,
                size,
                kind,
                file,
                align: s.sh_addralign(endian).max(1),
            });
        }

        let symtab = file.elf_symbol_table();
        let strings = symtab.strings();
        let mut symbols = Vec::with_capacity(symtab.len());
        for sym in symtab.iter() {
            let name =
                String::from_utf8_lossy(sym.name(endian, strings).unwrap_or(b"")).into_owned();
            let kind = match sym.st_type() {
                elf::STT_FUNC => SymKind::Func,
                elf::STT_OBJECT => SymKind::Object,
                elf::STT_NOTYPE => SymKind::NoType,
                elf::STT_SECTION => SymKind::Section,
                _ => SymKind::Other,
            };
            let shndx = sym.st_shndx(endian);
            let section = (shndx != elf::SHN_UNDEF && shndx < elf::SHN_LORESERVE)
                .then_some(usize::from(shndx));
            symbols.push(Symbol {
                name,
                kind,
                addr: sym.st_value(endian),
                size: sym.st_size(endian),
                section,
                absolute: shndx == elf::SHN_ABS,
            });
        }

        let mut relocs: BTreeMap<usize, Vec<Reloc>> = BTreeMap::new();
        for s in table.iter() {
            if s.sh_type(endian) != elf::SHT_RELA {
                continue;
            }
            let applies_to = s.sh_info(endian) as usize;
            if sections
                .get(applies_to)
                .is_none_or(|t| t.kind == SectionKind::NotLoaded)
            {
                continue;
            }
            if s.sh_link(endian) as usize != symtab.section().0 {
                // The dynamic relocations (`.rela.dyn`, against `.dynsym`) are the
                // packer's business.
                continue;
            }
            let (rela, _) = s
                .rela(endian, data)
                .map_err(|e| e.to_string())?
                .ok_or("unreadable relocation section")?;
            let list = relocs.entry(applies_to).or_default();
            for r in rela {
                list.push(Reloc {
                    offset: r.r_offset(endian),
                    r_type: r.r_type(endian, false),
                    sym: r.r_sym(endian, false) as usize,
                    addend: r.r_addend(endian),
                });
            }
        }
        for list in relocs.values_mut() {
            list.sort_by_key(|r| r.offset);
        }
        let code = sections.iter().position(|s| s.kind == SectionKind::Code);
        if !code.is_some_and(|c| relocs.contains_key(&c)) {
            return Err("no relocations for the code: link the kernel with --emit-relocs".into());
        }

        let identity = match file.section_by_name(".hk_identity") {
            None => IdentityState::Absent,
            Some(s) => match s.data() {
                Ok(bytes) => match EmbeddedIdentity::parse(bytes) {
                    Ok(id) => IdentityState::Present(id),
                    Err(e) => IdentityState::Malformed(e.to_string()),
                },
                Err(e) => IdentityState::Malformed(e.to_string()),
            },
        };

        let mut by_addr: Vec<usize> = (0..sections.len())
            .filter(|&i| sections[i].kind != SectionKind::NotLoaded && sections[i].size > 0)
            .collect();
        by_addr.sort_by_key(|&i| sections[i].addr);
        Ok(Self {
            data,
            link_base,
            sections,
            symbols,
            relocs,
            target,
            identity,
            by_addr,
        })
    }

    /// The loaded section holding `addr`.
    pub fn section_at(&self, addr: u64) -> Option<usize> {
        let i = self
            .by_addr
            .partition_point(|&s| self.sections[s].addr <= addr);
        let s = *self.by_addr.get(i.checked_sub(1)?)?;
        (addr < self.sections[s].end()).then_some(s)
    }

    /// The file bytes at `addr..addr + len`, if one section holds them (zeros are not
    /// made up for `NOBITS`: `None`).
    pub fn bytes(&self, addr: u64, len: u64) -> Option<&'a [u8]> {
        let s = &self.sections[self.section_at(addr)?];
        if addr.checked_add(len)? > s.end() {
            return None;
        }
        let (start, _) = s.file?;
        let at = start.checked_add(usize::try_from(addr - s.addr).ok()?)?;
        self.data
            .get(at..at.checked_add(usize::try_from(len).ok()?)?)
    }

    /// The relocations whose field starts in `[start, end)`, in order.
    pub fn relocs_in(&self, start: u64, end: u64) -> &[Reloc] {
        let Some(section) = self.section_at(start) else {
            return &[];
        };
        let Some(list) = self.relocs.get(&section) else {
            return &[];
        };
        let lo = list.partition_point(|r| r.offset < start);
        let hi = list.partition_point(|r| r.offset < end);
        &list[lo..hi]
    }

    /// `S` of a relocation: the symbol's value (a section symbol's is the section's
    /// address), or `None` for an undefined symbol.
    pub fn symbol_value(&self, r: &Reloc) -> Option<u64> {
        let sym = self.symbols.get(r.sym)?;
        match sym.kind {
            SymKind::Section => sym
                .section
                .and_then(|s| self.sections.get(s))
                .map(|s| s.addr),
            _ if sym.section.is_some() || sym.absolute => Some(sym.addr),
            _ => None,
        }
    }

    /// Image-relative offset of a link-time address.
    pub fn offset_of(&self, addr: u64) -> u64 {
        addr.wrapping_sub(self.link_base)
    }
}
