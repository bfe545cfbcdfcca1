//! The legacy 8259 PICs: remapped away from the exception vectors and masked, because
//! interrupts are routed through the local and I/O APICs.

use x86_64::instructions::port::Port;

use super::idt::vector;

/// Remaps both PICs to `vector::PIC_BASE..+16` and masks every line.
pub fn disable() {
    // SAFETY: ports 0x20/0x21/0xa0/0xa1 are the PICs; the ICW sequence below is the
    // documented initialisation, and masking every line leaves them inert.
    unsafe {
        let mut cmd1: Port<u8> = Port::new(0x20);
        let mut data1: Port<u8> = Port::new(0x21);
        let mut cmd2: Port<u8> = Port::new(0xa0);
        let mut data2: Port<u8> = Port::new(0xa1);
        cmd1.write(0x11); // ICW1: initialise, expect ICW4
        cmd2.write(0x11);
        data1.write(vector::PIC_BASE); // ICW2: vector offsets
        data2.write(vector::PIC_BASE + 8);
        data1.write(4); // ICW3: slave on IRQ 2
        data2.write(2);
        data1.write(0x01); // ICW4: 8086 mode
        data2.write(0x01);
        data1.write(0xff); // mask everything
        data2.write(0xff);
    }
}
