//! The packer against synthetic static-PIE ELFs written with `object::write`.

use std::string::ToString;
use std::vec;
use std::vec::Vec;

use object::elf;
use object::write::elf::{FileHeader, ProgramHeader, Rel, SectionHeader, Sym, Writer};
use object::write::StringId;
use object::Endianness;

use super::*;
use crate::package::{
    parse,
    tests::{sample_description, IDENTITY},
};

/// What the synthetic kernel looks like; `Default` is a valid one.
struct Fixture {
    e_type: u16,
    /// Relocations as `(slot, r_type, addend)`.
    relocations: Vec<(u64, u32, i64)>,
    /// Describe them through `PT_DYNAMIC` (`DT_RELA`) rather than only `.rela.dyn`.
    dynamic: bool,
    identity: Option<Vec<u8>>,
    /// The `.hk_schema` section's bytes (a non-allocated section after `.data`);
    /// `None`: no such section.
    schema: Option<Vec<u8>>,
    /// The `.hk_svn` section's bytes (non-allocated, after `.hk_schema`); `None`: none.
    svn: Option<Vec<u8>>,
    build_id: bool,
    symbols: Vec<&'static str>,
    data_vaddr: u64,
}

impl Default for Fixture {
    fn default() -> Self {
        Self {
            e_type: elf::ET_DYN,
            relocations: vec![
                (0x2000, elf::R_X86_64_RELATIVE, 0x1010),
                (0x2008, elf::R_X86_64_RELATIVE, 0x3000),
                (0x3008, elf::R_X86_64_RELATIVE, 0x2000),
            ],
            dynamic: true,
            identity: Some(IDENTITY.to_bytes().to_vec()),
            schema: Some(sample_description()),
            svn: Some(7u32.to_le_bytes().to_vec()),
            build_id: true,
            symbols: vec!["hk_bootstrap", "hk_resume", "hk_ap_resume"],
            data_vaddr: 0x3000,
        }
    }
}

const TEXT: u64 = 0x1000;
const RELRO: u64 = 0x2000;
const DYNAMIC: u64 = 0x2100;
const BUILD_ID: [u8; 20] = [0x5a; 20];

