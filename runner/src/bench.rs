//! Benchmarks: figures printed, never asserted.
//!
//! - [`swap`]: N swaps back and forth between two builds of compatible schema (`v1`
//!   and `twin`), swept over task counts and CPU counts; per configuration the cold
//!   boot of the same kernel (QEMU start to the first task step, host clock) is measured
//!   in the same run.
//! - [`deliver`]: host write of a package to the guest's "accepted" (digest checked).
//! - [`convert`]: what converting a record costs in the stopped section, by field
//!   against a hand-written converter, for the same change (`fields`,
//!   `fields-converter`), measured against a swap that converts nothing (`twin`).

use std::time::{Duration, Instant};

use image_format::mailbox::report::{Outcome, PhaseId, SwapReport};
use image_format::mailbox::RequestFlags;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::mailbox::Mailbox;
use crate::update;
use crate::vm::{Vm, VmConfig};

const GUARD: Duration = Duration::from_secs(300);

/// min, median, p99 of `values` (sorted copy).
pub fn stats(values: &[f64]) -> (f64, f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (v[0], at(0.5), at(0.99))
}

/// One swap benchmark configuration's results.
#[derive(Debug, Clone)]
pub struct SwapConfigResult {
    pub cpus: u32,
    pub tasks: u32,
    pub cold_boot_us: f64,
    pub reports: Vec<SwapReport>,
    /// Free frames the guest reported after the first swap and after the last.
    pub free_frames: (u64, u64),
}

impl SwapConfigResult {
    pub fn downtimes_us(&self) -> Vec<f64> {
        self.reports
            .iter()
            .map(|r| r.downtime_ns as f64 / 1000.0)
            .collect()
    }

    pub fn phase_median_us(&self, phase: PhaseId) -> f64 {
        let v: Vec<f64> = self
            .reports
            .iter()
            .filter_map(|r| r.phases.iter().find(|p| p.phase == phase))
            .map(|p| p.ns as f64 / 1000.0)
            .collect();
        stats(&v).1
    }

    pub fn json(&self) -> Value {
        let (min, median, p99) = stats(&self.downtimes_us());
        let phases: serde_json::Map<String, Value> = PhaseId::ALL
            .iter()
            .map(|p| (p.name().to_owned(), json!(self.phase_median_us(*p))))
            .collect();
        json!({
            "cpus": self.cpus, "tasks": self.tasks, "swaps": self.reports.len(),
            "downtime_us": {"min": min, "median": median, "p99": p99},
            "phases_median_us": phases,
            "cold_boot_us": self.cold_boot_us,
            "free_frames_after_first_swap": self.free_frames.0,
            "free_frames_after_last_swap": self.free_frames.1,
            "downtime_over_cold_boot": median / self.cold_boot_us,
        })
    }
}

/// Boots `pair.0` with `tasks` tasks on `cpus` CPUs, measures its cold boot, then swaps
/// `swaps` times alternating `pair.1` and `pair.0`.
pub fn swap_config(
    cpus: u32,
    tasks: u32,
    swaps: usize,
    flags: RequestFlags,
    pair: (&str, &str),
) -> Result<SwapConfigResult> {
    let (twin, _) = update::package_variant(pair.1)?;
    let (v1, _) = update::package_variant(pair.0)?;
    let vm = Vm::launch(
        VmConfig::variant(pair.0)
            .cpus(cpus)
            .boot_opt("tasks", &tasks.to_string()),
    )?;
    let first = vm.wait_for_line("first task step", GUARD)?;
    let cold_boot_us = first.at.duration_since(vm.launched_at()).as_secs_f64() * 1e6;
    let mut mb = Mailbox::open(vm.paths())?;
    mb.wait_running(GUARD)?;
    let mut reports = Vec::with_capacity(swaps);
    let mut free_frames = (0, 0);
    // The host's check reads every built ELF: once for each package, not in the loop.
    update::check_before_push(&mb, &twin)?;
    update::check_before_push(&mb, &v1)?;
    let push = update::PushOptions::default().without_host_check();
    for i in 0..swaps {
        let package = if i % 2 == 0 { &twin } else { &v1 };
        match update::stage(&mut mb, package, &push, |_| {})? {
            Ok(_) => {}
            Err(r) => return Err(Error::Mailbox(format!("staging refused: {r}"))),
        }
        let report = match update::apply(&mut mb, flags)? {
            Ok(r) => r,
            Err(r) => return Err(Error::Mailbox(format!("swap {i} refused: {r}"))),
        };
        if !matches!(report.outcome, Outcome::Applied) {
            return Err(Error::Mailbox(format!("swap {i} rolled back")));
        }
        reports.push(report);
        // The new kernel frees what the swap left over once it has reported: wait for
        // its next status before reading free memory.
        let beat = mb.status()?.heartbeat;
        let deadline = Instant::now() + GUARD;
        while mb.status()?.heartbeat <= beat + 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let free = mb.status()?.free_frames;
        if i == 0 {
            free_frames.0 = free;
        }
        free_frames.1 = free;
    }
    let _ = vm.quit();
    Ok(SwapConfigResult {
        cpus,
        tasks,
        cold_boot_us,
        reports,
        free_frames,
    })
}

