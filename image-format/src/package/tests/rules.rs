//! One test per rule of `docs/FORMAT.md`: a valid package edited in one field (and
//! resealed, so the digests pass) is refused with an error naming that field.

use super::{edited, put_u64, sample_spec, segment_field};
use crate::error::{DescriptionProblem, RelocationProblem, SegmentProblem};
use crate::package::*;
use std::string::ToString;
use std::vec;

#[test]
fn overlapping_segments_are_refused() {
    let mut spec = sample_spec();
    spec.segments[2].vaddr = 0x1000;
    let e = parse(&spec.encode()).unwrap_err();
    assert_eq!(
        e,
        FormatError::Segment {
            index: 2,
            problem: SegmentProblem::MemoryOverlap {
                start: 0x1000,
                previous_end: 0x1800
            }
        }
    );
    assert!(spec.build().is_err());
}

#[test]
fn relocations_must_land_in_writable_file_bytes() {
    for (offset, problem) in [
        (0x1008, RelocationProblem::OutsideWritableSegment), // code
        (0x2100, RelocationProblem::OutsideWritableSegment), // RELRO, past its file bytes
        (0x4000, RelocationProblem::OutsideWritableSegment), // .bss
        (0x9000, RelocationProblem::OutsideWritableSegment), // outside the image
        (0x2004, RelocationProblem::Unaligned),
    ] {
        let mut spec = sample_spec();
        spec.relocations.push(Relocation { offset, addend: 0 });
        let e = parse(&spec.encode()).unwrap_err();
        assert_eq!(
            e,
            FormatError::Relocation {
                index: 3,
                offset,
                problem
            },
            "{e}"
        );
    }
}

#[test]
fn entries_must_be_in_code() {
    let mut spec = sample_spec();
    spec.entries.resume = 0x2000;
    let e = parse(&spec.encode()).unwrap_err();
    assert_eq!(
        e,
        FormatError::EntryOutsideCode {
            entry: "resume",
            offset: 0x2000
        }
    );
    spec.entries.resume = u64::MAX;
    assert!(matches!(
        parse(&spec.encode()),
        Err(FormatError::EntryOutsideCode { .. })
    ));
}

