//! Records that describe themselves, end to end: layout changes a kernel developer
//! makes without writing a converter go in live (converted by field), the ones that
//! would reinterpret state are refused at staging — with the old kernel and every task
//! intact — and the machine's own layout (a larger heap) is taken over. Every case is a
//! variant edit (`tests/variants/`), the path a developer takes: edit, build, swap.

use hotkernel::update::{self, PushOptions};
use hotkernel::Error;
use hotkernel_tests::packages::package;
use hotkernel_tests::{assert_continuous, expect_lines, tasks_of, Guest, StepRules, VmConfig};
use image_format::kinds::{COUNTER, TASK_TABLE};
use image_format::mailbox::report::{Method, Outcome, SwapReport};
use image_format::mailbox::Status;
use image_format::{RecordKind, TaskKind};

/// How each record kind crossed: `(kind, from, to, method)` of every stage.
fn methods(r: &SwapReport) -> Vec<(RecordKind, u16, u16, Method)> {
    r.conversions
        .iter()
        .map(|c| (c.kind, c.from.get(), c.to.get(), c.method))
        .collect()
}

/// Stages and applies `variant`, checking continuity across the swap; returns the
/// report and the snapshot after it.
#[track_caller]
fn swap(
    g: &mut Guest,
    name: &str,
    variant: &str,
) -> (SwapReport, image_format::mailbox::report::Snapshot) {
    g.stage_ok(&package(variant));
    let before = g.snapshot();
    let report = g.apply_ok();
    let after = g.snapshot();
    eprintln!("{name}: {report}");
    assert_eq!(report.outcome, Outcome::Applied);
    let c = assert_continuous(name, &before, &after, StepRules::default(), &[]);
    assert_eq!(
        c.tasks_compared,
        before.tasks.len(),
        "every task carried on"
    );
    (report, after)
}

/// A refusal at staging, by the guest (the host's own check is skipped to reach it):
/// the status and the message; the old kernel runs on with every task continuing.
#[track_caller]
fn refused_at_staging(g: &mut Guest, name: &str, variant: &str, status: Status) -> String {
    let pkg = package(variant);
    // The host refuses first, before anything is pushed.
    let (host, host_status) =
        match update::stage(&mut g.mailbox, &pkg, &PushOptions::default(), |_| {}) {
            Err(Error::RefusedBeforePush(h)) => (h.to_string(), h.status),
            other => panic!("{name}: the host check let {variant} through: {other:?}"),
        };
    eprintln!("{name}: host: {host}");
    let before = g.snapshot();
    let refused = match g.stage_unchecked(&pkg) {
        Ok(_) => panic!("{name}: the guest staged {variant}"),
        Err(r) => r,
    };
    eprintln!("{name}: guest: {:?}: {}", refused.status, refused.message);
    assert_eq!(refused.status, status, "{name}: {refused}");
    assert_eq!(
        host_status, status,
        "{name}: the host says what the guest would"
    );
    assert!(
        host.ends_with(&refused.message),
        "{name}: the host and the guest give the same reason:\n  host:  {host}\n  guest: {}",
        refused.message
    );
    let after = g.wait_all_progress(&before, &[]);
    let c = assert_continuous(name, &before, &after, StepRules::default(), &[]);
    assert_eq!(c.tasks_compared, before.tasks.len());
    g.assert_running("v1", 1);
    refused.message
}

/// (a) A field added with a default, no converter: converted by field; every other
/// field continues and the new one has its default.
#[test]
fn a_field_added_with_a_default_swaps_live_converted_by_field() {
    let name = "a_field_added_with_a_default_swaps_live_converted_by_field";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let (report, after) = swap(&mut g, name, "fields");
    let counter = report
        .conversions
        .iter()
        .find(|c| c.kind == COUNTER)
        .expect("a counter-state entry in the report");
    assert_eq!(
        (counter.from.get(), counter.to.get(), counter.method),
        (1, 2, Method::Fields),
        "{counter}"
    );
    assert_eq!((counter.added, counter.dropped), (1, 0));
    assert_eq!(counter.names, "+mark");
    assert!(
        counter.to_string().contains("converted by fields (+mark)"),
        "{counter}"
    );
    // Everything else crossed as it stood.
    assert!(
        methods(&report)
            .iter()
            .all(|&(kind, _, _, m)| kind == COUNTER || m == Method::Unchanged),
        "{:?}",
        methods(&report)
    );
    let counters = tasks_of(&after, TaskKind::COUNTER);
    assert!(!counters.is_empty());
    for t in counters {
        assert_eq!(t.values[3], 41, "counter {} has the declared default", t.id);
    }
}

