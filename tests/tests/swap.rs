//! Swaps: the running kernel replaces itself and every task carries on.
//!
//! Each swap is checked the same way ([`swap_to`]): stage the package, take a snapshot
//! right before the apply and one right after it, and require continuity between them
//! (no task lost, no value skipped or repeated), an applied report whose image bases
//! are the kernel base (the new image was staged elsewhere and overlaid onto it), and
//! the status block naming the new image. Failed swaps (rollbacks, a CPU that never
//! parks) must leave the old kernel running with its state intact, and a later swap
//! must still work.

use hotkernel::continuity::Continuity;
use hotkernel::update::{PushOptions, Refused};
use hotkernel_tests::packages::package;
use hotkernel_tests::{assert_continuous, tasks_of, Guest, StepRules, VmConfig};
use image_format::kinds::{COUNTER, LCG, TASK_TABLE};
use image_format::mailbox::report::{Method, Outcome, Report, Snapshot, SwapReport};
use image_format::mailbox::{RequestFlags, Status};
use image_format::package::parse_header;
use image_format::RecordKind;
use image_format::TaskKind;
use updater::records::task_table::flags::INITIALISED_BY_UPDATE;

/// Where the kernel image runs, before and after every swap.
const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;
/// Where a new image is laid out and relocated first.
const STAGING_WINDOW: u64 = 0xffff_ffff_9000_0000;

/// One applied swap and the snapshots around it.
struct Swapped {
    report: SwapReport,
    before: Snapshot,
    after: Snapshot,
    continuity: Continuity,
}

fn lcg_rules(s: &Snapshot) -> Vec<u64> {
    tasks_of(s, TaskKind::LCG)
        .iter()
        .map(|t| t.values[3])
        .collect()
}

/// The conversions of `kind` in a report, as `(from, to, method)` stages (records that
/// crossed unchanged are not conversions).
fn steps_of(r: &SwapReport, kind: RecordKind) -> Vec<(u16, u16, Method)> {
    r.conversions
        .iter()
        .filter(|c| c.kind == kind && c.method != Method::Unchanged)
        .map(|c| (c.from.get(), c.to.get(), c.method))
        .collect()
}

/// The task-table conversions of a report, as `(from, to)` steps.
fn task_table_steps(r: &SwapReport) -> Vec<(u16, u16)> {
    steps_of(r, TASK_TABLE)
        .into_iter()
        .map(|(from, to, _)| (from, to))
        .collect()
}

fn print_report(name: &str, r: &SwapReport) {
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| format!("{} {} µs", p.phase.name(), p.ns / 1000))
        .collect();
    let conversions: Vec<String> = r
        .conversions
        .iter()
        .filter(|c| c.method != Method::Unchanged)
        .map(|c| c.to_string())
        .collect();
    eprintln!(
        "{name}: {} → {}: {:?}, downtime {} µs, {} CPUs parked, tasks {} → {}\n  phases: {}\n  \
         conversions: {}\n  warnings: {:?}",
        r.from,
        r.to,
        r.outcome,
        r.downtime_ns / 1000,
        r.cpus_parked,
        r.tasks_before,
        r.tasks_after,
        phases.join(", "),
        conversions.join(", "),
        r.warnings
    );
}

/// Swaps the guest to `variant` and checks the swap (see the module doc). Tasks of
/// `dropped` kinds may disappear. The guest's boot sequence goes from `boot_seq` to
/// `boot_seq + 1`.
#[track_caller]
fn swap_to(
    g: &mut Guest,
    name: &str,
    variant: &str,
    dropped: &[TaskKind],
    boot_seq: u64,
) -> Swapped {
    let pkg = package(variant);
    let label = parse_header(&pkg).unwrap().summary().label;
    let cpus = g.status().cpus_online;
    let from = g.status().image;
    g.stage_ok(&pkg);
    let before = g.snapshot();
    let report = g.apply_ok();
    let after = g.snapshot();
    print_report(name, &report);
    let continuity = assert_continuous(name, &before, &after, StepRules::default(), dropped);
    eprintln!(
        "{name}: {} tasks continuous, {} dropped, {} added, {} steps between the snapshots",
        continuity.tasks_compared,
        continuity.tasks_dropped,
        continuity.tasks_added,
        continuity.steps_between
    );
    assert_eq!(report.outcome, Outcome::Applied);
    assert_eq!(report.from, from, "the report names the image that ran");
    assert_eq!(report.to.label, label, "the report names the new image");
    assert_eq!(report.old_image_base, KERNEL_BASE, "{report:?}");
    assert_eq!(report.new_image_base, KERNEL_BASE, "{report:?}");
    assert_eq!(report.staging_base, STAGING_WINDOW, "{report:?}");
    assert_ne!(report.staging_base, report.new_image_base);
    assert_eq!(report.cpus_parked, cpus - 1, "every other CPU parked");
    assert_eq!(report.tasks_before as usize, before.tasks.len());
    assert_eq!(report.tasks_after as usize, after.tasks.len());
    assert!(report.downtime_ns > 0, "{report:?}");
    g.assert_running(label.as_str(), boot_seq + 1);
    Swapped {
        report,
        before,
        after,
        continuity,
    }
}

