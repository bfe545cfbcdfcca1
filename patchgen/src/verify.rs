//! The generator's self-check: install the patch it just built on paper and confirm that
//! every relocated field of the carried code and data refers to the same thing the new
//! build's code refers to.
//!
//! The payload is parsed back with [`image_format::hotpatch::parse`], relocated with
//! [`image_format::hotpatch::apply::relocate`] for the old image at its link address
//! and the patch 1 GiB above it, and each field's value is followed: into the running
//! image (the old build), where the location must be equivalent to the new build's
//! target, or into the patch, where it must be the carried copy of that target. Sites
//! must be the paired old functions, with their original bytes. No field may lead into
//! the body of a function the patch replaces (past its entry, directly or through the
//! running image's read-only data, such as a jump table): that code is the old
//! behaviour. A failure is a bug in the generator; [`super::make_patch`] reports it
//! instead of handing out the patch.

use image_format::hotpatch::apply::relocate;
use image_format::hotpatch::{parse, FunctionKind, PatchView, ORIGINAL_LEN};

use super::compare::Compare;
use super::extract::{Carried, Extraction};
use super::locate::{Location, Target};

/// Distance of the simulated patch area from the image.
const PATCH_DISTANCE: u64 = 1 << 30;

/// Where a relocated field points in the simulated running system.
enum Landed {
    /// The running image, at this link-time address of the old build.
    Image(u64),
    /// Carried function `spec` (index in the extraction), at `delta`.
    Function { spec: usize, delta: u64 },
    /// Carried data block `spec`, at `delta`.
    Data { spec: usize, delta: u64 },
}

struct Checker<'c, 'x, 'a, 'v> {
    cmp: &'c mut Compare<'x, 'a>,
    ex: &'c Extraction,
    view: PatchView<'v>,
    payload: Vec<u8>,
    base: u64,
    /// Extraction function index → view function index.
    fn_view: Vec<usize>,
}

/// Checks `bytes` against the extraction it was built from.
pub(crate) fn verify(
    cmp: &mut Compare<'_, '_>,
    ex: &Extraction,
    bytes: &[u8],
) -> Result<(), String> {
    let view = parse(bytes).map_err(|e| format!("the patch does not parse: {e}"))?;
    let old_base = cmp.old.image.link_base;
    let base = old_base + PATCH_DISTANCE;
    let mut payload = view.payload().to_vec();
    relocate(&view, &mut payload, old_base, base).map_err(|e| format!("relocation: {e}"))?;
    // The builder puts replace entries first (by site), then new ones, each group in
    // the extraction's order.
    let mut replace: Vec<usize> = (0..ex.functions.len())
        .filter(|&i| ex.functions[i].site.is_some())
        .collect();
    replace.sort_by_key(|&i| ex.functions[i].site.map(|s| s.offset));
    let new: Vec<usize> = (0..ex.functions.len())
        .filter(|&i| ex.functions[i].site.is_none())
        .collect();
    let mut fn_view = vec![0; ex.functions.len()];
    for (v, &i) in replace.iter().chain(&new).enumerate() {
        fn_view[i] = v;
    }
    let mut c = Checker {
        cmp,
        ex,
        view,
        payload,
        base,
        fn_view,
    };
    c.sites()?;
    for spec in 0..ex.functions.len() {
        c.function(spec)?;
    }
    for spec in 0..ex.data.len() {
        c.data(spec)?;
    }
    Ok(())
}

impl Checker<'_, '_, '_, '_> {
    fn sites(&self) -> Result<(), String> {
        for (spec, (n, why)) in self.ex.carried.iter().enumerate() {
            let f = self
                .view
                .function(self.fn_view[spec])
                .ok_or("function entry missing")?;
            let name = &self.cmp.new.items.funcs[*n].name;
            if f.name != name {
                return Err(format!(
                    "function entry {} is {}, expected {name}",
                    self.fn_view[spec], f.name
                ));
            }
            match (why, f.site) {
                (Carried::Replace { old }, Some(site)) => {
                    let fo = &self.cmp.old.items.funcs[*old];
                    let original = self.cmp.old.image.bytes(fo.addr, ORIGINAL_LEN as u64);
                    if site.offset != self.cmp.old.image.offset_of(fo.addr)
                        || u64::from(site.old_size) != fo.size
                        || original != Some(&site.original[..])
                        || f.kind != FunctionKind::Replace
                    {
                        return Err(format!("site of {name} does not match the old function"));
                    }
                }
                (Carried::New { .. }, None) => {}
                _ => return Err(format!("{name}: kind does not match")),
            }
            let nf = &self.cmp.new.items.funcs[*n];
            if Some(self.view.code(&f)) != self.cmp.new.image.bytes(nf.addr, nf.size) {
                return Err(format!("{name}: code differs from the new build's"));
            }
        }
        Ok(())
    }

    fn field(&self, at: u64, width: u32) -> Option<u64> {
        let at = usize::try_from(at).ok()?;
        let bytes = self.payload.get(at..at + width as usize)?;
        Some(match width {
            8 => u64::from_le_bytes(bytes.try_into().ok()?),
            _ => i64::from(i32::from_le_bytes(bytes.try_into().ok()?)) as u64,
        })
    }

    fn landed(&self, addr: u64) -> Landed {
        let Some(q) = addr
            .checked_sub(self.base)
            .filter(|&q| q <= self.payload.len() as u64)
        else {
            return Landed::Image(addr);
        };
        // Inside a block first; at a block's end only if no block starts there.
        for at_end in [false, true] {
            let holds = |start: u64, size: u32| {
                let end = start + u64::from(size);
                q >= start && (q < end || (at_end && q == end))
            };
            for (spec, &v) in self.fn_view.iter().enumerate() {
                if let Some(f) = self.view.function(v) {
                    if holds(u64::from(f.code_offset), f.code_size) {
                        return Landed::Function {
                            spec,
                            delta: q - u64::from(f.code_offset),
                        };
                    }
                }
            }
            for spec in 0..self.ex.data.len() {
                if let Some(d) = self.view.data_block(spec) {
                    if holds(u64::from(d.offset), d.size) {
                        return Landed::Data {
                            spec,
                            delta: q - u64::from(d.offset),
                        };
                    }
                }
            }
        }
        Landed::Image(addr)
    }

