//! Delivery: a package travels into the running kernel's staging buffer and is
//! verified there. A good package is accepted and named; every bad one is refused with
//! the precise reason, and the running kernel's tasks carry on undisturbed (continuity
//! between a snapshot before and one after, no swap, nothing left staged). Requests the
//! host did not finish writing, or that are not newer than the last one handled, are
//! never acted on. Staging does not stop the other tasks.
//!
//! Every test boots its own v1 guest on 2 CPUs.

use hotkernel::update::Refused;
use hotkernel_tests::packages::{self, package, resealed};
use hotkernel_tests::{
    assert_continuous, guest_seconds, tasks_of, Guest, StepRules, VmConfig, HANG_GUARD,
};
use image_format::mailbox::report::Snapshot;
use image_format::mailbox::{BlockRead, Command, Request, RequestFlags, ResponseState, Status};
use image_format::package::{layout, parse_header};
use image_format::{Capabilities, TaskKind};

const MIB: u64 = 1 << 20;

fn guest() -> Guest {
    Guest::boot(VmConfig::variant("v1").cpus(2))
}

/// The update service's counters from a snapshot: `[last_seq, staged, applied, refused]`.
fn service(s: &Snapshot) -> [u64; 4] {
    let tasks = tasks_of(s, TaskKind::SERVICE);
    assert_eq!(tasks.len(), 1, "one update service:\n{s}");
    tasks[0].values
}

/// After a refusal or an ignored request: no swap happened, nothing is staged, and
/// every task still makes progress.
#[track_caller]
fn assert_nothing_changed(g: &mut Guest, name: &str, after: &Snapshot) {
    g.assert_running("v1", 1);
    match g.apply(RequestFlags::empty()) {
        Err(r) if r.status == Status::NotStaged => {}
        Err(r) => panic!("{name}: apply after it answered {r}, expected NotStaged"),
        Ok(report) => panic!("{name}: something was staged and applied: {report:?}"),
    }
    g.wait_all_progress(after, &[]);
}

/// Offers `pkg` to a fresh guest and expects the refusal `status`, with the tasks
/// continuous across it and nothing changed.
#[track_caller]
fn expect_refusal(name: &str, pkg: &[u8], status: Status) -> Refused {
    expect_refusal_in(&mut guest(), name, pkg, status)
}

/// [`expect_refusal`] in the fresh guest `g`. The package goes past the host's check:
/// these are the guest's verdicts.
#[track_caller]
fn expect_refusal_in(g: &mut Guest, name: &str, pkg: &[u8], status: Status) -> Refused {
    let before = g.snapshot();
    let refused = match g.stage_unchecked(pkg) {
        Ok((report, _)) => panic!("{name}: the guest accepted it: {report}"),
        Err(r) => r,
    };
    eprintln!(
        "{name}: refused with {:?} (code {}): {}",
        refused.status,
        refused.status.code(),
        refused.message
    );
    assert_eq!(refused.status, status, "{name}: {refused}");
    assert!(!refused.message.is_empty(), "{name}: no reason given");
    let after = g.snapshot();
    let c = assert_continuous(name, &before, &after, StepRules::default(), &[]);
    eprintln!(
        "{name}: {} tasks continuous, {} steps across the refusal",
        c.tasks_compared, c.steps_between
    );
    assert_eq!(
        service(&after)[3],
        service(&before)[3] + 1,
        "{name}: the service counts one refusal"
    );
    assert_nothing_changed(g, name, &after);
    refused
}

#[test]
fn a_good_package_is_accepted_and_named() {
    let name = "a_good_package_is_accepted_and_named";
    let pkg = package("v2");
    let header = parse_header(&pkg).expect("a valid package");
    let mut g = guest();
    let before = g.snapshot();
    let (report, answer) = match g.stage(&pkg) {
        Ok(ok) => ok,
        Err(r) => panic!("{name}: refused: {r}\n{}", g.console_tail(20)),
    };
    eprintln!(
        "{name}: {:?}: {} / {report}",
        answer.response.status, answer.response.message
    );
    assert_eq!(answer.response.status, Status::Ok);
    assert_eq!(answer.response.state, ResponseState::Done);
    // The staged object, without its signature trailer.
    assert_eq!(
        report.bytes,
        (pkg.len() - image_format::signature::TRAILER_LEN) as u64
    );
    assert_eq!(
        report.image,
        header.summary(),
        "the report names the package's image"
    );
    assert_eq!(report.image.label.as_str(), "v2");
    assert_eq!(
        report.image.version,
        image_format::ImageVersion::new(2, 0, 0)
    );
    let after = g.snapshot();
    assert_continuous(name, &before, &after, StepRules::default(), &[]);
    assert_eq!(
        service(&after)[1],
        service(&before)[1] + 1,
        "one package staged"
    );
    // Staging is not swapping: v1 still runs.
    g.assert_running("v1", 1);
}