/// Applies the staged package with `flags`, expecting `status` and a rolled-back swap
/// report; checks continuity from right before to right after and that the old kernel
/// (`label`, `boot_seq`) still runs. Returns the rollback reason.
#[track_caller]
#[allow(clippy::result_large_err)] // a refusal, once per test
fn expect_failed_swap(
    g: &mut Guest,
    name: &str,
    flags: RequestFlags,
    status: Status,
    label: &str,
    boot_seq: u64,
) -> String {
    expect_failed(g, name, |g| g.apply(flags), status, label, boot_seq)
}

/// [`expect_failed_swap`] with the apply request made by `apply`.
fn expect_failed(
    g: &mut Guest,
    name: &str,
    apply: impl FnOnce(&mut Guest) -> Result<SwapReport, Refused>,
    status: Status,
    label: &str,
    boot_seq: u64,
) -> String {
    let before = g.snapshot();
    let refused: Refused = match apply(g) {
        Ok(r) => panic!("{name}: the swap was applied: {r:?}"),
        Err(r) => r,
    };
    let after = g.snapshot();
    eprintln!(
        "{name}: {:?} (code {}): {}",
        refused.status,
        refused.status.code(),
        refused.message
    );
    assert_eq!(refused.status, status, "{name}: {refused}");
    let Some(Report::Swap(report)) = &refused.report else {
        panic!("{name}: no swap report with the refusal: {refused:?}");
    };
    print_report(name, report);
    let Outcome::RolledBack { reason } = &report.outcome else {
        panic!("{name}: refused but the report says {:?}", report.outcome);
    };
    let c = assert_continuous(name, &before, &after, StepRules::default(), &[]);
    eprintln!(
        "{name}: {} tasks continuous across the failed swap, {} steps",
        c.tasks_compared, c.steps_between
    );
    assert_eq!(
        after.tasks.len(),
        before.tasks.len(),
        "no task added or lost"
    );
    // The state the status block shows is `the_status_block_says_running_again_after_*`.
    g.assert_image(label, boot_seq);
    // The old kernel did not only keep its state: every task runs on.
    g.wait_all_progress(&after, &[]);
    reason.clone()
}

fn v1_to_v2_on(cpus: u32) {
    let plural = if cpus == 1 { "cpu" } else { "cpus" };
    let name = format!("v1_to_v2_on_{cpus}_{plural}");
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(cpus));
    let s = swap_to(&mut g, &name, "v2", &[], 1);
    assert!(
        lcg_rules(&s.before).iter().all(|&r| r == 1),
        "v1 runs LCG rule 1: {:?}",
        lcg_rules(&s.before)
    );
    let rules = lcg_rules(&s.after);
    assert!(
        !rules.is_empty() && rules.iter().all(|&r| r == 2),
        "v2 runs LCG rule 2: {rules:?}"
    );
    // The task table's flags narrowed and the LCG value changed meaning: converters;
    // the counter only gained fields with defaults: converted by field.
    assert_eq!(steps_of(&s.report, TASK_TABLE), [(1, 2, Method::Converter)]);
    assert_eq!(steps_of(&s.report, LCG), [(1, 2, Method::Converter)]);
    assert_eq!(steps_of(&s.report, COUNTER), [(1, 2, Method::Fields)]);
    let counter = s
        .report
        .conversions
        .iter()
        .find(|c| c.kind == COUNTER)
        .unwrap();
    assert_eq!(
        (counter.added, counter.dropped, counter.names.as_str()),
        (2, 0, "+stride +last_cpu"),
        "{counter}"
    );
    assert!(
        tasks_of(&s.after, TaskKind::COUNTER)
            .iter()
            .all(|t| t.values[1] == 1),
        "every v1 counter has v2's declared default stride, 1:\n{}",
        s.after
    );
    assert_eq!(s.continuity.tasks_compared, s.before.tasks.len());
    // Every task runs on under v2, on every CPU.
    let later = g.wait_all_progress(&s.after, &[]);
    let cpus_with_tasks: std::collections::BTreeSet<u16> =
        later.tasks.iter().map(|t| t.cpu).collect();
    assert_eq!(cpus_with_tasks.len(), cpus as usize, "{later}");
}

