//! From the changed functions of the new build to a [`PatchSpec`]: their code, every
//! function and read-only data block they need that the running image lacks (carried,
//! transitively), and one relocation per reference, resolved against the running
//! image where it has the same thing and against the patch's payload otherwise.
//!
//! Resolution, for a reference of carried code to address `T` of the new build:
//! - a function's entry the running image has → that entry (a changed function's
//!   entry jumps to its replacement, and an address that escapes into data stays
//!   valid after the patch is removed); inside a carried function → the copy;
//! - a function the running image lacks → carried as `New`;
//! - read-only data equal to what the old code referred to at the same place, or a
//!   named object with equal contents → the running image's; otherwise a copy. Data
//!   that points *inside* a carried function (a jump table: its entries are the
//!   function's case labels) is always a copy: the running image's table leads into
//!   the old body, which would run the old code behind the new entry;
//! - writable data → the running image's static of the same name; none → refused;
//! - a GOT load → a slot in a `got` data block holding the resolved address.

use std::collections::{BTreeMap, HashMap, VecDeque};

use image_format::hotpatch::{
    Anchor, DataSpec, FunctionSpec, RelocKind, RelocationSpec, Site, SpecTarget, JUMP_LEN,
    ORIGINAL_LEN,
};

use super::compare::Compare;
use super::locate::{Analysis, CodeProblem, Location, Ref, Target};
use super::rules;
use super::verdict::Reason;

/// Why a carried function is in the patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Carried {
    /// Replaces old function `old`.
    Replace { old: usize },
    /// Needed by the function named.
    New { needed_by: String },
}

/// The result: the patch's parts, and what could not be carried.
pub(crate) struct Extraction {
    pub functions: Vec<FunctionSpec>,
    pub data: Vec<DataSpec>,
    pub relocations: Vec<RelocationSpec>,
    /// Per spec function: the new build's function index and why it is carried.
    pub carried: Vec<(usize, Carried)>,
    /// Refusals per new function index.
    pub refusals: BTreeMap<usize, Vec<Reason>>,
    /// Writable statics carried code uses that the running image lacks.
    pub added_statics: BTreeMap<String, String>,
    /// Per data block: where it comes from in the new build (`start, end, jump
    /// table`); `None` for the GOT block.
    pub data_origin: Vec<Option<(u64, u64, bool)>>,
}

struct Extractor<'c, 'x, 'a> {
    cmp: &'c mut Compare<'x, 'a>,
    old: &'x Analysis<'a>,
    new: &'x Analysis<'a>,
    func_slot: HashMap<usize, usize>,
    queue: VecDeque<usize>,
    data_slot: HashMap<u64, usize>,
    data_queue: VecDeque<(usize, u64, u64, bool, usize)>,
    got: Option<usize>,
    got_slots: HashMap<SpecTarget, u32>,
    out: Extraction,
}

/// Extracts the functions `changed` (new index → old index) and what they need.
pub(crate) fn extract(cmp: &mut Compare<'_, '_>, changed: &[(usize, usize)]) -> Extraction {
    let (old, new) = (cmp.old, cmp.new);
    let mut ex = Extractor {
        cmp,
        old,
        new,
        func_slot: HashMap::new(),
        queue: VecDeque::new(),
        data_slot: HashMap::new(),
        data_queue: VecDeque::new(),
        got: None,
        got_slots: HashMap::new(),
        out: Extraction {
            functions: Vec::new(),
            data: Vec::new(),
            relocations: Vec::new(),
            carried: Vec::new(),
            refusals: BTreeMap::new(),
            added_statics: BTreeMap::new(),
            data_origin: Vec::new(),
        },
    };
    for &(n, o) in changed {
        ex.carry(n, Carried::Replace { old: o });
    }
    loop {
        if let Some(n) = ex.queue.pop_front() {
            ex.function(n);
        } else if let Some((slot, start, end, jt, owner)) = ex.data_queue.pop_front() {
            ex.data(slot, start, end, jt, owner);
        } else {
            break;
        }
    }
    if let Some(got) = ex.got {
        let slots = ex.got_slots.len();
        ex.out.data[got].bytes = vec![0; slots * 8];
    }
    ex.out
}

