//! Small linked kernels for the differ's tests, written byte by byte: an x86-64 static
//! PIE linked at 0 with a read-only segment (ELF header, build-id note, `.rodata`,
//! optional `.hk_identity`), a text segment (`global_asm!`-style bytes under a label,
//! then the functions, 16-aligned) and a writable segment (`.data`, `.bss`), plus the
//! static symbol table and the `.rela.text`/`.rela.rodata` that `--emit-relocs` keeps.
//! Relocation fields in the bytes hold the linked values, as a linker writes them.

use object::elf;

use image_format::identity::EmbeddedIdentity;

/// What a relocation refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum To {
    /// A symbol of this file, by its (raw) name.
    Sym(String),
    /// `.rodata` + offset, through the section symbol (as for local constants).
    Rodata(u64),
    /// A [`merged`] string, by its key, through the section symbol.
    Merged(String),
}

/// A relocation at `at` in its function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct R {
    pub at: u32,
    pub r_type: u32,
    pub to: To,
    pub addend: i64,
}

/// A function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct F {
    pub name: String,
    pub code: Vec<u8>,
    pub relocs: Vec<R>,
}

/// A data object (anonymous when its name starts with `.L`; without a symbol, packed
/// against the previous one, when it is [`merged`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct O {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// A whole image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Elf {
    /// Fill byte of the 20-byte build id.
    pub build_id: u8,
    /// Bytes at the start of the text, under the label `hk_asm_start`.
    pub asm: Vec<u8>,
    /// `int3` bytes between the asm and the first function (moves every function).
    pub pad: usize,
    pub funcs: Vec<F>,
    pub rodata: Vec<O>,
    pub data: Vec<O>,
    /// `.bss` objects: name and size.
    pub bss: Vec<(String, u64)>,
    pub identity: Option<EmbeddedIdentity>,
}

pub(super) fn f(name: &str, code: &[u8], relocs: &[R]) -> F {
    F {
        name: name.into(),
        code: code.to_vec(),
        relocs: relocs.to_vec(),
    }
}

pub(super) fn o(name: &str, bytes: &[u8]) -> O {
    O {
        name: name.into(),
        bytes: bytes.to_vec(),
    }
}

/// Prefix of the names of [`merged`] strings.
const MERGED: &str = "merged:";

/// A string as lld leaves merged strings: no symbol, no alignment, referenced through
/// `.rodata + offset` ([`To::Merged`] with the same `key`).
pub(super) fn merged(key: &str, bytes: &[u8]) -> O {
    o(&format!("{MERGED}{key}"), bytes)
}

impl O {
    fn is_merged(&self) -> bool {
        self.name.starts_with(MERGED)
    }
}

/// `call name` at `at` (the `e8` byte).
pub(super) fn call(at: u32, name: &str) -> R {
    R {
        at: at + 1,
        r_type: elf::R_X86_64_PLT32,
        to: To::Sym(name.into()),
        addend: -4,
    }
}

/// A rip-relative operand ending the instruction, field at `at`.
pub(super) fn pc32(at: u32, to: To) -> R {
    R {
        at,
        r_type: elf::R_X86_64_PC32,
        to,
        addend: -4,
    }
}

/// A section header: name, type, flags, address, (offset, size), link, info, align.
type Shdr = (u32, u32, u64, u64, (u64, u64), u32, u32, u64);

const TEXT: u64 = 0x1000;
const RODATA: u64 = 0x300;
const IDENTITY: u64 = 0x800;
const NOTE: u64 = 0x200;

struct Layout {
    funcs: Vec<u64>,
    text_end: u64,
    rodata: Vec<u64>,
    data_at: u64,
    data: Vec<u64>,
    bss_at: u64,
    bss: Vec<u64>,
    end: u64,
}

fn align(x: u64, a: u64) -> u64 {
    x.div_ceil(a) * a
}

impl Elf {
    fn layout(&self) -> Layout {
        let mut at = TEXT + self.asm.len() as u64 + self.pad as u64;
        let mut funcs = Vec::new();
        for f in &self.funcs {
            at = align(at, 16);
            funcs.push(at);
            at += f.code.len() as u64;
        }
        let text_end = at.max(TEXT + 1);
        let mut rodata = Vec::new();
        let mut r = RODATA;
        for o in &self.rodata {
            if !o.is_merged() {
                r = align(r, 8);
            }
            rodata.push(r);
            r += o.bytes.len() as u64;
        }
        assert!(r <= IDENTITY, "rodata too large for the test layout");
        let data_at = align(text_end, 0x1000);
        let mut data = Vec::new();
        let mut d = data_at;
        for o in &self.data {
            data.push(d);
            d = align(d + o.bytes.len() as u64, 8);
        }
        let bss_at = d;
        let mut bss = Vec::new();
        for (_, size) in &self.bss {
            bss.push(d);
            d = align(d + size, 8);
        }
        Layout {
            funcs,
            text_end,
            rodata,
            data_at,
            data,
            bss_at,
            bss,
            end: d,
        }
    }

