//! Reconcile: the new image's decisions before anything of the old kernel is
//! overwritten. The bootstrap (the new image's code, run by the old kernel with every
//! other CPU parked) calls [`reconcile`] and does nothing but report its answer.
//!
//! In: the hand-off ABI the old kernel wrote, the running image as the descriptor
//! describes it ([`Running`]), this image's declarations ([`Image`]: identity, the
//! records it reads, its converters, the kinds it must initialise), the exported record
//! set, and the area for the converted one. Out: the converted set and what became of
//! the tasks ([`Reconciled`]), or a typed [`BootstrapRefusal`] whose message says what to do.
//!
//! In order: the ABI; the versions this image replaces and the capabilities it needs
//! (the same checks as staging's [`crate::compat`]); every exported record converted to
//! the version this image reads (records of an unchanged version are copied as they
//! stand, in one piece); every task validated against this image's kinds; the
//! patch-set rule; and the initialisation requirements of kinds new to the machine.
//! It needs no heap and writes nothing but `out` and the log.

use image_format::{Capabilities, EmbeddedIdentity, ImageVersion, RecordKind, SchemaVersion};

use crate::compat::{self, Incompatibility};
use crate::convert::{Chain, ConvertError, MissingStep, Step, MAX_ENTRY};
use crate::record::{Layout, Record};
use crate::records::task_table::{flags as task_flags, TaskEntry};
use crate::records::{kinds, patch_set, TaskKind};
use crate::recordset::{key_of, RecordRef, RecordSet, RecordSetError, RecordSetWriter, KEY};
use crate::wire::WireError;

/// The image being replaced, as the old kernel described it in the descriptor.
#[derive(Debug, Clone, Copy)]
pub struct Running<'a> {
    pub version: ImageVersion,
    pub caps_provided: Capabilities,
    pub build_id: &'a [u8],
}

/// What this image reads and writes of one record kind.
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
    /// Every record kind it reads, task states included.
    pub records: &'a [RecordDecl],
    /// Its converters (one list per record kind that has any).
    pub steps: &'a [&'a [Step]],
    /// Task kinds whose first tasks it creates when the machine has none yet; bit `i`
    /// of [`Reconciled::init_required`] stands for `init_kinds[i]`.
    pub init_kinds: &'a [TaskKind],
}

impl Image<'_> {
    fn record(&self, kind: RecordKind) -> Option<&RecordDecl> {
        self.records.iter().find(|r| r.kind == kind)
    }

    /// Whether the image has task kind `kind` (reads its state record).
    pub fn knows_task_kind(&self, kind: TaskKind) -> bool {
        self.record(kind.state_record()).is_some()
    }
}

/// What the old kernel asked for.
#[derive(Debug, Clone, Copy)]
pub struct Request {
    /// The hand-off ABI version the old kernel wrote (the descriptor's).
    pub abi_version: u32,
    /// The descriptor carried the right magic.
    pub magic_ok: bool,
    /// A test asked for a refusal (fault injection).
    pub inject_failure: bool,
}

/// What reconcile did, for the report.
pub trait Log {
    /// `entries` entries of `kind` went from `from` to `to` (one call per step).
    fn converted(&mut self, kind: RecordKind, from: SchemaVersion, to: SchemaVersion, entries: u32);
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
    /// Bytes of the converted set at the start of `out`.
    pub len: usize,
    pub tasks_kept: u32,
    pub tasks_dropped: u32,
    /// Bit `i`: create the first tasks of `Image::init_kinds[i]`.
    pub init_required: u64,
}

