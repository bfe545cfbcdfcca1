//! QEMU's firmware configuration device (`fw_cfg`), used to read boot options.
//!
//! The runner passes `-fw_cfg name=opt/hotkernel/cmdline,string=...`; the kernel reads
//! the file directory (selector 0x19), finds the named file and reads its bytes through
//! the legacy I/O ports (selector 0x510, data 0x511).

use x86_64::instructions::port::Port;

const SELECTOR: u16 = 0x510;
const DATA: u16 = 0x511;
const SIGNATURE: u16 = 0x0000;
const FILE_DIR: u16 = 0x0019;

fn select(key: u16) {
    // SAFETY: port 0x510 is fw_cfg's selector on every QEMU PC machine; selecting an
    // item only changes what the data port returns.
    unsafe { Port::<u16>::new(SELECTOR).write(key) }
}

fn read_bytes(buf: &mut [u8]) {
    let mut data: Port<u8> = Port::new(DATA);
    for b in buf {
        // SAFETY: reading fw_cfg's data port returns the next byte of the selected item.
        *b = unsafe { data.read() };
    }
}

fn present() -> bool {
    select(SIGNATURE);
    let mut sig = [0u8; 4];
    read_bytes(&mut sig);
    &sig == b"QEMU"
}

/// Reads the fw_cfg file `name` into `buf`; returns the number of bytes read, or `None`
/// when there is no fw_cfg device or no such file.
pub fn read_file(name: &str, buf: &mut [u8]) -> Option<usize> {
    if !present() {
        return None;
    }
    select(FILE_DIR);
    let mut count = [0u8; 4];
    read_bytes(&mut count);
    let count = u32::from_be_bytes(count);
    for _ in 0..count {
        // struct FWCfgFile { be32 size; be16 select; u16 reserved; char name[56]; }
        let mut entry = [0u8; 64];
        read_bytes(&mut entry);
        let size = u32::from_be_bytes([entry[0], entry[1], entry[2], entry[3]]) as usize;
        let key = u16::from_be_bytes([entry[4], entry[5]]);
        let raw_name = &entry[8..];
        let len = raw_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(raw_name.len());
        if &raw_name[..len] == name.as_bytes() {
            select(key);
            let n = size.min(buf.len());
            read_bytes(&mut buf[..n]);
            return Some(n);
        }
    }
    None
}
