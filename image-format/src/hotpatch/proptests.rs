//! Properties of [`parse`]: it never panics, whatever the bytes, and a patch built from
//! any valid spec reads back as built.

use std::string::String;
use std::vec::Vec;

use proptest::prelude::*;

use super::tests::{sample, sample_spec, target, TEXT_OFFSET};
use super::*;
use crate::Label;

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, value: u8 },
    Insert { at: usize, value: u8 },
    Delete { at: usize },
    Truncate { len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = 0usize..12_000;
    prop_oneof![
        (at.clone(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (at.clone(), any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value }),
        (at.clone(), any::<u8>()).prop_map(|(at, value)| Mutation::Insert { at, value }),
        at.clone().prop_map(|at| Mutation::Delete { at }),
        at.prop_map(|len| Mutation::Truncate { len }),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len().max(1);
    match *m {
        Mutation::Flip { at, bit } => {
            if let Some(b) = bytes.get_mut(at % n) {
                *b ^= 1 << bit;
            }
        }
        Mutation::Set { at, value } => {
            if let Some(b) = bytes.get_mut(at % n) {
                *b = value;
            }
        }
        Mutation::Insert { at, value } => bytes.insert(at % (bytes.len() + 1), value),
        Mutation::Delete { at } => {
            if !bytes.is_empty() {
                bytes.remove(at % n);
            }
        }
        Mutation::Truncate { len } => bytes.truncate(len % n),
    }
}

/// Reads everything a view offers, so a panic in an accessor would show.
fn touch(view: &PatchView<'_>) -> usize {
    let mut n = view.payload().len();
    for f in view.functions() {
        n += view.code(&f).len() + f.name.len();
    }
    n += view.data_blocks().map(|d| d.size as usize).sum::<usize>();
    n += view.relocations().map(|r| r.symbol.len()).sum::<usize>();
    n
}

/// A random but valid spec: `n` replaced functions at increasing sites, `m` new ones,
/// data blocks and relocations between them.
fn spec() -> impl Strategy<Value = PatchSpec> {
    let function = (prop::collection::vec(any::<u8>(), 8..64), "[a-z:]{1,24}");
    let block = (prop::collection::vec(any::<u8>(), 8..40), 0u32..4);
    (
        prop::collection::vec(function.clone(), 1..6),
        prop::collection::vec(function, 0..4),
        prop::collection::vec(block, 0..4),
        prop::collection::vec(
            (any::<u16>(), any::<u16>(), any::<i32>(), any::<bool>()),
            0..12,
        ),
        1u32..1000,
        "[a-z0-9-]{0,20}",
    )
        .prop_map(|(replaced, new, blocks, relocs, version, label)| {
            let mut functions = Vec::new();
            for (i, (code, name)) in replaced.into_iter().enumerate() {
                functions.push(FunctionSpec {
                    name: std::format!("{name}#{i}"),
                    code,
                    site: Some(Site {
                        offset: TEXT_OFFSET + 0x100 * i as u64,
                        old_size: 0x40,
                        original: [i as u8; ORIGINAL_LEN],
                    }),
                });
            }
            for (i, (code, name)) in new.into_iter().enumerate() {
                functions.push(FunctionSpec {
                    name: std::format!("{name}#new{i}"),
                    code,
                    site: None,
                });
            }
            let data: Vec<DataSpec> = blocks
                .into_iter()
                .map(|(bytes, align)| DataSpec {
                    name: String::from("block"),
                    bytes,
                    align: 1 << (align * 2),
                })
                .collect();
            let mut relocations = Vec::new();
            let mut used = std::collections::BTreeSet::new();
            for (a, b, addend, abs) in relocs {
                let at = a as usize % (functions.len() + data.len());
                let (anchor, len) = if at < functions.len() {
                    (Anchor::Function(at), functions[at].code.len())
                } else {
                    (
                        Anchor::Data(at - functions.len()),
                        data[at - functions.len()].bytes.len(),
                    )
                };
                let kind = if abs {
                    RelocKind::Abs64
                } else {
                    RelocKind::Pc32
                };
                let slot = (b as usize % (len / 8)) * 8;
                if !used.insert((anchor, slot)) {
                    continue;
                }
                let target = if b % 2 == 0 {
                    SpecTarget::Image(u64::from(b) * 16)
                } else {
                    SpecTarget::Patch(Anchor::Function(b as usize % functions.len()), 0)
                };
                relocations.push(RelocationSpec {
                    at: anchor,
                    offset: slot as u32,
                    kind,
                    target,
                    addend: i64::from(addend),
                    symbol: String::from("sym"),
                });
            }
            PatchSpec {
                version,
                svn: version,
                label: Label::try_new(&label).unwrap_or(Label::EMPTY),
                target: target(),
                functions,
                data,
                relocations,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        if let Ok(view) = parse(&bytes) {
            touch(&view);
        }
    }

    #[test]
    fn never_panics_on_a_mutated_patch(edits in prop::collection::vec(mutation(), 1..6), seal in any::<bool>()) {
        let mut bytes = sample();
        for m in &edits {
            apply(&mut bytes, m);
        }
        if seal {
            let _ = reseal(&mut bytes);
        }
        if let Ok(view) = parse(&bytes) {
            touch(&view);
        }
    }

    #[test]
    fn never_panics_on_resealed_header_edits(at in 0usize..0x400, value in any::<u8>()) {
        let mut bytes = sample();
        let n = bytes.len();
        bytes[at % n] = value;
        let _ = reseal(&mut bytes);
        if let Ok(view) = parse(&bytes) {
            touch(&view);
        }
    }

    #[test]
    fn a_built_spec_reads_back(spec in spec()) {
        let bytes = spec.build().map_err(|e| TestCaseError::fail(std::format!("{e}")))?;
        let view = parse(&bytes).unwrap();
        prop_assert_eq!(view.version(), spec.version);
        prop_assert_eq!(view.label(), &spec.label);
        prop_assert_eq!(view.function_count(), spec.functions.len());
        prop_assert_eq!(view.data_count(), spec.data.len());
        prop_assert_eq!(view.relocation_count(), spec.relocations.len());
        for f in view.functions() {
            let original = spec.functions.iter().find(|s| s.name == f.name).unwrap();
            prop_assert_eq!(view.code(&f), &original.code[..]);
        }
        prop_assert_eq!(spec.build().unwrap(), bytes, "building is deterministic");
    }
}

#[test]
fn the_sample_survives_every_single_byte_flip() {
    let bytes = sample();
    let _ = sample_spec();
    for at in 0..bytes.len() {
        let mut b = bytes.clone();
        b[at] ^= 0x80;
        assert!(parse(&b).is_err(), "a flip at {at:#x} went unnoticed");
    }
}
