//! Reconcile: the new image's decisions before anything of the old kernel is
//! overwritten. The bootstrap (the new image's code, run by the old kernel with every
//! other CPU parked) calls [`reconcile`] and does nothing but report its answer.
//!
//! In: the hand-off ABI the old kernel wrote, the running image as the descriptor
//! describes it ([`Running`]), this image ([`Image`]: identity, its description — the
//! field table of every record it reads and of its converters — the converters' code,
//! the kinds it must initialise), the exported record set with the field table of each
//! record, and the rest of the area for the converted set. Out: the converted set and
//! what became of the tasks ([`Reconciled`]), or a typed [`BootstrapRefusal`] whose
//! message says what to do.
//!
//! In order: the ABI; the versions this image replaces and the capabilities it needs
//! (the same checks as staging's [`crate::compat`]); for every exported record, its plan
//! ([`crate::plan::record_plan`]: the layout guard, then unchanged / by fields / by
//! converters), carried out — a record whose layout did not change is *referred to*
//! where it stands, not copied (the converted set's directory points at the exported
//! entries), so unchanged state costs nothing here whatever its size; every task
//! checked against this image's kinds, each kind's state count against its tasks; the
//! patch-set rule; the initialisation requirements of kinds new to the machine. It
//! needs no heap and writes nothing but `out` and the log.

use image_format::{Capabilities, EmbeddedIdentity, ImageVersion, RecordKind, SchemaVersion};

use crate::compat::{self, Incompatibility};
use crate::convert::fields::{self as by_fields, FieldPlan};
use crate::convert::{ConvertError, Step, MAX_ENTRY};
use crate::describe::Description;
use crate::plan::{self, PlanRefusal, RecordPlan, Stage};
use crate::record::{Layout, PlainError, Record};
use crate::records::task_table::{flags as task_flags, TaskEntry};
use crate::records::{kinds, patch_set, run_queues, TaskKind};
use crate::recordset::{
    RecordHeader, RecordRef, RecordSet, RecordSetError, RecordSetWriter, MAX_RECORDS,
};
use crate::wire::WireError;

/// The image being replaced, as the old kernel described it in the descriptor.
#[derive(Debug, Clone, Copy)]
pub struct Running<'a> {
    pub version: ImageVersion,
    pub caps_provided: Capabilities,
    pub build_id: &'a [u8],
}

/// What an image reads and writes of one record kind (the input of its description).
#[derive(Debug, Clone, Copy)]
pub struct RecordDecl {
    pub kind: RecordKind,
    /// The version this image reads and writes.
    pub version: SchemaVersion,
    /// Its field table.
    pub layout: &'static Layout,
    /// An image that cannot read the record may drop it (with a warning).
    pub optional: bool,
}

impl RecordDecl {
    /// The declaration of record type `R`.
    pub const fn of<R: Record>(optional: bool) -> RecordDecl {
        RecordDecl {
            kind: R::KIND,
            version: R::SCHEMA,
            layout: R::LAYOUT,
            optional,
        }
    }
}

/// The new image: what it is and what it carries.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    pub identity: &'a EmbeddedIdentity,
    pub build_id: &'a [u8],
    /// Its description (`crate::describe`): every record kind it reads, with tables.
    pub description: Description<'a>,
    /// Its converters' code (one list per record kind that has any); the description
    /// has their tables.
    pub steps: &'a [&'a [Step]],
    /// Task kinds whose first tasks it creates when the machine has none yet; bit `i`
    /// of [`Reconciled::init_required`] stands for `init_kinds[i]`.
    pub init_kinds: &'a [TaskKind],
}

impl Image<'_> {
    /// Whether the image has task kind `kind` (reads its state record).
    pub fn knows_task_kind(&self, kind: TaskKind) -> bool {
        self.description.record(kind.state_record()).is_some()
    }

    fn step(&self, kind: RecordKind, from: SchemaVersion) -> Option<&Step> {
        self.steps
            .iter()
            .flat_map(|list| list.iter())
            .find(|s| s.kind == kind && s.from == from)
    }
}

/// What the old kernel asked for.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    /// The hand-off ABI version the old kernel wrote (the descriptor's).
    pub abi_version: u32,
    /// The descriptor carried the right magic.
    pub magic_ok: bool,
    /// The fingerprint of the hand-off layout the old kernel was built with
    /// (`Descriptor::layout_fingerprint`).
    pub layout_fingerprint: u64,
    /// A test asked for a refusal (fault injection).
    pub inject_failure: bool,
    /// A test asked for the conversion of this record kind to fail.
    pub inject_converter: Option<RecordKind>,
}

