//! A fault at each phase of a swap (issue 13), injected by request flags: after
//! staging, in the pre-flight, at the quiesce (a CPU that never parks), after the export,
//! in the reconciliation and in each conversion (rolled back: the old kernel runs on),
//! in the new kernel's resume and its first scheduling round (reverted by the health
//! window). Each test checks where the VM ends up, that every task is continuous, that
//! the report names the phase, and that a following swap works.

use hotkernel::update::PushOptions;
use hotkernel_tests::packages::package;
use hotkernel_tests::swaps::{expect_failed, expect_failed_swap, swap_to};
use hotkernel_tests::{assert_continuous, Guest, StepRules, VmConfig};
use image_format::kinds::{COUNTER, LCG, TASK_TABLE};
use image_format::mailbox::{RequestFlags, Status};

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

/// Past the point of no return only the health window can take a swap back: an
/// injected failure there without one would lose the VM, so it is refused before
/// anything stops (and found by the live-guest fuzzer, which sent both bits).
#[test]
fn a_fault_injected_past_the_overlay_without_a_health_window_is_refused() {
    let name = "a_fault_injected_past_the_overlay_without_a_health_window_is_refused";
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(2));
    g.stage_ok(&package("v2"));
    for inject in [
        RequestFlags::INJECT_FAIL_IN_RESUME,
        RequestFlags::INJECT_FAIL_FIRST_ROUND,
    ] {
        let reason = expect_failed_swap(
            &mut g,
            &format!("{name} ({inject:?})"),
            inject | RequestFlags::NO_HEALTH_WINDOW,
            Status::BadRequest,
            "v1",
            1,
        );
        assert!(
            reason.contains("needs a health window") && reason.contains("the VM would be lost"),
            "the reason says why: {reason}"
        );
    }
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
