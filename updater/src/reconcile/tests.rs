//! Every refusal of [`reconcile`] and every conversion path, on the host.

use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use image_format::{SchemaEntry, VersionRange};
use proptest::prelude::*;

use super::*;
use crate::convert::Upgrade;
use crate::handoff::HANDOFF_ABI_VERSION;
use crate::records::task_table::{self, ANY_CPU};
use crate::recordset::flags::OPTIONAL;

const COUNTER: TaskKind = TaskKind::COUNTER;
const TICKER: TaskKind = TaskKind::TICKER;
const TABLE: TaskKind = TaskKind::TABLE;

/// Counter state, three versions: v2 adds a stride, v3 widens the count.
#[derive(Debug, Clone, PartialEq, crate::Record)]
#[record(kind = COUNTER.state_record(), version = 1)]
#[repr(C)]
struct CounterV1 {
    count: u32,
}

#[derive(Debug, Clone, PartialEq, crate::Record)]
#[record(kind = COUNTER.state_record(), version = 2)]
#[repr(C)]
struct CounterV2 {
    count: u32,
    stride: u32,
}

#[derive(Debug, Clone, PartialEq, crate::Record)]
#[record(kind = COUNTER.state_record(), version = 3)]
#[repr(C)]
struct CounterV3 {
    count: u64,
    stride: u32,
}

struct Counter1To2;
impl Upgrade for Counter1To2 {
    type From = CounterV1;
    type To = CounterV2;
    fn upgrade(old: &CounterV1) -> Result<CounterV2, ConvertError> {
        Ok(CounterV2 {
            count: old.count,
            stride: 1,
        })
    }
}

struct Counter2To3;
impl Upgrade for Counter2To3 {
    type From = CounterV2;
    type To = CounterV3;
    fn upgrade(old: &CounterV2) -> Result<CounterV3, ConvertError> {
        if old.count == u32::MAX {
            return Err(ConvertError::DoesNotFit {
                field: "count",
                value: old.count.into(),
                bits: 31,
            });
        }
        Ok(CounterV3 {
            count: old.count.into(),
            stride: old.stride,
        })
    }
}

/// Ticker state: cosmetic, exported as optional.
#[derive(Debug, Clone, PartialEq, crate::Record)]
#[record(kind = TICKER.state_record(), version = 1)]
#[repr(C)]
struct Ticker {
    ticks: u64,
}

/// A kind new in the later image.
#[derive(Debug, Clone, PartialEq, crate::Record)]
#[record(kind = TABLE.state_record(), version = 1)]
#[repr(C)]
struct Table {
    cursor: u64,
}

const CAPS: Capabilities = Capabilities::HANDOFF_V1.union(Capabilities::PARK_STUB_V1);
const STEPS: &[Step] = &[Step::of::<Counter1To2>(), Step::of::<Counter2To3>()];

fn identity(schemas: &[SchemaEntry]) -> EmbeddedIdentity {
    EmbeddedIdentity::new(
        ImageVersion::new(2, 0, 0),
        "new",
        VersionRange::new(ImageVersion::new(1, 0, 0), ImageVersion::new(2, 99, 99)),
        CAPS,
        CAPS,
        schemas,
    )
}

/// The image the tests reconcile into: counter v3, no ticker, the table kind.
struct Target {
    identity: EmbeddedIdentity,
    records: Vec<RecordDecl>,
    steps: &'static [&'static [Step]],
    init: Vec<TaskKind>,
    build_id: Vec<u8>,
}

impl Target {
    fn v3() -> Self {
        Target {
            identity: identity(&[]),
            records: vec![
                RecordDecl::of::<task_table::V1>(false),
                RecordDecl::of::<CounterV3>(false),
                RecordDecl::of::<Table>(false),
                RecordDecl::of::<patch_set::V1>(false),
            ],
            steps: &[STEPS],
            init: vec![TABLE],
            build_id: vec![2; 20],
        }
    }

    fn image(&self) -> Image<'_> {
        Image {
            identity: &self.identity,
            build_id: &self.build_id,
            records: &self.records,
            steps: self.steps,
            init_kinds: &self.init,
        }
    }
}

fn running() -> Running<'static> {
    Running {
        version: ImageVersion::new(1, 0, 0),
        caps_provided: CAPS,
        build_id: &[1; 20],
    }
}

fn request() -> Request {
    Request {
        abi_version: HANDOFF_ABI_VERSION,
        magic_ok: true,
        inject_failure: false,
    }
}