#[test]
fn v1_to_v2_on_1_cpu() {
    v1_to_v2_on(1);
}

#[test]
fn v1_to_v2_on_2_cpus() {
    v1_to_v2_on(2);
}

#[test]
fn v1_to_v2_on_4_cpus() {
    v1_to_v2_on(4);
}

/// After a swap to v3: the tickers (an optional kind v3 lacks) are gone with a warning,
/// the table tasks (a kind new in v3, created by the swap's initialisation) are there,
/// flagged as such, and make progress.
#[track_caller]
fn check_arrival_in_v3(g: &mut Guest, name: &str, s: &Swapped) {
    let tickers = tasks_of(&s.before, TaskKind::TICKER).len();
    assert!(tickers > 0, "tickers ran before:\n{}", s.before);
    assert!(
        tasks_of(&s.after, TaskKind::TICKER).is_empty(),
        "{}",
        s.after
    );
    assert_eq!(s.continuity.tasks_dropped, tickers);
    assert!(
        s.report.warnings.iter().any(|w| w.contains("ticker")),
        "{name}: a warning names the dropped kind: {:?}",
        s.report.warnings
    );
    let tables = tasks_of(&s.after, TaskKind::TABLE);
    assert!(!tables.is_empty(), "{name}: no table tasks:\n{}", s.after);
    assert!(tasks_of(&s.before, TaskKind::TABLE).is_empty());
    for t in &tables {
        assert_ne!(
            u32::from(t.flags) & INITIALISED_BY_UPDATE,
            0,
            "table task {} is not flagged as created by the update",
            t.id
        );
    }
    assert_eq!(s.continuity.tasks_added, tables.len());
    // The report lists them by kind.
    let listed: Vec<(&str, u32)> = s
        .report
        .initialised
        .iter()
        .map(|i| (i.name.as_str(), i.count))
        .collect();
    assert_eq!(listed, [("table", tables.len() as u32)], "{:?}", s.report);
    let later = g.wait_all_progress(&s.after, &[]);
    let steps: Vec<u64> = tasks_of(&later, TaskKind::TABLE)
        .iter()
        .map(|t| t.steps)
        .collect();
    eprintln!(
        "{name}: {} table tasks, steps since: {steps:?}",
        tables.len()
    );
}

#[test]
fn v1_to_v2_to_v3_converts_drops_tickers_and_adds_table_tasks() {
    let name = "v1_to_v2_to_v3_converts_drops_tickers_and_adds_table_tasks";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let first = swap_to(&mut g, &format!("{name} (v1 → v2)"), "v2", &[], 1);
    assert_eq!(task_table_steps(&first.report), [(1, 2)]);
    assert!(lcg_rules(&first.after).iter().all(|&r| r == 2));
    let second = swap_to(
        &mut g,
        &format!("{name} (v2 → v3)"),
        "v3",
        &[TaskKind::TICKER],
        2,
    );
    // v2 → v3 is mechanical for the task table: by field, no converter.
    assert_eq!(
        steps_of(&second.report, TASK_TABLE),
        [(2, 3, Method::Fields)]
    );
    check_arrival_in_v3(&mut g, name, &second);
}

#[test]
fn v1_to_v3_converts_the_task_table_in_two_steps() {
    let name = "v1_to_v3_converts_the_task_table_in_two_steps";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let s = swap_to(&mut g, name, "v3", &[TaskKind::TICKER], 1);
    // A mixed chain: v2's converter (the flags narrow), then by field to v3.
    assert_eq!(
        steps_of(&s.report, TASK_TABLE),
        [(1, 2, Method::Converter), (2, 3, Method::Fields)],
        "{:?}",
        s.report.conversions
    );
    let entries: Vec<u32> = s
        .report
        .conversions
        .iter()
        .filter(|c| c.kind == TASK_TABLE)
        .map(|c| c.entries)
        .collect();
    assert!(
        entries.iter().all(|&n| n as usize == s.before.tasks.len()),
        "every task-table entry converted at each step: {entries:?}"
    );
    assert!(lcg_rules(&s.after).iter().all(|&r| r == 2));
    check_arrival_in_v3(&mut g, name, &s);
}

