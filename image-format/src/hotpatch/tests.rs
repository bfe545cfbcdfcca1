//! Hand-made patches: round trips, one test per class of refusal, and the apply
//! arithmetic.

use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use super::apply::{jump, relocate, ApplyError};
use super::layout as at;
use super::*;
use crate::{BuildId, FormatError, Label};

pub(super) const TEXT_OFFSET: u64 = 0x9000;

pub(super) fn target() -> TargetImage {
    TargetImage {
        build_id: BuildId::new(&[0x41; 20]),
        header_hash: [1; 32],
        text_hash: [2; 32],
        text_offset: TEXT_OFFSET,
        text_size: 0x4_0000,
    }
}

/// Two replaced functions (one calls a new one), a string block and a GOT slot.
pub(super) fn sample_spec() -> PatchSpec {
    let site = |offset, old_size| {
        Some(Site {
            offset,
            old_size,
            original: [0x55; ORIGINAL_LEN],
        })
    };
    PatchSpec {
        version: 3,
        svn: 4,
        label: Label::new("fix-counter"),
        target: target(),
        functions: vec![
            FunctionSpec {
                name: "kernel::tasks::ticker::step".into(),
                code: vec![0xe8, 0, 0, 0, 0, 0xc3],
                site: site(0xa100, 32),
            },
            FunctionSpec {
                name: "kernel::tasks::helper".into(),
                code: vec![0x48, 0x8d, 0x05, 0, 0, 0, 0, 0xff, 0x15, 0, 0, 0, 0, 0xc3],
                site: None,
            },
            FunctionSpec {
                name: "kernel::tasks::counter::step".into(),
                code: vec![0x48, 0x83, 0x07, 0x02, 0xc3],
                site: site(0xa000, 16),
            },
        ],
        data: vec![
            DataSpec {
                name: "anon str".into(),
                bytes: b"hello".to_vec(),
                align: 1,
            },
            DataSpec {
                name: "got".into(),
                bytes: vec![0; 8],
                align: 8,
            },
        ],
        relocations: vec![
            RelocationSpec {
                at: Anchor::Function(0),
                offset: 1,
                kind: RelocKind::Pc32,
                target: SpecTarget::Image(0xc000),
                addend: -4,
                symbol: "kernel::tasks::unchanged".into(),
            },
            RelocationSpec {
                at: Anchor::Function(1),
                offset: 3,
                kind: RelocKind::Pc32,
                target: SpecTarget::Patch(Anchor::Data(0), 0),
                addend: -4,
                symbol: "anon str".into(),
            },
            RelocationSpec {
                at: Anchor::Function(1),
                offset: 9,
                kind: RelocKind::Pc32,
                target: SpecTarget::Patch(Anchor::Data(1), 0),
                addend: -4,
                symbol: "got".into(),
            },
            RelocationSpec {
                at: Anchor::Data(1),
                offset: 0,
                kind: RelocKind::Abs64,
                target: SpecTarget::Image(0xb000),
                addend: 0,
                symbol: "kernel::log".into(),
            },
        ],
    }
}

pub(super) fn sample() -> Vec<u8> {
    sample_spec().build().expect("the sample spec builds")
}

