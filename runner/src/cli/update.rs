//! Live-update commands: `pack`, `inspect`, `push`, `swap`, `tasks`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use image_format::mailbox::report::{Method, Outcome, Report, SwapReport};
use image_format::mailbox::{RequestFlags, Response, Status};

use super::VmArgs;
use crate::description::check::{self, Running};
use crate::description::{self, render, FileKind, HostCheck, HostRefusal};
use crate::error::{Error, Result};
use crate::mailbox::Mailbox;
use crate::term::{err, errln, out, outln};
use crate::update::{self, HealthWindow, PushOptions, Refused};
use crate::vm::state::VmState;

/// Options of `hotkernel pack`.
#[derive(Debug, Clone, Args)]
pub struct PackArgs {
    /// The kernel ELF (built with this tree's target flags).
    pub elf: PathBuf,
    /// Where to write the package.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// Replace the label the kernel embeds.
    #[arg(long)]
    pub label: Option<String>,
    /// Sign with this key (`hotkernel key list`; default: the development key).
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
    /// Refuse to write the package if a kernel running this ELF would refuse it (its
    /// record layouts, regions or hand-off descriptor; the check `swap` makes).
    #[arg(long, value_name = "ELF", conflicts_with = "vm")]
    pub against: Option<PathBuf>,
    /// Refuse to write the package if the kernel this VM runs would refuse it.
    #[arg(long = "vm", value_name = "NAME")]
    pub vm: Option<String>,
}

/// Options of `hotkernel inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectArgs {
    /// A package, or a kernel ELF (shown as `pack` would package it).
    pub package: PathBuf,
    /// Also print every record's and converter's field table.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Faults a test can inject into a swap (the guest refuses unknown ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Inject {
    /// The new image's bootstrap fails its reconciliation.
    ReconcileFail,
    /// One AP never acknowledges the park IPI.
    ApNoAck,
    /// The old kernel fails right after exporting its state.
    FailAfterExport,
    /// Staging fails once the package is staged (the staging is discarded).
    FailAfterStage,
    /// The pre-flight's dry run of the new bootstrap fails (the answer predicts it).
    PreflightFail,
    /// The new kernel panics in its resume, after the overlay.
    FailInResume,
    /// The new kernel's first task step panics.
    FailFirstRound,
}

/// Options of `hotkernel push`.
#[derive(Debug, Clone, Args)]
pub struct PushArgs {
    /// The package (`hotkernel pack`).
    pub package: PathBuf,
    #[command(flatten)]
    pub vm: VmArgs,
    /// Apply it (swap) once it is accepted.
    #[arg(long)]
    pub apply: bool,
    /// The health window, in milliseconds: the new kernel must schedule on every CPU
    /// and step every task kind, without an exception or panic, within it, or the swap
    /// is taken back (default: the guest's, 200 ms; 0: no window).
    #[arg(long, value_name = "MS")]
    pub health_ms: Option<u32>,
    /// Inject a fault into the swap (tests of the rollback paths).
    #[arg(long, value_enum)]
    pub inject: Vec<Inject>,
    /// Make the overlay copy every page, not only those that differ (to compare).
    #[arg(long)]
    pub overlay_full: bool,
    /// Send the package without comparing image descriptions first: the guest's own
    /// staging check decides.
    #[arg(long)]
    pub no_host_check: bool,
}

/// Options of `hotkernel swap`.
#[derive(Debug, Clone, Args)]
pub struct SwapArgs {
    /// Kernel variant to build, pack and apply (`v2`, `v3`, …); default: the current
    /// tree's kernel, `v1`.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "v1",
        conflicts_with = "package"
    )]
    pub variant: String,
    /// A package to apply instead of building one.
    #[arg(long, value_name = "FILE")]
    pub package: Option<PathBuf>,
    #[command(flatten)]
    pub vm: VmArgs,
    #[arg(long, value_enum)]
    pub inject: Vec<Inject>,
    #[arg(long)]
    pub overlay_full: bool,
    /// Print the swap report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// The health window, in milliseconds: the new kernel must schedule on every CPU
    /// and step every task kind, without an exception or panic, within it, or the swap
    /// is taken back (default: the guest's, 200 ms; 0: no window).
    #[arg(long, value_name = "MS")]
    pub health_ms: Option<u32>,
    /// Send the package without comparing image descriptions first: the guest's own
    /// staging check decides.
    #[arg(long)]
    pub no_host_check: bool,
    /// Show the plan (`hotkernel plan --variant …`) and change nothing.
    #[arg(long, conflicts_with = "package")]
    pub dry_run: bool,
}

