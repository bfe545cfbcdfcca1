//! `hotkernel patch make`: a patch from two builds, or the generator's verdicts on why
//! there is none (and the swap that applies the change instead).

use std::path::PathBuf;

use clap::Args;
use patchgen::{FunctionVerdict, PatchOptions, Subject, Verdict};

use crate::build::{self, CargoOutput, Variant};
use crate::error::{Error, Result};
use crate::hotpatch;
use crate::mailbox::Mailbox;
use crate::term::{errln, outln};
use crate::toolchain::{self, Needs};
use crate::vm::VmState;

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
    /// Sign with this key (`hotkernel key list`; default: the development key).
    #[arg(long, value_name = "NAME")]
    pub key: Option<String>,
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
            let mb = Mailbox::open_status(&state.paths)?;
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

/// For `--explain`: a changed function's first difference, the instruction in each
/// build and, for read-only data it refers to, both contents (empty for other verdicts).
fn explanation(v: &FunctionVerdict) -> Vec<String> {
    match &v.verdict {
        Verdict::Changed { why, .. } => why.lines(),
        _ => Vec::new(),
    }
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
    let made = hotpatch::generate_signed(
        &hotpatch::read(&old_elf)?,
        &hotpatch::read(&new_elf)?,
        &opts,
        args.key.as_deref(),
    )?;
    outln!("{} → {}", old_elf.display(), new_elf.display());
    for v in &made.verdicts {
        if args.explain {
            let lines = explanation(v);
            if lines.is_empty() {
                outln!("  {v}");
            } else {
                // The short line, then the difference in full.
                outln!("  {}", verdict_line(v));
            }
            for line in lines {
                outln!("      {line}");
            }
        } else {
            outln!("  {}", verdict_line(v));
        }
    }
    if args.explain {
        for n in &made.notes {
            outln!("  note: {n}");
        }
    }
    if made.refused {
        let refusals: Vec<_> = made.refusals().collect();
        errln!(
            "hotkernel: not hotpatchable, no patch written: {} change(s) refused (reasons above):",
            refusals.len()
        );
        for v in refusals {
            errln!("  - {}", v.name);
        }
        errln!(
            "apply it with a full swap: {}",
            swap_command(&new, args.vm.as_deref())
        );
        return Ok(1);
    }
    let Some(patch) = &made.patch else {
        errln!("hotkernel: no function changed: nothing to patch, no file written");
        return Ok(1);
    };
    std::fs::write(&args.output, patch)
        .map_err(|e| Error::io(format!("write {}", args.output.display()), e))?;
    let view = image_format::hotpatch::parse(patch)
        .map_err(|e| Error::Patch(format!("the generator's patch does not parse: {e}")))?;
    outln!(
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

#[cfg(test)]
mod tests {
    use super::super::tests::parse;
    use super::super::PatchWhat;
    use super::*;

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
}
