//! `hotkernel soak`: many swaps and hotpatch rounds on one VM, each checked
//! ([`crate::soak`]); the figures as text or one JSON object. Exit status 1 at the first
//! discrepancy, which is printed.

use clap::Args;

use super::update::Inject;
use crate::error::{Error, Result};
use crate::soak::{self, SoakOptions, SoakRun, WINDOW};
use crate::term::{errln, outln};

/// Options of `hotkernel soak`.
#[derive(Debug, Clone, Args)]
pub struct SoakArgs {
    /// Swaps, alternating v1 → twin → v1 …
    #[arg(long, default_value_t = 100)]
    pub swaps: usize,
    /// Hotpatch rounds (apply patch-a, then remove it), spread over the run (default:
    /// one per ten swaps, at least one).
    #[arg(long)]
    pub patches: Option<usize>,
    /// Virtual CPUs of the VM.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=255))]
    pub cpus: u32,
    /// The health window each swap asks for, in milliseconds (default: the guest's,
    /// 200 ms; 0: none). It is guest time, which under TCG passes while the host does
    /// not run the VM's threads.
    #[arg(long, value_name = "MS")]
    pub health_ms: Option<u32>,
    /// Fail at the first refused swap, also one refused for a reason of the moment (a
    /// CPU that did not park in time, a missed health deadline), which is otherwise
    /// tried again (up to 3 attempts, each checked, all reported).
    #[arg(long)]
    pub strict: bool,
    /// Print one JSON object (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Inject a fault into one swap (`--inject-at`): a test that the soak catches it.
    #[arg(long, value_enum, requires = "inject_at")]
    pub inject: Option<Inject>,
    /// The swap (1-based) that carries `--inject`.
    #[arg(long, value_name = "SWAP", requires = "inject")]
    pub inject_at: Option<usize>,
}

pub fn soak(args: SoakArgs) -> Result<u8> {
    if args.swaps == 0 {
        return Err(Error::Package("--swaps must be at least 1".into()));
    }
    let inject = match (args.inject, args.inject_at) {
        (Some(fault), Some(at)) if (1..=args.swaps).contains(&at) => {
            Some((at, super::update::flags(&[fault], false)))
        }
        (Some(_), Some(at)) => {
            return Err(Error::Package(format!(
                "--inject-at {at}: the soak runs swaps 1 to {}",
                args.swaps
            )))
        }
        _ => None,
    };
    let opts = SoakOptions {
        swaps: args.swaps,
        patches: args.patches.unwrap_or((args.swaps / 10).max(1)),
        cpus: args.cpus,
        inject,
        health: crate::update::HealthWindow::from_millis(args.health_ms),
        retry: !args.strict,
    };
    let run = soak::run(&opts, &mut |line| errln!("soak: {line}"))?;
    if args.json {
        outln!("{}", run.json());
    } else {
        print(&run);
    }
    Ok(if run.passed() { 0 } else { 1 })
}

fn print(run: &SoakRun) {
    let what = format!(
        "{} of {} swaps v1 ⇄ v1-twin and {} of {} patch-a rounds on {} CPUs, {} tasks",
        run.swaps(),
        run.asked.0,
        run.patch_rounds(),
        run.asked.1,
        run.cpus,
        run.tasks
    );
    match &run.failure {
        None => outln!("soak passed: {what}, every operation continuous"),
        Some(f) => {
            outln!("soak FAILED at {}: {what} before it", f.at);
            for p in &f.problems {
                outln!("  {p}");
            }
        }
    }
    if !run.retried_swaps.is_empty() {
        outln!(
            "  {} swap attempt(s) refused for the moment and tried again (the old kernel ran on, every task continuous):",
            run.retried_swaps.len()
        );
        for r in &run.retried_swaps {
            outln!("    {r}");
        }
    }
    let (min, median, p99) = crate::bench::stats(&run.downtimes_us);
    outln!(
        "  downtime µs: min {min:.0}, median {median:.0}, p99 {p99:.0}{}",
        run.longest()
            .map(|(us, n)| format!(", longest {us:.0} (swap {n})"))
            .unwrap_or_default()
    );
    let (first, last) = run.window_medians();
    outln!(
        "  median downtime of the first {w} swaps {first:.0} µs, of the last {w} {last:.0} µs",
        w = WINDOW.min(run.swaps())
    );
    if !run.apply_us.is_empty() {
        let apply = crate::bench::stats(&run.apply_us).1;
        let remove = crate::bench::stats(&run.remove_us).1;
        outln!(
            "  hotpatch pause µs (median): apply {apply:.0}, remove {remove:.0}{}",
            match run.retries {
                0 => String::new(),
                n => format!(" ({n} refusal(s) of the moment tried again)"),
            }
        );
    }
    let mib = |frames: u64| (frames * 4096) as f64 / (1 << 20) as f64;
    match run.free_after_first_swap {
        Some(start) => outln!(
            "  free memory: {start} frames ({:.1} MiB) after the first swap, {} ({:.1} MiB) at the end; {} at boot",
            mib(start),
            run.free_end,
            mib(run.free_end),
            run.free_boot
        ),
        None => outln!("  free memory: {} frames at boot, {} at the end", run.free_boot, run.free_end),
    }
    outln!("  wall time {:.1} s", run.wall.as_secs_f64());
}
