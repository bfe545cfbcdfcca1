//! `hotkernel plan`: the advisor's verdict on three kinds of change, against a running
//! v1 VM, through the real CLI (text and `--json`):
//!
//! - `patch-a` (a body-only change of two functions) → a hotpatch, nothing staged;
//! - `fields` (a record gains a field: a layout change) → a swap, the counter state
//!   converted by field, the guest's staging pre-flight accepting it;
//! - `incompatible` (a narrowed field, no converter) → refused: the generator refuses
//!   it (state layout) and the swap is refused too, naming the field.
//!
//! And `swap --dry-run` shows the same plan and changes nothing: the VM still runs v1
//! with its tasks. One VM (v1, 2 CPUs) for the whole file.

use std::process::Output;

use hotkernel_tests::patches;
use hotkernel_tests::Guest;
use serde_json::Value;

/// Runs `hotkernel <args>`.
fn hotkernel(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hotkernel-cli"))
        .args(args)
        .output()
        .expect("running the hotkernel command")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The plan of `variant` as text and JSON; checks the exit status is `status`.
#[track_caller]
fn plan(g: &Guest, variant: &str, status: i32) -> (String, Value) {
    let vm = g.vm.name().to_owned();
    let text = hotkernel(&["plan", "--vm", &vm, "--variant", variant]);
    let json = hotkernel(&["plan", "--vm", &vm, "--variant", variant, "--json"]);
    for out in [&text, &json] {
        assert_eq!(
            out.status.code(),
            Some(status),
            "plan {variant}: {}\nstdout: {}\nstderr: {}",
            out.status,
            stdout(out),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let value = serde_json::from_str(stdout(&json).trim())
        .unwrap_or_else(|e| panic!("plan {variant} --json: {e}: {}", stdout(&json)));
    let text = stdout(&text);
    println!("plan {variant}:\n{text}");
    (text, value)
}

fn record<'a>(plan: &'a Value, kind: &str) -> &'a Value {
    plan["swap"]["records"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["kind"] == kind))
        .unwrap_or_else(|| panic!("no record {kind} in {}", plan["swap"]))
}

fn function_names(plan: &Value, verdict: &str) -> Vec<String> {
    plan["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .filter(|f| f["verdict"] == verdict)
        .filter_map(|f| f["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn plan_says_hotpatch_swap_or_refused_and_why() {
    let mut g = patches::boot("v1", 2);
    let before = g.snapshot();

    let (text, p) = plan(&g, "patch-a", 0);
    assert_eq!(p["route"], "hotpatch", "{p}");
    assert!(text.contains("route: hotpatch"), "{text}");
    let changed = function_names(&p, "changed");
    assert!(
        changed.iter().any(|f| f == "kernel::tasks::counter::step"),
        "{changed:?}"
    );
    assert!(function_names(&p, "refused").is_empty(), "{p}");
    assert_eq!(p["preflight"]["run"], false, "a hotpatch stages nothing");
    assert_eq!(record(&p, "counter-state")["outcome"], "unchanged");

    let (text, p) = plan(&g, "fields", 0);
    assert_eq!(p["route"], "swap", "{p}");
    assert!(text.contains("route: swap"), "{text}");
    assert!(
        text.contains("counter-state v1 → v2 converted by fields (+mark)"),
        "{text}"
    );
    let counter = record(&p, "counter-state");
    assert_eq!(
        (&counter["outcome"], &counter["method"]),
        (&Value::from("converted"), &Value::from("fields"))
    );
    assert_eq!(counter["fields_added"], serde_json::json!(["mark"]));
    assert!(
        function_names(&p, "refused")
            .iter()
            .any(|f| f == "counter-state"),
        "the generator refuses the layout change: {p}"
    );
    assert_eq!(p["preflight"]["accepted"], true, "{}", p["preflight"]);
    assert!(p["new"]["package_bytes"].as_u64().unwrap() > 0);

    let (text, p) = plan(&g, "incompatible", 1);
    assert_eq!(p["route"], "refused", "{p}");
    assert!(text.contains("route: refused"), "{text}");
    assert_eq!(p["swap"]["ok"], false);
    let refusal = p["swap"]["refused"].as_str().unwrap();
    assert!(refusal.contains("steps"), "names the field: {refusal}");
    assert!(
        function_names(&p, "refused")
            .iter()
            .any(|f| f == "task-table"),
        "{p}"
    );

    let vm = g.vm.name().to_owned();
    let dry = hotkernel(&["swap", "--dry-run", "--variant", "fields", "--vm", &vm]);
    assert!(dry.status.success(), "{}", stdout(&dry));
    assert!(stdout(&dry).contains("route: swap"), "{}", stdout(&dry));

    // Nothing changed: the same image, every task still there and stepping.
    let status = g.status();
    assert_eq!(status.image.label.as_str(), "v1");
    assert_eq!(status.boot_seq, 1, "no swap happened");
    assert_eq!(status.patches, 0, "no patch was applied");
    let after = g.wait_all_progress(&before, &[]);
    assert_eq!(after.tasks.len(), before.tasks.len());
}
