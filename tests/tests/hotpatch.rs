//! Hotpatches: functions of the running kernel replaced while it runs, without a swap.
//!
//! Patches are made on the host from two real builds (`patches::patch`) and sent
//! through the mailbox. Every operation is checked from the guest's own evidence: its
//! report (functions and sites, CPUs parked, pause), snapshots right before and right
//! after it (every task continuous, the counters moving by the old or the new
//! increment), snapshots later on (the counters moving by exactly the new increment per
//! step), the patch list, and the bytes at every site read back from the running image
//! and compared with the v1 ELF. A refused patch must leave all of these as they were.
//!
//! The variants: `patch-a` counts 2 per counter step, `patch-e` 3 (stacked on patch-a,
//! replacing the same function), `patch-b` changes an inlined helper (several sites:
//! tickers and heartbeats count 2), `patch-c` changes a state layout (the generator
//! refuses it), `patch-d` changes the scheduler loop (the guest refuses it: CPUs stand
//! in it), `patch-f` lengthens the heartbeat's log message (one function, its new
//! string carried; the console shows it), `twin` is v1's code under another build id.
//!
//! Each test boots one VM (v1 on 2 CPUs, the first test on 4; the twin for the wrong
//! build), except the generator's refusal, which needs none. VMs boot the private
//! copies of the kernels the patches are made from (`patches::kernel`).

use std::collections::BTreeSet;

use hotkernel::update::Refused;
use hotkernel_tests::patches::{self, function, function_at, package, patch, KERNEL_BASE};
use hotkernel_tests::{assert_continuous, tasks_of, Check, Guest, StepRules, HANG_GUARD};
use image_format::mailbox::report::{Outcome, PatchOp, PatchReport, Report, Snapshot};
use image_format::mailbox::{RequestFlags, Status};
use image_format::package::parse_header;
use image_format::TaskKind;
use patchgen::{DiffError, Reason, Remedy, Subject, Verdict, Warning};

const COUNTER_STEP: &str = "kernel::tasks::counter::step";
const TICKER_STEP: &str = "kernel::tasks::ticker::step";
const HEARTBEAT_STEP: &str = "kernel::tasks::heartbeat::step";
const SCHED_RUN: &str = "kernel::sched::run";
/// `jmp rel32`.
const JMP_REL32: u8 = 0xe9;

fn v1(cpus: u32) -> Guest {
    patches::boot("v1", cpus)
}

/// Per-step increments of the counters and of the tickers and heartbeats.
#[derive(Debug, Clone, Copy)]
struct Counting {
    counter: u64,
    tick: u64,
}

/// v1 (and v2, whose counters start with stride 1).
const V1: Counting = Counting {
    counter: 1,
    tick: 1,
};
/// v1 with patch-a.
const A: Counting = Counting {
    counter: 2,
    tick: 1,
};
/// v1 with patch-a and patch-b.
const AB: Counting = Counting {
    counter: 2,
    tick: 2,
};
/// v1 with patch-a, patch-b and patch-e.
const ABE: Counting = Counting {
    counter: 3,
    tick: 2,
};

/// Waits until every task has made progress and checks what the steps did: continuity
/// for every task, and counters, tickers and heartbeats moving by exactly `c` per step.
#[track_caller]
fn assert_counting(g: &mut Guest, name: &str, c: Counting) -> Snapshot {
    let a = g.snapshot();
    let b = g.wait_all_progress(&a, &[]);
    let rules = StepRules {
        counter: (c.counter, c.counter),
    };
    assert_continuous(name, &a, &b, rules, &[]);
    for (kind, per_step) in [
        (TaskKind::COUNTER, c.counter),
        (TaskKind::TICKER, c.tick),
        (TaskKind::HEARTBEAT, c.tick),
    ] {
        let tasks = tasks_of(&a, kind);
        assert!(!tasks.is_empty(), "{name}: no {} task:\n{a}", kind.name());
        for t in tasks {
            let later = b.tasks.iter().find(|l| l.id == t.id).unwrap();
            let steps = later.steps - t.steps;
            let grew = later.values[0] - t.values[0];
            assert!(steps > 0, "{name}: task {} did not run", t.id);
            assert_eq!(
                grew,
                steps * per_step,
                "{name}: {} task {} grew by {grew} in {steps} steps, expected {per_step} per step",
                kind.name(),
                t.id
            );
            if kind == TaskKind::COUNTER {
                // What the kernel reports as the increment (`tasks::observe`, patched by
                // the same patches) agrees with what the step does.
                assert_eq!(
                    later.values[1], per_step,
                    "{name}: counter {} reports an increment of {} but adds {per_step}",
                    t.id, later.values[1]
                );
            }
        }
    }
    b
}

