//! A [`Plan`] as a person reads it ([`text`]) and as one JSON object ([`json`]).

use patchgen::{FunctionVerdict, Subject, Verdict};
use serde_json::{json, Value};
use updater::plan::Method;

use super::{Plan, Preflight, Route, SwapCheck};
use crate::description::{HostPlan, RecordOutcome};
use crate::hotpatch;

/// `1.5 MiB`, `12.0 KiB`, `512 B`.
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.2} MiB", n as f64 / f64::from(1 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / f64::from(1 << 10)),
        n => format!("{n} B"),
    }
}

fn signed_bytes(old: u64, new: u64) -> String {
    if new >= old {
        format!("+{}", bytes(new - old))
    } else {
        format!("-{}", bytes(old - new))
    }
}

fn subject(v: &FunctionVerdict) -> String {
    match v.subject {
        Subject::Function => String::new(),
        other => format!(" ({other})"),
    }
}

/// One verdict: `changed   kernel::tasks::counter::step  (9 → 10 bytes)`.
pub fn verdict_line(v: &FunctionVerdict) -> String {
    let what = subject(v);
    let name = super::short_name(&v.name);
    let mut line = match &v.verdict {
        Verdict::Unchanged => format!("unchanged {name}{what}"),
        Verdict::Changed {
            old_size, new_size, ..
        } => format!("changed   {name}{what}  ({old_size} → {new_size} bytes): hotpatchable"),
        Verdict::New { size, needed_by } => format!(
            "new       {name}{what}  ({size} bytes, carried for {})",
            super::short_name(needed_by)
        ),
        Verdict::Refused { reason, .. } => format!("refused   {name}{what}: {reason}"),
    };
    for w in &v.warnings {
        line.push_str(&format!("\n      warning: {w}"));
    }
    line
}

fn verdict_json(v: &FunctionVerdict) -> Value {
    let (verdict, detail) = match &v.verdict {
        Verdict::Unchanged => ("unchanged", json!({})),
        Verdict::Changed {
            site,
            old_size,
            new_size,
            why,
        } => (
            "changed",
            json!({"site": format!("{site:#x}"), "old_size": old_size, "new_size": new_size,
                   "first_difference": why.to_string()}),
        ),
        Verdict::New { size, needed_by } => ("new", json!({"size": size, "needed_by": needed_by})),
        Verdict::Refused { reason, remedy } => (
            "refused",
            json!({"reason": reason.to_string(), "remedy": remedy.to_string()}),
        ),
    };
    let mut out = json!({
        "name": v.name,
        "subject": v.subject.to_string(),
        "verdict": verdict,
        "hotpatchable": !v.is_refused(),
        "warnings": v.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    if let (Value::Object(out), Value::Object(detail)) = (&mut out, detail) {
        out.extend(detail);
    }
    out
}

/// What becomes of a record kind that only the new image has.
fn new_kind_note(kind: image_format::RecordKind) -> String {
    match kind.task_kind() {
        Some(task) => format!(
            "new task kind `{task}`: its state starts empty and the new kernel creates its first tasks at resume (initialisation requirement)"
        ),
        None => "starts empty".to_owned(),
    }
}

fn method_word(method: Method) -> &'static str {
    match method {
        Method::Unchanged => "unchanged",
        Method::ByFields => "fields",
        Method::Converters => "converter",
        Method::Mixed => "converter+fields",
    }
}

fn record_lines(plan: &HostPlan, out: &mut Vec<String>) {
    let unchanged: Vec<String> = plan
        .records
        .iter()
        .filter_map(|r| match r {
            RecordOutcome::Read {
                kind,
                from,
                method: Method::Unchanged,
                ..
            } => Some(format!("{kind} {from}")),
            _ => None,
        })
        .collect();
    if !unchanged.is_empty() {
        out.push(format!("  unchanged: {}", unchanged.join(", ")));
    }
    for r in &plan.records {
        match r {
            RecordOutcome::Read {
                method: Method::Unchanged,
                ..
            } => {}
            RecordOutcome::Read {
                kind,
                from,
                to,
                method,
                added,
                dropped,
            } => {
                let mut fields: Vec<String> = added.iter().map(|f| format!("+{f}")).collect();
                fields.extend(dropped.iter().map(|f| format!("-{f}")));
                let fields = if fields.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", fields.join(", "))
                };
                out.push(format!("  {kind} {from} → {to} {method}{fields}"));
            }
            RecordOutcome::Dropped { kind, version } => out.push(format!(
                "  dropped: {kind} {version} (optional; the new image does not read it)"
            )),
            RecordOutcome::New { kind, version } => out.push(format!(
                "  added: {kind} {version}: {}",
                new_kind_note(*kind)
            )),
        }
    }
    for r in &plan.resizes {
        out.push(format!(
            "  region {} at {:#x}: {} → {}",
            r.name,
            r.start,
            bytes(r.running),
            bytes(r.new)
        ));
    }
}