#[test]
fn builds_and_reads_back() {
    let bytes = sample();
    let view = parse(&bytes).unwrap();
    assert_eq!(view.version(), 3);
    assert_eq!(view.label().as_str(), "fix-counter");
    assert_eq!(view.target(), &target());
    assert_eq!(
        view.id(),
        PatchId::from_payload_digest(&view.payload_digest())
    );
    let names: Vec<_> = view.functions().map(|f| (f.kind, f.name)).collect();
    assert_eq!(
        names,
        [
            (FunctionKind::Replace, "kernel::tasks::counter::step"),
            (FunctionKind::Replace, "kernel::tasks::ticker::step"),
            (FunctionKind::New, "kernel::tasks::helper"),
        ],
        "replace entries first, sorted by site"
    );
    let counter = view.function(0).unwrap();
    assert_eq!(view.code(&counter), &[0x48, 0x83, 0x07, 0x02, 0xc3]);
    assert_eq!(counter.site.unwrap().offset, 0xa000);
    let (data_at, data_size) = view.data_region();
    assert_eq!(data_at, 4096);
    assert_eq!(data_size, 16);
    let blocks: Vec<_> = view.data_blocks().collect();
    assert_eq!(blocks[0].name, "anon str");
    assert_eq!(blocks[1].offset % 8, 0);
    assert_eq!(view.relocation_count(), 4);
    let places: Vec<u32> = view.relocations().map(|r| r.place).collect();
    let mut sorted = places.clone();
    sorted.sort();
    assert_eq!(places, sorted);
    assert!(view
        .relocations()
        .any(|r| r.target == RelocTarget::Image(0xb000)));
}

#[test]
fn a_patch_without_data_has_no_data_region() {
    let mut spec = sample_spec();
    spec.data.clear();
    spec.relocations.retain(|r| {
        !matches!(r.at, Anchor::Data(_))
            && !matches!(r.target, SpecTarget::Patch(Anchor::Data(_), _))
    });
    let bytes = spec.build().unwrap();
    let view = parse(&bytes).unwrap();
    assert_eq!(view.data_region().1, 0);
    assert_eq!(view.payload().len() as u32, view.code_size());
}

/// Edits one field of the sample (at a header offset) and reseals it.
fn edited(at: usize, value: &[u8]) -> Vec<u8> {
    let mut bytes = sample();
    bytes[at..at + value.len()].copy_from_slice(value);
    reseal(&mut bytes).unwrap();
    bytes
}

fn table_offset(bytes: &[u8], field: usize) -> usize {
    u64::from_le_bytes(bytes[field..field + 8].try_into().unwrap()) as usize
}

#[test]
fn refuses_damage_with_the_field_named() {
    let mut bytes = sample();
    bytes[0x70] ^= 1;
    assert!(matches!(
        parse(&bytes),
        Err(PatchError::Format(FormatError::HeaderDigest { .. }))
    ));
    let mut bytes = sample();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert!(matches!(
        parse(&bytes),
        Err(PatchError::Format(FormatError::PayloadDigest { .. }))
    ));
    let mut bytes = sample();
    bytes[0] = b'X';
    assert!(matches!(
        parse(&bytes),
        Err(PatchError::Format(FormatError::BadMagic { .. }))
    ));
    let bytes = sample();
    assert!(matches!(
        parse(&bytes[..bytes.len() - 1]),
        Err(PatchError::Format(FormatError::Truncated { .. }))
    ));
}

#[test]
fn refuses_a_wrong_patch_id() {
    let mut bytes = sample();
    bytes[at::PATCH_ID] ^= 1;
    let header_size = at::FIXED_SIZE.max(u32::from_le_bytes(
        bytes[at::HEADER_SIZE..at::HEADER_SIZE + 4]
            .try_into()
            .unwrap(),
    ) as usize);
    let digest = super::parse::header_digest(&bytes[..header_size]);
    bytes[at::HEADER_DIGEST..at::PAYLOAD_DIGEST].copy_from_slice(&digest);
    assert!(matches!(parse(&bytes), Err(PatchError::PatchId { .. })));
}

#[test]
fn version_1_patches_are_refused_and_the_svn_reads_back() {
    // Version 1 had no security version and no signature trailer.
    let e = parse(&edited(at::FORMAT_VERSION, &1u16.to_le_bytes()))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "patch format version 1 is not one this kernel understands (2)"
    );
    let bytes = sample();
    assert_eq!(parse(&bytes).unwrap().svn(), 4);
    // A trailer's worth of bytes after the patch is its signature; anything else is not.
    let mut signed = bytes.clone();
    signed.extend_from_slice(&[0; crate::signature::TRAILER_LEN]);
    let view = parse(&signed).unwrap();
    assert_eq!(view.bytes(), &bytes[..]);
    assert_eq!(view.trailer().len(), crate::signature::TRAILER_LEN);
    signed.push(0);
    assert!(parse(&signed).is_err());
}

