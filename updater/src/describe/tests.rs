//! Descriptions: built at compile time, read back, damage refused.

use super::*;
use crate::convert::{ConvertError, Upgrade};
use crate::records::TaskKind;

pub(crate) const KIND: RecordKind = TaskKind::COUNTER.state_record();

#[derive(Debug, Clone, PartialEq, crate::Record)]
#[record(kind = KIND, version = 1)]
#[repr(C)]
pub(crate) struct CounterV1 {
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, crate::Record)]
#[record(kind = KIND, version = 2)]
#[record(padded)]
#[repr(C)]
pub(crate) struct CounterV2 {
    pub count: u64,
    #[record(default = 1)]
    pub stride: u32,
}

pub(crate) struct Counter1To2;
impl Upgrade for Counter1To2 {
    type From = CounterV1;
    type To = CounterV2;
    fn upgrade(old: &CounterV1) -> Result<CounterV2, ConvertError> {
        Ok(CounterV2 {
            count: old.count.into(),
            stride: 2,
        })
    }
}

pub(crate) const STEPS: &[Step] = &[Step::of::<Counter1To2>()];
pub(crate) const RECORDS: &[RecordDecl] = &[
    RecordDecl::of::<crate::records::task_table::V1>(false),
    RecordDecl::of::<CounterV2>(true),
];
pub(crate) const REGIONS: &[RegionDecl] = &[
    RegionDecl {
        name: "heap",
        start: 0x1000,
        len: 0x4000,
        rule: RegionRule::Resizable,
    },
    RegionDecl {
        name: "hand-off",
        start: 0x10000,
        len: 0x1000,
        rule: RegionRule::Fixed,
    },
];
pub(crate) const DECL: Declaration<'static> = Declaration {
    abi_version: 7,
    descriptor: <crate::records::machine::V1 as crate::record::Record>::LAYOUT,
    records: RECORDS,
    steps: &[STEPS],
    regions: REGIONS,
};
pub(crate) static BYTES: [u8; len(&DECL)] = build(&DECL);

#[test]
fn a_description_reads_back_as_declared() {
    let d = Description::parse(&BYTES).unwrap();
    assert_eq!(d.abi_version(), 7);
    assert_eq!(
        d.descriptor_fingerprint(),
        table::fingerprint(<crate::records::machine::V1 as crate::record::Record>::LAYOUT)
    );
    let counter = d.record(KIND).unwrap();
    assert_eq!((counter.version.get(), counter.min_from.get()), (2, 1));
    assert!(counter.optional);
    assert_eq!(counter.table.field("stride").unwrap().default, 1);
    let step = d.step(KIND, SchemaVersion::new(1)).unwrap();
    assert_eq!(step.to.get(), 2);
    assert_eq!(step.from_table.size(), 4);
    assert_eq!(d.regions().count(), 2);
    assert_eq!(d.region("heap").unwrap().rule, RegionRule::Resizable);
    assert_eq!(d.region("hand-off").unwrap().len, 0x1000);
}

#[test]
fn damaged_descriptions_are_refused_never_panic() {
    assert_eq!(
        Description::parse(&BYTES[..10]).unwrap_err(),
        DescribeError::Magic
    );
    for i in 0..BYTES.len() {
        for v in [0u8, 1, 0x55, 0xff] {
            let mut b = BYTES;
            b[i] = v;
            if let Ok(d) = Description::parse(&b) {
                let _ = (d.records().count(), d.steps().count(), d.regions().count());
            }
        }
    }
    let mut b = BYTES;
    b[12] ^= 1;
    assert_eq!(
        Description::parse(&b).unwrap_err(),
        DescribeError::Bounds("total length")
    );
}

#[test]
fn an_images_own_description_is_read_with_its_bounds_checked() {
    let d = Description::parse_own(&BYTES).unwrap();
    let full = Description::parse(&BYTES).unwrap();
    assert_eq!(d.records().count(), full.records().count());
    assert_eq!(
        d.record(KIND).unwrap().table.fingerprint(),
        full.record(KIND).unwrap().table.fingerprint()
    );
    // A table offset out of bounds is refused, not followed.
    let mut b = BYTES;
    let at = 40 + 16; // the first record's table offset
    b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        Description::parse_own(&b).unwrap_err(),
        DescribeError::Bounds("field table")
    );
}
