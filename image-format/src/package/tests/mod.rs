//! Round trips, digests, truncation and versions of [`parse`] and [`parse_header`]; the
//! rules of each field are tested in `rules.rs`, the properties in `proptests.rs`.

mod rules;

use std::string::ToString;
use std::vec;
use std::vec::Vec;

use super::*;

use crate::{
    kinds, BuildId, Capabilities, EmbeddedIdentity, ImageVersion, SchemaEntry, VersionRange,
};

pub(crate) const IDENTITY: EmbeddedIdentity = EmbeddedIdentity::new(
    ImageVersion::new(2, 0, 0),
    "v2",
    VersionRange::new(ImageVersion::new(1, 0, 0), ImageVersion::new(1, 9, 0)),
    Capabilities::HANDOFF_V1,
    Capabilities::HANDOFF_V1.union(Capabilities::SMP),
    &[
        SchemaEntry::new(kinds::TASK_TABLE, 2, 1),
        SchemaEntry::new(kinds::HEARTBEAT, 1, 1).optional(),
    ],
);

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The smallest image description: the 40-byte header of `updater::describe`'s format
/// with no records, converters or regions (only its first 16 bytes are this crate's to
/// check).
pub(crate) fn sample_description() -> Vec<u8> {
    let mut d = vec![0u8; 40];
    d[..8].copy_from_slice(b"HKDESC01");
    d[8..12].copy_from_slice(&1u32.to_le_bytes());
    d[12..16].copy_from_slice(&40u32.to_le_bytes());
    d[16..20].copy_from_slice(&1u32.to_le_bytes());
    d
}

/// Four segments like a real kernel's: read-only, code, RELRO data, data + bss.
pub(crate) fn sample_spec() -> PackageSpec {
    let seg = |vaddr, mem_size, flags, bytes| SegmentSpec {
        vaddr,
        mem_size,
        flags,
        bytes,
    };
    PackageSpec {
        identity: IDENTITY,
        build_id: BuildId::new(&[0x41; 20]),
        entries: Entries {
            kernel: 0x1000,
            bootstrap: 0x1100,
            resume: 0x1200,
            ap_resume: 0x1300,
        },
        segments: vec![
            seg(0x0, 0x300, SegmentFlags::R, pattern(0x300, 1)),
            seg(
                0x1000,
                0x800,
                SegmentFlags::R | SegmentFlags::X,
                pattern(0x800, 2),
            ),
            seg(
                0x2000,
                0x1000,
                SegmentFlags::R | SegmentFlags::W | SegmentFlags::RELRO,
                pattern(0x100, 3),
            ),
            seg(
                0x3000,
                0x2000,
                SegmentFlags::R | SegmentFlags::W,
                pattern(0x40, 4),
            ),
        ],
        relocations: vec![
            Relocation {
                offset: 0x2000,
                addend: 0x1000,
            },
            Relocation {
                offset: 0x2008,
                addend: 0x3000,
            },
            Relocation {
                offset: 0x3038,
                addend: 0x1100,
            },
        ],
        description: sample_description(),
        svn: 5,
    }
}

/// Applies `edit` to a valid package, reseals its digests and parses it.
pub(super) fn edited(edit: impl FnOnce(&mut Vec<u8>)) -> FormatError {
    let mut bytes = sample_spec().build().unwrap();
    edit(&mut bytes);
    let _ = reseal(&mut bytes);
    parse(&bytes).unwrap_err()
}

pub(super) fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

pub(super) fn segment_field(index: usize, field: usize) -> usize {
    layout::FIXED_SIZE + index * layout::SEGMENT_ENTRY_SIZE + field
}

