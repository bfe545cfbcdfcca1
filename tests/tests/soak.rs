//! `hotkernel soak`, through the real command: a short soak passes and prints its
//! figures; a swap that carries an injected fault (the reconciliation fails, the swap
//! rolls back) stops the soak there, with exit status 1 and what differed.

use std::process::{Command, Output};

use serde_json::Value;

fn soak(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hotkernel-cli"))
        .arg("soak")
        .args(args)
        .output()
        .expect("running hotkernel soak")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The number after `key` in `line` (`min 2155,` → 2155).
fn number_after(text: &str, key: &str) -> f64 {
    let at = text
        .find(key)
        .unwrap_or_else(|| panic!("no `{key}` in {text}"))
        + key.len();
    text[at..]
        .trim_start()
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after `{key}` in {text}"))
}

#[test]
fn a_short_soak_passes_and_prints_its_figures() {
    let out = soak(&["--swaps", "6", "--patches", "2", "--cpus", "2"]);
    let (stdout, stderr) = text(&out);
    println!("{stdout}");
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with(
            "soak passed: 6 of 6 swaps v1 ⇄ v1-twin and 2 of 2 patch-a rounds on 2 CPUs"
        ),
        "{stdout}"
    );
    for n in 1..=6 {
        assert!(
            stderr.contains(&format!("soak: swap {n} (")),
            "swap {n} not reported: {stderr}"
        );
    }
    assert!(stderr.contains("soak: patch round 2/2:"), "{stderr}");
    let (min, median, p99) = (
        number_after(&stdout, "downtime µs: min"),
        number_after(&stdout, "median"),
        number_after(&stdout, "p99"),
    );
    assert!(0.0 < min && min <= median && median <= p99, "{stdout}");
    assert!(
        number_after(&stdout, "of the first 6 swaps") > 0.0,
        "{stdout}"
    );
    assert!(number_after(&stdout, "of the last 6") > 0.0, "{stdout}");
    assert!(number_after(&stdout, "apply") > 0.0, "{stdout}");
    let start = number_after(&stdout, "free memory:");
    let end = number_after(&stdout, "after the first swap,");
    assert_eq!(start, end, "free memory at the start and the end: {stdout}");
    assert!(number_after(&stdout, "wall time") > 0.0, "{stdout}");
}

#[test]
fn a_swap_that_rolls_back_stops_the_soak_there() {
    let out = soak(&[
        "--swaps",
        "4",
        "--patches",
        "1",
        "--cpus",
        "2",
        "--json",
        "--inject",
        "reconcile-fail",
        "--inject-at",
        "3",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(v["passed"], false, "{v}");
    assert_eq!(v["failure"]["at"], "swap 3 (v1 → v1-twin)", "{v}");
    let problems = v["failure"]["problems"].as_array().expect("problems");
    assert!(
        problems.iter().any(|p| p.as_str().is_some_and(|p| p
            .starts_with("refused: the swap failed and was rolled back")
            && p.contains("injected reconciliation failure"))),
        "{v}"
    );
    // The rollback kept every task: the only problem is that the swap did not apply.
    assert_eq!(problems.len(), 1, "{v}");
    assert_eq!(v["swaps"]["applied"], 2, "{v}");
    assert_eq!(v["patch_rounds"]["done"], 1, "{v}");
    assert!(
        !stderr.contains("soak: swap 3"),
        "no progress line for the failed swap: {stderr}"
    );
}