/// v3 needs at least 256 KiB more image than v2 (its lookup table): the running
/// kernel's growth window takes it.
#[test]
fn v2_to_v3_grows_the_image_by_at_least_256_kib() {
    let name = "v2_to_v3_grows_the_image_by_at_least_256_kib";
    let span = |variant: &str| {
        parse_header(&package(variant))
            .unwrap()
            .geometry()
            .image_span
    };
    let (v2, v3) = (span("v2"), span("v3"));
    eprintln!(
        "{name}: image span v2 {v2:#x}, v3 {v3:#x} (+{} KiB)",
        (v3 - v2) >> 10
    );
    assert!(v3 >= v2 + (256 << 10), "v3 is not 256 KiB larger than v2");
    let mut g = Guest::boot(VmConfig::variant("v2").cpus(2));
    let s = swap_to(&mut g, name, "v3", &[TaskKind::TICKER], 1);
    assert_eq!(task_table_steps(&s.report), [(2, 3)]);
    check_arrival_in_v3(&mut g, name, &s);
}

/// Twenty swaps in a row, alternating between v1 and its twin (same code and state,
/// another version): continuity after each one, the same staging window each time, and
/// no memory lost from one round trip to the next.
#[test]
fn twenty_swaps_in_a_row_between_v1_and_twin() {
    let name = "twenty_swaps_in_a_row_between_v1_and_twin";
    const SWAPS: u64 = 20;
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let capacity = g.status().staging_capacity;
    let mut downtimes = Vec::new();
    let mut free_after_round_trip = Vec::new();
    for i in 0..SWAPS {
        let (variant, label) = if i % 2 == 0 {
            ("twin", "v1-twin")
        } else {
            ("v1", "v1")
        };
        let s = swap_to(&mut g, &format!("{name} #{}", i + 1), variant, &[], i + 1);
        assert_eq!(s.report.to.label.as_str(), label);
        assert_eq!(s.continuity.tasks_compared, s.before.tasks.len());
        assert!(
            s.report
                .conversions
                .iter()
                .all(|c| c.method == Method::Unchanged),
            "same schemas: every record taken where it stood: {:?}",
            s.report.conversions
        );
        assert_eq!(g.status().staging_capacity, capacity);
        downtimes.push(s.report.downtime_ns / 1000);
        if i % 2 == 1 {
            // Read after two more polls: the old image's frames are reclaimed by the
            // time the swap is answered, and each poll rewrites the status block.
            g.wait_polls(2);
            free_after_round_trip.push(g.status().free_frames);
        }
    }
    eprintln!(
        "{name}: downtimes (µs) {downtimes:?}; frames free after each round trip \
         {free_after_round_trip:?}"
    );
    // The staging buffer and window are reused: after the first round trip, each round
    // trip leaves the free frames where it found them (a leak of even one staged image
    // per swap would be hundreds of frames).
    let first = free_after_round_trip[0];
    assert!(
        free_after_round_trip.iter().all(|&f| f == first),
        "free frames drift across round trips: {free_after_round_trip:?}"
    );
}

/// Rollback on an injected reconciliation failure, then a normal swap.
#[test]
fn an_injected_reconciliation_failure_rolls_back_with_state_intact() {
    let name = "an_injected_reconciliation_failure_rolls_back_with_state_intact";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    g.stage_ok(&package("v2"));
    let reason = expect_failed_swap(
        &mut g,
        name,
        RequestFlags::INJECT_RECONCILE_FAIL,
        Status::RolledBack,
        "v1",
        1,
    );
    assert!(
        reason.contains("injected") && reason.contains("reconcil"),
        "the reason names the injected failure: {reason}"
    );
    swap_to(&mut g, &format!("{name} (then)"), "v2", &[], 1);
}

/// Rollback when the old kernel fails right after exporting its state, then a normal
/// swap.
#[test]
fn a_failure_after_the_export_rolls_back_with_state_intact() {
    let name = "a_failure_after_the_export_rolls_back_with_state_intact";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    g.stage_ok(&package("v2"));
    let reason = expect_failed_swap(
        &mut g,
        name,
        RequestFlags::INJECT_FAIL_AFTER_EXPORT,
        Status::RolledBack,
        "v1",
        1,
    );
    assert!(
        reason.contains("injected") && reason.contains("export"),
        "the reason names the injected failure: {reason}"
    );
    swap_to(&mut g, &format!("{name} (then)"), "v2", &[], 1);
}

