//! `hotkernel patch make|apply|list|remove`, the hotpatch demo and the pause benchmark.
//!
//! Exit status: 0 when the patch was made, applied or removed; 1 when the generator or
//! the guest refused (the reason is printed) or anything failed.

mod runs;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use image_format::hotpatch::differ::{FunctionVerdict, PatchOptions, Subject, Verdict};
use image_format::mailbox::report::{PatchList, PatchReport, PatchedFunction, Report};
use serde_json::{json, Value};

use super::VmArgs;
use crate::build::{self, CargoOutput, Variant};
use crate::coldpatch;
use crate::error::{Error, Result};
use crate::hotpatch;
use crate::mailbox::Mailbox;
use crate::toolchain::{self, Needs};
use crate::update::Refused;
use crate::vm::VmState;

pub use runs::{bench, demo};

/// Options of `hotkernel patch`.
#[derive(Debug, Clone, Args)]
pub struct PatchArgs {
    #[command(subcommand)]
    pub what: PatchWhat,
}

/// The `patch` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum PatchWhat {
    /// Make a patch from two builds: the running kernel's and the fixed one.
    Make(MakeArgs),
    /// Apply a patch to a running VM.
    Apply(ApplyArgs),
    /// List the patches applied to a running VM.
    List(ListArgs),
    /// Remove patches from a running VM, newest first, down to and including an id.
    Remove(RemoveArgs),
    /// Drop the patches kept for a VM's next boot (its coldpatch images); the running
    /// VM keeps its patches.
    Forget(ForgetArgs),
}

/// Options of `hotkernel patch make`.
#[derive(Debug, Clone, Args)]
pub struct MakeArgs {
    /// The running kernel's ELF, then the fixed kernel's (`--from`/`--vm` and `--to`
    /// stand for either).
    #[arg(value_name = "ELF", num_args = 0..=2)]
    pub elfs: Vec<PathBuf>,
    /// Old kernel: this variant, built here (`v1`, …).
    #[arg(long, value_name = "VARIANT", conflicts_with = "vm")]
    pub from: Option<String>,
    /// Old kernel: the one the running VM NAME runs.
    #[arg(long = "vm", value_name = "NAME")]
    pub vm: Option<String>,
    /// New kernel: this variant, built here (`patch-a`, …).
    #[arg(long, value_name = "VARIANT")]
    pub to: Option<String>,
    /// Where to write the patch (only written when every change can be hotpatched).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// The patch's label (default: the new kernel's variant or file name).
    #[arg(long)]
    pub label: Option<String>,
    /// The patch's version.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub version: u32,
    /// Print every verdict in full: the first difference, warnings, what was not checked.
    #[arg(long)]
    pub explain: bool,
    /// With --explain, list unchanged functions too (moved code included).
    #[arg(long, requires = "explain")]
    pub all: bool,
}

