#![no_std]
#![no_main]
use bootloader_api::{config::Mapping, entry_point, BootInfo, BootloaderConfig};
pub static CONFIG: BootloaderConfig = {
    let mut c = BootloaderConfig::new_default();
    c.mappings.kernel_base = Mapping::FixedAddress(0xffff_ffff_8000_0000);
    c.mappings.physical_memory = Some(Mapping::FixedAddress(0xffff_8000_0000_0000));
    c.mappings.dynamic_range_start = Some(0xffff_c000_0000_0000);
    c.mappings.dynamic_range_end = Some(0xffff_dfff_ffff_ffff);
    c
};
entry_point!(main, config = &CONFIG);
fn out(b: u8) { unsafe { core::arch::asm!("out dx, al", in("dx") 0x3f8u16, in("al") b) } }
fn main(b: &'static mut BootInfo) -> ! {
    for c in b"hello from kernel\n" { out(*c) }
    let addr = main as usize as u64;
    for i in (0..16).rev() { out(b"0123456789abcdef"[((addr >> (i*4)) & 15) as usize]) }
    out(b'\n');
    for r in b.memory_regions.iter() { let _ = r; }
    unsafe { core::arch::asm!("out dx, eax", in("dx") 0xf4u16, in("eax") 0x10u32) }
    loop {}
}
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! { loop {} }
