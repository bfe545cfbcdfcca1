//! The hand-off region's ABI: the one layout both images of a swap must share.
//!
//! The region is a fixed virtual range with fixed frames (see the kernel's
//! `memory::layout::HANDOFF`). Its pages are laid out by the offsets below; the
//! descriptor and park structures are `#[repr(C)]` plain data (integers, atomics and
//! arrays — no pointers into either image's code), so two images built from different
//! sources agree on them as long as [`HANDOFF_ABI_VERSION`] matches. Record sets (the
//! exported state) are encoded byte strings, see [`crate::recordset`].
//!
//! | offset | size | content |
//! | --- | --- | --- |
//! | `0x00000` | 4 KiB | [`Descriptor`] |
//! | `0x01000` | 4 KiB | park stub code (read-only, executable) |
//! | `0x02000` | 8 KiB | [`ParkControl`] |
//! | `0x04000` | 4 KiB | GDT parked CPUs run on |
//! | `0x05000` | 4 KiB | IDT parked CPUs run on |
//! | `0x06000` | 4 KiB | guard IDT: every CPU's IDT during a swap's health window |
//! | `0x07000` | 36 KiB | [`Undo`]: the health window and how to revert the swap |
//! | `0x10000` | 64 KiB | the BSP's stack while the bootstrap runs |
//! | `0x20000` | 64 KiB | update history |
//! | `0x30000` | 64 KiB | frames the overlay unmapped from the image (freed by the new kernel) |
//! | `0x40000` | 3.875 MiB | record half 0 |
//! | `0x420000` | 3.875 MiB | record half 1 |
//!
//! **Record halves.** A swap's exported set and the converted set after it are written
//! into one half (the converted set right after the exported one, referring to its
//! entries where their layout did not change). The new kernel then runs on those
//! records where they stand — its task pools *are* the converted set's entries — so its
//! own next export goes into the other half. Which half a swap uses is in the
//! descriptor ([`Descriptor::record_half`]); offsets in a set are from the start of its
//! half.
//!
//! The layout of the descriptor and the park control block is guarded: every image
//! describes it ([`Abi`]'s field table, fingerprinted in its `.hk_schema`), and a
//! change under the same [`HANDOFF_ABI_VERSION`] is refused at staging and again by
//! the bootstrap ([`Descriptor::layout_fingerprint`]).

use core::sync::atomic::{AtomicU32, AtomicU64};

/// Version of this layout. Both images must have the same.
pub const HANDOFF_ABI_VERSION: u32 = 3;
/// Magic at the start of the descriptor.
pub const DESCRIPTOR_MAGIC: [u8; 8] = *b"HKHANDOF";

pub const DESCRIPTOR_OFFSET: u64 = 0x0000;
pub const PARK_STUB_OFFSET: u64 = 0x1000;
pub const PARK_CONTROL_OFFSET: u64 = 0x2000;
pub const PARK_GDT_OFFSET: u64 = 0x4000;
pub const PARK_IDT_OFFSET: u64 = 0x5000;
pub const GUARD_IDT_OFFSET: u64 = 0x6000;
pub const UNDO_OFFSET: u64 = 0x7000;
pub const UNDO_SIZE: u64 = 0x9000;
pub const BOOTSTRAP_STACK_OFFSET: u64 = 0x10000;
pub const BOOTSTRAP_STACK_SIZE: u64 = 0x10000;
pub const HISTORY_OFFSET: u64 = 0x20000;
pub const HISTORY_SIZE: u64 = 0x10000;
pub const RECLAIM_OFFSET: u64 = 0x30000;
pub const RECLAIM_SIZE: u64 = 0x10000;
/// Most frames the overlay can hand back (one per switched page).
pub const MAX_RECLAIM: usize = (RECLAIM_SIZE / 8) as usize;
/// The two record halves (see the module doc).
pub const RECORDS_OFFSET: u64 = 0x40000;
pub const RECORD_HALF_SIZE: u64 = 0x3e0000;
/// Total size the region must have.
pub const REGION_SIZE: u64 = 0x800000;

/// The region offset of record half `half` (0 or 1).
pub const fn record_half_offset(half: u32) -> u64 {
    RECORDS_OFFSET + (half as u64 & 1) * RECORD_HALF_SIZE
}