    /// Whether old-build address `a` lies inside a function the patch replaces (past
    /// its entry, where the jump is), or is read-only data of the old build that leads
    /// there.
    fn leads_into_replaced(&self, a: u64, depth: u32) -> bool {
        const MAX_DEPTH: u32 = 4;
        let old = self.cmp.old;
        let follow = |start: u64, end: u64, jump_table: bool| {
            depth >= MAX_DEPTH
                || old
                    .data_refs(start, end, jump_table)
                    .0
                    .iter()
                    .any(|r| self.leads_into_replaced(r.target.addr(), depth + 1))
        };
        match old.locate(a) {
            Location::Func { index, delta } => {
                delta != 0
                    && self
                        .ex
                        .carried
                        .iter()
                        .any(|(_, why)| matches!(why, Carried::Replace { old } if *old == index))
            }
            Location::Gap {
                start,
                end,
                jump_table,
                ..
            } => follow(start, end, jump_table),
            Location::Object { index, .. } => {
                let o = &old.items.objects[index];
                !old.image.sections[o.section].kind.is_writable() && follow(o.addr, o.end(), false)
            }
            _ => false,
        }
    }

    /// Whether `landed` is the same thing as address `t` of the new build.
    fn same(&mut self, landed: Landed, t: u64) -> bool {
        let want = self.cmp.new.locate(t);
        match landed {
            Landed::Image(a) => {
                let have = self.cmp.old.locate(a);
                self.cmp.locations(have, want)
            }
            Landed::Function { spec, delta } => {
                let n = self.ex.carried[spec].0;
                want == Location::Func { index: n, delta }
            }
            Landed::Data { spec, delta } => match self.ex.data_origin[spec] {
                Some((start, _, _)) => start + delta == t,
                None => false,
            },
        }
    }

    fn function(&mut self, spec: usize) -> Result<(), String> {
        let n = self.ex.carried[spec].0;
        let f = self
            .view
            .function(self.fn_view[spec])
            .ok_or("function entry missing")?;
        let code = &self.cmp.new.code[n];
        let name = self.cmp.new.items.funcs[n].name.clone();
        for r in code.refs.clone() {
            let place = u64::from(f.code_offset) + u64::from(r.offset);
            let value = self
                .field(place, r.width)
                .ok_or("field outside the payload")?;
            let next = |k: u32| self.base + place + u64::from(k);
            let k = code.decoded.insn_end(r.offset).map_or(4, |e| e - r.offset);
            let (landed, t) = match r.target {
                Target::Addr(t) if r.width == 8 => (self.landed(value), t),
                Target::Addr(t) => (self.landed(next(k).wrapping_add(value)), t),
                Target::Got(s) => {
                    let slot = next(k).wrapping_add(value);
                    let Landed::Data { spec: d, delta } = self.landed(slot) else {
                        return Err(format!(
                            "{name}+{:#x}: GOT load does not read the patch's GOT",
                            r.offset
                        ));
                    };
                    let at = u64::from(self.view.data_block(d).ok_or("data entry missing")?.offset)
                        + delta;
                    let loaded = self.field(at, 8).ok_or("GOT slot outside the payload")?;
                    (self.landed(loaded), s)
                }
                Target::Symbol { .. } => return Err(format!("{name}: bare symbol reference")),
            };
            if let Landed::Image(a) = landed {
                if self.leads_into_replaced(a, 0) {
                    return Err(format!(
                        "{name}+{:#x} leads into the old body of a replaced function \
                         (through {}) once installed",
                        r.offset,
                        self.cmp.old.describe(self.cmp.old.locate(a))
                    ));
                }
            }
            if !self.same(landed, t) {
                let want = self.cmp.new.describe(self.cmp.new.locate(t));
                return Err(format!(
                    "{name}+{:#x} does not refer to {want} once installed",
                    r.offset
                ));
            }
        }
        Ok(())
    }

    fn data(&mut self, spec: usize) -> Result<(), String> {
        let Some((start, end, jump_table)) = self.ex.data_origin[spec] else {
            return Ok(());
        };
        let d = self.view.data_block(spec).ok_or("data entry missing")?;
        let (refs, _) = self.cmp.new.data_refs(start, end, jump_table);
        for r in refs {
            let place = u64::from(d.offset) + u64::from(r.offset);
            let value = self
                .field(place, r.width)
                .ok_or("field outside the payload")?;
            let t = r.target.addr();
            let to = match (r.width, jump_table) {
                (8, _) => value,
                (_, true) => (self.base + u64::from(d.offset)).wrapping_add(value),
                _ => (self.base + place).wrapping_add(value),
            };
            let landed = self.landed(to);
            if let Landed::Image(a) = landed {
                if self.leads_into_replaced(a, 0) {
                    return Err(format!(
                        "{}+{:#x} leads into the old body of a replaced function ({}) once \
                         installed",
                        d.name,
                        r.offset,
                        self.cmp.old.describe(self.cmp.old.locate(a))
                    ));
                }
            }
            if !self.same(landed, t) {
                let want = self.cmp.new.describe(self.cmp.new.locate(t));
                return Err(format!(
                    "{}+{:#x} does not refer to {want} once installed",
                    d.name, r.offset
                ));
            }
        }
        Ok(())
    }
}
