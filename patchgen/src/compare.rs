//! Equivalence of a function (or data block) in the old build and its counterpart in
//! the new one: same length, same bytes outside relocation fields, relocations at the
//! same offsets with the same types, and targets that are the same *thing* — the
//! paired function at the same offset, the same named data, or unnamed data whose
//! bytes (compared the same way, recursively) are equal. A function that only moved,
//! or whose callee moved, or whose strings moved, is therefore unchanged.
//!
//! Unnamed read-only data (merged strings and constants: the linker keeps no symbol
//! for them) is compared by content, never by offset: the string a function refers to
//! in one build against the string at the same place of its code in the other. Such a
//! block ends where the next thing starts, so it may end in alignment padding that
//! differs between builds; trailing zeros that can only be padding are not content
//! (`Compare::gaps`).

use std::collections::HashMap;

use super::difference::Difference;
use super::image::SectionKind;
use super::locate::{Analysis, Location, Ref, Target};
use super::symbols::Matching;

/// Compares items of two analyses, remembering data comparisons.
pub(crate) struct Compare<'x, 'a> {
    pub old: &'x Analysis<'a>,
    pub new: &'x Analysis<'a>,
    pub matching: &'x Matching,
    memo: HashMap<(u64, u64), bool>,
}

impl<'x, 'a> Compare<'x, 'a> {
    pub fn new(old: &'x Analysis<'a>, new: &'x Analysis<'a>, matching: &'x Matching) -> Self {
        Self {
            old,
            new,
            matching,
            memo: HashMap::new(),
        }
    }

    /// `None` if old function `o` and new function `n` are equivalent; otherwise their
    /// first difference (`explain`).
    pub fn functions(&mut self, o: usize, n: usize) -> Option<Difference> {
        (!self.same_functions(o, n)).then(|| self.explain_functions(o, n))
    }

    /// Whether old function `o` and new function `n` are equivalent.
    fn same_functions(&mut self, o: usize, n: usize) -> bool {
        let (fo, fnew) = (&self.old.items.funcs[o], &self.new.items.funcs[n]);
        if fo.size != fnew.size {
            return false;
        }
        let ob = self.old.image.bytes(fo.addr, fo.size).unwrap_or(&[]);
        let nb = self.new.image.bytes(fnew.addr, fnew.size).unwrap_or(&[]);
        let (orefs, nrefs) = (&self.old.code[o].refs, &self.new.code[n].refs);
        self.old.code[o].problems == self.new.code[n].problems && self.blocks(ob, nb, orefs, nrefs)
    }

    /// Whether two blocks of bytes with their references are equivalent: same length,
    /// same bytes outside relocation fields, the same fields, and the same targets.
    pub fn blocks(&mut self, ob: &[u8], nb: &[u8], orefs: &[Ref], nrefs: &[Ref]) -> bool {
        if ob.len() != nb.len() || orefs.len() != nrefs.len() {
            return false;
        }
        let mut masked = vec![false; ob.len()];
        for (ro, rn) in orefs.iter().zip(nrefs) {
            if ro.offset != rn.offset || ro.r_type != rn.r_type || ro.width != rn.width {
                return false;
            }
            let start = ro.offset as usize;
            for m in masked.iter_mut().skip(start).take(ro.width as usize) {
                *m = true;
            }
        }
        if (0..ob.len()).any(|i| !masked[i] && ob[i] != nb[i]) {
            return false;
        }
        orefs.iter().zip(nrefs).all(|(ro, rn)| self.targets(ro, rn))
    }

    /// Whether two references refer to the same thing, and (for pc-relative and
    /// absolute fields) the same way.
    pub fn targets(&mut self, ro: &Ref, rn: &Ref) -> bool {
        // `S + A` relative to the real target is the instruction's business (the
        // distance from the field to the instruction's end); it must not differ.
        if ro.sa.wrapping_sub(ro.target.addr()) != rn.sa.wrapping_sub(rn.target.addr()) {
            return false;
        }
        match (ro.target, rn.target) {
            (Target::Addr(a), Target::Addr(b)) | (Target::Got(a), Target::Got(b)) => {
                let (lo, ln) = (self.old.locate(a), self.new.locate(b));
                self.locations(lo, ln)
            }
            (Target::Symbol { index: a, .. }, Target::Symbol { index: b, .. }) => {
                self.old.image.symbols[a].name == self.new.image.symbols[b].name
            }
            _ => false,
        }
    }