#[test]
fn refuses_bad_header_fields() {
    let cases: [(usize, &[u8], &str); 5] = [
        (
            at::FORMAT_VERSION,
            &3u16.to_le_bytes(),
            "patch format version 3 is newer",
        ),
        (at::PATCH_VERSION, &0u32.to_le_bytes(), "patch version"),
        (at::TARGET_BUILD_ID_LEN, &[0], "build id length"),
        (
            at::TARGET_TEXT_SIZE,
            &0u64.to_le_bytes(),
            "target text size",
        ),
        (at::DATA_OFFSET, &8192u32.to_le_bytes(), "data offset"),
    ];
    for (offset, value, expected) in cases {
        let e = parse(&edited(offset, value)).unwrap_err().to_string();
        assert!(e.contains(expected), "{e:?} should mention {expected:?}");
    }
}

#[test]
fn refuses_bad_function_entries() {
    let bytes = sample();
    let table = table_offset(&bytes, at::FUNCTION_TABLE);
    let e0 = table;
    let e2 = table + 2 * at::function::SIZE;
    let cases: [(usize, Vec<u8>, FunctionProblem); 5] = [
        (
            e0 + at::function::KIND,
            vec![7],
            FunctionProblem::UnknownKind { code: 7 },
        ),
        (
            e0 + at::function::OLD_SIZE,
            4u32.to_le_bytes().to_vec(),
            FunctionProblem::SiteTooSmall { old_size: 4 },
        ),
        (
            e0 + at::function::CODE_OFFSET,
            8u32.to_le_bytes().to_vec(),
            FunctionProblem::CodeUnaligned { offset: 8 },
        ),
        (
            e2 + at::function::SITE,
            0xa200u64.to_le_bytes().to_vec(),
            FunctionProblem::NewHasSite,
        ),
        (
            e0 + at::function::RESERVED,
            vec![1],
            FunctionProblem::ReservedNotZero,
        ),
    ];
    for (offset, value, problem) in cases {
        match parse(&edited(offset, &value)) {
            Err(PatchError::Function { problem: p, .. }) => assert_eq!(p, problem),
            other => panic!("expected {problem:?}, got {other:?}"),
        }
    }
    let e = parse(&edited(e0 + at::function::SITE, &0x100u64.to_le_bytes())).unwrap_err();
    assert!(matches!(
        e,
        PatchError::Function {
            index: 0,
            problem: FunctionProblem::SiteOutsideText { .. }
        }
    ));
    let e = parse(&edited(e0 + at::function::SITE, &0xa100u64.to_le_bytes())).unwrap_err();
    assert!(
        matches!(
            e,
            PatchError::Function {
                index: 1,
                problem: FunctionProblem::SiteOverlap { .. }
            }
        ),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "function 1: site 0xa100 lies before the end of the previous replaced function (0xa110); sites must be sorted and disjoint"
    );
}

