//! [`Analysis`]: an [`Image`] with its items, every function decoded, and every
//! relocation turned into a [`Ref`] — the address it really refers to — which
//! [`Analysis::locate`] names as a [`Location`]: a function, a data symbol, an unnamed
//! block of read-only data, a code label, writable data, or nothing known.
//!
//! Unnamed read-only data (string tables, vtables, panic locations, jump tables: the
//! linker keeps no symbol for most of it) is a *gap* block: it starts at the referenced
//! address and ends at the next data symbol, the next address any relocation refers
//! to, or the end of its section. A jump table (a run of 4-byte pc-relative
//! relocations at the referenced address) ends where that run ends.

use std::collections::BTreeSet;

use object::elf;

use super::decode::{decode, Decoded};
use super::image::{Image, Reloc, SectionKind};
use super::symbols::Items;

/// What a relocation field refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// The address the instruction or data really refers to.
    Addr(u64),
    /// The value loaded from a GOT slot: the address of a symbol.
    Got(u64),
    /// Symbol `index` itself (named symbols referenced from code outside functions,
    /// where the address may be meaningless in the image: code copied elsewhere at
    /// run time). The value is the symbol's.
    Symbol { index: usize, value: u64 },
}

impl Target {
    /// The address it stands for.
    pub fn addr(self) -> u64 {
        match self {
            Self::Addr(x) | Self::Got(x) | Self::Symbol { value: x, .. } => x,
        }
    }
}

/// A relocation field, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ref {
    /// Offset of the field in its function or data block.
    pub offset: u32,
    /// Width of the field.
    pub width: u32,
    /// ELF relocation type.
    pub r_type: u32,
    /// `S + A`.
    pub sa: u64,
    /// `A`.
    pub addend: i64,
    pub target: Target,
}

/// Why a function cannot be moved to patch memory as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CodeProblem {
    /// A relocation type the patch format has no equivalent for.
    UnsupportedRelocation { offset: u32, r_type: u32 },
    /// The decoder found no instruction at this offset.
    Undecodable { offset: u32 },
    /// A PC-relative operand or branch leaves the function without a relocation.
    UnlinkedReference { offset: u32, target: u64 },
    /// A relocation against an undefined symbol.
    Undefined { offset: u32 },
}

/// A function's code, decoded and with its references.
#[derive(Debug, Clone, Default)]
pub(crate) struct FuncCode {
    pub decoded: Decoded,
    pub refs: Vec<Ref>,
    pub problems: Vec<CodeProblem>,
}

/// What an address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Location {
    /// Inside function `index`, `delta` bytes from its entry.
    Func { index: usize, delta: u64 },
    /// Inside data symbol `index`.
    Object { index: usize, delta: u64 },
    /// Unnamed read-only data `[start, end)`, referenced at `start`.
    Gap {
        section: usize,
        start: u64,
        end: u64,
        jump_table: bool,
    },
    /// Code outside functions, `delta` bytes after label `index`.
    Label { index: usize, delta: u64 },
    /// Writable data without a symbol.
    Writable { addr: u64 },
    /// Nothing the differ can name (code without label, outside every section).
    Unknown { addr: u64 },
}

/// One image, analysed.
pub(crate) struct Analysis<'a> {
    pub image: Image<'a>,
    pub items: Items,
    /// Per function (same index as `items.funcs`).
    pub code: Vec<FuncCode>,
    /// Every address a relocation refers to (bounds of gap blocks).
    referenced: BTreeSet<u64>,
}

impl<'a> Analysis<'a> {
    pub fn of(image: Image<'a>) -> Self {
        let items = Items::of(&image);
        let code: Vec<FuncCode> = items
            .funcs
            .iter()
            .map(|f| func_code(&image, f.addr, f.size))
            .collect();
        let mut referenced = BTreeSet::new();
        for c in &code {
            for r in &c.refs {
                if let Target::Addr(t) = r.target {
                    referenced.insert(t);
                }
            }
        }
        for (&section, list) in &image.relocs {
            if image
                .sections
                .get(section)
                .is_some_and(|s| s.kind != SectionKind::Code)
            {
                for r in list {
                    if let Some(s) = image.symbol_value(r) {
                        referenced.insert(s.wrapping_add_signed(r.addend));
                    }
                }
            }
        }
        Self {
            image,
            items,
            code,
            referenced,
        }
    }