/// How one stage of a record's conversion went.
#[derive(Debug, Clone, Copy)]
pub enum By<'a> {
    /// The image's converter.
    Converter,
    /// Conversion by field (the plan names what was added and dropped).
    Fields(&'a FieldPlan<'a>),
}

/// What reconcile did, for the report.
pub trait Log {
    /// `entries` entries of `kind` crossed in `version` as they stood (layout unchanged).
    fn unchanged(&mut self, kind: RecordKind, version: SchemaVersion, entries: u32);
    /// `entries` entries of `kind` went from `from` to `to` (one call per stage).
    fn converted(
        &mut self,
        kind: RecordKind,
        from: SchemaVersion,
        to: SchemaVersion,
        entries: u32,
        by: By<'_>,
    );
    /// Something is lost that may be lost.
    fn warn(&mut self, warning: Warning);
}

/// What may be lost in a swap, and is said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    /// An optional record this image does not read.
    DroppedRecord {
        kind: RecordKind,
        version: SchemaVersion,
        entries: u32,
    },
    /// Optional tasks of kinds this image lacks.
    DroppedTasks { count: u32 },
    /// A hotpatch of the running build: the new image is another build.
    DroppedPatch { id: u64, label: [u8; 32] },
}

impl core::fmt::Display for Warning {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Warning::DroppedRecord {
                kind,
                version,
                entries,
            } => write!(
                f,
                "dropped optional {kind} {version} ({entries} entries): this image does not read it"
            ),
            Warning::DroppedTasks { count } => write!(
                f,
                "{count} optional tasks of kinds this image lacks will not be resumed"
            ),
            Warning::DroppedPatch { id, label } => write!(
                f,
                "hotpatch {id:016x} ({}) dropped: the new image is another build",
                crate::handoff::text(label)
            ),
        }
    }
}

/// The converted set and what became of the tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// Where the converted set is in the area, and the area offset past it.
    pub at: usize,
    pub end: usize,
    pub tasks_kept: u32,
    pub tasks_dropped: u32,
    /// Bit `i`: create the first tasks of `Image::init_kinds[i]`.
    pub init_required: u64,
}

/// Why this image refuses to replace the running one. Nothing has changed when it is
/// returned; the old kernel resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapRefusal<'a> {
    /// The descriptor is not of this image's hand-off ABI.
    Abi {
        found: u32,
        expected: u32,
    },
    /// The descriptor has this ABI version but another layout.
    AbiLayout {
        found: u64,
        expected: u64,
    },
    /// Versions or capabilities (the staging check, again).
    Incompatible(Incompatibility),
    /// A test asked for it.
    Injected,
    /// A test asked for the conversion of this record kind to fail.
    InjectedConversion(RecordKind),
    /// The exported set does not parse.
    Exported(RecordSetError),
    /// The converted set does not fit its area.
    Output(RecordSetError),
    /// A required record this image does not read.
    Unreadable {
        kind: RecordKind,
        version: SchemaVersion,
    },
    /// The record cannot be read the way it was exported (the layout guard, a change
    /// conversion by field cannot take, a downgrade).
    Plan(PlanRefusal<'a>),
    /// The image describes a converter whose code it does not carry (a build bug).
    NoConverterCode {
        kind: RecordKind,
        from: SchemaVersion,
    },
    /// A converter failed on one entry.
    Entry {
        kind: RecordKind,
        index: usize,
        from: SchemaVersion,
        error: ConvertError,
    },
    /// The exported set has no task table, or no run-queue record.
    NoTaskTable,
    NoRunQueues,
    /// The run queues do not add up to the task table.
    RunQueues {
        queued: u64,
        tasks: u32,
    },
    /// The task table cannot be read in place.
    TaskTable(PlainError),
    /// A task-table entry does not decode.
    TaskEntry {
        index: usize,
        error: WireError,
    },
    /// A task of a kind this image lacks, not marked optional.
    UnknownKind {
        task: u32,
        kind: TaskKind,
    },
    /// A kind whose state record holds another number of states than it has tasks.
    StateCount {
        kind: TaskKind,
        tasks: u32,
        states: u32,
    },
    /// More task kinds than a set can hold records.
    TooManyKinds,
    /// This image is the running build, which has hotpatches applied.
    SameBuildWithPatches {
        patches: u32,
    },
}