#[test]
fn refuses_bad_data_and_relocation_entries() {
    let bytes = sample();
    let data = table_offset(&bytes, at::DATA_TABLE);
    let e = parse(&edited(data + at::data::ALIGN, &3u32.to_le_bytes())).unwrap_err();
    assert_eq!(
        e,
        PatchError::Data {
            index: 0,
            problem: DataProblem::BadAlign { align: 3 }
        }
    );
    let e = parse(&edited(data + at::data::OFFSET, &0u32.to_le_bytes())).unwrap_err();
    assert!(matches!(
        e,
        PatchError::Data {
            index: 0,
            problem: DataProblem::OutsideRegion { .. }
        }
    ));

    let rel = table_offset(&bytes, at::RELOCATION_TABLE);
    let e = parse(&edited(rel + at::relocation::KIND, &[9])).unwrap_err();
    assert!(matches!(
        e,
        PatchError::Relocation {
            index: 0,
            problem: RelocationProblem::UnknownKind { code: 9 },
            ..
        }
    ));
    let second = rel + at::relocation::SIZE;
    let e = parse(&edited(
        second + at::relocation::TARGET,
        &0x3000u64.to_le_bytes(),
    ))
    .unwrap_err();
    assert!(
        matches!(
            e,
            PatchError::Relocation {
                index: 1,
                problem: RelocationProblem::PayloadTargetOutside { .. },
                ..
            }
        ),
        "{e}"
    );
    let e = parse(&edited(
        rel + at::relocation::PLACE,
        &0x7000u32.to_le_bytes(),
    ))
    .unwrap_err();
    assert!(matches!(e, PatchError::Relocation { index: 0, .. }), "{e}");
    let e = parse(&edited(rel + at::relocation::PLACE, &14u32.to_le_bytes())).unwrap_err();
    assert!(
        matches!(
            e,
            PatchError::Relocation {
                problem: RelocationProblem::FieldOutsideBlocks { width: 4 },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn needs_at_least_one_replaced_function() {
    let mut spec = sample_spec();
    for f in &mut spec.functions {
        f.site = None;
    }
    let e = spec.build().unwrap_err();
    assert!(
        e.to_string().contains("replaces at least one function"),
        "{e}"
    );
}

#[test]
fn relocates_for_the_bases_it_is_given() {
    let bytes = sample();
    let view = parse(&bytes).unwrap();
    let mut payload = view.payload().to_vec();
    let image = 0xffff_ffff_8000_0000u64;
    let patch = 0xffff_ffff_c000_0000u64;
    relocate(&view, &mut payload, image, patch).unwrap();
    for r in view.relocations() {
        let s = match r.target {
            RelocTarget::Image(v) => image + v,
            RelocTarget::Payload(v) => patch + u64::from(v),
        };
        let at = r.place as usize;
        match r.kind {
            RelocKind::Pc32 => {
                let field = i32::from_le_bytes(payload[at..at + 4].try_into().unwrap());
                let p = patch + u64::from(r.place);
                assert_eq!(
                    p.wrapping_add_signed(i64::from(field)),
                    s.wrapping_add_signed(r.addend)
                );
            }
            RelocKind::Abs64 => {
                let field = u64::from_le_bytes(payload[at..at + 8].try_into().unwrap());
                assert_eq!(field, s.wrapping_add_signed(r.addend));
            }
        }
    }
    let far = relocate(&view, &mut payload, image, patch.wrapping_add(4 << 30));
    assert!(matches!(far, Err(ApplyError::OutOfRange { .. })));
    let e = relocate(&view, &mut payload[1..], image, patch).unwrap_err();
    assert!(matches!(e, ApplyError::PayloadSize { .. }));
}

#[test]
fn the_site_jump_is_jmp_rel32() {
    assert_eq!(jump(0x1000, 0x1005).unwrap(), [0xe9, 0, 0, 0, 0]);
    assert_eq!(
        jump(0x1000, 0x1000).unwrap(),
        [0xe9, 0xfb, 0xff, 0xff, 0xff]
    );
    let site = 0xffff_ffff_8000_a000u64;
    let target = 0xffff_ffff_c000_0000u64;
    let j = jump(site, target).unwrap();
    let rel = i32::from_le_bytes(j[1..].try_into().unwrap());
    assert_eq!((site + 5).wrapping_add_signed(i64::from(rel)), target);
    assert!(jump(0, 1 << 33).is_err());
}

#[test]
fn messages_say_what_to_do() {
    let e = PatchError::PatchId {
        stored: 1,
        derived: 2,
    };
    assert!(e
        .to_string()
        .contains("rebuild it with `hotkernel patch make`"));
    let e = PatchError::Format(FormatError::PayloadDigest {
        stored: [0; 32],
        computed: [1; 32],
    });
    let s: String = e.to_string();
    assert!(s.contains("damaged"), "{s}");
}
