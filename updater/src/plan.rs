//! The plan of a swap, decided from the two images' descriptions (`crate::describe`)
//! before anything stops ([`swap`] for the whole of it): for every record the running kernel exports, how the new
//! image will read it ([`RecordPlan`]: unchanged, converted by field, by its
//! converters, or both in a chain), whether the regions of the address map may change
//! as the new image wants ([`regions`]), and whether the hand-off descriptor is the
//! same. The running kernel asks at staging, the host before it pushes (`hotkernel
//! swap`, `hotkernel plan`), and the new image's bootstrap again at the swap, with the
//! tables the exported records actually carry.
//!
//! The **layout guard**: a schema version means one layout. When a record arrives in a
//! version the new image has a table for (its own, or one of its converters'), the two
//! tables must have the same fingerprint; otherwise a layout changed while its version
//! did not, and the record would be reinterpreted — the swap is refused with the fields
//! that differ and "bump the schema version of …".

use crate::convert::fields::{self, FieldPlan, FieldRefusal};
use crate::describe::{Description, RegionRule, StepDesc};
use crate::records::{RecordKind, SchemaVersion};
use crate::table::{FieldView, TableView, TypeView};

/// Most stages of one record's conversion.
pub const MAX_STAGES: usize = 6;
/// Fields a difference between two tables names (it counts all).
pub const MAX_DIFFS: usize = 4;

/// One stage of a record's conversion.
#[allow(
    clippy::large_enum_variant,
    reason = "plans live on the bootstrap's stack, which has no heap to box into"
)]
#[derive(Debug, Clone, Copy)]
pub enum Stage<'a> {
    /// By field, from the table of version `from` to that of `to` (the same version
    /// only when the image's table is not the one a converter leaves behind).
    Fields {
        from: SchemaVersion,
        to: SchemaVersion,
        plan: FieldPlan<'a>,
    },
    /// The new image's converter from `from` to `from + 1`.
    Converter(StepDesc<'a>),
}

/// How the new image will read one record kind.
#[derive(Debug, Clone, Copy)]
pub struct RecordPlan<'a> {
    pub kind: RecordKind,
    pub from: SchemaVersion,
    pub to: SchemaVersion,
    stages: [Option<Stage<'a>>; MAX_STAGES],
    len: usize,
}

/// The short form of a plan, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// The same layout: the records are taken as they stand.
    Unchanged,
    /// Converted by field only.
    ByFields,
    /// Converted by the new image's converters only.
    Converters,
    /// Both, in one chain.
    Mixed,
}

impl core::fmt::Display for Method {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Method::Unchanged => "unchanged",
            Method::ByFields => "converted by fields",
            Method::Converters => "converted by converter",
            Method::Mixed => "converted by converter and by fields",
        })
    }
}

impl<'a> RecordPlan<'a> {
    /// The stages, in order.
    pub fn stages(&self) -> impl Iterator<Item = &Stage<'a>> + '_ {
        self.stages[..self.len].iter().flatten()
    }

    /// Unchanged, by fields, by converter, or both.
    pub fn method(&self) -> Method {
        let (mut fields, mut converters) = (false, false);
        for s in self.stages() {
            match s {
                Stage::Fields { .. } => fields = true,
                Stage::Converter(_) => converters = true,
            }
        }
        match (fields, converters) {
            (false, false) => Method::Unchanged,
            (true, false) => Method::ByFields,
            (false, true) => Method::Converters,
            (true, true) => Method::Mixed,
        }
    }

    fn push(&mut self, stage: Stage<'a>) -> Result<(), PlanRefusal<'a>> {
        let slot = self
            .stages
            .get_mut(self.len)
            .ok_or(PlanRefusal::TooManyStages { kind: self.kind })?;
        *slot = Some(stage);
        self.len += 1;
        Ok(())
    }
}

/// How two tables of one version differ (for the layout guard's message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Diff<'a> {
    fields: [(&'a str, Change); MAX_DIFFS],
    /// Fields that differ (all of them, including those not listed).
    pub count: usize,
}

/// What differs about one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Only in the running kernel's table.
    Removed,
    /// Only in the new image's table.
    Added,
    /// In both, at another offset or of another type.
    Changed,
}

impl<'a> Diff<'a> {
    fn between(old: TableView<'a>, new: TableView<'a>) -> Self {
        let mut d = Diff {
            fields: [("", Change::Changed); MAX_DIFFS],
            count: 0,
        };
        for o in old.fields() {
            match new.field(o.name) {
                None => d.note(o.name, Change::Removed),
                Some(n) if !same_field(&o, &n) => d.note(o.name, Change::Changed),
                Some(_) => {}
            }
        }
        for n in new.fields() {
            if old.field(n.name).is_none() {
                d.note(n.name, Change::Added);
            }
        }
        if d.count == 0 && old.size() != new.size() {
            d.note("", Change::Changed);
        }
        d
    }