/// Most CPUs the park structures hold.
pub const MAX_CPUS: usize = 16;
/// Most segments a new image may have.
pub const MAX_SEGMENTS: usize = 8;
/// Return addresses kept from a parked CPU's call stack.
pub const STACK_DEPTH: usize = 16;

/// A descriptor-table register image (`lgdt`/`lidt` operand): limit then base.
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, Default, crate::Record)]
#[record(padded)]
pub struct TableRegister {
    pub limit: u16,
    pub base: u64,
}

/// One CPU's place in the park protocol.
#[repr(C)]
#[derive(crate::Record)]
#[record(shared)]
pub struct ParkSlot {
    /// CPU index (argument of the new kernel's AP entry).
    pub cpu_index: AtomicU64,
    /// Stack the CPU runs on when entering a new kernel.
    pub stack_top: AtomicU64,
    /// Last park generation this CPU has answered.
    pub parked_gen: AtomicU64,
    /// TSC when it acknowledged.
    pub ack_tsc: AtomicU64,
    /// TSC when it saw the release.
    pub release_tsc: AtomicU64,
    /// TSC at its first task step after a release into a new kernel.
    pub resumed_tsc: AtomicU64,
    /// Return addresses on its stack when it parked (frame-pointer walk), 0-terminated.
    pub return_addresses: [AtomicU64; STACK_DEPTH],
    /// GDTR and IDTR of the kernel it parked from (restored when it returns there).
    pub saved_gdtr: [u8; 16],
    pub saved_idtr: [u8; 16],
    /// The CPU's local APIC id (how a CPU that is not parking by request finds its slot).
    pub apic_id: AtomicU64,
    pub _reserved: [u64; 5],
}

/// The park protocol's shared state. Generations only grow: a CPU parks when
/// `request` is above its slot's `parked_gen`, and leaves when `release` reaches it.
///
/// A parked CPU halts between checks of `release` with interrupts enabled against the
/// stub's own IDT (every vector: end of interrupt, return), so it is woken by an IPI
/// or, at worst, by its next timer tick; it does not spin, because spinning vCPUs starve
/// the coordinator when there are more vCPUs than host cores.
#[repr(C)]
#[derive(crate::Record)]
#[record(shared)]
pub struct ParkControl {
    pub request: AtomicU64,
    pub release: AtomicU64,
    /// CPUs that acknowledged the current request.
    pub acks: AtomicU32,
    /// CPU index told (fault injection) to ignore the current request, or `u32::MAX`.
    pub ignore_cpu: AtomicU32,
    /// Where released CPUs go: 0 = back into the kernel they parked from; otherwise the
    /// new kernel's AP entry, called with the CPU index on the slot's stack.
    pub resume_entry: AtomicU64,
    /// GDTR and IDTR of the tables parked CPUs load (in this region).
    pub gdtr: TableRegister,
    pub _pad0: [u8; 6],
    pub idtr: TableRegister,
    pub _pad1: [u8; 6],
    /// Address of the local APIC's end-of-interrupt register (the stub's interrupt
    /// handler writes it).
    pub lapic_eoi: AtomicU64,
    pub _reserved: [u64; 7],
    pub slots: [ParkSlot; MAX_CPUS],
}

/// Phase timestamps of one swap, TSC values (0 = not reached).
#[repr(C)]
#[derive(Debug, Default, crate::Record)]
#[record(shared)]
pub struct SwapClock {
    pub park_ipi: AtomicU64,
    pub all_parked: AtomicU64,
    pub exported: AtomicU64,
    pub reconciled: AtomicU64,
    pub overlaid: AtomicU64,
    pub reinitialised: AtomicU64,
    pub all_released: AtomicU64,
    pub scheduling: AtomicU64,
}

/// A segment of the new image: where it goes relative to the base, and its rights.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, crate::Record)]
pub struct SegmentDesc {
    /// Offset from the image base (page-aligned).
    pub offset: u64,
    /// Bytes in memory.
    pub mem_size: u64,
    /// Bytes from the file (the rest is zero, `.bss`).
    pub file_size: u64,
    /// 4 = read, 2 = write, 1 = execute.
    pub flags: u64,
}