pub fn pack(args: PackArgs) -> Result<u8> {
    let package = update::pack_elf_signed(&args.elf, args.label, args.key.as_deref())?;
    let (running, target) = match (&args.against, &args.vm) {
        (Some(elf), _) => {
            let description = check::from_elf(elf)
                .map_err(|note| Error::Package(format!("--against: {note}")))?;
            let running = Running::Found {
                elf: elf.clone(),
                description,
            };
            (Some(running), format!("a kernel running {}", elf.display()))
        }
        (None, Some(vm)) => {
            let state = VmState::load(vm)?;
            let mailbox = Mailbox::open_status(&state.paths)?;
            (
                Some(running_in(&state, &mailbox)),
                format!("the kernel VM `{vm}` runs"),
            )
        }
        (None, None) => (None, String::new()),
    };
    if let Some(running) = running {
        match check::against(&running, &package) {
            Ok(HostCheck::Passed { .. }) => {}
            Ok(HostCheck::Skipped { note }) => skipped(&note),
            Err(refusal) => {
                outln!(
                    "{} not written: {target} would refuse it: {}",
                    args.output.display(),
                    refusal.message
                );
                return Ok(1);
            }
        }
    }
    std::fs::write(&args.output, &package)
        .map_err(|e| Error::io(format!("write {}", args.output.display()), e))?;
    outln!("{} ({} bytes)", args.output.display(), package.len());
    Ok(0)
}

pub fn inspect(args: InspectArgs) -> Result<u8> {
    let path = &args.package;
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    let package = match FileKind::of(&bytes) {
        Some(FileKind::Package) => bytes,
        Some(FileKind::Elf) => {
            outln!(
                "{}: a kernel ELF, shown as `hotkernel pack` would package it",
                path.display()
            );
            update::pack_elf(path, None)?
        }
        None => {
            return Err(Error::Package(format!(
                "{}: neither a hotkernel package (HKPKG) nor an ELF file",
                path.display()
            )))
        }
    };
    let text = image_format::package::describe_bytes(&package)
        .map_err(|e| Error::Package(format!("{}: {e}", path.display())))?;
    out!("{text}");
    outln!("{}", crate::keys::signer_line(&package));
    let bytes = description::of_package(&package, path)?;
    match description::parse(bytes, path) {
        Ok(d) => {
            out!("{}", render::text(&d, args.verbose));
            Ok(0)
        }
        Err(e) => {
            outln!("Image description: unreadable: {e}");
            Ok(1)
        }
    }
}

/// The description of the image the VM runs: the ELF of the VM's build id among the
/// one it booted (its copy, its recorded path) and the built variants, as
/// [`crate::hotpatch::running_elf`] finds it.
fn running_in(state: &VmState, mailbox: &Mailbox) -> Running {
    check::running(
        mailbox,
        &[state.paths.booted_elf(), state.kernel_elf.clone()],
    )
}

/// The note of a check the host could not make.
fn skipped(note: &str) {
    errln!("hotkernel: host check skipped: {note}; the guest checks at staging");
}

/// The host's check before pushing `package` to the VM `vm` (unless `off`): `Ok(true)`
/// to push, `Ok(false)` after printing the refusal.
fn host_check(state: &VmState, mailbox: &Mailbox, package: &[u8], off: bool) -> Result<bool> {
    if off {
        return Ok(true);
    }
    let running = running_in(state, mailbox);
    match check::against(&running, package) {
        Ok(HostCheck::Passed { .. }) => Ok(true),
        Ok(HostCheck::Skipped { note }) => {
            skipped(&note);
            Ok(true)
        }
        Err(refusal) => {
            print_host_refusal(&refusal, &running);
            Ok(false)
        }
    }
}

fn print_host_refusal(r: &HostRefusal, running: &Running) {
    outln!("{r}");
    if let Running::Found { elf, .. } = running {
        outln!(
            "  the host compared the package with the running kernel's description ({}); nothing was sent, the VM runs on",
            elf.display()
        );
    }
    outln!("  --no-host-check sends it to the guest's own staging check");
}

