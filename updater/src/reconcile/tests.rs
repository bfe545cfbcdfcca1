//! Every refusal of [`reconcile`] and every conversion path, on the host.

use std::boxed::Box;
use std::format;
use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use image_format::VersionRange;
use proptest::prelude::*;

use super::*;
use crate::convert::Upgrade;
use crate::describe::{self, Declaration};
use crate::handoff::HANDOFF_ABI_VERSION;
use crate::records::task_table::{self, ANY_CPU};
use crate::recordset::{flags::OPTIONAL, DIRECTORY_SIZE};
use crate::table::{self, TableView};

const COUNTER: TaskKind = TaskKind::COUNTER;
const TICKER: TaskKind = TaskKind::TICKER;
const TABLE: TaskKind = TaskKind::TABLE;

/// Counter state, in the versions the tests convert between: v2 adds a stride (by a
/// converter), v3 widens the count (by a converter that refuses `u32::MAX`).
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
    reserved: u32,
}

/// Counter v2 as a developer would write it with no converter: the count widened and
/// moved behind a new field with a default, a field renamed through its alias.
#[derive(Debug, Clone, PartialEq, crate::Record)]
#[record(kind = COUNTER.state_record(), version = 2)]
#[repr(C)]
struct CounterByFields {
    #[record(default = 3)]
    stride: u32,
    #[record(default = 9)]
    phase: u32,
    #[record(alias = "count")]
    total: u64,
}

/// Counter v1 with another layout under the same version (the guard's case).
#[derive(Debug, Clone, PartialEq, crate::Record)]
#[record(kind = COUNTER.state_record(), version = 1)]
#[repr(C)]
struct CounterV1Grown {
    count: u32,
    extra: u32,
}

/// Counter v2 whose count narrowed (no converter: refused).
#[derive(Debug, Clone, PartialEq, crate::Record)]
#[record(kind = COUNTER.state_record(), version = 2)]
#[repr(C)]
struct CounterNarrow {
    count: u16,
    reserved: u16,
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
            reserved: 0,
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
const BOTH: &[Step] = &[Step::of::<Counter1To2>(), Step::of::<Counter2To3>()];
const FIRST: &[Step] = &[Step::of::<Counter1To2>()];

/// The image the tests reconcile into.
struct Target {
    identity: EmbeddedIdentity,
    steps: &'static [&'static [Step]],
    init: Vec<TaskKind>,
    build_id: Vec<u8>,
    description: Vec<u8>,
}

/// The machinery's records every target reads.
fn system() -> Vec<RecordDecl> {
    vec![
        RecordDecl::of::<task_table::V1>(false),
        RecordDecl::of::<run_queues::V1>(false),
        RecordDecl::of::<patch_set::V1>(false),
    ]
}

