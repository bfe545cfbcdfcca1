//! References into read-only data compare by content: merged strings (no symbol, packed
//! by the linker) that moved, or whose alignment padding changed, are the same strings;
//! a string whose bytes changed changes the functions that use it and is carried, and
//! the patched code refers to the running image's copy of every string that did not.

use image_format::hotpatch::{parse, RelocTarget};

use crate::testelf::{merged, o, pc32, Elf, To};
use crate::{make_patch, Cause, DiffError, PatchOptions, PatchOutput, Verdict};

/// `lea rsi, [rip + s]; mov edx, len; ret`: a `&str` handed on, its length in the code.
fn user(len: u8) -> Vec<u8> {
    vec![0x48, 0x8d, 0x35, 0, 0, 0, 0, 0xba, len, 0, 0, 0, 0xc3]
}

/// Two log lines as merged strings, then an 8-aligned table: the second string's gap
/// ends in the padding before the table.
fn image(first: &[u8]) -> Elf {
    let second = b"AP registered by resume_main";
    Elf {
        build_id: first.len() as u8,
        funcs: vec![
            crate::testelf::f(
                "kernel::tasks::heartbeat::step",
                &user(first.len() as u8),
                &[pc32(3, To::Merged("first".into()))],
            ),
            crate::testelf::f(
                "hk_ap_resume",
                &user(second.len() as u8),
                &[pc32(3, To::Merged("second".into()))],
            ),
            crate::testelf::f(
                "kernel::table::read",
                &[0x48, 0x8b, 0x05, 0, 0, 0, 0, 0xc3],
                &[pc32(3, To::Sym(".Lanon.table".into()))],
            ),
        ],
        rodata: vec![
            merged("first", first),
            merged("second", second),
            o(".Lanon.table", &[8, 0, 0, 0, 10, 0, 0, 0]),
        ],
        ..Elf::default()
    }
}

fn diff(old: &Elf, new: &Elf) -> Result<PatchOutput, DiffError> {
    make_patch(&old.build(), &new.build(), &PatchOptions::default())
}

fn changed(out: &PatchOutput) -> Vec<&str> {
    out.verdicts
        .iter()
        .filter(|v| matches!(v.verdict, Verdict::Changed { .. }))
        .map(|v| v.name.as_str())
        .collect()
}

#[test]
fn a_string_that_moved_with_other_padding_is_unchanged() {
    // 17 → 19 bytes: the second string moves by 2 and its padding before the table
    // shrinks from 3 bytes to 1 (28 + 17 = 45, padded to 48; 28 + 19 = 47 → 48).
    let old = image(b"progress | 4 cpus");
    let mut new = image(b"progress | 4 cpus");
    new.rodata[0] = merged("first", b"progress | 4 cpus..");
    new.funcs[0].code = user(19);
    let out = diff(&old, &new).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(changed(&out), ["kernel::tasks::heartbeat::step"]);
}

#[test]
fn identical_bytes_at_moved_offsets_are_unchanged() {
    // The same image with every string shifted: nothing to patch.
    let old = image(b"abc");
    let mut new = image(b"abc");
    new.rodata.insert(0, merged("unused", b"zz"));
    new.build_id = 0x77;
    let out = diff(&old, &new).unwrap_or_else(|e| panic!("{e}"));
    assert!(out.bytes.is_none(), "{:?}", out.verdicts);
}

#[test]
fn a_changed_string_is_carried_and_the_others_stay_in_the_image() {
    let old = image(b"progress | 4 cpus");
    let mut new = image(b"progress | 4 cpus");
    new.rodata[0] = merged("first", b"progress | 4 cpus online");
    new.funcs[0].code = user(24);
    let out = diff(&old, &new).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(changed(&out), ["kernel::tasks::heartbeat::step"]);
    let bytes = out.bytes.expect("a patch");
    let view = parse(&bytes).unwrap();
    let blocks: Vec<_> = view.data_blocks().collect();
    assert_eq!(blocks.len(), 1, "only the changed string is carried");
    let (at, size) = (blocks[0].offset as usize, blocks[0].size as usize);
    assert!(
        view.payload()[at..at + size].starts_with(b"progress | 4 cpus online"),
        "{:?}",
        &view.payload()[at..at + size]
    );
    let r = view.relocations().next().expect("the string's relocation");
    assert!(
        matches!(r.target, RelocTarget::Payload(_)),
        "the new code refers to the carried bytes: {:?}",
        r.target
    );
}