/// The `broken` image's task-table converter refuses every entry (a converter bug):
/// staging accepts the image, its reconciliation fails at the swap and the swap rolls
/// back, naming the converter.
#[test]
fn a_bootstrap_whose_converter_fails_rolls_back_with_state_intact() {
    let name = "a_bootstrap_whose_converter_fails_rolls_back_with_state_intact";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    g.stage_ok(&package("broken"));
    let reason = expect_failed_swap(
        &mut g,
        name,
        RequestFlags::empty(),
        Status::RolledBack,
        "v1",
        1,
    );
    assert!(
        reason.contains("task-table") && reason.contains("convert"),
        "the reason names the failing converter: {reason}"
    );
    swap_to(&mut g, &format!("{name} (then v2)"), "v2", &[], 1);
}

/// An AP that never acknowledges the park: the quiesce times out (no hang), nothing
/// changes, every CPU runs its tasks on, and a later swap works.
#[test]
fn a_cpu_that_never_parks_times_out_the_quiesce_and_the_kernel_runs_on() {
    let name = "a_cpu_that_never_parks_times_out_the_quiesce_and_the_kernel_runs_on";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(4));
    g.stage_ok(&package("v2"));
    let reason = expect_failed_swap(
        &mut g,
        name,
        RequestFlags::INJECT_AP_NO_ACK,
        Status::QuiesceTimeout,
        "v1",
        1,
    );
    assert!(
        reason.contains("quiesce") && reason.contains("cpu3"),
        "the reason names the quiesce and the silent CPU: {reason}"
    );
    // Every CPU, the silent one included, still runs tasks.
    let s = g.snapshot();
    let cpus: std::collections::BTreeSet<u16> = s.tasks.iter().map(|t| t.cpu).collect();
    assert_eq!(cpus.len(), 4, "tasks on every CPU:\n{s}");
    g.wait_all_progress(&s, &[]);
    swap_to(&mut g, &format!("{name} (then)"), "v2", &[], 1);
}

/// After a rolled-back swap the old kernel runs on, and its status block must say so.
#[test]
fn the_status_block_says_running_again_after_a_rolled_back_swap() {
    let name = "the_status_block_says_running_again_after_a_rolled_back_swap";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    g.stage_ok(&package("v2"));
    expect_failed_swap(
        &mut g,
        name,
        RequestFlags::INJECT_FAIL_AFTER_EXPORT,
        Status::RolledBack,
        "v1",
        1,
    );
    g.assert_running("v1", 1);
}

/// After a swap abandoned at the quiesce the old kernel runs on, and its status block
/// must say so.
#[test]
fn the_status_block_says_running_again_after_a_quiesce_timeout() {
    let name = "the_status_block_says_running_again_after_a_quiesce_timeout";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(4));
    g.stage_ok(&package("v2"));
    expect_failed_swap(
        &mut g,
        name,
        RequestFlags::INJECT_AP_NO_ACK,
        Status::QuiesceTimeout,
        "v1",
        1,
    );
    g.assert_running("v1", 1);
}

/// A patch made from two variants' ELF files (built once per process).
fn patch_between(old: &str, new: &str) -> Vec<u8> {
    use hotkernel::build::{build_kernel_cached, Variant};
    use patchgen::{make_patch, PatchOptions};
    let elf = |v: &str| {
        let built = build_kernel_cached(&Variant::try_new(v).expect("variant name"))
            .unwrap_or_else(|e| panic!("building {v}: {e}"));
        std::fs::read(&built.elf).unwrap_or_else(|e| panic!("reading {v}'s ELF: {e}"))
    };
    let out = make_patch(&elf(old), &elf(new), &PatchOptions::default())
        .unwrap_or_else(|e| panic!("generating {old}→{new}: {e}"));
    let bytes = out
        .bytes
        .unwrap_or_else(|| panic!("{old}→{new} cannot be hotpatched: {:?}", out.verdicts));
    hotkernel_tests::packages::signed(&bytes)
}

/// Counter increments per step between two snapshots, one per counter task.
fn counter_strides(before: &Snapshot, after: &Snapshot) -> Vec<u64> {
    tasks_of(before, TaskKind::COUNTER)
        .iter()
        .filter_map(|b| {
            let a = after.tasks.iter().find(|a| a.id == b.id)?;
            let steps = a.steps.checked_sub(b.steps).filter(|&s| s > 0)?;
            Some((a.values[0] - b.values[0]) / steps)
        })
        .collect()
}

