//! A hotpatch's health window: a patch whose new code fails right after its jumps are
//! written is taken back, the VM stays on the image it ran, and every task continues
//! from its state at the apply.
//!
//! `patch-panic` is v1 whose counter step panics on its first call, `patch-fault` v1
//! whose counter step takes a page fault, `patch-hang` v1 whose counter step never
//! returns, all with no version or label change: the generator makes a hotpatch of that
//! one function. Its apply must be
//! answered `Reverted` with the panic's message and location; afterwards the stack is
//! what it was (empty, or `patch-a` still applied and removable), the site holds v1's
//! bytes, the counters count as before, the failed patch's memory is given back, and a
//! good patch still applies and comes off.
//!
//! Each test boots one VM (v1 on 2 CPUs) from the private copies of the kernels the
//! patches are made from (`patches::kernel`).

use hotkernel::update::Refused;
use hotkernel_tests::patches::{self, function, function_at, patch};
use hotkernel_tests::{assert_continuous, tasks_of, Guest, StepRules};
use image_format::mailbox::report::{PatchOp, PatchReport, Report, Snapshot};
use image_format::mailbox::Status;
use image_format::TaskKind;

const COUNTER_STEP: &str = "kernel::tasks::counter::step";

/// Waits until every task has stepped and checks continuity, with the counters moving
/// by exactly `per_step` per step.
#[track_caller]
fn assert_counting(g: &mut Guest, name: &str, per_step: u64) -> Snapshot {
    let a = g.snapshot();
    let b = g.wait_all_progress(&a, &[]);
    let rules = StepRules {
        counter: (per_step, per_step),
    };
    assert_continuous(name, &a, &b, rules, &[]);
    assert!(
        !tasks_of(&a, TaskKind::COUNTER).is_empty(),
        "{name}: no counter:\n{a}"
    );
    b
}

/// Applies `bytes` (a good patch) and checks it was applied, with continuity across.
#[track_caller]
fn apply_ok(g: &mut Guest, name: &str, bytes: &[u8], counter: (u64, u64)) -> PatchReport {
    let before = g.snapshot();
    let r = g.patch_apply_ok(bytes);
    let after = g.snapshot();
    eprintln!("{name}: {r}");
    assert_eq!(r.op, PatchOp::Apply);
    assert_eq!(r.id, patches::id(bytes));
    assert!(r.refused.is_none(), "{r:?}");
    assert_continuous(name, &before, &after, StepRules { counter }, &[]);
    r
}

/// Applies `patch-panic` and checks it was taken back (see [`expect_reverted_by`]), the
/// reason naming the panic and where it was.
#[track_caller]
fn expect_reverted(g: &mut Guest, name: &str, per_step: u64, stack: &[u64]) -> String {
    let reason = expect_reverted_by(g, name, "patch-panic", per_step, stack);
    assert!(
        reason.contains("panic at kernel/src/tasks/counter.rs:")
            && reason.contains("fails on its first call"),
        "{name}: the reason carries the patched code's panic message and location: {reason}"
    );
    reason
}

/// Applies the patch v1 → `variant` and checks it was taken back: `Reverted`, the
/// reason saying so, every task continuous across with the counters moving by
/// `per_step`, the counter's site as it was, the stack as it was (`stack`).
#[track_caller]
fn expect_reverted_by(
    g: &mut Guest,
    name: &str,
    variant: &str,
    per_step: u64,
    stack: &[u64],
) -> String {
    let bad = patch("v1", variant);
    let site = function("v1", COUNTER_STEP);
    let site_before = g.read_image(site.addr, 5);
    let before = g.snapshot();
    let refused: Refused = match g.patch_apply(&bad) {
        Ok(r) => panic!("{name}: {variant} was applied: {r:?}"),
        Err(r) => r,
    };
    let after = g.snapshot();
    eprintln!("{name}: {:?}: {}", refused.status, refused.message);
    assert_eq!(refused.status, Status::Reverted, "{name}: {refused}");
    let reason = refused.message.clone();
    assert!(
        reason.contains("health window")
            && reason.contains("the patch was removed and every task resumed"),
        "{name}: the reason says the patch was taken back: {reason}"
    );
    let Some(Report::Patch(report)) = &refused.report else {
        panic!("{name}: no patch report with the revert: {refused:?}");
    };
    assert_eq!(report.id, patches::id(&bad), "the report names the patch");
    assert_eq!(report.sequence, 0, "not in the stack: {report:?}");
    assert_eq!(
        report.functions.iter().map(|f| f.site).collect::<Vec<_>>(),
        vec![site.addr],
        "the report names the site taken back: {report:?}"
    );
    let c = assert_continuous(
        name,
        &before,
        &after,
        StepRules {
            counter: (per_step, per_step),
        },
        &[],
    );
    eprintln!(
        "{name}: {} tasks continuous across the reverted patch, {} steps",
        c.tasks_compared, c.steps_between
    );
    assert_eq!(
        after.tasks.len(),
        before.tasks.len(),
        "no task added or lost"
    );
    assert_eq!(
        g.read_image(site.addr, 5),
        site_before,
        "{name}: the counter step's entry holds what it held before the apply"
    );
    let listed: Vec<u64> = g.patch_list().patches.iter().map(|p| p.id).collect();
    assert_eq!(listed, stack, "{name}: the patch stack after the revert");
    g.assert_patch_count(stack.len() as u32);
    g.assert_running("v1", 1);
    reason
}