/// Applies `patch` between two snapshots and checks the report: applied, named by the
/// patch's id, at place `sequence` in the stack, every other CPU parked for a pause
/// that was measured; and continuity across it with counters moving by `counter.0`
/// (before) or `counter.1` (after) per step.
#[track_caller]
fn apply(
    g: &mut Guest,
    name: &str,
    bytes: &[u8],
    label: &str,
    counter: (u64, u64),
    sequence: u32,
) -> PatchReport {
    let cpus = g.status().cpus_online;
    let before = g.snapshot();
    let r = g.patch_apply_ok(bytes);
    let after = g.snapshot();
    eprintln!("{name}: {r}: {:?}", r.functions);
    assert_eq!(r.op, PatchOp::Apply);
    assert_eq!(r.id, patches::id(bytes), "the report names the patch");
    assert_eq!(r.label, label);
    assert_eq!(r.version, 1);
    assert_eq!(r.sequence, sequence, "place in the stack: {r:?}");
    assert_eq!(r.stack_depth, sequence, "{r:?}");
    assert_eq!(r.cpus_parked, cpus - 1, "every other CPU parked: {r:?}");
    assert!(r.pause_ns > 0, "the pause was measured: {r:?}");
    assert!(!r.functions.is_empty(), "{r:?}");
    assert_continuous(name, &before, &after, StepRules { counter }, &[]);
    r
}

/// Removes patches down to `id` (`None`: the newest) between two snapshots and checks
/// the report: removed, every other CPU parked, `depth` patches left.
#[track_caller]
fn remove(
    g: &mut Guest,
    name: &str,
    id: Option<u64>,
    counter: (u64, u64),
    depth: u32,
) -> PatchReport {
    let cpus = g.status().cpus_online;
    let before = g.snapshot();
    let r = g.patch_remove_ok(id);
    let after = g.snapshot();
    eprintln!("{name}: {r}: {:?}", r.functions);
    assert_eq!(r.op, PatchOp::Remove);
    assert_eq!(r.stack_depth, depth, "{r:?}");
    assert_eq!(r.cpus_parked, cpus - 1, "every other CPU parked: {r:?}");
    assert!(r.pause_ns > 0, "the pause was measured: {r:?}");
    assert_continuous(name, &before, &after, StepRules { counter }, &[]);
    r
}

/// The site of `function` in `report`.
#[track_caller]
fn site_of(report: &PatchReport, function: &str) -> u64 {
    report
        .functions
        .iter()
        .find(|f| f.name == function)
        .unwrap_or_else(|| panic!("the report names no {function}: {:?}", report.functions))
        .site
}