impl Fixture {
    fn elf(&self) -> Vec<u8> {
        let identity = self.identity.clone().unwrap_or_default();
        let rela_at = 0x308u64;
        let rela_len = 24 * self.relocations.len() as u64;
        let dyn_entries: Vec<(u32, u64)> = if self.dynamic {
            vec![
                (elf::DT_RELA, rela_at),
                (elf::DT_RELASZ, rela_len),
                (elf::DT_RELAENT, 24),
                (elf::DT_FLAGS_1, u64::from(elf::DF_1_PIE)),
                (elf::DT_NULL, 0),
            ]
        } else {
            Vec::new()
        };
        let relro_file = DYNAMIC - RELRO + 16 * dyn_entries.len() as u64;
        let data = self.data_vaddr;

        let mut out = Vec::new();
        let mut w = Writer::new(Endianness::Little, true, &mut out);
        w.reserve_file_header();
        w.reserve_program_headers(7);
        w.reserve_null_section_index();
        let mut names = vec![
            ".hk_identity",
            ".note.gnu.build-id",
            ".rela.dyn",
            ".text",
            ".data.rel.ro",
            ".data",
            ".bss",
        ];
        if self.schema.is_some() {
            names.push(".hk_schema");
        }
        if self.svn.is_some() {
            names.push(".hk_svn");
        }
        let schema = self.schema.clone().unwrap_or_default();
        let svn = self.svn.clone().unwrap_or_default();
        let name_ids: Vec<StringId> = names
            .iter()
            .map(|n| w.add_section_name(n.as_bytes()))
            .collect();
        let indices: Vec<_> = names.iter().map(|_| w.reserve_section_index()).collect();
        let text_index = indices[3];
        w.reserve_null_symbol_index();
        let syms: Vec<(StringId, u64)> = self
            .symbols
            .iter()
            .enumerate()
            .map(|(i, n)| {
                w.reserve_symbol_index(Some(text_index));
                (w.add_string(n.as_bytes()), TEXT + 0x10 * (i as u64 + 1))
            })
            .collect();
        w.reserve_symtab_section_index();
        w.reserve_strtab_section_index();
        w.reserve_shstrtab_section_index();
        w.reserve_until((data + 0x40) as usize);
        let schema_at = w.reserve(schema.len(), 8) as u64;
        let svn_at = w.reserve(svn.len(), 8) as u64;
        w.reserve_symtab();
        w.reserve_strtab();
        w.reserve_shstrtab();
        w.reserve_section_headers();

        w.write_file_header(&FileHeader {
            os_abi: 0,
            abi_version: 0,
            e_type: self.e_type,
            e_machine: elf::EM_X86_64,
            e_entry: TEXT,
            e_flags: 0,
        })
        .unwrap();
        w.write_align_program_headers();
        let ph = |p_type, p_flags, at: u64, filesz: u64, memsz: u64| ProgramHeader {
            p_type,
            p_flags,
            p_offset: at,
            p_vaddr: at,
            p_paddr: at,
            p_filesz: filesz,
            p_memsz: memsz,
            p_align: 0x1000,
        };
        let (r, rw, rx) = (elf::PF_R, elf::PF_R | elf::PF_W, elf::PF_R | elf::PF_X);
        w.write_program_header(&ph(
            elf::PT_LOAD,
            r,
            0,
            rela_at + rela_len,
            rela_at + rela_len,
        ));
        w.write_program_header(&ph(elf::PT_LOAD, rx, TEXT, 0x100, 0x100));
        w.write_program_header(&ph(elf::PT_LOAD, rw, RELRO, relro_file, 0x1000));
        w.write_program_header(&ph(elf::PT_LOAD, rw, data, 0x40, 0x1040));
        let dyn_type = if self.dynamic {
            elf::PT_DYNAMIC
        } else {
            elf::PT_NULL
        };
        w.write_program_header(&ph(
            dyn_type,
            rw,
            DYNAMIC,
            16 * dyn_entries.len() as u64,
            16 * dyn_entries.len() as u64,
        ));
        w.write_program_header(&ph(elf::PT_GNU_RELRO, r, RELRO, relro_file, 0x1000));
        w.write_program_header(&ph(elf::PT_NOTE, r, 0x2e0, 36, 36));

        w.pad_until(0x200);
        w.write(&identity);
        w.pad_until(0x2e0);
        if self.build_id {
            w.write(&4u32.to_le_bytes());
            w.write(&20u32.to_le_bytes());
            w.write(&elf::NT_GNU_BUILD_ID.to_le_bytes());
            w.write(b"GNU\0");
            w.write(&BUILD_ID);
        }
        w.pad_until(rela_at as usize);
        for &(r_offset, r_type, r_addend) in &self.relocations {
            w.write_relocation(
                true,
                &Rel {
                    r_offset,
                    r_sym: 0,
                    r_type,
                    r_addend,
                },
            );
        }
        w.pad_until(TEXT as usize);
        w.write(&[0xcc; 0x100]);
        w.pad_until(RELRO as usize);
        w.write(&[0x11; 0x100]);
        w.pad_until(DYNAMIC as usize);
        for &(tag, val) in &dyn_entries {
            w.write_dynamic(tag, val);
        }
        w.pad_until(data as usize);
        w.write(&[0x22; 0x40]);
        w.write_align(8);
        w.write(&schema);
        w.write_align(8);
        w.write(&svn);

        w.write_null_symbol();
        for &(name, value) in &syms {
            w.write_symbol(&Sym {
                name: Some(name),
                section: Some(text_index),
                st_info: (elf::STB_GLOBAL << 4) | elf::STT_FUNC,
                st_other: 0,
                st_shndx: 0,
                st_value: value,
                st_size: 0x10,
            });
        }
        w.write_strtab();
        w.write_shstrtab();

        w.write_null_section_header();
        let mut sections = vec![
            (
                elf::SHT_PROGBITS,
                elf::SHF_ALLOC,
                0x200,
                identity.len() as u64,
                8,
                0,
            ),
            (
                elf::SHT_NOTE,
                elf::SHF_ALLOC,
                0x2e0,
                if self.build_id { 36 } else { 0 },
                4,
                0,
            ),
            (elf::SHT_RELA, elf::SHF_ALLOC, rela_at, rela_len, 8, 24),
            (
                elf::SHT_PROGBITS,
                elf::SHF_ALLOC | elf::SHF_EXECINSTR,
                TEXT,
                0x100,
                16,
                0,
            ),
            (
                elf::SHT_PROGBITS,
                elf::SHF_ALLOC | elf::SHF_WRITE,
                RELRO,
                0x100,
                8,
                0,
            ),
            (
                elf::SHT_PROGBITS,
                elf::SHF_ALLOC | elf::SHF_WRITE,
                data,
                0x40,
                8,
                0,
            ),
            (
                elf::SHT_NOBITS,
                elf::SHF_ALLOC | elf::SHF_WRITE,
                data + 0x40,
                0x1000,
                16,
                0,
            ),
        ];
        // Not loaded: the address is 0 and the file offset the one reserved above.
        let mut unloaded = Vec::new();
        if self.schema.is_some() {
            unloaded.push((schema_at, schema.len() as u64));
        }
        if self.svn.is_some() {
            unloaded.push((svn_at, svn.len() as u64));
        }
        let mut unloaded_at = Vec::new();
        for (at, len) in unloaded {
            sections.push((elf::SHT_PROGBITS, 0, 0, len, 8, 0));
            unloaded_at.push(at);
        }
        let mut unloaded_at = unloaded_at.into_iter();
        for (&name, (sh_type, flags, addr, size, align, entsize)) in name_ids.iter().zip(sections) {
            w.write_section_header(&SectionHeader {
                name: Some(name),
                sh_type,
                sh_flags: u64::from(flags),
                sh_addr: addr,
                sh_offset: if addr == 0 && flags == 0 {
                    unloaded_at.next().unwrap_or(0)
                } else {
                    addr
                },
                sh_size: size,
                sh_link: 0,
                sh_info: 0,
                sh_addralign: align,
                sh_entsize: entsize,
            });
        }
        w.write_symtab_section_header(1);
        w.write_strtab_section_header();
        w.write_shstrtab_section_header();
        out
    }