/// The image a swap replaces or installs.
#[repr(C)]
#[derive(Debug, Clone, Copy, crate::Record)]
pub struct ImageRef {
    pub version: [u16; 4],
    pub build_id: [u8; 32],
    pub label: [u8; 48],
    pub caps_required: u64,
    pub caps_provided: u64,
    /// Where the image runs (its base) and the bytes it spans.
    pub base: u64,
    pub span: u64,
    /// Meaningful bytes of `build_id` (20 for a SHA-1 build id).
    pub build_id_len: u64,
}

impl ImageRef {
    pub const EMPTY: ImageRef = ImageRef {
        version: [0; 4],
        build_id: [0; 32],
        label: [0; 48],
        caps_required: 0,
        caps_provided: 0,
        base: 0,
        span: 0,
        build_id_len: 0,
    };
}

/// Where a swap stands. Written by whoever makes progress.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapState {
    Idle = 0,
    /// The old kernel exported its records; the bootstrap has not run.
    Exported = 1,
    /// The bootstrap refused; the old kernel resumes.
    RolledBack = 2,
    /// Reconciliation succeeded; the overlay may have started (no return).
    Committed = 3,
    /// The new kernel is running and has not reported yet.
    Resumed = 4,
    /// The new kernel wrote its report.
    Reported = 5,
}

/// Faults a test can inject into a swap.
pub mod inject {
    /// The bootstrap fails its reconciliation deliberately.
    pub const RECONCILE_FAIL: u64 = 1 << 0;
    /// One AP ignores the park request.
    pub const AP_NO_ACK: u64 = 1 << 1;
    /// The old kernel fails right after exporting (before the bootstrap runs).
    pub const FAIL_AFTER_EXPORT: u64 = 1 << 2;
    /// The bootstrap fails converting the record kind in bits 32–47.
    pub const CONVERTER_FAIL: u64 = 1 << 3;
    /// The new kernel panics in its resume (after the overlay).
    pub const FAIL_IN_RESUME: u64 = 1 << 4;
    /// The new kernel's first task step panics.
    pub const FAIL_FIRST_ROUND: u64 = 1 << 5;
    /// Not a fault: the new kernel parks the other CPUs once right after it released
    /// them into itself, before it wakes them.
    pub const PARK_IN_RESUME: u64 = 1 << 6;
    /// Where [`CONVERTER_FAIL`] keeps its record kind.
    pub const CONVERTER_KIND_SHIFT: u32 = 32;
    /// Not a fault: make the overlay install every page (to measure against the
    /// default, which installs only pages that differ).
    pub const OVERLAY_FULL: u64 = 1 << 8;
    /// Not a fault: make the overlay copy bytes instead of remapping frames.
    pub const OVERLAY_COPY: u64 = 1 << 9;
    /// Not a fault: keep a copy of the exported set in the other record half (when no
    /// half is live), so that a self-test can check, after the swap, that every task
    /// continued from it — the new kernel runs on the exported entries themselves.
    pub const KEEP_EXPORT_COPY: u64 = 1 << 10;
    /// Not a swap: the pre-flight at staging. The bootstrap checks and reconciles, then
    /// returns [`PREFLIGHT_OK`] or a refusal without committing anything.
    pub const DRY_RUN: u64 = 1 << 16;
}

/// What a dry-run bootstrap returns when it would commit.
pub const PREFLIGHT_OK: u64 = 2;

/// Most conversion steps logged.
pub const MAX_CONVERSIONS: usize = 24;
/// Most warnings logged.
pub const MAX_WARNINGS: usize = 8;

/// How a record crossed a swap ([`ConversionLog::method`]).
pub mod method {
    /// Its layout did not change: referred to where it stood.
    pub const UNCHANGED: u16 = 0;
    /// By the new image's converter.
    pub const CONVERTER: u16 = 1;
    /// By field (`names` lists what was added with its default and what was dropped).
    pub const FIELDS: u16 = 2;
}

/// One logged record: `count` entries of `kind` went from `from` to `to` by `method`
/// (one entry per stage of a conversion).
#[repr(C)]
#[derive(Debug, Clone, Copy, crate::Record)]
pub struct ConversionLog {
    pub kind: u16,
    pub from: u16,
    pub to: u16,
    /// A [`method`] value.
    pub method: u16,
    pub count: u32,
    /// Fields added and dropped (by field only; all of them, `names` may list fewer).
    pub added: u16,
    pub dropped: u16,
    /// `+added −dropped` names, space-separated, NUL-padded (cut at a name boundary).
    pub names: [u8; 48],
}

