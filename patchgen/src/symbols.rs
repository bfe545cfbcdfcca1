//! Identity of functions and data across two builds.
//!
//! Two builds of the same source differ in crate metadata hashes (each variant's crates
//! are packages of their own), so mangled names are never compared: an item's name is its symbol
//! demangled without hash (`{:#}`). Several items may share a name (generic code
//! instantiated in two crates, closures); each gets an ordinal in address order, and
//! `(name, ordinal)` is its key. Keys pair items between the builds; a name whose
//! items cannot be paired with certainty (the counts differ, or a pair differs) is
//! *ambiguous*, and a change to it is refused.
//!
//! Anonymous data (`.Lanon.*`, `alloc_*`, …) has no stable name: it is compared by
//! content, never by key.

use std::collections::HashMap;

use super::image::{Image, SectionKind, SymKind};

/// A function: one or more `FUNC` symbols with the same address and size.
#[derive(Debug, Clone)]
pub(crate) struct Func {
    pub name: String,
    pub addr: u64,
    pub size: u64,
    pub ordinal: u32,
}

impl Func {
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// A data symbol (`OBJECT`).
#[derive(Debug, Clone)]
pub(crate) struct Obj {
    pub name: String,
    pub anon: bool,
    pub addr: u64,
    pub size: u64,
    pub section: usize,
    pub ordinal: u32,
}

impl Obj {
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// A label in code outside any function (`global_asm!`): a named `NOTYPE` symbol.
#[derive(Debug, Clone)]
pub(crate) struct Label {
    pub name: String,
    pub addr: u64,
    pub section: usize,
}

/// The items of one image, sorted by address.
pub(crate) struct Items {
    pub funcs: Vec<Func>,
    pub objects: Vec<Obj>,
    pub labels: Vec<Label>,
    func_keys: HashMap<(String, u32), usize>,
    object_keys: HashMap<(String, u32), usize>,
    label_names: HashMap<String, usize>,
    /// How many functions share each name.
    pub func_counts: HashMap<String, u32>,
}

/// `raw` demangled without hash; non-Rust names unchanged.
pub(crate) fn demangle(raw: &str) -> String {
    let base = match raw.find(".llvm.") {
        Some(i) => &raw[..i],
        None => raw,
    };
    format!("{:#}", rustc_demangle::demangle(base))
}

/// Names of data the compiler made up: compared by content only.
pub(crate) fn is_anonymous(raw: &str) -> bool {
    raw.is_empty()
        || raw.starts_with(".L")
        || raw.starts_with("anon.")
        || raw.starts_with("alloc_")
        || raw.starts_with("__unnamed_")
        || raw.starts_with("str.")
}

impl Items {
    pub fn of(image: &Image<'_>) -> Self {
        let mut funcs: Vec<Func> = Vec::new();
        let mut objects: Vec<Obj> = Vec::new();
        let mut labels: Vec<Label> = Vec::new();
        for sym in &image.symbols {
            let Some(section) = sym.section else { continue };
            let Some(sec) = image.sections.get(section) else {
                continue;
            };
            let kind = sec.kind;
            // A symbol must lie inside its section (a damaged file may say otherwise).
            let inside = sym.addr >= sec.addr
                && sym
                    .addr
                    .checked_add(sym.size)
                    .is_some_and(|end| end <= sec.end());
            if !inside {
                continue;
            }
            match sym.kind {
                SymKind::Func if kind == SectionKind::Code && sym.size > 0 => funcs.push(Func {
                    name: demangle(&sym.name),
                    addr: sym.addr,
                    size: sym.size,
                    ordinal: 0,
                }),
                SymKind::Object if kind != SectionKind::NotLoaded => objects.push(Obj {
                    name: if is_anonymous(&sym.name) {
                        sym.name.clone()
                    } else {
                        demangle(&sym.name)
                    },
                    anon: is_anonymous(&sym.name),
                    addr: sym.addr,
                    size: sym.size,
                    section,
                    ordinal: 0,
                }),
                SymKind::NoType
                    if kind == SectionKind::Code
                        && !sym.name.is_empty()
                        && !sym.name.starts_with(".L") =>
                {
                    labels.push(Label {
                        name: sym.name.clone(),
                        addr: sym.addr,
                        section,
                    })
                }
                _ => {}
            }
        }
        // Aliases (same address and size) are one function; keep the smallest name so
        // the choice does not depend on symbol table order.
        funcs.sort_by(|a, b| (a.addr, a.size, &a.name).cmp(&(b.addr, b.size, &b.name)));
        funcs.dedup_by(|b, a| a.addr == b.addr && a.size == b.size);
        objects.sort_by(|a, b| (a.addr, a.size, &a.name).cmp(&(b.addr, b.size, &b.name)));
        objects.dedup_by(|b, a| a.addr == b.addr && a.size == b.size);
        labels.sort_by(|a, b| (a.addr, &a.name).cmp(&(b.addr, &b.name)));

        let mut func_counts: HashMap<String, u32> = HashMap::new();
        let mut func_keys = HashMap::new();
        for (i, f) in funcs.iter_mut().enumerate() {
            let n = func_counts.entry(f.name.clone()).or_default();
            f.ordinal = *n;
            *n += 1;
            func_keys.insert((f.name.clone(), f.ordinal), i);
        }
        let mut counts: HashMap<String, u32> = HashMap::new();
        let mut object_keys = HashMap::new();
        for (i, o) in objects.iter_mut().enumerate() {
            if o.anon {
                continue;
            }
            let n = counts.entry(o.name.clone()).or_default();
            o.ordinal = *n;
            *n += 1;
            object_keys.insert((o.name.clone(), o.ordinal), i);
        }
        let label_names = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.name.clone(), i))
            .collect();
        Self {
            funcs,
            objects,
            labels,
            func_keys,
            object_keys,
            label_names,
            func_counts,
        }
    }