pub(super) fn flags(inject: &[Inject], overlay_full: bool) -> RequestFlags {
    let mut f = RequestFlags::empty();
    for i in inject {
        f |= match i {
            Inject::ReconcileFail => RequestFlags::INJECT_RECONCILE_FAIL,
            Inject::ApNoAck => RequestFlags::INJECT_AP_NO_ACK,
            Inject::FailAfterExport => RequestFlags::INJECT_FAIL_AFTER_EXPORT,
            Inject::FailAfterStage => RequestFlags::INJECT_FAIL_AFTER_STAGE,
            Inject::PreflightFail => RequestFlags::INJECT_PREFLIGHT_FAIL,
            Inject::FailInResume => RequestFlags::INJECT_FAIL_IN_RESUME,
            Inject::FailFirstRound => RequestFlags::INJECT_FAIL_FIRST_ROUND,
        };
    }
    if overlay_full {
        f |= RequestFlags::OVERLAY_FULL;
    }
    f
}

/// A progress line on stderr, shown only when the terminal is one and the wait is not
/// over in a moment.
struct ProgressLine {
    started: Instant,
    shown: bool,
}

impl ProgressLine {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            shown: false,
        }
    }
    fn update(&mut self, r: &Response) {
        if !std::io::stderr().is_terminal() || self.started.elapsed() < Duration::from_millis(200) {
            return;
        }
        let total = r.progress_total.max(1);
        let filled = (30 * r.progress_done / total) as usize;
        err!(
            "\r[{}{}] {:>3}% {}",
            "#".repeat(filled),
            " ".repeat(30 - filled.min(30)),
            100 * r.progress_done / total,
            r.message
        );
        let _ = std::io::stderr().flush();
        self.shown = true;
    }
    fn finish(self) {
        if self.shown {
            errln!();
        }
    }
}

fn open(vm: &VmArgs) -> Result<(VmState, Mailbox)> {
    let state = VmState::load(&vm.name)?;
    let mailbox = Mailbox::open(&state.paths)?;
    Ok((state, mailbox))
}

fn print_refusal(what: &str, r: &Refused) {
    if let (Status::Reverted, Some(Report::Swap(s))) = (r.status, &r.report) {
        // Applied, failed its health check, taken back: the report says so.
        outln!(
            "reverted ({} → {} was applied and taken back): {}",
            s.from,
            s.to,
            r.message
        );
        print_swap_details(s);
        outln!("  reason code {} ({})", r.status.code(), r.status);
        return;
    }
    outln!("{what} refused: {}", r.message);
    outln!("  reason code {} ({})", r.status.code(), r.status);
    if let Some(Report::Swap(s)) = &r.report {
        print_swap(s);
    }
}

/// Prints a swap report the way a person reads it.
pub fn print_swap(r: &SwapReport) {
    match &r.outcome {
        Outcome::Applied => outln!("swapped {} → {}", r.from, r.to),
        Outcome::RolledBack { reason } => {
            outln!("rolled back ({} → {} not applied): {reason}", r.from, r.to)
        }
    }
    print_swap_details(r);
}

/// The lines of a swap report after its outcome.
fn print_swap_details(r: &SwapReport) {
    outln!(
        "  downtime {:.1} µs, {} CPUs parked, tasks {} → {}",
        r.downtime_ns as f64 / 1000.0,
        r.cpus_parked,
        r.tasks_before,
        r.tasks_after
    );
    let phases: Vec<String> = r
        .phases
        .iter()
        .map(|p| format!("{} {:.1}", p.phase.name(), p.ns as f64 / 1000.0))
        .collect();
    outln!("  phases (µs): {}", phases.join(", "));
    let unchanged: Vec<String> = r
        .conversions
        .iter()
        .filter(|c| c.method == Method::Unchanged)
        .map(|c| format!("{} {}", c.kind, c.from))
        .collect();
    if !unchanged.is_empty() {
        outln!(
            "  unchanged (taken where they stood): {}",
            unchanged.join(", ")
        );
    }
    for c in r
        .conversions
        .iter()
        .filter(|c| c.method != Method::Unchanged)
    {
        outln!("  {c}");
    }
    if !r.initialised.is_empty() {
        let list: Vec<String> = r.initialised.iter().map(ToString::to_string).collect();
        outln!("  created by initialisation: {}", list.join(", "));
    }
    for w in &r.warnings {
        outln!("  warning: {w}");
    }
    outln!(
        "  image base {:#x} (was {:#x}), staged at {:#x}",
        r.new_image_base,
        r.old_image_base,
        r.staging_base
    );
}

