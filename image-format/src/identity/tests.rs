use super::*;
use crate::kinds;
use std::string::ToString;

static SAMPLE: EmbeddedIdentity = EmbeddedIdentity::new(
    ImageVersion::new(2, 1, 0),
    "v2",
    VersionRange::new(ImageVersion::new(1, 0, 0), ImageVersion::new(2, 0, 9)),
    Capabilities::HANDOFF_V1.union(Capabilities::PARK_STUB_V1),
    Capabilities::HANDOFF_V1
        .union(Capabilities::PARK_STUB_V1)
        .union(Capabilities::SMP),
    &[
        SchemaEntry::new(kinds::TASK_TABLE, 2, 1),
        SchemaEntry::new(kinds::COUNTER, 2, 1),
        SchemaEntry::new(kinds::HEARTBEAT, 1, 1).optional(),
    ],
);

#[test]
fn a_static_identity_reads_back() {
    assert_eq!(SAMPLE.version(), ImageVersion::new(2, 1, 0));
    assert_eq!(SAMPLE.label().as_str(), "v2");
    assert_eq!(SAMPLE.schemas().len(), 3);
    let hb = SAMPLE.schema(kinds::HEARTBEAT).unwrap();
    assert!(hb.is_optional());
    assert_eq!(hb.current(), SchemaVersion::new(1));
    assert!(SAMPLE.schema(kinds::TABLE).is_none());
    assert!(SAMPLE
        .schema(kinds::COUNTER)
        .unwrap()
        .reads(SchemaVersion::new(1)));
    assert!(!SAMPLE
        .schema(kinds::COUNTER)
        .unwrap()
        .reads(SchemaVersion::new(3)));
}

#[test]
fn round_trips_through_bytes() {
    let bytes = SAMPLE.to_bytes();
    assert_eq!(&bytes[..8], b"HKIDENT1");
    assert_eq!(EmbeddedIdentity::parse(&bytes), Ok(SAMPLE));
}

/// The packer reads the static's memory as the encoding: check that they agree.
#[test]
#[allow(unsafe_code)]
fn memory_layout_is_the_encoding() {
    let ptr = core::ptr::from_ref(&SAMPLE).cast::<u8>();
    // `EmbeddedIdentity`'s `repr(C)` layout has no padding (checked at compile time).
    // SAFETY: `SAMPLE` is a live static of `SIZE` bytes, every one initialised.
    let memory = unsafe { core::slice::from_raw_parts(ptr, EmbeddedIdentity::SIZE) };
    assert_eq!(memory, &SAMPLE.to_bytes()[..]);
}

fn refused(mutate: impl FnOnce(&mut [u8; EmbeddedIdentity::SIZE])) -> FormatError {
    let mut b = SAMPLE.to_bytes();
    mutate(&mut b);
    EmbeddedIdentity::parse(&b).unwrap_err()
}

#[test]
fn refusals_name_the_field() {
    assert!(matches!(
        refused(|b| b[0] = b'X'),
        FormatError::BadMagic { .. }
    ));
    assert!(matches!(
        refused(|b| b[offsets::LAYOUT_VERSION] = 2),
        FormatError::UnsupportedVersion { found: 2, .. }
    ));
    assert!(matches!(
        refused(|b| b[offsets::SCHEMA_COUNT] = 17),
        FormatError::TooManyEntries { count: 17, .. }
    ));
    assert!(matches!(
        refused(|b| b[offsets::LABEL + 1] = 0xff),
        FormatError::Label { at: 1, .. }
    ));
    assert!(matches!(
        refused(|b| b[offsets::LABEL + 10] = b'x'),
        FormatError::Label { at: 10, .. }
    ));
    // min above max in the replaces range
    assert!(matches!(
        refused(|b| b[offsets::REPLACES] = 9),
        FormatError::InvalidField {
            field: "replaces range",
            ..
        }
    ));
    // second entry gets the first entry's kind
    let e = refused(|b| {
        b[offsets::SCHEMAS + 8..offsets::SCHEMAS + 10]
            .copy_from_slice(&kinds::TASK_TABLE.get().to_le_bytes())
    });
    assert!(matches!(e, FormatError::Schema { index: 1, .. }), "{e}");
    // min_from above current
    let e = refused(|b| b[offsets::SCHEMAS + 4] = 5);
    assert!(matches!(e, FormatError::Schema { index: 0, .. }), "{e}");
    // an unused entry that is not zero
    let e = refused(|b| b[offsets::SCHEMAS + 8 * 10] = 1);
    assert!(matches!(e, FormatError::Schema { index: 10, .. }), "{e}");
    assert!(matches!(
        EmbeddedIdentity::parse(&SAMPLE.to_bytes()[..100]),
        Err(FormatError::Truncated {
            needed: 224,
            got: 100,
            ..
        })
    ));
}

#[test]
fn labels_are_checked() {
    assert!(Label::try_new(&"x".repeat(48)).is_ok());
    assert!(Label::try_new(&"x".repeat(49)).is_err());
    assert!(Label::try_new("a\0b").is_err());
    assert_eq!(Label::new("fix-lcg").to_string(), "fix-lcg");
    let full = Label::new(&"é".repeat(24));
    assert_eq!(Label::from_bytes(*full.as_bytes()), Ok(full));
}

#[test]
fn summary_round_trips() {
    let s = SAMPLE.summary(BuildId::new(&[0xab; 20]));
    let mut buf = [0u8; ImageSummary::SIZE];
    let mut w = Writer::new(&mut buf);
    s.write(&mut w);
    assert_eq!(w.finish("summary"), Ok(ImageSummary::SIZE));
    let mut r = Reader::new(&buf, "summary");
    assert_eq!(ImageSummary::read(&mut r), Ok(s));
    assert_eq!(s.to_string(), "2.1.0 \"v2\" (build abababababab)");
}
