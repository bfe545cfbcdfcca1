//! Swaps: the running kernel replaces itself and every task carries on.
//!
//! Each swap is checked the same way (`hotkernel_tests::swaps::swap_to`): stage the
//! package, take a snapshot right before the apply and one right after it, and require
//! continuity between them (no task lost, no value skipped or repeated), an applied
//! report whose image bases are the kernel base (the new image was staged elsewhere and
//! overlaid onto it), and the status block naming the new image. Swaps that fail on
//! purpose are in `faults.rs` (a fault at each phase) and `window.rs` (the health
//! window).

use hotkernel_tests::packages::package;
use hotkernel_tests::swaps::{swap_to, Swapped};
use hotkernel_tests::{assert_continuous, tasks_of, Guest, StepRules, VmConfig};
use image_format::kinds::{COUNTER, LCG, TASK_TABLE};
use image_format::mailbox::report::{Method, Snapshot, SwapReport};
use image_format::mailbox::{RequestFlags, Status};
use image_format::package::parse_header;
use image_format::RecordKind;
use image_format::TaskKind;
use updater::records::task_table::flags::INITIALISED_BY_UPDATE;

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

/// A park asked for right after the new kernel released the CPUs into itself — before
/// they have left the park stub (the injection parks before it wakes them) — must wait
/// for them to leave: a released CPU reads where to go only when it runs again, and a
/// park that set "back where you parked" under it sent it into the old kernel's stack
/// (the fuzzer's "stage, swap, then snapshot at once": a corrupt heap, counters with
/// values from nowhere, a triple fault).
#[test]
fn a_park_at_once_after_the_release_into_the_new_kernel_keeps_every_cpu_in_it() {
    let name = "a_park_at_once_after_the_release_into_the_new_kernel_keeps_every_cpu_in_it";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(4));
    for (boot_seq, variant) in [(1, "twin"), (2, "v1"), (3, "v2")] {
        let pkg = package(variant);
        let label = parse_header(&pkg).unwrap().summary().label;
        g.stage_ok(&pkg);
        let before = g.snapshot();
        let report = match g.apply(RequestFlags::INJECT_PARK_IN_RESUME) {
            Ok(r) => r,
            Err(refused) => panic!(
                "{name} ({variant}): the swap was refused: {refused}\n{}",
                g.console_tail(30)
            ),
        };
        let after = g.snapshot();
        assert_continuous(
            &format!("{name} ({variant})"),
            &before,
            &after,
            StepRules::default(),
            &[],
        );
        assert_eq!(report.cpus_parked, 3, "{report:?}");
        g.assert_running(label.as_str(), boot_seq + 1);
        // (How many it waited for depends on how far the released CPUs got meanwhile.)
        let console = g.console_tail(400);
        assert!(
            console.contains("injected park in the resume: ")
                && console.contains("CPUs parked and released"),
            "{name} ({variant}): the new kernel parked at once:\n{}",
            g.console_tail(30)
        );
        // Every CPU schedules in the new kernel, and the tasks carry on from there.
        assert_eq!(g.status().cpus_online, 4);
        let later = g.wait_all_progress(&after, &[]);
        assert_continuous(
            &format!("{name} ({variant}, later)"),
            &after,
            &later,
            StepRules::default(),
            &[],
        );
    }
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