impl ConversionLog {
    pub const EMPTY: ConversionLog = ConversionLog {
        kind: 0,
        from: 0,
        to: 0,
        method: 0,
        count: 0,
        added: 0,
        dropped: 0,
        names: [0; 48],
    };
}

/// Where a record set is in its half.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, crate::Record)]
pub struct SetPlace {
    /// Offset from the start of the half.
    pub at: u64,
    /// Bytes (0: none written).
    pub len: u64,
}

/// The update descriptor: page 0 of the region.
#[repr(C)]
#[derive(crate::Record)]
#[record(shared)]
pub struct Descriptor {
    pub magic: [u8; 8],
    pub abi_version: u32,
    /// A [`SwapState`] value.
    pub state: AtomicU32,
    /// The fingerprint of [`Abi`]'s field table in the image that wrote the
    /// descriptor: the bootstrap refuses a descriptor of another layout.
    pub layout_fingerprint: u64,
    /// Sequence number of the mailbox request that started this swap.
    pub request_seq: u64,
    /// [`inject`] bits.
    pub inject: u64,
    pub old_image: ImageRef,
    pub new_image: ImageRef,
    /// Addresses of the new image: where it runs its bootstrap (staging window), where its
    /// base-relocated copy waits for the overlay, and its entries (absolute).
    pub staging_base: u64,
    pub overlay_source: u64,
    pub bootstrap_entry: u64,
    pub resume_entry: u64,
    pub ap_entry: u64,
    pub segment_count: u64,
    pub segments: [SegmentDesc; MAX_SEGMENTS],
    /// The span currently mapped at the base (old image plus growth pages prepared).
    pub mapped_span: u64,
    /// The record half this swap's sets are in (0 or 1), and where they are in it.
    pub record_half: u32,
    pub _pad_half: u32,
    pub exported: SetPlace,
    pub converted: SetPlace,
    pub clock: SwapClock,
    pub cpus_parked: u32,
    pub tasks_before: u32,
    pub tasks_after: u32,
    pub conversion_count: u32,
    pub conversions: [ConversionLog; MAX_CONVERSIONS],
    pub warning_count: u32,
    pub _pad: u32,
    pub warnings: [[u8; 96]; MAX_WARNINGS],
    /// Why the bootstrap refused (UTF-8, NUL-padded), when state is RolledBack.
    pub failure: [u8; 160],
    /// Initialisation requirements the new kernel must meet at resume (bits defined by
    /// the new image; e.g. "create the tasks of a kind that did not exist").
    pub init_requirements: u64,
    /// The pages the overlay copies: runs of (first page, page count) from the base.
    /// Pages not listed hold the same bytes in the old and the new image already.
    pub copy_run_count: u32,
    /// How the overlay installs those pages ([`OverlayMethod`]).
    pub overlay_method: u32,
    pub copy_runs: [CopyRun; MAX_COPY_RUNS],
    /// Physical frames the overlay unmapped from the image (in the reclaim area).
    pub reclaim_count: u64,
}

/// How the overlay installs the pages that differ.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayMethod {
    /// Point the image's page-table entries at the frames the loader prepared (the old
    /// frames go to the reclaim list). No byte of the old frames is written.
    Remap = 0,
    /// Copy the prepared bytes over the old frames (the seed's literal method).
    Copy = 1,
}

/// Most runs of pages an overlay copies.
pub const MAX_COPY_RUNS: usize = 64;

/// A run of pages the overlay copies.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, crate::Record)]
pub struct CopyRun {
    pub first_page: u32,
    pub pages: u32,
}

/// Adds page `page` to a list of runs (pages must come in increasing order). When the
/// list is full, the new page extends the last run (copying a few identical pages more
/// is always correct).
pub fn add_page(runs: &mut [CopyRun; MAX_COPY_RUNS], count: &mut u32, page: u32) {
    let n = *count as usize;
    if n > 0 {
        let last = &mut runs[n - 1];
        if last.first_page + last.pages == page {
            last.pages += 1;
            return;
        }
        if n == MAX_COPY_RUNS {
            last.pages = page + 1 - last.first_page;
            return;
        }
    }
    runs[n] = CopyRun {
        first_page: page,
        pages: 1,
    };
    *count += 1;
}