#[test]
fn a_built_package_reads_back() {
    let spec = sample_spec();
    let bytes = spec.build().unwrap();
    let p = parse(&bytes).unwrap();
    assert_eq!(&bytes[..8], b"HKPKG\0\r\n");
    assert_eq!(p.total_size(), bytes.len() as u64);
    assert_eq!(p.payload_offset(), 4096);
    assert_eq!(*p.identity(), IDENTITY);
    assert_eq!(p.build_id(), spec.build_id);
    let g = p.geometry();
    assert_eq!((g.link_base, g.image_span), (0, 0x5000));
    assert_eq!(g.entries, spec.entries);
    assert_eq!(p.segment_count(), 4);
    for (s, want) in p.segments().zip(&spec.segments) {
        assert_eq!(
            (s.vaddr, s.mem_size, s.flags),
            (want.vaddr, want.mem_size, want.flags)
        );
        assert_eq!(p.segment_bytes(&s), &want.bytes[..]);
        assert_eq!(s.payload_offset % 4096, 0);
    }
    assert_eq!(p.relocations().collect::<Vec<_>>(), spec.relocations);
    assert_eq!(p.relocations().len(), 3);
    assert_eq!(p.summary().label.as_str(), "v2");
    assert_eq!(p.description(), &spec.description[..]);
    let after_tables = layout::FIXED_SIZE + 4 * layout::SEGMENT_ENTRY_SIZE + 3 * 16;
    assert_eq!(p.description_offset(), after_tables as u64);
    assert_eq!(p.header_size() as usize, after_tables + 40);
    assert_eq!(p.format_version(), 3);
    assert_eq!(p.svn(), 5);
}

#[test]
fn a_description_of_any_length_reads_back() {
    for len in [16u32, 17, 41, 4096, MAX_DESCRIPTION] {
        let mut spec = sample_spec();
        spec.description = (0..len).map(|i| (i * 7) as u8).collect();
        spec.description[..8].copy_from_slice(&DESCRIPTION_MAGIC);
        spec.description[12..16].copy_from_slice(&len.to_le_bytes());
        let bytes = spec.build().unwrap();
        let h = parse_header(&bytes).unwrap();
        assert_eq!(h.description(), &spec.description[..], "length {len}");
    }
}

#[test]
fn the_header_alone_is_enough_for_parse_header() {
    let bytes = sample_spec().build().unwrap();
    let size = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let h = parse_header(&bytes[..size]).unwrap();
    assert_eq!(h.header_size() as usize, size);
    let payload = &bytes[h.payload_offset() as usize..];
    use sha2::Digest as _;
    let digest: [u8; 32] = sha2::Sha256::digest(payload).into();
    assert_eq!(h.check_payload_digest(&digest), Ok(()));
    assert!(matches!(
        h.check_payload_digest(&[0; 32]),
        Err(FormatError::PayloadDigest { .. })
    ));
    assert!(h.check_fits("staging buffer", 16 << 20).is_ok());
    let e = h.check_fits("staging buffer", 4096).unwrap_err();
    assert_eq!(
        e.to_string(),
        std::format!(
            "package is {} bytes, the staging buffer holds 4096",
            bytes.len()
        )
    );
    assert!(matches!(
        parse_header(&bytes[..size - 1]),
        Err(FormatError::Truncated {
            what: "package header",
            ..
        })
    ));
}

#[test]
fn a_prehashed_payload_is_not_hashed_again() {
    use sha2::Digest as _;
    let bytes = sample_spec().build().unwrap();
    let payload_at = parse_header(&bytes).unwrap().payload_offset() as usize;
    let digest: [u8; 32] = sha2::Sha256::digest(&bytes[payload_at..]).into();
    let p = parse_prehashed(&bytes, &digest).unwrap();
    assert_eq!(p.payload(), &bytes[payload_at..]);
    assert!(matches!(
        parse_prehashed(&bytes, &[0; 32]),
        Err(FormatError::PayloadDigest { .. })
    ));
    assert!(matches!(
        parse_prehashed(&bytes[..bytes.len() - 1], &digest),
        Err(FormatError::Truncated { .. })
    ));
}