impl Extractor<'_, '_, '_> {
    fn refuse(&mut self, n: usize, reason: Reason) {
        let list = self.out.refusals.entry(n).or_default();
        if !list.contains(&reason) {
            list.push(reason);
        }
    }

    /// Adds new function `n` to the patch (once); returns its spec index.
    fn carry(&mut self, n: usize, why: Carried) -> usize {
        if let Some(&slot) = self.func_slot.get(&n) {
            return slot;
        }
        let f = &self.new.items.funcs[n];
        let code = self.new.image.bytes(f.addr, f.size).unwrap_or(&[]).to_vec();
        let mut site = None;
        if let Carried::Replace { old } = why {
            let fo = &self.old.items.funcs[old];
            let offset = self.old.image.offset_of(fo.addr);
            if (fo.size as usize) < JUMP_LEN {
                self.refuse(n, Reason::TooShort { size: fo.size });
            }
            let text = &self.old.image.target;
            let original = self.old.image.bytes(fo.addr, ORIGINAL_LEN as u64);
            match original {
                Some(bytes)
                    if offset + ORIGINAL_LEN as u64 <= text.text_offset + text.text_size =>
                {
                    let mut original = [0u8; ORIGINAL_LEN];
                    original.copy_from_slice(bytes);
                    site = Some(Site {
                        offset,
                        old_size: fo.size as u32,
                        original,
                    });
                }
                _ => self.refuse(n, Reason::SiteAtTextEnd),
            }
        }
        let is_new = matches!(why, Carried::New { .. });
        if let Some(reason) = rules::machinery_reason(&f.name, is_new) {
            self.refuse(n, reason);
        }
        let slot = self.out.functions.len();
        self.out.functions.push(FunctionSpec {
            name: f.name.clone(),
            code,
            site: site.or(match why {
                Carried::Replace { .. } => Some(Site {
                    offset: 0,
                    old_size: 0,
                    original: [0; ORIGINAL_LEN],
                }),
                Carried::New { .. } => None,
            }),
        });
        self.out.carried.push((n, why));
        self.func_slot.insert(n, slot);
        self.queue.push_back(n);
        slot
    }

    /// Resolves the references of carried function `n`.
    fn function(&mut self, n: usize) {
        let slot = self.func_slot[&n];
        let code = &self.new.code[n];
        for p in code.problems.clone() {
            self.refuse(n, problem_reason(p));
        }
        let refs = code.refs.clone();
        let counterpart = match &self.out.carried[slot].1 {
            Carried::Replace { old } => self.align(&self.old.code[*old].refs.clone(), &refs),
            Carried::New { .. } => vec![None; refs.len()],
        };
        for (r, twin) in refs.iter().zip(counterpart) {
            let anchor = Anchor::Function(slot);
            if let Err(reason) = self.reference(anchor, n, r, twin) {
                self.refuse(n, reason);
            }
        }
    }

    /// Pairs each new reference with an equivalent old one (longest common subsequence
    /// of equivalent references), so unchanged data is reused from the running image.
    fn align(&mut self, old: &[Ref], new: &[Ref]) -> Vec<Option<Ref>> {
        let (m, k) = (old.len(), new.len());
        if m * k > 1 << 22 {
            return vec![None; k];
        }
        let mut eq = vec![false; m * k];
        for i in 0..m {
            for j in 0..k {
                eq[i * k + j] =
                    old[i].r_type == new[j].r_type && self.cmp.targets(&old[i], &new[j]);
            }
        }
        let mut len = vec![0u32; (m + 1) * (k + 1)];
        for i in (0..m).rev() {
            for j in (0..k).rev() {
                len[i * (k + 1) + j] = if eq[i * k + j] {
                    len[(i + 1) * (k + 1) + j + 1] + 1
                } else {
                    len[(i + 1) * (k + 1) + j].max(len[i * (k + 1) + j + 1])
                };
            }
        }
        let mut out = vec![None; k];
        let (mut i, mut j) = (0, 0);
        while i < m && j < k {
            if eq[i * k + j] {
                out[j] = Some(old[i]);
                i += 1;
                j += 1;
            } else if len[(i + 1) * (k + 1) + j] >= len[i * (k + 1) + j + 1] {
                i += 1;
            } else {
                j += 1;
            }
        }
        out
    }

    /// Emits the relocation for reference `r` of `anchor` (carried for function `owner`).
    fn reference(
        &mut self,
        anchor: Anchor,
        owner: usize,
        r: &Ref,
        twin: Option<Ref>,
    ) -> Result<(), Reason> {
        let twin_target = twin.map(|t| t.target.addr());
        match r.target {
            Target::Symbol { .. } => {
                return Err(Reason::Unresolvable {
                    offset: r.offset,
                    target: format!("{:#x}", r.sa),
                    why: "a bare symbol reference (only code outside functions has them)",
                })
            }
            Target::Got(s) => {
                let (target, symbol) = self.resolve(owner, r.offset, s, twin_target)?;
                let slot = self.got_slot(target, &symbol);
                self.out.relocations.push(RelocationSpec {
                    at: anchor,
                    offset: r.offset,
                    kind: RelocKind::Pc32,
                    target: SpecTarget::Patch(Anchor::Data(slot.0), slot.1),
                    addend: r.addend,
                    symbol: format!("GOT slot of {symbol}"),
                });
            }
            Target::Addr(t) => {
                let (target, symbol) = self.resolve(owner, r.offset, t, twin_target)?;
                let kind = match r.width {
                    8 => RelocKind::Abs64,
                    _ => RelocKind::Pc32,
                };
                self.out.relocations.push(RelocationSpec {
                    at: anchor,
                    offset: r.offset,
                    kind,
                    target,
                    addend: r.sa.wrapping_sub(t) as i64,
                    symbol,
                });
            }
        }
        Ok(())
    }

    /// The GOT block and the offset of the slot holding `target`.
    fn got_slot(&mut self, target: SpecTarget, symbol: &str) -> (usize, u32) {
        let got = *self.got.get_or_insert_with(|| {
            self.out.data.push(DataSpec {
                name: String::from("got"),
                bytes: Vec::new(),
                align: 8,
            });
            self.out.data_origin.push(None);
            self.out.data.len() - 1
        });
        let next = self.got_slots.len() as u32 * 8;
        let at = *self.got_slots.entry(target).or_insert(next);
        if at == next {
            self.out.relocations.push(RelocationSpec {
                at: Anchor::Data(got),
                offset: at,
                kind: RelocKind::Abs64,
                target,
                addend: 0,
                symbol: String::from(symbol),
            });
        }
        (got, at)
    }

    /// Where address `t` of the new build is, for code carried in the patch.
    fn resolve(
        &mut self,
        owner: usize,
        offset: u32,
        t: u64,
        twin: Option<u64>,
    ) -> Result<(SpecTarget, String), Reason> {
        let loc = self.new.locate(t);
        let symbol = self.new.describe(loc);
        let image = |a: &Analysis<'_>, addr: u64| SpecTarget::Image(a.image.offset_of(addr));
        let unresolvable = |why| Reason::Unresolvable {
            offset,
            target: symbol.clone(),
            why,
        };
        let target = match loc {
            Location::Func { index, delta } => {
                let paired = self.cmp.matching.new_to_old.get(&index).copied();
                match (self.func_slot.get(&index).copied(), paired) {
                    (Some(slot), Some(_)) if delta != 0 => {
                        SpecTarget::Patch(Anchor::Function(slot), delta as u32)
                    }
                    (_, Some(o)) => image(self.old, self.old.items.funcs[o].addr + delta),
                    (Some(slot), None) => SpecTarget::Patch(Anchor::Function(slot), delta as u32),
                    (None, None) => {
                        let needed_by = self.new.items.funcs[owner].name.clone();
                        let slot = self.carry(index, Carried::New { needed_by });
                        SpecTarget::Patch(Anchor::Function(slot), delta as u32)
                    }
                }
            }
            Location::Object { index, delta } => {
                let o = &self.new.items.objects[index];
                let kind = self.new.image.sections[o.section].kind;
                let old_same = (!o.anon)
                    .then(|| self.old.items.object_by_key(&o.name, o.ordinal))
                    .flatten();
                if kind.is_writable() {
                    match old_same {
                        Some(oi) => image(self.old, self.old.items.objects[oi].addr + delta),
                        None if o.anon => return Err(unresolvable("writable data without a name")),
                        None => {
                            let used_by = self.new.items.funcs[owner].name.clone();
                            self.out.added_statics.insert(o.name.clone(), used_by);
                            return Err(unresolvable(
                                "a writable static the running image does not have",
                            ));
                        }
                    }
                } else if let Some(x) = self
                    .twin(loc, twin)
                    .filter(|_| !self.leads_into_carried(o.addr, o.end(), false, 0))
                {
                    image(self.old, x)
                } else if let Some(oi) = old_same.filter(|&oi| {
                    if self.leads_into_carried(o.addr, o.end(), false, 0) {
                        return false;
                    }
                    let old_o = &self.old.items.objects[oi];
                    self.cmp
                        .data((old_o.addr, old_o.end(), false), (o.addr, o.end(), false))
                }) {
                    image(self.old, self.old.items.objects[oi].addr + delta)
                } else {
                    let (start, end, name) = (o.addr, o.end(), symbol.clone());
                    let slot = self.carry_data(start, end, false, name, o.section, owner);
                    SpecTarget::Patch(Anchor::Data(slot), delta as u32)
                }
            }
            Location::Gap {
                section,
                start,
                end,
                jump_table,
            } => match self
                .twin(loc, twin)
                .filter(|_| !self.leads_into_carried(start, end, jump_table, 0))
            {
                Some(x) => image(self.old, x),
                None => {
                    let slot =
                        self.carry_data(start, end, jump_table, symbol.clone(), section, owner);
                    SpecTarget::Patch(Anchor::Data(slot), 0)
                }
            },
            Location::Label { index, delta } => {
                let name = &self.new.items.labels[index].name;
                match self.old.items.label_by_name(name) {
                    Some(l) => image(self.old, self.old.items.labels[l].addr + delta),
                    None => {
                        return Err(unresolvable("a code label the running image does not have"))
                    }
                }
            }
            Location::Writable { .. } => return Err(unresolvable("writable data without a name")),
            Location::Unknown { .. } => {
                return Err(unresolvable(
                    "not inside any function, data symbol or section",
                ))
            }
        };
        Ok((target, symbol))
    }

    /// Whether read-only data `[start, end)` of the new build refers (directly, or
    /// through the read-only data it refers to) to an address inside a carried function
    /// other than its entry. The running image's copy of such data leads into the old
    /// body, so it cannot be reused. Every replaced function is carried before any
    /// reference is resolved; functions carried as `New` have no old counterpart whose
    /// data could be reused.
    fn leads_into_carried(&self, start: u64, end: u64, jump_table: bool, depth: u32) -> bool {
        const MAX_DEPTH: u32 = 4;
        let (refs, _) = self.new.data_refs(start, end, jump_table);
        refs.iter().any(|r| match self.new.locate(r.target.addr()) {
            Location::Func { index, delta } => delta != 0 && self.func_slot.contains_key(&index),
            // Too deep to follow: assume the worst (carrying is always correct).
            Location::Gap { .. } | Location::Object { .. } if depth >= MAX_DEPTH => true,
            Location::Gap {
                start,
                end,
                jump_table,
                ..
            } => self.leads_into_carried(start, end, jump_table, depth + 1),
            Location::Object { index, .. } => {
                let o = &self.new.items.objects[index];
                let writable = self.new.image.sections[o.section].kind.is_writable();
                !writable && self.leads_into_carried(o.addr, o.end(), false, depth + 1)
            }
            _ => false,
        })
    }

    /// The old address equivalent to new location `loc`, from the aligned old reference.
    fn twin(&mut self, loc: Location, twin: Option<u64>) -> Option<u64> {
        let x = twin?;
        let old_loc = self.old.locate(x);
        self.cmp.locations(old_loc, loc).then_some(x)
    }

    /// Adds the read-only block `[start, end)` of the new build (once).
    fn carry_data(
        &mut self,
        start: u64,
        end: u64,
        jump_table: bool,
        name: String,
        section: usize,
        owner: usize,
    ) -> usize {
        if let Some(&slot) = self.data_slot.get(&start) {
            return slot;
        }
        let bytes = self
            .new
            .image
            .bytes(start, end - start)
            .unwrap_or(&[])
            .to_vec();
        let section_align = self.new.image.sections[section].align;
        let natural = if start == 0 {
            4096
        } else {
            1u64 << start.trailing_zeros().min(12)
        };
        let align = section_align.min(natural).clamp(1, 4096) as u32;
        let slot = self.out.data.len();
        self.out.data.push(DataSpec { name, bytes, align });
        self.out.data_origin.push(Some((start, end, jump_table)));
        self.data_slot.insert(start, slot);
        self.data_queue
            .push_back((slot, start, end, jump_table, owner));
        slot
    }

    /// Resolves the references of carried data block `slot` (refusals are charged to
    /// `owner`, the function whose code made it carried).
    fn data(&mut self, slot: usize, start: u64, end: u64, jump_table: bool, owner: usize) {
        let (refs, problems) = self.new.data_refs(start, end, jump_table);
        for p in problems {
            self.refuse(owner, problem_reason(p));
        }
        for r in &refs {
            if let Err(reason) = self.reference(Anchor::Data(slot), owner, r, None) {
                self.refuse(owner, reason);
            }
        }
    }
}

/// The refusal for a problem found in code or data.
fn problem_reason(p: CodeProblem) -> Reason {
    match p {
        CodeProblem::UnsupportedRelocation { offset, r_type } => {
            Reason::UnsupportedRelocation { offset, r_type }
        }
        CodeProblem::Undecodable { offset } => Reason::Undecodable { offset },
        CodeProblem::UnlinkedReference { offset, target } => {
            Reason::UnlinkedReference { offset, target }
        }
        CodeProblem::Undefined { offset } => Reason::Unresolvable {
            offset,
            target: String::from("an undefined symbol"),
            why: "the linked kernel should define every symbol",
        },
    }
}