impl core::fmt::Display for BootstrapRefusal<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootstrapRefusal::Abi { found, expected } => write!(
                f,
                "hand-off ABI {found} is not this image's ({expected}): both images must be built with the same `updater::handoff` layout"
            ),
            BootstrapRefusal::AbiLayout { found, expected } => write!(
                f,
                "the hand-off descriptor's layout ({found:016x}) is not this image's ({expected:016x}) under the same ABI version: bump HANDOFF_ABI_VERSION (updater::handoff)"
            ),
            BootstrapRefusal::Incompatible(e) => write!(f, "{e}"),
            BootstrapRefusal::Injected => {
                write!(f, "injected reconciliation failure (test fault injection)")
            }
            BootstrapRefusal::InjectedConversion(kind) => write!(
                f,
                "injected failure converting {} (test fault injection, in the conversion phase)",
                kind
            ),
            BootstrapRefusal::Exported(e) => write!(f, "exported records unreadable: {e}"),
            BootstrapRefusal::Output(e) => write!(f, "converted records do not fit: {e}"),
            BootstrapRefusal::Unreadable { kind, version } => write!(
                f,
                "this image cannot read {kind} {version}, and the record is not optional: add the record kind to this image"
            ),
            BootstrapRefusal::Plan(p) => write!(f, "{p}"),
            BootstrapRefusal::NoConverterCode { kind, from } => write!(
                f,
                "this image describes a {kind} {from}→{} converter but carries no code for it (its description and its steps disagree: a build bug)",
                from.next()
            ),
            BootstrapRefusal::Entry {
                kind,
                index,
                from,
                error,
            } => write!(
                f,
                "{kind} {from}→{} converter, entry {index}: {error}",
                from.next()
            ),
            BootstrapRefusal::NoTaskTable => write!(f, "no task table was exported"),
            BootstrapRefusal::NoRunQueues => write!(f, "no run-queue record was exported"),
            BootstrapRefusal::RunQueues { queued, tasks } => write!(
                f,
                "the run queues hold {queued} tasks, the task table {tasks}: the export is inconsistent"
            ),
            BootstrapRefusal::TaskTable(e) => write!(f, "task table: {e}"),
            BootstrapRefusal::TaskEntry { index, error } => {
                write!(f, "task-table entry {index}: {error}")
            }
            BootstrapRefusal::UnknownKind { task, kind } => write!(
                f,
                "task {task} is of kind {} ({kind}), which this image does not have: add the kind, or mark its tasks optional in the running image",
                kind.raw()
            ),
            BootstrapRefusal::StateCount {
                kind,
                tasks,
                states,
            } => write!(
                f,
                "{kind} has {tasks} tasks but its state record {states} states: every task needs exactly one"
            ),
            BootstrapRefusal::TooManyKinds => {
                write!(f, "more task kinds than a record set holds ({MAX_RECORDS})")
            }
            BootstrapRefusal::SameBuildWithPatches { patches } => write!(
                f,
                "the new image is the running build without its {patches} hotpatch(es); remove them first or push a build that contains the fixes"
            ),
        }
    }
}

/// Where a record of the converted set is: referred to in the exported part of the
/// area, or written into `out`.
#[derive(Debug, Clone, Copy)]
struct Written {
    kind: RecordKind,
    entries: u32,
    /// Area offset and length of the entries.
    at: u64,
    len: u64,
}

/// The records of the converted set, as they were written (at most one per kind).
struct Directory {
    items: [Option<Written>; MAX_RECORDS],
    len: usize,
}

impl Directory {
    fn push(&mut self, w: Written) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = Some(w);
            self.len += 1;
        }
    }
    fn find(&self, kind: RecordKind) -> Option<Written> {
        self.items[..self.len]
            .iter()
            .flatten()
            .find(|w| w.kind == kind)
            .copied()
    }
}

