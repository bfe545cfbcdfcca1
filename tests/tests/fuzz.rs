//! The mailbox fuzzer against a live guest (`hotkernel fuzz`, `hotkernel::fuzz`): a
//! short run finds nothing, and the inputs it once crashed the guest with are replayed
//! and survived, with every task continuous (the fuzzer's own check after each input:
//! QEMU alive, heartbeat advancing, ping `Ok`, status back to running, a snapshot
//! continuous with the one before).
//!
//! Every test boots its own v1 guest on 2 CPUs.

use std::time::Duration;

use hotkernel::fuzz::input::{Expect, Framing, RawRequest, SeqSpec, Step};
use hotkernel::fuzz::{self, Class, Input, Options, Outcome, Target};
use hotkernel_tests::{expect_lines, patches, Guest, VmConfig};
use image_format::mailbox::{Command, RequestFlags, Status};

fn guest() -> Guest {
    Guest::boot(VmConfig::variant("v1").cpus(2))
}

fn target(g: &Guest) -> Target {
    match Target::open(g.vm.paths()) {
        Ok(t) => t,
        Err(e) => panic!("opening the fuzzer's target: {e}"),
    }
}

fn patch_apply(payload_len: u64) -> RawRequest {
    RawRequest {
        seq: SeqSpec::Next { skip: 0 },
        command: Command::PatchApply.code(),
        flags: 0,
        payload_len,
        args: [0; 4],
        framing: Framing::Sealed,
        expect: Expect::Refused,
    }
}

/// Finding 1 of the first fuzz runs (seed 1, input 222): `PatchApply` with a payload
/// length of 16 MiB + 1 — inside the 32 MiB data area, larger than the 16 MiB kernel
/// heap — panicked the guest ("memory allocation of 16777217 bytes failed") while it
/// copied the payload. Now it is refused with `BadRequest`, and so are the other
/// lengths the heap cannot hold; afterwards a real patch still applies (the failed
/// copies left the heap as it was).
#[test]
fn a_patch_apply_longer_than_the_heap_is_refused_and_the_guest_carries_on() {
    println!("a_patch_apply_longer_than_the_heap_is_refused_and_the_guest_carries_on");
    // The very ELF the patch is made from (see `patches::kernel`).
    let g = patches::boot("v1", 2);
    let mut t = target(&g);
    let patch = patches::patch("v1", "patch-a");
    let data_capacity = g.mailbox.data_capacity() as u64;
    for len in [0x100_0001, 24 << 20, data_capacity] {
        let input = Input {
            index: 222,
            class: Class::Lengths,
            note: format!("patch-apply of v1→patch-a with length {len:#x}"),
            steps: vec![
                Step::Data {
                    offset: 0,
                    bytes: patch.clone(),
                },
                Step::Request(patch_apply(len)),
                Step::Settle,
                Step::Undo,
            ],
        };
        match t.run(&input) {
            Ok(outcomes) => assert_eq!(
                outcomes,
                [(
                    Command::PatchApply.code(),
                    Outcome::Answered(Status::BadRequest)
                )],
                "{}",
                input.note
            ),
            Err(finding) => panic!("{}: {finding}\n{}", input.note, g.console_tail(30)),
        }
    }
    // The real patch, at its real length, still applies (and the input takes it back).
    let mut real = patch_apply(patch.len() as u64);
    real.expect = Expect::Any;
    let input = Input {
        index: 0,
        class: Class::Valid,
        note: "the real patch".into(),
        steps: vec![
            Step::Data {
                offset: 0,
                bytes: patch,
            },
            Step::Request(real),
            Step::Settle,
            Step::Undo,
        ],
    };
    match t.run(&input) {
        Ok(outcomes) => assert_eq!(
            outcomes,
            [(Command::PatchApply.code(), Outcome::Answered(Status::Ok))]
        ),
        Err(finding) => panic!("the real patch: {finding}\n{}", g.console_tail(30)),
    }
}

/// 150 inputs of seed 1 (every class among them), each checked: no finding.
#[test]
fn a_short_fuzz_run_finds_nothing() {
    println!("a_short_fuzz_run_finds_nothing");
    let g = guest();
    let mut t = target(&g);
    let seeds = match fuzz::build_seeds(&t) {
        Ok(s) => s,
        Err(e) => panic!("building the fuzzer's seeds: {e}"),
    };
    let save_to = hotkernel::workspace::hotkernel_dir()
        .join("fuzz")
        .join(format!("test-finding-{}.json", std::process::id()));
    let opts = Options {
        seed: 1,
        duration: Duration::from_secs(900),
        max_inputs: Some(150),
        save_to,
    };
    let summary = match fuzz::run(&mut t, &seeds, &opts, |_| {}) {
        Ok(s) => s,
        Err(e) => panic!("the fuzz run failed on the host side: {e}"),
    };
    if let Some((finding, path)) = &summary.finding {
        panic!(
            "finding after {} inputs: {finding} (saved to {})\n{}",
            summary.inputs,
            path.display(),
            g.console_tail(30)
        );
    }
    assert_eq!(summary.inputs, 150);
    assert!(
        summary.classes.len() >= 9,
        "only {:?} classes in 150 inputs",
        summary.classes.keys().collect::<Vec<_>>()
    );
    let answered: u64 = summary
        .classes
        .values()
        .flat_map(|c| c.outcomes.values())
        .sum();
    assert!(answered >= 150, "{} requests counted", answered);
}

