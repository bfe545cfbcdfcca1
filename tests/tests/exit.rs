//! The guest's verdict reaches the host: isa-debug-exit codes become [`GuestExit`], and
//! boot options reach the kernel through fw_cfg (they pick the kernel's mode here).

use hotkernel_tests::{boot_and_expect, mode, Check, GuestExit, HANG_GUARD};

#[test]
fn a_guest_that_reports_success_exits_with_success() {
    let vm = boot_and_expect(mode("selftest"), &["booting", "selftest: all"]);
    assert_eq!(
        vm.wait_exit(HANG_GUARD).check("waiting for the exit"),
        GuestExit::Success
    );
}

#[test]
fn a_guest_that_panics_exits_with_failure_and_says_why() {
    let vm = boot_and_expect(mode("panic"), &["KERNEL PANIC", "deliberate panic"]);
    assert_eq!(
        vm.wait_exit(HANG_GUARD).check("waiting for the exit"),
        GuestExit::Failure
    );
}

#[test]
fn waiting_for_a_line_fails_early_when_the_guest_ends_and_quotes_the_console() {
    let vm = hotkernel::Vm::launch(mode("panic")).check("launching");
    let err = vm
        .wait_for_line("a line this kernel never prints", HANG_GUARD)
        .expect_err("the guest exits without printing it");
    let text = err.to_string();
    assert!(text.contains("guest reported failure"), "{text}");
    assert!(
        text.contains("KERNEL PANIC"),
        "the error quotes the console tail: {text}"
    );
    assert!(vm.has_exited());
}

#[test]
fn a_kernel_given_by_path_boots_like_a_variant() {
    let built = hotkernel::build_kernel_cached(&hotkernel::Variant::v1()).check("building v1");
    let cfg = hotkernel::VmConfig {
        kernel: hotkernel_tests::KernelChoice::Elf(built.elf.clone()),
        ..mode("panic")
    };
    let vm = boot_and_expect(cfg, &["KERNEL PANIC"]);
    assert_eq!(vm.kernel().variant, None);
    assert_eq!(vm.kernel().elf, built.elf);
    let state = hotkernel_tests::VmState::load(vm.name()).check("loading state.json");
    assert_eq!(state.variant, None);
    assert_eq!(
        vm.wait_exit(HANG_GUARD).check("waiting for the exit"),
        GuestExit::Failure
    );
}

#[test]
fn an_unknown_variant_is_refused_before_booting() {
    let err = hotkernel::Vm::launch(hotkernel::VmConfig::variant("nonesuch"))
        .err()
        .expect("no such kernel variant");
    let text = err.to_string();
    assert!(text.contains("unknown kernel variant `nonesuch`"), "{text}");
}

/// Panic reports of CPUs that panic at once come one after another, each whole: the
/// `panic-step` kernel's counter panics on its first step on every CPU.
#[test]
fn panics_on_several_cpus_at_once_print_one_whole_report_after_another() {
    let cfg = hotkernel::VmConfig::variant("panic-step").cpus(4);
    let vm = boot_and_expect(cfg, &["KERNEL PANIC"]);
    assert_eq!(
        vm.wait_exit(HANG_GUARD).check("waiting for the exit"),
        GuestExit::Failure
    );
    let log = vm.serial_log();
    let lines: Vec<&str> = log.lines().collect();
    let reports: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("KERNEL PANIC"))
        .collect();
    assert!(!reports.is_empty(), "{log}");
    for &i in &reports {
        let whole = lines[i].starts_with("KERNEL PANIC on cpu")
            && lines[i].ends_with(".rs:35:13")
            && lines.get(i + 1).is_some_and(|l| {
                l.starts_with("  the new counter step fails on its first call (count ")
                    && l.ends_with(')')
            })
            && lines
                .get(i + 2)
                .is_some_and(|l| l.starts_with("  return addresses: 0x"));
        assert!(
            whole,
            "report at line {i} is not whole:\n{}",
            lines[i..lines.len().min(i + 3)].join("\n")
        );
    }
}