fn entry(id: u32, kind: TaskKind, flags: u32) -> task_table::V1 {
    task_table::V1 {
        id,
        kind,
        affinity: ANY_CPU,
        period_us: 1000,
        flags,
        steps: 10 * u64::from(id),
    }
}

/// The state a v1 kernel exports: `counters` counters (ids 1..), two optional tickers.
fn v1_export(counters: u32) -> Vec<u8> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut w = RecordSetWriter::new(&mut buf).unwrap();
    let mut table: Vec<_> = (1..=counters).map(|id| entry(id, COUNTER, 0)).collect();
    table.push(entry(counters + 1, TICKER, task_flags::OPTIONAL));
    table.push(entry(counters + 2, TICKER, task_flags::OPTIONAL));
    w.add(0, &table).unwrap();
    w.add_keyed(0, counters as usize, |i| {
        (
            i as u32 + 1,
            CounterV1 {
                count: 100 + i as u32,
            },
        )
    })
    .unwrap();
    w.add_keyed(OPTIONAL, 2, |i| {
        (counters + 1 + i as u32, Ticker { ticks: 5 })
    })
    .unwrap();
    let n = w.finish();
    buf.truncate(n);
    buf
}

#[derive(Default)]
struct Seen {
    converted: Vec<(RecordKind, u16, u16, u32)>,
    warnings: Vec<Warning>,
}

impl Log for Seen {
    fn converted(&mut self, kind: RecordKind, from: SchemaVersion, to: SchemaVersion, n: u32) {
        self.converted.push((kind, from.get(), to.get(), n));
    }
    fn warn(&mut self, warning: Warning) {
        self.warnings.push(warning);
    }
}

fn run(target: &Target, exported: &[u8]) -> (Result<Reconciled, BootstrapRefusal>, Seen, Vec<u8>) {
    let mut out = vec![0u8; 256 * 1024];
    let mut seen = Seen::default();
    let r = reconcile::<task_table::V1, _>(
        request(),
        &running(),
        &target.image(),
        exported,
        &mut out,
        &mut seen,
    );
    (r, seen, out)
}

fn refusal(target: &Target, exported: &[u8]) -> BootstrapRefusal {
    run(target, exported).0.unwrap_err()
}

#[test]
fn a_chain_of_two_steps_converts_every_entry_and_drops_what_may_be_dropped() {
    let t = Target::v3();
    let (r, seen, out) = run(&t, &v1_export(5));
    let r = r.unwrap();
    assert_eq!((r.tasks_kept, r.tasks_dropped), (5, 2));
    assert_eq!(
        r.init_required, 1,
        "the table kind is new: its tasks are created"
    );
    let counter = COUNTER.state_record();
    assert_eq!(seen.converted, [(counter, 1, 2, 5), (counter, 2, 3, 5)]);
    assert_eq!(
        seen.warnings,
        [
            Warning::DroppedRecord {
                kind: TICKER.state_record(),
                version: SchemaVersion::new(1),
                entries: 2
            },
            Warning::DroppedTasks { count: 2 }
        ]
    );
    let set = RecordSet::parse(&out[..r.len]).unwrap();
    let states: Vec<_> = set
        .find(counter)
        .unwrap()
        .decode_keyed::<CounterV3>()
        .map(Result::unwrap)
        .collect();
    assert_eq!(states.len(), 5);
    assert!(states
        .iter()
        .enumerate()
        .all(|(i, k)| k.task == i as u32 + 1
            && k.state.count == 100 + i as u64
            && k.state.stride == 1));
    // Unchanged records are copied as they stand.
    let table: Vec<task_table::V1> = set
        .find(kinds::TASK_TABLE)
        .unwrap()
        .decode()
        .map(Result::unwrap)
        .collect();
    assert_eq!(table.len(), 7);
    assert_eq!(table[3], entry(4, COUNTER, 0));
}

#[test]
fn the_same_versions_are_copied_without_conversion() {
    let t = Target {
        records: vec![
            RecordDecl::of::<task_table::V1>(false),
            RecordDecl::of::<CounterV1>(false),
            RecordDecl::of::<Ticker>(true),
        ],
        init: vec![],
        ..Target::v3()
    };
    let exported = v1_export(3);
    let (r, seen, out) = run(&t, &exported);
    let r = r.unwrap();
    assert!(seen.converted.is_empty() && seen.warnings.is_empty());
    assert_eq!((r.tasks_kept, r.tasks_dropped, r.init_required), (5, 0, 0));
    assert_eq!(&out[..r.len], &exported[..], "byte for byte");
}