/// Checks, converts and validates (see the module doc). `E` is this image's task-table
/// entry type.
///
/// The area is split at the converted set: `exported` is the area from its start up to
/// where the converted set goes (the exported set at `exported_at` in it) and `out` is
/// the rest, starting at area offset `exported.len()` (8-aligned).
pub fn reconcile<'a, E: TaskEntry, L: Log>(
    request: Request,
    running: &Running<'_>,
    image: &Image<'a>,
    exported: &'a [u8],
    exported_at: usize,
    out: &mut [u8],
    log: &mut L,
) -> Result<Reconciled, BootstrapRefusal<'a>> {
    let expected = crate::handoff::HANDOFF_ABI_VERSION;
    if !request.magic_ok || request.abi_version != expected {
        return Err(BootstrapRefusal::Abi {
            found: request.abi_version,
            expected,
        });
    }
    let layout = crate::handoff::LAYOUT_FINGERPRINT;
    if request.layout_fingerprint != layout {
        return Err(BootstrapRefusal::AbiLayout {
            found: request.layout_fingerprint,
            expected: layout,
        });
    }
    let identity = image.identity;
    compat::check_version(running.version, identity.replaces())
        .map_err(BootstrapRefusal::Incompatible)?;
    compat::check_capabilities(
        identity.caps_required(),
        running.caps_provided,
        running.version,
    )
    .map_err(BootstrapRefusal::Incompatible)?;
    if request.inject_failure {
        return Err(BootstrapRefusal::Injected);
    }

    let input = RecordSet::parse(exported, exported_at).map_err(BootstrapRefusal::Exported)?;
    let base = exported.len();
    let mut directory = Directory {
        items: [None; MAX_RECORDS],
        len: 0,
    };
    let end = {
        let mut writer = RecordSetWriter::new(out, base).map_err(BootstrapRefusal::Output)?;
        for record in input.records() {
            if let Some(w) = carry(&record, image, &mut writer, log, request.inject_converter)? {
                directory.push(w);
            }
        }
        writer.finish()
    };
    let entries_of = |w: Written| -> &[u8] {
        let (at, len) = (w.at as usize, w.len as usize);
        if at >= base {
            &out[at - base..at - base + len]
        } else {
            &exported[at..at + len]
        }
    };

    let (tasks_kept, tasks_dropped) = validate_tasks::<E>(&directory, &entries_of, image)?;
    if tasks_dropped > 0 {
        log.warn(Warning::DroppedTasks {
            count: tasks_dropped,
        });
    }
    patch_rule(&input, running, image, log)?;
    let mut init_required = 0;
    for (i, kind) in image.init_kinds.iter().enumerate().take(64) {
        if directory.find(kind.state_record()).is_none() {
            init_required |= 1 << i;
        }
    }
    Ok(Reconciled {
        at: base,
        end,
        tasks_kept,
        tasks_dropped,
        init_required,
    })
}

/// Carries one exported record into the converted set: referred to where it stands if
/// its layout is this image's, converted otherwise; dropped (with a warning) if this
/// image cannot take it and it may be dropped.
fn carry<'a, L: Log>(
    record: &RecordRef<'a>,
    image: &Image<'a>,
    w: &mut RecordSetWriter<'_>,
    log: &mut L,
    inject_converter: Option<RecordKind>,
) -> Result<Option<Written>, BootstrapRefusal<'a>> {
    let h = record.header;
    let drop_or = |refusal: BootstrapRefusal<'a>, log: &mut L| {
        if !h.optional() {
            return Err(refusal);
        }
        log.warn(Warning::DroppedRecord {
            kind: h.kind,
            version: h.schema,
            entries: h.entries,
        });
        Ok(None)
    };
    let plan = match plan::record_plan(&image.description, h.kind, h.schema, record.table) {
        Ok(Some(plan)) => plan,
        Ok(None) => {
            let refusal = BootstrapRefusal::Unreadable {
                kind: h.kind,
                version: h.schema,
            };
            return drop_or(refusal, log);
        }
        Err(refusal @ PlanRefusal::Downgrade { .. }) => {
            return drop_or(BootstrapRefusal::Plan(refusal), log)
        }
        Err(refusal) => return Err(BootstrapRefusal::Plan(refusal)),
    };
    let Some(target) = image.description.record(h.kind) else {
        return Ok(None); // record_plan returned a plan: the image reads the kind
    };
    if plan.stages().next().is_none() {
        // The same layout: the converted set points at the exported entries.
        w.add_reference(h, record.placement)
            .map_err(BootstrapRefusal::Output)?;
        log.unchanged(h.kind, h.schema, h.entries);
        return Ok(Some(Written {
            kind: h.kind,
            entries: h.entries,
            at: record.placement.entries.0,
            len: record.placement.entries.1,
        }));
    }
    for stage in plan.stages() {
        if let Stage::Converter(s) = stage {
            if image.step(h.kind, s.from).is_none() {
                return Err(BootstrapRefusal::NoConverterCode {
                    kind: h.kind,
                    from: s.from,
                });
            }
        }
    }
    if inject_converter == Some(h.kind) {
        return Err(BootstrapRefusal::InjectedConversion(h.kind));
    }
    let header = RecordHeader {
        kind: h.kind,
        schema: target.version,
        flags: h.flags,
        entry_size: target.table.size(),
        entries: h.entries,
        fingerprint: target.fingerprint,
    };
    let mut failure = None;
    let place = w
        .add_filled(header, target.table, |bytes| {
            failure = convert_entries(record, &plan, image, bytes).err();
        })
        .map_err(BootstrapRefusal::Output)?;
    if let Some(refusal) = failure {
        return Err(refusal);
    }
    for stage in plan.stages() {
        match stage {
            Stage::Converter(s) => log.converted(h.kind, s.from, s.to, h.entries, By::Converter),
            Stage::Fields { from, to, plan } => {
                log.converted(h.kind, *from, *to, h.entries, By::Fields(plan))
            }
        }
    }
    Ok(Some(Written {
        kind: h.kind,
        entries: h.entries,
        at: place.entries.0,
        len: place.entries.1,
    }))
}

