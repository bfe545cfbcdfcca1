//! The I/O APIC: routes ISA interrupts (COM1, COM2) to vectors on one CPU.
//!
//! The register window is mapped uncached in the device window; [`IoApic::new`] takes
//! that mapping and the first global system interrupt (GSI) the chip serves.

/// Polarity and trigger mode of an interrupt line (from the MADT's overrides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineMode {
    pub active_low: bool,
    pub level_triggered: bool,
}

impl LineMode {
    /// ISA default: active high, edge triggered.
    pub const ISA: LineMode = LineMode {
        active_low: false,
        level_triggered: false,
    };
}

/// One I/O APIC.
#[derive(Debug, Clone, Copy)]
pub struct IoApic {
    base: u64,
    gsi_base: u32,
}

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;
const REG_VERSION: u32 = 0x01;
const REG_REDIRECTION: u32 = 0x10;
const MASKED: u32 = 1 << 16;

impl IoApic {
    /// # Safety
    /// - `base` must be an uncached mapping of an I/O APIC's register page;
    /// - `gsi_base` must be the first GSI that chip serves (from the MADT).
    pub unsafe fn new(base: u64, gsi_base: u32) -> Self {
        Self { base, gsi_base }
    }

    fn read(&self, register: u32) -> u32 {
        // SAFETY: `base` maps the chip's registers (constructor contract); selecting a
        // register and reading the window is the documented access sequence.
        unsafe {
            core::ptr::write_volatile((self.base + IOREGSEL) as *mut u32, register);
            core::ptr::read_volatile((self.base + IOWIN) as *const u32)
        }
    }

    fn write(&self, register: u32, value: u32) {
        // SAFETY: as in `read`.
        unsafe {
            core::ptr::write_volatile((self.base + IOREGSEL) as *mut u32, register);
            core::ptr::write_volatile((self.base + IOWIN) as *mut u32, value);
        }
    }

    /// Number of redirection entries.
    pub fn lines(&self) -> u32 {
        ((self.read(REG_VERSION) >> 16) & 0xff) + 1
    }

    /// Whether `gsi` is served by this chip.
    pub fn serves(&self, gsi: u32) -> bool {
        gsi >= self.gsi_base && gsi < self.gsi_base + self.lines()
    }

    /// Masks every line.
    pub fn mask_all(&self) {
        for line in 0..self.lines() {
            self.write(REG_REDIRECTION + 2 * line, MASKED);
            self.write(REG_REDIRECTION + 2 * line + 1, 0);
        }
    }

    /// Routes `gsi` to `vector` on the CPU with APIC id `destination`, unmasked.
    pub fn route(&self, gsi: u32, vector: u8, destination: u32, mode: LineMode) {
        let line = gsi - self.gsi_base;
        let mut low = vector as u32;
        if mode.active_low {
            low |= 1 << 13;
        }
        if mode.level_triggered {
            low |= 1 << 15;
        }
        self.write(REG_REDIRECTION + 2 * line + 1, destination << 24);
        self.write(REG_REDIRECTION + 2 * line, low);
    }
}