#[test]
fn each_refusal_says_what_to_do() {
    let t = Target::v3();
    let exported = v1_export(2);

    let mut out = vec![0u8; 64 * 1024];
    let bad_abi = Request {
        abi_version: HANDOFF_ABI_VERSION + 1,
        ..request()
    };
    let e = reconcile::<task_table::V1, _>(
        bad_abi,
        &running(),
        &t.image(),
        &exported,
        &mut out,
        &mut Seen::default(),
    )
    .unwrap_err();
    assert!(matches!(e, BootstrapRefusal::Abi { .. }), "{e}");
    let bad_magic = Request {
        magic_ok: false,
        ..request()
    };
    assert!(matches!(
        reconcile::<task_table::V1, _>(
            bad_magic,
            &running(),
            &t.image(),
            &exported,
            &mut out,
            &mut Seen::default()
        ),
        Err(BootstrapRefusal::Abi { .. })
    ));

    let too_new = Running {
        version: ImageVersion::new(3, 0, 0),
        ..running()
    };
    let e = reconcile::<task_table::V1, _>(
        request(),
        &too_new,
        &t.image(),
        &exported,
        &mut out,
        &mut Seen::default(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the image replaces versions 1.0.0 ..= 2.99.99; the running kernel is 3.0.0"
    );
    let lacking = Running {
        caps_provided: Capabilities::HANDOFF_V1,
        ..running()
    };
    let e = reconcile::<task_table::V1, _>(
        request(),
        &lacking,
        &t.image(),
        &exported,
        &mut out,
        &mut Seen::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("PARK_STUB_V1"), "{e}");

    let injected = Request {
        inject_failure: true,
        ..request()
    };
    let e = reconcile::<task_table::V1, _>(
        injected,
        &running(),
        &t.image(),
        &exported,
        &mut out,
        &mut Seen::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("injected reconciliation failure"),
        "{e}"
    );

    assert!(matches!(
        refusal(&t, &exported[..100]),
        BootstrapRefusal::Exported(_)
    ));
    let mut tiny = vec![0u8; 1100];
    let e = reconcile::<task_table::V1, _>(
        request(),
        &running(),
        &t.image(),
        &exported,
        &mut tiny,
        &mut Seen::default(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            BootstrapRefusal::Output(RecordSetError::OutOfSpace { .. })
        ),
        "{e}"
    );
}

#[test]
fn records_the_image_cannot_read() {
    // The ticker is required here: refused, not dropped.
    let mut buf = vec![0u8; 64 * 1024];
    let mut w = RecordSetWriter::new(&mut buf).unwrap();
    w.add(0, &[entry(1, TICKER, 0)]).unwrap();
    w.add_keyed(0, 1, |_| (1, Ticker { ticks: 1 })).unwrap();
    let n = w.finish();
    let t = Target::v3();
    let e = refusal(&t, &buf[..n]);
    assert_eq!(
        e,
        BootstrapRefusal::Unreadable {
            kind: TICKER.state_record(),
            version: SchemaVersion::new(1)
        }
    );
    assert!(e.to_string().contains("not optional"), "{e}");

    // An image that reads only counter v1 cannot take v3 (a downgrade).
    let mut buf = vec![0u8; 64 * 1024];
    let mut w = RecordSetWriter::new(&mut buf).unwrap();
    w.add(0, &[entry(1, COUNTER, 0)]).unwrap();
    w.add_keyed(0, 1, |_| {
        (
            1,
            CounterV3 {
                count: 1,
                stride: 1,
            },
        )
    })
    .unwrap();
    let n = w.finish();
    let old = Target {
        records: vec![
            RecordDecl::of::<task_table::V1>(false),
            RecordDecl::of::<CounterV1>(false),
        ],
        ..Target::v3()
    };
    assert!(matches!(
        refusal(&old, &buf[..n]),
        BootstrapRefusal::Downgrade { .. }
    ));
}

#[test]
fn an_optional_record_in_a_newer_version_is_dropped() {
    let mut buf = vec![0u8; 64 * 1024];
    let mut w = RecordSetWriter::new(&mut buf).unwrap();
    w.add(0, &[entry(1, COUNTER, 0)]).unwrap();
    w.add_keyed(0, 1, |_| (1, CounterV1 { count: 1 })).unwrap();
    w.add_raw(
        TICKER.state_record(),
        SchemaVersion::new(7),
        OPTIONAL,
        12,
        0,
        |_, _| {},
    )
    .unwrap();
    let n = w.finish();
    let t = Target {
        records: vec![
            RecordDecl::of::<task_table::V1>(false),
            RecordDecl::of::<CounterV3>(false),
            RecordDecl::of::<Ticker>(true),
        ],
        ..Target::v3()
    };
    let (r, seen, _) = run(&t, &buf[..n]);
    r.unwrap();
    assert!(matches!(seen.warnings[0], Warning::DroppedRecord { .. }));
}

#[test]
fn a_missing_converter_is_named() {
    const ONLY_SECOND: &[&[Step]] = &[&[Step::of::<Counter2To3>()]];
    let t = Target {
        steps: ONLY_SECOND,
        ..Target::v3()
    };
    let e = refusal(&t, &v1_export(2));
    assert_eq!(
        e.to_string(),
        "no converter for counter-state v1→v2 in the new image: add one to the image's steps"
    );
}

#[test]
fn entries_of_the_wrong_size_for_their_version_are_refused() {
    // Counter v1 entries of 8 bytes: a layout changed, the version did not.
    let mut buf = vec![0u8; 64 * 1024];
    let mut w = RecordSetWriter::new(&mut buf).unwrap();
    w.add(0, &[entry(1, COUNTER, 0)]).unwrap();
    w.add_raw(
        COUNTER.state_record(),
        SchemaVersion::new(1),
        0,
        KEY + 8,
        1,
        |_, out| out[..4].copy_from_slice(&1u32.to_le_bytes()),
    )
    .unwrap();
    let n = w.finish();
    let e = refusal(&Target::v3(), &buf[..n]);
    assert!(
        matches!(
            e,
            BootstrapRefusal::EntrySize {
                found: 8,
                expected: 4,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("bump the schema version"), "{e}");
}

#[test]
fn a_failing_converter_names_the_entry_and_its_task() {
    let mut buf = vec![0u8; 64 * 1024];
    let mut w = RecordSetWriter::new(&mut buf).unwrap();
    w.add(0, &[entry(1, COUNTER, 0), entry(2, COUNTER, 0)])
        .unwrap();
    w.add_keyed(0, 2, |i| {
        (
            i as u32 + 1,
            CounterV1 {
                count: if i == 1 { u32::MAX } else { 1 },
            },
        )
    })
    .unwrap();
    let n = w.finish();
    let e = refusal(&Target::v3(), &buf[..n]);
    assert_eq!(
        e.to_string(),
        "counter-state v2→v3 converter, entry 1 (task 2): `count` holds 0xffffffff, which does not fit its 31 bits in the new layout"
    );
}

fn with_table(table: &[task_table::V1], counters: &[(u32, u32)]) -> Vec<u8> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut w = RecordSetWriter::new(&mut buf).unwrap();
    w.add(0, table).unwrap();
    if !counters.is_empty() {
        w.add_keyed(0, counters.len(), |i| {
            (
                counters[i].0,
                CounterV1 {
                    count: counters[i].1,
                },
            )
        })
        .unwrap();
    }
    let n = w.finish();
    buf.truncate(n);
    buf
}

#[test]
fn tasks_are_validated_against_this_images_kinds() {
    let t = Target::v3();
    let mut buf = vec![0u8; 64 * 1024];
    let w = RecordSetWriter::new(&mut buf).unwrap();
    let n = w.finish();
    assert_eq!(refusal(&t, &buf[..n]), BootstrapRefusal::NoTaskTable);

    let unknown = with_table(&[entry(1, TaskKind::from_raw(77), 0)], &[]);
    let e = refusal(&t, &unknown);
    assert_eq!(
        e,
        BootstrapRefusal::UnknownKind {
            task: 1,
            kind: TaskKind::from_raw(77)
        }
    );
    assert!(e.to_string().contains("mark its tasks optional"), "{e}");

    let no_states = with_table(&[entry(1, COUNTER, 0)], &[]);
    assert_eq!(
        refusal(&t, &no_states),
        BootstrapRefusal::NoStateRecord {
            task: 1,
            kind: COUNTER
        }
    );

    // States in another order than the table: task 1's entry is task 2's.
    let swapped = with_table(
        &[entry(1, COUNTER, 0), entry(2, COUNTER, 0)],
        &[(2, 0), (1, 0)],
    );
    assert_eq!(
        refusal(&t, &swapped),
        BootstrapRefusal::NoStateEntry {
            task: 1,
            kind: COUNTER
        }
    );
    let missing = with_table(&[entry(1, COUNTER, 0), entry(2, COUNTER, 0)], &[(1, 0)]);
    assert_eq!(
        refusal(&t, &missing),
        BootstrapRefusal::NoStateEntry {
            task: 2,
            kind: COUNTER
        }
    );
}

#[test]
fn a_task_table_of_the_wrong_size_is_refused() {
    let mut buf = vec![0u8; 64 * 1024];
    let mut w = RecordSetWriter::new(&mut buf).unwrap();
    w.add_raw(
        kinds::TASK_TABLE,
        SchemaVersion::new(1),
        0,
        20,
        1,
        |_, _| {},
    )
    .unwrap();
    let n = w.finish();
    assert!(matches!(
        refusal(&Target::v3(), &buf[..n]),
        BootstrapRefusal::EntrySize {
            found: 20,
            expected: 24,
            ..
        }
    ));
}

fn with_patches(patches: u32) -> Vec<u8> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut w = RecordSetWriter::new(&mut buf).unwrap();
    w.add(0, &[entry(1, COUNTER, 0)]).unwrap();
    w.add_keyed(0, 1, |_| (1, CounterV1 { count: 1 })).unwrap();
    let list: Vec<_> = (0..patches)
        .map(|i| patch_set::V1 {
            id: 0xabc0 + u64::from(i),
            version: 1,
            sequence: i + 1,
            sites: 2,
            memory: 0,
            pages: 1,
            label: *b"patch-a\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0",
        })
        .collect();
    w.add(0, &list).unwrap();
    let n = w.finish();
    buf.truncate(n);
    buf
}

#[test]
fn hotpatches_are_dropped_into_another_build_and_refused_into_the_same() {
    let t = Target::v3();
    let (r, seen, _) = run(&t, &with_patches(2));
    r.unwrap();
    let texts: Vec<String> = seen.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        texts,
        [
            "hotpatch 000000000000abc0 (patch-a) dropped: the new image is another build",
            "hotpatch 000000000000abc1 (patch-a) dropped: the new image is another build"
        ]
    );
    let same = Target {
        build_id: vec![1; 20],
        ..Target::v3()
    };
    let e = refusal(&same, &with_patches(2));
    assert_eq!(e, BootstrapRefusal::SameBuildWithPatches { patches: 2 });
    assert!(e.to_string().contains("remove them first"), "{e}");
    // No patches, the same build: fine (a swap into the same build).
    run(&same, &with_patches(0)).0.unwrap();
}