/// Runs every stage of `plan` on every entry of `record`, into `out` (entries of the
/// image's layout, one after the other).
fn convert_entries<'a>(
    record: &RecordRef<'a>,
    plan: &RecordPlan<'a>,
    image: &Image<'a>,
    out: &mut [u8],
) -> Result<(), BootstrapRefusal<'a>> {
    let h = record.header;
    let (mut a, mut b) = ([0u8; MAX_ENTRY], [0u8; MAX_ENTRY]);
    let in_size = h.entry_size as usize;
    let out_size = out.len() / (h.entries as usize).max(1);
    if in_size > MAX_ENTRY || out_size > MAX_ENTRY {
        return Err(BootstrapRefusal::Exported(RecordSetError::EntrySize {
            kind: h.kind.get(),
            entry_size: h.entry_size,
            expected: MAX_ENTRY,
        }));
    }
    for (index, dst) in out.chunks_exact_mut(out_size.max(1)).enumerate() {
        let mut len = in_size;
        a[..len].copy_from_slice(record.entry(index));
        for stage in plan.stages() {
            match stage {
                Stage::Fields { plan: p, .. } => {
                    by_fields::apply(p, &a[..len], &mut b);
                    len = p.size as usize;
                }
                Stage::Converter(s) => {
                    let Some(step) = image.step(h.kind, s.from) else {
                        return Err(BootstrapRefusal::NoConverterCode {
                            kind: h.kind,
                            from: s.from,
                        });
                    };
                    step.run(&a[..len], &mut b[..step.to_size])
                        .map_err(|error| BootstrapRefusal::Entry {
                            kind: h.kind,
                            index,
                            from: s.from,
                            error,
                        })?;
                    len = step.to_size;
                }
            }
            a[..len].copy_from_slice(&b[..len]);
        }
        dst.copy_from_slice(&a[..dst.len()]);
    }
    Ok(())
}

/// Per task kind of this image, how many tasks the table has. Kinds below 256 are
/// found through a table: a task table of thousands of entries is counted without a
/// search per entry.
struct Counts {
    kinds: [(TaskKind, u32); MAX_RECORDS],
    len: usize,
    /// Kind id → slot + 1 (0: not a kind of this image).
    index: [u8; 256],
}

