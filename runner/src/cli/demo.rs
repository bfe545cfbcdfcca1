//! `hotkernel demo`: v1 → v2 → v3 on a headless VM, continuity checked after each swap.

use clap::Args;

use crate::demo;
use crate::error::Result;
use crate::term::{errln, outln};

/// Options of `hotkernel demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Virtual CPUs.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub cpus: u32,
    /// Print one JSON object instead of the human report.
    #[arg(long)]
    pub json: bool,
    /// Demonstrate hotpatches (apply, stack, remove) instead of swaps.
    #[arg(long)]
    pub hotpatch: bool,
}

pub fn demo(args: DemoArgs) -> Result<u8> {
    if args.hotpatch {
        return crate::cli::patch::demo(args.cpus, args.json);
    }
    let quiet = args.json;
    let run = demo::run(args.cpus, |msg| {
        if !quiet {
            errln!("demo: {msg}");
        }
    })?;
    if args.json {
        outln!("{}", run.json());
    } else {
        for s in &run.swaps {
            outln!();
            crate::cli::update::print_swap(&s.report);
            outln!(
                "  continuity: {} tasks carried on ({} dropped as expected, {} initialised by the update){}",
                s.across.tasks_compared,
                s.across.tasks_dropped,
                s.across.tasks_added,
                if s.across.ok() && s.after.ok() { "" } else { " — PROBLEMS:" }
            );
            for p in s.across.problems.iter().chain(&s.after.problems) {
                outln!("    {p}");
            }
            for (what, ok) in &s.behaviour {
                outln!("  {} {what}", if *ok { "ok  " } else { "FAIL" });
            }
            outln!("  state_ok: {}", s.state_ok());
        }
        outln!();
        outln!("demo {}", if run.ok() { "passed" } else { "FAILED" });
    }
    Ok(if run.ok() { 0 } else { 1 })
}
