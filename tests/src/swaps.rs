//! Swaps as the integration tests make them: stage a variant's package, snapshot right
//! before and after the apply, and check continuity and the report ([`swap_to`]); or
//! expect a failed swap — rolled back or reverted — with the old kernel running on and
//! every task continuous ([`expect_failed_swap`]). Used by `tests/swap.rs` (swaps that
//! apply), `tests/faults.rs` (a fault at each phase) and `tests/window.rs` (the health
//! window).

use hotkernel::continuity::Continuity;
use hotkernel::update::Refused;
use image_format::mailbox::report::{Method, Outcome, Report, Snapshot, SwapReport};
use image_format::mailbox::{RequestFlags, Status};
use image_format::package::parse_header;
use image_format::TaskKind;

use crate::packages::package;
use crate::{assert_continuous, Guest, StepRules};

/// Where the kernel image runs, before and after every swap.
pub const KERNEL_BASE: u64 = 0xffff_ffff_8000_0000;
/// Where a new image is laid out and relocated first.
pub const STAGING_WINDOW: u64 = 0xffff_ffff_9000_0000;

/// One applied swap and the snapshots around it.
pub struct Swapped {
    pub report: SwapReport,
    pub before: Snapshot,
    pub after: Snapshot,
    pub continuity: Continuity,
}

/// Prints a swap report on stderr, one test line per field that matters.
pub fn print_report(name: &str, r: &SwapReport) {
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
pub fn swap_to(
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
pub fn expect_failed_swap(
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
pub fn expect_failed(
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
