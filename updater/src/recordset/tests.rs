//! Record sets: written, read back in place, referred to from another set, damage found.

use super::*;
use crate::record::Layout;
use crate::records::{kinds, task_table, TaskKind};
use crate::table;
use proptest::prelude::*;
use std::vec;
use std::vec::Vec;

/// A task-state record for the tests.
#[derive(Debug, Clone, PartialEq, crate::Record)]
#[record(kind = TaskKind::COUNTER.state_record(), version = 1)]
#[repr(C)]
struct Count {
    count: u64,
}

/// The canonical table of `layout`, as bytes.
fn table_of(layout: &Layout) -> Vec<u8> {
    let mut bytes = vec![0u8; table::encoded_len(layout)];
    table::encode(layout, &mut bytes, 0);
    bytes
}

/// An 8-aligned area of `len` bytes (records are adopted in place, so sets are aligned).
fn area(len: usize) -> Vec<u64> {
    vec![0u64; len.div_ceil(8)]
}

fn bytes(area: &mut [u64]) -> &mut [u8] {
    crate::record::bytes_of_mut(area)
}

fn entries() -> [task_table::V1; 2] {
    [
        task_table::V1 {
            id: 1,
            kind: TaskKind::COUNTER,
            affinity: 0xffff,
            period_us: 1000,
            flags: 0,
            steps: 7,
        },
        task_table::V1 {
            id: 2,
            kind: TaskKind::COUNTER,
            affinity: 1,
            period_us: 1000,
            flags: 0,
            steps: 9,
        },
    ]
}

fn sample(buf: &mut [u8]) -> usize {
    let (tt, ct) = (
        table_of(task_table::V1::LAYOUT),
        table_of(<Count as crate::record::Record>::LAYOUT),
    );
    let mut w = RecordSetWriter::whole(buf).unwrap();
    w.add(0, TableView::parse_exact(&tt).unwrap(), &entries())
        .unwrap();
    w.add(
        0,
        TableView::parse_exact(&ct).unwrap(),
        &[Count { count: 100 }, Count { count: 101 }],
    )
    .unwrap();
    w.finish()
}

#[test]
fn round_trip() {
    let mut a = area(8192);
    let buf = bytes(&mut a);
    let len = sample(buf);
    let set = RecordSet::parse(buf, 0).unwrap();
    assert_eq!(set.end(), len);
    let table = set.find(kinds::TASK_TABLE).unwrap();
    let decoded: Vec<task_table::V1> = table.decode().map(Result::unwrap).collect();
    assert_eq!(decoded, entries());
    assert_eq!(
        table.table.fingerprint(),
        table::fingerprint(task_table::V1::LAYOUT)
    );
    let counters = set.find(TaskKind::COUNTER.state_record()).unwrap();
    counters.check_size::<Count>().unwrap();
    let states: Vec<_> = counters.decode::<Count>().map(Result::unwrap).collect();
    assert_eq!(states[1].count, 101);
    // Entries are 8-aligned in the area: they can be viewed in place.
    let view: &[Count] = crate::record::entries(counters.bytes).unwrap();
    assert_eq!(view[0].count, 100);
}

#[test]
fn a_set_refers_to_another_sets_records_without_copying_them() {
    let mut a = area(16384);
    let buf = bytes(&mut a);
    let first_end = sample(buf);
    let at = first_end.next_multiple_of(8);
    let (before, after) = buf.split_at_mut(at);
    let first = RecordSet::parse(before, 0).unwrap();
    let mut w = RecordSetWriter::new(after, at).unwrap();
    for r in first.records() {
        w.add_reference(r.header, r.placement).unwrap();
    }
    let end = w.finish();
    // The second set's directory only: no entries were written.
    assert_eq!(end, at + DIRECTORY_SIZE);
    let second = RecordSet::parse(buf, at).unwrap();
    let original = RecordSet::parse(buf, 0).unwrap();
    for (a, b) in original.records().zip(second.records()) {
        assert_eq!(a.header, b.header);
        assert_eq!(
            a.bytes.as_ptr(),
            b.bytes.as_ptr(),
            "the same bytes, not a copy"
        );
    }
}

#[test]
fn a_copied_record_equals_the_original() {
    let mut a = area(8192);
    let buf = bytes(&mut a);
    let len = sample(buf);
    let set = RecordSet::parse(buf, 0).unwrap();
    let mut b = area(8192);
    let out = bytes(&mut b);
    let mut w = RecordSetWriter::whole(out).unwrap();
    for r in set.records() {
        w.add_bytes(r.header, r.table, r.bytes).unwrap();
    }
    let n = w.finish();
    assert_eq!(&out[..n], &buf[..len]);
}

