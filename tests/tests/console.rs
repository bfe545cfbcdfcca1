//! The serial bridge: every line the guest prints is captured, in order, with host
//! times; lines written to the console reach the guest; every VM's console is kept in
//! its `console.log`, across swaps and boots, after the VM ended.

use hotkernel::vm::console::GuestPanic;
use hotkernel_tests::{boot_and_expect, expect_lines, mode, patches, Check, Guest, GuestExit};

#[test]
fn lines_are_captured_in_order_with_host_times() {
    let vm = boot_and_expect(mode("run"), &["booting", "CPUs online"]);
    let lines = vm.serial_lines();
    assert!(lines.len() >= 2);
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line.index, i);
        assert!(
            !line.text.ends_with('\r') && !line.text.contains('\n'),
            "{:?}",
            line.text
        );
        assert!(line.at >= vm.launched_at());
    }
    assert!(
        lines.windows(2).all(|w| w[0].at <= w[1].at),
        "times never go back"
    );
    let booting = lines
        .iter()
        .position(|l| l.text.contains("booting"))
        .unwrap();
    let online = lines
        .iter()
        .position(|l| l.text.contains("CPUs online"))
        .unwrap();
    assert!(booting < online);
    let log = vm.serial_log();
    assert!(log.contains(&lines[booting].text) && log.contains(&lines[online].text));
}

#[test]
fn typed_lines_reach_the_guest_console() {
    let vm = boot_and_expect(mode("run"), &["CPUs online"]);
    let before = vm.serial_lines().len();
    vm.send_line("help").check("typing on the console");
    let reply = expect_lines(&vm, before, &["commands:"]);
    assert!(reply[0].text.contains("help"), "{}", reply[0].text);
}

#[test]
fn the_console_log_keeps_boots_and_swaps_after_the_vm_ended() {
    let name = format!("console-log-{}", std::process::id());
    let cfg = || hotkernel_tests::VmConfig {
        name: Some(name.clone()),
        ..patches_vm("v1")
    };
    let mut g = Guest::boot(cfg().cpus(2));
    let log = g.vm.console_log().to_owned();
    assert_eq!(log, g.vm.paths().dir.join("console.log"));
    g.stage_ok(&patches::package("twin"));
    g.apply_ok();
    g.vm.wait_for_line("resumed as", hotkernel_tests::HANG_GUARD)
        .check("waiting for the new kernel's `resumed as`");
    assert_eq!(g.vm.quit().check("quit"), GuestExit::Stopped);
    drop(g);

    let text = std::fs::read_to_string(&log).expect("the console log is kept");
    let boot = text
        .find(&format!("--- hotkernel: boot of VM `{name}` at "))
        .expect("the runner's boot line");
    let banner = text.find("booting (TSC").expect("the guest's boot banner");
    let swap = text
        .find("resumed as 1.0.1 (v1-twin")
        .expect("the new kernel's swap lines");
    let ended = text
        .find("--- hotkernel: VM ended: stopped on request")
        .expect("the runner's end line");
    assert!(boot < banner && banner < swap && swap < ended, "{text}");

    // A second boot of the name appends; what the first one wrote stays.
    let vm = boot_and_expect(cfg().boot_opt("mode", "panic"), &["KERNEL PANIC"]);
    assert_eq!(
        vm.wait_exit(hotkernel_tests::HANG_GUARD)
            .check("panic exit"),
        GuestExit::Failure
    );
    drop(vm);
    let text = std::fs::read_to_string(&log).expect("the console log is kept");
    assert_eq!(
        text.matches("--- hotkernel: boot of VM").count(),
        2,
        "{text}"
    );
    assert!(
        text.contains("resumed as 1.0.1 (v1-twin"),
        "the first boot's lines are kept"
    );
    let second = hotkernel::vm::console::last_boot(&log);
    let panic = GuestPanic::first(&second).expect("the second boot's panic report");
    assert!(panic.message.contains("deliberate panic"), "{panic}");
    assert!(panic
        .location
        .is_some_and(|at| at.starts_with("kernel/src/boot.rs:")));
    std::fs::remove_dir_all(log.parent().expect("the VM's directory")).expect("cleaning up");
}

/// A VM of the tests' private copy of `variant`'s kernel.
fn patches_vm(variant: &str) -> hotkernel_tests::VmConfig {
    hotkernel_tests::VmConfig {
        kernel: hotkernel::KernelChoice::Elf(patches::kernel(variant).path.clone()),
        ..hotkernel_tests::VmConfig::default()
    }
}
