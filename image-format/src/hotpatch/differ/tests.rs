//! Unit tests of the differ's parts that need no ELF file.

use super::decode::{decode, is_padding};
use super::rules::machinery_reason;
use super::symbols::{demangle, is_anonymous};
use super::Reason;

#[test]
fn names_lose_their_hashes() {
    assert_eq!(
        demangle("_RNvNtNtCs72nnXBPSOyh_6kernel5tasks7counter4step"),
        "kernel::tasks::counter::step"
    );
    assert_eq!(
        demangle("_RNvNtNtCsjltl52yDSfS_6kernel5tasks7counter4step"),
        "kernel::tasks::counter::step",
        "a build with other features has another crate hash, and the same name"
    );
    assert_eq!(
        demangle("_ZN6kernel5tasks4tick17h0123456789abcdefE"),
        "kernel::tasks::tick"
    );
    assert_eq!(demangle("memcpy"), "memcpy");
    assert_eq!(
        demangle("_RNvNtCs72nnXBPSOyh_6kernel4time6TSC_HZ.0"),
        "kernel::time::TSC_HZ.0"
    );
    assert!(is_anonymous(".Lanon.d59c0f50790f0b213043c2a91e8628fc.155"));
    assert!(!is_anonymous("_RNvNtCs72nnXBPSOyh_6kernel3cpu4CPUS"));
}

#[test]
fn the_machinery_is_refused_by_path() {
    let machinery = |name| matches!(machinery_reason(name, false), Some(Reason::Machinery { .. }));
    assert!(machinery("kernel::update::swap::apply"));
    assert!(machinery("kernel::quiesce::checkpoint"));
    assert!(machinery("kernel::arch::x86_64::park::release"));
    assert!(machinery("<updater::recordset::RecordSet>::get"));
    assert!(machinery("hk_bootstrap"));
    assert!(!machinery("kernel::tasks::counter::step"));
    assert!(!machinery("<kernel::tasks::Next as core::fmt::Debug>::fmt"));
    let state = machinery_reason(
        "<updater::records::ticker::V2 as updater::records::StateRecord>::encode",
        true,
    );
    match state {
        Some(Reason::StateLayout { detail }) => {
            assert!(detail.contains("`updater::records::ticker::V2` is new"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn decoding_finds_instruction_ends_and_returns() {
    // cmpb $0, 0x0(%rip); ret — the field is followed by an immediate.
    let code = [0x80, 0x3d, 0, 0, 0, 0, 0x00, 0xc3];
    let d = decode(&code, 0x1000);
    assert_eq!(d.insn_end(2), Some(7), "the field ends 1 byte before the instruction");
    assert!(d.returns);
    // jmp . (a loop that never returns)
    let d = decode(&[0xeb, 0xfe], 0x1000);
    assert!(!d.returns);
    // jmp to elsewhere: a tail call returns for us.
    let d = decode(&[0xe9, 0, 1, 0, 0], 0x1000);
    assert!(d.returns);
    assert_eq!(d.pc_refs.len(), 1);
    assert!(is_padding(&[0xcc, 0xcc, 0x66, 0x90, 0x0f, 0x1f, 0x40, 0x00]));
    assert!(!is_padding(&[0xcc, 0xc3]));
}