    /// Whether two locations are the same thing.
    pub fn locations(&mut self, lo: Location, ln: Location) -> bool {
        match (lo, ln) {
            (
                Location::Func {
                    index: o,
                    delta: d1,
                },
                Location::Func {
                    index: n,
                    delta: d2,
                },
            ) => d1 == d2 && self.matching.new_to_old.get(&n) == Some(&o),
            (
                Location::Object {
                    index: o,
                    delta: d1,
                },
                Location::Object {
                    index: n,
                    delta: d2,
                },
            ) => {
                let (oo, on) = (&self.old.items.objects[o], &self.new.items.objects[n]);
                let okind = self.old.image.sections[oo.section].kind;
                let nkind = self.new.image.sections[on.section].kind;
                if d1 != d2 || oo.anon != on.anon || okind != nkind {
                    return false;
                }
                if !oo.anon && (oo.name != on.name || oo.ordinal != on.ordinal) {
                    return false;
                }
                if okind.is_writable() {
                    // Same static; a change of its size or initial bytes is refused
                    // on its own (rules::statics).
                    return true;
                }
                self.data((oo.addr, oo.end(), false), (on.addr, on.end(), false))
            }
            (
                Location::Gap {
                    start: s1,
                    end: e1,
                    jump_table: j1,
                    section: x1,
                },
                Location::Gap {
                    start: s2,
                    end: e2,
                    jump_table: j2,
                    section: x2,
                },
            ) => {
                j1 == j2
                    && self.old.image.sections[x1].name == self.new.image.sections[x2].name
                    && self.gaps((s1, e1, j1), (s2, e2, j2))
            }
            (
                Location::Label {
                    index: o,
                    delta: d1,
                },
                Location::Label {
                    index: n,
                    delta: d2,
                },
            ) => d1 == d2 && self.old.items.labels[o].name == self.new.items.labels[n].name,
            (Location::Writable { addr: a }, Location::Writable { addr: b }) => {
                let (so, sn) = (self.old.image.section_at(a), self.new.image.section_at(b));
                match (so, sn) {
                    (Some(so), Some(sn)) => {
                        let (so, sn) = (&self.old.image.sections[so], &self.new.image.sections[sn]);
                        so.name == sn.name && a - so.addr == b - sn.addr
                    }
                    _ => false,
                }
            }
            (Location::Unknown { addr: a }, Location::Unknown { addr: b }) => a == b,
            _ => false,
        }
    }

    /// Whether two unnamed read-only blocks are the same content. A gap ends at the
    /// next thing the linker placed, so it may end in alignment padding: the same string
    /// followed by one zero byte in one build and by two in the other (lld packs merged
    /// strings and constants and pads before the next aligned one) is the same string.
    /// The common prefix is compared; the longer block's excess must be [`padding`].
    ///
    /// That is enough for code that is otherwise the same: the length it reads is in
    /// the code (an immediate, a load width, a type's size), the same in both builds,
    /// and no longer than either block, since each block holds the whole constant.
    /// Jump tables have exact ends (their run of entries) and are compared whole.
    fn gaps(&mut self, old: (u64, u64, bool), new: (u64, u64, bool)) -> bool {
        let (olen, nlen) = (old.1 - old.0, new.1 - new.0);
        if old.2 || new.2 || olen == nlen {
            return self.data(old, new);
        }
        let common = olen.min(nlen);
        let (longer, start) = if olen > nlen {
            (self.old, old.0)
        } else {
            (self.new, new.0)
        };
        let end = start + olen.max(nlen);
        padding(longer, start + common, end)
            && self.data(
                (old.0, old.0 + common, false),
                (new.0, new.0 + common, false),
            )
    }

    /// Whether two data blocks `(start, end, jump_table)` are equivalent.
    pub fn data(&mut self, old: (u64, u64, bool), new: (u64, u64, bool)) -> bool {
        if let Some(&known) = self.memo.get(&(old.0, new.0)) {
            return known;
        }
        // Assume equal while comparing, so that cycles (a vtable that refers to
        // itself) terminate.
        self.memo.insert((old.0, new.0), true);
        let equal = self.data_uncached(old, new);
        self.memo.insert((old.0, new.0), equal);
        equal
    }

    fn data_uncached(&mut self, old: (u64, u64, bool), new: (u64, u64, bool)) -> bool {
        let (olen, nlen) = (old.1 - old.0, new.1 - new.0);
        if olen != nlen {
            return false;
        }
        let bss = |a: &Analysis<'_>, at: u64| {
            a.image
                .section_at(at)
                .is_some_and(|s| a.image.sections[s].kind == SectionKind::Bss)
        };
        if bss(self.old, old.0) || bss(self.new, new.0) {
            return bss(self.old, old.0) && bss(self.new, new.0);
        }
        let (Some(ob), Some(nb)) = (
            self.old.image.bytes(old.0, olen),
            self.new.image.bytes(new.0, nlen),
        ) else {
            return false;
        };
        let (orefs, oprob) = self.old.data_refs(old.0, old.1, old.2);
        let (nrefs, nprob) = self.new.data_refs(new.0, new.1, new.2);
        oprob == nprob && self.blocks(ob, nb, &orefs, &nrefs)
    }
}

/// The largest alignment the differ assumes for read-only constants (rustc aligns
/// them to their type, at most 16 without `#[repr(align)]`).
const MAX_ALIGN: u64 = 16;

/// Whether `[from, end)` of `a` can be alignment padding before whatever starts at
/// `end`: fewer bytes than `end`'s alignment (at most [`MAX_ALIGN`]), all zero, and no
/// relocation field among them.
pub(crate) fn padding(a: &Analysis<'_>, from: u64, end: u64) -> bool {
    let align = 1u64 << end.trailing_zeros().min(MAX_ALIGN.trailing_zeros());
    let len = end - from;
    len < align
        && a.image
            .bytes(from, len)
            .is_some_and(|b| b.iter().all(|&x| x == 0))
        && a.image.relocs_in(from, end).is_empty()
}

/// What a reference's target is, e.g. `kernel::tasks::tick`, `anon .rodata@0x9211`.
pub(crate) fn describe(a: &Analysis<'_>, t: Target) -> String {
    match t {
        Target::Addr(x) => a.describe(a.locate(x)),
        Target::Got(x) => format!("GOT slot of {}", a.describe(a.locate(x))),
        Target::Symbol { index, .. } => a.image.symbols[index].name.clone(),
    }
}
