//! `hotkernel fuzz`: mutated and random mailbox requests against a live guest, checked
//! after each (the work is in [`crate::fuzz`]).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::error::Result;
use crate::fuzz::{self, Options, Summary, Target};
use crate::term::{errln, outln};
use crate::vm::{Vm, VmConfig, VmState};

/// Options of `hotkernel fuzz`.
#[derive(Debug, Clone, Args)]
pub struct FuzzArgs {
    /// Fuzz this running VM (`hotkernel run --name`); default: boot one of our own (v1).
    #[arg(long = "vm", value_name = "NAME")]
    pub vm: Option<String>,
    /// Virtual CPUs of the VM the fuzzer boots.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub cpus: u32,
    /// Run this many minutes.
    #[arg(long, value_name = "N", conflicts_with = "seconds")]
    pub minutes: Option<f64>,
    /// Run this many seconds (default: 60).
    #[arg(long, value_name = "S")]
    pub seconds: Option<f64>,
    /// Stop after this many inputs.
    #[arg(long, value_name = "N")]
    pub inputs: Option<u64>,
    /// The seed: the same one makes the same inputs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Replay a saved finding instead of generating inputs.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["seed", "inputs"])]
    pub replay: Option<PathBuf>,
    /// Where a finding is saved (default: target/hotkernel/fuzz/finding-<seed>.json).
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

impl FuzzArgs {
    fn duration(&self) -> std::result::Result<Duration, String> {
        let seconds = match (self.minutes, self.seconds) {
            (Some(m), _) => m * 60.0,
            (None, Some(s)) => s,
            (None, None) => 60.0,
        };
        if seconds.is_finite() && seconds > 0.0 && seconds < 1e9 {
            Ok(Duration::from_secs_f64(seconds))
        } else {
            Err(format!("{seconds} s is not a duration to fuzz for"))
        }
    }
}

pub fn fuzz(args: FuzzArgs) -> Result<u8> {
    let duration = args.duration().map_err(crate::error::Error::Mailbox)?;
    let save_to = args.save.clone().unwrap_or_else(|| {
        crate::workspace::hotkernel_dir()
            .join("fuzz")
            .join(format!("finding-{}.json", args.seed))
    });
    let own: Option<Vm>;
    let paths = match &args.vm {
        Some(name) => {
            crate::cli::signals::end_gracefully();
            own = None;
            VmState::load(name)?.paths
        }
        None => {
            errln!("fuzz: booting v1 on {} CPUs", args.cpus);
            let vm = Vm::launch(VmConfig::variant("v1").cpus(args.cpus))?;
            vm.wait_for_line("CPUs online", Duration::from_secs(180))?;
            let paths = vm.paths().clone();
            own = Some(vm);
            paths
        }
    };
    let mailbox = crate::mailbox::Mailbox::open(&paths)?;
    mailbox.wait_running(Duration::from_secs(180))?;
    drop(mailbox);
    let mut target = Target::open(&paths)?;
    let summary = match &args.replay {
        Some(file) => {
            errln!("fuzz: replaying {}", file.display());
            fuzz::replay(&mut target, file, &save_to)?
        }
        None => {
            errln!("fuzz: building the seeds (twin and v1 packages, the v1 → patch-a patch)");
            let seeds = fuzz::build_seeds(&target)?;
            errln!(
                "fuzz: seed {}, for {:.0} s{}",
                args.seed,
                duration.as_secs_f64(),
                args.inputs
                    .map_or(String::new(), |n| format!(" or {n} inputs"))
            );
            let opts = Options {
                seed: args.seed,
                duration,
                max_inputs: args.inputs,
                save_to,
            };
            let mut next_line = Duration::from_secs(60);
            fuzz::run(&mut target, &seeds, &opts, |s| {
                if s.elapsed >= next_line {
                    next_line += Duration::from_secs(60);
                    errln!(
                        "fuzz: {:.0} s, {} inputs, kernel #{}",
                        s.elapsed.as_secs_f64(),
                        s.inputs,
                        s.boot_seq
                    );
                }
            })?
        }
    };
    if let Some(vm) = own {
        let _ = vm.quit();
    }
    if args.json {
        outln!("{}", summary.json());
    } else {
        print(&summary);
    }
    Ok(if summary.finding.is_some() { 1 } else { 0 })
}

fn print(s: &Summary) {
    outln!(
        "fuzz: seed {}, {} inputs in {:.1} s ({:.1}/s); the guest ended as kernel #{} with {} tasks",
        s.seed,
        s.inputs,
        s.elapsed.as_secs_f64(),
        s.inputs as f64 / s.elapsed.as_secs_f64().max(1e-9),
        s.boot_seq,
        s.tasks
    );
    outln!("{:<17} {:>7}  requests by outcome", "class", "inputs");
    for (class, c) in &s.classes {
        let outcomes: Vec<String> = c.outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
        outln!(
            "{:<17} {:>7}  {}",
            class.name(),
            c.inputs,
            outcomes.join(" · ")
        );
    }
    match &s.finding {
        None => outln!("no finding"),
        Some((f, path)) => {
            outln!("FINDING: {f}");
            outln!(
                "  saved to {} (replay: hotkernel fuzz --replay {0})",
                path.display()
            );
        }
    }
}