/// A hotpatch applied after a package was staged changes the text the staging layout
/// compared against (a page that held the new image's bytes may now hold a jump into
/// patch memory). The swap lays the package out again, drops the patch (the new image
/// is another build) and the new kernel runs its own code: counters add 1 again.
#[test]
fn a_patch_applied_after_staging_does_not_survive_into_the_new_kernel() {
    use image_format::mailbox::Command;
    let name = "a_patch_applied_after_staging_does_not_survive_into_the_new_kernel";
    let patch = patch_between("v1", "patch-a");
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(4));
    g.stage_ok(&package("twin"));
    let answer = g
        .mailbox
        .call(
            Command::PatchApply,
            RequestFlags::empty(),
            Some(&patch),
            [0; 4],
            hotkernel::update::REQUEST_TIMEOUT,
            |_| {},
        )
        .expect("delivering the patch");
    assert_eq!(
        answer.response.status,
        Status::Ok,
        "patch applied: {}",
        answer.response.message
    );
    let before = g.snapshot();
    let patched = g.wait_all_progress(&before, &[]);
    let strides = counter_strides(&before, &patched);
    assert!(
        !strides.is_empty() && strides.iter().all(|&s| s == 2),
        "patched counters add 2 per step: {strides:?}"
    );

    let r = g.apply_ok();
    eprintln!(
        "{name}: swapped {} → {}, warnings {:?}",
        r.from, r.to, r.warnings
    );
    assert!(
        r.warnings.iter().any(|w| w.contains("dropped")),
        "the report says the patch was dropped: {:?}",
        r.warnings
    );
    assert!(
        g.vm.serial_log().contains("laid out again"),
        "the staged image was laid out again after the patch:\n{}",
        g.console_tail(30)
    );
    g.assert_running("v1-twin", 2);
    assert_eq!(g.status().patches, 0, "no patch in the new kernel");
    let after = g.snapshot();
    let later = g.wait_all_progress(&after, &[]);
    let strides = counter_strides(&after, &later);
    assert!(
        !strides.is_empty() && strides.iter().all(|&s| s == 1),
        "the new kernel's counters add 1 per step: {strides:?}"
    );
}

/// A kind added the way a developer adds one — the `clock` variant's edit: the kind's
/// file, one line in the list of kinds, the image's version; at most three files — is
/// swapped in live: the swap's initialisation creates its first tasks, which run, are
/// named by the running image (the host was not built with the kind) and continue by
/// their own declared rule.
#[test]
fn a_task_kind_added_by_an_edit_of_three_files_arrives_live_and_runs() {
    let name = "a_task_kind_added_by_an_edit_of_three_files_arrives_live_and_runs";
    let clock = TaskKind::from_raw(9);
    let edit = hotkernel::variant::edit_file(&hotkernel::workspace::root(), "clock");
    let text = std::fs::read_to_string(&edit).expect("the clock variant's edit file");
    let files: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("diff --git a/"))
        .collect();
    eprintln!("{name}: the edit touches {files:?}");
    assert!(
        !files.is_empty() && files.len() <= 3,
        "a new kind touches at most 3 files: {files:?}"
    );
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let s = swap_to(&mut g, name, "clock", &[], 1);
    assert!(tasks_of(&s.before, clock).is_empty(), "{}", s.before);
    let clocks = tasks_of(&s.after, clock);
    assert_eq!(clocks.len(), 2, "two clocks initialised:\n{}", s.after);
    for t in &clocks {
        assert_ne!(
            u32::from(t.flags) & INITIALISED_BY_UPDATE,
            0,
            "clock {} is not flagged as created by the update",
            t.id
        );
    }
    assert_eq!(s.continuity.tasks_added, 2);
    assert_eq!(s.after.kind_name(clock.raw()), "clock");
    let later = g.wait_all_progress(&s.after, &[]);
    let c = assert_continuous(name, &s.after, &later, StepRules::default(), &[]);
    let steps: Vec<u64> = tasks_of(&later, clock)
        .iter()
        .map(|t| t.values[0])
        .collect();
    eprintln!(
        "{name}: {} tasks continuous after the swap; clock steps {steps:?}",
        c.tasks_compared
    );
    assert!(steps.iter().all(|&n| n > 0), "{later}");
}