/// Every site of `report` (made by `bytes`, a patch from v1) holds a `jmp rel32` into
/// that patch's memory: outside the image, at the code of the function the patch
/// carries for it (all sites agree on where the patch was loaded, a page boundary);
/// the rest of each function is v1's.
#[track_caller]
fn assert_jumps_into(g: &mut Guest, report: &PatchReport, bytes: &[u8]) {
    let view = image_format::hotpatch::parse(bytes).expect("a valid patch");
    let span = parse_header(&package("v1")).unwrap().geometry().image_span;
    let mut bases = BTreeSet::new();
    for f in &report.functions {
        let old = function_at("v1", f.site);
        assert_eq!(old.name, f.name, "the v1 function at {:#x}", f.site);
        let now = g.read_image(f.site, old.size as usize);
        assert_eq!(
            now[0],
            JMP_REL32,
            "{} at {:#x} starts {:02x?}",
            f.name,
            f.site,
            &now[..5]
        );
        let rel = i32::from_le_bytes(now[1..5].try_into().unwrap());
        let target = (f.site + 5).wrapping_add_signed(i64::from(rel));
        assert!(
            !(KERNEL_BASE..KERNEL_BASE + span).contains(&target),
            "{} jumps to {target:#x}, inside the image",
            f.name
        );
        let entry = view
            .functions()
            .find(|p| p.site.is_some_and(|s| s.offset == f.site - KERNEL_BASE))
            .unwrap_or_else(|| panic!("the patch has no site at {:#x}", f.site));
        assert_eq!(entry.name, f.name);
        bases.insert(target - u64::from(entry.code_offset));
        assert_eq!(
            now[5..],
            old.bytes[5..],
            "{}: the bytes after the jump are v1's",
            f.name
        );
    }
    assert_eq!(bases.len(), 1, "one load address per patch: {bases:x?}");
    let base = bases.into_iter().next().unwrap();
    assert_eq!(base % 4096, 0, "patch loaded at {base:#x}");
}

/// Every site in `sites` holds exactly v1's function again (as in the v1 ELF).
#[track_caller]
fn assert_pristine(g: &mut Guest, sites: impl IntoIterator<Item = u64>) {
    for site in sites {
        let f = function_at("v1", site);
        let now = g.read_image(site, f.size as usize);
        assert_eq!(
            now, f.bytes,
            "{} at {site:#x} differs from the v1 ELF",
            f.name
        );
    }
}

/// The ids and sequences of the applied patches, bottom first.
fn stack(g: &mut Guest) -> Vec<(u64, u32)> {
    g.patch_list()
        .patches
        .iter()
        .map(|p| (p.id, p.sequence))
        .collect()
}

#[test]
fn patch_a_makes_counters_count_2_per_step_and_every_other_task_carries_on() {
    let name = "patch_a_makes_counters_count_2_per_step_and_every_other_task_carries_on";
    let pa = patch("v1", "patch-a");
    let mut g = v1(4);
    assert_counting(&mut g, &format!("{name} (v1)"), V1);
    let r = apply(&mut g, name, &pa, "patch-a", (1, 2), 1);
    assert_eq!(r.cpus_parked, 3);
    assert_eq!(
        site_of(&r, COUNTER_STEP),
        function("v1", COUNTER_STEP).addr,
        "the site is v1's {COUNTER_STEP}"
    );
    assert_counting(&mut g, &format!("{name} (patched)"), A);
    let list = g.patch_list();
    assert_eq!(list.patches.len(), 1, "{list:?}");
    let entry = &list.patches[0];
    assert_eq!((entry.id, entry.sequence), (r.id, 1), "{entry:?}");
    assert_eq!(entry.label, "patch-a");
    assert_eq!(entry.functions, r.functions);
    assert_jumps_into(&mut g, &r, &pa);
    g.assert_patch_count(1);
    g.assert_running("v1", 1);
}

