//! The advisor: how a new kernel build would go into a running VM — as a hotpatch, a
//! swap, or not at all — and why, decided without stopping anything. `hotkernel plan`
//! prints it, `hotkernel swap --dry-run` shows it, and `hotkernel watch` acts on it.
//!
//! The plan compares the new build with the image the VM runs *now*:
//!
//! - the **running base**: the ELF whose build id the guest reports ([`running`]), found
//!   among the builds `watch` kept ([`builds`]), the VM's booted copy and the built
//!   variants;
//! - its **applied patches** (the guest's patch list). A patch binds to the pristine
//!   base, so the next patch is always made from the base to the new build (it replaces
//!   every function changed since the base, those earlier patches replaced included:
//!   the guest stacks it). When the patches came from `watch`, the build they were made
//!   from is known, and the plan also says what changed since *that* build
//!   ([`Plan::changed_now`]).
//!
//! Then, reusing what exists: the patch generator's verdict on every changed function
//! ([`crate::hotpatch::generate`]), the host's layout guard on every record kind
//! ([`crate::description::check::plan`]), the two packages' sizes, and — when the swap is
//! the route — the guest's own staging pre-flight ([`preflight`]: the package is staged
//! without being applied, then the staging is released with a `Reset` request).
//!
//! The route ([`Route`]), cheapest first: nothing to do; a hotpatch when every change can
//! be hotpatched; removing the applied patches when the new build *is* the base; a swap
//! when the host's check (and the guest's pre-flight) accepts it; refused otherwise.
//!
//! What it does not guarantee: the guest decides again when the change is applied (a
//! patch whose site a CPU stands in, a staging that runs out of memory); the plan is the
//! host's reading of the two builds and the guest's pre-flight at one moment.

pub mod builds;
pub mod render;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image_format::mailbox::report::{PatchList, StageReport};
use image_format::mailbox::{Command, Status};
use image_format::package::parse_header;
use image_format::ImageSummary;
use patchgen::{FunctionVerdict, PatchOptions, Verdict};
use updater::describe::Description;

use crate::description::check;
use crate::description::{HostPlan, HostRefusal};
use crate::error::{Error, Result};
use crate::hotpatch;
use crate::mailbox::Mailbox;
use crate::update::{self, PushOptions};
use crate::vm::VmState;

/// How the change goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Nothing to do: the VM already runs this code.
    Nothing,
    /// A hotpatch: every changed function can be replaced where it stands.
    Hotpatch,
    /// Remove the applied patches: the new build is the running base.
    Unpatch,
    /// A full swap to the new image.
    Swap,
    /// Neither a hotpatch nor a swap can take it.
    Refused,
}

impl Route {
    /// The word the text and the JSON use.
    pub fn name(self) -> &'static str {
        match self {
            Route::Nothing => "nothing",
            Route::Hotpatch => "hotpatch",
            Route::Unpatch => "unpatch",
            Route::Swap => "swap",
            Route::Refused => "refused",
        }
    }
}

/// One side of the plan: a kernel ELF and its package's numbers.
#[derive(Debug, Clone)]
pub struct Image {
    pub elf: PathBuf,
    pub summary: ImageSummary,
    /// The package's size in bytes (what a swap delivers).
    pub package_bytes: u64,
    /// The memory the image needs (page aligned, `.bss` included).
    pub image_span: u64,
}

/// A patch applied in the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedPatch {
    pub id: u64,
    pub label: String,
    /// The functions it replaced.
    pub functions: Vec<String>,
}

/// What the VM runs now.
#[derive(Debug, Clone)]
pub struct Running {
    /// The ELF of the running base image.
    pub elf: PathBuf,
    /// Its applied patches, bottom first.
    pub patches: Vec<AppliedPatch>,
    /// The build the newest patch was made from, when `watch` made every applied patch
    /// (so the running code is that build's).
    pub patched_from: Option<PathBuf>,
}

/// The host's check of the swap.
#[derive(Debug, Clone)]
pub enum SwapCheck {
    /// The plan of every record kind and region.
    Passed(HostPlan),
    /// What the guest would refuse, and why.
    Refused(HostRefusal),
    /// Not compared (a build without a description), for this reason.
    Skipped(String),
}

/// The guest's staging pre-flight.
#[derive(Debug, Clone)]
pub enum Preflight {
    /// Not run, for this reason.
    NotRun(String),
    /// Staged (copied, hashed, laid out), then released. `predicts_refusal`: the guest's
    /// dry run of the new image's bootstrap predicts that the swap would be refused
    /// (and roll back); `message` says why.
    Accepted {
        report: StageReport,
        message: String,
        predicts_refusal: bool,
    },
    /// The guest refused to stage it.
    Refused { status: Status, message: String },
}