/// Why this image refuses to replace the running one. Nothing has changed when it is
/// returned; the old kernel resumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapRefusal {
    /// The descriptor is not of this image's hand-off ABI.
    Abi { found: u32, expected: u32 },
    /// Versions or capabilities (the staging check, again).
    Incompatible(Incompatibility),
    /// A test asked for it.
    Injected,
    /// The exported set does not parse.
    Exported(RecordSetError),
    /// The converted set does not fit its area.
    Output(RecordSetError),
    /// A required record this image does not read.
    Unreadable {
        kind: RecordKind,
        version: SchemaVersion,
    },
    /// A record exported in a newer version than this image reads.
    Downgrade {
        kind: RecordKind,
        exported: SchemaVersion,
        reads: SchemaVersion,
    },
    /// No converter for one step of a chain.
    MissingConverter(MissingStep),
    /// Entries of a size their schema version does not have.
    EntrySize {
        kind: RecordKind,
        version: SchemaVersion,
        found: usize,
        expected: usize,
    },
    /// A converter failed on one entry.
    Entry {
        kind: RecordKind,
        index: usize,
        task: Option<u32>,
        from: SchemaVersion,
        error: ConvertError,
    },
    /// The exported set has no task table.
    NoTaskTable,
    /// A task-table entry does not decode.
    TaskEntry { index: usize, error: WireError },
    /// A task of a kind this image lacks, not marked optional.
    UnknownKind { task: u32, kind: TaskKind },
    /// A task whose kind's state record is missing.
    NoStateRecord { task: u32, kind: TaskKind },
    /// A task without its entry in its kind's state record.
    NoStateEntry { task: u32, kind: TaskKind },
    /// This image is the running build, which has hotpatches applied.
    SameBuildWithPatches { patches: u32 },
}

impl core::fmt::Display for BootstrapRefusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootstrapRefusal::Abi { found, expected } => write!(
                f,
                "hand-off ABI {found} is not this image's ({expected}): both images must be built with the same `updater::handoff` layout"
            ),
            BootstrapRefusal::Incompatible(e) => write!(f, "{e}"),
            BootstrapRefusal::Injected => {
                write!(f, "injected reconciliation failure (test fault injection)")
            }
            BootstrapRefusal::Exported(e) => write!(f, "exported records unreadable: {e}"),
            BootstrapRefusal::Output(e) => write!(f, "converted records do not fit: {e}"),
            BootstrapRefusal::Unreadable { kind, version } => write!(
                f,
                "this image cannot read {kind} {version}, and the record is not optional: add the record kind to this image"
            ),
            BootstrapRefusal::Downgrade {
                kind,
                exported,
                reads,
            } => write!(
                f,
                "{kind} was exported as {exported}, this image reads only the older {reads}: swap to an image that reads {exported}"
            ),
            BootstrapRefusal::MissingConverter(m) => write!(
                f,
                "no converter for {} {}→{} in the new image: add one to the image's steps",
                m.kind, m.from, m.to
            ),
            BootstrapRefusal::EntrySize {
                kind,
                version,
                found,
                expected,
            } => write!(
                f,
                "{kind} {version} entries are {found} bytes, this image's {kind} {version} has {expected}: a layout changed without its schema version (bump the schema version of {kind})"
            ),
            BootstrapRefusal::Entry {
                kind,
                index,
                task,
                from,
                error,
            } => {
                write!(f, "{kind} {from}→{} converter, entry {index}", from.next())?;
                if let Some(task) = task {
                    write!(f, " (task {task})")?;
                }
                write!(f, ": {error}")
            }
            BootstrapRefusal::NoTaskTable => write!(f, "no task table was exported"),
            BootstrapRefusal::TaskEntry { index, error } => write!(f, "task-table entry {index}: {error}"),
            BootstrapRefusal::UnknownKind { task, kind } => write!(
                f,
                "task {task} is of kind {} ({kind}), which this image does not have: add the kind, or mark its tasks optional in the running image",
                kind.raw()
            ),
            BootstrapRefusal::NoStateRecord { task, kind } => {
                write!(f, "task {task} ({kind}) has no state record")
            }
            BootstrapRefusal::NoStateEntry { task, kind } => {
                write!(f, "task {task} ({kind}) has no state entry")
            }
            BootstrapRefusal::SameBuildWithPatches { patches } => write!(
                f,
                "the new image is the running build without its {patches} hotpatch(es); remove them first or push a build that contains the fixes"
            ),
        }
    }
}