#[test]
fn removing_patch_a_restores_v1s_bytes_and_counting() {
    let name = "removing_patch_a_restores_v1s_bytes_and_counting";
    let pa = patch("v1", "patch-a");
    let mut g = v1(2);
    let applied = apply(&mut g, name, &pa, "patch-a", (1, 2), 1);
    assert_counting(&mut g, &format!("{name} (patched)"), A);
    let r = remove(&mut g, name, None, (2, 1), 0);
    assert_eq!(r.id, applied.id, "the report names the patch removed");
    assert_eq!(r.functions, applied.functions, "every site restored");
    assert_counting(&mut g, &format!("{name} (removed)"), V1);
    assert_pristine(&mut g, applied.functions.iter().map(|f| f.site));
    assert!(g.patch_list().patches.is_empty());
    g.assert_patch_count(0);
    g.assert_running("v1", 1);

    // Applied and removed once more, it leaves as much memory free as before: its
    // patch memory was given back (page tables of the patch area, made by the first
    // apply, stay).
    g.wait_polls(2);
    let free = g.status().free_frames;
    let again = apply(
        &mut g,
        &format!("{name} (again)"),
        &pa,
        "patch-a",
        (1, 2),
        1,
    );
    assert_eq!(again.functions, applied.functions);
    remove(&mut g, &format!("{name} (again)"), None, (2, 1), 0);
    assert_pristine(&mut g, applied.functions.iter().map(|f| f.site));
    g.wait_polls(2);
    assert_eq!(
        g.status().free_frames,
        free,
        "free frames before and after an apply and remove"
    );

    // Nothing left to remove.
    let refused = match g.patch_remove(None) {
        Err(r) => r,
        Ok(r) => panic!("{name}: removed a patch from an empty stack: {r:?}"),
    };
    eprintln!("{name}: remove from an empty stack: {refused}");
    assert_eq!(refused.status, Status::PatchRefused, "{refused}");
    assert!(refused.message.contains("no patch is applied"), "{refused}");
    assert_counting(&mut g, &format!("{name} (after all)"), V1);
}

#[test]
fn patches_stack_and_come_off_in_reverse_order() {
    let name = "patches_stack_and_come_off_in_reverse_order";
    let (pa, pb, pe) = (
        patch("v1", "patch-a"),
        patch("v1", "patch-b"),
        patch("v1", "patch-e"),
    );
    let mut g = v1(2);
    let a = apply(&mut g, &format!("{name} (a)"), &pa, "patch-a", (1, 2), 1);
    // The same patch twice: refused, nothing changes.
    let (_, again) = expect_refusal(&mut g, &format!("{name} (a again)"), &pa, &[], 2);
    let reason = again.refused.unwrap();
    assert!(
        reason.contains(&format!("patch {:016x} is already applied", a.id)),
        "{reason}"
    );
    let b = apply(&mut g, &format!("{name} (b)"), &pb, "patch-b", (2, 2), 2);
    assert!(b.functions.len() >= 2, "patch-b is multi-site: {b:?}");
    for f in [TICKER_STEP, HEARTBEAT_STEP] {
        assert_eq!(site_of(&b, f), function("v1", f).addr, "{f}");
    }
    assert_counting(&mut g, &format!("{name} (a, b)"), AB);
    let e = apply(&mut g, &format!("{name} (e)"), &pe, "patch-e", (2, 3), 3);
    assert_eq!(
        site_of(&e, COUNTER_STEP),
        site_of(&a, COUNTER_STEP),
        "e replaces the function a replaced"
    );
    assert_counting(&mut g, &format!("{name} (a, b, e)"), ABE);
    assert_eq!(stack(&mut g), [(a.id, 1), (b.id, 2), (e.id, 3)]);
    assert_jumps_into(&mut g, &e, &pe);
    assert_jumps_into(&mut g, &b, &pb);
    g.assert_patch_count(3);

    let r = remove(&mut g, &format!("{name} (remove e)"), None, (3, 2), 2);
    assert_eq!(r.id, e.id);
    assert_eq!(r.functions, e.functions);
    assert_counting(&mut g, &format!("{name} (a, b again)"), AB);
    assert_eq!(stack(&mut g), [(a.id, 1), (b.id, 2)]);
    // The sites e shared with a hold a's jumps again.
    assert_jumps_into(&mut g, &a, &pa);

    let r = remove(
        &mut g,
        &format!("{name} (remove b, a)"),
        Some(a.id),
        (2, 1),
        0,
    );
    assert_eq!(r.id, a.id, "the last patch removed is named");
    let removed: Vec<u64> = r.functions.iter().map(|f| f.site).collect();
    let expected: Vec<u64> = b
        .functions
        .iter()
        .chain(&a.functions)
        .map(|f| f.site)
        .collect();
    assert_eq!(removed, expected, "b's sites, then a's");
    assert_counting(&mut g, &format!("{name} (none)"), V1);
    assert!(stack(&mut g).is_empty());
    let sites: BTreeSet<u64> = [&a, &b, &e]
        .iter()
        .flat_map(|r| r.functions.iter().map(|f| f.site))
        .collect();
    assert_pristine(&mut g, sites);
    g.assert_patch_count(0);
}