/// Where the plan's own time went (the host's work, and the guest's pre-flight).
#[derive(Debug, Clone, Copy, Default)]
pub struct PlanTimes {
    /// The patch generator (base → new, and since the last patch's build).
    pub generate: Duration,
    /// Packing both builds and comparing their descriptions.
    pub pack: Duration,
    /// Stage and release in the guest.
    pub preflight: Duration,
}

/// The advisor's answer.
#[derive(Debug, Clone)]
pub struct Plan {
    pub running: Image,
    pub new: Image,
    /// The patches applied in the VM, bottom first.
    pub patches: Vec<AppliedPatch>,
    /// See [`Running::patched_from`].
    pub patched_from: Option<PathBuf>,
    /// The generator's verdicts, running base → new build: every changed, carried and
    /// refused function (and record layouts, statics, identity).
    pub functions: Vec<FunctionVerdict>,
    /// What the generator could not check.
    pub notes: Vec<String>,
    /// The functions that changed since the build the applied patches came from (when
    /// known); `None` when no patch is applied or their build is unknown.
    pub changed_now: Option<Vec<String>>,
    /// Functions an applied patch replaced that the new build has as the base has them:
    /// a stacked patch cannot undo an earlier one.
    pub reverted: Vec<String>,
    /// The patch, when the generator made one (base → new).
    pub patch: Option<Vec<u8>>,
    /// The new build's package (what a swap sends).
    pub package: Vec<u8>,
    pub swap: SwapCheck,
    pub preflight: Preflight,
    pub route: Route,
    /// Why this route, in one sentence.
    pub reason: String,
    pub times: PlanTimes,
}

impl Plan {
    /// Refused verdicts.
    pub fn refusals(&self) -> impl Iterator<Item = &FunctionVerdict> {
        self.functions.iter().filter(|v| v.is_refused())
    }

    /// Functions the patch replaces.
    pub fn sites(&self) -> Vec<&str> {
        self.functions
            .iter()
            .filter(|v| matches!(v.verdict, Verdict::Changed { .. }))
            .map(|v| v.name.as_str())
            .collect()
    }

    /// What changed, in the sense a person means: since the code the VM runs now.
    pub fn changed(&self) -> Vec<String> {
        match &self.changed_now {
            Some(names) => names.clone(),
            None => changed_names(&self.functions),
        }
    }
}

/// The names of the verdicts that are not `Unchanged`.
fn changed_names(verdicts: &[FunctionVerdict]) -> Vec<String> {
    verdicts
        .iter()
        .filter(|v| !matches!(v.verdict, Verdict::Unchanged))
        .map(|v| v.name.clone())
        .collect()
}

/// The guest's status, retried while the guest rewrites the block (bounded by a count).
fn guest_image(mb: &Mailbox) -> Result<ImageSummary> {
    let mut last = None;
    for _ in 0..1000 {
        match mb.status() {
            Ok(s) => return Ok(s.image),
            Err(e) => last = Some(e),
        }
        std::thread::yield_now();
    }
    Err(last.unwrap_or_else(|| Error::Mailbox("no guest status".into())))
}

/// What the VM `state` runs now: its base ELF (by the build id the guest reports), its
/// applied patches, and the build they came from when `watch` made them.
pub fn running(state: &VmState, mb: &mut Mailbox) -> Result<Running> {
    let image = guest_image(mb)?;
    let build_id = image.build_id.as_bytes();
    let mut first = builds::candidates(&state.name, build_id);
    first.push(state.paths.booted_elf());
    first.push(state.kernel_elf.clone());
    let elf = hotpatch::elf_with_build_id(build_id, first).ok_or_else(|| {
        Error::Patch(format!(
            "no ELF on this host has the build id of the kernel VM `{}` runs ({image}); \
             the plan needs it: swap the VM to a build of this tree (`hotkernel swap`) first",
            state.name
        ))
    })?;
    let list = hotpatch::list(mb)?;
    let patches = applied(&list);
    let patched_from = builds::patched_from(&state.name, &patches);
    Ok(Running {
        elf,
        patches,
        patched_from,
    })
}

fn applied(list: &PatchList) -> Vec<AppliedPatch> {
    list.patches
        .iter()
        .map(|p| AppliedPatch {
            id: p.id,
            label: p.label.clone(),
            functions: p.functions.iter().map(|f| f.name.clone()).collect(),
        })
        .collect()
}