/// Checks, converts and validates (see the module doc). `E` is this image's task-table
/// entry type.
pub fn reconcile<E: TaskEntry, L: Log>(
    request: Request,
    running: &Running<'_>,
    image: &Image<'_>,
    exported: &[u8],
    out: &mut [u8],
    log: &mut L,
) -> Result<Reconciled, BootstrapRefusal> {
    let expected = crate::handoff::HANDOFF_ABI_VERSION;
    if !request.magic_ok || request.abi_version != expected {
        return Err(BootstrapRefusal::Abi {
            found: request.abi_version,
            expected,
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

    let input = RecordSet::parse(exported).map_err(BootstrapRefusal::Exported)?;
    let mut writer = RecordSetWriter::new(out).map_err(BootstrapRefusal::Output)?;
    for record in input.records() {
        convert_record(&record, image, &mut writer, log)?;
    }
    let len = writer.finish();

    let set = RecordSet::parse(&out[..len]).map_err(BootstrapRefusal::Output)?;
    let (tasks_kept, tasks_dropped) = validate_tasks::<E>(&set, image)?;
    if tasks_dropped > 0 {
        log.warn(Warning::DroppedTasks {
            count: tasks_dropped,
        });
    }
    patch_rule(&set, running, image, log)?;
    let mut init_required = 0;
    for (i, kind) in image.init_kinds.iter().enumerate().take(64) {
        if set.find(kind.state_record()).is_none() {
            init_required |= 1 << i;
        }
    }
    Ok(Reconciled {
        len,
        tasks_kept,
        tasks_dropped,
        init_required,
    })
}

/// Converts one exported record to the version this image reads and adds it to `w`.
fn convert_record<L: Log>(
    record: &RecordRef<'_>,
    image: &Image<'_>,
    w: &mut RecordSetWriter<'_>,
    log: &mut L,
) -> Result<(), BootstrapRefusal> {
    let h = record.header;
    // A record this image cannot take is dropped if it may be, refused otherwise.
    let mut drop_or = |refusal: BootstrapRefusal| {
        if !h.optional() {
            return Err(refusal);
        }
        log.warn(Warning::DroppedRecord {
            kind: h.kind,
            version: h.schema,
            entries: h.entries,
        });
        Ok(())
    };
    let Some(target) = image.record(h.kind) else {
        return drop_or(BootstrapRefusal::Unreadable {
            kind: h.kind,
            version: h.schema,
        });
    };
    if h.schema > target.version {
        return drop_or(BootstrapRefusal::Downgrade {
            kind: h.kind,
            exported: h.schema,
            reads: target.version,
        });
    }
    let chain = Chain::new(h.kind, h.schema, target.version, image.steps)
        .map_err(BootstrapRefusal::MissingConverter)?;
    let key = if h.kind.task_kind().is_some() { KEY } else { 0 };
    let entries = h.entries as usize;
    let input_size = chain.input_size().unwrap_or(target.layout.size as usize);
    if h.entry_size as usize != input_size + key {
        return Err(BootstrapRefusal::EntrySize {
            kind: h.kind,
            version: h.schema,
            found: (h.entry_size as usize).saturating_sub(key),
            expected: input_size,
        });
    }
    if chain.is_empty() {
        // Same version: the entries are what this image reads, as they stand.
        return w
            .add_bytes(
                h.kind,
                h.schema,
                h.flags,
                h.entry_size as usize,
                entries,
                record.bytes,
            )
            .map_err(BootstrapRefusal::Output);
    }
    let output_size = chain.output_size().unwrap_or(input_size);
    let mut failure: Option<BootstrapRefusal> = None;
    let (mut a, mut b) = ([0u8; MAX_ENTRY], [0u8; MAX_ENTRY]);
    w.add_raw(
        h.kind,
        target.version,
        h.flags,
        output_size + key,
        entries,
        |i, out| {
            if failure.is_some() {
                return;
            }
            let entry = record.entry(i);
            out[..key].copy_from_slice(&entry[..key]);
            a[..input_size].copy_from_slice(&entry[key..]);
            match chain.run(&mut a, &mut b) {
                Ok(len) => out[key..key + len].copy_from_slice(&a[..len]),
                Err((from, error)) => {
                    failure = Some(BootstrapRefusal::Entry {
                        kind: h.kind,
                        index: i,
                        task: (key != 0).then(|| key_of(entry).unwrap_or(0)),
                        from,
                        error,
                    })
                }
            }
        },
    )
    .map_err(BootstrapRefusal::Output)?;
    if let Some(refusal) = failure {
        return Err(refusal);
    }
    for step in chain.steps() {
        log.converted(h.kind, step.from, step.to, h.entries);
    }
    Ok(())
}

/// Every task-table entry names a kind this image knows (or is optional), and every
/// kept task has exactly one state entry. Returns (kept, dropped).
fn validate_tasks<E: TaskEntry>(
    set: &RecordSet<'_>,
    image: &Image<'_>,
) -> Result<(u32, u32), BootstrapRefusal> {
    let table = set
        .find(kinds::TASK_TABLE)
        .ok_or(BootstrapRefusal::NoTaskTable)?;
    table
        .check_size::<E>(false)
        .map_err(|_| BootstrapRefusal::EntrySize {
            kind: kinds::TASK_TABLE,
            version: table.header.schema,
            found: table.header.entry_size as usize,
            expected: E::SIZE,
        })?;
    // Export writes states in task-table order, and conversion keeps the order, so the
    // n-th task of a kind owns the n-th entry of that kind's state record. One cursor
    // per record of the set (a set has at most `MAX_RECORDS`).
    let records: [Option<RecordRef<'_>>; crate::recordset::MAX_RECORDS] = {
        let mut r = [None; crate::recordset::MAX_RECORDS];
        for (slot, record) in r.iter_mut().zip(set.records()) {
            *slot = Some(record);
        }
        r
    };
    let mut cursors = [0usize; crate::recordset::MAX_RECORDS];
    let (mut kept, mut dropped) = (0u32, 0u32);
    for (index, entry) in table.decode::<E>().enumerate() {
        let entry = entry.map_err(|error| BootstrapRefusal::TaskEntry { index, error })?;
        let (task, kind) = (entry.id(), entry.kind());
        if !image.knows_task_kind(kind) {
            if entry.flags() & task_flags::OPTIONAL != 0 {
                dropped += 1;
                continue;
            }
            return Err(BootstrapRefusal::UnknownKind { task, kind });
        }
        let Some(at) = records
            .iter()
            .position(|r| r.is_some_and(|r| r.header.kind == kind.state_record()))
        else {
            return Err(BootstrapRefusal::NoStateRecord { task, kind });
        };
        let (Some(states), Some(cursor)) = (records[at], cursors.get_mut(at)) else {
            return Err(BootstrapRefusal::NoStateRecord { task, kind });
        };
        let j = *cursor;
        *cursor += 1;
        let found = j < states.header.entries as usize && key_of(states.entry(j)) == Ok(task);
        if !found {
            return Err(BootstrapRefusal::NoStateEntry { task, kind });
        }
        kept += 1;
    }
    Ok((kept, dropped))
}

/// Hotpatches fix the exact build they were made for. Into another build they are
/// dropped (that build is expected to contain the fixes; a warning names each); into
/// the same build the fixes would silently vanish, so the swap is refused.
fn patch_rule<L: Log>(
    set: &RecordSet<'_>,
    running: &Running<'_>,
    image: &Image<'_>,
    log: &mut L,
) -> Result<(), BootstrapRefusal> {
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