/// Offers `bytes` to `g` and expects the refusal: status `PatchRefused` with a report
/// of a refused apply; every task continuous across it (counters at `counter` per
/// step) and running on; the patch list, the bytes at `sites` (and at every applied
/// patch's site) and the status block's patch count as they were.
#[track_caller]
fn expect_refusal(
    g: &mut Guest,
    name: &str,
    bytes: &[u8],
    sites: &[u64],
    counter: u64,
) -> (Refused, PatchReport) {
    let list = g.patch_list();
    let mut watched: BTreeSet<u64> = sites.iter().copied().collect();
    watched.extend(
        list.patches
            .iter()
            .flat_map(|p| p.functions.iter().map(|f| f.site)),
    );
    let read_sites =
        |g: &mut Guest| -> Vec<Vec<u8>> { watched.iter().map(|&s| g.read_image(s, 16)).collect() };
    let bytes_before = read_sites(g);
    let count = g.status().patches;
    let before = g.snapshot();
    let refused = match g.patch_apply(bytes) {
        Ok(r) => panic!("{name}: the guest applied it: {r:?}"),
        Err(r) => r,
    };
    let after = g.snapshot();
    eprintln!(
        "{name}: {:?} (code {}): {}",
        refused.status,
        refused.status.code(),
        refused.message
    );
    assert_eq!(refused.status, Status::PatchRefused, "{name}: {refused}");
    let Some(Report::Patch(report)) = refused.report.clone() else {
        panic!("{name}: no patch report with the refusal: {refused:?}");
    };
    eprintln!("{name}: report {report:?}");
    assert_eq!(report.op, PatchOp::Apply);
    assert_eq!(
        report.sequence, 0,
        "a refused patch has no place in the stack"
    );
    assert_eq!(report.stack_depth as usize, list.patches.len());
    let reason = report.refused.clone().expect("a refused report");
    assert!(
        refused.message.contains(&reason),
        "{name}: the answer's message carries the reason: {}",
        refused.message
    );
    let rules = StepRules {
        counter: (counter, counter),
    };
    assert_continuous(name, &before, &after, rules, &[]);
    assert_eq!(g.patch_list(), list, "{name}: the patch list changed");
    assert_eq!(read_sites(g), bytes_before, "{name}: site bytes changed");
    g.assert_patch_count(count);
    g.wait_all_progress(&after, &[]);
    (refused, report)
}

/// The sites of a patch (absolute addresses).
fn patch_sites(bytes: &[u8]) -> Vec<u64> {
    image_format::hotpatch::parse(bytes)
        .expect("a valid patch")
        .functions()
        .filter_map(|f| f.site.map(|s| KERNEL_BASE + s.offset))
        .collect()
}

#[test]
fn a_patch_for_another_build_is_refused_naming_both_build_ids() {
    let name = "a_patch_for_another_build_is_refused_naming_both_build_ids";
    let pa = patch("v1", "patch-a");
    let target = image_format::hotpatch::parse(&pa)
        .unwrap()
        .target()
        .build_id;
    let mut g = patches::boot("twin", 2);
    let running = g.status().image.build_id;
    assert_ne!(running, target, "twin is another build");
    let (refused, report) = expect_refusal(&mut g, name, &pa, &patch_sites(&pa), 1);
    let reason = report.refused.unwrap();
    assert!(
        reason.contains("another image")
            && reason.contains(&target.to_string())
            && reason.contains(&running.to_string()),
        "the reason names both build ids ({target}, {running}): {reason}"
    );
    assert_eq!(report.id, patches::id(&pa), "the report names the patch");
    assert_eq!(report.label, "patch-a");
    assert!(refused.message.contains(&format!("{:x}", report.id)));
    g.assert_running("v1-twin", 1);
}