    fn pack(&self) -> Result<Vec<u8>, PackError> {
        pack(&self.elf(), &PackOptions::default())
    }
}

#[test]
fn packs_a_static_pie() {
    for dynamic in [true, false] {
        let bytes = Fixture {
            dynamic,
            ..Fixture::default()
        }
        .pack()
        .unwrap();
        let p = parse(&bytes).unwrap();
        assert_eq!(*p.identity(), IDENTITY);
        assert_eq!(p.build_id().as_bytes(), &BUILD_ID);
        let g = p.geometry();
        assert_eq!(g.link_base, 0);
        assert_eq!(g.image_span, 0x5000);
        assert_eq!(g.entries.kernel, TEXT);
        assert_eq!(g.entries.bootstrap, TEXT + 0x10);
        assert_eq!(g.entries.resume, TEXT + 0x20);
        assert_eq!(g.entries.ap_resume, TEXT + 0x30);
        let segs: Vec<_> = p.segments().collect();
        assert_eq!(segs.len(), 4);
        assert_eq!(segs[1].flags, SegmentFlags::R | SegmentFlags::X);
        assert_eq!(
            segs[2].flags,
            SegmentFlags::R | SegmentFlags::W | SegmentFlags::RELRO
        );
        assert_eq!(segs[3].flags, SegmentFlags::R | SegmentFlags::W);
        assert_eq!(segs[3].mem_size, 0x1040);
        assert_eq!(p.segment_bytes(&segs[1]), &[0xcc; 0x100][..]);
        let relocs: Vec<_> = p.relocations().collect();
        assert_eq!(
            relocs[1],
            Relocation {
                offset: 0x2008,
                addend: 0x3000
            }
        );
        assert_eq!(relocs.len(), 3);
    }
}

#[test]
fn the_label_can_be_overridden() {
    let opts = PackOptions {
        label: Some("fix-lcg".into()),
    };
    let bytes = pack(&Fixture::default().elf(), &opts).unwrap();
    assert_eq!(
        parse(&bytes).unwrap().identity().label().as_str(),
        "fix-lcg"
    );
    let opts = PackOptions {
        label: Some("x".repeat(49)),
    };
    assert!(matches!(
        pack(&Fixture::default().elf(), &opts),
        Err(PackError::Label(_))
    ));
}

