//! Boot on 1, 2, 4 and 8 CPUs: every CPU comes online and runs task steps, seen through
//! the console in self-test mode (`mode=selftest`), whose exit status is the verdict.
//!
//! (A deliberate panic exiting with failure is `exit.rs`'s
//! `a_guest_that_panics_exits_with_failure_and_says_why`.)

use std::collections::BTreeSet;

use hotkernel_tests::{expect_lines, mode, Check, GuestExit, Vm, HANG_GUARD};

/// The number after `prefix` in `text` (e.g. `"cpu "` in `"cpu 3 online"`).
fn number_after(text: &str, prefix: &str) -> Option<u64> {
    let rest = &text[text.find(prefix)? + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn every_cpu_comes_online_and_runs_tasks(cpus: u32) {
    let plural = if cpus == 1 { "cpu" } else { "cpus" };
    let name = format!("every_cpu_comes_online_and_runs_tasks_on_{cpus}_{plural}");
    let vm = Vm::launch(mode("selftest").cpus(cpus)).check("launching");
    // The BSP starts the APs one at a time and waits for each to come online.
    let mut expected: Vec<String> = (0..cpus).map(|i| format!("cpu {i} online")).collect();
    expected.push(format!("{cpus} CPUs online"));
    expected.push("selftest: every CPU is online and runs tasks ... ok".into());
    let needles: Vec<&str> = expected.iter().map(String::as_str).collect();
    expect_lines(&vm, 0, &needles);
    let ran = vm
        .wait_for_line("CPUs ran", HANG_GUARD)
        .check("waiting for the task-step count");
    let all = vm
        .wait_for_line("selftest: all", HANG_GUARD)
        .check("waiting for the verdict");
    let exit = vm.wait_exit(HANG_GUARD).check("waiting for the exit");
    let log = vm.serial_log();
    assert_eq!(exit, GuestExit::Success, "{name}:\n{log}");

    // `selftest: N CPUs ran M task steps`: N is the machine's CPU count.
    let reported = number_after(&ran.text, "selftest: ").expect("a CPU count");
    let steps = number_after(&ran.text, "ran ").expect("a step count");
    assert_eq!(reported, cpus as u64, "{}", ran.text);
    assert!(steps >= cpus as u64, "every CPU ran a step: {}", ran.text);
    // Every CPU, and no other, said it came online.
    let online: BTreeSet<u64> = log
        .lines()
        .filter(|l| l.contains(" online (apic "))
        .filter_map(|l| number_after(l, "] cpu "))
        .collect();
    assert_eq!(
        online,
        (0..cpus as u64).collect::<BTreeSet<_>>(),
        "{name}: CPUs online"
    );
    assert!(!log.contains("FAILED"), "{name}:\n{log}");
    // The tests that need an AP to keep silent cannot run on one CPU: they say so.
    let skipped = log.lines().filter(|l| l.contains(" ... skipped (")).count();
    if cpus == 1 {
        assert_eq!(skipped, 2, "{name}: two tests skipped on one CPU:\n{log}");
        assert!(all.text.contains("2 of"), "{}", all.text);
    } else {
        assert_eq!(skipped, 0, "{name}: nothing skipped on {cpus} CPUs:\n{log}");
    }
    eprintln!(
        "{name}: {cpus} CPUs online, {steps} task steps; {}",
        all.text.trim()
    );
}

#[test]
fn every_cpu_comes_online_and_runs_tasks_on_1_cpu() {
    every_cpu_comes_online_and_runs_tasks(1);
}

#[test]
fn every_cpu_comes_online_and_runs_tasks_on_2_cpus() {
    every_cpu_comes_online_and_runs_tasks(2);
}

#[test]
fn every_cpu_comes_online_and_runs_tasks_on_4_cpus() {
    every_cpu_comes_online_and_runs_tasks(4);
}

#[test]
fn every_cpu_comes_online_and_runs_tasks_on_8_cpus() {
    every_cpu_comes_online_and_runs_tasks(8);
}