#[test]
fn a_patch_expecting_other_bytes_at_a_site_is_refused_as_site_modified() {
    let name = "a_patch_expecting_other_bytes_at_a_site_is_refused_as_site_modified";
    let pa = patch("v1", "patch-a");
    let site = function("v1", COUNTER_STEP).addr;
    let mut g = v1(2);
    // One byte the jump overwrites, then one after it.
    for index in [0, 9] {
        let bad = patches::with_original_byte_changed(&pa, COUNTER_STEP, index);
        let what = format!("{name} (original byte {index})");
        let (_, report) = expect_refusal(&mut g, &what, &bad, &patch_sites(&pa), 1);
        let reason = report.refused.unwrap();
        assert!(
            reason.contains("site was modified")
                && reason.contains(COUNTER_STEP)
                && reason.contains(&format!("{site:#x}")),
            "{what}: the reason names the function and its site ({site:#x}): {reason}"
        );
        assert_eq!(report.id, patches::id(&bad));
    }
    // Nothing was left behind: the genuine patch applies.
    apply(&mut g, name, &pa, "patch-a", (1, 2), 1);
    assert_counting(&mut g, name, A);
}

#[test]
fn a_patch_of_the_scheduler_loop_is_refused_while_cpus_stand_in_it() {
    let name = "a_patch_of_the_scheduler_loop_is_refused_while_cpus_stand_in_it";
    // The generator accepts it, warning that the function never returns.
    let out = patches::make("v1", "patch-d").expect("the generator accepts patch-d");
    let run = out
        .verdicts
        .iter()
        .find(|v| v.name == SCHED_RUN)
        .unwrap_or_else(|| panic!("no verdict on {SCHED_RUN}: {:?}", out.verdicts));
    assert!(matches!(run.verdict, Verdict::Changed { .. }), "{run}");
    assert!(run.warnings.contains(&Warning::NeverReturns), "{run}");
    let pd = patch("v1", "patch-d");
    let site = function("v1", SCHED_RUN).addr;
    let mut g = v1(2);
    let (_, report) = expect_refusal(&mut g, name, &pd, &patch_sites(&pd), 1);
    let reason = report.refused.clone().unwrap();
    let cpu = reason
        .strip_prefix("cpu")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<u32>().ok());
    assert!(
        cpu.is_some_and(|c| c < 2) && reason.contains(&format!("stands in {SCHED_RUN}")),
        "the reason names a CPU and {SCHED_RUN}: {reason}"
    );
    assert_eq!(report.id, patches::id(&pd), "the report names the patch");
    assert_eq!(report.label, "patch-d");
    assert!(
        report
            .functions
            .iter()
            .any(|f| f.name == SCHED_RUN && f.site == site),
        "the report names the function it would have replaced: {report:?}"
    );
    assert_eq!(report.cpus_parked, 1, "refused with the other CPU parked");
}

#[test]
fn the_generator_refuses_a_state_layout_change_and_names_the_swap() {
    let refusal = match patches::make("v1", "patch-c") {
        Ok(out) => panic!("the generator made a patch: {:?}", out.verdicts),
        Err(e) => e,
    };
    let text = refusal.to_string();
    eprintln!("v1 → patch-c: {text}");
    let DiffError::NotHotpatchable { verdicts, .. } = &refusal else {
        panic!("not a hotpatchability refusal: {refusal:?}");
    };
    let layout: Vec<_> = verdicts
        .iter()
        .filter(|v| v.subject == Subject::StateLayout)
        .collect();
    assert!(
        layout.iter().any(|v| matches!(
            &v.verdict,
            Verdict::Refused { reason: Reason::StateLayout { detail }, remedy: Remedy::FullSwap }
                if v.name == "ticker-state" && detail.contains("ticker-state schema v1 → v2")
        )),
        "a state-layout refusal names the ticker state: {layout:?}"
    );
    assert!(verdicts.iter().filter(|v| v.is_refused()).all(|v| matches!(
        v.verdict,
        Verdict::Refused {
            remedy: Remedy::FullSwap,
            ..
        }
    )));
    assert!(
        text.contains("ticker-state") && text.contains("hotkernel swap"),
        "the message names the state and the swap: {text}"
    );
}

