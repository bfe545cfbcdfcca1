//! Properties of [`parse`]: it never panics, whatever the bytes, and a package built
//! from any valid geometry and description reads back as built.

use std::vec::Vec;

use proptest::prelude::*;

use super::tests::{sample_spec, IDENTITY};
use super::*;
use crate::BuildId;

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
    let at = 0usize..20_000;
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

/// Mutations aimed at the header, where most of the structure is.
fn header_mutation() -> impl Strategy<Value = Mutation> {
    (0usize..0x2c0, any::<u8>()).prop_map(|(at, value)| Mutation::Set { at, value })
}

/// A segment layout: per segment a gap in pages before it, file bytes, extra memory
/// pages, and whether it is code, RELRO data or data.
fn spec() -> impl Strategy<Value = PackageSpec> {
    let segment = (0u64..3, 0usize..5000, 0u64..3, 0u8..3, any::<u8>());
    (
        proptest::collection::vec(segment, 1..6),
        0u64..0x1000,
        any::<[u8; 20]>(),
        proptest::collection::vec((any::<u16>(), any::<i64>()), 0..40),
        0u64..0x100,
        proptest::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|(segs, base_page, id, relocs, entry_seed, description)| {
            let mut spec = sample_spec();
            spec.build_id = BuildId::new(&id);
            // Any bytes after the 16 the package checks.
            let len = 16 + description.len() as u32;
            spec.description = DESCRIPTION_MAGIC.to_vec();
            spec.description.extend_from_slice(&1u32.to_le_bytes());
            spec.description.extend_from_slice(&len.to_le_bytes());
            spec.description.extend_from_slice(&description);
            spec.segments.clear();
            let mut vaddr = base_page * 0x1000;
            for (i, &(gap, file, extra_pages, kind, fill)) in segs.iter().enumerate() {
                // The first segment is code, so there is always somewhere to enter.
                let flags = match (i, kind) {
                    (0, _) | (_, 0) => SegmentFlags::R | SegmentFlags::X,
                    (_, 1) => SegmentFlags::R | SegmentFlags::W | SegmentFlags::RELRO,
                    _ => SegmentFlags::R | SegmentFlags::W,
                };
                let file = if i == 0 { file.max(1) } else { file };
                if i > 0 {
                    vaddr += gap * 0x1000;
                }
                let mem = file as u64 + extra_pages * 0x1000 + 1;
                spec.segments.push(SegmentSpec {
                    vaddr,
                    mem_size: mem,
                    flags,
                    bytes: (0..file).map(|j| fill.wrapping_add(j as u8)).collect(),
                });
                vaddr = image::page_align_up(vaddr + mem).unwrap();
            }
            let code = &spec.segments[0];
            let entry = entry_seed % code.bytes.len() as u64;
            spec.entries = Entries {
                kernel: entry,
                bootstrap: entry / 2,
                resume: entry / 3,
                ap_resume: entry / 4,
            };
            let writable: Vec<_> = spec
                .segments
                .iter()
                .filter(|s| s.flags.contains(SegmentFlags::W) && s.bytes.len() >= 8)
                .map(|s| (s.vaddr, s.bytes.len() as u64 / 8))
                .collect();
            spec.relocations = if writable.is_empty() {
                Vec::new()
            } else {
                relocs
                    .iter()
                    .map(|&(pick, addend)| {
                        let (base, slots) = writable[usize::from(pick) % writable.len()];
                        Relocation {
                            offset: base + 8 * (u64::from(pick) % slots),
                            addend,
                        }
                    })
                    .collect()
            };
            spec
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
        let _ = parse(&bytes);
        let _ = parse_header(&bytes);
    }

    #[test]
    fn parse_never_panics_on_a_mutated_package(muts in proptest::collection::vec(mutation(), 1..8)) {
        let mut bytes = sample_spec().build().unwrap();
        for m in &muts {
            apply(&mut bytes, m);
        }
        let _ = parse(&bytes);
        let _ = parse_header(&bytes);
    }

    /// Resealing after the edit gets past the digests to the structural checks.
    #[test]
    fn parse_never_panics_on_a_resealed_mutation(muts in proptest::collection::vec(header_mutation(), 1..6)) {
        let mut bytes = sample_spec().build().unwrap();
        for m in &muts {
            apply(&mut bytes, m);
        }
        let _ = reseal(&mut bytes);
        if let Ok(p) = parse(&bytes) {
            // Whatever still parses is self-consistent.
            prop_assert_eq!(p.total_size(), bytes.len() as u64);
            for s in p.segments() {
                prop_assert_eq!(p.segment_bytes(&s).len() as u64, s.file_size);
            }
            prop_assert_eq!(p.relocations().count(), p.relocation_count());
            let d = p.description();
            prop_assert!(d.len() >= MIN_DESCRIPTION as usize && d.starts_with(&DESCRIPTION_MAGIC));
        }
    }

    #[test]
    fn a_valid_package_round_trips(spec in spec()) {
        let bytes = spec.build().map_err(|e| TestCaseError::fail(std::format!("{e}")))?;
        let p = parse(&bytes).unwrap();
        prop_assert_eq!(*p.identity(), IDENTITY);
        prop_assert_eq!(p.build_id(), spec.build_id);
        prop_assert_eq!(p.geometry().link_base, spec.link_base());
        prop_assert_eq!(p.geometry().image_span, spec.image_span());
        prop_assert_eq!(p.geometry().entries, spec.entries);
        prop_assert_eq!(p.segment_count(), spec.segments.len());
        for (s, want) in p.segments().zip(&spec.segments) {
            prop_assert_eq!(s.vaddr, want.vaddr);
            prop_assert_eq!(s.mem_size, want.mem_size);
            prop_assert_eq!(s.flags, want.flags);
            prop_assert_eq!(p.segment_bytes(&s), &want.bytes[..]);
        }
        prop_assert_eq!(p.relocations().collect::<Vec<_>>(), spec.relocations.clone());
        prop_assert_eq!(p.description(), &spec.description[..]);
        let size = p.header_size() as usize;
        prop_assert!(parse_header(&bytes[..size]).is_ok());
    }
}
