//! The explanation of a difference `compare` found: the first instruction (or data
//! byte) at which two functions differ, and its [`Cause`], as `--explain` shows it.
//!
//! `compare` decides, cheaply and with its memo; this module runs only for the
//! functions reported as changed. It looks for the earliest offset at which anything
//! differs — bytes outside relocation fields, the relocation fields themselves, or what
//! a field refers to — and names the instruction holding it in both builds. A field
//! that refers to read-only data at the same place whose content differs is explained
//! by that data's own first difference, level by level (a format template that points
//! to a string whose bytes differ), down to [`MAX_DEPTH`] levels.

use super::compare::{describe, padding, Compare};
use super::decode::{contrast, text, Decoded};
use super::difference::{
    Cause, ContentDifference, Data, Difference, Instruction, SHOWN, SHOWN_BEFORE,
};
use super::locate::{Analysis, Location, Ref};

/// How many levels of read-only data an explanation follows.
pub const MAX_DEPTH: u32 = 4;

/// One side of a comparison: where a block is, its bytes and references, and for
/// code its instruction boundaries.
struct Side<'s> {
    addr: u64,
    bytes: &'s [u8],
    refs: &'s [Ref],
    decoded: Option<&'s Decoded>,
}

impl Side<'_> {
    /// The instruction holding byte `at` of code (`(start, end)`).
    fn insn(&self, at: u64) -> Option<(u32, u32)> {
        self.decoded?.insn_at(u32::try_from(at).ok()?)
    }
}

impl Compare<'_, '_> {
    /// Why old function `o` and new function `n`, which [`Compare::functions`] found
    /// different, differ.
    pub(crate) fn explain_functions(&mut self, o: usize, n: usize) -> Difference {
        let (old, new) = (self.old, self.new);
        let (fo, fnew) = (&old.items.funcs[o], &new.items.funcs[n]);
        let ob = old.image.bytes(fo.addr, fo.size).unwrap_or(&[]);
        let nb = new.image.bytes(fnew.addr, fnew.size).unwrap_or(&[]);
        let os = Side {
            addr: fo.addr,
            bytes: ob,
            refs: &old.code[o].refs,
            decoded: Some(&old.code[o].decoded),
        };
        let ns = Side {
            addr: fnew.addr,
            bytes: nb,
            refs: &new.code[n].refs,
            decoded: Some(&new.code[n].decoded),
        };
        let (offset, cause) = match self.first_difference(&os, &ns, 0) {
            Some(found) => found,
            // Same bytes and references: what the decoder or the relocation resolution
            // found must differ.
            None => (0, Cause::Problems),
        };
        let at = |a: &Analysis<'_>, side: &Side<'_>| {
            let (start, end) = side.insn(offset)?;
            let bytes = side.bytes.get(start as usize..end as usize)?.to_vec();
            let refers_to = side
                .refs
                .iter()
                .filter(|r| r.offset >= start && r.offset < end)
                .map(|r| describe(a, r.target))
                .collect();
            Some(Instruction {
                offset: u64::from(start),
                text: text(&bytes, side.addr + u64::from(start)),
                bytes,
                refers_to,
            })
        };
        let (oi, ni) = (at(old, &os), at(new, &ns));
        Difference {
            offset: oi.as_ref().or(ni.as_ref()).map_or(offset, |i| i.offset),
            old: oi,
            new: ni,
            cause,
        }
    }