#[test]
fn a_patch_whose_new_code_panics_is_reverted_and_a_good_patch_still_applies() {
    let name = "a_patch_whose_new_code_panics_is_reverted_and_a_good_patch_still_applies";
    let pa = patch("v1", "patch-a");
    let mut g = patches::boot("v1", 2);
    assert_counting(&mut g, &format!("{name} (v1)"), 1);
    expect_reverted(&mut g, name, 1, &[]);
    assert_counting(&mut g, &format!("{name} (after the revert)"), 1);
    g.wait_polls(2);
    let free = g.status().free_frames;

    // A second revert gives the failed patch's memory back as the first did.
    expect_reverted(&mut g, &format!("{name} (again)"), 1, &[]);
    g.wait_polls(2);
    assert_eq!(
        g.status().free_frames,
        free,
        "free frames before and after a reverted apply"
    );

    // A good patch applies (its window closes healthy) and comes off.
    let r = apply_ok(&mut g, &format!("{name} (patch-a)"), &pa, (1, 2));
    assert_eq!(r.sequence, 1, "{r:?}");
    assert_counting(&mut g, &format!("{name} (patch-a applied)"), 2);
    let removed = g.patch_remove_ok(None);
    assert_eq!(removed.id, r.id);
    assert_counting(&mut g, &format!("{name} (patch-a removed)"), 1);
    for f in &r.functions {
        let v1 = function_at("v1", f.site);
        assert_eq!(
            g.read_image(f.site, v1.size as usize),
            v1.bytes,
            "{} holds v1's bytes again",
            v1.name
        );
    }
    g.wait_polls(2);
    assert_eq!(
        g.status().free_frames,
        free,
        "free frames after a good patch applied and removed"
    );
}

#[test]
fn a_reverted_patch_leaves_the_patch_below_it_applied_and_removable() {
    let name = "a_reverted_patch_leaves_the_patch_below_it_applied_and_removable";
    let pa = patch("v1", "patch-a");
    let mut g = patches::boot("v1", 2);
    let a = apply_ok(&mut g, &format!("{name} (patch-a)"), &pa, (1, 2));
    assert_counting(&mut g, &format!("{name} (patch-a applied)"), 2);
    let entry_before = g.patch_list().patches;
    g.wait_polls(2);
    let free = g.status().free_frames;

    // The counter step's site holds patch-a's jump; patch-panic replaces it again.
    expect_reverted(&mut g, name, 2, &[a.id]);
    let entry_after = g.patch_list().patches;
    assert_eq!(
        entry_after, entry_before,
        "patch-a is listed as it was before the revert"
    );
    assert_counting(&mut g, &format!("{name} (after the revert)"), 2);
    g.wait_polls(2);
    assert_eq!(
        g.status().free_frames,
        free,
        "free frames before and after the reverted apply"
    );

    // patch-a is still known: it comes off, v1's bytes and counting come back.
    let removed = g.patch_remove_ok(None);
    assert_eq!(removed.id, a.id, "the removal names patch-a: {removed:?}");
    assert_eq!(removed.functions, a.functions, "every site restored");
    assert!(g.patch_list().patches.is_empty());
    assert_counting(&mut g, &format!("{name} (patch-a removed)"), 1);
    for f in &a.functions {
        let v1 = function_at("v1", f.site);
        assert_eq!(
            g.read_image(f.site, v1.size as usize),
            v1.bytes,
            "{} holds v1's bytes again",
            v1.name
        );
    }
    // And applies again, at the bottom of the stack.
    let again = apply_ok(&mut g, &format!("{name} (patch-a again)"), &pa, (1, 2));
    assert_eq!(again.sequence, 1, "{again:?}");
    assert_counting(&mut g, &format!("{name} (patch-a again)"), 2);
}

