//! Reports as JSON, for `--json` outputs (swap, demo, bench).

use image_format::mailbox::report::{Method, Outcome, SwapReport};
use serde_json::{json, Value};

/// One swap as a JSON object: `from`, `to`, `downtime_us`, `phases` (µs), tasks before
/// and after, conversions, warnings, outcome; `state_ok` when the caller verified
/// continuity (`None`: not checked).
pub fn swap_json(r: &SwapReport, state_ok: Option<bool>) -> Value {
    let phases: serde_json::Map<String, Value> = r
        .phases
        .iter()
        .map(|p| (p.phase.name().to_owned(), json!(p.ns as f64 / 1000.0)))
        .collect();
    let (applied, reason) = match &r.outcome {
        Outcome::Applied => (true, None),
        Outcome::RolledBack { reason } => (false, Some(reason.clone())),
    };
    json!({
        "from": r.from.to_string(),
        "to": r.to.to_string(),
        "applied": applied,
        "rollback_reason": reason,
        "downtime_us": r.downtime_ns as f64 / 1000.0,
        "phases": phases,
        "tasks_before": r.tasks_before,
        "tasks_after": r.tasks_after,
        "cpus_parked": r.cpus_parked,
        "conversions": r.conversions.iter().map(|c| json!({
            "kind": c.kind.to_string(), "from": c.from.get(), "to": c.to.get(), "entries": c.entries,
            "method": match c.method {
                Method::Unchanged => "unchanged",
                Method::Converter => "converter",
                Method::Fields => "fields",
            },
            "fields_added": c.added, "fields_dropped": c.dropped, "field_names": c.names,
        })).collect::<Vec<_>>(),
        "warnings": r.warnings,
        "initialised": r.initialised.iter().map(|i| serde_json::json!({"kind": i.name, "count": i.count})).collect::<Vec<_>>(),
        "state_ok": state_ok,
        "old_image_base": format!("{:#x}", r.old_image_base),
        "new_image_base": format!("{:#x}", r.new_image_base),
        "staging_base": format!("{:#x}", r.staging_base),
    })
}