    /// The function whose bytes hold `addr`.
    pub fn func_at(&self, addr: u64) -> Option<usize> {
        let i = self
            .funcs
            .partition_point(|f| f.addr <= addr)
            .checked_sub(1)?;
        (addr < self.funcs[i].end()).then_some(i)
    }

    /// The data symbol holding `addr` (or, for a zero-sized one, at `addr`).
    pub fn object_at(&self, addr: u64) -> Option<usize> {
        let hi = self.objects.partition_point(|o| o.addr <= addr);
        // Objects may nest (a symbol inside a larger one); take the innermost that
        // holds the address, searching back over the few candidates.
        let mut best: Option<usize> = None;
        for i in (0..hi).rev().take(64) {
            let o = &self.objects[i];
            let holds = (o.addr <= addr && addr < o.end()) || (o.size == 0 && o.addr == addr);
            if holds && best.is_none_or(|b| self.objects[b].size > o.size) {
                best = Some(i);
            }
        }
        best
    }

    /// The nearest code label at or before `addr` in `section`.
    pub fn label_before(&self, addr: u64, section: usize) -> Option<usize> {
        let i = self
            .labels
            .partition_point(|l| l.addr <= addr)
            .checked_sub(1)?;
        (0..=i).rev().find(|&j| self.labels[j].section == section)
    }

    pub fn func_by_key(&self, name: &str, ordinal: u32) -> Option<usize> {
        self.func_keys.get(&(String::from(name), ordinal)).copied()
    }

    pub fn object_by_key(&self, name: &str, ordinal: u32) -> Option<usize> {
        self.object_keys
            .get(&(String::from(name), ordinal))
            .copied()
    }

    pub fn label_by_name(&self, name: &str) -> Option<usize> {
        self.label_names.get(name).copied()
    }

    /// The first data symbol starting after `addr` in `section`, for the extent of
    /// unnamed data.
    pub fn next_object_start(&self, addr: u64, section: usize) -> Option<u64> {
        let i = self.objects.partition_point(|o| o.addr <= addr);
        self.objects[i..]
            .iter()
            .find(|o| o.section == section)
            .map(|o| o.addr)
    }
}

/// How the functions of two builds pair up.
pub(crate) struct Matching {
    /// New function index → old function index, for names with exactly one pairing.
    pub new_to_old: HashMap<usize, usize>,
    /// Names with several functions in either build (paired by ordinal, but a change
    /// to one of them cannot be placed with certainty).
    pub ambiguous: HashMap<String, (u32, u32)>,
}

impl Matching {
    pub fn of(old: &Items, new: &Items) -> Self {
        let mut new_to_old = HashMap::new();
        let mut ambiguous = HashMap::new();
        for (i, f) in new.funcs.iter().enumerate() {
            let count_new = new.func_counts.get(&f.name).copied().unwrap_or(0);
            let count_old = old.func_counts.get(&f.name).copied().unwrap_or(0);
            if count_old == 0 {
                continue;
            }
            if count_new > 1 || count_old > 1 {
                ambiguous.insert(f.name.clone(), (count_old, count_new));
            }
            if count_new == count_old {
                if let Some(o) = old.func_by_key(&f.name, f.ordinal) {
                    new_to_old.insert(i, o);
                }
            }
        }
        Self {
            new_to_old,
            ambiguous,
        }
    }
}
