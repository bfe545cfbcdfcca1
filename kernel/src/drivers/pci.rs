//! PCI configuration space through the legacy I/O mechanism (ports 0xcf8/0xcfc), and a
//! scan of every bus reachable from bus 0 through PCI-to-PCI bridges.

use alloc::vec::Vec;

use x86_64::instructions::port::Port;

/// A PCI function's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciAddress {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl core::fmt::Display for PciAddress {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

impl PciAddress {
    fn config_address(&self, offset: u8) -> u32 {
        1 << 31
            | (self.bus as u32) << 16
            | (self.device as u32) << 11
            | (self.function as u32) << 8
            | (offset as u32 & 0xfc)
    }

    /// Reads the 32-bit configuration register at `offset`.
    pub fn read(&self, offset: u8) -> u32 {
        // SAFETY: 0xcf8/0xcfc are the PCI configuration mechanism #1 ports; a read of a
        // configuration register has no side effect on the devices we use.
        unsafe {
            Port::<u32>::new(0xcf8).write(self.config_address(offset));
            Port::<u32>::new(0xcfc).read()
        }
    }

    /// Writes the 32-bit configuration register at `offset`.
    pub fn write(&self, offset: u8, value: u32) {
        // SAFETY: as in `read`; callers write only registers whose effect they intend
        // (BAR sizing, command bits).
        unsafe {
            Port::<u32>::new(0xcf8).write(self.config_address(offset));
            Port::<u32>::new(0xcfc).write(value);
        }
    }

    pub fn vendor_device(&self) -> (u16, u16) {
        let v = self.read(0);
        (v as u16, (v >> 16) as u16)
    }
}

/// A function found by the scan.
#[derive(Debug, Clone, Copy)]
pub struct PciFunction {
    pub address: PciAddress,
    pub vendor: u16,
    pub device: u16,
    pub class: u8,
    pub subclass: u8,
}

/// Every function on every bus reachable from bus 0.
pub fn scan() -> Vec<PciFunction> {
    let mut found = Vec::new();
    scan_bus(0, &mut found);
    found
}

fn scan_bus(bus: u8, found: &mut Vec<PciFunction>) {
    for device in 0..32 {
        let first = PciAddress {
            bus,
            device,
            function: 0,
        };
        if first.vendor_device().0 == 0xffff {
            continue;
        }
        let multifunction = (first.read(0x0c) >> 16) & 0x80 != 0;
        for function in 0..if multifunction { 8 } else { 1 } {
            let address = PciAddress {
                bus,
                device,
                function,
            };
            let (vendor, device_id) = address.vendor_device();
            if vendor == 0xffff {
                continue;
            }
            let class = address.read(0x08);
            let f = PciFunction {
                address,
                vendor,
                device: device_id,
                class: (class >> 24) as u8,
                subclass: (class >> 16) as u8,
            };
            found.push(f);
            let header_type = (address.read(0x0c) >> 16) & 0x7f;
            if f.class == 0x06 && f.subclass == 0x04 && header_type == 1 {
                let secondary = (address.read(0x18) >> 8) as u8;
                if secondary > bus {
                    scan_bus(secondary, found);
                }
            }
        }
    }
}

/// A memory BAR's physical base and size (64-bit BARs take two registers).
pub fn memory_bar(address: PciAddress, index: u8) -> Option<(u64, u64)> {
    let offset = 0x10 + 4 * index;
    let low = address.read(offset);
    if low & 1 != 0 {
        return None; // I/O BAR
    }
    let is64 = (low >> 1) & 0b11 == 0b10;
    let high = if is64 { address.read(offset + 4) } else { 0 };
    // Size it with memory decoding off, then restore.
    let command = address.read(0x04);
    address.write(0x04, command & !0b10);
    address.write(offset, u32::MAX);
    let size_low = address.read(offset);
    address.write(offset, low);
    let size_high = if is64 {
        address.write(offset + 4, u32::MAX);
        let s = address.read(offset + 4);
        address.write(offset + 4, high);
        s
    } else {
        u32::MAX
    };
    address.write(0x04, command | 0b10);
    let mask = ((size_high as u64) << 32) | (size_low as u64 & !0xf);
    let size = (!mask).wrapping_add(1);
    let base = ((high as u64) << 32) | (low as u64 & !0xf);
    (base != 0 && size != 0).then_some((base, size))
}
