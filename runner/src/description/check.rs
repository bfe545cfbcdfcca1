//! The host's layout guard: before it pushes a package, the host compares the
//! description of the image the VM runs with the package's, by the same
//! `updater::plan::swap` the guest runs at staging, and refuses what the guest would
//! refuse — a layout changed under one schema version, a narrowing without a
//! converter, a region that moved, a changed hand-off descriptor — before anything is
//! written to the mailbox.
//!
//! [`plan`] is the pure comparison of two descriptions; [`running`] finds the running
//! image's description (the ELF whose build id the guest reports, among the VM's copy
//! of the ELF it booted and every built variant); [`before_push`] puts the two
//! together for a package. When the host cannot know what the VM runs (no such ELF,
//! or one without `.hk_schema`) the check is [`HostCheck::Skipped`] with a one-line
//! note: the guest still checks at staging.
//!
//! What it does not guarantee: a passed check is the host's reading of two
//! descriptions; the guest decides again with the tables its records actually carry.

use std::path::{Path, PathBuf};

use image_format::mailbox::Status;
use image_format::package::{elf_description, parse_header, PackError};
use image_format::ImageSummary;
use updater::describe::Description;
use updater::plan::{self, Carried, Method, PlanRefusal, Stage};
use updater::records::{RecordKind, SchemaVersion};

use crate::hotpatch;
use crate::mailbox::Mailbox;

/// Which rule of the plan refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A record's table changed while its schema version did not.
    LayoutGuard,
    /// A change conversion by field cannot take (narrowing, a changed type), with no
    /// converter for it.
    Fields,
    /// A record newer in the running kernel than what the new image reads.
    Downgrade,
    /// A required record the new image does not read.
    NotRead,
    /// More conversion stages than the bootstrap takes.
    TooManyStages,
    /// The hand-off descriptor changed under one ABI version.
    Descriptor,
    /// Another hand-off ABI.
    Abi,
    /// A region is missing, new, moved or (fixed) resized.
    Region,
    /// The package's own description does not parse.
    Description,
}

impl Rule {
    fn of(refusal: &PlanRefusal<'_>) -> Rule {
        match refusal {
            PlanRefusal::Unbumped { .. } => Rule::LayoutGuard,
            PlanRefusal::Fields { .. } => Rule::Fields,
            PlanRefusal::Downgrade { .. } => Rule::Downgrade,
            PlanRefusal::TooManyStages { .. } => Rule::TooManyStages,
            PlanRefusal::NotRead { .. } => Rule::NotRead,
            PlanRefusal::DescriptorUnbumped { .. } => Rule::Descriptor,
            PlanRefusal::Abi { .. } => Rule::Abi,
            PlanRefusal::RegionMissing { .. }
            | PlanRefusal::RegionNew { .. }
            | PlanRefusal::RegionMoved { .. } => Rule::Region,
        }
    }
}

/// The host's check refused the package: nothing was pushed. `message` is the plan's
/// refusal, the text the guest would give ("… bump the schema version of …").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused before pushing: {message}")]
pub struct HostRefusal {
    pub rule: Rule,
    /// The status the guest's staging would answer with.
    pub status: Status,
    pub message: String,
}

impl HostRefusal {
    fn of(refusal: &PlanRefusal<'_>) -> Self {
        HostRefusal {
            rule: Rule::of(refusal),
            status: refusal.status(),
            message: refusal.to_string(),
        }
    }
}

/// What the new image will do with one record kind the running kernel exports (or
/// that only the new image has).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Read from `from` into `to` by `method`; `added` and `dropped` are the fields
    /// conversion by field adds (with their defaults) and drops, over every stage.
    Read {
        kind: RecordKind,
        from: SchemaVersion,
        to: SchemaVersion,
        method: Method,
        added: Vec<String>,
        dropped: Vec<String>,
    },
    /// Optional, and the new image does not read it: dropped.
    Dropped {
        kind: RecordKind,
        version: SchemaVersion,
    },
    /// Only the new image has it: it starts empty.
    New {
        kind: RecordKind,
        version: SchemaVersion,
    },
}

impl RecordOutcome {
    /// The record kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            RecordOutcome::Read { kind, .. }
            | RecordOutcome::Dropped { kind, .. }
            | RecordOutcome::New { kind, .. } => *kind,
        }
    }
}

/// A region the new image maps at another size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resize {
    pub name: String,
    pub start: u64,
    pub running: u64,
    pub new: u64,
}

/// The plan of a swap as the host read it from two descriptions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostPlan {
    /// Every record kind, the running kernel's first, in its order.
    pub records: Vec<RecordOutcome>,
    /// The regions that change size.
    pub resizes: Vec<Resize>,
}

impl HostPlan {
    /// The outcome for `kind`, if either image has it.
    pub fn record(&self, kind: RecordKind) -> Option<&RecordOutcome> {
        self.records.iter().find(|r| r.kind() == kind)
    }
}

