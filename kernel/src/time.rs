//! Kernel time: TSC ticks since boot, converted with the calibrated TSC frequency.
//!
//! The frequency and the boot timestamp are set once at first boot ([`init`]) and
//! carried across swaps in the machine record, so "seconds since boot" keeps counting
//! through any number of kernel replacements.
#![deny(unsafe_code)]

use core::ops::Add;
use core::sync::atomic::{AtomicU64, Ordering};

pub use core::time::Duration;

use crate::arch::tsc;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static BOOT_TSC: AtomicU64 = AtomicU64::new(0);

/// A point in time, in TSC ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(u64);

impl Instant {
    /// The raw TSC value.
    pub fn ticks(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(ticks_to_nanos(self.0.saturating_sub(earlier.0)))
    }

    /// Time since this instant.
    pub fn elapsed(self) -> Duration {
        now().saturating_duration_since(self)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_to_ticks(d)))
    }
}

/// Sets the TSC frequency and the boot timestamp.
pub fn init(tsc_hz: u64, boot_tsc: u64) {
    TSC_HZ.store(tsc_hz, Ordering::Release);
    BOOT_TSC.store(boot_tsc, Ordering::Release);
}

/// The calibrated TSC frequency in Hz (0 before [`init`]).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// The TSC value at first boot.
pub fn boot_tsc() -> u64 {
    BOOT_TSC.load(Ordering::Relaxed)
}

/// Now.
pub fn now() -> Instant {
    Instant(tsc::read())
}

/// TSC ticks to nanoseconds (0 before calibration).
pub fn ticks_to_nanos(ticks: u64) -> u64 {
    let hz = tsc_hz();
    if hz == 0 {
        return 0;
    }
    ((ticks as u128 * 1_000_000_000) / hz as u128) as u64
}

/// A duration in TSC ticks (assumes 1 GHz before calibration).
pub fn duration_to_ticks(d: Duration) -> u64 {
    let hz = match tsc_hz() {
        0 => 1_000_000_000,
        hz => hz,
    };
    ((d.as_nanos() * hz as u128) / 1_000_000_000) as u64
}

/// Time since first boot.
pub fn since_boot() -> Duration {
    let boot = BOOT_TSC.load(Ordering::Relaxed);
    Instant(tsc::read()).saturating_duration_since(Instant(boot))
}

/// Busy-waits for `d`.
pub fn spin_for(d: Duration) {
    let deadline = now() + d;
    while now() < deadline {
        core::hint::spin_loop();
    }
}
