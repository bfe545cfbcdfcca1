//! The mailbox doorbell: the host writes a byte to the guest's COM2 after posting a
//! request, and the receive interrupt wakes the update service at once (it also polls,
//! so a lost ring only costs latency).

use spin::Mutex;
use uart_16550::SerialPort;

const COM2: u16 = 0x2f8;

static PORT: Mutex<Option<SerialPort>> = Mutex::new(None);

/// Initialises COM2 with its receive interrupt enabled.
pub fn init() {
    // SAFETY: 0x2f8 is COM2; nothing else in the kernel drives it.
    let mut port = unsafe { SerialPort::new(COM2) };
    port.init();
    *PORT.lock() = Some(port);
}

/// Reads and discards every waiting byte (each is one ring).
pub fn drain() {
    if let Some(port) = PORT.lock().as_mut() {
        while port.try_receive().is_ok() {}
    }
}
