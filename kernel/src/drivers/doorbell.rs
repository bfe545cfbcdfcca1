//! The mailbox doorbell: the host writes a byte to the guest's COM2 after posting a
//! request, and the receive interrupt wakes the update service at once (it also polls,
//! so a lost ring only costs latency). [`rung`] is what the scheduler checks to run the
//! service ahead of its turn; the service clears it with [`answer`].

use core::sync::atomic::{AtomicBool, Ordering};

use spin::Mutex;
use uart_16550::SerialPort;

const COM2: u16 = 0x2f8;

static PORT: Mutex<Option<SerialPort>> = Mutex::new(None);
static RUNG: AtomicBool = AtomicBool::new(false);

/// Initialises COM2 with its receive interrupt enabled.
pub fn init() {
    // SAFETY: 0x2f8 is COM2; nothing else in the kernel drives it.
    let mut port = unsafe { SerialPort::new(COM2) };
    port.init();
    *PORT.lock() = Some(port);
}

/// The host rang (COM2 interrupt): reads and discards every waiting byte (each is one
/// ring) and marks the doorbell rung.
pub fn ring() {
    if let Some(port) = PORT.lock().as_mut() {
        while port.try_receive().is_ok() {}
    }
    RUNG.store(true, Ordering::Release);
}

/// Whether the doorbell rang since the service last answered it.
pub fn rung() -> bool {
    RUNG.load(Ordering::Acquire)
}

/// The service is running: a ring from here on is a new one.
pub fn answer() {
    RUNG.store(false, Ordering::Release);
}