/// The health window (docs/ARCHITECTURE.md): a new kernel that fails after the overlay —
/// its first step panics, takes a page fault, or a CPU never schedules again — is taken
/// back; the old kernel resumes from the records it exported, every task continuous,
/// and the report names the failure. A later swap works.
fn reverted(name: &str, variant: &str, cpus: u32) -> String {
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(cpus));
    g.stage_ok(&package(variant));
    let reason = expect_failed_swap(
        &mut g,
        name,
        RequestFlags::empty(),
        Status::Reverted,
        "v1",
        1,
    );
    assert!(
        reason.contains("health window") && reason.contains("runs again"),
        "the reason says the swap was taken back: {reason}"
    );
    swap_to(&mut g, &format!("{name} (then)"), "twin", &[], 1);
    reason
}

#[test]
fn a_new_kernel_whose_first_step_panics_is_reverted_with_state_intact() {
    let reason = reverted(
        "a_new_kernel_whose_first_step_panics_is_reverted_with_state_intact",
        "panic-step",
        2,
    );
    assert!(
        reason.contains("panic at kernel/src/tasks/counter.rs:")
            && reason.contains("fails on its first call"),
        "the reason carries the new kernel's panic message and location: {reason}"
    );
}

#[test]
fn a_new_kernel_that_takes_a_page_fault_is_reverted_with_state_intact() {
    let reason = reverted(
        "a_new_kernel_that_takes_a_page_fault_is_reverted_with_state_intact",
        "fault-step",
        2,
    );
    assert!(
        reason.contains("exception 14 (page fault)") && reason.contains("address 0x18"),
        "the reason names the CPU's exception and the faulting address: {reason}"
    );
}

#[test]
fn a_new_kernel_with_a_cpu_that_never_schedules_is_reverted_at_the_deadline() {
    let reason = reverted(
        "a_new_kernel_with_a_cpu_that_never_schedules_is_reverted_at_the_deadline",
        "stuck-cpu",
        4,
    );
    assert!(
        reason.contains("deadline") && reason.contains("cpu3 never scheduled again"),
        "the reason names the missed deadline and the CPU: {reason}"
    );
}

/// The copy overlay writes over the old image's frames, so a health window could not
/// take it back: the combination is refused before anything stops.
#[test]
fn the_copy_overlay_with_a_health_window_is_refused() {
    let name = "the_copy_overlay_with_a_health_window_is_refused";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    g.stage_ok(&package("twin"));
    let reason = expect_failed_swap(
        &mut g,
        name,
        RequestFlags::OVERLAY_COPY,
        Status::BadRequest,
        "v1",
        1,
    );
    assert!(
        reason.contains("copy") && reason.contains("health window"),
        "the reason names the combination: {reason}"
    );
    // Without the window the copy overlay works.
    let before = g.snapshot();
    let r = g
        .apply(RequestFlags::OVERLAY_COPY | RequestFlags::NO_HEALTH_WINDOW)
        .unwrap_or_else(|r| panic!("{name}: copy overlay without a window: {r}"));
    assert_eq!(r.outcome, Outcome::Applied);
    let after = g.snapshot();
    assert_continuous(name, &before, &after, StepRules::default(), &[]);
}

/// A good swap commits once the new kernel is healthy and frees what the window kept:
/// round trips with the window leave the same free memory as round trips without it.
#[test]
fn a_good_swap_commits_and_frees_what_its_window_kept() {
    let name = "a_good_swap_commits_and_frees_what_its_window_kept";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let mut free = Vec::new();
    for (round, flags) in [
        RequestFlags::empty(),
        RequestFlags::empty(),
        RequestFlags::NO_HEALTH_WINDOW,
        RequestFlags::empty(),
    ]
    .into_iter()
    .enumerate()
    {
        for variant in ["twin", "v1"] {
            g.stage_ok(&package(variant));
            let before = g.snapshot();
            let r = g
                .apply(flags)
                .unwrap_or_else(|r| panic!("{name}: round {round} to {variant}: {r}"));
            assert_eq!(r.outcome, Outcome::Applied, "{name}: {r:?}");
            assert!(
                r.warnings.iter().all(|w| !w.contains("no health window")),
                "{name}: {:?}",
                r.warnings
            );
            let after = g.snapshot();
            assert_continuous(name, &before, &after, StepRules::default(), &[]);
        }
        g.wait_polls(2);
        free.push(g.status().free_frames);
    }
    eprintln!("{name}: free frames after each round trip {free:?}");
    assert!(
        free.iter().all(|&f| f == free[0]),
        "the window's frames are freed when it commits: {free:?}"
    );
}