#[test]
fn a_corrupt_patch_is_refused_as_not_a_valid_patch() {
    let name = "a_corrupt_patch_is_refused_as_not_a_valid_patch";
    let pa = patch("v1", "patch-a");
    let view = image_format::hotpatch::parse(&pa).unwrap();
    let payload_at = pa.len() - view.payload().len();
    let mut g = v1(2);
    for (what, at, expect) in [
        ("payload", payload_at + 1, "payload digest mismatch"),
        (
            "header",
            image_format::hotpatch::layout::LABEL,
            "header digest mismatch",
        ),
    ] {
        let mut bad = pa.clone();
        bad[at] ^= 0x01;
        let what = format!("{name} ({what} byte)");
        let (_, report) = expect_refusal(&mut g, &what, &bad, &patch_sites(&pa), 1);
        let reason = report.refused.unwrap();
        assert!(
            reason.starts_with("not a valid patch") && reason.contains(expect),
            "{what}: {reason}"
        );
        assert_eq!(report.id, 0, "an invalid patch is not named");
        assert!(report.functions.is_empty());
    }
}

#[test]
fn a_swap_drops_patches_into_another_build_and_refuses_the_same_build() {
    let name = "a_swap_drops_patches_into_another_build_and_refuses_the_same_build";
    let pa = patch("v1", "patch-a");
    let mut g = v1(2);
    let a = apply(&mut g, name, &pa, "patch-a", (1, 2), 1);

    // The same build would silently lose the patch: the stage's dry run predicts the
    // refusal, the swap is refused, and the old kernel runs on with its patch.
    let staged = match g.stage(&package("v1")) {
        Ok((_, answer)) => answer.response.message.to_string(),
        Err(r) => panic!("{name}: staging v1 refused: {r}"),
    };
    eprintln!("{name}: stage v1: {staged}");
    assert!(
        staged.contains("predicts a refusal") && staged.contains("without its 1 hotpatch(es)"),
        "the stage's pre-flight predicts the refusal: {staged}"
    );
    let before = g.snapshot();
    let refused = match g.apply(RequestFlags::empty()) {
        Err(r) => r,
        Ok(r) => panic!("{name}: swapped to the same build under a patch: {r:?}"),
    };
    let after = g.snapshot();
    eprintln!("{name}: swap to v1: {refused}");
    assert_eq!(refused.status, Status::RolledBack, "{refused}");
    let Some(Report::Swap(swap)) = &refused.report else {
        panic!("{name}: no swap report with the refusal: {refused:?}");
    };
    let Outcome::RolledBack { reason } = &swap.outcome else {
        panic!("{name}: refused but the report says {:?}", swap.outcome);
    };
    assert!(
        reason.contains("the running build without its 1 hotpatch(es)")
            && reason.contains("remove them first"),
        "the reason says the patch would be lost and what to do: {reason}"
    );
    assert_continuous(name, &before, &after, StepRules { counter: (2, 2) }, &[]);
    g.assert_running("v1", 1);
    assert_eq!(stack(&mut g), [(a.id, 1)]);
    assert_jumps_into(&mut g, &a, &pa);
    assert_counting(&mut g, &format!("{name} (still patched)"), A);

    // Another build, staged before one more patch (e, stacked on a) is applied: the
    // running text changed since the layout, so the swap lays the package out again,
    // then drops both patches and says so.
    g.stage_ok(&package("v2"));
    let pe = patch("v1", "patch-e");
    let e = apply(&mut g, &format!("{name} (e)"), &pe, "patch-e", (2, 3), 2);
    let from = g.vm.serial_lines().len();
    let before = g.snapshot();
    let report = g.apply_ok();
    let after = g.snapshot();
    eprintln!("{name}: swap to v2: warnings {:?}", report.warnings);
    hotkernel_tests::expect_lines(&g.vm, from, &["the staged image was laid out again"]);
    for (p, label) in [(&a, "patch-a"), (&e, "patch-e")] {
        let dropped = format!("hotpatch {:016x} ({label}) dropped", p.id);
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains(&dropped) && w.contains("another build")),
            "a warning says `{dropped}`: {:?}",
            report.warnings
        );
    }
    // Counters: 3 per step under the patches, v2's stride (1) after.
    assert_continuous(name, &before, &after, StepRules { counter: (3, 1) }, &[]);
    g.assert_running("v2", 2);
    assert!(stack(&mut g).is_empty());
    g.assert_patch_count(0);
    assert_counting(&mut g, &format!("{name} (v2)"), V1);
    // No jump survived the overlay: where the sites were, v2's own bytes.
    let sites: BTreeSet<u64> = [&a, &e]
        .iter()
        .flat_map(|r| r.functions.iter().map(|f| f.site))
        .collect();
    for site in sites {
        assert_eq!(
            g.read_image(site, 16),
            patches::elf_bytes("v2", site, 16),
            "the bytes at {site:#x} after the swap are not v2's"
        );
    }
    // The patch was for the build swapped out: refused now.
    let (_, r) = expect_refusal(&mut g, &format!("{name} (old patch)"), &pa, &[], 1);
    let reason = r.refused.unwrap();
    let v2 = g.status().image.build_id.to_string();
    assert!(
        reason.contains("another image") && reason.contains(&v2),
        "the reason names v2's build id {v2}: {reason}"
    );
}