#[test]
fn segment_rules() {
    let e = edited(|b| put_u64(b, segment_field(1, 24), 0x10)); // mem < file
    assert!(
        matches!(
            e,
            FormatError::Segment {
                index: 1,
                problem: SegmentProblem::FileLargerThanMemory { .. }
            }
        ),
        "{e}"
    );
    let e = edited(|b| put_u64(b, segment_field(3, 8), 0x3800)); // vaddr unaligned
    assert!(
        matches!(
            e,
            FormatError::Segment {
                index: 3,
                problem: SegmentProblem::VaddrUnaligned { .. }
            }
        ),
        "{e}"
    );
    let e = edited(|b| {
        put_u64(b, segment_field(3, 16), 0x9000); // file past payload
        put_u64(b, segment_field(3, 24), 0x10000);
    });
    assert!(
        matches!(
            e,
            FormatError::Segment {
                index: 3,
                problem: SegmentProblem::PastPayload { .. }
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("runs past the end of the payload"),
        "{e}"
    );
    let e = edited(|b| put_u64(b, segment_field(2, 0), 0x0)); // payload bytes overlap
    assert!(
        matches!(
            e,
            FormatError::Segment {
                index: 2,
                problem: SegmentProblem::PayloadOverlap { .. }
            }
        ),
        "{e}"
    );
    let e = edited(|b| put_u64(b, segment_field(0, 0), 0x10)); // payload offset unaligned
    assert!(
        matches!(
            e,
            FormatError::Segment {
                index: 0,
                problem: SegmentProblem::PayloadOffsetUnaligned { .. }
            }
        ),
        "{e}"
    );
    let e = edited(|b| b[segment_field(0, 32)] = 0x80); // unknown flag
    assert!(
        matches!(
            e,
            FormatError::Segment {
                index: 0,
                problem: SegmentProblem::UnknownFlags { .. }
            }
        ),
        "{e}"
    );
    let e = edited(|b| b[segment_field(0, 36)] = 1); // reserved
    assert!(
        matches!(
            e,
            FormatError::Segment {
                index: 0,
                problem: SegmentProblem::ReservedNotZero
            }
        ),
        "{e}"
    );
    let e = edited(|b| put_u64(b, segment_field(0, 24), 0)); // empty
    assert!(
        matches!(
            e,
            FormatError::Segment {
                index: 0,
                problem: SegmentProblem::Empty
            }
        ),
        "{e}"
    );
    let e = edited(|b| put_u64(b, segment_field(3, 24), u64::MAX)); // overflow
    assert!(
        matches!(
            e,
            FormatError::Segment {
                index: 3,
                problem: SegmentProblem::AddressOverflow { .. }
            }
        ),
        "{e}"
    );
    let e = edited(|b| put_u64(b, layout::LINK_BASE, 0x1000));
    assert!(
        matches!(
            e,
            FormatError::Segment {
                index: 0,
                problem: SegmentProblem::NotAtLinkBase { .. }
            }
        ),
        "{e}"
    );
}

#[test]
fn geometry_and_table_rules() {
    let e = edited(|b| put_u64(b, layout::IMAGE_SPAN, 0x6000));
    assert_eq!(
        e,
        FormatError::ImageSpan {
            declared: 0x6000,
            computed: 0x5000
        }
    );
    let e = edited(|b| put_u64(b, layout::IMAGE_SPAN, 0x5001));
    assert!(
        matches!(
            e,
            FormatError::InvalidField {
                field: "image span",
                ..
            }
        ),
        "{e}"
    );
    let e = edited(|b| put_u64(b, layout::LINK_BASE, 0x10));
    assert!(
        matches!(
            e,
            FormatError::InvalidField {
                field: "link base",
                ..
            }
        ),
        "{e}"
    );
    let e = edited(|b| b[layout::SEGMENT_COUNT] = 65);
    assert_eq!(
        e,
        FormatError::TooManyEntries {
            table: "segment table",
            count: 65,
            max: 64
        }
    );
    let e = edited(|b| b[layout::SEGMENT_COUNT] = 0);
    assert!(
        matches!(
            e,
            FormatError::InvalidField {
                field: "segment count",
                ..
            }
        ),
        "{e}"
    );
    let e = edited(|b| b[layout::RELOCATION_COUNT] = 200);
    assert!(
        matches!(
            e,
            FormatError::TableOutOfPlace {
                table: "relocation table",
                ..
            }
        ),
        "{e}"
    );
    let e = edited(|b| put_u64(b, layout::RELOCATION_TABLE, layout::FIXED_SIZE as u64));
    assert!(
        matches!(
            e,
            FormatError::TableOutOfPlace {
                reason: "overlaps the segment table",
                ..
            }
        ),
        "{e}"
    );
    let e = edited(|b| put_u64(b, layout::SEGMENT_TABLE, 0x100));
    assert!(matches!(e, FormatError::TableOutOfPlace { .. }), "{e}");
    let e = edited(|b| put_u64(b, layout::SEGMENT_TABLE, 0x1ac));
    assert!(
        matches!(
            e,
            FormatError::TableOutOfPlace {
                reason: "is not 8-byte aligned",
                ..
            }
        ),
        "{e}"
    );
    let e = edited(|b| b[layout::FLAGS] = 1);
    assert!(
        matches!(
            e,
            FormatError::InvalidField {
                field: "header flags",
                ..
            }
        ),
        "{e}"
    );
    let e = edited(|b| b[layout::RESERVED + 2] = 1);
    assert!(
        matches!(
            e,
            FormatError::InvalidField {
                field: "header reserved bytes",
                ..
            }
        ),
        "{e}"
    );
    let e = edited(|b| b[layout::HEADER_SIZE + 3] = 1);
    assert!(
        matches!(
            e,
            FormatError::InvalidField {
                field: "header size",
                ..
            }
        ),
        "{e}"
    );
    let e = edited(|b| b[layout::BUILD_ID_LEN] = 40);
    assert!(
        matches!(
            e,
            FormatError::InvalidField {
                field: "build id length",
                ..
            }
        ),
        "{e}"
    );
    let e = edited(|b| b[layout::IDENTITY] = b'X');
    assert!(
        matches!(
            e,
            FormatError::BadMagic {
                what: "image identity",
                ..
            }
        ),
        "{e}"
    );
    let e = edited(|b| put_u64(b, layout::TOTAL_SIZE, 100));
    assert!(
        matches!(
            e,
            FormatError::InvalidField {
                field: "total size",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn padding_and_payload_size_rules() {
    let e = edited(|b| b[0x800] = 1);
    assert!(
        matches!(e, FormatError::InvalidField { value: 0x800, .. }),
        "{e}"
    );
    let e = edited(|b| {
        b.extend_from_slice(&[0; 16]);
        let total = b.len() as u64;
        put_u64(b, layout::TOTAL_SIZE, total);
    });
    assert!(
        matches!(
            e,
            FormatError::InvalidField {
                field: "payload size",
                ..
            }
        ),
        "{e}"
    );
}

/// Offset of the description in the sample package (after both tables).
fn description_at() -> u64 {
    parse(&sample_spec().build().unwrap())
        .unwrap()
        .description_offset()
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn the_description_lies_apart_from_the_tables() {
    let out_of_place = |e: &FormatError| match e {
        FormatError::TableOutOfPlace {
            table: "image description",
            reason,
            ..
        } => *reason,
        other => panic!("not a misplaced description: {other}"),
    };
    let e = edited(|b| put_u64(b, layout::DESCRIPTION, description_at() + 4));
    assert_eq!(out_of_place(&e), "is not 8-byte aligned");
    let e = edited(|b| put_u64(b, layout::DESCRIPTION, 0x1a8));
    assert_eq!(
        out_of_place(&e),
        "overlaps the fixed header (which ends at 0x1b8)"
    );
    assert!(e.to_string().contains("0x1b8"), "{e}");
    let e = edited(|b| put_u64(b, layout::DESCRIPTION, description_at() + 8));
    assert_eq!(out_of_place(&e), "runs past the end of the header");
    let e = edited(|b| put_u64(b, layout::DESCRIPTION, u64::MAX - 7));
    assert_eq!(out_of_place(&e), "runs past the end of the header");
    let e = edited(|b| put_u64(b, layout::DESCRIPTION, layout::FIXED_SIZE as u64));
    assert_eq!(out_of_place(&e), "overlaps the segment table");
    let e = edited(|b| put_u64(b, layout::DESCRIPTION, description_at() - 16));
    assert_eq!(out_of_place(&e), "overlaps the relocation table");
    // A relocation table that grows into the description is refused as overlapping it.
    let e = edited(|b| b[layout::RELOCATION_COUNT] = 4);
    assert_eq!(out_of_place(&e), "overlaps the relocation table");
}

#[test]
fn the_description_length_is_bounded() {
    for len in [0, 15, MAX_DESCRIPTION + 1, u32::MAX] {
        let e = edited(|b| put_u32(b, layout::DESCRIPTION_LEN, len));
        assert_eq!(
            e,
            FormatError::InvalidField {
                field: "description length",
                value: u64::from(len),
                reason: "must be between 16 bytes (magic, version, length) and 1 MiB",
            }
        );
    }
    let mut spec = sample_spec();
    spec.description = vec![0; MAX_DESCRIPTION as usize + 1];
    spec.description[..8].copy_from_slice(&DESCRIPTION_MAGIC);
    assert!(matches!(
        spec.build(),
        Err(FormatError::InvalidField {
            field: "description length",
            ..
        })
    ));
    // Version 3 keeps the image's security version where version 2 had reserved bytes.
    let mut bytes = sample_spec().build().unwrap();
    bytes[layout::SVN + 1] = 1;
    reseal(&mut bytes).unwrap();
    assert_eq!(parse(&bytes).unwrap().svn(), 256 + sample_spec().svn);
}

#[test]
fn a_wrong_section_is_refused_by_its_magic() {
    let at = description_at() as usize;
    let e = edited(|b| b[at..at + 8].copy_from_slice(b"HKIDENT1"));
    assert_eq!(
        e,
        FormatError::Description {
            problem: DescriptionProblem::Magic {
                found: *b"HKIDENT1"
            }
        }
    );
    assert!(e.to_string().contains(".hk_schema"), "{e}");
    let e = edited(|b| put_u32(b, at + 12, 41));
    assert_eq!(
        e,
        FormatError::Description {
            problem: DescriptionProblem::StatedLength {
                stated: 41,
                header: 40
            }
        }
    );
    assert_eq!(
        e.to_string(),
        "image description: it states 41 bytes, the header gives it 40"
    );
    // A malformed description is malformed, not "not a hotkernel package".
    assert_eq!(
        crate::mailbox::Status::from_error(&e),
        crate::mailbox::Status::Malformed
    );
}