impl Target {
    /// An image reading `states` (and the system records), carrying `steps`, whose
    /// description lists `described` converters (normally the same).
    fn new(
        states: &[RecordDecl],
        steps: &'static [&'static [Step]],
        described: &'static [&'static [Step]],
    ) -> &'static Target {
        let mut records = system();
        records.extend_from_slice(states);
        let decl = Declaration {
            abi_version: HANDOFF_ABI_VERSION,
            descriptor: <crate::records::machine::V1 as Record>::LAYOUT,
            records: &records,
            steps: described,
            regions: &[],
        };
        let mut description = vec![0u8; describe::len(&decl)];
        describe::write(&decl, &mut description);
        Box::leak(Box::new(Target {
            identity: EmbeddedIdentity::new(
                ImageVersion::new(2, 0, 0),
                "new",
                VersionRange::new(ImageVersion::new(1, 0, 0), ImageVersion::new(2, 99, 99)),
                CAPS,
                CAPS,
                &[],
            ),
            steps,
            init: vec![TABLE],
            build_id: vec![2; 20],
            description,
        }))
    }

    /// Counter v3 through two converters, no ticker, the table kind (new).
    fn v3() -> &'static Target {
        Target::new(
            &[
                RecordDecl::of::<CounterV3>(false),
                RecordDecl::of::<Table>(false),
            ],
            &[BOTH],
            &[BOTH],
        )
    }

    fn image(&'static self) -> Image<'static> {
        Image {
            identity: &self.identity,
            build_id: &self.build_id,
            description: describe::Description::parse(&self.description).unwrap(),
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
        layout_fingerprint: crate::handoff::LAYOUT_FINGERPRINT,
        inject_failure: false,
        inject_converter: None,
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

const AREA: usize = 512 * 1024;

/// An exported set being written: records with their tables, as a kernel exports.
struct Export {
    area: Vec<u64>,
    records: Vec<(u16, Vec<u8>, Vec<u8>, RecordHeader)>,
}

impl Export {
    fn new() -> Self {
        Export {
            area: vec![0; AREA / 8],
            records: Vec::new(),
        }
    }

    fn add<R: Record>(mut self, flags: u16, entries: &[R]) -> Self {
        let mut table = vec![0u8; table::encoded_len(R::LAYOUT)];
        table::encode(R::LAYOUT, &mut table, 0);
        let mut bytes = vec![0u8; R::SIZE * entries.len()];
        for (e, out) in entries.iter().zip(bytes.chunks_exact_mut(R::SIZE)) {
            e.encode(out);
        }
        let header = RecordHeader {
            kind: R::KIND,
            schema: R::SCHEMA,
            flags,
            entry_size: R::SIZE as u32,
            entries: entries.len() as u32,
            fingerprint: table::fingerprint(R::LAYOUT),
        };
        self.records.push((0, table, bytes, header));
        self
    }

    /// The task table and one run queue holding all of it.
    fn tasks(self, table: &[task_table::V1]) -> Self {
        let n = table.len() as u32;
        self.add(0, table)
            .add(0, &[run_queues::V1 { cpu: 0, tasks: n }])
    }

    /// Written into its area: (area, end of the exported set).
    fn finish(mut self) -> (Vec<u64>, usize) {
        let bytes = crate::record::bytes_of_mut(&mut self.area);
        let mut w = RecordSetWriter::whole(bytes).unwrap();
        for (_, table, entries, header) in &self.records {
            w.add_bytes(*header, TableView::parse_exact(table).unwrap(), entries)
                .unwrap();
        }
        let end = w.finish();
        (self.area, end)
    }
}

/// The state a v1 kernel exports: `counters` counters (ids 1..), two optional tickers.
fn v1_export(counters: u32) -> Export {
    let mut table: Vec<_> = (1..=counters).map(|id| entry(id, COUNTER, 0)).collect();
    table.push(entry(counters + 1, TICKER, task_flags::OPTIONAL));
    table.push(entry(counters + 2, TICKER, task_flags::OPTIONAL));
    let states: Vec<_> = (0..counters)
        .map(|i| CounterV1 { count: 100 + i })
        .collect();
    Export::new()
        .tasks(&table)
        .add(0, &states)
        .add(OPTIONAL, &[Ticker { ticks: 5 }, Ticker { ticks: 5 }])
}

#[derive(Default, Debug)]
struct Seen {
    unchanged: Vec<(RecordKind, u16, u32)>,
    converted: Vec<(RecordKind, u16, u16, u32, String)>,
    warnings: Vec<Warning>,
}

impl Log for Seen {
    fn unchanged(&mut self, kind: RecordKind, version: SchemaVersion, n: u32) {
        self.unchanged.push((kind, version.get(), n));
    }
    fn converted(
        &mut self,
        kind: RecordKind,
        from: SchemaVersion,
        to: SchemaVersion,
        n: u32,
        by: By<'_>,
    ) {
        let how = match by {
            By::Converter => "converter".to_string(),
            By::Fields(p) => format!("fields +{:?} -{:?}", p.added(), p.dropped()),
        };
        self.converted.push((kind, from.get(), to.get(), n, how));
    }
    fn warn(&mut self, warning: Warning) {
        self.warnings.push(warning);
    }
}

/// What a reconcile returned, what it logged, and the area after it (exported and
/// converted sets together, so that the converted set can be read as the new kernel
/// reads it).
struct Outcome {
    result: Result<Reconciled, BootstrapRefusal<'static>>,
    seen: Seen,
    area: Vec<u64>,
}

impl Outcome {
    fn set(&self) -> RecordSet<'_> {
        let r = self.result.as_ref().unwrap();
        RecordSet::parse(crate::record::bytes_of(&self.area), r.at).unwrap()
    }
}

fn run_with(
    target: &'static Target,
    export: Export,
    request: Request,
    running: Running<'static>,
) -> Outcome {
    let (area, end) = export.finish();
    let at = end.next_multiple_of(8);
    let area: &'static mut [u64] = Box::leak(area.into_boxed_slice());
    let (exported, out) = crate::record::bytes_of_mut(area).split_at_mut(at);
    let exported: &'static [u8] = exported;
    let mut seen = Seen::default();
    let result = reconcile::<task_table::V1, _>(
        request,
        &running,
        &target.image(),
        exported,
        0,
        out,
        &mut seen,
    );
    let mut whole = vec![0u64; AREA / 8];
    let bytes = crate::record::bytes_of_mut(&mut whole);
    bytes[..at].copy_from_slice(exported);
    bytes[at..].copy_from_slice(out);
    Outcome {
        result,
        seen,
        area: whole,
    }
}

fn run(target: &'static Target, export: Export) -> Outcome {
    run_with(target, export, request(), running())
}

fn refusal(target: &'static Target, export: Export) -> BootstrapRefusal<'static> {
    match run(target, export).result {
        Ok(r) => panic!("expected a refusal, got {r:?}"),
        Err(e) => e,
    }
}

fn counter_states<R: Record>(o: &Outcome) -> Vec<R> {
    o.set()
        .find(COUNTER.state_record())
        .unwrap()
        .decode::<R>()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_chain_of_two_converters_converts_every_entry_and_drops_what_may_be_dropped() {
    let o = run(Target::v3(), v1_export(5));
    let r = o.result.as_ref().unwrap();
    assert_eq!((r.tasks_kept, r.tasks_dropped), (5, 2));
    assert_eq!(
        r.init_required, 1,
        "the table kind is new: its tasks are created"
    );
    let counter = COUNTER.state_record();
    assert_eq!(
        o.seen.converted,
        [
            (counter, 1, 2, 5, "converter".to_string()),
            (counter, 2, 3, 5, "converter".to_string())
        ]
    );
    assert_eq!(
        o.seen.warnings,
        [
            Warning::DroppedRecord {
                kind: TICKER.state_record(),
                version: SchemaVersion::new(1),
                entries: 2
            },
            Warning::DroppedTasks { count: 2 }
        ]
    );
    let states: Vec<CounterV3> = counter_states(&o);
    assert_eq!(states.len(), 5);
    assert!(states
        .iter()
        .enumerate()
        .all(|(i, s)| s.count == 100 + i as u64 && s.stride == 1));
    // The task table did not change: the converted set refers to the exported entries.
    let table = o.set().find(kinds::TASK_TABLE).unwrap();
    assert!(table.placement.entries.0 < r.at as u64, "not copied");
    let entries: Vec<task_table::V1> = table.decode().map(Result::unwrap).collect();
    assert_eq!(entries.len(), 7);
    assert_eq!(entries[3], entry(4, COUNTER, 0));
    assert!(o.seen.unchanged.contains(&(kinds::TASK_TABLE, 1, 7)));
}

#[test]
fn unchanged_layouts_cost_one_directory_whatever_their_size() {
    let t = Target::new(
        &[
            RecordDecl::of::<CounterV1>(false),
            RecordDecl::of::<Ticker>(true),
        ],
        &[],
        &[],
    );
    let o = run(t, v1_export(3000));
    let r = o.result.as_ref().unwrap();
    assert!(o.seen.converted.is_empty() && o.seen.warnings.is_empty());
    assert_eq!((r.tasks_kept, r.tasks_dropped), (3002, 0));
    assert_eq!(
        r.end - r.at,
        DIRECTORY_SIZE,
        "the converted set is a directory only"
    );
    assert_eq!(o.seen.unchanged.len(), 4);
    let states: Vec<CounterV1> = counter_states(&o);
    assert_eq!(states[2999].count, 3099);
}

#[test]
fn a_layout_change_without_a_converter_is_converted_by_field() {
    let t = Target::new(&[RecordDecl::of::<CounterByFields>(false)], &[], &[]);
    let table: Vec<_> = (1..=3).map(|id| entry(id, COUNTER, 0)).collect();
    let states: Vec<_> = (0..3).map(|i| CounterV1 { count: 7 + i }).collect();
    let o = run(t, Export::new().tasks(&table).add(0, &states));
    o.result.as_ref().unwrap();
    assert_eq!(
        o.seen.converted,
        [(
            COUNTER.state_record(),
            1,
            2,
            3,
            r#"fields +["stride", "phase"] -[]"#.to_string()
        )]
    );
    let got: Vec<CounterByFields> = counter_states(&o);
    assert_eq!(
        got,
        (0..3)
            .map(|i| CounterByFields {
                stride: 3,
                phase: 9,
                total: 7 + i
            })
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_chain_mixes_a_converter_and_conversion_by_field() {
    // 1→2 by its converter, then to this image's v3 by field (no 2→3 converter).
    let t = Target::new(&[RecordDecl::of::<CounterV3>(false)], &[FIRST], &[FIRST]);
    let table: Vec<_> = (1..=2).map(|id| entry(id, COUNTER, 0)).collect();
    let states = [CounterV1 { count: 40 }, CounterV1 { count: u32::MAX }];
    let o = run(t, Export::new().tasks(&table).add(0, &states));
    o.result.as_ref().unwrap();
    let how: Vec<_> = o
        .seen
        .converted
        .iter()
        .map(|c| (c.1, c.2, c.4.as_str()))
        .collect();
    assert_eq!(
        how,
        [(1, 2, "converter"), (2, 3, r#"fields +["reserved"] -[]"#)]
    );
    let got: Vec<CounterV3> = counter_states(&o);
    assert_eq!(
        (got[0].count, got[0].stride, got[1].count),
        (40, 1, u64::from(u32::MAX))
    );
}

#[test]
fn a_layout_that_changed_under_the_same_version_is_refused() {
    let t = Target::new(&[RecordDecl::of::<CounterV1Grown>(false)], &[], &[]);
    let table = [entry(1, COUNTER, 0)];
    let e = refusal(
        t,
        Export::new()
            .tasks(&table)
            .add(0, &[CounterV1 { count: 1 }]),
    );
    assert!(
        matches!(e, BootstrapRefusal::Plan(PlanRefusal::Unbumped { .. })),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "counter-state v1 has another layout in the new image than in the running kernel (`extra` added) but the same version: bump the schema version of counter-state"
    );
}

#[test]
fn a_narrowing_without_a_converter_is_refused_naming_the_field() {
    let t = Target::new(&[RecordDecl::of::<CounterNarrow>(false)], &[], &[]);
    let table = [entry(1, COUNTER, 0)];
    let e = refusal(
        t,
        Export::new()
            .tasks(&table)
            .add(0, &[CounterV1 { count: 1 }]),
    );
    assert_eq!(
        e.to_string(),
        "counter-state v1→v2: field `count` narrowed from u32 to u16: that is not mechanical, it needs a converter"
    );
}

#[test]
fn each_refusal_says_what_to_do() {
    let t = Target::v3();
    let go = |request: Request, running: Running<'static>| {
        run_with(t, v1_export(2), request, running)
            .result
            .unwrap_err()
    };
    let e = go(
        Request {
            abi_version: HANDOFF_ABI_VERSION + 1,
            ..request()
        },
        running(),
    );
    assert!(matches!(e, BootstrapRefusal::Abi { .. }), "{e}");
    let e = go(
        Request {
            magic_ok: false,
            ..request()
        },
        running(),
    );
    assert!(matches!(e, BootstrapRefusal::Abi { .. }), "{e}");
    let e = go(
        Request {
            layout_fingerprint: 1,
            ..request()
        },
        running(),
    );
    assert!(e.to_string().contains("bump HANDOFF_ABI_VERSION"), "{e}");
    let e = go(
        request(),
        Running {
            version: ImageVersion::new(3, 0, 0),
            ..running()
        },
    );
    assert_eq!(
        e.to_string(),
        "the image replaces versions 1.0.0 ..= 2.99.99; the running kernel is 3.0.0"
    );
    let e = go(
        request(),
        Running {
            caps_provided: Capabilities::HANDOFF_V1,
            ..running()
        },
    );
    assert!(e.to_string().contains("PARK_STUB_V1"), "{e}");
    let e = go(
        Request {
            inject_failure: true,
            ..request()
        },
        running(),
    );
    assert!(
        e.to_string().contains("injected reconciliation failure"),
        "{e}"
    );
}

#[test]
fn damaged_or_cramped_areas_are_refused() {
    let t = Target::v3();
    // The exported set's directory damaged.
    let (mut area, end) = v1_export(2).finish();
    crate::record::bytes_of_mut(&mut area)[40] ^= 0x10;
    let exported: &'static [u8] = Box::leak(
        crate::record::bytes_of(&area)[..end.next_multiple_of(8)]
            .to_vec()
            .into_boxed_slice(),
    );
    let mut out = vec![0u64; 4096];
    let e = reconcile::<task_table::V1, _>(
        request(),
        &running(),
        &t.image(),
        exported,
        0,
        crate::record::bytes_of_mut(&mut out),
        &mut Seen::default(),
    )
    .unwrap_err();
    assert!(matches!(e, BootstrapRefusal::Exported(_)), "{e}");

    // Room for the directory and little else: the converted counters do not fit.
    let (area, end) = v1_export(200).finish();
    let at = end.next_multiple_of(8);
    let exported: &'static [u8] = Box::leak(
        crate::record::bytes_of(&area)[..at]
            .to_vec()
            .into_boxed_slice(),
    );
    let mut out = vec![0u64; (DIRECTORY_SIZE + 256) / 8];
    let e = reconcile::<task_table::V1, _>(
        request(),
        &running(),
        &t.image(),
        exported,
        0,
        crate::record::bytes_of_mut(&mut out),
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
    let e = refusal(
        Target::v3(),
        Export::new()
            .tasks(&[entry(1, TICKER, 0)])
            .add(0, &[Ticker { ticks: 1 }]),
    );
    assert_eq!(
        e,
        BootstrapRefusal::Unreadable {
            kind: TICKER.state_record(),
            version: SchemaVersion::new(1)
        }
    );
    assert!(e.to_string().contains("not optional"), "{e}");

    // An image that reads only counter v1 cannot take v3 (a downgrade).
    let old = Target::new(&[RecordDecl::of::<CounterV1>(false)], &[], &[]);
    let e = refusal(
        old,
        Export::new().tasks(&[entry(1, COUNTER, 0)]).add(
            0,
            &[CounterV3 {
                count: 1,
                stride: 1,
                reserved: 0,
            }],
        ),
    );
    assert!(
        matches!(e, BootstrapRefusal::Plan(PlanRefusal::Downgrade { .. })),
        "{e:?}"
    );
}

#[test]
fn an_optional_record_in_a_newer_version_is_dropped() {
    #[derive(Debug, Clone, PartialEq, crate::Record)]
    #[record(kind = TICKER.state_record(), version = 7)]
    #[repr(C)]
    struct TickerV7 {
        ticks: u64,
        more: u64,
    }
    let t = Target::new(
        &[
            RecordDecl::of::<CounterV3>(false),
            RecordDecl::of::<Ticker>(true),
        ],
        &[BOTH],
        &[BOTH],
    );
    let o = run(
        t,
        Export::new()
            .tasks(&[entry(1, COUNTER, 0)])
            .add(0, &[CounterV1 { count: 1 }])
            .add::<TickerV7>(OPTIONAL, &[]),
    );
    o.result.as_ref().unwrap();
    assert!(matches!(o.seen.warnings[0], Warning::DroppedRecord { .. }));
}

#[test]
fn a_converter_described_but_not_carried_is_a_build_bug_named() {
    let t = Target::new(&[RecordDecl::of::<CounterV3>(false)], &[], &[BOTH]);
    let e = refusal(t, v1_export(2));
    assert!(
        matches!(e, BootstrapRefusal::NoConverterCode { .. }),
        "{e:?}"
    );
}

#[test]
fn a_failing_converter_names_the_entry() {
    let table = [entry(1, COUNTER, 0), entry(2, COUNTER, 0)];
    let e = refusal(
        Target::v3(),
        Export::new()
            .tasks(&table)
            .add(0, &[CounterV1 { count: 1 }, CounterV1 { count: u32::MAX }]),
    );
    assert_eq!(
        e.to_string(),
        "counter-state v2→v3 converter, entry 1: `count` holds 0xffffffff, which does not fit its 31 bits in the new layout"
    );
}

#[test]
fn tasks_are_validated_against_this_images_kinds() {
    let t = Target::v3();
    assert_eq!(refusal(t, Export::new()), BootstrapRefusal::NoTaskTable);
    assert_eq!(
        refusal(t, Export::new().add(0, &[entry(1, COUNTER, 0)])),
        BootstrapRefusal::NoRunQueues
    );
    let e = refusal(
        t,
        Export::new()
            .add(0, &[entry(1, COUNTER, 0)])
            .add(0, &[run_queues::V1 { cpu: 0, tasks: 2 }]),
    );
    assert_eq!(
        e,
        BootstrapRefusal::RunQueues {
            queued: 2,
            tasks: 1
        }
    );

    let unknown = TaskKind::from_raw(77);
    let e = refusal(t, Export::new().tasks(&[entry(1, unknown, 0)]));
    assert_eq!(
        e,
        BootstrapRefusal::UnknownKind {
            task: 1,
            kind: unknown
        }
    );
    assert!(e.to_string().contains("mark its tasks optional"), "{e}");

    let e = refusal(t, Export::new().tasks(&[entry(1, COUNTER, 0)]));
    assert_eq!(
        e,
        BootstrapRefusal::StateCount {
            kind: COUNTER,
            tasks: 1,
            states: 0
        }
    );
    let e = refusal(
        t,
        Export::new()
            .tasks(&[entry(1, COUNTER, 0), entry(2, COUNTER, 0)])
            .add(0, &[CounterV1 { count: 1 }]),
    );
    assert_eq!(
        e,
        BootstrapRefusal::StateCount {
            kind: COUNTER,
            tasks: 2,
            states: 1
        }
    );
    assert!(e.to_string().contains("exactly one"), "{e}");
}

fn with_patches(patches: u32) -> Export {
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
    Export::new()
        .tasks(&[entry(1, COUNTER, 0)])
        .add(0, &[CounterV1 { count: 1 }])
        .add(0, &list)
}

#[test]
fn hotpatches_are_dropped_into_another_build_and_refused_into_the_same() {
    let o = run(Target::v3(), with_patches(2));
    o.result.as_ref().unwrap();
    let texts: Vec<String> = o.seen.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(
        texts,
        [
            "hotpatch 000000000000abc0 (patch-a) dropped: the new image is another build",
            "hotpatch 000000000000abc1 (patch-a) dropped: the new image is another build"
        ]
    );
    let same = running_build_target();
    let e = refusal(same, with_patches(2));
    assert_eq!(e, BootstrapRefusal::SameBuildWithPatches { patches: 2 });
    assert!(e.to_string().contains("remove them first"), "{e}");
    // No patches, the same build: fine (a swap into the same build).
    run(same, with_patches(0)).result.unwrap();
}

fn running_build_target() -> &'static Target {
    let t = Target::v3();
    Box::leak(Box::new(Target {
        identity: t.identity,
        steps: t.steps,
        init: t.init.clone(),
        build_id: vec![1; 20],
        description: t.description.clone(),
    }))
}

#[test]
fn initialisation_is_required_only_for_kinds_the_machine_lacks() {
    let o = run(
        Target::v3(),
        Export::new()
            .tasks(&[entry(1, TABLE, 0)])
            .add(0, &[Table { cursor: 3 }]),
    );
    assert_eq!(o.result.unwrap().init_required, 0);
}

#[derive(Debug, Clone, PartialEq, crate::Record)]
#[record(kind = COUNTER.state_record(), version = 1)]
#[repr(C)]
struct Old {
    a: u32,
    b: i16,
    c: u8,
    gone: u8,
    d: u64,
}

/// Old, after every mechanical rule at once: reordered, widened with sign, renamed
/// through an alias, a field dropped, one added.
#[derive(Debug, Clone, PartialEq, crate::Record)]
#[record(kind = COUNTER.state_record(), version = 2)]
#[repr(C)]
struct New {
    d: u64,
    #[record(alias = "b")]
    bee: i64,
    a: u64,
    c: u16,
    #[record(default = 0x77)]
    added: u16,
    reserved: u32,
}

proptest! {
    #[test]
    fn conversion_keeps_every_value(counts in proptest::collection::vec(0u32..u32::MAX, 1..64)) {
        let table: Vec<_> = (1..=counts.len() as u32).map(|id| entry(id, COUNTER, 0)).collect();
        let states: Vec<_> = counts.iter().map(|&count| CounterV1 { count }).collect();
        let o = run(Target::v3(), Export::new().tasks(&table).add(0, &states));
        let got: Vec<u64> = counter_states::<CounterV3>(&o).iter().map(|s| s.count).collect();
        let want: Vec<u64> = counts.iter().map(|&c| c.into()).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn conversion_by_field_keeps_every_surviving_value(
        olds in proptest::collection::vec((any::<u32>(), any::<i16>(), any::<u8>(), any::<u8>(), any::<u64>()), 1..32)
    ) {
        let t = Target::new(&[RecordDecl::of::<New>(false)], &[], &[]);
        let table: Vec<_> = (1..=olds.len() as u32).map(|id| entry(id, COUNTER, 0)).collect();
        let states: Vec<_> = olds.iter().map(|&(a, b, c, gone, d)| Old { a, b, c, gone, d }).collect();
        let o = run(t, Export::new().tasks(&table).add(0, &states));
        let got: Vec<New> = counter_states(&o);
        let want: Vec<New> = olds
            .iter()
            .map(|&(a, b, c, _, d)| New { d, bee: b.into(), a: a.into(), c: c.into(), added: 0x77, reserved: 0 })
            .collect();
        prop_assert_eq!(got, want);
        prop_assert_eq!(&o.seen.converted[0].4, r#"fields +["added", "reserved"] -["gone"]"#);
    }

    #[test]
    fn damaged_exports_are_refused_never_panic(at in 0usize..4096, value: u8) {
        let (mut area, end) = v1_export(4).finish();
        let bytes = crate::record::bytes_of_mut(&mut area);
        bytes[at % end] ^= value | 1;
        let at = end.next_multiple_of(8);
        let exported: &'static [u8] = Box::leak(bytes[..at].to_vec().into_boxed_slice());
        let mut out = vec![0u64; 16384];
        let _ = reconcile::<task_table::V1, _>(
            request(),
            &running(),
            &Target::v3().image(),
            exported,
            0,
            crate::record::bytes_of_mut(&mut out),
            &mut Seen::default(),
        );
    }
}
