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