fn records_json(plan: &HostPlan) -> Value {
    plan.records
        .iter()
        .map(|r| match r {
            RecordOutcome::Read {
                kind,
                from,
                to,
                method,
                added,
                dropped,
            } => json!({
                "kind": kind.to_string(), "outcome": if *method == Method::Unchanged { "unchanged" } else { "converted" },
                "from": from.to_string(), "to": to.to_string(), "method": method_word(*method),
                "fields_added": added, "fields_dropped": dropped,
            }),
            RecordOutcome::Dropped { kind, version } => json!({
                "kind": kind.to_string(), "outcome": "dropped", "from": version.to_string(),
            }),
            RecordOutcome::New { kind, version } => json!({
                "kind": kind.to_string(), "outcome": "added", "to": version.to_string(),
                "initialisation": new_kind_note(*kind),
                "task_kind": kind.task_kind().map(|t| t.to_string()),
            }),
        })
        .collect()
}

/// The plan as text; `verbose` adds the generator's notes and the unchanged records.
pub fn text(plan: &Plan, verbose: bool) -> String {
    let mut out = Vec::new();
    out.push(format!(
        "plan: {} → {}",
        plan.running.summary, plan.new.summary
    ));
    out.push(format!("  route: {} — {}", plan.route.name(), plan.reason));
    if !plan.patches.is_empty() {
        let names: Vec<String> = plan
            .patches
            .iter()
            .map(|p| format!("{} \"{}\"", hotpatch::id_text(p.id), p.label))
            .collect();
        out.push(format!(
            "  running: {} with {} patch(es) applied: {}",
            plan.running.elf.display(),
            plan.patches.len(),
            names.join(", ")
        ));
        match &plan.changed_now {
            Some(names) if names.is_empty() => {
                out.push("  since the build the patches came from: nothing changed".to_owned())
            }
            Some(names) => out.push(format!(
                "  changed since the build the patches came from: {}",
                names.join(", ")
            )),
            None => out.push(
                "  (the patches were not made by `watch`: functions are compared with the base)"
                    .to_owned(),
            ),
        }
    } else {
        out.push(format!("  running: {}", plan.running.elf.display()));
    }
    let refused = plan.refusals().count();
    let listed: Vec<&FunctionVerdict> = plan
        .functions
        .iter()
        .filter(|v| !matches!(v.verdict, Verdict::Unchanged))
        .collect();
    out.push(format!(
        "functions (against the running base): {} changed, {} refused",
        plan.sites().len(),
        refused
    ));
    for v in listed {
        for (i, line) in verdict_line(v).lines().enumerate() {
            out.push(if i == 0 {
                format!("  {line}")
            } else {
                line.to_owned()
            });
        }
    }
    if !plan.reverted.is_empty() {
        out.push(format!(
            "  back to the base's code under an applied patch: {}",
            plan.reverted.join(", ")
        ));
    }
    if verbose {
        for n in &plan.notes {
            out.push(format!("  note: {n}"));
        }
    }
    match &plan.swap {
        SwapCheck::Passed(p) => {
            out.push("records (a swap):".to_owned());
            let mut lines = Vec::new();
            record_lines(p, &mut lines);
            if !verbose {
                lines.retain(|l| !l.starts_with("  unchanged:"));
                let unchanged = p
                    .records
                    .iter()
                    .filter(|r| {
                        matches!(
                            r,
                            RecordOutcome::Read {
                                method: Method::Unchanged,
                                ..
                            }
                        )
                    })
                    .count();
                lines.insert(
                    0,
                    format!("  {unchanged} kind(s) unchanged (-v lists them)"),
                );
            }
            out.extend(lines);
        }
        SwapCheck::Refused(r) => out.push(format!("records (a swap): refused: {}", r.message)),
        SwapCheck::Skipped(note) => out.push(format!("records (a swap): not compared: {note}")),
    }
    out.push(format!(
        "image: package {} → {} ({}), memory {} → {} ({})",
        bytes(plan.running.package_bytes),
        bytes(plan.new.package_bytes),
        signed_bytes(plan.running.package_bytes, plan.new.package_bytes),
        bytes(plan.running.image_span),
        bytes(plan.new.image_span),
        signed_bytes(plan.running.image_span, plan.new.image_span),
    ));
    out.push(match &plan.preflight {
        Preflight::NotRun(why) => format!("staging pre-flight: not run ({why})"),
        Preflight::Accepted {
            report,
            message,
            predicts_refusal,
        } => {
            let verdict = if *predicts_refusal {
                format!(": {message}")
            } else {
                String::new()
            };
            format!(
                "staging pre-flight: staged by the guest ({} bytes in {} µs), then released{verdict}",
                report.bytes, report.staging_us
            )
        }
        Preflight::Refused { status, message } => format!(
            "staging pre-flight: refused by the guest ({status}, {}): {message}",
            status.code()
        ),
    });
    out.push(format!(
        "time: generate {:.0} ms, pack and compare {:.0} ms, pre-flight {:.0} ms",
        plan.times.generate.as_secs_f64() * 1e3,
        plan.times.pack.as_secs_f64() * 1e3,
        plan.times.preflight.as_secs_f64() * 1e3
    ));
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// The plan as one JSON object: `route`, `reason`, `running`, `new`, `patches`,
/// `changed_now`, `functions` (every verdict but the unchanged), `reverted`, `swap`
/// (`ok`, `records`, `resizes`, or `refused`/`skipped`), `growth`, `preflight`, `times_ms`.
pub fn json(plan: &Plan) -> Value {
    let image = |i: &super::Image| {
        json!({
            "elf": i.elf.display().to_string(),
            "image": i.summary.to_string(),
            "version": i.summary.version.to_string(),
            "label": i.summary.label.as_str(),
            "build_id": i.summary.build_id.to_string(),
            "package_bytes": i.package_bytes,
            "image_span": i.image_span,
        })
    };
    let swap = match &plan.swap {
        SwapCheck::Passed(p) => json!({
            "ok": true,
            "records": records_json(p),
            "resizes": p.resizes.iter().map(|r| json!({
                "region": r.name, "start": format!("{:#x}", r.start), "running": r.running, "new": r.new,
            })).collect::<Vec<_>>(),
        }),
        SwapCheck::Refused(r) => json!({
            "ok": false,
            "refused": r.message,
            "rule": format!("{:?}", r.rule),
            "status": r.status.to_string(),
            "status_code": r.status.code(),
        }),
        SwapCheck::Skipped(note) => json!({"ok": null, "skipped": note}),
    };
    let preflight = match &plan.preflight {
        Preflight::NotRun(why) => json!({"run": false, "why": why}),
        Preflight::Accepted {
            report,
            message,
            predicts_refusal,
        } => json!({
            "run": true, "accepted": !predicts_refusal, "predicts_refusal": predicts_refusal,
            "bytes": report.bytes, "staging_us": report.staging_us,
            "hash_us": report.hash_us, "message": message, "released": true,
        }),
        Preflight::Refused { status, message } => json!({
            "run": true, "accepted": false, "status": status.to_string(),
            "status_code": status.code(), "message": message,
        }),
    };
    json!({
        "route": plan.route.name(),
        "reason": plan.reason,
        "hotpatchable": plan.route == Route::Hotpatch,
        "running": image(&plan.running),
        "new": image(&plan.new),
        "patches": plan.patches.iter().map(|p| json!({
            "id": hotpatch::id_text(p.id), "label": p.label, "functions": p.functions,
        })).collect::<Vec<_>>(),
        "changed_now": plan.changed_now,
        "functions": plan.functions.iter()
            .filter(|v| !matches!(v.verdict, Verdict::Unchanged))
            .map(verdict_json).collect::<Vec<_>>(),
        "reverted": plan.reverted,
        "notes": plan.notes,
        "swap": swap,
        "growth": {
            "package_bytes": plan.new.package_bytes as i64 - plan.running.package_bytes as i64,
            "image_span": plan.new.image_span as i64 - plan.running.image_span as i64,
        },
        "preflight": preflight,
        "times_ms": {
            "generate": plan.times.generate.as_secs_f64() * 1e3,
            "pack": plan.times.pack.as_secs_f64() * 1e3,
            "preflight": plan.times.preflight.as_secs_f64() * 1e3,
        },
    })
}
