//! Unit tests of the differ's parts that need no ELF file.

use super::decode::{decode, is_padding};
use super::rules::machinery_reason;
use super::symbols::{demangle, is_anonymous};
use super::Reason;

#[test]
fn names_lose_their_hashes() {
    assert_eq!(
        demangle("_RNvNtNtCs72nnXBPSOyh_6kernel5tasks7counter4step"),
        "kernel::tasks::counter::step"
    );
    assert_eq!(
        demangle("_RNvNtNtCsjltl52yDSfS_6kernel5tasks7counter4step"),
        "kernel::tasks::counter::step",
        "a build of another variant has another crate hash, and the same name"
    );
    assert_eq!(
        demangle("_ZN6kernel5tasks4tick17h0123456789abcdefE"),
        "kernel::tasks::tick"
    );
    assert_eq!(demangle("memcpy"), "memcpy");
    assert_eq!(
        demangle("_RNvNtCs72nnXBPSOyh_6kernel4time6TSC_HZ.0"),
        "kernel::time::TSC_HZ.0"
    );
    assert!(is_anonymous(".Lanon.d59c0f50790f0b213043c2a91e8628fc.155"));
    assert!(!is_anonymous("_RNvNtCs72nnXBPSOyh_6kernel3cpu4CPUS"));
}

