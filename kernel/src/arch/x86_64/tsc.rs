//! The time stamp counter, calibrated once against the PIT.
//!
//! Under QEMU (TCG and KVM alike) the TSC runs at a constant rate, the same on every
//! CPU, so one frequency serves all of them and timestamps taken on different CPUs can
//! be compared (the swap's downtime is measured that way).

use x86_64::instructions::port::Port;

/// Reads the TSC. `lfence` keeps it from being taken before earlier loads complete.
#[inline]
pub fn read() -> u64 {
    // SAFETY: `lfence` and `rdtsc` have no side effects besides reading the counter.
    unsafe {
        core::arch::x86_64::_mm_lfence();
        core::arch::x86_64::_rdtsc()
    }
}

/// PIT input clock in Hz.
const PIT_HZ: u64 = 1_193_182;

/// Measures the TSC frequency in Hz over `millis` milliseconds of PIT channel 2.
///
/// Interrupts should be disabled: the measurement busy-waits on the PIT output.
pub fn calibrate(millis: u64) -> u64 {
    let count = PIT_HZ * millis / 1000;
    assert!(
        count > 0 && count <= 0xffff,
        "PIT calibration period out of range"
    );
    // SAFETY: ports 0x42, 0x43 and 0x61 are PIT channel 2 and its gate/speaker
    // control; the speaker stays off (bit 1 clear) and nothing else uses channel 2.
    unsafe {
        let mut gate: Port<u8> = Port::new(0x61);
        let mut command: Port<u8> = Port::new(0x43);
        let mut channel2: Port<u8> = Port::new(0x42);
        let g = gate.read();
        gate.write((g & !0x02) | 0x01); // gate high, speaker off
        command.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        channel2.write((count & 0xff) as u8);
        channel2.write((count >> 8) as u8);
        // Restart the count: mode 0 starts counting when the gate rises.
        let g = gate.read();
        gate.write(g & !0x01);
        gate.write(g | 0x01);
        let start = read();
        while gate.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        let end = read();
        (end - start) * 1000 / millis
    }
}