#[test]
fn a_flipped_payload_byte_is_refused_as_payload_digest() {
    let good = package("v2");
    let at = parse_header(&good).unwrap().payload_offset() as usize + 100;
    let mut bad = good.clone();
    bad[at] ^= 0x01;
    expect_refusal(
        "a_flipped_payload_byte_is_refused_as_payload_digest",
        &bad,
        Status::PayloadDigest,
    );
}

#[test]
fn a_flipped_header_byte_is_refused_as_header_digest() {
    let mut bad = package("v2");
    // The first byte of the label, inside the embedded identity.
    let at = layout::IDENTITY + image_format::identity::offsets::LABEL;
    bad[at] ^= 0x01;
    expect_refusal(
        "a_flipped_header_byte_is_refused_as_header_digest",
        &bad,
        Status::HeaderDigest,
    );
}

#[test]
fn a_truncated_package_is_refused_as_truncated() {
    let good = package("v2");
    expect_refusal(
        "a_truncated_package_is_refused_as_truncated (payload cut)",
        &good[..good.len() / 2],
        Status::Truncated,
    );
}

#[test]
fn a_package_cut_inside_its_header_is_refused_as_truncated() {
    let good = package("v2");
    expect_refusal(
        "a_package_cut_inside_its_header_is_refused_as_truncated",
        &good[..layout::FIXED_SIZE - 8],
        Status::Truncated,
    );
}

#[test]
fn wrong_magic_is_refused_as_bad_magic() {
    // CR LF swapped, as a text-mode transfer might.
    // (Not resealed: the magic is checked first, before any digest or the signature.)
    let mut bad = package("v2");
    bad[6..8].copy_from_slice(b"\n\r");
    expect_refusal(
        "wrong_magic_is_refused_as_bad_magic",
        &bad,
        Status::BadMagic,
    );
}

#[test]
fn an_unknown_format_version_is_refused_as_unsupported_format() {
    // (Not resealed: the version is checked right after the magic.)
    let mut bad = package("v2");
    packages::put_u16(
        &mut bad,
        layout::FORMAT_VERSION,
        image_format::package::FORMAT_VERSION + 1,
    );
    expect_refusal(
        "an_unknown_format_version_is_refused_as_unsupported_format",
        &bad,
        Status::UnsupportedFormat,
    );
}

#[test]
fn an_image_for_an_unreachable_schema_is_refused_as_schema_unconvertible() {
    // The `incompatible` variant reads task-table v5 and carries no converter to it.
    let refused = expect_refusal(
        "an_image_for_an_unreachable_schema_is_refused_as_schema_unconvertible",
        &package("incompatible"),
        Status::SchemaUnconvertible,
    );
    assert!(
        refused.message.contains("task"),
        "the reason names the record: {}",
        refused.message
    );
}

#[test]
fn a_capability_the_kernel_lacks_is_refused_as_capability_missing() {
    let bad = resealed(&package("v2"), |b| {
        let caps = packages::get_u64(b, packages::CAPS_REQUIRED);
        packages::put_u64(
            b,
            packages::CAPS_REQUIRED,
            caps | Capabilities::TEST_UNPROVIDED.bits(),
        );
    });
    assert!(parse_header(&bad)
        .unwrap()
        .identity()
        .caps_required()
        .contains(Capabilities::TEST_UNPROVIDED));
    let refused = expect_refusal(
        "a_capability_the_kernel_lacks_is_refused_as_capability_missing",
        &bad,
        Status::CapabilityMissing,
    );
    assert!(
        refused.message.contains("TEST_UNPROVIDED"),
        "the reason names the capability: {}",
        refused.message
    );
}