/// One swap from a freshly booted `v1` with `tasks` tasks to `target`: its report.
fn one_swap(cpus: u32, tasks: u32, package: &[u8]) -> Result<SwapReport> {
    let vm = Vm::launch(
        VmConfig::variant("v1")
            .cpus(cpus)
            .boot_opt("tasks", &tasks.to_string()),
    )?;
    vm.wait_for_line("first task step", GUARD)?;
    let mut mb = Mailbox::open(vm.paths())?;
    mb.wait_running(GUARD)?;
    let push = update::PushOptions::default();
    let staged = update::stage(&mut mb, package, &push, |_| {})?;
    if let Err(r) = staged {
        return Err(Error::Mailbox(format!("staging refused: {r}")));
    }
    let report = match update::apply(&mut mb, RequestFlags::empty())? {
        Ok(r) => r,
        Err(r) => return Err(Error::Mailbox(format!("swap refused: {r}"))),
    };
    let _ = vm.quit();
    if !matches!(report.outcome, Outcome::Applied) {
        return Err(Error::Mailbox("the swap rolled back".into()));
    }
    Ok(report)
}

/// Conversion cost per record (see the module doc): `runs` swaps from `v1` to each of
/// `twin`, `fields` and `fields-converter`, each from a fresh boot with `tasks` tasks.
pub fn convert(cpus: u32, tasks: u32, runs: usize) -> Result<Value> {
    let targets = ["twin", "fields", "fields-converter"];
    let packages: Vec<Vec<u8>> = targets
        .iter()
        .map(|t| update::package_variant(t).map(|(p, _)| p))
        .collect::<Result<_>>()?;
    let mut reconcile: Vec<Vec<f64>> = vec![Vec::new(); targets.len()];
    let mut entries = vec![0u32; targets.len()];
    for _ in 0..runs {
        for (i, package) in packages.iter().enumerate() {
            let r = one_swap(cpus, tasks, package)?;
            let us = r
                .phases
                .iter()
                .find(|p| p.phase == PhaseId::Reconcile)
                .map_or(0.0, |p| p.ns as f64 / 1000.0);
            reconcile[i].push(us);
            entries[i] = r
                .conversions
                .iter()
                .filter(|c| c.method != image_format::mailbox::report::Method::Unchanged)
                .map(|c| c.entries)
                .sum();
        }
    }
    let base = stats(&reconcile[0]).1;
    let rows: Vec<Value> = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (min, median, max) = {
                let (min, median, _) = stats(&reconcile[i]);
                let max = reconcile[i].iter().copied().fold(0.0, f64::max);
                (min, median, max)
            };
            let per_entry_ns = if entries[i] > 0 {
                (median - base) * 1000.0 / f64::from(entries[i])
            } else {
                0.0
            };
            json!({
                "target": t, "entries_converted": entries[i],
                "reconcile_us": {"min": min, "median": median, "max": max},
                "per_entry_ns_over_twin": per_entry_ns,
            })
        })
        .collect();
    Ok(json!({"cpus": cpus, "tasks": tasks, "runs": runs, "swaps": rows}))
}

