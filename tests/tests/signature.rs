//! Trust: a package must be signed by a key the running kernel embeds, and its security
//! version must not be below the highest that ran in the VM. Each refusal has its own
//! status, and the running kernel (v1) carries on with every task continuous.
//!
//! Every test boots its own v1 guest on 2 CPUs and stages past the host's check
//! (`stage_unchecked`): these are the guest's verdicts.

use hotkernel::update::Refused;
use hotkernel_tests::packages::{package, resealed, resealed_unsigned, signed, unsigned};
use hotkernel_tests::{assert_continuous, Guest, StepRules, VmConfig};
use image_format::mailbox::{RequestFlags, Status};
use image_format::package::layout;
use image_format::signature::{self, Signed, TRAILER_LEN};

fn guest() -> Guest {
    Guest::boot(VmConfig::variant("v1").cpus(2))
}

/// Offers `pkg` to a fresh v1 guest, expects `status`, and checks that v1 still runs
/// with its tasks continuous and nothing staged.
#[track_caller]
fn expect_refusal(name: &str, pkg: &[u8], status: Status) -> Refused {
    let mut g = guest();
    let before = g.snapshot();
    let refused = match g.stage_unchecked(pkg) {
        Ok((report, _)) => panic!("{name}: the guest accepted it: {report}"),
        Err(r) => r,
    };
    assert_eq!(refused.status, status, "{name}: {refused}");
    let after = g.snapshot();
    assert_continuous(name, &before, &after, StepRules::default(), &[]);
    g.assert_running("v1", 1);
    match g.apply(RequestFlags::empty()) {
        Err(r) if r.status == Status::NotStaged => {}
        other => panic!("{name}: something was staged: {other:?}"),
    }
    g.wait_all_progress(&after, &[]);
    println!("{name}: {refused}");
    refused
}

#[test]
fn a_signed_package_is_accepted_and_the_report_names_the_signer() {
    let mut g = guest();
    let report = g.stage_ok(&package("v2"));
    let key = hotkernel::keys::dev_key().unwrap();
    assert_eq!(report.signer, key.id().0, "{report}");
    assert_eq!(report.svn, 1);
    assert!(
        report.verify_us > 0 && report.verify_us < report.staging_us,
        "{report}"
    );
    println!("{report}");
}

#[test]
fn an_unsigned_package_is_refused() {
    let r = expect_refusal("unsigned", &unsigned(&package("v2")), Status::Unsigned);
    assert!(r.message.contains("unsigned"), "{r}");
}

#[test]
fn a_package_signed_by_an_untrusted_key_is_refused() {
    let pkg = unsigned(&package("v2"));
    let h = image_format::package::parse_header(&pkg).unwrap();
    let mut bytes = pkg.clone();
    bytes.extend_from_slice(&signature::sign(
        Signed::Package,
        &h.header_digest(),
        &[9; 32],
    ));
    let id = signature::KeyId::of(&signature::public_key(&[9; 32]));
    let r = expect_refusal("untrusted key", &bytes, Status::UntrustedKey);
    assert!(r.message.contains(&id.to_string()), "{r}");
}

#[test]
fn a_signature_over_another_header_is_refused() {
    // The dev key's signature of v2's header, after a header changed by one label byte.
    let bytes = resealed_unsigned(&package("v2"), |b| {
        b[layout::IDENTITY + image_format::identity::offsets::LABEL] ^= 1
    });
    let r = expect_refusal(
        "signature over another header",
        &bytes,
        Status::BadSignature,
    );
    assert!(r.message.contains("another header"), "{r}");
}

#[test]
fn a_truncated_signature_is_refused() {
    let pkg = package("v2");
    let cut = &pkg[..pkg.len() - TRAILER_LEN / 2];
    let r = expect_refusal("signature truncated", cut, Status::SignatureTruncated);
    assert!(r.message.contains("truncated"), "{r}");
}

#[test]
fn a_package_with_a_lower_security_version_is_refused_naming_both() {
    // v1 runs with SVN 1: a v2 signed properly but with SVN 0 is a rollback.
    let bytes = resealed(&package("v2"), |b| {
        b[layout::SVN..layout::SVN + 4].copy_from_slice(&0u32.to_le_bytes())
    });
    let r = expect_refusal("lower SVN", &bytes, Status::SvnRollback);
    assert!(
        r.message.contains("security version 0 is lower than 1"),
        "{r}"
    );
    // Signing is not what refused it.
    assert_eq!(signed(&bytes), bytes);
}
