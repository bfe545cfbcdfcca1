//! `hotkernel patch make|apply|list|remove|forget`: the patch a VM runs, and what it
//! keeps for its next boot (coldpatch). `make` is in `patch/make.rs`, the hotpatch demo and
//! the pause benchmark in `patch/runs.rs`.
//!
//! Exit status: 0 when the patch was made, applied or removed; 1 when the generator or
//! the guest refused (the reason is printed) or anything failed.

mod make;
mod runs;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use image_format::mailbox::report::{PatchList, PatchReport, PatchedFunction, Report};
use image_format::mailbox::Status;
use serde_json::{json, Value};

use super::VmArgs;
use crate::coldpatch;
use crate::error::{Error, Result};
use crate::hotpatch;
use crate::mailbox::Mailbox;
use crate::term::outln;
use crate::update::Refused;
use crate::vm::VmState;

pub use make::{make, MakeArgs};
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

/// Options of `hotkernel patch apply`.
#[derive(Debug, Clone, Args)]
pub struct ApplyArgs {
    /// The patch (`hotkernel patch make`).
    pub patch: PathBuf,
    #[command(flatten)]
    pub vm: VmArgs,
    /// The health window, in milliseconds: with the patch's code running, every CPU must
    /// schedule and every task kind step, without an exception or panic, within it, or
    /// the patch is taken back (default: the guest's, 200 ms; 0: no window).
    #[arg(long, value_name = "MS")]
    pub health_ms: Option<u32>,
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

/// One line per function: `<verb> <name> at <site>`.
pub(super) fn functions_lines(functions: &[PatchedFunction], verb: &str) {
    for f in functions {
        outln!("  {verb} {} at {:#x}", f.name, f.site);
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
    if r.status == Status::Reverted {
        // Applied, then taken back by its health window: the guest says why.
        if let Some(Report::Patch(p)) = &r.report {
            outln!(
                "{op} of patch {} \"{}\" (version {}) reverted: {reason}",
                hotpatch::id_text(p.id),
                p.label,
                p.version
            );
            functions_lines(&p.functions, "taken back from");
        } else {
            outln!("{op} reverted: {reason}");
        }
        outln!("  status {} ({})", r.status.code(), r.status);
        return;
    }
    match &r.report {
        Some(Report::Patch(p)) if p.id != 0 => outln!(
            "{op} of patch {} \"{}\" (version {}) refused: {reason}",
            hotpatch::id_text(p.id),
            p.label,
            p.version
        ),
        _ => outln!("{op} refused: {reason}"),
    }
    if let Some(Report::Patch(p)) = &r.report {
        functions_lines(&p.functions, "it would have replaced");
    }
    if hotpatch::is_transient(r) {
        outln!(
            "  a CPU stood in that code when it was stopped: trying again may succeed, unless the \
             CPUs never leave it (a scheduler loop) — then apply the change with a full swap"
        );
    }
    outln!("  status {} ({})", r.status.code(), r.status);
}

/// The coldpatch outcome as a line and as JSON: kept for the next boot, or why not (a
/// warning: the live operation succeeded either way).
fn persisted(result: Result<coldpatch::Persisted>) -> (String, Value) {
    match result {
        Ok(p) => {
            let v = json!({"kept": true, "disk": p.disk, "patches": p.patches.iter()
                .map(|id| hotpatch::id_text(*id)).collect::<Vec<_>>(), "checksum": p.checksum,
                "svn": p.svn, "svn_floor": p.floor});
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
        outln!(
            "dropped the patches kept for VM `{}` ({}): its next boot is a plain one",
            args.vm.name,
            store.dir.display()
        );
    } else {
        outln!("no patches are kept for VM `{}`", args.vm.name);
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
    let window = crate::update::HealthWindow::from_millis(args.health_ms);
    match hotpatch::apply_with(&mut mb, &patch, window)? {
        Ok(r) => {
            let (line, kept) = persisted(keep_for_next_boot(&state, &mut mb, Some(&patch)));
            if args.json {
                let mut v = hotpatch::report_json(&r);
                v["coldpatch"] = kept;
                outln!("{v}");
            } else {
                outln!(
                    "applied patch {} \"{}\" (version {}), sequence {} of {}",
                    hotpatch::id_text(r.id),
                    r.label,
                    r.version,
                    r.sequence,
                    r.stack_depth
                );
                functions_lines(&r.functions, "replaced");
                outln!("  {}", pause_line(&r));
                outln!("{line}");
            }
            Ok(0)
        }
        Err(mut refused) => {
            if let Some(Report::Patch(p)) = &mut refused.report {
                hotpatch::name_sites(&patch, p);
            }
            if args.json {
                outln!("{}", hotpatch::refused_json("apply", &refused));
            } else {
                print_refusal("apply", &refused);
            }
            Ok(1)
        }
    }
}

fn print_list(vm: &str, list: &PatchList) {
    if list.patches.is_empty() {
        outln!("no patches applied (VM {vm})");
        return;
    }
    outln!(
        "{} patch(es) applied (VM {vm}), bottom first:",
        list.patches.len()
    );
    for p in &list.patches {
        outln!(
            "  {:>2}  {}  v{}  {:<16}  {} function(s), applied {}",
            p.sequence,
            hotpatch::id_text(p.id),
            p.version,
            format!("\"{}\"", p.label),
            p.functions.len(),
            hotpatch::since_boot(p.applied_ns)
        );
        for f in &p.functions {
            outln!("        {} at {:#x}", f.name, f.site);
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
        outln!("{v}");
    } else {
        print_list(&args.vm.name, &list);
    }
    Ok(0)
}

pub fn remove(args: RemoveArgs) -> Result<u8> {
    let (state, mut mb) = open(&args.vm)?;
    let before = hotpatch::list(&mut mb)?;
    if before.patches.is_empty() {
        outln!(
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
                outln!("{v}");
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
                outln!(
                    "removed {} patch(es), newest first: {}",
                    removed.len(),
                    named.join(", ")
                );
                functions_lines(&r.functions, "restored");
                outln!("  {}", pause_line(&r));
                outln!("  {} patch(es) left", r.stack_depth);
                outln!("{line}");
            }
            Ok(0)
        }
        Err(refused) => {
            if args.json {
                outln!("{}", hotpatch::refused_json("remove", &refused));
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

    pub(super) fn parse(args: &[&str]) -> std::result::Result<PatchWhat, clap::Error> {
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