#[test]
fn damage_to_the_directory_is_detected() {
    let mut a = area(8192);
    let buf = bytes(&mut a);
    sample(buf);
    buf[HEADER + 12] ^= 0x40; // the first record's entry count
    assert!(matches!(
        RecordSet::parse(buf, 0),
        Err(RecordSetError::Checksum { .. })
    ));
}

#[test]
fn a_table_that_does_not_match_its_fingerprint_is_refused() {
    let mut a = area(8192);
    let buf = bytes(&mut a);
    sample(buf);
    let set = RecordSet::parse(buf, 0).unwrap();
    let (table_at, _) = set.find(kinds::TASK_TABLE).unwrap().placement.table;
    // Damage the table's first field name: it still parses, its fingerprint differs.
    let name_at = table_at as usize + 12;
    buf[name_at] ^= 0x01;
    assert!(RecordSet::parse(buf, 0).is_err());
}

#[test]
fn a_full_area_is_refused_not_overrun() {
    let ct = table_of(<Count as crate::record::Record>::LAYOUT);
    // Room for the table and two of the three entries.
    let mut a = area(DIRECTORY_SIZE + ct.len().next_multiple_of(8) + 16);
    let buf = bytes(&mut a);
    let mut w = RecordSetWriter::whole(buf).unwrap();
    let many = [Count { count: 1 }, Count { count: 2 }, Count { count: 3 }];
    assert!(matches!(
        w.add(0, TableView::parse_exact(&ct).unwrap(), &many),
        Err(RecordSetError::OutOfSpace { .. })
    ));
    assert!(matches!(
        RecordSetWriter::whole(&mut [0u8; 16]),
        Err(RecordSetError::OutOfSpace { .. })
    ));
}

#[test]
fn duplicates_are_refused() {
    let mut a = area(8192);
    let buf = bytes(&mut a);
    let ct = table_of(<Count as crate::record::Record>::LAYOUT);
    let mut w = RecordSetWriter::whole(buf).unwrap();
    let t = TableView::parse_exact(&ct).unwrap();
    w.add(0, t, &[Count { count: 1 }]).unwrap();
    w.add(0, t, &[Count { count: 2 }]).unwrap();
    w.finish();
    assert!(matches!(
        RecordSet::parse(buf, 0),
        Err(RecordSetError::Duplicate { .. })
    ));
}

proptest! {
    #[test]
    fn parse_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..4096), at in 0usize..64) {
        let _ = RecordSet::parse(&raw, at).map(|s| s.records().count());
    }

    #[test]
    fn parse_never_panics_on_mutations(at in 0usize..3000, value: u8, cut in 0usize..3000) {
        let mut a = area(8192);
        let buf = bytes(&mut a);
        let len = sample(buf);
        buf[at % len] = value;
        let end = len - cut % len;
        if let Ok(set) = RecordSet::parse(&buf[..end], 0) {
            for r in set.records() {
                let _ = r.decode::<Count>().count();
                let _ = crate::record::entries::<Count>(r.bytes);
            }
        }
    }
}

#[test]
fn entries_can_be_taken_writable_and_disjoint() {
    let mut a = area(8192);
    let buf = bytes(&mut a);
    sample(buf);
    let mut split = EntriesMut::split(buf, 0).unwrap();
    let (h, counters) = split.take(TaskKind::COUNTER.state_record()).unwrap();
    assert_eq!(h.entries, 2);
    let (_, table) = split.take(kinds::TASK_TABLE).unwrap();
    assert!(split.take(kinds::TASK_TABLE).is_none(), "taken once");
    let counts: &mut [Count] = crate::record::entries_mut(counters).unwrap();
    counts[1].count = 555;
    let entries: &mut [task_table::V1] = crate::record::entries_mut(table).unwrap();
    entries[0].steps = 1;
    let set = RecordSet::parse(buf, 0).unwrap();
    let c: Vec<Count> = set
        .find(TaskKind::COUNTER.state_record())
        .unwrap()
        .decode()
        .map(Result::unwrap)
        .collect();
    assert_eq!(c[1].count, 555, "written where it stands");
}

#[test]
fn overlapping_records_are_refused() {
    let mut a = area(16384);
    let buf = bytes(&mut a);
    let end = sample(buf);
    let at = end.next_multiple_of(8);
    let (before, after) = buf.split_at_mut(at);
    let first = RecordSet::parse(before, 0).unwrap();
    let counters = first.find(TaskKind::COUNTER.state_record()).unwrap();
    let mut w = RecordSetWriter::new(after, at).unwrap();
    w.add_reference(counters.header, counters.placement)
        .unwrap();
    let mut other = counters.header;
    other.kind = TaskKind::LCG.state_record();
    w.add_reference(other, counters.placement).unwrap();
    w.finish();
    assert!(matches!(
        RecordSet::parse(buf, at),
        Err(RecordSetError::Overlap { .. })
    ));
}
