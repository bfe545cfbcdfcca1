//! A swap's health window (docs/ARCHITECTURE.md): a new kernel that fails after the
//! overlay — its first step panics, takes a page fault, or a CPU never schedules again —
//! is taken back, the old kernel resuming from the records it exported with every task
//! continuous; the copy overlay, which could not be taken back, is refused with a window;
//! a good swap commits and frees what the window kept; and requests that arrive while a
//! window is open do not disturb it.

use std::time::Duration;

use hotkernel_tests::packages::package;
use hotkernel_tests::swaps::{expect_failed_swap, swap_to};
use hotkernel_tests::{assert_continuous, expect_lines, Guest, StepRules, VmConfig};
use image_format::mailbox::report::Outcome;
use image_format::mailbox::{Command, Request, RequestFlags, Status};

/// Sends `Apply` with a health window of `window_ms` and returns its sequence number
/// without waiting for the answer (the new kernel gives it once the window closed).
fn apply_without_waiting(g: &mut Guest, window_ms: u64) -> u64 {
    let seq = g.mailbox.next_seq();
    let mut request = Request::new(seq, Command::Apply);
    request.args[0] = window_ms;
    if let Err(e) = g.mailbox.send(&request) {
        panic!("sending the apply: {e}");
    }
    seq
}

/// Requests that come while a failing new kernel's window is open (one CPU never
/// schedules again, so the window lasts to its deadline): a snapshot is answered by
/// that kernel (what it reports is lost with it if the swap is taken back, like any
/// answer given inside the window); an update (`PatchRemove` here) is refused `Busy`
/// naming the window. The window then reverts the swap as it would have, and the old
/// kernel runs on with every task continuous from before the swap.
#[test]
fn requests_inside_a_window_that_reverts_are_answered_and_the_revert_happens() {
    println!("requests_inside_a_window_that_reverts_are_answered_and_the_revert_happens");
    let mut g = Guest::boot(VmConfig::variant("v1").cpus(4));
    g.stage_ok(&package("stuck-cpu"));
    let before = g.snapshot();
    let from = g.vm.serial_lines().len();
    let seq = apply_without_waiting(&mut g, 3000);
    expect_lines(&g.vm, from, &["health window open"]);
    let snap_seq = g.mailbox.next_seq();
    if let Err(e) = g.mailbox.send(&Request::new(snap_seq, Command::Snapshot)) {
        panic!("sending the snapshot: {e}");
    }
    let snapshot = match g
        .mailbox
        .wait_done(snap_seq, Duration::from_secs(60), |_| {})
    {
        Ok(a) => a,
        Err(e) => panic!("the snapshot's answer: {e}\n{}", g.console_tail(40)),
    };
    assert_eq!(
        snapshot.response.status,
        Status::Ok,
        "{}",
        snapshot.response.message
    );
    let remove_seq = g.mailbox.next_seq();
    if let Err(e) = g
        .mailbox
        .send(&Request::new(remove_seq, Command::PatchRemove))
    {
        panic!("sending the patch removal: {e}");
    }
    let remove = match g
        .mailbox
        .wait_done(remove_seq, Duration::from_secs(60), |_| {})
    {
        Ok(a) => a,
        Err(e) => panic!("the removal's answer: {e}\n{}", g.console_tail(40)),
    };
    assert_eq!(
        remove.response.status,
        Status::Busy,
        "{}",
        remove.response.message
    );
    assert!(
        remove.response.message.contains("health window"),
        "{}",
        remove.response.message
    );
    let answer = match g.mailbox.wait_done(seq, Duration::from_secs(60), |_| {}) {
        Ok(a) => a,
        Err(e) => panic!("the swap's answer: {e}\n{}", g.console_tail(40)),
    };
    assert_eq!(
        answer.response.status,
        Status::Reverted,
        "{}\n{}",
        answer.response.message,
        g.console_tail(40)
    );
    let after = g.snapshot();
    assert_continuous(
        "across the revert",
        &before,
        &after,
        StepRules::default(),
        &[],
    );
    g.assert_running("v1", 1);
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