#[test]
fn initialisation_is_required_only_for_kinds_the_machine_lacks() {
    let t = Target::v3();
    let mut buf = vec![0u8; 64 * 1024];
    let mut w = RecordSetWriter::new(&mut buf).unwrap();
    w.add(0, &[entry(1, TABLE, 0)]).unwrap();
    w.add_keyed(0, 1, |_| (1, Table { cursor: 3 })).unwrap();
    let n = w.finish();
    let (r, _, _) = run(&t, &buf[..n]);
    assert_eq!(r.unwrap().init_required, 0);
}

proptest! {
    #[test]
    fn conversion_keeps_every_value(counts in proptest::collection::vec(0u32..u32::MAX, 1..64)) {
        let table: Vec<_> = (1..=counts.len() as u32).map(|id| entry(id, COUNTER, 0)).collect();
        let states: Vec<(u32, u32)> = counts.iter().enumerate().map(|(i, &c)| (i as u32 + 1, c)).collect();
        let exported = with_table(&table, &states);
        let (r, _, out) = run(&Target::v3(), &exported);
        let r = r.unwrap();
        let set = RecordSet::parse(&out[..r.len]).unwrap();
        let got: Vec<(u32, u64)> = set
            .find(COUNTER.state_record())
            .unwrap()
            .decode_keyed::<CounterV3>()
            .map(|k| k.map(|k| (k.task, k.state.count)))
            .collect::<Result<_, _>>()
            .unwrap();
        let want: Vec<(u32, u64)> = states.iter().map(|&(t, c)| (t, c.into())).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn damaged_exports_are_refused_never_panic(at in 0usize..4096, value: u8) {
        let mut exported = v1_export(4);
        let i = at % exported.len();
        exported[i] ^= value | 1;
        let _ = run(&Target::v3(), &exported);
    }
}