fn image_of(elf: &Path, package: &[u8]) -> Result<Image> {
    let header = parse_header(package)
        .map_err(|e| Error::Package(format!("the package of {}: {e}", elf.display())))?;
    Ok(Image {
        elf: elf.to_path_buf(),
        summary: header.summary(),
        package_bytes: package.len() as u64,
        image_span: header.geometry().image_span,
    })
}

/// The host's check of a swap from the running ELF's description to `package`'s.
fn swap_check(running_elf: &Path, package: &[u8]) -> SwapCheck {
    let running = match check::from_elf(running_elf) {
        Ok(d) => d,
        Err(note) => return SwapCheck::Skipped(note),
    };
    let running = match Description::parse(&running) {
        Ok(d) => d,
        Err(e) => return SwapCheck::Skipped(format!("{}: {e}", running_elf.display())),
    };
    let header = match parse_header(package) {
        Ok(h) => h,
        Err(e) => return SwapCheck::Skipped(format!("the package's header: {e}")),
    };
    match check::plan_for_package(&running, header.description()) {
        Ok(plan) => SwapCheck::Passed(plan),
        Err(refusal) => SwapCheck::Refused(refusal),
    }
}

/// Plans the change from what `running` runs to the kernel ELF `new_elf`, on the host
/// alone (no pre-flight: see [`preflight`]). `label` labels the patch, if one is made.
pub fn compute(running: &Running, new_elf: &Path, label: &str) -> Result<Plan> {
    let old_bytes = hotpatch::read(&running.elf)?;
    let new_bytes = hotpatch::read(new_elf)?;
    let started = Instant::now();
    let opts = PatchOptions {
        label: Some(label.to_owned()),
        ..PatchOptions::default()
    };
    let made = hotpatch::generate(&old_bytes, &new_bytes, &opts)?;
    let changed_now = match &running.patched_from {
        Some(from) if !running.patches.is_empty() => {
            let since = hotpatch::generate(&hotpatch::read(from)?, &new_bytes, &opts)?;
            Some(changed_names(&since.verdicts))
        }
        _ => None,
    };
    let generate = started.elapsed();

    let started = Instant::now();
    let package = update::pack_elf(new_elf, None)?;
    let running_package = update::pack_elf(&running.elf, None)?;
    let swap = swap_check(&running.elf, &package);
    let pack = started.elapsed();

    let sites: Vec<&str> = made
        .verdicts
        .iter()
        .filter(|v| matches!(v.verdict, Verdict::Changed { .. }))
        .map(|v| v.name.as_str())
        .collect();
    let reverted: Vec<String> = running
        .patches
        .iter()
        .flat_map(|p| p.functions.iter())
        .filter(|f| !sites.contains(&f.as_str()))
        .fold(Vec::new(), |mut out, f| {
            if !out.contains(f) {
                out.push(f.clone());
            }
            out
        });
    let mut plan = Plan {
        running: image_of(&running.elf, &running_package)?,
        new: image_of(new_elf, &package)?,
        patches: running.patches.clone(),
        patched_from: running.patched_from.clone(),
        functions: made.verdicts.clone(),
        notes: made.notes.iter().map(ToString::to_string).collect(),
        changed_now,
        reverted,
        patch: made.patch.clone(),
        package,
        swap,
        preflight: Preflight::NotRun("not asked for".into()),
        route: Route::Refused,
        reason: String::new(),
        times: PlanTimes {
            generate,
            pack,
            preflight: Duration::ZERO,
        },
    };
    let (route, reason) = decide(&plan, made.refused);
    plan.route = route;
    plan.reason = reason;
    Ok(plan)
}

