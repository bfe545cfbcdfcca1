//! `hotkernel plan` (and `hotkernel swap --dry-run`): how a new build would go into the
//! running VM — hotpatch, swap or refused — and why, without changing anything but a
//! staging the guest releases at once ([`crate::plan`]).
//!
//! Exit status: 0 when the change can go in (or there is nothing to do), 1 when it would
//! be refused or anything failed.

use std::path::PathBuf;

use clap::Args;

use super::VmArgs;
use crate::build::{self, CargoOutput, Variant};
use crate::error::Result;
use crate::hotpatch;
use crate::mailbox::Mailbox;
use crate::plan::{self, render, Preflight, Route};
use crate::term::{out, outln};
use crate::toolchain::{self, Needs};
use crate::vm::VmState;

/// Options of `hotkernel plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The new kernel ELF; default: the kernel of `--variant` (this tree's, `v1`), built.
    #[arg(value_name = "NEW-ELF", conflicts_with = "variant")]
    pub elf: Option<PathBuf>,
    /// Build this variant as the new kernel (`v1` is this tree's kernel).
    #[arg(long, value_name = "NAME")]
    pub variant: Option<String>,
    #[command(flatten)]
    pub vm: VmArgs,
    /// Print the plan as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Also list the unchanged record kinds and the generator's notes.
    #[arg(short, long)]
    pub verbose: bool,
    /// Do not ask the guest to stage the package (its pre-flight).
    #[arg(long)]
    pub no_preflight: bool,
}

/// The new kernel's ELF and the patch label: the file given, or the variant built.
fn new_kernel(args: &PlanArgs) -> Result<(PathBuf, String)> {
    if let Some(elf) = &args.elf {
        return Ok((elf.clone(), hotpatch::default_label(elf)));
    }
    let name = args.variant.as_deref().unwrap_or(Variant::DEFAULT);
    toolchain::check(Needs::Build)?;
    let built = build::build_kernel_cached_with(&Variant::try_new(name)?, CargoOutput::Inherit)?;
    Ok((built.elf, name.to_owned()))
}

pub fn plan(args: PlanArgs) -> Result<u8> {
    let (elf, label) = new_kernel(&args)?;
    let state = VmState::load(&args.vm.name)?;
    let mut mb = Mailbox::open(&state.paths)?;
    let running = plan::running(&state, &mut mb)?;
    let mut p = plan::compute(&running, &elf, &label)?;
    if args.no_preflight {
        p.preflight = Preflight::NotRun("--no-preflight".into());
    } else if plan::wants_preflight(&p) {
        plan::preflight(&mut mb, &mut p)?;
    } else {
        p.preflight = Preflight::NotRun(format!(
            "the route is {}: nothing would be staged",
            p.route.name()
        ));
    }
    if args.json {
        outln!("{}", render::json(&p));
    } else {
        out!("{}", render::text(&p, args.verbose));
    }
    Ok(u8::from(p.route == Route::Refused))
}

/// `hotkernel swap --dry-run`: the plan of swapping to the variant, nothing done.
pub fn dry_run(args: &super::update::SwapArgs) -> Result<u8> {
    plan(PlanArgs {
        elf: None,
        variant: Some(args.variant.clone()),
        vm: args.vm.clone(),
        json: args.json,
        verbose: false,
        no_preflight: false,
    })
}