    /// Names `addr`.
    pub fn locate(&self, addr: u64) -> Location {
        if let Some(index) = self.items.func_at(addr) {
            let delta = addr - self.items.funcs[index].addr;
            return Location::Func { index, delta };
        }
        let Some(section) = self.image.section_at(addr) else {
            return Location::Unknown { addr };
        };
        let kind = self.image.sections[section].kind;
        if let Some(index) = self.items.object_at(addr) {
            if self.items.objects[index].section == section {
                let delta = addr - self.items.objects[index].addr;
                return Location::Object { index, delta };
            }
        }
        match kind {
            SectionKind::Code => match self.items.label_before(addr, section) {
                Some(index) => Location::Label {
                    index,
                    delta: addr - self.items.labels[index].addr,
                },
                None => Location::Unknown { addr },
            },
            SectionKind::ReadOnly | SectionKind::Relro => self.gap(section, addr),
            SectionKind::Writable | SectionKind::Bss => Location::Writable { addr },
            SectionKind::NotLoaded => Location::Unknown { addr },
        }
    }

    fn gap(&self, section: usize, start: u64) -> Location {
        let s = &self.image.sections[section];
        let mut end = s.end();
        if let Some(next) = self.items.next_object_start(start, section) {
            end = end.min(next);
        }
        if let Some(&next) = self.referenced.range(start + 1..).next() {
            end = end.min(next);
        }
        let relocs = self.image.relocs_in(start, end);
        let jump_table = relocs
            .first()
            .is_some_and(|r| r.offset == start && r.r_type == elf::R_X86_64_PC32);
        if jump_table {
            let mut at = start;
            for r in relocs {
                if r.offset != at || r.r_type != elf::R_X86_64_PC32 {
                    break;
                }
                at += 4;
            }
            end = at;
        }
        Location::Gap {
            section,
            start,
            end,
            jump_table,
        }
    }

    /// The references of the data block `[start, end)`. A jump table's entry holds
    /// `target − table` (`S + A − P` with the table at `start`), so it refers to
    /// `S + A − (P − start)`; other data fields refer to `S + A`.
    pub fn data_refs(
        &self,
        start: u64,
        end: u64,
        jump_table: bool,
    ) -> (Vec<Ref>, Vec<CodeProblem>) {
        let mut refs = Vec::new();
        let mut problems = Vec::new();
        for r in self.image.relocs_in(start, end) {
            let offset = (r.offset - start) as u32;
            let Some(s) = self.image.symbol_value(r) else {
                problems.push(CodeProblem::Undefined { offset });
                continue;
            };
            let sa = s.wrapping_add_signed(r.addend);
            let (width, target) = match r.r_type {
                elf::R_X86_64_64 => (8, sa),
                elf::R_X86_64_PC32 if jump_table => (4, sa.wrapping_sub(r.offset - start)),
                elf::R_X86_64_PC32 | elf::R_X86_64_PLT32 => (4, sa),
                r_type => {
                    problems.push(CodeProblem::UnsupportedRelocation { offset, r_type });
                    continue;
                }
            };
            refs.push(Ref {
                offset,
                width,
                r_type: r.r_type,
                sa,
                addend: r.addend,
                target: Target::Addr(target),
            });
        }
        (refs, problems)
    }