#[test]
fn the_same_bytes_in_the_new_code_refer_to_the_running_image() {
    // The step changes (another length operand) but its string does not: the patched
    // code uses the running image's string, wherever the new build put it.
    let old = image(b"progress");
    let mut new = image(b"progress");
    new.rodata.insert(0, merged("unused", b"zz"));
    new.funcs[0].code[8] = 7;
    let out = diff(&old, &new).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(changed(&out), ["kernel::tasks::heartbeat::step"]);
    let bytes = out.bytes.expect("a patch");
    let view = parse(&bytes).unwrap();
    assert_eq!(view.data_blocks().count(), 0);
    let r = view.relocations().next().expect("the string's relocation");
    assert_eq!(r.target, RelocTarget::Image(0x300), "{:?}", r.target);
}

#[test]
fn a_string_that_gains_bytes_beyond_padding_is_changed() {
    // The second string gains a byte that is not zero: both its users see it.
    let old = image(b"abc");
    let mut new = image(b"abc");
    new.rodata[1] = merged("second", b"AP registered by resume_main!");
    let out = diff(&old, &new);
    let Err(DiffError::NotHotpatchable { verdicts, .. }) = out else {
        panic!("hk_ap_resume is machinery and must be refused: {out:?}");
    };
    assert!(verdicts.iter().any(|v| v.name == "hk_ap_resume"));
}

/// The first difference `--explain` shows for the one changed function.
fn why(out: &PatchOutput) -> &crate::Difference {
    let changed: Vec<_> = out
        .verdicts
        .iter()
        .filter_map(|v| match &v.verdict {
            Verdict::Changed { why, .. } => Some(why),
            _ => None,
        })
        .collect();
    assert_eq!(changed.len(), 1, "{:?}", out.verdicts);
    changed[0]
}

#[test]
fn the_explanation_names_the_first_differing_instruction() {
    let old = image(b"progress");
    let mut new = image(b"progress");
    new.funcs[0].code[8] = 9; // mov $0x9,%edx
    let out = diff(&old, &new).unwrap_or_else(|e| panic!("{e}"));
    let d = why(&out);
    assert_eq!(d.offset, 7);
    assert_eq!(d.cause, Cause::Immediate { old: 8, new: 9 });
    let (o, n) = (d.old.as_ref().unwrap(), d.new.as_ref().unwrap());
    assert_eq!(o.text.as_deref(), Some("mov $8,%edx"));
    assert_eq!(n.text.as_deref(), Some("mov $9,%edx"));
    let lines = d.lines();
    assert_eq!(
        lines[0],
        "first difference at +0x7: immediate differs: $0x8 → $0x9"
    );
    assert_eq!(lines[1], "  old +0x7  mov $8,%edx");
    assert_eq!(lines[2], "  new +0x7  mov $9,%edx");
}

#[test]
fn the_explanation_tells_another_operation_from_other_operands() {
    let old = image(b"progress");
    let mut new = image(b"progress");
    new.funcs[0].code[12] = 0xcc; // ret → int3
    let out = diff(&old, &new).unwrap_or_else(|e| panic!("{e}"));
    let d = why(&out);
    assert_eq!(d.offset, 12);
    assert!(
        matches!(&d.cause, Cause::Opcode { old, new } if old.starts_with("ret") && new == "int3"),
        "{:?}",
        d.cause
    );
    new.funcs[0].code[7] = 0xb9; // mov $8,%ecx: the same operation, another register
    let out = diff(&old, &new).unwrap_or_else(|e| panic!("{e}"));
    let d = why(&out);
    assert_eq!(
        (d.offset, &d.cause),
        (7, &Cause::Operands),
        "the earliest is shown"
    );
}

#[test]
fn the_explanation_of_a_changed_string_shows_both_contents() {
    let old = image(b"progress | 4 cpus");
    let mut new = image(b"progress | 4 cpus");
    new.rodata[0] = merged("first", b"progress | 4 cpus online");
    let out = diff(&old, &new).unwrap_or_else(|e| panic!("{e}"));
    let d = why(&out);
    assert_eq!(d.offset, 0, "the lea holding the reference");
    let Cause::Content(c) = &d.cause else {
        panic!("{:?}", d.cause);
    };
    assert_eq!(c.offset, 17);
    assert_eq!(c.cause, Cause::Length { old: 17, new: 24 });
    let o = d.old.as_ref().unwrap();
    assert_eq!(o.text.as_deref(), Some("lea -0xd07(%rip),%rsi"));
    assert_eq!(o.refers_to, ["anon .rodata@0x300"]);
    let line = &d.lines()[0];
    assert_eq!(
        line,
        "first difference at +0x0: anon .rodata@0x300 now points to different bytes: …\"rogress | 4 cpus\" → …\"rogress | 4 cpus online\"",
    );
}