/// A fault at each phase boundary of a swap (issue 13): where the VM ends up, every task
/// continuous, the report naming the phase. (The quiesce — a CPU that never parks — and
/// the failure right after the export are the tests above.)
#[test]
fn a_fault_after_staging_discards_the_staging_and_the_kernel_runs_on() {
    let name = "a_fault_after_staging_discards_the_staging_and_the_kernel_runs_on";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let before = g.snapshot();
    let opts = PushOptions::with_flags(RequestFlags::INJECT_FAIL_AFTER_STAGE);
    let refused = match g.stage_with(&package("v2"), &opts) {
        Ok((r, _)) => panic!("{name}: staged despite the fault: {r:?}"),
        Err(r) => r,
    };
    eprintln!("{name}: {refused}");
    assert_eq!(refused.status, Status::Injected, "{refused}");
    assert!(refused.message.contains("after staging"), "{refused}");
    // The staging was discarded: nothing to apply.
    let nothing = g
        .apply(RequestFlags::empty())
        .expect_err("nothing is staged");
    assert_eq!(nothing.status, Status::NotStaged, "{nothing}");
    let after = g.snapshot();
    assert_continuous(name, &before, &after, StepRules::default(), &[]);
    g.assert_running("v1", 1);
    swap_to(&mut g, &format!("{name} (then)"), "v2", &[], 1);
}

#[test]
fn a_fault_in_the_preflight_is_predicted_at_staging_and_changes_nothing() {
    let name = "a_fault_in_the_preflight_is_predicted_at_staging_and_changes_nothing";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    let before = g.snapshot();
    let opts = PushOptions::with_flags(RequestFlags::INJECT_PREFLIGHT_FAIL);
    let (_, answer) = g
        .stage_with(&package("v2"), &opts)
        .unwrap_or_else(|r| panic!("{name}: staging refused: {r}"));
    let message = answer.response.message.to_string();
    eprintln!("{name}: {message}");
    assert!(
        message.contains("dry run predicts a refusal")
            && message.contains("injected reconciliation failure"),
        "the stage answer predicts the injected refusal: {message}"
    );
    let after = g.snapshot();
    assert_continuous(name, &before, &after, StepRules::default(), &[]);
    g.assert_running("v1", 1);
    // The prediction was the test's fault, not the package's: it swaps.
    swap_to(&mut g, &format!("{name} (then)"), "v2", &[], 1);
}

#[test]
#[allow(clippy::result_large_err)] // a refusal, once per kind
fn a_fault_in_each_conversion_rolls_back_with_state_intact() {
    let name = "a_fault_in_each_conversion_rolls_back_with_state_intact";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    // v2 converts the task table and the LCG state by converter, the counter by field.
    for kind in [TASK_TABLE, LCG, COUNTER] {
        g.stage_ok(&package("v2"));
        let reason = expect_failed(
            &mut g,
            &format!("{name} ({kind})"),
            |g| g.apply_with_converter_fault(kind),
            Status::RolledBack,
            "v1",
            1,
        );
        assert!(
            reason.contains(&format!("injected failure converting {kind}"))
                && reason.contains("conversion phase"),
            "the reason names the record and the phase: {reason}"
        );
    }
    swap_to(&mut g, &format!("{name} (then)"), "v2", &[], 1);
}

#[test]
fn a_fault_in_the_new_kernels_resume_is_reverted_with_state_intact() {
    let name = "a_fault_in_the_new_kernels_resume_is_reverted_with_state_intact";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    g.stage_ok(&package("v2"));
    let reason = expect_failed_swap(
        &mut g,
        name,
        RequestFlags::INJECT_FAIL_IN_RESUME,
        Status::Reverted,
        "v1",
        1,
    );
    assert!(
        reason.contains("injected failure in the new kernel's resume, after the overlay"),
        "the reason names the phase: {reason}"
    );
    swap_to(&mut g, &format!("{name} (then)"), "v2", &[], 1);
}

#[test]
fn a_fault_in_the_new_kernels_first_scheduling_round_is_reverted() {
    let name = "a_fault_in_the_new_kernels_first_scheduling_round_is_reverted";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    g.stage_ok(&package("v2"));
    let reason = expect_failed_swap(
        &mut g,
        name,
        RequestFlags::INJECT_FAIL_FIRST_ROUND,
        Status::Reverted,
        "v1",
        1,
    );
    assert!(
        reason.contains("injected failure in the new kernel's first scheduling round"),
        "the reason names the phase: {reason}"
    );
    swap_to(&mut g, &format!("{name} (then)"), "v2", &[], 1);
}