    /// A short human name for a location, e.g. `kernel::tasks::tick+0x10`.
    pub fn describe(&self, loc: Location) -> String {
        let with = |name: &str, delta: u64| {
            if delta == 0 {
                String::from(name)
            } else {
                format!("{name}+{delta:#x}")
            }
        };
        match loc {
            Location::Func { index, delta } => with(&self.items.funcs[index].name, delta),
            Location::Object { index, delta } => {
                let o = &self.items.objects[index];
                if o.anon {
                    with(
                        &format!("anon {}@{:#x}", self.image.sections[o.section].name, o.addr),
                        delta,
                    )
                } else {
                    with(&o.name, delta)
                }
            }
            Location::Gap {
                section,
                start,
                jump_table,
                ..
            } => format!(
                "{} {}@{start:#x}",
                if jump_table { "jump table" } else { "anon" },
                self.image.sections[section].name
            ),
            Location::Label { index, delta } => with(&self.items.labels[index].name, delta),
            Location::Writable { addr } => format!("writable data at {addr:#x}"),
            Location::Unknown { addr } => format!("{addr:#x}"),
        }
    }
}

/// Decodes one function and resolves its relocations.
fn func_code(image: &Image<'_>, addr: u64, size: u64) -> FuncCode {
    let bytes = image.bytes(addr, size).unwrap_or(&[]);
    let decoded = decode(bytes, addr);
    let mut out = FuncCode {
        decoded,
        ..FuncCode::default()
    };
    if let Some(offset) = out.decoded.invalid_at {
        out.problems.push(CodeProblem::Undecodable { offset });
    }
    let relocs = image.relocs_in(addr, addr + size);
    for r in relocs {
        let offset = (r.offset - addr) as u32;
        match resolve_code_reloc(image, &out.decoded, addr, offset, r) {
            Ok(rf) => out.refs.push(rf),
            Err(p) => out.problems.push(p),
        }
    }
    // PC-relative operands and branches whose displacement no relocation covers must
    // stay inside the function.
    let end = addr + size;
    for pc in &out.decoded.pc_refs {
        if pc.target >= addr && pc.target < end {
            continue;
        }
        let covered = out
            .refs
            .iter()
            .any(|r| r.offset >= pc.insn && r.offset < pc.insn + pc.len);
        if !covered {
            out.problems.push(CodeProblem::UnlinkedReference {
                offset: pc.insn,
                target: pc.target,
            });
        }
    }
    out
}

fn resolve_code_reloc(
    image: &Image<'_>,
    decoded: &Decoded,
    addr: u64,
    offset: u32,
    r: &Reloc,
) -> Result<Ref, CodeProblem> {
    let s = image
        .symbol_value(r)
        .ok_or(CodeProblem::Undefined { offset })?;
    let sa = s.wrapping_add_signed(r.addend);
    let insn_end = || {
        decoded
            .insn_end(offset)
            .ok_or(CodeProblem::Undecodable { offset })
    };
    let (width, target) = match r.r_type {
        elf::R_X86_64_PC32 | elf::R_X86_64_PLT32 => {
            let k = u64::from(insn_end()? - offset);
            (4, Target::Addr(sa.wrapping_add(k)))
        }
        elf::R_X86_64_GOTPCREL | elf::R_X86_64_GOTPCRELX | elf::R_X86_64_REX_GOTPCRELX => {
            // Unless the linker relaxed it into a direct reference, the instruction
            // reads the GOT slot that holds `S`.
            let k = u64::from(insn_end()? - offset);
            let field = image
                .bytes(addr + u64::from(offset), 4)
                .and_then(|b| b.try_into().ok())
                .map(i32::from_le_bytes)
                .ok_or(CodeProblem::Undecodable { offset })?;
            let refers_to = (addr + u64::from(offset) + k).wrapping_add_signed(i64::from(field));
            let in_got = image
                .section_at(refers_to)
                .is_some_and(|i| image.sections[i].name == ".got");
            if in_got {
                (4, Target::Got(s))
            } else {
                (4, Target::Addr(refers_to))
            }
        }
        elf::R_X86_64_64 => (8, Target::Addr(sa)),
        r_type => return Err(CodeProblem::UnsupportedRelocation { offset, r_type }),
    };
    Ok(Ref {
        offset,
        width,
        r_type: r.r_type,
        sa,
        addend: r.addend,
        target,
    })
}
