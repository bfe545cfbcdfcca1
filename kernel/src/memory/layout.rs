//! The kernel's virtual address map: every fixed region, in one place.
//!
//! Both images of a swap must agree on these addresses (the hand-off region, the
//! staging buffer, the stacks and the heap are adopted, not rebuilt), so they are part
//! of the hand-off ABI: the machine record carries them and the new kernel checks them
//! against its own constants. See `docs/ARCHITECTURE.md`, "Virtual address map".
#![deny(unsafe_code)]

use updater::describe::{RegionDecl, RegionRule};

/// A fixed virtual region: start and length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub len: u64,
}

impl Region {
    pub const fn new(start: u64, len: u64) -> Self {
        Self { start, len }
    }
    pub const fn end(&self) -> u64 {
        self.start + self.len
    }
    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr < self.start + self.len
    }
}

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;

/// Where the bootloader maps all of physical memory.
pub const PHYS_MAP: u64 = 0xffff_8000_0000_0000;
/// The kernel heap; the new kernel rebuilds its allocator over the same pages.
pub const HEAP: Region = Region::new(0xffff_8800_0000_0000, 16 * MIB);
/// Stacks: the bootstrap processor's (placed here by the bootloader) and then one
/// slot per application processor, each with an unmapped guard page below it.
pub const STACKS: u64 = 0xffff_9000_0000_0000;
/// Size of the BSP stack the bootloader creates (it adds the guard page itself).
pub const BSP_STACK_SIZE: u64 = 256 * KIB;
/// Size of each AP stack (the guard page comes on top).
pub const AP_STACK_SIZE: u64 = 64 * KIB;
/// Distance between two stack slots: room for the stack and its guard page.
pub const STACK_SLOT: u64 = MIB;
/// Device window: MMIO pages (local APIC, I/O APIC) and the mailbox BAR.
pub const DEVICES: Region = Region::new(0xffff_9800_0000_0000, GIB);
/// The staging buffer: raw package bytes copied from the mailbox.
pub const STAGING_BUFFER: Region = Region::new(0xffff_a000_0000_0000, 16 * MIB);
/// The hand-off region: the one place both images of a swap read and write.
pub const HANDOFF: Region = Region::new(0xffff_a800_0000_0000, 8 * MIB);
/// Where the bootloader's own dynamic mappings (boot info, framebuffer) may go.
pub const BOOTLOADER_DYNAMIC: Region = Region::new(0xffff_c000_0000_0000, 0x2000_0000_0000);
/// The kernel image base and its growth window.
pub const KERNEL_IMAGE: Region = Region::new(0xffff_ffff_8000_0000, 256 * MIB);
/// The staging window: a new image laid out and relocated to run here.
pub const STAGING_WINDOW: Region = Region::new(0xffff_ffff_9000_0000, 256 * MIB);
/// The overlay source: the new image relocated for [`KERNEL_IMAGE`], copied by the overlay.
pub const OVERLAY_SOURCE: Region = Region::new(0xffff_ffff_a000_0000, 256 * MIB);
/// Hotpatch code, within reach of a `jmp rel32` from anywhere in the image.
pub const PATCH_AREA: Region = Region::new(0xffff_ffff_c000_0000, 64 * MIB);

/// Most CPUs the stack slots are laid out for.
pub const STACK_SLOTS: u64 = 16;

/// The regions a kernel inherits from the one it replaces, as this image declares them
/// in its description (`schema.rs`). At staging the running kernel compares them with
/// the candidate's (`updater::plan::regions`): the heap may change size (a larger one
/// is mapped before anything stops, the tail of a smaller one is freed by the new
/// kernel); every other region must stay where it is, at its size, because the swap
/// itself runs in it or the new kernel adopts it as it stands.
pub const INHERITED: [RegionDecl; 9] = [
    RegionDecl {
        name: "heap",
        start: HEAP.start,
        len: HEAP.len,
        rule: RegionRule::Resizable,
    },
    fixed("stacks", Region::new(STACKS, STACK_SLOTS * STACK_SLOT)),
    fixed("devices", DEVICES),
    fixed("staging-buffer", STAGING_BUFFER),
    fixed("hand-off", HANDOFF),
    fixed("kernel-image", KERNEL_IMAGE),
    fixed("staging-window", STAGING_WINDOW),
    fixed("overlay-source", OVERLAY_SOURCE),
    fixed("patch-area", PATCH_AREA),
];

const fn fixed(name: &'static str, r: Region) -> RegionDecl {
    RegionDecl {
        name,
        start: r.start,
        len: r.len,
        rule: RegionRule::Fixed,
    }
}

/// Physical page where the AP real-mode trampoline runs (SIPI vector 0x08).
pub const TRAMPOLINE_PHYS: u64 = 0x8000;

/// The stack slot of CPU `index` (0 is the BSP, placed by the bootloader).
pub const fn stack_slot(index: usize) -> Region {
    Region::new(STACKS + index as u64 * STACK_SLOT, STACK_SLOT)
}

/// Within a stack slot: the double-fault (IST) stack starts here, after its own guard
/// page at `IST_OFFSET - 4 KiB`.
pub const IST_OFFSET: u64 = 512 * KIB;
/// Size of each CPU's double-fault stack.
pub const IST_SIZE: u64 = 16 * KIB;

/// Top of CPU `index`'s kernel stack (16-byte aligned).
pub const fn stack_top(index: usize) -> u64 {
    let size = if index == 0 {
        BSP_STACK_SIZE
    } else {
        AP_STACK_SIZE
    };
    stack_slot(index).start + 4 * KIB + size
}

/// Top of CPU `index`'s double-fault stack.
pub const fn ist_top(index: usize) -> u64 {
    stack_slot(index).start + IST_OFFSET + IST_SIZE
}
