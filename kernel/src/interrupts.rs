//! Routing of device interrupts through the I/O APIC (COM1 console input, COM2
//! doorbell), both to the bootstrap processor, which runs the update service.
#![deny(unsafe_code)]

use crate::arch::idt::vector;
use crate::cpu::{self, CpuId};
use crate::machine;

/// Masks every I/O APIC line, then routes COM1 and COM2 to the BSP.
pub fn route_isa_lines() {
    let Some(io) = machine::ioapic() else {
        log::warn!("no I/O APIC: console input and the doorbell are polled only");
        return;
    };
    let m = machine::record();
    let bsp = cpu::get(CpuId::BSP).expect("BSP registered").apic_id;
    io.mask_all();
    for (line, vec) in [(m.com1, vector::COM1), (m.com2, vector::COM2)] {
        if io.serves(line.gsi) {
            io.route(line.gsi, vec, bsp, machine::line_mode(line));
        }
    }
}