pub fn push(args: PushArgs) -> Result<u8> {
    let package = std::fs::read(&args.package)
        .map_err(|e| Error::io(format!("read {}", args.package.display()), e))?;
    let (state, mut mailbox) = open(&args.vm)?;
    if !host_check(&state, &mailbox, &package, args.no_host_check)? {
        return Ok(1);
    }
    let flags = flags(&args.inject, args.overlay_full);
    let mut bar = ProgressLine::new();
    // Checked above (with its note printed).
    let opts = PushOptions::default().without_host_check();
    let staged = update::stage(&mut mailbox, &package, &opts, |r| bar.update(r))?;
    bar.finish();
    let (report, answer) = match staged {
        Ok(s) => s,
        Err(refused) => {
            print_refusal("package", &refused);
            return Ok(1);
        }
    };
    outln!("accepted {}", report.image);
    outln!(
        "  {} bytes staged in {} µs (hashing {} µs), {:.0} MB/s host write to accepted",
        report.bytes,
        report.staging_us,
        report.hash_us,
        report.bytes as f64 / answer.elapsed.as_secs_f64() / 1e6
    );
    outln!("  {}", answer.response.message);
    if !args.apply {
        return Ok(0);
    }
    let health = HealthWindow::from_millis(args.health_ms);
    match update::apply_with(&mut mailbox, flags, health)? {
        Ok(r) => {
            print_swap(&r);
            raise_floor(&args.vm.name, &package, &r);
            Ok(0)
        }
        Err(refused) => {
            print_refusal("swap", &refused);
            Ok(1)
        }
    }
}

pub fn swap(args: SwapArgs) -> Result<u8> {
    if args.dry_run {
        return super::plan::dry_run(&args);
    }
    let package = match &args.package {
        Some(p) => std::fs::read(p).map_err(|e| Error::io(format!("read {}", p.display()), e))?,
        None => update::package_variant(&args.variant)?.0,
    };
    let (state, mut mailbox) = open(&args.vm)?;
    if !host_check(&state, &mailbox, &package, args.no_host_check)? {
        return Ok(1);
    }
    let mut bar = ProgressLine::new();
    // Checked above (with its note printed).
    let opts = PushOptions::with_flags(flags(&args.inject, args.overlay_full))
        .without_host_check()
        .with_health(HealthWindow::from_millis(args.health_ms));
    let result = update::push_and_apply(&mut mailbox, &package, &opts, |r| bar.update(r))?;
    bar.finish();
    match result {
        Ok(r) => {
            if args.json {
                outln!("{}", crate::report::swap_json(&r, None));
            } else {
                print_swap(&r);
            }
            raise_floor(&args.vm.name, &package, &r);
            Ok(0)
        }
        Err(refused) => {
            print_refusal("swap", &refused);
            Ok(1)
        }
    }
}

/// After an applied swap: the VM's kept security floor rises to the package's SVN
/// (`coldpatch::note_swap`). The swap happened either way: a failure is a warning.
fn raise_floor(vm: &str, package: &[u8], r: &SwapReport) {
    if r.outcome != Outcome::Applied {
        return;
    }
    let Ok(header) = image_format::package::parse_header(package) else {
        return; // the guest staged it, so it parses; nothing to say otherwise
    };
    if let Err(e) = crate::coldpatch::note_swap(vm, header.svn(), &r.to.to_string()) {
        errln!(
            "warning: the VM's kept security floor was not raised to {}: {e}",
            header.svn()
        );
    }
}

pub fn tasks(args: VmArgs) -> Result<u8> {
    let (_, mut mailbox) = open(&args)?;
    let status = mailbox.status()?;
    let snapshot = update::snapshot(&mut mailbox)?;
    outln!(
        "{} — kernel #{}, {} CPUs, {} tasks",
        status.image,
        status.boot_seq,
        status.cpus_online,
        snapshot.tasks.len()
    );
    outln!(
        "{:>6} {:<15} {:>4} {:>12}  values",
        "id",
        "kind",
        "cpu",
        "steps"
    );
    for t in &snapshot.tasks {
        outln!(
            "{:>6} {:<15} {:>4} {:>12}  {:?}",
            t.id,
            image_format::TaskKind::from_raw(t.kind).name(),
            t.cpu,
            t.steps,
            t.values
        );
    }
    Ok(0)
}