#[test]
fn a_version_the_image_may_not_replace_is_refused_as_incompatible() {
    // The image says it replaces only 9.x; v1 (1.0.0) runs. The range is two versions
    // (major, minor, patch as u16 each): set both majors.
    let bad = resealed(&package("v2"), |b| {
        let at = layout::IDENTITY + image_format::identity::offsets::REPLACES;
        packages::put_u16(b, at, 9);
        packages::put_u16(b, at + 6, 9);
    });
    expect_refusal(
        "a_version_the_image_may_not_replace_is_refused_as_incompatible",
        &bad,
        Status::Incompatible,
    );
}

#[test]
fn a_package_larger_than_the_staging_buffer_is_refused_as_too_large() {
    let name = "a_package_larger_than_the_staging_buffer_is_refused_as_too_large";
    // The size limit is the guest's staging capacity, read from its status.
    let mut g = guest();
    let capacity = g.status().staging_capacity;
    assert_eq!(capacity, 16 * MIB, "the documented staging buffer");
    let big = packages::grown(&package("v2"), capacity + MIB, capacity + 2 * MIB);
    assert!(
        big.len() <= g.mailbox.data_capacity(),
        "it fits the mailbox's data area"
    );
    eprintln!("{name}: {} bytes for {capacity} of staging", big.len());
    expect_refusal_in(&mut g, name, &big, Status::TooLarge);
}

/// A request whose `seq_end` was never written (the host stopped mid-write) is never
/// acted on, even when its body is a complete, valid Stage of a good package.
#[test]
fn a_half_written_request_is_never_acted_on() {
    let name = "a_half_written_request_is_never_acted_on";
    let pkg = package("v2");
    let mut g = guest();
    let before = g.snapshot();
    let answered = match g.raw_response() {
        BlockRead::Valid(r) => r,
        other => panic!("no answer to the snapshot in the response block: {other:?}"),
    };
    g.mailbox.write_data(&pkg).expect("writing the package");
    let torn_seq = g.mailbox.next_seq();
    let mut torn = Request::new(torn_seq, Command::Stage);
    torn.payload_len = pkg.len() as u64;
    g.mailbox.send_torn(&torn);
    // Let the service read the request block (at least twice) while it is torn.
    g.wait_polls(3);
    match g.raw_response() {
        BlockRead::Valid(r) => assert_eq!(r, answered, "{name}: the guest answered something"),
        other => panic!("{name}: the response block is now {other:?}"),
    }
    // A later, whole request is answered: the guest is alive and reads the block.
    let ping = Request::new(torn_seq + 1, Command::Ping);
    g.mailbox.send(&ping).expect("sending a ping");
    let pong = g
        .mailbox
        .wait_done(torn_seq + 1, HANG_GUARD, |_| {})
        .expect("an answer to the ping after the torn request");
    eprintln!(
        "{name}: torn request {torn_seq} ignored; ping {} answered {:?}: {}",
        torn_seq + 1,
        pong.response.status,
        pong.response.message
    );
    assert_eq!(pong.response.status, Status::Ok);
    let after = g.snapshot();
    assert_continuous(name, &before, &after, StepRules::default(), &[]);
    let (b, a) = (service(&before), service(&after));
    assert_eq!(
        (a[1], a[3]),
        (b[1], b[3]),
        "{name}: staged/refused counts changed"
    );
    assert_nothing_changed(&mut g, name, &after);
}