#[test]
fn the_machinery_is_refused_by_path() {
    let machinery = |name| {
        matches!(
            machinery_reason(name, false),
            Some(Reason::Machinery { .. })
        )
    };
    assert!(machinery("kernel::update::swap::apply"));
    assert!(machinery("kernel::quiesce::checkpoint"));
    assert!(machinery("kernel::arch::x86_64::park::release"));
    assert!(machinery("<updater::recordset::RecordSet>::get"));
    assert!(machinery("hk_bootstrap"));
    assert!(!machinery("kernel::tasks::counter::step"));
    assert!(!machinery("<kernel::tasks::Next as core::fmt::Debug>::fmt"));
    let state = machinery_reason(
        "<kernel::tasks::ticker::TickerV2 as updater::record::Field>::put",
        true,
    );
    match state {
        Some(Reason::StateLayout { detail }) => {
            assert!(
                detail.contains("`kernel::tasks::ticker::TickerV2` is new"),
                "{detail}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn decoding_finds_instruction_ends_and_returns() {
    // cmpb $0, 0x0(%rip); ret — the field is followed by an immediate.
    let code = [0x80, 0x3d, 0, 0, 0, 0, 0x00, 0xc3];
    let d = decode(&code, 0x1000);
    assert_eq!(
        d.insn_end(2),
        Some(7),
        "the field ends 1 byte before the instruction"
    );
    assert!(d.returns);
    // jmp . (a loop that never returns)
    let d = decode(&[0xeb, 0xfe], 0x1000);
    assert!(!d.returns);
    // jmp to elsewhere: a tail call returns for us.
    let d = decode(&[0xe9, 0, 1, 0, 0], 0x1000);
    assert!(d.returns);
    assert_eq!(d.pc_refs.len(), 1);
    assert!(is_padding(&[
        0xcc, 0xcc, 0x66, 0x90, 0x0f, 0x1f, 0x40, 0x00
    ]));
    assert!(!is_padding(&[0xcc, 0xc3]));
}

mod synthetic {
    //! The generator on small linked images (`testelf`): one rule per test.

    use crate::testelf::{call, f, o, pc32, Elf, To};
    use crate::{
        make_patch, DiffError, PatchOptions, PatchOutput, Reason, StaticChange, Subject, Verdict,
    };
    use image_format::caps::Capabilities;
    use image_format::hotpatch::{parse, FunctionKind};
    use image_format::identity::{EmbeddedIdentity, SchemaEntry};
    use image_format::kinds::{RecordKind, TaskKind};
    use image_format::version::{ImageVersion, VersionRange};

    const HELPER: &[u8] = &[0xb8, 1, 0, 0, 0, 0xc3]; // mov eax, 1; ret
                                                     // push rbp; mov rbp, rsp; call helper; lea rax, [rip + str]; pop rbp; ret
    const CALLER: &[u8] = &[
        0x55, 0x48, 0x89, 0xe5, 0xe8, 0, 0, 0, 0, 0x48, 0x8d, 0x05, 0, 0, 0, 0, 0x5d, 0xc3,
    ];
    const READER: &[u8] = &[0x48, 0x8b, 0x05, 0, 0, 0, 0, 0xc3]; // mov rax, [rip + COUNT]; ret
    const TINY: &[u8] = &[0x31, 0xc0, 0xc3]; // xor eax, eax; ret

    fn base() -> Elf {
        Elf {
            build_id: 0x11,
            asm: vec![0xfa, 0xf4, 0xeb, 0xfd], // cli; hlt; jmp back
            pad: 0,
            funcs: vec![
                f("kernel::a::helper", HELPER, &[]),
                f(
                    "kernel::a::caller",
                    CALLER,
                    &[
                        call(4, "kernel::a::helper"),
                        pc32(12, To::Sym(".Lanon.str".into())),
                    ],
                ),
                f(
                    "kernel::a::reader",
                    READER,
                    &[pc32(3, To::Sym("kernel::a::COUNT".into()))],
                ),
                f("kernel::a::tiny", TINY, &[]),
            ],
            rodata: vec![o(".Lanon.str", b"hello\0")],
            data: vec![o("kernel::a::COUNT", &[1, 0, 0, 0, 0, 0, 0, 0])],
            bss: vec![("kernel::a::STATE".to_string(), 16)],
            identity: None,
        }
    }

    fn diff(old: &Elf, new: &Elf) -> Result<PatchOutput, DiffError> {
        make_patch(&old.build(), &new.build(), &PatchOptions::default())
    }

    fn refusals(r: Result<PatchOutput, DiffError>) -> Vec<(String, Subject, Reason)> {
        match r {
            Err(DiffError::NotHotpatchable { verdicts, .. }) => verdicts
                .into_iter()
                .filter_map(|v| match v.verdict {
                    Verdict::Refused { reason, .. } => Some((v.name, v.subject, reason)),
                    _ => None,
                })
                .collect(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn changed(out: &PatchOutput) -> Vec<&str> {
        out.verdicts
            .iter()
            .filter(|v| matches!(v.verdict, Verdict::Changed { .. }))
            .map(|v| v.name.as_str())
            .collect()
    }

    #[test]
    fn the_same_image_needs_no_patch() {
        let out = diff(&base(), &base()).unwrap();
        assert!(out.bytes.is_none());
        assert!(out.verdicts.is_empty());
        assert!(!out.notes.is_empty(), "no .hk_identity is noted");
    }

    #[test]
    fn moved_code_and_data_are_not_changes() {
        let mut new = base();
        new.build_id = 0x22;
        new.pad = 48;
        new.funcs
            .insert(0, f("kernel::a::unused", &[0x90, 0xc3], &[]));
        new.rodata.insert(0, o(".Lanon.other", b"other string\0"));
        let old = base();
        assert_ne!(
            old.addr_of("kernel::a::helper"),
            new.addr_of("kernel::a::helper")
        );
        let out = diff(&old, &new).unwrap();
        assert!(out.bytes.is_none(), "{:?}", out.verdicts);
    }

    #[test]
    fn a_changed_function_is_patched_at_its_old_entry() {
        let mut new = base();
        new.pad = 16;
        new.funcs[0].code[1] = 2; // mov eax, 2
        let old = base();
        let out = diff(&old, &new).unwrap();
        assert_eq!(changed(&out), ["kernel::a::helper"]);
        let bytes = out.bytes.unwrap();
        let view = parse(&bytes).unwrap();
        let fs: Vec<_> = view.functions().collect();
        assert_eq!(fs.len(), 1);
        assert_eq!(fs[0].kind, FunctionKind::Replace);
        let site = fs[0].site.unwrap();
        assert_eq!(site.offset, old.addr_of("kernel::a::helper"));
        assert_eq!(site.old_size, HELPER.len() as u32);
        assert_eq!(&site.original[..6], HELPER);
        assert_eq!(view.code(&fs[0]), [0xb8, 2, 0, 0, 0, 0xc3]);
        assert_eq!(view.target().build_id.as_bytes(), [0x11; 20]);
    }

    #[test]
    fn changed_read_only_data_changes_its_users_and_is_carried() {
        let mut new = base();
        new.rodata[0].bytes = b"hellp\0".to_vec();
        let out = diff(&base(), &new).unwrap();
        assert_eq!(changed(&out), ["kernel::a::caller"]);
        let bytes = out.bytes.unwrap();
        let view = parse(&bytes).unwrap();
        let block = view.data_blocks().next().expect("the string is carried");
        let (at, size) = (block.offset as usize, block.size as usize);
        assert_eq!(&view.payload()[at..at + size], b"hellp\0");
        // The call to the unchanged helper goes to the running image.
        let r = view
            .relocations()
            .find(|r| r.symbol == "kernel::a::helper")
            .unwrap();
        assert_eq!(
            r.target,
            image_format::hotpatch::RelocTarget::Image(base().addr_of("kernel::a::helper"))
        );
    }

    #[test]
    fn a_new_function_that_changed_code_calls_is_carried() {
        let mut new = base();
        new.funcs
            .push(f("kernel::a::fresh", &[0xb8, 7, 0, 0, 0, 0xc3], &[]));
        new.funcs[1].relocs[0] = call(4, "kernel::a::fresh");
        let out = diff(&base(), &new).unwrap();
        assert_eq!(changed(&out), ["kernel::a::caller"]);
        let fresh = out
            .verdicts
            .iter()
            .find(|v| v.name == "kernel::a::fresh")
            .unwrap();
        assert!(
            matches!(&fresh.verdict, Verdict::New { needed_by, .. } if needed_by == "kernel::a::caller")
        );
        let bytes = out.bytes.unwrap();
        let view = parse(&bytes).unwrap();
        assert!(view
            .functions()
            .any(|f| f.kind == FunctionKind::New && f.name == "kernel::a::fresh"));
    }

    #[test]
    fn a_changed_writable_static_is_refused() {
        let mut new = base();
        new.data[0].bytes[0] = 2;
        let r = refusals(diff(&base(), &new));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].0, "kernel::a::COUNT");
        assert_eq!(r[0].1, Subject::Static);
        assert_eq!(r[0].2, Reason::Static(StaticChange::InitialBytes));
        let mut new = base();
        new.bss[0].1 = 24;
        let r = refusals(diff(&base(), &new));
        assert_eq!(
            r[0].2,
            Reason::Static(StaticChange::Size { old: 16, new: 24 })
        );
    }

    #[test]
    fn a_new_writable_static_used_by_changed_code_is_refused() {
        let mut new = base();
        new.data
            .push(o("kernel::a::NEWCOUNT", &[5, 0, 0, 0, 0, 0, 0, 0]));
        new.funcs[2].relocs[0] = pc32(3, To::Sym("kernel::a::NEWCOUNT".into()));
        let r = refusals(diff(&base(), &new));
        assert!(r.iter().any(|(n, s, reason)| n == "kernel::a::NEWCOUNT"
            && *s == Subject::Static
            && matches!(reason, Reason::Static(StaticChange::Added { used_by }) if used_by == "kernel::a::reader")));
    }

    #[test]
    fn a_function_too_short_for_the_jump_is_refused() {
        let mut new = base();
        new.funcs[3].code = vec![0x31, 0xc0, 0xff, 0xc0, 0xc3]; // xor; inc; ret
        let r = refusals(diff(&base(), &new));
        assert_eq!(r[0].0, "kernel::a::tiny");
        assert_eq!(r[0].2, Reason::TooShort { size: 3 });
    }

    #[test]
    fn the_machinery_is_refused() {
        let rename = |e: &mut Elf| {
            e.funcs[0].name = "kernel::update::helper".into();
            e.funcs[1].relocs[0] = call(4, "kernel::update::helper");
        };
        let (mut old, mut new) = (base(), base());
        rename(&mut old);
        rename(&mut new);
        new.funcs[0].code[1] = 2;
        let r = refusals(diff(&old, &new));
        assert_eq!(
            r[0].2,
            Reason::Machinery {
                prefix: "kernel::update::"
            }
        );
        let e = diff(&old, &new).unwrap_err().to_string();
        assert!(
            e.contains("kernel::update::helper: part of the swap/patch machinery"),
            "{e}"
        );
        assert!(
            e.ends_with("apply it with a full swap: `hotkernel swap`"),
            "{e}"
        );
    }

    #[test]
    fn a_change_among_functions_sharing_a_name_is_refused() {
        let dup = |e: &mut Elf| {
            e.funcs
                .push(f("kernel::a::dup", &[0xb8, 3, 0, 0, 0, 0xc3], &[]));
            e.funcs
                .push(f("kernel::a::dup", &[0xb8, 4, 0, 0, 0, 0xc3], &[]));
        };
        let (mut old, mut new) = (base(), base());
        dup(&mut old);
        dup(&mut new);
        assert!(
            diff(&old, &new).unwrap().bytes.is_none(),
            "equal pairs are fine"
        );
        new.funcs[5].code[1] = 9;
        let r = refusals(diff(&old, &new));
        assert_eq!(r[0].0, "kernel::a::dup");
        assert_eq!(r[0].2, Reason::Ambiguous { old: 2, new: 2 });
    }

    #[test]
    fn changed_code_outside_functions_is_refused() {
        let mut new = base();
        new.asm[0] = 0x90;
        let r = refusals(diff(&base(), &new));
        assert_eq!(r[0].1, Subject::CodeOutsideFunctions);
        assert!(
            matches!(&r[0].2, Reason::CodeOutsideFunctions { near, .. } if near == "hk_asm_start")
        );
    }

    fn identity(counter: u16) -> EmbeddedIdentity {
        EmbeddedIdentity::new(
            ImageVersion::new(1, 0, 0),
            "v1",
            VersionRange::new(ImageVersion::new(1, 0, 0), ImageVersion::new(1, 99, 99)),
            Capabilities::empty(),
            Capabilities::empty(),
            &[
                SchemaEntry::new(image_format::kinds::TASK_TABLE, 1, 1),
                SchemaEntry::new(RecordKind::task_state(TaskKind::COUNTER), counter, 1),
            ],
        )
    }

    #[test]
    fn a_schema_change_in_the_identity_is_a_state_layout_change() {
        let (mut old, mut new) = (base(), base());
        old.identity = Some(identity(1));
        new.identity = Some(identity(1));
        let out = diff(&old, &new).unwrap();
        assert!(out.notes.is_empty());
        new.identity = Some(identity(2));
        let r = refusals(diff(&old, &new));
        assert!(r.iter().any(|(_, s, reason)| *s == Subject::StateLayout
            && matches!(reason, Reason::StateLayout { detail } if detail == "counter-state schema v1 → v2")), "{r:?}");
    }
}

mod decoding {
    //! References through a section symbol whose instruction has an immediate after the
    //! field, and the generator's self-check.

    use crate::compare::Compare;
    use crate::extract::extract;
    use crate::image::Image;
    use crate::locate::Analysis;
    use crate::symbols::Matching;
    use crate::testelf::{f, o, Elf, To, R};
    use crate::{make_patch, verify, PatchOptions};
    use image_format::hotpatch::{layout as at, reseal, PatchSpec, TargetImage};
    use image_format::identity::Label;
    use object::elf;

    /// `cmpb $0, FLAG(%rip); ret`, FLAG reached through `.rodata + off − 5`.
    fn image(before: usize, flag: u8) -> Elf {
        let flag_at = before.div_ceil(8) * 8;
        Elf {
            build_id: 1,
            funcs: vec![
                f(
                    "kernel::b::flag",
                    &[0x80, 0x3d, 0, 0, 0, 0, 0x00, 0xc3],
                    &[R {
                        at: 2,
                        r_type: elf::R_X86_64_PC32,
                        to: To::Rodata(flag_at as u64),
                        addend: -5,
                    }],
                ),
                // Keeps the site's 16 original bytes inside the text.
                f("kernel::b::after", &[0xc3; 16], &[]),
            ],
            rodata: vec![
                o("kernel::b::BEFORE", &vec![7; before]),
                o("kernel::b::FLAG", &[flag]),
            ],
            ..Elf::default()
        }
    }

    #[test]
    fn the_field_refers_past_the_immediate() {
        // BEFORE grows from 8 to 16 bytes, FLAG moves; with the field read as ending
        // the instruction, the reference would land in BEFORE and look changed.
        let out = make_patch(
            &image(8, 1).build(),
            &image(16, 1).build(),
            &PatchOptions::default(),
        )
        .unwrap();
        assert!(out.bytes.is_none(), "{:?}", out.verdicts);
        let out = make_patch(
            &image(8, 1).build(),
            &image(16, 2).build(),
            &PatchOptions::default(),
        )
        .unwrap();
        assert_eq!(out.verdicts.len(), 1, "FLAG's new value changes its reader");
        assert!(out.bytes.is_some());
    }

    #[test]
    fn the_self_check_catches_a_wrong_relocation() {
        let (old, new) = (image(8, 1).build(), image(8, 2).build());
        let (old, new) = (
            Analysis::of(Image::parse(&old).unwrap()),
            Analysis::of(Image::parse(&new).unwrap()),
        );
        let matching = Matching::of(&old.items, &new.items);
        let mut cmp = Compare::new(&old, &new, &matching);
        let changed = [(0usize, 0usize)];
        let ex = extract(&mut cmp, &changed);
        let spec = PatchSpec {
            version: 1,
            svn: 0,
            label: Label::EMPTY,
            target: TargetImage { ..old.image.target },
            functions: ex.functions.clone(),
            data: ex.data.clone(),
            relocations: ex.relocations.clone(),
        };
        let mut bytes = spec.build().unwrap();
        assert_eq!(verify::verify(&mut cmp, &ex, &bytes), Ok(()));
        // Point the only relocation one byte further and reseal: still a valid patch,
        // but the code would read the wrong byte.
        let header_size = u32::from_le_bytes(
            bytes[at::HEADER_SIZE..at::HEADER_SIZE + 4]
                .try_into()
                .unwrap(),
        );
        assert!(header_size as usize > at::FIXED_SIZE);
        let table = u64::from_le_bytes(
            bytes[at::RELOCATION_TABLE..at::RELOCATION_TABLE + 8]
                .try_into()
                .unwrap(),
        ) as usize;
        let addend = table + at::relocation::ADDEND;
        let a = i64::from_le_bytes(bytes[addend..addend + 8].try_into().unwrap()) + 1;
        bytes[addend..addend + 8].copy_from_slice(&a.to_le_bytes());
        reseal(&mut bytes).unwrap();
        image_format::hotpatch::parse(&bytes).unwrap();
        let e = verify::verify(&mut cmp, &ex, &bytes).unwrap_err();
        assert!(e.contains("kernel::b::flag+0x2"), "{e}");
        let _ = e.to_string();
    }
}

mod robustness {
    //! The generator never panics on a damaged ELF: it refuses or reports.

    use proptest::prelude::*;

    use crate::testelf::{call, f, o, pc32, Elf, To};
    use crate::{make_patch, PatchOptions};

    fn image(imm: u8) -> std::vec::Vec<u8> {
        Elf {
            build_id: imm,
            asm: vec![0xfa, 0xf4],
            funcs: vec![
                f("kernel::c::helper", &[0xb8, imm, 0, 0, 0, 0xc3], &[]),
                f(
                    "kernel::c::caller",
                    &[0xe8, 0, 0, 0, 0, 0x48, 0x8d, 0x05, 0, 0, 0, 0, 0xc3],
                    &[
                        call(0, "kernel::c::helper"),
                        pc32(8, To::Sym(".Lanon.s".into())),
                    ],
                ),
                f("kernel::c::tail", &[0xc3; 16], &[]),
            ],
            rodata: vec![o(".Lanon.s", b"text\0")],
            data: vec![o("kernel::c::X", &[1; 8])],
            ..Elf::default()
        }
        .build()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn never_panics_on_damaged_elf_files(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<bool>(), any::<u8>()), 1..8),
            which in any::<bool>(),
        ) {
            let (mut old, mut new) = (image(1), image(2));
            let target = if which { &mut old } else { &mut new };
            let len = target.len();
            for (at, head, value) in &edits {
                // The headers at the start and the tables at the end hold the structure.
                let i = if *head { at.index(0x200) } else { len - 1 - at.index(0xa00) };
                target[i] = *value;
            }
            let _ = make_patch(&old, &new, &PatchOptions::default());
        }
    }
}

mod rodata;
