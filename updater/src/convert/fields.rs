//! Conversion by field: what is mechanical about a layout change, done without a
//! converter. The new image's table and the table the record was written with (both
//! [`TableView`]s, read in place) are matched by field name:
//!
//! - a field the new layout adds gets its declared default;
//! - a field it removes is dropped (and named in the report);
//! - a field that moved, in the record or in the order of fields, is copied by name;
//! - an integer that widened is extended: zero-extended from unsigned, sign-extended
//!   from signed (`u32 → u64`, `i16 → i64`, `u16 → i32`);
//! - a field renamed is found only through the new definition's alias
//!   (`#[record(alias = "old")]`): names are never guessed;
//! - nested records convert field by field the same way; arrays element by element, when
//!   their length did not change.
//!
//! Anything else — an integer that narrowed, a signed one that became unsigned, a
//! changed type, a changed array length — is refused with the field and the rule
//! ([`FieldRefusal`]): it needs a converter. (A field that keeps its name and type but
//! changes meaning cannot be seen here at all: that, too, needs a converter.)
//!
//! [`plan`] turns two tables into a list of byte operations ([`FieldPlan`]); [`apply`]
//! runs it on one entry. Nothing allocates: the plan holds at most [`MAX_OPS`]
//! operations and [`MAX_NAMES`] added or dropped names.

use crate::table::{FieldView, TableView, TypeView};

/// Most byte operations one plan holds.
pub const MAX_OPS: usize = 96;
/// Most added or dropped field names a plan remembers for the report (it counts all).
pub const MAX_NAMES: usize = 8;

/// One byte operation of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Copy `len` bytes.
    Copy { src: u32, dst: u32, len: u32 },
    /// An integer of `from` bytes widened to `to` bytes.
    Extend {
        src: u32,
        dst: u32,
        from: u8,
        to: u8,
        signed: bool,
    },
    /// A default of `width` bytes (1, 2, 4, 8) written at `dst` (wider fields stay 0).
    Fill { dst: u32, width: u8, value: u64 },
}

/// Why a layout cannot be converted by field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The integer got narrower.
    Narrowed { from: u8, to: u8 },
    /// A signed integer became unsigned.
    LostSign { from: u8, to: u8 },
    /// The type is another kind of type.
    TypeChanged,
    /// An array or byte array changed its length.
    LengthChanged { from: u32, to: u32 },
    /// The plan would need more than [`MAX_OPS`] operations.
    TooManyOperations,
}

/// A field that conversion by field cannot take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldRefusal<'a> {
    /// The field's name (for a nested field, the innermost name).
    pub field: &'a str,
    /// The record field it is in, for a nested field.
    pub within: Option<&'a str>,
    pub rule: Rule,
    /// Its type before and after, for the message.
    pub from: TypeView<'a>,
    pub to: TypeView<'a>,
}

impl core::fmt::Display for FieldRefusal<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "field `")?;
        if let Some(outer) = self.within {
            write!(f, "{outer}.")?;
        }
        write!(f, "{}` ", self.field)?;
        let (from, to) = (self.from.describe(), self.to.describe());
        match self.rule {
            Rule::Narrowed { .. } => write!(f, "narrowed from {from} to {to}"),
            Rule::LostSign { .. } => write!(f, "changed from signed {from} to unsigned {to}"),
            Rule::TypeChanged => write!(f, "changed type from {from} to {to}"),
            Rule::LengthChanged { from: a, to: b } => {
                write!(f, "changed length from {a} to {b} ({from} → {to})")
            }
            Rule::TooManyOperations => {
                return write!(
                    f,
                    "`{}` needs more than {MAX_OPS} byte operations to convert by field",
                    self.field
                )
            }
        }?;
        write!(f, ": that is not mechanical, it needs a converter")
    }
}

