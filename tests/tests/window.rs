//! Requests that arrive while a swap's health window is open: the new kernel runs, the
//! old one's frames are still kept for a revert, and the swap has not been reported.
//! Whatever comes in then must not disturb the window, and the swap still commits (or
//! reverts) as it would have.
//!
//! Every test boots its own v1 guest on 4 CPUs.

use std::time::Duration;

use hotkernel_tests::packages::package;
use hotkernel_tests::{assert_continuous, expect_lines, Guest, StepRules, VmConfig};
use image_format::mailbox::{Command, Request, Status};

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