/// Finding 3 of the seed-7 run (from 338 s in): a request that queues work for the
/// bootstrap processor (here a `Snapshot`), written while a loaded patch waited for the
/// BSP to write its jumps, *replaced* that job. The patch was never applied, its request
/// never answered, and its memory stayed mapped; the patch area then started again at
/// the bottom, and every later apply was refused with "page … is already mapped". Now a
/// request behind a waiting job is answered `Busy` and the job runs; whichever way the
/// race goes, every apply is applied, its removal finds it, and no frame is lost. The
/// apply is sent with `HOLD_JOB`, so its job waits for the next request every time (the
/// fuzzer met that window by chance, a few hundred times in 6,000 inputs).
#[test]
fn a_request_behind_a_waiting_patch_apply_is_refused_and_nothing_leaks() {
    println!("a_request_behind_a_waiting_patch_apply_is_refused_and_nothing_leaks");
    let g = patches::boot("v1", 4);
    let mut t = target(&g);
    let patch = patches::patch("v1", "patch-a");
    let request = |command: Command, payload_len: u64, flags: RequestFlags| RawRequest {
        seq: SeqSpec::Next { skip: 0 },
        command: command.code(),
        flags: flags.bits(),
        payload_len,
        args: [0; 4],
        framing: Framing::Sealed,
        expect: Expect::Any,
    };
    let run = |t: &mut Target, note: &str, steps: Vec<Step>| -> Vec<(u32, Outcome)> {
        let input = Input {
            index: 0,
            class: Class::InFlight,
            note: note.into(),
            steps,
        };
        t.run(&input)
            .unwrap_or_else(|finding| panic!("{note}: {finding}\n{}", g.console_tail(30)))
    };
    let mut free_before = None;
    let mut refusals = g.vm.serial_lines().len();
    for round in 0..31 {
        let outcomes = run(
            &mut t,
            "patch apply, then a snapshot as soon as the guest took it",
            vec![
                Step::Data {
                    offset: 0,
                    bytes: patch.clone(),
                },
                Step::Request(request(
                    Command::PatchApply,
                    patch.len() as u64,
                    RequestFlags::HOLD_JOB,
                )),
                Step::Taken,
                Step::Request(request(Command::Snapshot, 0, RequestFlags::empty())),
                Step::Settle,
            ],
        );
        let apply = outcomes[0].1;
        assert!(
            matches!(apply, Outcome::Answered(Status::Ok) | Outcome::Overtaken),
            "round {round}: the apply was refused: {outcomes:?}\n{}",
            g.console_tail(20)
        );
        // The snapshot is answered `Busy`; the apply's answer, right after it in the
        // one response block, may hide that from the host: the guest's log says it.
        assert!(
            matches!(
                outcomes[1].1,
                Outcome::Answered(Status::Busy) | Outcome::NoAnswer
            ),
            "round {round}: the snapshot behind the waiting apply: {outcomes:?}"
        );
        let refused = &expect_lines(&g.vm, refusals, &["refused (busy)"])[0];
        assert!(
            refused.text.contains("Snapshot request"),
            "{}",
            refused.text
        );
        refusals = refused.index + 1;
        // The apply's job has run (or runs now): its removal finds the patch. A removal
        // that comes while the job still waits is answered `Busy`: ask again.
        let removed = (0..50).find_map(|_| {
            let o = run(
                &mut t,
                "remove the patch",
                vec![
                    Step::Request(request(Command::PatchRemove, 0, RequestFlags::empty())),
                    Step::Settle,
                ],
            );
            (o[0].1 != Outcome::Answered(Status::Busy)).then_some(o[0].1)
        });
        assert_eq!(
            removed,
            Some(Outcome::Answered(Status::Ok)),
            "round {round}: the patch applied is removed\n{}",
            g.console_tail(20)
        );
        // After the first round: the page tables of the patch area exist (they stay).
        free_before.get_or_insert(g.status().free_frames);
    }
    let status = g.status();
    assert_eq!(status.patches, 0);
    assert_eq!(
        Some(status.free_frames),
        free_before,
        "the patch memory of 30 applies and removals is all freed"
    );
}