/// Copies `text` into a NUL-padded byte field, truncated at a character boundary.
pub fn set_text(field: &mut [u8], text: &str) {
    field.fill(0);
    let mut n = text.len().min(field.len());
    while !text.is_char_boundary(n) {
        n -= 1;
    }
    field[..n].copy_from_slice(&text.as_bytes()[..n]);
}

/// The text of a NUL-padded byte field (up to the first invalid byte).
pub fn text(field: &[u8]) -> &str {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    match core::str::from_utf8(&field[..end]) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&field[..e.valid_up_to()]).unwrap_or(""),
    }
}

/// Most page-table entries a swap's undo log holds (one per page of the image at most).
pub const MAX_UNDO_PTES: usize = 2048;
/// Most pages of an image's writable segments the undo log restores.
pub const MAX_PRISTINE_PAGES: usize = 64;
/// Most sites a hotpatch's health window can take back ([`PatchWindow`]).
pub const MAX_WINDOW_SITES: usize = 48;

/// What stopped a new kernel inside its health window ([`Undo::cause`]).
pub mod cause {
    /// No failure (the window is open or was committed).
    pub const NONE: u32 = 0;
    /// A CPU took an exception (vector, RIP, error code, CR2 recorded).
    pub const EXCEPTION: u32 = 1;
    /// The new kernel panicked (its message is the descriptor's `failure`).
    pub const PANIC: u32 = 2;
    /// The health check's deadline passed (what was missing is in `failure`).
    pub const DEADLINE: u32 = 3;
}

/// One page-table entry the overlay changed: where it is (a virtual address through
/// the physical-memory map) and the value it had before.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, crate::Record)]
pub struct UndoPte {
    pub entry: u64,
    pub old: u64,
}

/// A page of the old image's writable segments as it was before that image first ran
/// (its statics' initial values): copied over the page on a revert.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, crate::Record)]
pub struct PristinePage {
    /// The page's virtual address in the image.
    pub page: u64,
    /// The copy's virtual address (through the physical-memory map).
    pub copy: u64,
}

/// A swap as a transaction: from the overlay until the new kernel has proved healthy
/// (every CPU scheduling again, every task kind stepped, within a deadline) the swap
/// can be undone. Written by the old kernel and the bootstrap before the overlay, read
/// by the revert code in the park stub (which lives in this region, in neither image),
/// which uses the fixed offsets below.
///
/// On a failure inside the window — an exception (the guard IDT's vectors 0–31), a
/// panic, the deadline — the first CPU to see it records the cause and sends the
/// bootstrap processor an NMI; every other CPU parks (guard vector 2); the bootstrap
/// processor restores the page-table entries in `ptes` (the old image is mapped again),
/// copies `pristine` over its writable pages (its statics start afresh), and enters
/// the old image's resume, which takes its own exported records again.
#[repr(C)]
#[derive(crate::Record)]
#[record(shared)]
pub struct Undo {
    /// 1 while the health window is open.
    pub armed: AtomicU32,
    /// 1 once a revert was triggered (the first trigger wins).
    pub reverting: AtomicU32,
    /// A [`cause`] value.
    pub cause: AtomicU32,
    /// The exception vector (cause `EXCEPTION`).
    pub vector: AtomicU32,
    /// Local APIC id of the CPU that failed.
    pub apic_id: AtomicU32,
    /// The bootstrap processor's APIC id, and how many CPUs there are.
    pub bsp_apic_id: u32,
    pub cpus: u32,
    pub _pad: u32,
    /// RIP, error code and CR2 of the exception.
    pub rip: AtomicU64,
    pub error_code: AtomicU64,
    pub cr2: AtomicU64,
    /// Virtual address of the local APIC's registers (ID at 0x20, ICR at 0x300/0x310).
    pub lapic_base: u64,
    /// The old image's resume and AP entries.
    pub resume_entry: u64,
    pub ap_entry: u64,
    /// TSC value at which the window's health check fails.
    pub deadline_tsc: u64,
    /// TSC ticks the reverting CPU waits for the others to park.
    pub park_wait_ticks: u64,
    pub pte_count: u32,
    pub pristine_count: u32,
    pub ptes: [UndoPte; MAX_UNDO_PTES],
    pub pristine: [PristinePage; MAX_PRISTINE_PAGES],
    /// The new image's own pristine pages, copied at staging: the new kernel keeps
    /// them for a revert *to it* from the swap after this one (freed if this swap is
    /// reverted).
    pub next_pristine_count: u32,
    pub _pad2: u32,
    pub next_pristine: [PristinePage; MAX_PRISTINE_PAGES],
    /// When the window is a hotpatch's rather than a swap's: what to take back besides
    /// the statics (read by the kernel only, never by the guard's assembly).
    pub patch: PatchWindow,
}