#[test]
fn a_longer_log_message_is_hotpatched_into_the_running_heartbeat() {
    let name = "a_longer_log_message_is_hotpatched_into_the_running_heartbeat";
    // The commonest small fix: one log message grows (patch-f). The patch is made
    // against the kernel the VM runs, found by the build id the guest reports (as
    // `patch make --vm` finds it), and names only the function that prints it.
    let mut g = v1(2);
    let running = g.status().image.build_id;
    let v1_elf = patches::kernel("v1");
    let old = hotkernel::hotpatch::elf_with_build_id(running.as_bytes(), vec![v1_elf.path.clone()])
        .unwrap_or_else(|| panic!("{name}: no ELF here has the running build id {running}"));
    let old = std::fs::read(&old).expect("reading the running kernel's ELF");
    let new = patches::kernel("patch-f");
    let opts = patchgen::PatchOptions {
        label: Some("patch-f".into()),
        ..patchgen::PatchOptions::default()
    };
    let out = patchgen::make_patch(&old, &new.bytes, &opts)
        .unwrap_or_else(|e| panic!("{name}: patch make refused patch-f: {e}"));
    let changed: Vec<&str> = out
        .verdicts
        .iter()
        .filter(|v| matches!(v.verdict, Verdict::Changed { .. }))
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(changed, [HEARTBEAT_STEP], "{:?}", out.verdicts);
    // Signed as `patch make` signs (the guest refuses unsigned patches).
    let pf = hotkernel_tests::packages::signed(&out.bytes.expect("a patch"));

    let first = g.vm.serial_lines().len();
    let line =
        g.vm.wait_for_line_from(first, "cpus | steps/s", HANG_GUARD)
            .check("the old progress line");
    eprintln!("{name}: before: {}", line.text);
    let r = apply(&mut g, name, &pf, "patch-f", (1, 1), 1);
    let names: Vec<&str> = r.functions.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, [HEARTBEAT_STEP], "{r:?}");
    let line =
        g.vm.wait_for_line_from(line.index + 1, "cpus online | steps/s per cpu", HANG_GUARD)
            .check("the new progress line");
    eprintln!("{name}: after: {}", line.text);
    assert_counting(&mut g, &format!("{name} (patched)"), V1);
    assert_jumps_into(&mut g, &r, &pf);
    g.assert_running("v1", 1);
}