    /// The linked file.
    pub fn build(&self) -> Vec<u8> {
        let l = self.layout();
        // Symbols: null, section symbols (.rodata, .text), asm label, functions,
        // rodata, data, bss objects. All local.
        let mut strtab = vec![0u8];
        let mut name = |s: &str| {
            let at = strtab.len() as u32;
            strtab.extend_from_slice(s.as_bytes());
            strtab.push(0);
            at
        };
        let has_identity = self.identity.is_some();
        // Section indices.
        let (s_note, s_rodata) = (1u16, 2u16);
        let s_ident = if has_identity { Some(3u16) } else { None };
        let s_text = if has_identity { 4 } else { 3 };
        let (s_data, s_bss) = (s_text + 1, s_text + 2);
        // .rela.text and .rela.rodata are s_text + 3 and + 4.
        let (s_symtab, s_strtab, s_shstrtab) = (s_text + 5, s_text + 6, s_text + 7);

        struct Sym {
            name: u32,
            info: u8,
            shndx: u16,
            value: u64,
            size: u64,
        }
        let mut syms = vec![Sym {
            name: 0,
            info: 0,
            shndx: 0,
            value: 0,
            size: 0,
        }];
        let mut index = std::collections::HashMap::new();
        let local = |t: u8| t; // STB_LOCAL << 4 | type
        syms.push(Sym {
            name: 0,
            info: local(elf::STT_SECTION),
            shndx: s_rodata,
            value: RODATA,
            size: 0,
        });
        syms.push(Sym {
            name: 0,
            info: local(elf::STT_SECTION),
            shndx: s_text,
            value: TEXT,
            size: 0,
        });
        let rodata_section_sym = 1u32;
        if !self.asm.is_empty() {
            syms.push(Sym {
                name: name("hk_asm_start"),
                info: local(elf::STT_NOTYPE),
                shndx: s_text,
                value: TEXT,
                size: 0,
            });
        }
        for (f, &at) in self.funcs.iter().zip(&l.funcs) {
            index.insert(f.name.clone(), syms.len() as u32);
            syms.push(Sym {
                name: name(&f.name),
                info: local(elf::STT_FUNC),
                shndx: s_text,
                value: at,
                size: f.code.len() as u64,
            });
        }
        let objects = [
            (&self.rodata, &l.rodata, s_rodata),
            (&self.data, &l.data, s_data),
        ];
        for (list, addrs, shndx) in objects {
            for (o, &at) in list.iter().zip(addrs).filter(|(o, _)| !o.is_merged()) {
                index.insert(o.name.clone(), syms.len() as u32);
                syms.push(Sym {
                    name: name(&o.name),
                    info: local(elf::STT_OBJECT),
                    shndx,
                    value: at,
                    size: o.bytes.len() as u64,
                });
            }
        }
        for ((n, size), &at) in self.bss.iter().zip(&l.bss) {
            index.insert(n.clone(), syms.len() as u32);
            syms.push(Sym {
                name: name(n),
                info: local(elf::STT_OBJECT),
                shndx: s_bss,
                value: at,
                size: *size,
            });
        }
        if let (Some(_), Some(shndx)) = (&self.identity, s_ident) {
            syms.push(Sym {
                name: name("IDENTITY"),
                info: local(elf::STT_OBJECT),
                shndx,
                value: IDENTITY,
                size: EmbeddedIdentity::SIZE as u64,
            });
        }
        // (symbol index, its value, what the offset adds to the addend)
        let value_of = |to: &To| -> (u32, u64, i64) {
            match to {
                To::Sym(n) => {
                    let i = *index.get(n).unwrap_or_else(|| panic!("no symbol {n}"));
                    (i, syms[i as usize].value, 0)
                }
                To::Rodata(off) => (rodata_section_sym, RODATA, *off as i64),
                To::Merged(key) => {
                    let name = format!("{MERGED}{key}");
                    let i = self
                        .rodata
                        .iter()
                        .position(|o| o.name == name)
                        .unwrap_or_else(|| panic!("no merged string {key}"));
                    (rodata_section_sym, RODATA, (l.rodata[i] - RODATA) as i64)
                }
            }
        };

        // Section bytes.
        let mut text = vec![0xccu8; (l.text_end - TEXT) as usize];
        text[..self.asm.len()].copy_from_slice(&self.asm);
        let mut rela_text = Vec::new();
        for (f, &at) in self.funcs.iter().zip(&l.funcs) {
            let start = (at - TEXT) as usize;
            text[start..start + f.code.len()].copy_from_slice(&f.code);
            for r in &f.relocs {
                let (sym, s, extra) = value_of(&r.to);
                let addend = r.addend + extra;
                let p = at + u64::from(r.at);
                let v = (s.wrapping_add_signed(addend)).wrapping_sub(p) as u32;
                let field = start + r.at as usize;
                text[field..field + 4].copy_from_slice(&v.to_le_bytes());
                rela_text.push((p, sym, r.r_type, addend));
            }
        }
        let mut rodata = vec![0u8; (IDENTITY - RODATA) as usize];
        for (o, &at) in self.rodata.iter().zip(&l.rodata) {
            let s = (at - RODATA) as usize;
            rodata[s..s + o.bytes.len()].copy_from_slice(&o.bytes);
        }
        let mut data = Vec::new();
        for (o, &at) in self.data.iter().zip(&l.data) {
            data.resize((at - l.data_at) as usize, 0);
            data.extend_from_slice(&o.bytes);
        }
        let mut note = Vec::new();
        for v in [4u32, 20, elf::NT_GNU_BUILD_ID] {
            note.extend_from_slice(&v.to_le_bytes());
        }
        note.extend_from_slice(b"GNU\0");
        note.extend_from_slice(&[self.build_id; 20]);

        // File: [0, data end) mirrors the address space; then the non-loaded parts.
        let mut file = vec![0u8; (l.bss_at) as usize];
        let put = |file: &mut Vec<u8>, at: u64, bytes: &[u8]| {
            file[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
        };
        put(&mut file, NOTE, &note);
        put(&mut file, RODATA, &rodata);
        if let Some(id) = &self.identity {
            put(&mut file, IDENTITY, &id.to_bytes());
        }
        put(&mut file, TEXT, &text);
        put(&mut file, l.data_at, &data);

        let table = |file: &mut Vec<u8>, bytes: &[u8]| -> (u64, u64) {
            let at = align(file.len() as u64, 8);
            file.resize(at as usize, 0);
            file.extend_from_slice(bytes);
            (at, bytes.len() as u64)
        };
        let rela = |list: &[(u64, u32, u32, i64)]| {
            let mut b = Vec::new();
            for &(off, sym, ty, addend) in list {
                b.extend_from_slice(&off.to_le_bytes());
                b.extend_from_slice(&((u64::from(sym) << 32) | u64::from(ty)).to_le_bytes());
                b.extend_from_slice(&addend.to_le_bytes());
            }
            b
        };
        let rela_text_at = table(&mut file, &rela(&rela_text));
        let rela_rodata_at = table(&mut file, &[]);
        let mut symtab = Vec::new();
        for s in &syms {
            symtab.extend_from_slice(&s.name.to_le_bytes());
            symtab.push(s.info);
            symtab.push(0);
            symtab.extend_from_slice(&s.shndx.to_le_bytes());
            symtab.extend_from_slice(&s.value.to_le_bytes());
            symtab.extend_from_slice(&s.size.to_le_bytes());
        }
        let symtab_at = table(&mut file, &symtab);
        let strtab_at = table(&mut file, &strtab);
        let mut shstrtab = vec![0u8];
        let mut shname = |s: &str| {
            let at = shstrtab.len() as u32;
            shstrtab.extend_from_slice(s.as_bytes());
            shstrtab.push(0);
            at
        };
        let a = u64::from(elf::SHF_ALLOC);
        let mut sections: Vec<Shdr> = vec![(0, 0, 0, 0, (0, 0), 0, 0, 0)];
        sections.push((
            shname(".note.gnu.build-id"),
            elf::SHT_NOTE,
            a,
            NOTE,
            (NOTE, note.len() as u64),
            0,
            0,
            4,
        ));
        sections.push((
            shname(".rodata"),
            elf::SHT_PROGBITS,
            a,
            RODATA,
            (RODATA, IDENTITY - RODATA),
            0,
            0,
            8,
        ));
        if has_identity {
            sections.push((
                shname(".hk_identity"),
                elf::SHT_PROGBITS,
                a,
                IDENTITY,
                (IDENTITY, EmbeddedIdentity::SIZE as u64),
                0,
                0,
                8,
            ));
        }
        let ax = a | u64::from(elf::SHF_EXECINSTR);
        let wa = a | u64::from(elf::SHF_WRITE);
        sections.push((
            shname(".text"),
            elf::SHT_PROGBITS,
            ax,
            TEXT,
            (TEXT, l.text_end - TEXT),
            0,
            0,
            16,
        ));
        sections.push((
            shname(".data"),
            elf::SHT_PROGBITS,
            wa,
            l.data_at,
            (l.data_at, l.bss_at - l.data_at),
            0,
            0,
            8,
        ));
        sections.push((
            shname(".bss"),
            elf::SHT_NOBITS,
            wa,
            l.bss_at,
            (l.bss_at, l.end - l.bss_at),
            0,
            0,
            8,
        ));
        let info = u64::from(elf::SHF_INFO_LINK);
        sections.push((
            shname(".rela.text"),
            elf::SHT_RELA,
            info,
            0,
            rela_text_at,
            u32::from(s_symtab),
            u32::from(s_text),
            8,
        ));
        sections.push((
            shname(".rela.rodata"),
            elf::SHT_RELA,
            info,
            0,
            rela_rodata_at,
            u32::from(s_symtab),
            u32::from(s_rodata),
            8,
        ));
        sections.push((
            shname(".symtab"),
            elf::SHT_SYMTAB,
            0,
            0,
            symtab_at,
            u32::from(s_strtab),
            syms.len() as u32,
            8,
        ));
        sections.push((shname(".strtab"), elf::SHT_STRTAB, 0, 0, strtab_at, 0, 0, 1));
        let shstrtab_name = shname(".shstrtab");
        let shstrtab_at = table(&mut file, &shstrtab);
        sections.push((shstrtab_name, elf::SHT_STRTAB, 0, 0, shstrtab_at, 0, 0, 1));
        assert_eq!(sections.len(), usize::from(s_shstrtab) + 1);
        let _ = s_note;
        let shoff = align(file.len() as u64, 8);
        file.resize(shoff as usize, 0);
        for (n, ty, flags, addr, (off, size), link, info, al) in &sections {
            file.extend_from_slice(&n.to_le_bytes());
            file.extend_from_slice(&ty.to_le_bytes());
            file.extend_from_slice(&flags.to_le_bytes());
            file.extend_from_slice(&addr.to_le_bytes());
            file.extend_from_slice(&off.to_le_bytes());
            file.extend_from_slice(&size.to_le_bytes());
            file.extend_from_slice(&link.to_le_bytes());
            file.extend_from_slice(&info.to_le_bytes());
            file.extend_from_slice(&al.to_le_bytes());
            let entsize: u64 = match *ty {
                elf::SHT_RELA | elf::SHT_SYMTAB => 24,
                _ => 0,
            };
            file.extend_from_slice(&entsize.to_le_bytes());
        }

        // Program headers: R (header .. identity), RX (text), RW (data, bss), NOTE.
        let phdrs = [
            (
                elf::PT_LOAD,
                elf::PF_R,
                0,
                IDENTITY + EmbeddedIdentity::SIZE as u64,
                IDENTITY + EmbeddedIdentity::SIZE as u64,
            ),
            (
                elf::PT_LOAD,
                elf::PF_R | elf::PF_X,
                TEXT,
                l.text_end - TEXT,
                l.text_end - TEXT,
            ),
            (
                elf::PT_LOAD,
                elf::PF_R | elf::PF_W,
                l.data_at,
                l.bss_at - l.data_at,
                l.end - l.data_at,
            ),
            (
                elf::PT_NOTE,
                elf::PF_R,
                NOTE,
                note.len() as u64,
                note.len() as u64,
            ),
        ];
        let mut h = Vec::new();
        h.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        h.extend_from_slice(&elf::ET_DYN.to_le_bytes());
        h.extend_from_slice(&elf::EM_X86_64.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        h.extend_from_slice(&l.funcs.first().copied().unwrap_or(TEXT).to_le_bytes());
        h.extend_from_slice(&64u64.to_le_bytes());
        h.extend_from_slice(&shoff.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        for v in [
            64u16,
            56,
            phdrs.len() as u16,
            64,
            sections.len() as u16,
            s_shstrtab,
        ] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        for (ty, flags, at, filesz, memsz) in phdrs {
            h.extend_from_slice(&ty.to_le_bytes());
            h.extend_from_slice(&flags.to_le_bytes());
            for v in [
                at,
                at,
                at,
                filesz,
                memsz,
                if ty == elf::PT_LOAD { 0x1000 } else { 4 },
            ] {
                h.extend_from_slice(&v.to_le_bytes());
            }
        }
        assert!(h.len() <= NOTE as usize);
        file[..h.len()].copy_from_slice(&h);
        file
    }

    /// Address of function `name` in the built file.
    pub fn addr_of(&self, name: &str) -> u64 {
        let l = self.layout();
        let i = self
            .funcs
            .iter()
            .position(|f| f.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        l.funcs[i]
    }
}
