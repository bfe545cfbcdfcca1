//! The serial console (COM1) and the `log` facade behind it.
//!
//! Every line has one format: `[seconds.micros][cpuN][LEVEL target] message`. The port
//! is held with interrupts disabled, so a log line never deadlocks against an interrupt
//! handler that logs on the same CPU. Input typed on COM1 arrives through
//! [`receive_byte`], called by the COM1 interrupt handler.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};
use spin::Mutex;
use uart_16550::SerialPort;
use x86_64::instructions::interrupts;

use crate::{arch, time};

const COM1: u16 = 0x3f8;

static PORT: Mutex<Option<SerialPort>> = Mutex::new(None);
static LOGGER: ConsoleLogger = ConsoleLogger;
static READY: AtomicBool = AtomicBool::new(false);

/// Initialises COM1 (115200 8N1, receive interrupt enabled) and installs the logger.
pub fn init(level: LevelFilter) {
    // SAFETY: 0x3f8 is COM1 on every PC-compatible machine QEMU emulates, and nothing
    // else in the kernel drives these ports.
    let mut port = unsafe { SerialPort::new(COM1) };
    port.init();
    *PORT.lock() = Some(port);
    READY.store(true, Ordering::Release);
    // A second call (after a swap the new kernel runs `init` again) keeps the logger.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Changes the log level (the boot option `log=` is read after the console is up).
pub fn set_level(level: LevelFilter) {
    log::set_max_level(level);
}

/// Writes formatted text to COM1 as one uninterruptible piece.
pub fn print(args: fmt::Arguments<'_>) {
    if !READY.load(Ordering::Acquire) {
        return;
    }
    interrupts::without_interrupts(|| {
        if let Some(port) = PORT.lock().as_mut() {
            let _ = port.write_fmt(args);
        }
    });
}

/// Writes to COM1 without the console lock (panics and fatal paths: the lock may be
/// held by the CPU that is failing). Output may interleave with another CPU's line.
pub fn emergency_print(args: fmt::Arguments<'_>) {
    // SAFETY: a second handle to COM1 only writes bytes; the worst outcome is text
    // interleaved with a line another CPU is printing.
    let mut port = unsafe { SerialPort::new(COM1) };
    let _ = port.write_fmt(args);
}

/// The CPU printing a panic report (its index + 1); 0 when none.
static REPORTING: AtomicUsize = AtomicUsize::new(0);
/// How long a panicking CPU waits for another CPU's report, in spins (about a second
/// under TCG), and for the console lock (a tenth of that: this CPU may hold it).
const REPORT_WAIT_SPINS: u32 = 20_000_000;
const LOCK_WAIT_SPINS: u32 = REPORT_WAIT_SPINS / 10;

/// Runs `report` (a panic's lines, written with [`emergency_print`]) alone on COM1:
/// after the report of any other CPU that panicked first, never through it, and with
/// the console lock held when it comes free in a moment, so no log line runs through
/// it either. Both waits are bounded — a CPU that died holding either must not silence
/// the next panic — and a panic inside a panic report on the same CPU prints at once.
pub fn panic_report(cpu: usize, report: impl FnOnce()) {
    let me = cpu + 1;
    let mut owner = false;
    for _ in 0..REPORT_WAIT_SPINS {
        match REPORTING.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                owner = true;
                break;
            }
            Err(other) if other == me => break,
            Err(_) => core::hint::spin_loop(),
        }
    }
    let lock = if owner {
        (0..LOCK_WAIT_SPINS).find_map(|_| {
            let lock = PORT.try_lock();
            if lock.is_none() {
                core::hint::spin_loop();
            }
            lock
        })
    } else {
        None
    };
    report();
    drop(lock);
    if owner {
        REPORTING.store(0, Ordering::Release);
    }
}

/// Reads one byte from COM1 if one is waiting (used by the COM1 interrupt handler).
pub fn receive_byte() -> Option<u8> {
    interrupts::without_interrupts(|| PORT.lock().as_mut().and_then(|p| p.try_receive().ok()))
}

/// `print!` to the serial console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => ($crate::console::print(format_args!($($arg)*)));
}

/// `println!` to the serial console.
#[macro_export]
macro_rules! println {
    () => ($crate::print!("\n"));
    ($($arg:tt)*) => ($crate::console::print(format_args!("{}\n", format_args!($($arg)*))));
}

struct ConsoleLogger;

impl Log for ConsoleLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let micros = time::since_boot().as_micros();
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        print(format_args!(
            "[{:>4}.{:06}][cpu{}][{} {}] {}\n",
            micros / 1_000_000,
            micros % 1_000_000,
            arch::cpu_index(),
            level,
            record.target(),
            record.args()
        ));
    }

    fn flush(&self) {}
}