#[test]
fn a_patch_whose_new_code_takes_a_page_fault_is_reverted_through_the_guard() {
    let name = "a_patch_whose_new_code_takes_a_page_fault_is_reverted_through_the_guard";
    let mut g = patches::boot("v1", 2);
    assert_counting(&mut g, &format!("{name} (v1)"), 1);
    let reason = expect_reverted_by(&mut g, name, "patch-fault", 1, &[]);
    // Recorded by the guard's exception entry (every CPU runs on the guard IDT inside
    // the window), not by this kernel's handler and its panic.
    assert!(
        reason.contains("exception 14 (page fault)") && reason.contains("address 0x18"),
        "{name}: the reason names the CPU's exception and the faulting address: {reason}"
    );
    assert_counting(&mut g, &format!("{name} (after the revert)"), 1);
}

#[test]
fn a_patch_whose_new_code_never_returns_is_reverted_at_the_deadline() {
    let name = "a_patch_whose_new_code_never_returns_is_reverted_at_the_deadline";
    let mut g = patches::boot("v1", 2);
    assert_counting(&mut g, &format!("{name} (v1)"), 1);
    // Counters run on both CPUs: neither gets back to its scheduler, so the window
    // fails from a timer tick.
    let reason = expect_reverted_by(&mut g, name, "patch-hang", 1, &[]);
    assert!(
        reason.contains("the health check's deadline passed"),
        "{name}: the reason names the missed deadline: {reason}"
    );
    assert_counting(&mut g, &format!("{name} (after the revert)"), 1);
}

/// How many times [`many_reverts_in_a_row_leave_the_kernel_as_it_was`] applies
/// `patch-panic`. On 2 CPUs the bootstrap processor reached its checkpoint between an
/// AP's failure and the guard's NMI to it about once in 8–40 reverts before that was
/// handled (the VM hung, unanswered), and each revert moved the patch area's next
/// address up by the failed patch's size.
const REVERTS_IN_A_ROW: usize = 40;

/// Where the patch area starts (`kernel::memory::layout::PATCH_AREA`).
const PATCH_AREA_START: u64 = 0xffff_ffff_c000_0000;

/// Where the sites of an applied patch jump to (the `jmp rel32` each starts with).
fn jump_targets(g: &mut Guest, r: &PatchReport) -> Vec<u64> {
    let targets: Vec<u64> = r
        .functions
        .iter()
        .map(|f| {
            let bytes = g.read_image(f.site, 5);
            assert_eq!(
                bytes[0], 0xe9,
                "a patched site starts with jmp rel32: {bytes:02x?}"
            );
            let rel = i32::from_le_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
            f.site.wrapping_add(5).wrapping_add(rel as i64 as u64)
        })
        .collect();
    assert!(!targets.is_empty(), "the patch replaces functions: {r:?}");
    targets
}

#[test]
fn many_reverts_in_a_row_leave_the_kernel_as_it_was() {
    let name = "many_reverts_in_a_row_leave_the_kernel_as_it_was";
    let pa = patch("v1", "patch-a");
    let pb = patch("v1", "patch-b");
    let bad = patch("v1", "patch-panic");
    let mut g = patches::boot("v1", 2);
    let a = apply_ok(&mut g, &format!("{name} (patch-a)"), &pa, (1, 2));
    let a_end = jump_targets(&mut g, &a)
        .into_iter()
        .max()
        .unwrap_or_default();
    g.wait_polls(2);
    let free = g.status().free_frames;
    let before = g.snapshot();
    for i in 0..REVERTS_IN_A_ROW {
        match g.patch_apply(&bad) {
            Ok(r) => panic!("{name}: revert {i}: patch-panic was applied: {r:?}"),
            Err(r) => assert_eq!(r.status, Status::Reverted, "{name}: revert {i}: {r}"),
        }
    }
    let after = g.snapshot();
    let c = assert_continuous(name, &before, &after, StepRules { counter: (2, 2) }, &[]);
    eprintln!(
        "{name}: {REVERTS_IN_A_ROW} reverts, {} tasks continuous across them",
        c.tasks_compared
    );
    let listed: Vec<u64> = g.patch_list().patches.iter().map(|p| p.id).collect();
    assert_eq!(listed, vec![a.id], "{name}: patch-a alone is applied");
    assert_counting(&mut g, &format!("{name} (after the reverts)"), 2);
    g.wait_polls(2);
    assert_eq!(
        g.status().free_frames,
        free,
        "{name}: free frames before and after {REVERTS_IN_A_ROW} reverted applies"
    );

    // The failed patches' addresses were given back: a good patch on top of patch-a
    // lands right above it, not above {REVERTS_IN_A_ROW} failed ones.
    let b = g.patch_apply_ok(&pb);
    assert_eq!(b.sequence, 2, "{b:?}");
    let b_start = jump_targets(&mut g, &b)
        .into_iter()
        .min()
        .unwrap_or_default();
    assert!(
        b_start > a_end && b_start - PATCH_AREA_START < 64 * 1024,
        "{name}: patch-b's code at {b_start:#x}, patch-a's ends near {a_end:#x}"
    );
}