    /// The earliest offset at which two blocks differ, and why; `None` if they do not
    /// (as far as bytes, relocation fields and targets go). In code, bytes that differ
    /// are told apart by decoding the instruction at that offset.
    fn first_difference(&mut self, o: &Side<'_>, n: &Side<'_>, depth: u32) -> Option<(u64, Cause)> {
        let common = o.bytes.len().min(n.bytes.len());
        let mut masked = vec![false; common];
        for r in o.refs.iter().chain(n.refs) {
            let start = r.offset as usize;
            for m in masked.iter_mut().skip(start).take(r.width as usize) {
                *m = true;
            }
        }
        let mut found: Option<(u64, Cause)> = None;
        // Keeps the earliest difference.
        fn keep(found: &mut Option<(u64, Cause)>, offset: u64, cause: Cause) {
            if found.as_ref().is_none_or(|(at, _)| offset < *at) {
                *found = Some((offset, cause));
            }
        }
        if let Some(i) = (0..common).find(|&i| !masked[i] && o.bytes[i] != n.bytes[i]) {
            fn insn<'b>(s: &Side<'b>, i: usize) -> Option<(&'b [u8], u64)> {
                let (start, end) = s.insn(i as u64)?;
                let bytes = s.bytes.get(start as usize..end as usize)?;
                Some((bytes, s.addr + u64::from(start)))
            }
            let cause = match (insn(o, i), insn(n, i)) {
                (Some(a), Some(b)) => contrast(a, b),
                _ => Cause::Bytes,
            };
            keep(&mut found, i as u64, cause);
        }
        // Relocation fields in order: the first place they stop matching.
        let mut paired = 0;
        loop {
            match (o.refs.get(paired), n.refs.get(paired)) {
                (Some(a), Some(b))
                    if a.offset == b.offset && a.r_type == b.r_type && a.width == b.width =>
                {
                    paired += 1;
                }
                (Some(a), Some(b)) => {
                    let at = a.offset.min(b.offset);
                    let ty = |r: &Ref| (r.offset == at).then_some(r.r_type);
                    keep(
                        &mut found,
                        u64::from(at),
                        Cause::Relocation {
                            old: ty(a),
                            new: ty(b),
                        },
                    );
                    break;
                }
                (Some(a), None) => {
                    keep(
                        &mut found,
                        u64::from(a.offset),
                        Cause::Relocation {
                            old: Some(a.r_type),
                            new: None,
                        },
                    );
                    break;
                }
                (None, Some(b)) => {
                    keep(
                        &mut found,
                        u64::from(b.offset),
                        Cause::Relocation {
                            old: None,
                            new: Some(b.r_type),
                        },
                    );
                    break;
                }
                (None, None) => break,
            }
        }
        for (a, b) in o.refs.iter().zip(n.refs).take(paired) {
            if found
                .as_ref()
                .is_some_and(|(at, _)| u64::from(a.offset) >= *at)
            {
                break;
            }
            if !self.targets(a, b) {
                let cause = self.target_cause(a, b, depth);
                keep(&mut found, u64::from(a.offset), cause);
                break;
            }
        }
        if found.is_none() && o.bytes.len() != n.bytes.len() {
            found = Some((
                common as u64,
                Cause::Length {
                    old: o.bytes.len() as u64,
                    new: n.bytes.len() as u64,
                },
            ));
        }
        found
    }

    /// Why two relocation fields at the same offset and of the same type refer to
    /// different things.
    fn target_cause(&mut self, a: &Ref, b: &Ref, depth: u32) -> Cause {
        let (old, new) = (self.old, self.new);
        let (da, db) = (
            a.sa.wrapping_sub(a.target.addr()) as i64,
            b.sa.wrapping_sub(b.target.addr()) as i64,
        );
        if da != db {
            return Cause::Distance { old: da, new: db };
        }
        let (lo, ln) = (old.locate(a.target.addr()), new.locate(b.target.addr()));
        if depth < MAX_DEPTH {
            if let (Some(bo), Some(bn)) = (self.read_only(old, lo), self.read_only(new, ln)) {
                if let Some(c) = self.content(bo, bn, depth + 1) {
                    return Cause::Content(Box::new(c));
                }
            }
        }
        Cause::Target {
            old: old.describe(lo),
            new: new.describe(ln),
        }
    }

    /// The read-only block at `loc`, if it is one whose content the differ compares:
    /// unnamed data, or a named constant (`(start, end, jump table, name)`).
    fn read_only(&self, a: &Analysis<'_>, loc: Location) -> Option<(u64, u64, bool, String)> {
        match loc {
            Location::Gap {
                start,
                end,
                jump_table,
                ..
            } => Some((start, end, jump_table, a.describe(loc))),
            Location::Object { index, delta: 0 } => {
                let o = &a.items.objects[index];
                let kind = a.image.sections[o.section].kind;
                (!kind.is_writable()).then(|| (o.addr, o.end(), false, a.describe(loc)))
            }
            _ => None,
        }
    }

    /// The first difference between two read-only blocks at the same place of the
    /// code, or `None` when they are not comparable (another kind of block: then the
    /// target itself differs).
    fn content(
        &mut self,
        (os, oe, oj, oname): (u64, u64, bool, String),
        (ns, ne, nj, nname): (u64, u64, bool, String),
        depth: u32,
    ) -> Option<ContentDifference> {
        let (old, new) = (self.old, self.new);
        if oj != nj {
            return None;
        }
        // Padding at the end of unnamed data is not content (`Compare::gaps`).
        let (olen, nlen) = (oe - os, ne - ns);
        let (oe, ne) = if !oj && olen != nlen {
            let common = olen.min(nlen);
            let (a, start, end) = if olen > nlen {
                (old, os, oe)
            } else {
                (new, ns, ne)
            };
            if padding(a, start + common, end) {
                (os + common, ns + common)
            } else {
                (oe, ne)
            }
        } else {
            (oe, ne)
        };
        let ob = old.image.bytes(os, oe - os)?;
        let nb = new.image.bytes(ns, ne - ns)?;
        let (orefs, _) = old.data_refs(os, oe, oj);
        let (nrefs, _) = new.data_refs(ns, ne, nj);
        let (offset, cause) = self.first_difference(
            &Side {
                addr: os,
                bytes: ob,
                refs: &orefs,
                decoded: None,
            },
            &Side {
                addr: ns,
                bytes: nb,
                refs: &nrefs,
                decoded: None,
            },
            depth,
        )?;
        let data = |name: String, bytes: &[u8]| {
            let from = offset.saturating_sub(SHOWN_BEFORE).min(bytes.len() as u64);
            let shown = &bytes[from as usize..];
            Data {
                name,
                len: bytes.len() as u64,
                from,
                bytes: shown[..shown.len().min(SHOWN)].to_vec(),
            }
        };
        Some(ContentDifference {
            old: data(oname, ob),
            new: data(nname, nb),
            offset,
            cause,
        })
    }
}