/// What conversion by field does to one layout: the operations, and what it adds and
/// drops (named for the report).
#[derive(Debug, Clone, Copy)]
pub struct FieldPlan<'a> {
    ops: [Op; MAX_OPS],
    len: usize,
    /// Size of the converted entry.
    pub size: u32,
    added: [&'a str; MAX_NAMES],
    /// Fields added (all of them, including those not named in `added`).
    pub added_count: usize,
    dropped: [&'a str; MAX_NAMES],
    /// Fields dropped.
    pub dropped_count: usize,
}

impl<'a> FieldPlan<'a> {
    /// The added fields' names (the first [`MAX_NAMES`]).
    pub fn added(&self) -> &[&'a str] {
        &self.added[..self.added_count.min(MAX_NAMES)]
    }

    /// The dropped fields' names (the first [`MAX_NAMES`]).
    pub fn dropped(&self) -> &[&'a str] {
        &self.dropped[..self.dropped_count.min(MAX_NAMES)]
    }

    /// True if the plan copies the entry unchanged (the layouts are the same).
    pub fn is_identity(&self) -> bool {
        self.len == 1 && self.added_count == 0 && self.dropped_count == 0 && {
            let Op::Copy { src, dst, len } = self.ops[0] else {
                return false;
            };
            src == 0 && dst == 0 && len == self.size
        }
    }

    fn push(&mut self, op: Op, field: &'a str) -> Result<(), FieldRefusal<'a>> {
        // Adjacent copies merge: a reordering-free layout stays one copy.
        if let (
            Some(Op::Copy { src, dst, len }),
            Op::Copy {
                src: s2,
                dst: d2,
                len: l2,
            },
        ) = (self.ops[..self.len].last_mut(), op)
        {
            if *src + *len == s2 && *dst + *len == d2 {
                *len += l2;
                return Ok(());
            }
        }
        if self.len == MAX_OPS {
            return Err(FieldRefusal {
                field,
                within: None,
                rule: Rule::TooManyOperations,
                from: TypeView::Bool,
                to: TypeView::Bool,
            });
        }
        self.ops[self.len] = op;
        self.len += 1;
        Ok(())
    }
}

fn remember<'a>(names: &mut [&'a str; MAX_NAMES], count: &mut usize, name: &'a str) {
    if let Some(slot) = names.get_mut(*count) {
        *slot = name;
    }
    *count += 1;
}

/// The plan converting entries of table `from` into entries of table `to`.
pub fn plan<'a>(from: TableView<'a>, to: TableView<'a>) -> Result<FieldPlan<'a>, FieldRefusal<'a>> {
    let mut p = FieldPlan {
        ops: [Op::Copy {
            src: 0,
            dst: 0,
            len: 0,
        }; MAX_OPS],
        len: 0,
        size: to.size(),
        added: [""; MAX_NAMES],
        added_count: 0,
        dropped: [""; MAX_NAMES],
        dropped_count: 0,
    };
    table(&mut p, from, to, 0, 0, None, true)?;
    Ok(p)
}

/// The source field a target field takes its value from: same name, or its alias.
fn source_of<'a>(from: TableView<'a>, target: &FieldView<'a>) -> Option<FieldView<'a>> {
    from.field(target.name)
        .or_else(|| target.alias.and_then(|a| from.field(a)))
}

fn table<'a>(
    p: &mut FieldPlan<'a>,
    from: TableView<'a>,
    to: TableView<'a>,
    src_base: u32,
    dst_base: u32,
    within: Option<&'a str>,
    top: bool,
) -> Result<(), FieldRefusal<'a>> {
    if from.fingerprint() == to.fingerprint() {
        return p.push(
            Op::Copy {
                src: src_base,
                dst: dst_base,
                len: to.size(),
            },
            within.unwrap_or(""),
        );
    }
    for t in to.fields() {
        match source_of(from, &t) {
            Some(s) => field(p, &s, &t, src_base, dst_base, within)?,
            None => {
                if top {
                    remember(&mut p.added, &mut p.added_count, t.name);
                }
                fill_default(p, &t, dst_base)?;
            }
        }
    }
    if top {
        for s in from.fields() {
            let kept = to
                .fields()
                .any(|t| t.name == s.name || t.alias == Some(s.name));
            if !kept {
                remember(&mut p.dropped, &mut p.dropped_count, s.name);
            }
        }
    }
    Ok(())
}

fn fill_default<'a>(
    p: &mut FieldPlan<'a>,
    t: &FieldView<'a>,
    dst_base: u32,
) -> Result<(), FieldRefusal<'a>> {
    let width = match t.ty {
        TypeView::Unsigned(w) | TypeView::Signed(w) => w,
        TypeView::Bool => 1,
        // Wider types (byte arrays, records, arrays) start zeroed.
        _ => return Ok(()),
    };
    if t.default == 0 {
        return Ok(()); // the entry starts zeroed
    }
    p.push(
        Op::Fill {
            dst: dst_base + t.offset,
            width,
            value: if matches!(t.ty, TypeView::Bool) {
                u64::from(t.default != 0)
            } else {
                t.default
            },
        },
        t.name,
    )
}

