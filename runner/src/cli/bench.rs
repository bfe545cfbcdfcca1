//! `hotkernel bench deliver|swap|convert|patch`: print figures (and JSON with --json).

use clap::{Args, Subcommand};
use image_format::mailbox::report::PhaseId;
use image_format::mailbox::RequestFlags;
use serde_json::json;

use crate::bench;
use crate::error::Result;
use crate::term::outln;

/// Options of `hotkernel bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
    /// Print one JSON object.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The benchmarks.
#[derive(Debug, Clone, Subcommand)]
pub enum BenchWhat {
    /// Package delivery: host write to guest "accepted", digest checked.
    Deliver {
        #[arg(long, default_value_t = 4)]
        cpus: u32,
        /// Package size in MiB.
        #[arg(long, default_value_t = 4)]
        mib: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Swap downtime, back and forth between `v1` and `twin`.
    Swap {
        /// Swaps per configuration.
        #[arg(long, default_value_t = 20)]
        swaps: usize,
        /// Task counts to sweep (comma separated).
        #[arg(long, value_delimiter = ',', default_value = "16,256,4096")]
        tasks: Vec<u32>,
        /// CPU counts to sweep (comma separated).
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        cpus: Vec<u32>,
        /// Overlay by copying bytes (the seed's method) instead of remapping frames.
        #[arg(long)]
        copy: bool,
        /// Overlay every page, not only the pages that differ.
        #[arg(long)]
        full: bool,
        /// The two builds to swap between (`FIRST,SECOND`; the VM boots FIRST).
        #[arg(long, value_delimiter = ',', default_value = "v1,twin")]
        pair: Vec<String>,
    },
    /// Conversion cost in the stopped section: by field against a converter, for the
    /// same change (each from a fresh boot of `v1`, against a swap to `twin`).
    Convert {
        #[arg(long, default_value_t = 4)]
        cpus: u32,
        #[arg(long, default_value_t = 4096)]
        tasks: u32,
        /// Swaps to each target.
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// Hotpatch pause (apply and remove of patch-a) on 1 and 4 CPUs.
    Patch {
        /// Apply+remove rounds per CPU count.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
        /// CPU counts to sweep (comma separated).
        #[arg(long, value_delimiter = ',', default_value = "1,4")]
        cpus: Vec<u32>,
        /// Each apply's health window, in ms (default: the guest's; 0: none, the pause
        /// without the window's export).
        #[arg(long, value_name = "MS")]
        health_ms: Option<u32>,
    },
}

pub fn bench(args: BenchArgs) -> Result<u8> {
    match args.what {
        BenchWhat::Convert { cpus, tasks, runs } => {
            let v = bench::convert(cpus, tasks, runs)?;
            if args.json {
                outln!("{v}");
                return Ok(0);
            }
            outln!("convert: {tasks} tasks, {cpus} CPUs, {runs} swaps from a fresh v1 to each");
            outln!(
                "{:<18} {:>8} {:>12} {:>12} {:>12} {:>16}",
                "target",
                "entries",
                "min µs",
                "median µs",
                "max µs",
                "ns/entry vs twin"
            );
            for row in v["swaps"].as_array().into_iter().flatten() {
                let f = |k: &str| row["reconcile_us"][k].as_f64().unwrap_or(0.0);
                outln!(
                    "{:<18} {:>8} {:>12.0} {:>12.0} {:>12.0} {:>16.0}",
                    row["target"].as_str().unwrap_or("?"),
                    row["entries_converted"],
                    f("min"),
                    f("median"),
                    f("max"),
                    row["per_entry_ns_over_twin"].as_f64().unwrap_or(0.0)
                );
            }
            Ok(0)
        }
        BenchWhat::Deliver { cpus, mib, runs } => {
            let v = bench::deliver(cpus, mib << 20, runs)?;
            if args.json {
                outln!("{v}");
            } else {
                outln!(
                    "deliver: {} byte package, {runs} runs, {cpus} CPUs",
                    v["package_bytes"]
                );
                outln!(
                    "  host write → guest accepted: {:.1} MB/s median ({:.1}–{:.1})",
                    v["host_write_to_accepted_mb_s"]["median"]
                        .as_f64()
                        .unwrap_or(0.0),
                    v["host_write_to_accepted_mb_s"]["min"]
                        .as_f64()
                        .unwrap_or(0.0),
                    v["host_write_to_accepted_mb_s"]["max"]
                        .as_f64()
                        .unwrap_or(0.0)
                );
                outln!(
                    "  guest copy+hash: {:.1} MB/s, of which SHA-256 alone {:.1} MB/s",
                    v["guest_copy_and_hash_mb_s_median"].as_f64().unwrap_or(0.0),
                    v["guest_sha256_mb_s_median"].as_f64().unwrap_or(0.0)
                );
                outln!(
                    "  signature check: {:.0} µs median of {:.0} µs staging ({:.1} %)",
                    v["guest_signature_verify_us_median"]
                        .as_f64()
                        .unwrap_or(0.0),
                    v["guest_staging_us_median"].as_f64().unwrap_or(0.0),
                    100.0
                        * v["signature_share_of_staging_median"]
                            .as_f64()
                            .unwrap_or(0.0)
                );
            }
            Ok(0)
        }
        BenchWhat::Swap {
            swaps,
            tasks,
            cpus,
            copy,
            full,
            pair,
        } => {
            let pair = match pair.as_slice() {
                [a, b] => (a.as_str(), b.as_str()),
                _ => {
                    return Err(crate::error::Error::Package(
                        "--pair takes two variants, FIRST,SECOND".into(),
                    ))
                }
            };
            let mut flags = RequestFlags::empty();
            if copy {
                // The copy overlay writes over the old image's frames: nothing to revert to.
                flags |= RequestFlags::OVERLAY_COPY | RequestFlags::NO_HEALTH_WINDOW;
            }
            if full {
                flags |= RequestFlags::OVERLAY_FULL;
            }
            let mut configs = Vec::new();
            if !args.json {
                outln!(
                    "{:>4} {:>5} {:>6} {:>10} {:>10} {:>10} | {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} | {:>10} {:>9}",
                    "cpus", "tasks", "swaps", "min µs", "median µs", "p99 µs", "quiesce", "export", "reconcile",
                    "overlay", "reinit", "release", "cold boot", "ratio"
                );
            }
            for &c in &cpus {
                for &t in &tasks {
                    let r = bench::swap_config(c, t, swaps, flags, pair)?;
                    if !args.json {
                        let (min, median, p99) = bench::stats(&r.downtimes_us());
                        outln!(
                            "{:>4} {:>5} {:>6} {:>10.0} {:>10.0} {:>10.0} | {:>8.0} {:>8.0} {:>9.0} {:>8.0} {:>8.0} {:>8.0} | {:>8.0}ms {:>9.5}",
                            c,
                            t,
                            swaps,
                            min,
                            median,
                            p99,
                            r.phase_median_us(PhaseId::Quiesce),
                            r.phase_median_us(PhaseId::Export),
                            r.phase_median_us(PhaseId::Reconcile),
                            r.phase_median_us(PhaseId::Overlay),
                            r.phase_median_us(PhaseId::Reinit),
                            r.phase_median_us(PhaseId::Release),
                            r.cold_boot_us / 1000.0,
                            median / r.cold_boot_us
                        );
                        if r.free_frames.0 != r.free_frames.1 {
                            outln!(
                                "     free memory changed: {} frames after the first swap, {} after the last",
                                r.free_frames.0, r.free_frames.1
                            );
                        }
                    }
                    configs.push(r);
                }
            }
            if args.json {
                // The headline figures: 4 CPUs and 256 tasks when swept, else the last.
                let head = configs
                    .iter()
                    .find(|r| r.cpus == 4 && r.tasks == 256)
                    .or(configs.last());
                let v = json!({
                    "pair": [pair.0, pair.1],
                    "overlay": if copy { "copy" } else { "remap" },
                    "pages": if full { "all" } else { "differing" },
                    "median_downtime_us": head.map(|r| bench::stats(&r.downtimes_us()).1),
                    "cold_boot_us": head.map(|r| r.cold_boot_us),
                    "configs": configs.iter().map(bench::SwapConfigResult::json).collect::<Vec<_>>(),
                });
                outln!("{v}");
            }
            Ok(0)
        }
        BenchWhat::Patch {
            rounds,
            cpus,
            health_ms,
        } => crate::cli::patch::bench(
            rounds,
            &cpus,
            crate::update::HealthWindow::from_millis(health_ms),
            args.json,
        ),
    }
}