#[test]
fn refusals_say_what_to_change() {
    let e = Fixture {
        e_type: elf::ET_EXEC,
        ..Fixture::default()
    }
    .pack()
    .unwrap_err();
    assert_eq!(
        e,
        PackError::NotPie {
            e_type: elf::ET_EXEC
        }
    );

    let mut f = Fixture::default();
    f.relocations.push((0x2010, elf::R_X86_64_64, 0));
    let e = f.pack().unwrap_err();
    assert_eq!(
        e,
        PackError::UnsupportedRelocation {
            r_type: elf::R_X86_64_64,
            offset: 0x2010
        }
    );
    assert!(
        e.to_string()
            .starts_with("dynamic relocation R_X86_64_64 (1) at 0x2010"),
        "{e}"
    );

    let e = Fixture {
        identity: None,
        ..Fixture::default()
    }
    .pack()
    .unwrap_err();
    assert_eq!(e, PackError::IdentitySize { size: 0 });
    let e = Fixture {
        identity: Some(vec![0; 200]),
        ..Fixture::default()
    }
    .pack()
    .unwrap_err();
    assert_eq!(e, PackError::IdentitySize { size: 200 });
    let mut bad = IDENTITY.to_bytes().to_vec();
    bad[0] = b'X';
    let e = Fixture {
        identity: Some(bad),
        ..Fixture::default()
    }
    .pack()
    .unwrap_err();
    assert!(
        matches!(e, PackError::Identity(FormatError::BadMagic { .. })),
        "{e}"
    );

    let e = Fixture {
        build_id: false,
        ..Fixture::default()
    }
    .pack()
    .unwrap_err();
    assert_eq!(e, PackError::MissingBuildId);

    let e = Fixture {
        symbols: vec!["hk_bootstrap", "hk_ap_resume"],
        ..Fixture::default()
    }
    .pack()
    .unwrap_err();
    assert_eq!(e, PackError::MissingSymbol { name: "hk_resume" });
    assert!(e.to_string().contains("#[no_mangle]"));

    let e = Fixture {
        data_vaddr: 0x3040,
        ..Fixture::default()
    }
    .pack()
    .unwrap_err();
    assert!(
        matches!(
            e,
            PackError::UnalignedSegment {
                index: 3,
                vaddr: 0x3040
            }
        ),
        "{e}"
    );

    let mut f = Fixture::default();
    f.relocations.push((0x1000, elf::R_X86_64_RELATIVE, 0));
    let e = f.pack().unwrap_err();
    assert!(
        matches!(
            e,
            PackError::Package(FormatError::Relocation { index: 3, .. })
        ),
        "{e}"
    );

    assert!(matches!(
        pack(b"not an elf", &PackOptions::default()),
        Err(PackError::Elf(_))
    ));
}

#[test]
fn a_missing_identity_section_is_explained() {
    // Rename the section so it is not found.
    let mut bytes = Fixture::default().elf();
    let at = bytes
        .windows(12)
        .position(|w| w == b".hk_identity")
        .unwrap();
    bytes[at + 1] = b'x';
    let e = pack(&bytes, &PackOptions::default()).unwrap_err();
    assert_eq!(e, PackError::MissingIdentity);
    assert!(e.to_string().contains("EmbeddedIdentity"));
}

#[test]
fn the_description_is_copied_from_hk_schema() {
    let elf = Fixture::default().elf();
    let bytes = pack(&elf, &PackOptions::default()).unwrap();
    let p = parse(&bytes).unwrap();
    assert_eq!(p.description(), &sample_description()[..]);
    assert_eq!(elf_description(&elf).unwrap(), sample_description());
}

#[test]
fn a_missing_or_wrong_description_says_what_to_embed() {
    let e = Fixture {
        schema: None,
        ..Fixture::default()
    }
    .pack()
    .unwrap_err();
    assert_eq!(e, PackError::MissingDescription);
    let text = e.to_string();
    assert!(
        text.contains("#[link_section = \".hk_schema\"]") && text.contains("describe::build"),
        "{text}"
    );
    let e = Fixture {
        schema: Some(Vec::new()),
        ..Fixture::default()
    }
    .pack()
    .unwrap_err();
    assert_eq!(e, PackError::EmptyDescription);
    let e = Fixture {
        schema: Some(IDENTITY.to_bytes().to_vec()),
        ..Fixture::default()
    }
    .pack()
    .unwrap_err();
    assert_eq!(
        e,
        PackError::DescriptionMagic {
            found: b"HKIDENT1".to_vec()
        }
    );
    assert!(e.to_string().contains("HKDESC01"), "{e}");
    let mut padded = sample_description();
    padded.extend_from_slice(&[0; 8]);
    let e = Fixture {
        schema: Some(padded),
        ..Fixture::default()
    }
    .pack()
    .unwrap_err();
    assert_eq!(
        e,
        PackError::DescriptionSize {
            section: 48,
            stated: Some(40)
        }
    );
    let e = Fixture {
        schema: Some(b"HKDESC01".to_vec()),
        ..Fixture::default()
    }
    .pack()
    .unwrap_err();
    assert_eq!(
        e,
        PackError::DescriptionSize {
            section: 8,
            stated: None
        }
    );
    assert!(matches!(
        elf_description(
            &Fixture {
                schema: None,
                ..Fixture::default()
            }
            .elf()
        ),
        Err(PackError::MissingDescription)
    ));
}

#[test]
fn the_security_version_is_copied_from_hk_svn() {
    let bytes = Fixture::default().pack().unwrap();
    assert_eq!(parse(&bytes).unwrap().svn(), 7);
    let e = Fixture {
        svn: None,
        ..Fixture::default()
    }
    .pack()
    .unwrap_err();
    assert!(matches!(e, PackError::MissingSvn), "{e}");
    assert!(e.to_string().contains(".hk_svn"));
    let e = Fixture {
        svn: Some(vec![1, 2]),
        ..Fixture::default()
    }
    .pack()
    .unwrap_err();
    assert!(matches!(e, PackError::SvnSize { size: 2 }), "{e}");
}