fn field<'a>(
    p: &mut FieldPlan<'a>,
    s: &FieldView<'a>,
    t: &FieldView<'a>,
    src_base: u32,
    dst_base: u32,
    within: Option<&'a str>,
) -> Result<(), FieldRefusal<'a>> {
    let (src, dst) = (src_base + s.offset, dst_base + t.offset);
    let refuse = |rule| FieldRefusal {
        field: t.name,
        within,
        rule,
        from: s.ty,
        to: t.ty,
    };
    match (s.ty, t.ty) {
        (TypeView::Unsigned(a), TypeView::Unsigned(b))
        | (TypeView::Signed(a), TypeView::Signed(b)) => {
            if b < a {
                return Err(refuse(Rule::Narrowed { from: a, to: b }));
            }
            if a == b {
                return p.push(
                    Op::Copy {
                        src,
                        dst,
                        len: u32::from(a),
                    },
                    t.name,
                );
            }
            p.push(
                Op::Extend {
                    src,
                    dst,
                    from: a,
                    to: b,
                    signed: matches!(s.ty, TypeView::Signed(_)),
                },
                t.name,
            )
        }
        (TypeView::Unsigned(a), TypeView::Signed(b)) => {
            // Value-preserving only if strictly wider.
            if b <= a {
                return Err(refuse(Rule::Narrowed { from: a, to: b }));
            }
            p.push(
                Op::Extend {
                    src,
                    dst,
                    from: a,
                    to: b,
                    signed: false,
                },
                t.name,
            )
        }
        (TypeView::Signed(a), TypeView::Unsigned(b)) => {
            Err(refuse(Rule::LostSign { from: a, to: b }))
        }
        (TypeView::Bool, TypeView::Bool) => p.push(Op::Copy { src, dst, len: 1 }, t.name),
        (TypeView::Bytes(a), TypeView::Bytes(b)) => {
            if a != b {
                return Err(refuse(Rule::LengthChanged { from: a, to: b }));
            }
            p.push(Op::Copy { src, dst, len: a }, t.name)
        }
        (TypeView::Record(a), TypeView::Record(b)) => table(p, a, b, src, dst, Some(t.name), false),
        (TypeView::Array(n, ea), TypeView::Array(m, eb)) => {
            if n != m {
                return Err(refuse(Rule::LengthChanged { from: n, to: m }));
            }
            let (ea, eb) = (TypeView::element(ea), TypeView::element(eb));
            let (sa, sb) = (ea.size() as u32, eb.size() as u32);
            for i in 0..n {
                let se = FieldView {
                    name: t.name,
                    offset: 0,
                    size: sa,
                    default: 0,
                    alias: None,
                    ty: ea,
                };
                let te = FieldView {
                    name: t.name,
                    offset: 0,
                    size: sb,
                    default: 0,
                    alias: None,
                    ty: eb,
                };
                field(p, &se, &te, src + i * sa, dst + i * sb, within)?;
            }
            Ok(())
        }
        _ => Err(refuse(Rule::TypeChanged)),
    }
}

/// Converts one entry: `input` is an entry of the plan's source table, `output` gets
/// exactly `plan.size` bytes of the target's.
///
/// # Panics
/// If `input` or `output` is shorter than the tables say (the caller checked the
/// record's entry size against the table).
pub fn apply(plan: &FieldPlan<'_>, input: &[u8], output: &mut [u8]) {
    let out = &mut output[..plan.size as usize];
    out.fill(0);
    for op in &plan.ops[..plan.len] {
        match *op {
            Op::Copy { src, dst, len } => {
                let (s, d, n) = (src as usize, dst as usize, len as usize);
                out[d..d + n].copy_from_slice(&input[s..s + n]);
            }
            Op::Extend {
                src,
                dst,
                from,
                to,
                signed,
            } => {
                let (s, d) = (src as usize, dst as usize);
                let mut v = [0u8; 8];
                v[..from as usize].copy_from_slice(&input[s..s + from as usize]);
                let negative = signed && v[from as usize - 1] & 0x80 != 0;
                if negative {
                    v[from as usize..].fill(0xff);
                }
                out[d..d + to as usize].copy_from_slice(&v[..to as usize]);
            }
            Op::Fill { dst, width, value } => {
                let d = dst as usize;
                out[d..d + width as usize].copy_from_slice(&value.to_le_bytes()[..width as usize]);
            }
        }
    }
}

#[cfg(test)]
mod tests;