/// Delivery throughput: a package of about `size` bytes (the v1 image plus read-only
/// padding) from the host's first write to the guest's "accepted", `runs` times.
pub fn deliver(cpus: u32, size: usize, runs: usize) -> Result<Value> {
    let package = padded_package(size)?;
    let vm = Vm::launch(VmConfig::variant("v1").cpus(cpus))?;
    vm.wait_for_line("first task step", GUARD)?;
    let mut mb = Mailbox::open(vm.paths())?;
    mb.wait_running(GUARD)?;
    let mut rows = Vec::new();
    // The host's check once, outside the timed loop (it reads every built ELF).
    update::check_before_push(&mb, &package)?;
    let push = update::PushOptions::default().without_host_check();
    for _ in 0..runs {
        let started = Instant::now();
        let (report, _) = match update::stage(&mut mb, &package, &push, |_| {})? {
            Ok(r) => r,
            Err(r) => return Err(Error::Mailbox(format!("staging refused: {r}"))),
        };
        let secs = started.elapsed().as_secs_f64();
        rows.push((secs, report));
    }
    let _ = vm.quit();
    let mbps: Vec<f64> = rows
        .iter()
        .map(|(s, _)| package.len() as f64 / s / 1e6)
        .collect();
    let hash_mbps: Vec<f64> = rows
        .iter()
        .map(|(_, r)| package.len() as f64 / (r.hash_us.max(1) as f64 / 1e6) / 1e6)
        .collect();
    let guest_mbps: Vec<f64> = rows
        .iter()
        .map(|(_, r)| package.len() as f64 / (r.staging_us.max(1) as f64 / 1e6) / 1e6)
        .collect();
    let verify_us: Vec<f64> = rows.iter().map(|(_, r)| r.verify_us as f64).collect();
    let verify_share: Vec<f64> = rows
        .iter()
        .map(|(_, r)| r.verify_us as f64 / r.staging_us.max(1) as f64)
        .collect();
    let staging_us: Vec<f64> = rows.iter().map(|(_, r)| r.staging_us as f64).collect();
    let (min, median, max) = stats(&mbps);
    Ok(json!({
        "guest_staging_us_median": stats(&staging_us).1,
        "guest_signature_verify_us_median": stats(&verify_us).1,
        "signature_share_of_staging_median": stats(&verify_share).1,
        "package_bytes": package.len(),
        "runs": runs,
        "host_write_to_accepted_mb_s": {"min": min, "median": median, "max": max},
        "guest_copy_and_hash_mb_s_median": stats(&guest_mbps).1,
        "guest_sha256_mb_s_median": stats(&hash_mbps).1,
    }))
}

/// The v1 package grown to `size` bytes with a read-only segment of pseudo-random bytes
/// (a valid image: it parses, verifies and lays out like any other), signed with the
/// development key.
pub fn padded_package(size: usize) -> Result<Vec<u8>> {
    use image_format::package::{parse, PackageSpec, SegmentFlags, SegmentSpec};
    let (v1, _) = update::package_variant("v1")?;
    let pkg = parse(&v1).map_err(|e| Error::Package(e.to_string()))?;
    let h = pkg.header();
    let mut segments: Vec<SegmentSpec> = h
        .segments()
        .map(|s| SegmentSpec {
            vaddr: s.vaddr,
            mem_size: s.mem_size,
            flags: s.flags,
            bytes: pkg.segment_bytes(&s).to_vec(),
        })
        .collect();
    let end = h.geometry().link_base + h.geometry().image_span;
    let pad = size.saturating_sub(v1.len()).max(4096);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let bytes: Vec<u8> = (0..pad)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    segments.push(SegmentSpec {
        vaddr: end,
        mem_size: pad as u64,
        flags: SegmentFlags::R,
        bytes,
    });
    let spec = PackageSpec {
        identity: *h.identity(),
        build_id: h.build_id(),
        entries: h.geometry().entries,
        segments,
        relocations: h.relocations().collect(),
        description: h.description().to_vec(),
        svn: h.svn(),
    };
    let built = spec
        .build()
        .map_err(|e| Error::Package(format!("padded package: {e}")))?;
    // Signed like every package `pack` makes (the guest refuses unsigned ones).
    crate::keys::sign(&built, &crate::keys::dev_key()?)
}
