//! Conversion by field: every rule, with random values.

use std::string::ToString;
use std::vec::Vec;

use proptest::prelude::*;

use super::*;
use crate::record::{Layout, Record};
use crate::records::TaskKind;
use crate::table;

const KIND: crate::records::RecordKind = TaskKind::COUNTER.state_record();

fn table_of(layout: &Layout) -> Vec<u8> {
    let mut v = std::vec![0u8; table::encoded_len(layout)];
    table::encode(layout, &mut v, 0);
    v
}

/// Converts `value` (of `A`) into a `B` by field; `Err` is the refusal's text.
fn convert<A: Record, B: Record>(
    value: &A,
) -> Result<(B, Vec<std::string::String>, Vec<std::string::String>), std::string::String> {
    let (ta, tb) = (table_of(A::LAYOUT), table_of(B::LAYOUT));
    let (va, vb) = (
        TableView::parse_exact(&ta).unwrap(),
        TableView::parse_exact(&tb).unwrap(),
    );
    let p = plan(va, vb).map_err(|r| r.to_string())?;
    let mut input = std::vec![0u8; A::SIZE];
    value.encode(&mut input);
    let mut output = std::vec![0xa5u8; B::SIZE];
    apply(&p, &input, &mut output);
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect();
    Ok((
        B::decode(&output).unwrap(),
        names(p.added()),
        names(p.dropped()),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Default, crate::Record)]
#[record(padded)]
#[repr(C)]
struct Pos {
    x: i16,
    y: u8,
}

#[derive(Debug, Clone, PartialEq, crate::Record)]
#[record(kind = KIND, version = 1)]
#[record(padded)]
#[repr(C)]
struct Old {
    count: u32,
    delta: i16,
    flag: bool,
    tag: [u8; 4],
    pos: Pos,
    gone: u64,
    list: [u16; 3],
}

/// Fields added (with defaults), one dropped, reordered, widened, a nested record's
/// field widened, a renamed field through its alias.
#[derive(Debug, Clone, PartialEq, crate::Record)]
#[record(kind = KIND, version = 2)]
#[record(padded)]
#[repr(C)]
struct New {
    #[record(default = 7)]
    stride: u32,
    list: [u32; 3],
    pos: PosWide,
    #[record(alias = "tag")]
    label: [u8; 4],
    flag: bool,
    delta: i64,
    count: u64,
    #[record(default = -2i64)]
    bias: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, crate::Record)]
#[record(padded)]
#[repr(C)]
struct PosWide {
    y: u16,
    x: i32,
    #[record(default = 1)]
    z: u8,
}

fn any_old() -> impl Strategy<Value = Old> {
    (
        any::<u32>(),
        any::<i16>(),
        any::<bool>(),
        any::<[u8; 4]>(),
        (any::<i16>(), any::<u8>()),
        any::<u64>(),
        any::<[u16; 3]>(),
    )
        .prop_map(|(count, delta, flag, tag, (x, y), gone, list)| Old {
            count,
            delta,
            flag,
            tag,
            pos: Pos { x, y },
            gone,
            list,
        })
}

proptest! {
    #[test]
    fn every_surviving_field_keeps_its_value(old in any_old()) {
        let (new, added, dropped) = convert::<Old, New>(&old).unwrap();
        prop_assert_eq!(new.count, u64::from(old.count));
        prop_assert_eq!(new.delta, i64::from(old.delta));
        prop_assert_eq!(new.flag, old.flag);
        prop_assert_eq!(new.label, old.tag);
        prop_assert_eq!(new.pos.x, i32::from(old.pos.x));
        prop_assert_eq!(new.pos.y, u16::from(old.pos.y));
        prop_assert_eq!(new.pos.z, 1, "a nested added field gets its default");
        prop_assert_eq!(new.list, old.list.map(u32::from));
        prop_assert_eq!(new.stride, 7);
        prop_assert_eq!(new.bias, -2);
        prop_assert_eq!(added, ["stride", "bias"]);
        prop_assert_eq!(dropped, ["gone"]);
    }

    #[test]
    fn the_same_layout_is_one_copy(old in any_old()) {
        let t = table_of(Old::LAYOUT);
        let v = TableView::parse_exact(&t).unwrap();
        let p = plan(v, v).unwrap();
        prop_assert!(p.is_identity());
        let (same, _, _) = convert::<Old, Old>(&old).unwrap();
        prop_assert_eq!(same, old);
    }
}

macro_rules! record {
    ($name:ident, $v:literal, $($field:ident: $ty:ty),*) => {
        #[derive(Debug, Clone, PartialEq, crate::Record)]
        #[record(kind = KIND, version = $v, padded)]
        #[repr(C)]
        struct $name { $($field: $ty),* }
    };
}

record!(Wide, 1, count: u64, flag: bool, list: [u8; 4], n: i32);
record!(Narrow, 2, count: u32, flag: bool, list: [u8; 4], n: i32);
record!(Unsigned, 2, count: u64, flag: bool, list: [u8; 4], n: u32);
record!(BoolToInt, 2, count: u64, flag: u8, list: [u8; 4], n: i32);
record!(Longer, 2, count: u64, flag: bool, list: [u8; 8], n: i32);
record!(Renamed, 2, total: u64, flag: bool, list: [u8; 4], n: i32);

fn wide() -> Wide {
    Wide {
        count: 5,
        flag: true,
        list: [1, 2, 3, 4],
        n: -1,
    }
}

#[test]
fn what_is_not_mechanical_is_refused_naming_the_field_and_the_rule() {
    assert_eq!(
        convert::<Wide, Narrow>(&wide()).unwrap_err(),
        "field `count` narrowed from u64 to u32: that is not mechanical, it needs a converter"
    );
    assert_eq!(
        convert::<Wide, Unsigned>(&wide()).unwrap_err(),
        "field `n` changed from signed i32 to unsigned u32: that is not mechanical, it needs a converter"
    );
    assert_eq!(
        convert::<Wide, BoolToInt>(&wide()).unwrap_err(),
        "field `flag` changed type from bool to u8: that is not mechanical, it needs a converter"
    );
    assert_eq!(
        convert::<Wide, Longer>(&wide()).unwrap_err(),
        "field `list` changed length from 4 to 8 ([u8; 4] → [u8; 8]): that is not mechanical, it needs a converter"
    );
}

#[test]
fn a_rename_without_an_alias_is_a_drop_and_an_addition() {
    let (r, added, dropped) = convert::<Wide, Renamed>(&wide()).unwrap();
    assert_eq!(r.total, 0, "no value is guessed for a renamed field");
    assert_eq!(
        (added, dropped),
        (
            std::vec!["total".to_string()],
            std::vec!["count".to_string()]
        )
    );
}