/// A whole, valid request whose seq is not newer than the last one handled (a replay,
/// or a host that lost count) is never acted on.
#[test]
fn a_stale_request_is_never_acted_on() {
    let name = "a_stale_request_is_never_acted_on";
    let pkg = package("v2");
    let mut g = guest();
    g.ping();
    let before = g.snapshot();
    let answered = match g.raw_response() {
        BlockRead::Valid(r) => r,
        other => panic!("no answer to the snapshot in the response block: {other:?}"),
    };
    let last = answered.seq;
    assert!(last >= 2, "a ping and a snapshot were handled");
    g.mailbox.write_data(&pkg).expect("writing the package");
    for stale in [last, last - 1] {
        let mut req = Request::new(stale, Command::Stage);
        req.payload_len = pkg.len() as u64;
        g.mailbox.send(&req).expect("sending the stale request");
        g.wait_polls(3);
        match g.raw_response() {
            BlockRead::Valid(r) => {
                assert_eq!(r, answered, "{name}: the guest answered stale seq {stale}")
            }
            other => panic!("{name}: the response block is now {other:?}"),
        }
    }
    let pong = g.ping();
    assert_eq!(pong.response.seq, last + 1);
    assert_eq!(pong.response.status, Status::Ok);
    eprintln!(
        "{name}: stale seqs {last} and {} ignored, {} answered",
        last - 1,
        last + 1
    );
    let after = g.snapshot();
    assert_continuous(name, &before, &after, StepRules::default(), &[]);
    let (b, a) = (service(&before), service(&after));
    assert_eq!(
        (a[1], a[3]),
        (b[1], b[3]),
        "{name}: staged/refused counts changed"
    );
    assert_nothing_changed(&mut g, name, &after);
}

/// Staging a large package does not stop the other tasks.
///
/// Why this cannot pass if tasks were stopped during the transfer: a compute task
/// (counter or LCG) has a period `p` (boot option `pace`) and the scheduler sets its next
/// wake time to `p` after the end of each step, so two of its steps never start less
/// than `p` apart, and a stopped task never catches up in a burst. Snapshots are taken
/// between steps with every CPU parked, so the steps counted between two snapshots
/// started between them. Of the `W` guest seconds between the snapshots (TSC stamps),
/// the transfer took `S` (the guest's own copy-and-hash time from the stage report);
/// the rest is two stretches, before and after it. A task that did not run during the
/// transfer therefore ran at most `(W - S) / p + 2` steps. The test asserts that the
/// tasks on the CPU that does not stage (CPU 1; the service copies on CPU 0) ran more
/// steps in total than that bound allows for all of them together: some of their steps
/// fell inside the transfer. A package near the staging capacity makes `S` a large part
/// of `W`, so running tasks clear the bound by a wide margin.
#[test]
fn other_tasks_make_progress_during_a_transfer() {
    let name = "other_tasks_make_progress_during_a_transfer";
    const PACE_US: u64 = 1000;
    let mut g = Guest::boot(
        VmConfig::variant("v1")
            .cpus(2)
            .boot_opt("pace", &PACE_US.to_string()),
    );
    let capacity = g.status().staging_capacity;
    let big = packages::grown(&package("v2"), capacity - MIB, capacity);
    let before = g.snapshot();
    let report = g.stage_ok(&big);
    let after = g.snapshot();
    assert_eq!(
        report.bytes,
        (big.len() - image_format::signature::TRAILER_LEN) as u64
    );
    assert_continuous(name, &before, &after, StepRules::default(), &[]);

    let w = guest_seconds(&before, &after);
    let s = report.staging_us as f64 / 1e6;
    assert!(
        s > 0.0 && s <= w,
        "{name}: transfer {s} s in a window of {w} s"
    );
    let p = PACE_US as f64 / 1e6;
    let bound_per_task = ((w - s) / p).floor() + 2.0;
    let mut tasks = 0;
    let mut steps = 0;
    for b in before.tasks.iter().filter(|t| {
        t.cpu != 0
            && matches!(
                TaskKind::from_raw(t.kind),
                TaskKind::COUNTER | TaskKind::LCG
            )
    }) {
        let a = after
            .tasks
            .iter()
            .find(|a| a.id == b.id)
            .expect("continuity");
        assert_eq!(a.cpu, b.cpu, "task {} moved", b.id);
        tasks += 1;
        steps += a.steps - b.steps;
    }
    assert!(tasks >= 2, "{name}: compute tasks on cpu1:\n{before}");
    let bound = bound_per_task * tasks as f64;
    eprintln!(
        "{name}: {} bytes staged in {:.3} s of a {:.3} s window; {tasks} tasks on cpu1 ran \
         {steps} steps, at most {bound} without running during the transfer ({:.0} steps/s \
         per task, nominal {:.0})",
        report.bytes,
        s,
        w,
        steps as f64 / tasks as f64 / w,
        1.0 / p
    );
    assert!(
        steps as f64 > bound,
        "{name}: {steps} steps in {w:.3} s with a {s:.3} s transfer: no more than tasks \
         stopped during the transfer could have run ({bound})"
    );
}
