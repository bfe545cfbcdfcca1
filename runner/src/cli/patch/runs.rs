//! `hotkernel demo --hotpatch` and `hotkernel bench patch`: run, then print a human
//! report or one JSON object.

use serde_json::json;

use super::{functions_lines, pause_line};
use crate::error::{Error, Result};
use crate::hotpatch::{self, demo::HotpatchDemo};
use crate::term::{errln, outln};

fn print_demo(run: &HotpatchDemo) {
    for s in &run.steps {
        let r = &s.report;
        outln!();
        outln!(
            "{} {}: patch {} \"{}\", sequence {}, {} site(s), {}",
            r.op,
            s.patch,
            hotpatch::id_text(r.id),
            r.label,
            r.sequence,
            r.functions.len(),
            pause_line(r)
        );
        let verb = match r.op {
            image_format::mailbox::report::PatchOp::Apply => "replaced",
            image_format::mailbox::report::PatchOp::Remove => "restored",
        };
        functions_lines(&r.functions, verb);
        if s.retries > 0 {
            outln!(
                "  ({} attempt(s) refused first: a CPU stood in a site)",
                s.retries
            );
        }
        outln!(
            "  continuity: {} tasks carried on{}",
            s.across.tasks_compared,
            if s.across.ok() && s.after.ok() {
                ""
            } else {
                " — PROBLEMS:"
            }
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
    outln!(
        "restored: {} text bytes compared with v1's ELF, {}; {}/{} sites restored; {} patch(es) left",
        run.restored.compared,
        if run.restored.identical() { "identical" } else { "DIFFERENT" },
        run.sites_restored(),
        run.sites.len(),
        run.left
    );
    for d in &run.restored.differences {
        outln!(
            "  at {:#x}: expected {:02x?}, found {:02x?}",
            d.address,
            d.expected,
            d.found
        );
    }
    outln!();
    outln!("demo {}", if run.ok() { "passed" } else { "FAILED" });
}

/// The hotpatch demo.
pub fn demo(cpus: u32, json: bool) -> Result<u8> {
    let run = hotpatch::demo::run(cpus, |msg| {
        if !json {
            errln!("demo: {msg}");
        }
    })?;
    if json {
        outln!("{}", run.json());
    } else {
        print_demo(&run);
    }
    Ok(if run.ok() { 0 } else { 1 })
}

/// The hotpatch pause benchmark: `rounds` apply+remove of patch-a per CPU count.
pub fn bench(
    rounds: usize,
    cpus: &[u32],
    window: crate::update::HealthWindow,
    json: bool,
) -> Result<u8> {
    if rounds == 0 {
        return Err(Error::Patch("--rounds must be at least 1".into()));
    }
    if let Some(bad) = cpus.iter().find(|&&c| c == 0 || c > 255) {
        return Err(Error::Patch(format!(
            "--cpus {bad}: a VM has 1 to 255 CPUs"
        )));
    }
    let patch = hotpatch::patch_between("v1", "patch-a")?;
    let mut runs = Vec::new();
    if !json {
        outln!(
            "hotpatch pause, patch-a on v1, {rounds} apply+remove rounds (guest TSC: first park IPI → release), health window {}",
            window_text(window)
        );
        outln!(
            "{:>4} {:>6} | {:<38} | {:<38}",
            "",
            "",
            "apply pause µs",
            "remove pause µs"
        );
        let columns = format!("{:>8} {:>10} {:>8} {:>8}", "min", "median", "p99", "first");
        outln!("{:>4} {:>6} | {columns} | {columns}", "cpus", "parked");
    }
    for &cpus in cpus {
        let r = hotpatch::bench::run(cpus, rounds, &patch, window)?;
        if !json {
            let (amin, amed, ap99) = crate::bench::stats(&r.apply_us);
            let (rmin, rmed, rp99) = crate::bench::stats(&r.remove_us);
            outln!(
                "{:>4} {:>6} | {:>8.1} {:>10.1} {:>8.1} {:>8.1} | {:>8.1} {:>10.1} {:>8.1} {:>8.1}",
                cpus,
                r.cpus_parked,
                amin,
                amed,
                ap99,
                r.apply_us.first().copied().unwrap_or(0.0),
                rmin,
                rmed,
                rp99,
                r.remove_us.first().copied().unwrap_or(0.0)
            );
            outln!(
                "{:>4} {:>6} | of which parking: median {:.1} µs (apply), {:.1} µs (remove)",
                "",
                "",
                crate::bench::stats(&r.apply_park_us).1,
                crate::bench::stats(&r.remove_park_us).1
            );
            if r.retries > 0 {
                outln!("     ({} refusals of the moment retried)", r.retries);
            }
        }
        runs.push(r);
    }
    if json {
        let head = runs.iter().find(|r| r.cpus == 4);
        let v = json!({
            "patch": "patch-a",
            "rounds": rounds,
            "health_window": window_text(window),
            "median_apply_pause_us_4_cpus": head.map(|r| crate::bench::stats(&r.apply_us).1),
            "median_remove_pause_us_4_cpus": head.map(|r| crate::bench::stats(&r.remove_us).1),
            "configs": runs.iter().map(hotpatch::bench::PauseRun::json).collect::<Vec<_>>(),
        });
        outln!("{v}");
    }
    Ok(0)
}

fn window_text(window: crate::update::HealthWindow) -> String {
    match window {
        crate::update::HealthWindow::Default => "the guest's default".into(),
        crate::update::HealthWindow::Millis(ms) => format!("{ms} ms"),
        crate::update::HealthWindow::Off => "none".into(),
    }
}