    fn note(&mut self, name: &'a str, change: Change) {
        if let Some(slot) = self.fields.get_mut(self.count) {
            *slot = (name, change);
        }
        self.count += 1;
    }

    /// The fields listed (at most [`MAX_DIFFS`]).
    pub fn fields(&self) -> &[(&'a str, Change)] {
        &self.fields[..self.count.min(MAX_DIFFS)]
    }
}

fn same_type(a: TypeView<'_>, b: TypeView<'_>) -> bool {
    match (a, b) {
        (TypeView::Record(x), TypeView::Record(y)) => x.fingerprint() == y.fingerprint(),
        (TypeView::Array(n, x), TypeView::Array(m, y)) => {
            n == m && same_type(TypeView::element(x), TypeView::element(y))
        }
        _ => a == b,
    }
}

fn same_field(a: &FieldView<'_>, b: &FieldView<'_>) -> bool {
    a.offset == b.offset && a.size == b.size && same_type(a.ty, b.ty)
}

impl core::fmt::Display for Diff<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (i, (name, change)) in self.fields().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match (name.is_empty(), change) {
                (true, _) => f.write_str("its size")?,
                (false, Change::Removed) => write!(f, "`{name}` removed")?,
                (false, Change::Added) => write!(f, "`{name}` added")?,
                (false, Change::Changed) => write!(f, "`{name}` changed")?,
            }
        }
        if self.count > MAX_DIFFS {
            write!(f, " and {} more", self.count - MAX_DIFFS)?;
        }
        Ok(())
    }
}

/// Why the new image cannot read a record, or its address map, or its descriptor, the
/// way the running kernel has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanRefusal<'a> {
    /// A layout changed while its schema version did not.
    Unbumped {
        kind: RecordKind,
        version: SchemaVersion,
        diff: Diff<'a>,
    },
    /// A step that conversion by field cannot take and no converter covers.
    Fields {
        kind: RecordKind,
        from: SchemaVersion,
        to: SchemaVersion,
        refusal: FieldRefusal<'a>,
    },
    /// The record is newer than what the new image reads.
    Downgrade {
        kind: RecordKind,
        exported: SchemaVersion,
        reads: SchemaVersion,
    },
    /// More stages than [`MAX_STAGES`].
    TooManyStages { kind: RecordKind },
    /// A record the running kernel exports, not optional, that the new image does not
    /// read.
    NotRead {
        kind: RecordKind,
        version: SchemaVersion,
    },
    /// The hand-off descriptor's layout changed while `HANDOFF_ABI_VERSION` did not.
    DescriptorUnbumped { abi: u32 },
    /// The images were built with different hand-off ABIs.
    Abi { running: u32, new: u32 },
    /// A region the running kernel has, the new image does not declare.
    RegionMissing { name: &'a str },
    /// A region the new image has, the running kernel does not (nothing maps it).
    RegionNew { name: &'a str },
    /// A region moved, or a fixed one changed size.
    RegionMoved {
        name: &'a str,
        running: (u64, u64),
        new: (u64, u64),
    },
}

impl core::fmt::Display for PlanRefusal<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PlanRefusal::Unbumped {
                kind,
                version,
                diff,
            } => write!(
                f,
                "{kind} {version} has another layout in the new image than in the running kernel ({diff}) but the same version: bump the schema version of {kind}"
            ),
            PlanRefusal::Fields {
                kind,
                from,
                to,
                refusal,
            } => write!(f, "{kind} {from}→{to}: {refusal}"),
            PlanRefusal::Downgrade {
                kind,
                exported,
                reads,
            } => write!(
                f,
                "{kind} is {exported} in the running kernel, the new image reads only the older {reads}"
            ),
            PlanRefusal::TooManyStages { kind } => write!(
                f,
                "{kind} needs more than {MAX_STAGES} conversion stages: carry converters for fewer versions apart"
            ),
            PlanRefusal::NotRead { kind, version } => write!(
                f,
                "the running kernel exports {kind} {version}, which the new image does not read and which is not optional: keep the record kind in the new image"
            ),
            PlanRefusal::DescriptorUnbumped { abi } => write!(
                f,
                "the hand-off descriptor has another layout in the new image but the same HANDOFF_ABI_VERSION ({abi}): bump it (updater::handoff)"
            ),
            PlanRefusal::Abi { running, new } => write!(
                f,
                "the running kernel uses hand-off ABI {running}, the new image {new}: the images cannot hand over to each other"
            ),
            PlanRefusal::RegionMissing { name } => write!(
                f,
                "the new image does not declare the region `{name}`, which the running kernel has"
            ),
            PlanRefusal::RegionNew { name } => write!(
                f,
                "the new image declares a region `{name}` the running kernel does not have: nothing would map it"
            ),
            PlanRefusal::RegionMoved { name, running, new } => write!(
                f,
                "the region `{name}` is {:#x}+{:#x} in the running kernel and {:#x}+{:#x} in the new image: it may not move{}",
                running.0,
                running.1,
                new.0,
                new.1,
                if running.0 == new.0 { " or change size" } else { "" }
            ),
        }
    }
}