/// Plans the swap from the running kernel's description to the new image's, or the
/// refusal the guest would give.
pub fn plan(running: &Description<'_>, new: &Description<'_>) -> Result<HostPlan, HostRefusal> {
    let mut records = Vec::new();
    let resizes = plan::swap(running, new, |carried| {
        records.push(match carried {
            Carried::Read(p) => {
                let (mut added, mut dropped) = (Vec::new(), Vec::new());
                for stage in p.stages() {
                    if let Stage::Fields { plan, .. } = stage {
                        added.extend(plan.added().iter().map(|s| s.to_string()));
                        dropped.extend(plan.dropped().iter().map(|s| s.to_string()));
                    }
                }
                RecordOutcome::Read {
                    kind: p.kind,
                    from: p.from,
                    to: p.to,
                    method: p.method(),
                    added,
                    dropped,
                }
            }
            Carried::Dropped { kind, version } => RecordOutcome::Dropped { kind, version },
            Carried::New { kind, version } => RecordOutcome::New { kind, version },
        })
    })
    .map_err(|e| HostRefusal::of(&e))?;
    Ok(HostPlan {
        records,
        resizes: resizes
            .iter()
            .map(|r| Resize {
                name: r.name.to_owned(),
                start: r.start,
                running: r.running,
                new: r.new,
            })
            .collect(),
    })
}

/// [`plan`] for a package's description bytes: one that does not parse is refused
/// (the guest could not read it either).
pub fn plan_for_package(
    running: &Description<'_>,
    package_description: &[u8],
) -> Result<HostPlan, HostRefusal> {
    let new = Description::parse(package_description).map_err(|e| HostRefusal {
        rule: Rule::Description,
        status: Status::Malformed,
        message: format!("the package's {e}"),
    })?;
    plan(running, &new)
}

/// What the host's check before a push came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCheck {
    /// Compared with the description in `elf`, the running image's: the plan.
    Passed { elf: PathBuf, plan: HostPlan },
    /// Not compared, for the reason in `note` (one line); the guest checks at staging.
    Skipped { note: String },
}

/// The description of the image a VM runs, as the host finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Running {
    /// The bytes of `.hk_schema` in `elf`, whose build id is the running image's.
    Found { elf: PathBuf, description: Vec<u8> },
    /// Why the host does not know (one line).
    Unknown { note: String },
}

/// Reads the guest's status, retrying while the guest rewrites the block (bounded by
/// a count, not a time).
fn running_image(mb: &Mailbox) -> Result<ImageSummary, String> {
    let mut last = String::new();
    for _ in 0..1000 {
        match mb.status() {
            Ok(s) => return Ok(s.image),
            Err(e) => last = e.to_string(),
        }
        std::thread::yield_now();
    }
    Err(last)
}

/// The description of the image the VM behind `mb` runs: the first of `first` and the
/// built variants whose build id the guest reports (see [`hotpatch::elf_with_build_id`]).
pub fn running(mb: &Mailbox, first: &[PathBuf]) -> Running {
    let image = match running_image(mb) {
        Ok(image) => image,
        Err(e) => {
            return Running::Unknown {
                note: format!("cannot read which image the guest runs ({e})"),
            }
        }
    };
    running_by_build_id(&image, first)
}

fn running_by_build_id(image: &ImageSummary, first: &[PathBuf]) -> Running {
    let Some(elf) = hotpatch::elf_with_build_id(image.build_id.as_bytes(), first.to_vec()) else {
        return Running::Unknown {
            note: format!(
                "no ELF on this host has the build id of the running kernel ({}, build {})",
                image.label.as_str(),
                image.build_id
            ),
        };
    };
    match from_elf(&elf) {
        Ok(description) => Running::Found { elf, description },
        Err(note) => Running::Unknown {
            note: format!("the running kernel's ELF: {note}"),
        },
    }
}

/// The description in the kernel ELF at `path`, or a one-line reason there is none.
pub fn from_elf(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match elf_description(&bytes) {
        Ok(d) => Ok(d),
        Err(PackError::MissingDescription) => Err(format!(
            "{} has no image description (.hk_schema)",
            path.display()
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Compares `package` with the running image's description `running`. A package whose
/// header does not parse is not compared (the guest refuses it with the precise
/// reason); one whose description does not parse is refused.
pub fn against(running: &Running, package: &[u8]) -> Result<HostCheck, HostRefusal> {
    let (elf, running) = match running {
        Running::Found { elf, description } => (elf, description),
        Running::Unknown { note } => return Ok(HostCheck::Skipped { note: note.clone() }),
    };
    let header = match parse_header(package) {
        Ok(h) => h,
        Err(e) => {
            return Ok(HostCheck::Skipped {
                note: format!("the package's header does not parse ({e})"),
            })
        }
    };
    let running = match Description::parse(running) {
        Ok(d) => d,
        Err(e) => {
            return Ok(HostCheck::Skipped {
                note: format!("{}: {e}", elf.display()),
            })
        }
    };
    let plan = plan_for_package(&running, header.description())?;
    Ok(HostCheck::Passed {
        elf: elf.clone(),
        plan,
    })
}

/// [`running`] then [`against`]: the check before pushing `package` to the VM behind
/// `mb`, whose booted ELF the mailbox knows.
pub fn before_push(mb: &Mailbox, package: &[u8]) -> Result<HostCheck, HostRefusal> {
    let first: Vec<PathBuf> = mb.booted_elf().map(Path::to_path_buf).into_iter().collect();
    against(&running(mb, &first), package)
}

#[cfg(test)]
pub(crate) mod tests;