/// The route and why, from the generator's verdicts and the host's swap check.
fn decide(plan: &Plan, generator_refused: bool) -> (Route, String) {
    let same_build = plan.new.summary.build_id == plan.running.summary.build_id;
    if same_build && plan.patches.is_empty() {
        return (Route::Nothing, "the VM already runs this build".into());
    }
    if same_build || (!generator_refused && plan.patch.is_none() && !plan.patches.is_empty()) {
        return (
            Route::Unpatch,
            format!(
                "the new build has the running base's code: removing the {} applied patch(es) returns to it",
                plan.patches.len()
            ),
        );
    }
    if !generator_refused && plan.reverted.is_empty() {
        if plan.patch.is_none() {
            return (Route::Nothing, "no function changed".into());
        }
        if plan.changed_now.as_ref().is_some_and(Vec::is_empty) {
            return (
                Route::Nothing,
                "the VM already runs this code (its patches included)".into(),
            );
        }
        return (
            Route::Hotpatch,
            format!(
                "every changed function can be hotpatched ({} site(s))",
                plan.sites().len()
            ),
        );
    }
    let why_not_patch = if generator_refused {
        format!(
            "the hotpatch generator refuses {}",
            refusal_summary(plan.refusals())
        )
    } else {
        format!(
            "{} was replaced by an applied patch and is back to the base's code; a stacked patch cannot undo an earlier one",
            plan.reverted.join(", ")
        )
    };
    match &plan.swap {
        SwapCheck::Passed(_) => (Route::Swap, format!("{why_not_patch}: a swap takes it")),
        SwapCheck::Skipped(note) => (
            Route::Swap,
            format!("{why_not_patch}: a swap (the host could not compare layouts: {note}; the guest checks at staging)"),
        ),
        SwapCheck::Refused(refusal) => (
            Route::Refused,
            format!("{why_not_patch}, and the swap is refused: {}", refusal.message),
        ),
    }
}

/// The refusals in a few words: the record layouts, identity and statics by name, the
/// functions by count (the machinery's apart).
fn refusal_summary<'a>(refusals: impl Iterator<Item = &'a FunctionVerdict>) -> String {
    let (mut named, mut machinery, mut functions) = (Vec::new(), 0, Vec::new());
    for v in refusals {
        match (&v.subject, &v.verdict) {
            (patchgen::Subject::Function, Verdict::Refused { reason, .. }) => {
                if matches!(reason, patchgen::Reason::Machinery { .. }) {
                    machinery += 1;
                } else {
                    functions.push(v.name.as_str());
                }
            }
            (subject, _) => named.push(format!("{} ({subject})", v.name)),
        }
    }
    let mut parts = named;
    if let Some(first) = functions.first() {
        parts.push(match functions.len() {
            1 => format!("function {}", short_name(first)),
            n => format!("{n} functions ({}, …)", short_name(first)),
        });
    }
    if machinery > 0 {
        parts.push(format!(
            "{machinery} function(s) of the swap/patch machinery"
        ));
    }
    parts.join(", ")
}

/// A function's name cut to 100 characters for one-line text.
pub fn short_name(name: &str) -> String {
    const MAX: usize = 100;
    if name.chars().count() <= MAX {
        return name.to_owned();
    }
    let mut cut: String = name.chars().take(MAX).collect();
    cut.push('…');
    cut
}

/// The guest's staging pre-flight: stages `plan`'s package without applying it, then
/// releases the staging (`Reset`). A swap route the guest refuses becomes
/// [`Route::Refused`]. Meant for a swap route ([`wants_preflight`]): a hotpatch does
/// not stage.
pub fn preflight(mb: &mut Mailbox, plan: &mut Plan) -> Result<()> {
    let started = Instant::now();
    let opts = PushOptions::default().without_host_check();
    let staged = update::stage(mb, &plan.package, &opts, |_| {})?;
    let released = mb.request(Command::Reset, [0; 4])?;
    if released.response.status.is_error() {
        return Err(Error::Mailbox(format!(
            "the staging pre-flight could not release the staging buffer: {}",
            released.response.message
        )));
    }
    plan.times.preflight = started.elapsed();
    plan.preflight = match staged {
        Ok((report, answer)) => {
            let message = answer.response.message.to_string();
            // The stage report has no field for the dry run's verdict; its message says it
            // (kernel/src/update/requests.rs).
            let predicts_refusal = message.contains(PREDICTS_REFUSAL);
            if predicts_refusal && plan.route == Route::Swap {
                plan.route = Route::Refused;
                plan.reason = format!(
                    "the guest's dry run of the new bootstrap predicts the swap's refusal (it would roll back): {message}"
                );
            }
            Preflight::Accepted {
                report,
                message,
                predicts_refusal,
            }
        }
        Err(refused) => {
            if plan.route == Route::Swap {
                plan.route = Route::Refused;
                plan.reason = format!("the guest's staging refuses the swap: {}", refused.message);
            }
            Preflight::Refused {
                status: refused.status,
                message: refused.message,
            }
        }
    };
    Ok(())
}

/// What the guest's staging answer says when its dry run of the new bootstrap fails.
pub(crate) const PREDICTS_REFUSAL: &str = "predicts a refusal";

/// Whether [`preflight`] means anything for `plan`: a swap is the route.
pub fn wants_preflight(plan: &Plan) -> bool {
    matches!(plan.route, Route::Swap)
}

#[cfg(test)]
mod tests;
