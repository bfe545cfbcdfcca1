//! The plan of a swap from two descriptions: every method and every refusal.

use std::string::ToString;

use super::*;
use crate::convert::{ConvertError, Step, Upgrade};
use crate::describe::{self, Declaration, RegionDecl};
use crate::reconcile::RecordDecl;
use crate::record::Record;
use crate::records::{machine, TaskKind};

const KIND: RecordKind = TaskKind::COUNTER.state_record();

macro_rules! record {
    ($name:ident $v:literal { $($(#[$a:meta])* $field:ident: $ty:ty),* }) => {
        #[derive(Debug, Clone, PartialEq, crate::Record)]
        #[record(kind = KIND, version = $v, padded)]
        #[repr(C)]
        struct $name { $($(#[$a])* $field: $ty),* }
    };
}

record!(V1 1 { count: u32, flags: u32 });
// v1 again, but another layout (the mistake the guard catches).
record!(V1Changed 1 { flags: u32, count: u32 });
record!(V2Fields 2 { count: u64, flags: u32, #[record(default = 1)] stride: u32 });
record!(V2Narrow 2 { count: u16, flags: u32 });
record!(V2 2 { count: u32, flags: u32, seen: u32 });
record!(V3 3 { count: u64, flags: u32, seen: u32 });

struct Two;
impl Upgrade for Two {
    type From = V2;
    type To = V3;
    fn upgrade(old: &V2) -> Result<V3, ConvertError> {
        Ok(V3 {
            count: old.count.into(),
            flags: old.flags,
            seen: old.seen,
        })
    }
}

struct One;
impl Upgrade for One {
    type From = V1;
    type To = V2;
    fn upgrade(old: &V1) -> Result<V2, ConvertError> {
        Ok(V2 {
            count: old.count,
            flags: old.flags,
            seen: 9,
        })
    }
}

const fn heap(len: u64) -> RegionDecl {
    RegionDecl {
        name: "heap",
        start: 0x10_0000,
        len,
        rule: describe::RegionRule::Resizable,
    }
}

const HANDOFF: RegionDecl = RegionDecl {
    name: "hand-off",
    start: 0x40_0000,
    len: 0x40_0000,
    rule: describe::RegionRule::Fixed,
};

macro_rules! description {
    ($name:ident, records: [$($r:ty),*], steps: [$($s:ty),*], regions: $regions:expr) => {
        mod $name {
            use super::*;
            const RECORDS: &[RecordDecl] = &[$(RecordDecl::of::<$r>(false)),*];
            const STEPS: &[Step] = &[$(Step::of::<$s>()),*];
            const REGIONS: &[RegionDecl] = &$regions;
            const DECL: Declaration<'static> = Declaration {
                abi_version: 1,
                descriptor: <machine::V1 as Record>::LAYOUT,
                records: RECORDS,
                steps: &[STEPS],
                regions: REGIONS,
            };
            pub static BYTES: [u8; describe::len(&DECL)] = describe::build(&DECL);
        }
    };
}

description!(running_v1, records: [V1], steps: [], regions: [heap(0x1000), HANDOFF]);
description!(same_v1, records: [V1], steps: [], regions: [heap(0x1000), HANDOFF]);
description!(unbumped, records: [V1Changed], steps: [], regions: [heap(0x1000), HANDOFF]);
description!(by_fields, records: [V2Fields], steps: [], regions: [heap(0x2000), HANDOFF]);
description!(narrow, records: [V2Narrow], steps: [], regions: [heap(0x1000), HANDOFF]);
description!(converter, records: [V2], steps: [One], regions: [heap(0x1000), HANDOFF]);
description!(mixed, records: [V3], steps: [Two], regions: [heap(0x1000), HANDOFF]);
description!(moved, records: [V1], steps: [], regions: [heap(0x1000), RegionDecl { start: 0x80_0000, ..HANDOFF }]);
description!(no_handoff, records: [V1], steps: [], regions: [heap(0x1000)]);

fn parse(bytes: &'static [u8]) -> Description<'static> {
    Description::parse(bytes).unwrap()
}

/// The plan of `new` for the record `running` exports.
fn plan_for(
    running: &'static [u8],
    new: &'static [u8],
) -> Result<Option<RecordPlan<'static>>, PlanRefusal<'static>> {
    let (r, n) = (parse(running), parse(new));
    let exported = r.record(KIND).unwrap();
    record_plan(&n, KIND, exported.version, exported.table)
}

#[test]
fn the_same_layout_is_unchanged() {
    let p = plan_for(&running_v1::BYTES, &same_v1::BYTES)
        .unwrap()
        .unwrap();
    assert_eq!(p.method(), Method::Unchanged);
    assert_eq!(p.stages().count(), 0);
}

#[test]
fn a_mechanical_change_is_converted_by_fields() {
    let p = plan_for(&running_v1::BYTES, &by_fields::BYTES)
        .unwrap()
        .unwrap();
    assert_eq!(p.method(), Method::ByFields);
    let Some(Stage::Fields { plan: f, .. }) = p.stages().next() else {
        panic!("a field stage");
    };
    assert_eq!(f.added(), ["stride"]);
    assert!(f.dropped().is_empty());
    assert_eq!(p.method().to_string(), "converted by fields");
}

#[test]
fn converters_run_where_present_and_fields_fill_the_gaps() {
    let p = plan_for(&running_v1::BYTES, &converter::BYTES)
        .unwrap()
        .unwrap();
    assert_eq!(p.method(), Method::Converters);
    // v1 → (fields) → v2 table of the 2→3 converter → converter → v3.
    let p = plan_for(&running_v1::BYTES, &mixed::BYTES)
        .unwrap()
        .unwrap();
    assert_eq!(p.method(), Method::Mixed);
    let stages: std::vec::Vec<&str> = p
        .stages()
        .map(|s| match s {
            Stage::Fields { .. } => "fields",
            Stage::Converter(_) => "converter",
        })
        .collect();
    assert_eq!(stages, ["fields", "converter"]);
}

#[test]
fn a_layout_changed_under_the_same_version_is_refused_naming_the_fields() {
    let e = plan_for(&running_v1::BYTES, &unbumped::BYTES).unwrap_err();
    assert!(matches!(e, PlanRefusal::Unbumped { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "counter-state v1 has another layout in the new image than in the running kernel (`count` changed, `flags` changed) but the same version: bump the schema version of counter-state"
    );
}

#[test]
fn a_narrowing_without_a_converter_is_refused_naming_the_field() {
    let e = plan_for(&running_v1::BYTES, &narrow::BYTES).unwrap_err();
    assert_eq!(
        e.to_string(),
        "counter-state v1→v2: field `count` narrowed from u32 to u16: that is not mechanical, it needs a converter"
    );
}

#[test]
fn a_record_newer_than_the_image_reads_is_a_downgrade() {
    let (r, n) = (parse(&mixed::BYTES), parse(&running_v1::BYTES));
    let exported = r.record(KIND).unwrap();
    let e = record_plan(&n, KIND, exported.version, exported.table).unwrap_err();
    assert!(matches!(e, PlanRefusal::Downgrade { .. }), "{e}");
    assert!(record_plan(
        &n,
        TaskKind::TICKER.state_record(),
        exported.version,
        exported.table
    )
    .unwrap()
    .is_none());
}

#[test]
fn regions_may_only_resize_where_they_say_so() {
    let resizes = regions(&parse(&running_v1::BYTES), &parse(&by_fields::BYTES)).unwrap();
    let r: std::vec::Vec<_> = resizes.iter().collect();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].name, r[0].running, r[0].new),
        ("heap", 0x1000, 0x2000)
    );
    let e = regions(&parse(&running_v1::BYTES), &parse(&moved::BYTES)).unwrap_err();
    assert!(e.to_string().starts_with("the region `hand-off` is 0x400000+0x400000 in the running kernel and 0x800000+0x400000"), "{e}");
    let e = regions(&parse(&running_v1::BYTES), &parse(&no_handoff::BYTES)).unwrap_err();
    assert_eq!(e, PlanRefusal::RegionMissing { name: "hand-off" });
    let e = regions(&parse(&no_handoff::BYTES), &parse(&running_v1::BYTES)).unwrap_err();
    assert_eq!(e, PlanRefusal::RegionNew { name: "hand-off" });
}

mod other_descriptor {
    use super::*;
    const DECL: Declaration<'static> = Declaration {
        abi_version: 1,
        descriptor: <crate::records::history::V2 as Record>::LAYOUT,
        records: &[],
        steps: &[],
        regions: &[],
    };
    pub static BYTES: [u8; describe::len(&DECL)] = describe::build(&DECL);
}

#[test]
fn the_descriptor_layout_is_guarded_by_the_abi_version() {
    let (a, b) = (parse(&running_v1::BYTES), parse(&other_descriptor::BYTES));
    assert_eq!(descriptor(&a, &a), Ok(()));
    let e = descriptor(&a, &b).unwrap_err();
    assert_eq!(e, PlanRefusal::DescriptorUnbumped { abi: 1 });
    assert!(e.to_string().contains("bump it"), "{e}");
}

description!(other_kind, records: [crate::records::task_table::V1], steps: [], regions: [heap(0x1000), HANDOFF]);

#[test]
fn a_whole_swap_is_planned_record_by_record() {
    let mut seen = std::vec::Vec::new();
    let resizes = swap(&parse(&running_v1::BYTES), &parse(&by_fields::BYTES), |c| {
        seen.push(match c {
            Carried::Read(p) => (p.kind, p.method().to_string()),
            Carried::Dropped { kind, .. } => (kind, "dropped".to_string()),
            Carried::New { kind, .. } => (kind, "new".to_string()),
        })
    })
    .unwrap();
    assert_eq!(seen, [(KIND, "converted by fields".to_string())]);
    let r: std::vec::Vec<_> = resizes.iter().collect();
    assert_eq!(
        (r[0].name, r[0].running, r[0].new),
        ("heap", 0x1000, 0x2000)
    );

    // The new image does not read the (required) counter record, and has a new one.
    let e = swap(
        &parse(&running_v1::BYTES),
        &parse(&other_kind::BYTES),
        |_| {},
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the running kernel exports counter-state v1, which the new image does not read and which is not optional: keep the record kind in the new image"
    );
    let mut new = std::vec::Vec::new();
    swap(
        &parse(&other_kind::BYTES),
        &parse(&other_kind::BYTES),
        |c| {
            if let Carried::New { kind, .. } = c {
                new.push(kind);
            }
        },
    )
    .unwrap();
    assert!(new.is_empty());
    // The guard, the regions and the descriptor come first.
    assert!(matches!(
        swap(&parse(&running_v1::BYTES), &parse(&unbumped::BYTES), |_| {}),
        Err(PlanRefusal::Unbumped { .. })
    ));
    assert!(matches!(
        swap(&parse(&running_v1::BYTES), &parse(&moved::BYTES), |_| {}),
        Err(PlanRefusal::RegionMoved { .. })
    ));
}
