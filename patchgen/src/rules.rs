//! What a hotpatch must never carry, as checks over the two analysed builds:
//!
//! - the swap/patch machinery: functions under `kernel::update::`, `kernel::resume::`,
//!   `kernel::quiesce::`, `kernel::handoff_region::`, `kernel::arch::x86_64::park`,
//!   `updater::`, and every `hk_*` symbol;
//! - the hand-off record code (`Record`/`Field` impls from `#[derive(Record)]`, converter
//!   steps): a new or changed
//!   one means a state record's layout changed;
//! - writable statics whose size or initial bytes changed ([`statics`]);
//! - state record schemas in the embedded identity ([`identity`]);
//! - code outside every function symbol ([`outside_functions`]).

use image_format::identity::EmbeddedIdentity;
use image_format::kinds::kind_name;

use super::compare::Compare;
use super::decode::is_padding;
use super::image::{IdentityState, SectionKind};
use super::locate::{Analysis, Ref, Target};
use super::verdict::{Note, Reason, StaticChange, Which};

/// Path prefixes of the swap/patch machinery.
pub(crate) const MACHINERY: &[&str] = &[
    "kernel::update::",
    "kernel::resume::",
    "kernel::quiesce::",
    "kernel::handoff_region::",
    "kernel::arch::x86_64::park",
    "updater::",
];

/// The path a demangled name is about: `<a::B as c::D>::f` → `a::B as c::D>::f`.
fn path(name: &str) -> &str {
    name.trim_start_matches(['<', '&', '*'])
        .trim_start_matches("mut ")
        .trim_start_matches("const ")
}

/// The record type of a record's encoding (`Record` or `Field` impl) or of a converter
/// step, if `name` is one.
fn state_record(name: &str) -> Option<&str> {
    let p = path(name);
    [
        " as updater::record::Record>",
        " as updater::record::Field>",
        " as updater::convert::Upgrade>",
    ]
    .iter()
    .find_map(|t| p.find(t).map(|i| &p[..i]))
}

/// Why a function must not be patched, if it belongs to the machinery. `is_new`: the
/// running image does not have it.
pub(crate) fn machinery_reason(name: &str, is_new: bool) -> Option<Reason> {
    if let Some(ty) = state_record(name) {
        let what = if is_new { "is new" } else { "changed" };
        return Some(Reason::StateLayout {
            detail: format!(
                "the hand-off record code of `{ty}` {what} (`{name}`); records cross a swap in versioned layouts"
            ),
        });
    }
    if name.starts_with("hk_") {
        return Some(Reason::Machinery { prefix: "hk_*" });
    }
    let p = path(name);
    MACHINERY
        .iter()
        .find(|m| p.starts_with(**m))
        .map(|m| Reason::Machinery { prefix: m })
}

/// Writable statics of both builds whose size or initial bytes differ.
pub(crate) fn statics(cmp: &mut Compare<'_, '_>) -> Vec<(String, StaticChange)> {
    let (old, new) = (cmp.old, cmp.new);
    let mut out = Vec::new();
    for o in new.items.objects.iter().filter(|o| !o.anon) {
        if !new.image.sections[o.section].kind.is_writable() {
            continue;
        }
        let Some(oi) = old.items.object_by_key(&o.name, o.ordinal) else {
            continue;
        };
        let old_o = &old.items.objects[oi];
        if old_o.size != o.size {
            out.push((
                o.name.clone(),
                StaticChange::Size {
                    old: old_o.size,
                    new: o.size,
                },
            ));
        } else if !cmp.data((old_o.addr, old_o.end(), false), (o.addr, o.end(), false)) {
            out.push((o.name.clone(), StaticChange::InitialBytes));
        }
    }
    out
}

/// Compares the embedded identities: schema changes are state layout changes, other
/// differences identity changes. Missing or malformed identities become notes.
pub(crate) fn identity(
    old: &Analysis<'_>,
    new: &Analysis<'_>,
    notes: &mut Vec<Note>,
) -> Vec<(String, Reason)> {
    let mut present = |state: &IdentityState, which| match state {
        IdentityState::Present(id) => Some(*id),
        IdentityState::Absent => {
            notes.push(Note::IdentityMissing { which });
            None
        }
        IdentityState::Malformed(error) => {
            notes.push(Note::IdentityMalformed {
                which,
                error: error.clone(),
            });
            None
        }
    };
    let (Some(a), Some(b)) = (
        present(&old.image.identity, Which::Old),
        present(&new.image.identity, Which::New),
    ) else {
        return Vec::new();
    };
    compare_identities(&a, &b)
}

fn compare_identities(a: &EmbeddedIdentity, b: &EmbeddedIdentity) -> Vec<(String, Reason)> {
    let mut out = Vec::new();
    let mut kinds: Vec<u16> = a
        .schemas()
        .iter()
        .chain(b.schemas())
        .map(|s| s.kind().get())
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        let find = |id: &EmbeddedIdentity| {
            id.schemas()
                .iter()
                .find(|s| s.kind().get() == kind)
                .map(|s| s.current().get())
        };
        let name = match kind_name(kind) {
            "unknown" => format!("record kind {kind:#x}"),
            known => String::from(known),
        };
        let detail = match (find(a), find(b)) {
            (Some(x), Some(y)) if x != y => format!("{name} schema v{x} → v{y}"),
            (Some(x), None) => format!("{name} (schema v{x}) is no longer exported"),
            (None, Some(y)) => format!("{name} (schema v{y}) is new"),
            _ => continue,
        };
        out.push((name, Reason::StateLayout { detail }));
    }
    let mut changes = Vec::new();
    if a.version() != b.version() {
        changes.push(format!("version {} → {}", a.version(), b.version()));
    }
    if a.label() != b.label() {
        changes.push(format!("label {} → {}", a.label(), b.label()));
    }
    if a.replaces() != b.replaces() {
        changes.push(String::from("replaceable versions"));
    }
    if a.caps_required() != b.caps_required() || a.caps_provided() != b.caps_provided() {
        changes.push(String::from("capabilities"));
    }
    if !changes.is_empty() {
        out.push((
            String::from(".hk_identity"),
            Reason::Identity {
                detail: changes.join(", "),
            },
        ));
    }
    out
}

