//! The serial bridge: every line the guest prints is captured, in order, with host
//! times; lines written to the console reach the guest.

use hotkernel_tests::{boot_and_expect, expect_lines, mode, Check};

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