impl Counts {
    /// Every task kind `image` has, at 0.
    fn of<'a>(image: &Image<'a>) -> Result<Self, BootstrapRefusal<'a>> {
        let mut c = Counts {
            kinds: [(TaskKind::from_raw(0), 0); MAX_RECORDS],
            len: 0,
            index: [0; 256],
        };
        for kind in image
            .description
            .records()
            .filter_map(|r| r.kind.task_kind())
        {
            let slot = c
                .kinds
                .get_mut(c.len)
                .ok_or(BootstrapRefusal::TooManyKinds)?;
            *slot = (kind, 0);
            if let Some(i) = c.index.get_mut(kind.raw() as usize) {
                *i = c.len as u8 + 1;
            }
            c.len += 1;
        }
        Ok(c)
    }

    fn slot(&self, kind: TaskKind) -> Option<usize> {
        match self.index.get(kind.raw() as usize) {
            Some(0) => None,
            Some(&i) => Some(i as usize - 1),
            None => self.kinds[..self.len].iter().position(|(k, _)| *k == kind),
        }
    }

    /// Counts one task of `kind`; false if the image does not have the kind.
    fn count(&mut self, kind: TaskKind) -> bool {
        match self.slot(kind) {
            Some(i) => {
                self.kinds[i].1 += 1;
                true
            }
            None => false,
        }
    }

    fn get(&self, kind: TaskKind) -> u32 {
        self.slot(kind).map_or(0, |i| self.kinds[i].1)
    }
}

/// Every task-table entry names a kind this image knows (or is optional); the run
/// queues add up to the table; every kind has exactly as many states as tasks (the
/// n-th task of a kind, in table order, owns the n-th state). Returns (kept, dropped).
fn validate_tasks<'a, 'o, E: TaskEntry>(
    directory: &Directory,
    entries_of: &impl Fn(Written) -> &'o [u8],
    image: &Image<'a>,
) -> Result<(u32, u32), BootstrapRefusal<'a>> {
    let table = directory
        .find(kinds::TASK_TABLE)
        .ok_or(BootstrapRefusal::NoTaskTable)?;
    let queues = directory
        .find(kinds::RUN_QUEUES)
        .ok_or(BootstrapRefusal::NoRunQueues)?;
    let queued: u64 = crate::record::entries::<run_queues::V1>(entries_of(queues))
        .map_err(BootstrapRefusal::TaskTable)?
        .iter()
        .map(|q| u64::from(q.tasks))
        .sum();
    if queued != u64::from(table.entries) {
        return Err(BootstrapRefusal::RunQueues {
            queued,
            tasks: table.entries,
        });
    }
    let tasks: &[E] = crate::record::entries(entries_of(table)).map_err(|e| match e {
        PlainError::Invalid { index } => BootstrapRefusal::TaskEntry {
            index,
            error: E::decode(&entries_of(table)[index * E::SIZE..])
                .err()
                .unwrap_or(WireError::Short {
                    needed: E::SIZE,
                    available: 0,
                }),
        },
        other => BootstrapRefusal::TaskTable(other),
    })?;
    let mut counts = Counts::of(image)?;
    let (mut kept, mut dropped) = (0u32, 0u32);
    for entry in tasks {
        let kind = entry.kind();
        if counts.count(kind) {
            kept += 1;
        } else if entry.flags() & task_flags::OPTIONAL != 0 {
            dropped += 1;
        } else {
            return Err(BootstrapRefusal::UnknownKind {
                task: entry.id(),
                kind,
            });
        }
    }
    // Every state record of a kind this image has matches its tasks, and every kind
    // with tasks has its states.
    for r in image.description.records() {
        let Some(kind) = r.kind.task_kind() else {
            continue;
        };
        let tasks = counts.get(kind);
        let states = directory.find(r.kind).map_or(0, |w| w.entries);
        if tasks != states && !(tasks == 0 && directory.find(r.kind).is_none()) {
            return Err(BootstrapRefusal::StateCount {
                kind,
                tasks,
                states,
            });
        }
    }
    Ok((kept, dropped))
}

/// Hotpatches fix the exact build they were made for. Into another build they are
/// dropped (that build is expected to contain the fixes; a warning names each); into
/// the same build the fixes would silently vanish, so the swap is refused.
fn patch_rule<'a, L: Log>(
    set: &RecordSet<'_>,
    running: &Running<'_>,
    image: &Image<'a>,
    log: &mut L,
) -> Result<(), BootstrapRefusal<'a>> {
    let Some(patches) = set.find(kinds::PATCH_SET) else {
        return Ok(());
    };
    let n = patches.header.entries;
    if n == 0 {
        return Ok(());
    }
    if running.build_id == image.build_id {
        return Err(BootstrapRefusal::SameBuildWithPatches { patches: n });
    }
    for p in patches.decode::<patch_set::V1>().flatten() {
        log.warn(Warning::DroppedPatch {
            id: p.id,
            label: p.label,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