/// Options of `hotkernel patch apply`.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// The patch (`hotkernel patch make`).
    pub patch: PathBuf,
    #[command(flatten)]
    pub vm: VmArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Options of `hotkernel patch list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub vm: VmArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Options of `hotkernel patch forget`.
#[derive(Debug, Clone, Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub vm: VmArgs,
}

/// Options of `hotkernel patch remove`.
#[derive(Debug, Clone, Args)]
pub struct RemoveArgs {
    /// Remove down to and including this patch (its id as `patch list` prints it);
    /// default: the newest only.
    #[arg(value_name = "ID", value_parser = hotpatch::parse_id)]
    pub id: Option<u64>,
    #[command(flatten)]
    pub vm: VmArgs,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Where one side of `patch make` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Elf(PathBuf),
    Variant(String),
    Vm(String),
}

/// The old and new kernels named on the command line: `--from`/`--vm` or the first
/// file for the old one, `--to` or the remaining file for the new one.
fn sources(a: &MakeArgs) -> std::result::Result<(Source, Source), String> {
    let mut files = a.elfs.iter().cloned();
    let old = match (&a.from, &a.vm) {
        (Some(v), _) => Source::Variant(v.clone()),
        (None, Some(vm)) => Source::Vm(vm.clone()),
        (None, None) => Source::Elf(
            files
                .next()
                .ok_or("name the running kernel: its ELF, --from VARIANT or --vm NAME")?,
        ),
    };
    let new = match &a.to {
        Some(v) => Source::Variant(v.clone()),
        None => Source::Elf(
            files
                .next()
                .ok_or("name the fixed kernel: its ELF or --to VARIANT")?,
        ),
    };
    match files.next() {
        Some(extra) => Err(format!(
            "{} is one kernel too many: give two ELF files, or one with --from/--vm or --to",
            extra.display()
        )),
        None => Ok((old, new)),
    }
}

fn variant_elf(name: &str) -> Result<PathBuf> {
    toolchain::check(Needs::Build)?;
    Ok(build::build_kernel_cached_with(&Variant::try_new(name)?, CargoOutput::Inherit)?.elf)
}

fn resolve(source: &Source) -> Result<PathBuf> {
    match source {
        Source::Elf(path) => Ok(path.clone()),
        Source::Variant(name) => variant_elf(name),
        Source::Vm(name) => {
            let state = VmState::load(name)?;
            let mb = Mailbox::open(&state.paths)?;
            hotpatch::running_elf(&state, &mb)
        }
    }
}

/// How to apply the new kernel with a full swap instead.
fn swap_command(new: &Source, vm: Option<&str>) -> String {
    let vm = vm.map(|v| format!(" --vm {v}")).unwrap_or_default();
    match new {
        Source::Variant(v) => format!("hotkernel swap --variant {v}{vm}"),
        Source::Elf(p) => format!(
            "hotkernel pack {} -o new.hkp && hotkernel swap --package new.hkp{vm}",
            p.display()
        ),
        // Not a source of new kernels; named for completeness.
        Source::Vm(_) => format!("hotkernel swap{vm}"),
    }
}

/// One verdict on one line (and its warnings on the next ones).
fn verdict_line(v: &FunctionVerdict) -> String {
    let what = match v.subject {
        Subject::Function => String::new(),
        other => format!(" ({other})"),
    };
    let mut line = match &v.verdict {
        Verdict::Unchanged => format!("unchanged {}{what}", v.name),
        Verdict::Changed {
            site,
            old_size,
            new_size,
            ..
        } => format!(
            "changed   {}{what}  (site +{site:#x}, {old_size} → {new_size} bytes)",
            v.name
        ),
        Verdict::New { size, needed_by } => format!(
            "new       {}{what}  ({size} bytes, carried for {needed_by})",
            v.name
        ),
        Verdict::Refused { reason, .. } => format!("refused   {}{what}: {reason}", v.name),
    };
    for w in &v.warnings {
        line.push_str(&format!("\n            warning: {w}"));
    }
    line
}

pub fn make(args: MakeArgs) -> Result<u8> {
    let (old, new) = sources(&args).map_err(Error::Patch)?;
    let old_elf = resolve(&old)?;
    let new_elf = resolve(&new)?;
    let label = args.label.clone().unwrap_or_else(|| match &new {
        Source::Variant(v) => v.clone(),
        _ => hotpatch::default_label(&new_elf),
    });
    let opts = PatchOptions {
        version: args.version,
        label: Some(label.clone()),
        include_unchanged: args.all,
    };
    let made = hotpatch::generate(
        &hotpatch::read(&old_elf)?,
        &hotpatch::read(&new_elf)?,
        &opts,
    )?;
    println!("{} → {}", old_elf.display(), new_elf.display());
    for v in &made.verdicts {
        if args.explain {
            println!("  {v}");
        } else {
            println!("  {}", verdict_line(v));
        }
    }
    if args.explain {
        for n in &made.notes {
            println!("  note: {n}");
        }
    }
    if made.refused {
        let refusals: Vec<_> = made.refusals().collect();
        eprintln!(
            "hotkernel: not hotpatchable, no patch written: {} change(s) refused (reasons above):",
            refusals.len()
        );
        for v in refusals {
            eprintln!("  - {}", v.name);
        }
        eprintln!(
            "apply it with a full swap: {}",
            swap_command(&new, args.vm.as_deref())
        );
        return Ok(1);
    }
    let Some(patch) = &made.patch else {
        eprintln!("hotkernel: no function changed: nothing to patch, no file written");
        return Ok(1);
    };
    std::fs::write(&args.output, patch)
        .map_err(|e| Error::io(format!("write {}", args.output.display()), e))?;
    let view = image_format::hotpatch::parse(patch)
        .map_err(|e| Error::Patch(format!("the generator's patch does not parse: {e}")))?;
    println!(
        "wrote {}: patch {} \"{label}\" version {}, {} function(s) replaced ({} carried in all), {} bytes, for build {}",
        args.output.display(),
        view.id(),
        view.version(),
        made.sites(),
        view.function_count(),
        patch.len(),
        view.target().build_id
    );
    Ok(0)
}

pub(super) fn functions_lines(functions: &[PatchedFunction], verb: &str) {
    for f in functions {
        println!("  {verb} {} at {:#x}", f.name, f.site);
    }
}

pub(super) fn pause_line(r: &PatchReport) -> String {
    format!(
        "pause {:.1} µs (parking {:.1} µs), {} other CPU(s) parked",
        r.pause_ns as f64 / 1000.0,
        r.park_ns as f64 / 1000.0,
        r.cpus_parked
    )
}

/// Prints a refused apply or remove the way a person reads it.
fn print_refusal(op: &str, r: &Refused) {
    let reason = hotpatch::refusal_reason(r);
    match &r.report {
        Some(Report::Patch(p)) if p.id != 0 => println!(
            "{op} of patch {} \"{}\" (version {}) refused: {reason}",
            hotpatch::id_text(p.id),
            p.label,
            p.version
        ),
        _ => println!("{op} refused: {reason}"),
    }
    if let Some(Report::Patch(p)) = &r.report {
        functions_lines(&p.functions, "it would have replaced");
    }
    if hotpatch::is_transient(r) {
        println!(
            "  a CPU stood in that code when it was stopped: trying again may succeed, unless the \
             CPUs never leave it (a scheduler loop) — then apply the change with a full swap"
        );
    }
    println!("  status {} ({})", r.status.code(), r.status);
}

/// The coldpatch outcome as a line and as JSON: kept for the next boot, or why not (a
/// warning: the live operation succeeded either way).
fn persisted(result: Result<coldpatch::Persisted>) -> (String, Value) {
    match result {
        Ok(p) => {
            let v = json!({"kept": true, "disk": p.disk, "patches": p.patches.iter()
                .map(|id| hotpatch::id_text(*id)).collect::<Vec<_>>(), "checksum": p.checksum});
            (p.to_string(), v)
        }
        Err(e) => (
            format!("warning: not kept for the next boot: {e}"),
            json!({"kept": false, "warning": e.to_string()}),
        ),
    }
}

/// Keeps the patches the VM now runs for its next boot, after an apply (`added`: the
/// new patch) or a remove.
fn keep_for_next_boot(
    state: &VmState,
    mb: &mut Mailbox,
    added: Option<&[u8]>,
) -> Result<coldpatch::Persisted> {
    let kernel = hotpatch::running_elf(state, mb)?;
    let running: Vec<u64> = hotpatch::list(mb)?.patches.iter().map(|p| p.id).collect();
    coldpatch::keep(&state.name, &kernel, &running, added)
}

pub fn forget(args: ForgetArgs) -> Result<u8> {
    let store = coldpatch::Store::for_vm(&args.vm.name);
    if coldpatch::forget(&args.vm.name)? {
        println!(
            "dropped the patches kept for VM `{}` ({}): its next boot is a plain one",
            args.vm.name,
            store.dir.display()
        );
    } else {
        println!("no patches are kept for VM `{}`", args.vm.name);
    }
    Ok(0)
}

fn open(vm: &VmArgs) -> Result<(VmState, Mailbox)> {
    let state = VmState::load(&vm.name)?;
    let mb = Mailbox::open(&state.paths)?;
    Ok((state, mb))
}

pub fn apply(args: ApplyArgs) -> Result<u8> {
    let patch = hotpatch::read(&args.patch)?;
    if let Err(e) = image_format::hotpatch::parse(&patch) {
        return Err(Error::Patch(format!(
            "{} is not a patch hotkernel can read: {e}",
            args.patch.display()
        )));
    }
    let (state, mut mb) = open(&args.vm)?;
    match hotpatch::apply(&mut mb, &patch)? {
        Ok(r) => {
            let (line, kept) = persisted(keep_for_next_boot(&state, &mut mb, Some(&patch)));
            if args.json {
                let mut v = hotpatch::report_json(&r);
                v["coldpatch"] = kept;
                println!("{v}");
            } else {
                println!(
                    "applied patch {} \"{}\" (version {}), sequence {} of {}",
                    hotpatch::id_text(r.id),
                    r.label,
                    r.version,
                    r.sequence,
                    r.stack_depth
                );
                functions_lines(&r.functions, "replaced");
                println!("  {}", pause_line(&r));
                println!("{line}");
            }
            Ok(0)
        }
        Err(refused) => {
            if args.json {
                println!("{}", hotpatch::refused_json("apply", &refused));
            } else {
                print_refusal("apply", &refused);
            }
            Ok(1)
        }
    }
}

fn print_list(vm: &str, list: &PatchList) {
    if list.patches.is_empty() {
        println!("no patches applied (VM {vm})");
        return;
    }
    println!(
        "{} patch(es) applied (VM {vm}), bottom first:",
        list.patches.len()
    );
    for p in &list.patches {
        println!(
            "  {:>2}  {}  v{}  {:<16}  {} function(s), applied {}",
            p.sequence,
            hotpatch::id_text(p.id),
            p.version,
            format!("\"{}\"", p.label),
            p.functions.len(),
            hotpatch::since_boot(p.applied_ns)
        );
        for f in &p.functions {
            println!("        {} at {:#x}", f.name, f.site);
        }
    }
}

pub fn list(args: ListArgs) -> Result<u8> {
    let (_, mut mb) = open(&args.vm)?;
    let list = hotpatch::list(&mut mb)?;
    if args.json {
        let v = json!({
            "vm": args.vm.name,
            "patches": list.patches.iter().map(hotpatch::entry_json).collect::<Vec<_>>(),
        });
        println!("{v}");
    } else {
        print_list(&args.vm.name, &list);
    }
    Ok(0)
}

pub fn remove(args: RemoveArgs) -> Result<u8> {
    let (state, mut mb) = open(&args.vm)?;
    let before = hotpatch::list(&mut mb)?;
    if before.patches.is_empty() {
        println!(
            "no patches applied (VM {}): nothing to remove",
            args.vm.name
        );
        return Ok(1);
    }
    match hotpatch::remove(&mut mb, args.id)? {
        Ok(r) => {
            let after = hotpatch::list(&mut mb)?;
            let removed = hotpatch::removed_ids(&before, &after);
            let (line, kept) = persisted(keep_for_next_boot(&state, &mut mb, None));
            if args.json {
                let mut v = hotpatch::report_json(&r);
                v["removed"] = removed
                    .iter()
                    .map(|id| json!(hotpatch::id_text(*id)))
                    .collect();
                v["coldpatch"] = kept;
                println!("{v}");
            } else {
                let named: Vec<String> = removed
                    .iter()
                    .map(|id| {
                        let label = before
                            .patches
                            .iter()
                            .find(|p| p.id == *id)
                            .map_or("", |p| p.label.as_str());
                        format!("{} \"{label}\"", hotpatch::id_text(*id))
                    })
                    .collect();
                println!(
                    "removed {} patch(es), newest first: {}",
                    removed.len(),
                    named.join(", ")
                );
                functions_lines(&r.functions, "restored");
                println!("  {}", pause_line(&r));
                println!("  {} patch(es) left", r.stack_depth);
                println!("{line}");
            }
            Ok(0)
        }
        Err(refused) => {
            if args.json {
                println!("{}", hotpatch::refused_json("remove", &refused));
            } else {
                print_refusal("remove", &refused);
            }
            Ok(1)
        }
    }
}

/// Runs one `patch` subcommand.
pub fn patch(args: PatchArgs) -> Result<u8> {
    match args.what {
        PatchWhat::Make(a) => make(a),
        PatchWhat::Apply(a) => apply(a),
        PatchWhat::List(a) => list(a),
        PatchWhat::Remove(a) => remove(a),
        PatchWhat::Forget(a) => forget(a),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> std::result::Result<PatchWhat, clap::Error> {
        let cli = Cli::try_parse_from(
            ["hotkernel", "patch"]
                .into_iter()
                .chain(args.iter().copied()),
        )?;
        match cli.command {
            Some(Command::Patch(p)) => Ok(p.what),
            other => panic!("not patch: {other:?}"),
        }
    }

    fn make_args(args: &[&str]) -> MakeArgs {
        match parse(args).unwrap() {
            PatchWhat::Make(m) => m,
            other => panic!("not make: {other:?}"),
        }
    }

    #[test]
    fn make_takes_two_files_or_variants_or_a_vm() {
        let m = make_args(&["make", "old.elf", "new.elf", "-o", "p.hkpatch"]);
        assert_eq!(
            sources(&m),
            Ok((Source::Elf("old.elf".into()), Source::Elf("new.elf".into())))
        );
        assert_eq!((m.version, m.explain, m.all), (1, false, false));
        let m = make_args(&["make", "--from", "v1", "--to", "patch-a", "-o", "a"]);
        assert_eq!(
            sources(&m),
            Ok((
                Source::Variant("v1".into()),
                Source::Variant("patch-a".into())
            ))
        );
        let m = make_args(&["make", "--vm", "default", "new.elf", "-o", "a"]);
        assert_eq!(
            sources(&m),
            Ok((Source::Vm("default".into()), Source::Elf("new.elf".into())))
        );
        let m = make_args(&[
            "make", "--vm", "x", "--to", "patch-b", "-o", "a", "--label", "fix",
        ]);
        assert_eq!(
            sources(&m),
            Ok((Source::Vm("x".into()), Source::Variant("patch-b".into())))
        );
        assert_eq!(m.label.as_deref(), Some("fix"));
    }

    #[test]
    fn make_refuses_missing_or_extra_kernels() {
        assert!(sources(&make_args(&["make", "old.elf", "-o", "a"])).is_err());
        assert!(sources(&make_args(&["make", "--to", "patch-a", "-o", "a"])).is_err());
        assert!(sources(&make_args(&[
            "make", "--from", "v1", "a.elf", "b.elf", "-o", "a"
        ]))
        .is_err());
        assert!(
            parse(&["make", "a.elf", "b.elf"]).is_err(),
            "-o is required"
        );
        assert!(parse(&["make", "--from", "v1", "--vm", "x", "--to", "p", "-o", "a"]).is_err());
        assert!(
            parse(&["make", "a", "b", "-o", "c", "--all"]).is_err(),
            "--all needs --explain"
        );
        assert!(parse(&["make", "a", "b", "-o", "c", "--version", "0"]).is_err());
    }

    #[test]
    fn apply_list_remove_take_a_vm_and_json() {
        let PatchWhat::Apply(a) = parse(&["apply", "p.hkpatch", "--vm", "t", "--json"]).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (a.patch, a.vm.name, a.json),
            ("p.hkpatch".into(), "t".into(), true)
        );
        let PatchWhat::List(l) = parse(&["list"]).unwrap() else {
            panic!()
        };
        assert_eq!((l.vm.name.as_str(), l.json), ("default", false));
        let PatchWhat::Remove(r) = parse(&["remove"]).unwrap() else {
            panic!()
        };
        assert_eq!(r.id, None);
        let PatchWhat::Remove(r) = parse(&["remove", "00000000000000ab", "--json"]).unwrap() else {
            panic!()
        };
        assert_eq!((r.id, r.json), (Some(0xab), true));
        assert!(parse(&["remove", "newest"]).is_err());
        assert!(parse(&["apply"]).is_err());
    }

    #[test]
    fn refusals_name_the_swap_that_applies_the_change() {
        assert_eq!(
            swap_command(&Source::Variant("patch-c".into()), Some("t")),
            "hotkernel swap --variant patch-c --vm t"
        );
        assert_eq!(
            swap_command(&Source::Elf("k/new.elf".into()), None),
            "hotkernel pack k/new.elf -o new.hkp && hotkernel swap --package new.hkp"
        );
    }

    #[test]
    fn verdict_lines_are_one_per_function() {
        let v = FunctionVerdict {
            name: "kernel::tasks::counter::step".into(),
            subject: Subject::Function,
            verdict: Verdict::New {
                size: 12,
                needed_by: "kernel::sched::run_one".into(),
            },
            warnings: vec![],
        };
        assert_eq!(
            verdict_line(&v),
            "new       kernel::tasks::counter::step  (12 bytes, carried for kernel::sched::run_one)"
        );
    }

    #[test]
    fn coldpatch_failures_are_warnings() {
        let (line, v) = persisted(Err(Error::Coldpatch {
            store: "/s".into(),
            message: "the disk is full".into(),
        }));
        assert_eq!(
            line,
            "warning: not kept for the next boot: coldpatch store /s: the disk is full"
        );
        assert_eq!(v["kept"], false);
    }
}