/// A site of the hotpatch inside its health window: where its jump is, and the bytes
/// that were there before it (restored on a revert).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, crate::Record)]
pub struct WindowSite {
    pub addr: u64,
    /// The first [`WindowSite::LEN`] bytes are meaningful.
    pub before: [u8; 8],
}

impl WindowSite {
    /// Bytes of `before` a jump overwrote.
    pub const LEN: usize = 5;
}

/// A hotpatch's health window ([`Undo::patch`]): the patch's jumps are written and its
/// code runs, the kernel is the same image. A revert (the guard, with no page-table
/// entry to restore) resets the statics and enters this image's own resume, which
/// writes `sites` back, frees the patch memory and answers request `request_seq`.
#[repr(C)]
#[derive(Debug, Clone, Copy, crate::Record)]
pub struct PatchWindow {
    /// 1 while the armed window (or the revert that follows it) is a hotpatch's.
    pub active: u32,
    pub site_count: u32,
    /// The PatchApply request the window answers.
    pub request_seq: u64,
    /// The patch: id, version, label.
    pub id: u64,
    pub version: u32,
    pub _pad: u32,
    pub label: [u8; 32],
    /// Its patch memory (start, bytes).
    pub memory: u64,
    pub memory_len: u64,
    /// The image's text hash before any patch (the statics that keep it are reset).
    pub text_hash: [u8; 32],
    /// What a package staged before the apply was given (the staging window and the
    /// overlay source, `staged_span` bytes each; the image mapped up to `mapped_span`):
    /// freed on a revert, which forgets the staging with the statics.
    pub staged_span: u64,
    pub mapped_span: u64,
    pub sites: [WindowSite; MAX_WINDOW_SITES],
}

impl PatchWindow {
    pub const EMPTY: PatchWindow = PatchWindow {
        active: 0,
        site_count: 0,
        request_seq: 0,
        id: 0,
        version: 0,
        _pad: 0,
        label: [0; 32],
        memory: 0,
        memory_len: 0,
        text_hash: [0; 32],
        staged_span: 0,
        mapped_span: 0,
        sites: [WindowSite {
            addr: 0,
            before: [0; 8],
        }; MAX_WINDOW_SITES],
    };
}

/// The shared structures of the hand-off ABI, as one field table for the guard (never
/// instantiated: the region places them at their own offsets).
#[repr(C)]
#[derive(crate::Record)]
#[record(shared)]
pub struct Abi {
    pub descriptor: Descriptor,
    pub park_control: ParkControl,
    pub undo: Undo,
}

/// The fingerprint of the hand-off ABI's layout ([`Abi`]).
pub const LAYOUT_FINGERPRINT: u64 = crate::table::fingerprint(crate::record::layout_of(
    &<Abi as crate::record::Field>::TYPE,
));

