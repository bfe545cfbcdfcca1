//! Trust for hotpatches: a patch must be signed by a key the running kernel embeds, and
//! its security version must not be below the highest that ran in the VM. The guest
//! checks both at `PatchApply`, before anything is loaded; each refusal has its own
//! status, and the running kernel (v1) carries on unpatched with every task continuous.
//! A correctly signed patch offered after the refusals still applies.
//!
//! The patches are patch-a (v1 → patch-a: counters add 2 per step) changed in exactly
//! one way. One v1 guest on 2 CPUs receives them all in turn (a refused patch leaves
//! nothing behind, which each case checks before the next).

use hotkernel_tests::packages::{signed, unsigned};
use hotkernel_tests::patches::{self, id, resealed_unsigned, with_svn};
use hotkernel_tests::{assert_continuous, Guest, StepRules};
use image_format::hotpatch::layout;
use image_format::mailbox::Status;
use image_format::signature::{self, Signed, TRAILER_LEN};
use image_format::TaskKind;

/// Offers `patch` to `g`, expects `status` and a message containing `says`, and checks
/// that v1 still runs unpatched: tasks continuous across the refusal, no patch listed,
/// counters still adding 1 per step.
#[track_caller]
fn expect_refusal(g: &mut Guest, name: &str, patch: &[u8], status: Status, says: &str) {
    let before = g.snapshot();
    let refused = match g.patch_apply(patch) {
        Ok(report) => panic!("{name}: the guest applied it: {report:?}"),
        Err(r) => r,
    };
    assert_eq!(refused.status, status, "{name}: {refused}");
    assert!(
        refused.message.contains(says),
        "{name}: `{says}` not in: {refused}"
    );
    let after = g.snapshot();
    assert_continuous(name, &before, &after, StepRules::default(), &[]);
    g.assert_running("v1", 1);
    assert!(
        g.patch_list().patches.is_empty(),
        "{name}: a patch is listed after the refusal"
    );
    assert_counter_stride(g, name, 1);
    println!("{name}: {refused}");
}

/// Checks that every counter adds exactly `stride` per step from now on.
#[track_caller]
fn assert_counter_stride(g: &mut Guest, name: &str, stride: u64) {
    let a = g.snapshot();
    let b = g.wait_all_progress(&a, &[]);
    for t in a.tasks.iter().filter(|t| t.kind == TaskKind::COUNTER.raw()) {
        let later = b.tasks.iter().find(|l| l.id == t.id).unwrap();
        assert_eq!(
            later.values[0] - t.values[0],
            stride * (later.steps - t.steps),
            "{name}: counter {} does not add {stride} per step",
            t.id
        );
    }
}

#[test]
fn bad_signatures_and_a_lower_svn_are_refused_and_a_signed_patch_still_applies() {
    let good = patches::patch("v1", "patch-a");
    let view = image_format::hotpatch::parse(&good).expect("patch-a parses");
    // v1 runs with SVN 1; the generator copied patch-a's `.hk_svn` (also 1).
    assert_eq!(view.svn(), 1);
    let bare = unsigned(&good);

    let untrusted = {
        let mut b = bare.clone();
        b.extend_from_slice(&signature::sign(
            Signed::Patch,
            &view.header_digest(),
            &[9; 32],
        ));
        b
    };
    let untrusted_id = signature::KeyId::of(&signature::public_key(&[9; 32])).to_string();
    // The dev key's signature of patch-a's header, after a header changed by one label
    // byte (resealed, so the digests are right and only the signature is wrong).
    let label_at = layout::LABEL;
    let other_header = resealed_unsigned(&good, |b| b[label_at] ^= 1);
    let truncated = &good[..good.len() - TRAILER_LEN / 2];
    // Signed properly, but with SVN 0: a rollback.
    let lower = with_svn(&good, 0);
    assert_eq!(
        signed(&lower),
        lower,
        "the lower-SVN patch is signed properly"
    );

    let mut g = patches::boot("v1", 2);
    assert_counter_stride(&mut g, "v1", 1);
    expect_refusal(&mut g, "unsigned", &bare, Status::Unsigned, "unsigned");
    expect_refusal(
        &mut g,
        "untrusted key",
        &untrusted,
        Status::UntrustedKey,
        &untrusted_id,
    );
    expect_refusal(
        &mut g,
        "signature over another header",
        &other_header,
        Status::BadSignature,
        "another header",
    );
    expect_refusal(
        &mut g,
        "signature truncated",
        truncated,
        Status::SignatureTruncated,
        "truncated",
    );
    expect_refusal(
        &mut g,
        "lower SVN",
        &lower,
        Status::SvnRollback,
        "security version 0 is lower than 1",
    );

    // The real patch-a, signed by the development key: applied, counters add 2.
    let before = g.snapshot();
    let report = g.patch_apply_ok(&good);
    assert_eq!(report.id, id(&good));
    let after = g.snapshot();
    assert_continuous(
        "signed patch",
        &before,
        &after,
        StepRules { counter: (1, 2) },
        &[],
    );
    assert_eq!(
        g.patch_list()
            .patches
            .iter()
            .map(|p| p.id)
            .collect::<Vec<_>>(),
        [id(&good)]
    );
    assert_counter_stride(&mut g, "patched", 2);
}

/// A hotpatch's security version counts as run once it is applied: after patch-a with
/// SVN 2 was applied and removed on v1 (SVN 1), a package of SVN 1 is a rollback of the
/// patch's fix and is refused at staging naming both numbers; v1 runs on, every task
/// continuous.
#[test]
fn a_package_below_an_applied_patchs_security_version_is_refused() {
    let name = "a_package_below_an_applied_patchs_security_version_is_refused";
    println!("{name}");
    let mut g = patches::boot("v1", 2);
    let patch = with_svn(&patches::patch("v1", "patch-a"), 2);
    g.patch_apply_ok(&patch);
    g.patch_remove_ok(None);
    let before = g.snapshot();
    let refused = match g.stage(&hotkernel_tests::packages::package("twin")) {
        Ok((report, _)) => panic!("{name}: staged: {report:?}"),
        Err(r) => r,
    };
    assert_eq!(refused.status, Status::SvnRollback, "{name}: {refused}");
    assert!(
        refused.message.contains('1') && refused.message.contains('2'),
        "{name}: both numbers: {refused}"
    );
    let after = g.snapshot();
    assert_continuous(name, &before, &after, StepRules::default(), &[]);
    g.assert_running("v1", 1);
    println!("{name}: {refused}");
}