#[test]
fn a_flipped_payload_byte_is_a_payload_digest_error() {
    let mut bytes = sample_spec().build().unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let e = parse(&bytes).unwrap_err();
    assert!(matches!(e, FormatError::PayloadDigest { .. }), "{e}");
    assert!(e.to_string().starts_with("payload digest mismatch"));
}

#[test]
fn a_flipped_header_byte_is_a_header_digest_error() {
    for at in [
        layout::TOTAL_SIZE,
        layout::PAYLOAD_DIGEST,
        layout::IDENTITY + 30,
        layout::FIXED_SIZE + 9,
        layout::DESCRIPTION,
        layout::DESCRIPTION_LEN,
    ] {
        let mut bytes = sample_spec().build().unwrap();
        bytes[at] ^= 0x40;
        let e = parse(&bytes).unwrap_err();
        assert!(
            matches!(e, FormatError::HeaderDigest { .. }),
            "byte {at:#x}: {e}"
        );
    }
}

#[test]
fn a_flipped_description_byte_is_a_header_digest_error() {
    let good = sample_spec().build().unwrap();
    let at = parse_header(&good).unwrap().description_offset() as usize;
    // The magic, the stated length and a byte only the updater reads.
    for offset in [0, 12, 30] {
        let mut bytes = good.clone();
        bytes[at + offset] ^= 1;
        let e = parse(&bytes).unwrap_err();
        assert!(
            matches!(e, FormatError::HeaderDigest { .. }),
            "description byte {offset}: {e}"
        );
    }
}

#[test]
fn truncation_says_how_much_was_expected() {
    let bytes = sample_spec().build().unwrap();
    let e = parse(&bytes[..bytes.len() - 10]).unwrap_err();
    assert_eq!(
        e,
        FormatError::Truncated {
            what: "package",
            needed: bytes.len() as u64,
            got: bytes.len() as u64 - 10
        }
    );
    assert!(matches!(
        parse(&bytes[..100]),
        Err(FormatError::Truncated { .. })
    ));
    assert!(matches!(
        parse(&bytes[..3]),
        Err(FormatError::Truncated { .. })
    ));
    assert!(matches!(parse(&[]), Err(FormatError::Truncated { .. })));
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        parse(&longer),
        Err(FormatError::SizeMismatch { .. })
    ));
}

#[test]
fn wrong_magic_and_unknown_versions_are_named() {
    let mut bytes = sample_spec().build().unwrap();
    bytes[6] = b'\n'; // CR LF → LF LF, as a text-mode copy would do
    assert!(matches!(parse(&bytes), Err(FormatError::BadMagic { .. })));

    let e = edited(|b| b[layout::FORMAT_VERSION] = 7);
    assert_eq!(
        e.to_string(),
        "package format version 7 is newer than this kernel understands (3)"
    );
    // Version 1 had no image description: refused as unsupported, as any other.
    let e = edited(|b| b[layout::FORMAT_VERSION] = 1);
    assert_eq!(
        e,
        FormatError::UnsupportedVersion {
            what: "package format",
            found: 1,
            supported: 3
        }
    );
    assert_eq!(
        e.to_string(),
        "package format version 1 is not one this kernel understands (3)"
    );
    // Version 2 had no security version and no signature: refused the same way.
    let e = edited(|b| b[layout::FORMAT_VERSION] = 2);
    assert_eq!(
        e.to_string(),
        "package format version 2 is not one this kernel understands (3)"
    );
    let e = edited(|b| b[layout::FORMAT_VERSION] = 0);
    assert!(matches!(
        e,
        FormatError::UnsupportedVersion { found: 0, .. }
    ));
}

#[test]
fn builder_refuses_what_the_parser_refuses() {
    let mut spec = sample_spec();
    spec.segments.clear();
    assert!(spec.build().is_err());
    let mut spec = sample_spec();
    spec.segments[0].mem_size = 0x10; // less than its bytes
    assert!(spec.build().is_err());
}