const _: () = {
    assert!(core::mem::size_of::<Descriptor>() <= 4096);
    assert!(core::mem::size_of::<ParkControl>() <= 8192);
    assert!(core::mem::size_of::<ParkSlot>() == 256);
    assert!(core::mem::size_of::<Undo>() as u64 <= UNDO_SIZE);
    assert!(UNDO_OFFSET + UNDO_SIZE <= BOOTSTRAP_STACK_OFFSET);
    assert!(record_half_offset(1) + RECORD_HALF_SIZE <= REGION_SIZE);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_round_trip_and_truncate_on_char_boundaries() {
        let mut f = [0u8; 8];
        set_text(&mut f, "abc");
        assert_eq!(text(&f), "abc");
        set_text(&mut f, "ééééé"); // 10 bytes: truncated to 4 whole characters
        assert_eq!(text(&f), "éééé");
    }

    #[test]
    fn page_runs_merge_and_saturate() {
        let mut runs = [CopyRun::default(); MAX_COPY_RUNS];
        let mut n = 0;
        for p in [0, 1, 2, 5, 6, 9] {
            add_page(&mut runs, &mut n, p);
        }
        assert_eq!(
            &runs[..n as usize],
            &[
                CopyRun {
                    first_page: 0,
                    pages: 3
                },
                CopyRun {
                    first_page: 5,
                    pages: 2
                },
                CopyRun {
                    first_page: 9,
                    pages: 1
                }
            ]
        );
        let mut runs = [CopyRun::default(); MAX_COPY_RUNS];
        let mut n = 0;
        for p in 0..200 {
            add_page(&mut runs, &mut n, 2 * p);
        }
        assert_eq!(n as usize, MAX_COPY_RUNS);
        // Every page asked for is covered.
        for p in 0..200u32 {
            assert!(runs[..n as usize]
                .iter()
                .any(|r| (r.first_page..r.first_page + r.pages).contains(&(2 * p))));
        }
    }

    #[test]
    fn offsets_of_the_park_control_are_stable() {
        // The park stub's assembly uses these offsets; a change here is an ABI change.
        assert_eq!(core::mem::offset_of!(ParkControl, request), 0);
        assert_eq!(core::mem::offset_of!(ParkControl, release), 8);
        assert_eq!(core::mem::offset_of!(ParkControl, acks), 16);
        assert_eq!(core::mem::offset_of!(ParkControl, resume_entry), 24);
        assert_eq!(core::mem::offset_of!(ParkControl, gdtr), 32);
        assert_eq!(core::mem::offset_of!(ParkControl, idtr), 48);
        assert_eq!(core::mem::offset_of!(ParkControl, lapic_eoi), 64);
        assert_eq!(core::mem::offset_of!(ParkControl, slots), 128);
        assert_eq!(core::mem::offset_of!(ParkSlot, stack_top), 8);
        assert_eq!(core::mem::offset_of!(ParkSlot, parked_gen), 16);
        assert_eq!(core::mem::offset_of!(ParkSlot, ack_tsc), 24);
        assert_eq!(core::mem::offset_of!(ParkSlot, release_tsc), 32);
        assert_eq!(core::mem::offset_of!(ParkSlot, saved_gdtr), 176);
        assert_eq!(core::mem::offset_of!(ParkSlot, saved_idtr), 192);
        assert_eq!(core::mem::offset_of!(ParkSlot, apic_id), 208);
    }

    #[test]
    fn offsets_of_the_undo_log_are_stable() {
        // The revert code in the park stub uses these offsets.
        assert_eq!(core::mem::offset_of!(Undo, armed), 0);
        assert_eq!(core::mem::offset_of!(Undo, reverting), 4);
        assert_eq!(core::mem::offset_of!(Undo, cause), 8);
        assert_eq!(core::mem::offset_of!(Undo, vector), 12);
        assert_eq!(core::mem::offset_of!(Undo, apic_id), 16);
        assert_eq!(core::mem::offset_of!(Undo, bsp_apic_id), 20);
        assert_eq!(core::mem::offset_of!(Undo, cpus), 24);
        assert_eq!(core::mem::offset_of!(Undo, rip), 32);
        assert_eq!(core::mem::offset_of!(Undo, error_code), 40);
        assert_eq!(core::mem::offset_of!(Undo, cr2), 48);
        assert_eq!(core::mem::offset_of!(Undo, lapic_base), 56);
        assert_eq!(core::mem::offset_of!(Undo, resume_entry), 64);
        assert_eq!(core::mem::offset_of!(Undo, ap_entry), 72);
        assert_eq!(core::mem::offset_of!(Undo, deadline_tsc), 80);
        assert_eq!(core::mem::offset_of!(Undo, park_wait_ticks), 88);
        assert_eq!(core::mem::offset_of!(Undo, pte_count), 96);
        assert_eq!(core::mem::offset_of!(Undo, pristine_count), 100);
        assert_eq!(core::mem::offset_of!(Undo, ptes), 104);
        assert_eq!(
            core::mem::offset_of!(Undo, pristine),
            104 + 16 * MAX_UNDO_PTES
        );
        // Appended after everything the guard reads.
        assert_eq!(
            core::mem::offset_of!(Undo, patch),
            104 + 16 * MAX_UNDO_PTES + 2 * 16 * MAX_PRISTINE_PAGES + 8
        );
    }
}