impl PlanRefusal<'_> {
    /// The mailbox status a running kernel answers this refusal with at staging (the
    /// host's check reports the same).
    pub fn status(&self) -> image_format::mailbox::Status {
        use image_format::mailbox::Status;
        match self {
            PlanRefusal::Unbumped { .. } | PlanRefusal::DescriptorUnbumped { .. } => {
                Status::LayoutUnbumped
            }
            PlanRefusal::RegionMissing { .. }
            | PlanRefusal::RegionNew { .. }
            | PlanRefusal::RegionMoved { .. } => Status::RegionMismatch,
            PlanRefusal::Abi { .. } => Status::Incompatible,
            PlanRefusal::Fields { .. }
            | PlanRefusal::Downgrade { .. }
            | PlanRefusal::TooManyStages { .. }
            | PlanRefusal::NotRead { .. } => Status::SchemaUnconvertible,
        }
    }
}

/// The tables a new image has for versions of `kind` (its own and its converters').
fn known_tables<'a, 'd>(
    new: &'d Description<'a>,
    kind: RecordKind,
) -> impl Iterator<Item = (SchemaVersion, TableView<'a>)> + 'd {
    let own = new.record(kind).map(|r| (r.version, r.table));
    let steps = new
        .steps()
        .filter(move |s| s.kind == kind)
        .flat_map(|s| [(s.from, s.from_table), (s.to, s.to_table)]);
    own.into_iter().chain(steps)
}

/// How `new` reads `kind`, exported in `version` with `table`; `Ok(None)` if `new`
/// does not read the kind (the caller drops the record or refuses).
pub fn record_plan<'a>(
    new: &Description<'a>,
    kind: RecordKind,
    version: SchemaVersion,
    table: TableView<'a>,
) -> Result<Option<RecordPlan<'a>>, PlanRefusal<'a>> {
    let Some(target) = new.record(kind) else {
        return Ok(None);
    };
    if version > target.version {
        return Err(PlanRefusal::Downgrade {
            kind,
            exported: version,
            reads: target.version,
        });
    }
    // The guard: one version, one layout.
    for (v, known) in known_tables(new, kind) {
        if v == version && known.fingerprint() != table.fingerprint() {
            return Err(PlanRefusal::Unbumped {
                kind,
                version,
                diff: Diff::between(table, known),
            });
        }
    }
    let mut plan = RecordPlan {
        kind,
        from: version,
        to: target.version,
        stages: [None; MAX_STAGES],
        len: 0,
    };
    let fields =
        |from: TableView<'a>, to: TableView<'a>, at: SchemaVersion, to_v: SchemaVersion| {
            fields::plan(from, to).map_err(|refusal| PlanRefusal::Fields {
                kind,
                from: at,
                to: to_v,
                refusal,
            })
        };
    let (mut v, mut t) = (version, table);
    let mut step_at = version;
    while step_at < target.version {
        if let Some(step) = new.step(kind, step_at) {
            if step.from_table.fingerprint() != t.fingerprint() {
                plan.push(Stage::Fields {
                    from: v,
                    to: step.from,
                    plan: fields(t, step.from_table, v, step.from)?,
                })?;
            }
            plan.push(Stage::Converter(step))?;
            v = step.to;
            t = step.to_table;
        }
        step_at = step_at.next();
    }
    if t.fingerprint() != target.table.fingerprint() {
        plan.push(Stage::Fields {
            from: v,
            to: target.version,
            plan: fields(t, target.table, v, target.version)?,
        })?;
    }
    Ok(Some(plan))
}