/// Code outside every function (`global_asm!` bodies), as `(start, end)` blocks with
/// trailing padding trimmed; blocks that are only padding are left out.
fn outside_blocks(a: &Analysis<'_>) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for s in a
        .image
        .sections
        .iter()
        .filter(|s| s.kind == SectionKind::Code)
    {
        let mut at = s.addr;
        let funcs = a
            .items
            .funcs
            .iter()
            .filter(|f| f.addr >= s.addr && f.end() <= s.end());
        let mut push = |start: u64, end: u64| {
            let bytes = a.image.bytes(start, end - start).unwrap_or(&[]);
            let trimmed = bytes
                .iter()
                .rposition(|&b| !matches!(b, 0xcc | 0x90 | 0))
                .map_or(0, |i| i + 1);
            if trimmed > 0 && !is_padding(bytes) {
                out.push((start, start + trimmed as u64));
            }
        };
        for f in funcs {
            if f.addr > at {
                push(at, f.addr);
            }
            at = at.max(f.end());
        }
        if s.end() > at {
            push(at, s.end());
        }
    }
    out
}

/// References in code the decoder cannot be trusted with (16-bit trampolines, data in
/// `.text`, code copied elsewhere at run time): a named symbol is compared by name and
/// addend; a section-relative pc-relative field is read as pointing right after itself.
fn outside_refs(a: &Analysis<'_>, start: u64, end: u64) -> Option<Vec<Ref>> {
    let mut refs = Vec::new();
    for r in a.image.relocs_in(start, end) {
        let s = a.image.symbol_value(r)?;
        let sa = s.wrapping_add_signed(r.addend);
        let named = a
            .image
            .symbols
            .get(r.sym)
            .is_some_and(|y| y.kind != super::image::SymKind::Section);
        let width = match r.r_type {
            object::elf::R_X86_64_64 => 8,
            object::elf::R_X86_64_16 => 2,
            _ => 4,
        };
        if named {
            refs.push(Ref {
                offset: (r.offset - start) as u32,
                width,
                r_type: r.r_type,
                sa,
                addend: r.addend,
                target: Target::Symbol {
                    index: r.sym,
                    value: s,
                },
            });
            continue;
        }
        let (width, target) = match r.r_type {
            object::elf::R_X86_64_64 => (8, Target::Addr(sa)),
            object::elf::R_X86_64_GOTPCREL
            | object::elf::R_X86_64_GOTPCRELX
            | object::elf::R_X86_64_REX_GOTPCRELX => (4, Target::Got(s)),
            object::elf::R_X86_64_32 | object::elf::R_X86_64_32S => (4, Target::Addr(sa)),
            object::elf::R_X86_64_16 => (2, Target::Addr(sa)),
            _ => (4, Target::Addr(sa.wrapping_add(4))),
        };
        refs.push(Ref {
            offset: (r.offset - start) as u32,
            width,
            r_type: r.r_type,
            sa,
            addend: r.addend,
            target,
        });
    }
    Some(refs)
}

/// Refusals for code outside functions that differs between the builds.
pub(crate) fn outside_functions(cmp: &mut Compare<'_, '_>) -> Vec<(String, Reason)> {
    let (old, new) = (cmp.old, cmp.new);
    let (ob, nb) = (outside_blocks(old), outside_blocks(new));
    let near = |a: &Analysis<'_>, at: u64| {
        a.image
            .section_at(at)
            .and_then(|s| a.items.label_before(at, s))
            .map_or_else(|| format!("{at:#x}"), |l| a.items.labels[l].name.clone())
    };
    let mut out = Vec::new();
    for i in 0..ob.len().max(nb.len()) {
        let (o, n) = (ob.get(i), nb.get(i));
        let same = match (o, n) {
            (Some(&(os, oe)), Some(&(ns, ne))) => {
                let bytes = (old.image.bytes(os, oe - os), new.image.bytes(ns, ne - ns));
                let refs = (outside_refs(old, os, oe), outside_refs(new, ns, ne));
                match (bytes, refs) {
                    ((Some(x), Some(y)), (Some(rx), Some(ry))) => cmp.blocks(x, y, &rx, &ry),
                    _ => false,
                }
            }
            _ => false,
        };
        if !same {
            let (at, name) = match (o, n) {
                (Some(&(os, _)), _) => (os, near(old, os)),
                (None, Some(&(ns, _))) => (ns, near(new, ns)),
                (None, None) => continue,
            };
            out.push((
                format!("code at {name}"),
                Reason::CodeOutsideFunctions {
                    at: old.image.offset_of(at),
                    near: name,
                },
            ));
        }
    }
    out
}