/// (b) The task-table entry's fields reordered, no converter: converted by field.
#[test]
fn a_task_table_whose_fields_are_reordered_swaps_live() {
    let name = "a_task_table_whose_fields_are_reordered_swaps_live";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let (report, _) = swap(&mut g, name, "reorder");
    let table: Vec<_> = methods(&report)
        .into_iter()
        .filter(|c| c.0 == TASK_TABLE)
        .collect();
    assert_eq!(table, [(TASK_TABLE, 1, 2, Method::Fields)]);
    let c = report
        .conversions
        .iter()
        .find(|c| c.kind == TASK_TABLE)
        .unwrap();
    assert_eq!((c.added, c.dropped), (0, 0), "only moved: {c}");
}

/// (c) A layout change under the same schema version is refused at staging, by the
/// host and by the guest, naming the fields and asking for the bump.
#[test]
fn a_layout_change_without_a_version_bump_is_refused_at_staging() {
    let name = "a_layout_change_without_a_version_bump_is_refused_at_staging";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let why = refused_at_staging(&mut g, name, "unbumped", Status::LayoutUnbumped);
    assert!(why.contains("lcg-state v1"), "{why}");
    assert!(
        why.contains("`seed` changed") && why.contains("`x` changed"),
        "{why}"
    );
    assert!(
        why.contains("bump the schema version of lcg-state"),
        "{why}"
    );
    // The LCG streams were not scrambled: their rule and values carry on (checked by
    // the continuity above); they are still v1's.
    assert!(tasks_of(&g.snapshot(), TaskKind::LCG)
        .iter()
        .all(|t| t.values[3] == 1));
}

/// (d) A narrowing without a converter is refused naming the field and the rule.
#[test]
fn a_narrowing_without_a_converter_is_refused_naming_the_field() {
    let name = "a_narrowing_without_a_converter_is_refused_naming_the_field";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let why = refused_at_staging(&mut g, name, "narrow", Status::SchemaUnconvertible);
    assert!(
        why.contains("counter-state v1→v2: field `count` narrowed from u64 to u32"),
        "{why}"
    );
    assert!(why.contains("needs a converter"), "{why}");
}

/// The machine's own layout: a larger heap is mapped at staging, and after the swap the
/// kernel allocates into its new part (which the old kernel could not).
#[test]
fn a_swap_to_a_larger_heap_maps_it_and_allocates_into_the_new_part() {
    let name = "a_swap_to_a_larger_heap_maps_it_and_allocates_into_the_new_part";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let alloc = |g: &Guest| {
        let from = g.vm.serial_lines().len();
        g.vm.send_line("alloc 24").expect("typing on the console");
        expect_lines(&g.vm, from, &["alloc:"])[0].text.clone()
    };
    let before = alloc(&g);
    eprintln!("{name}: v1: {before}");
    assert!(
        before.contains("cannot allocate 24 MiB: the heap is 16 MiB"),
        "{before}"
    );
    let (stage, answer) = g.stage(&package("heap32")).expect("heap32 staged");
    let _ = stage;
    let message = answer.response.message.to_string();
    eprintln!("{name}: staged: {message}");
    assert!(
        message.contains("heap grows 16384 → 32768 KiB (4096 pages mapped now)"),
        "{message}"
    );
    let before = g.snapshot();
    let report = g.apply_ok();
    let after = g.snapshot();
    assert_continuous(name, &before, &after, StepRules::default(), &[]);
    eprintln!("{name}: {report}");
    let after = alloc(&g);
    eprintln!("{name}: heap32: {after}");
    // "alloc: 24 MiB at …, offsets A..B MiB of the 32 MiB heap, every page written"
    let offsets = after
        .split("offsets ")
        .nth(1)
        .and_then(|s| s.split(" MiB").next())
        .expect("the offsets in the heap");
    let (_, end) = offsets.split_once("..").expect("A..B");
    let end: u64 = end.parse().expect("a number of MiB");
    assert!(after.contains("of the 32 MiB heap"), "{after}");
    assert!(
        end > 16,
        "the block reaches into the new part of the heap: {after}"
    );
}

/// Unchanged state costs nothing: after a swap between two builds with the same
/// layouts, every run queue's records are the exported entries, adopted where they
/// stood (the new kernel says how many of its record pools it took in place).
#[test]
fn records_whose_layout_did_not_change_are_adopted_where_they_stood() {
    let name = "records_whose_layout_did_not_change_are_adopted_where_they_stood";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(4));
    let from = g.vm.serial_lines().len();
    let (report, _) = swap(&mut g, name, "twin");
    assert!(
        report
            .conversions
            .iter()
            .all(|c| c.method == Method::Unchanged),
        "{report}"
    );
    let line = expect_lines(&g.vm, from, &["record pools where they stood"])[0]
        .text
        .clone();
    eprintln!("{name}: {line}");
    // "adopted N tasks: K of P record pools where they stood"
    let counts = line.split("tasks: ").nth(1).expect("the counts");
    let mut words = counts.split_whitespace();
    let k: u32 = words.next().and_then(|w| w.parse().ok()).expect("K");
    let p: u32 = words.nth(1).and_then(|w| w.parse().ok()).expect("P");
    assert!(p > 0 && k == p, "every pool in place: {line}");
}