/// What becomes of one record kind in a swap, as [`swap`] reports it.
#[derive(Debug, Clone, Copy)]
pub enum Carried<'p, 'a> {
    /// The running kernel exports it; the new image reads it by this plan.
    Read(&'p RecordPlan<'a>),
    /// The running kernel exports it, optional; the new image drops it.
    Dropped {
        kind: RecordKind,
        version: SchemaVersion,
    },
    /// Only the new image has it: it starts empty (its kind's first tasks, if it is a
    /// task kind with an initialisation requirement).
    New {
        kind: RecordKind,
        version: SchemaVersion,
    },
}

/// The plan of a whole swap from the running kernel's description to the new image's:
/// the same hand-off ABI and descriptor, the regions (returned: those that change size),
/// and every record the running kernel exports (it exports every kind it reads, in its
/// own version and layout), each passed to `each` as it is decided. A required record
/// the new image cannot read refuses the swap.
pub fn swap<'a>(
    running: &Description<'a>,
    new: &Description<'a>,
    mut each: impl FnMut(Carried<'_, 'a>),
) -> Result<Resizes<'a>, PlanRefusal<'a>> {
    descriptor(running, new)?;
    let resizes = regions(running, new)?;
    for r in running.records() {
        match record_plan(new, r.kind, r.version, r.table) {
            Ok(Some(plan)) => each(Carried::Read(&plan)),
            Ok(None) | Err(PlanRefusal::Downgrade { .. }) if r.optional => each(Carried::Dropped {
                kind: r.kind,
                version: r.version,
            }),
            Ok(None) => {
                return Err(PlanRefusal::NotRead {
                    kind: r.kind,
                    version: r.version,
                })
            }
            Err(e) => return Err(e),
        }
    }
    for n in new.records().filter(|n| running.record(n.kind).is_none()) {
        each(Carried::New {
            kind: n.kind,
            version: n.version,
        });
    }
    Ok(resizes)
}

/// A region that changes size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resize<'a> {
    pub name: &'a str,
    pub start: u64,
    pub running: u64,
    pub new: u64,
}

/// The regions that change size (at most the description's regions).
#[derive(Debug, Clone, Copy)]
pub struct Resizes<'a> {
    items: [Option<Resize<'a>>; crate::describe::MAX_REGIONS],
    len: usize,
}

impl<'a> Resizes<'a> {
    /// The resizes, in the running kernel's order.
    pub fn iter(&self) -> impl Iterator<Item = Resize<'a>> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }
}

/// Compares the regions of the address map: the same set, none moved, only resizable
/// ones resized. Returns the resizes.
pub fn regions<'a>(
    running: &Description<'a>,
    new: &Description<'a>,
) -> Result<Resizes<'a>, PlanRefusal<'a>> {
    let mut out = Resizes {
        items: [None; crate::describe::MAX_REGIONS],
        len: 0,
    };
    for r in running.regions() {
        let Some(n) = new.region(r.name) else {
            return Err(PlanRefusal::RegionMissing { name: r.name });
        };
        let moved = n.start != r.start || (r.rule == RegionRule::Fixed && n.len != r.len);
        if moved || n.rule != r.rule {
            return Err(PlanRefusal::RegionMoved {
                name: r.name,
                running: (r.start, r.len),
                new: (n.start, n.len),
            });
        }
        if n.len != r.len {
            if let Some(slot) = out.items.get_mut(out.len) {
                *slot = Some(Resize {
                    name: r.name,
                    start: r.start,
                    running: r.len,
                    new: n.len,
                });
                out.len += 1;
            }
        }
    }
    if let Some(n) = new.regions().find(|n| running.region(n.name).is_none()) {
        return Err(PlanRefusal::RegionNew { name: n.name });
    }
    Ok(out)
}

/// The same hand-off ABI, and the same descriptor layout under one ABI version.
pub fn descriptor<'a>(
    running: &Description<'a>,
    new: &Description<'a>,
) -> Result<(), PlanRefusal<'a>> {
    if running.abi_version() != new.abi_version() {
        return Err(PlanRefusal::Abi {
            running: running.abi_version(),
            new: new.abi_version(),
        });
    }
    if running.descriptor_fingerprint() != new.descriptor_fingerprint() {
        return Err(PlanRefusal::DescriptorUnbumped {
            abi: new.abi_version(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
