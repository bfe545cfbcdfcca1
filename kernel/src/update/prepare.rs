//! Prepare: lay a staged image out where it will run, before anything stops.
//!
//! Two copies are made from the package's segments, each relocated for its base:
//! - in the staging window, executable, so the new image's bootstrap can run there;
//! - in the overlay source, as plain data relocated for the kernel base, so the overlay
//!   is a single copy with no relocation work inside the stopped section.
//!
//! If the new image is larger than what is mapped at the kernel base, the extra pages
//! are mapped now (the growth window). Frames of an earlier load are freed first, and the
//! new kernel frees this load's after a swap, so repeated swaps do not leak memory.

use spin::Mutex;
use updater::handoff::{
    add_page, CopyRun, ImageRef, PristinePage, SegmentDesc, MAX_COPY_RUNS, MAX_PRISTINE_PAGES,
    MAX_SEGMENTS,
};
use updater::relocate::{relocate, RelocError};
use x86_64::structures::paging::PageTableFlags;

use crate::machine;
use crate::memory::layout::{KERNEL_IMAGE, OVERLAY_SOURCE, STAGING_WINDOW};
use crate::memory::{self, paging::MapError, DATA};

/// Segment flag bits: read 4, write 2, execute 1.
pub const W: u32 = 2;
pub const X: u32 = 1;

/// One segment of the image to load.
#[derive(Debug, Clone, Copy)]
pub struct SegmentSource<'a> {
    /// Link-time address (relative to the image's link base).
    pub vaddr: u64,
    pub data: &'a [u8],
    pub mem_size: u64,
    pub flags: u32,
}

/// An image ready to be laid out (from a validated package).
pub struct ImageSource<'a, I: Iterator<Item = (u64, i64)> + Clone> {
    pub identity: ImageRef,
    pub link_base: u64,
    pub span: u64,
    pub segments: &'a [SegmentSource<'a>],
    pub relocations: I,
    /// Entry offsets from the link base.
    pub bootstrap: u64,
    pub resume: u64,
    pub ap_resume: u64,
}

/// A laid-out image, ready for a swap.
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    pub identity: ImageRef,
    pub span: u64,
    pub segments: [SegmentDesc; MAX_SEGMENTS],
    pub segment_count: usize,
    pub bootstrap_entry: u64,
    pub resume_entry: u64,
    pub ap_entry: u64,
    /// Pages of the new image that differ from what the base holds now.
    pub copy_runs: [CopyRun; MAX_COPY_RUNS],
    pub copy_run_count: u32,
    /// How many pages that is.
    pub pages_to_copy: u64,
    /// Its writable pages as laid out, before it runs: copies in frames of their own,
    /// which the new kernel keeps for a revert to it (0 of them when they do not fit the
    /// undo log).
    pub pristine: [PristinePage; MAX_PRISTINE_PAGES],
    pub pristine_count: u32,
}

/// Why an image could not be laid out.
#[derive(Debug)]
pub enum PrepareError {
    TooLarge { span: u64, window: u64 },
    TooManySegments(usize),
    Map(MapError),
    Relocation(RelocError),
}

impl From<MapError> for PrepareError {
    fn from(e: MapError) -> Self {
        PrepareError::Map(e)
    }
}

impl core::fmt::Display for PrepareError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PrepareError::TooLarge { span, window } => {
                write!(
                    f,
                    "image spans {span} bytes; the growth window holds {window}"
                )
            }
            PrepareError::TooManySegments(n) => write!(
                f,
                "image has {n} segments; at most {MAX_SEGMENTS} are supported"
            ),
            PrepareError::Map(e) => write!(f, "cannot map the image: {e}"),
            PrepareError::Relocation(e) => write!(f, "{e}"),
        }
    }
}

/// The current preparation: its span (in the staging window and the overlay source) and
/// the frames of its pristine pages.
static PREPARED: Mutex<Option<(u64, alloc::vec::Vec<u64>)>> = Mutex::new(None);

/// The page flags of the page at `offset` under `segments`.
fn page_flags(segments: &[SegmentDesc], offset: u64) -> PageTableFlags {
    let mut flags = PageTableFlags::PRESENT | PageTableFlags::NO_EXECUTE;
    for s in segments
        .iter()
        .filter(|s| offset + 4096 > (s.offset & !0xfff) && offset < s.offset + s.mem_size)
    {
        if s.flags & W as u64 != 0 {
            flags |= PageTableFlags::WRITABLE;
        }
        if s.flags & X as u64 != 0 {
            flags.remove(PageTableFlags::NO_EXECUTE);
        }
    }
    flags
}

/// Unmaps the staging window (`span` bytes) and frees its frames.
fn release_staging_window(span: u64) {
    memory::with_tables(|t| {
        let _ = t.unmap(STAGING_WINDOW.start, span, true);
    });
}

/// Frees the staging window and overlay source of the current load, if any.
pub fn release_staging() {
    if let Some((span, pristine)) = PREPARED.lock().take() {
        release_staging_window(span);
        memory::with_tables(|t| {
            let _ = t.unmap(OVERLAY_SOURCE.start, span, true);
        });
        for phys in pristine {
            memory::free_frame(phys);
        }
    }
}

/// After a swap, the new kernel frees what the old one loaded and what the overlay
/// took out of the image: the staging window; the overlay source, except the pages the
/// overlay remapped into the image (they are the image now); the frames the overlay
/// unmapped from the image (`reclaimed`), when they belong to the frame allocator (the
/// first image's frames came from the bootloader and stay reserved); and the tail of the
/// image range when the new image is smaller than what was mapped.
/// Whether a physical frame belongs to the frame allocator (the first image's frames
/// came from the bootloader and stay reserved). Read before any lock is held:
/// `machine::record` takes the frame lock.
pub fn usable_frame() -> impl Fn(u64) -> bool {
    let m = machine::record();
    let regions: alloc::vec::Vec<_> = m.memory_regions().to_vec();
    move |phys: u64| {
        regions
            .iter()
            .any(|r| r.kind == 0 && phys >= r.start && phys < r.end)
    }
}

pub fn release_after_swap(span: u64, remapped: &[CopyRun], reclaimed: &[u64], mapped_span: u64) {
    let usable = usable_frame();
    let in_runs = |page: u64| {
        remapped
            .iter()
            .any(|r| page >= r.first_page as u64 && page < (r.first_page + r.pages) as u64)
    };
    let mut freed = 0u64;
    release_staging_window(span);
    memory::with_tables(|t| {
        for page in 0..span / 4096 {
            let _ = t.unmap(OVERLAY_SOURCE.start + page * 4096, 4096, !in_runs(page));
        }
        if mapped_span > span {
            for at in (span..mapped_span).step_by(4096) {
                if let Some((phys, _)) = t.translate(KERNEL_IMAGE.start + at) {
                    let _ = t.unmap(KERNEL_IMAGE.start + at, 4096, usable(phys));
                }
            }
        }
    });
    if mapped_span > span {
        machine::update(|m| m.image.len = span);
    }
    let mut frames = memory::FRAMES.lock();
    if let Some(f) = frames.as_mut() {
        for &phys in reclaimed {
            if usable(phys) {
                f.deallocate(x86_64::structures::paging::PhysFrame::containing_address(
                    x86_64::PhysAddr::new(phys),
                ));
                freed += 1;
            }
        }
    }
    log::debug!("swap clean-up: {freed} old image frames freed");
}

/// A window (the staging window or the overlay source) this module mapped for the
/// image it lays out.
///
/// Invariant: `start..start + span` is mapped writable and belongs to the current
/// preparation only (the `PREPARED` lock serialises them); one `Window` per range.
struct Window {
    start: u64,
    span: u64,
}

impl Window {
    /// # Safety
    /// - `start..start + span` must be mapped writable, owned by the caller, and have
    ///   no other view while the window lives.
    unsafe fn new(start: u64, span: u64) -> Self {
        Window { start, span }
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the type's invariant.
        unsafe { core::slice::from_raw_parts_mut(self.start as *mut u8, self.span as usize) }
    }

    /// Copies the segments' file bytes in (the rest stays as mapped: zero).
    fn copy_segments(&mut self, link_base: u64, segments: &[SegmentSource<'_>]) -> &mut [u8] {
        let image = self.bytes();
        for s in segments {
            let at = (s.vaddr - link_base) as usize;
            image[at..at + s.data.len()].copy_from_slice(s.data);
        }
        image
    }
}

/// Puts the staging copy's writable segments back as `load` left them (their file
/// bytes, zeroes, relocations for the staging base), after a dry run may have changed
/// them.
pub fn restore_writable<I: Iterator<Item = (u64, i64)> + Clone>(src: &ImageSource<'_, I>) {
    // SAFETY: the staging window holds this preparation (`src.span` bytes, mapped by
    // `prepare`); nothing runs from it now (the dry run is over).
    let mut window = unsafe { Window::new(STAGING_WINDOW.start, src.span) };
    let image = window.bytes();
    let writable: alloc::vec::Vec<(u64, u64)> = src
        .segments
        .iter()
        .filter(|s| s.flags & W != 0)
        .map(|s| {
            (
                s.vaddr - src.link_base,
                s.vaddr - src.link_base + s.mem_size,
            )
        })
        .collect();
    for s in src.segments.iter().filter(|s| s.flags & W != 0) {
        let at = (s.vaddr - src.link_base) as usize;
        image[at..at + s.data.len()].copy_from_slice(s.data);
        image[at + s.data.len()..at + s.mem_size as usize].fill(0);
    }
    let in_writable = |a: &(u64, i64)| {
        let off = a.0 - src.link_base;
        writable.iter().any(|&(lo, hi)| off >= lo && off + 8 <= hi)
    };
    let _ = relocate(
        image,
        src.link_base,
        STAGING_WINDOW.start - src.link_base,
        src.relocations.clone().filter(in_writable),
    );
}

/// Maps fresh frames at `at` for `src`, copies its segments in and relocates them for
/// an image that will run at `base`.
fn lay_out_at<I: Iterator<Item = (u64, i64)> + Clone>(
    at: u64,
    base: u64,
    src: &ImageSource<'_, I>,
) -> Result<(), PrepareError> {
    memory::with_tables(|t| t.map_fresh(at, src.span, DATA))?;
    // SAFETY: just mapped, fresh frames, for this preparation only.
    let mut window = unsafe { Window::new(at, src.span) };
    let image = window.copy_segments(src.link_base, src.segments);
    relocate(
        image,
        src.link_base,
        base - src.link_base,
        src.relocations.clone(),
    )
    .map(|_| ())
    .map_err(PrepareError::Relocation)
}

/// Lays `src` out in the staging window and the overlay source.
pub fn prepare<I: Iterator<Item = (u64, i64)> + Clone>(
    src: &ImageSource<'_, I>,
) -> Result<Prepared, PrepareError> {
    if src.span > KERNEL_IMAGE.len || src.span > STAGING_WINDOW.len {
        return Err(PrepareError::TooLarge {
            span: src.span,
            window: KERNEL_IMAGE.len,
        });
    }
    if src.segments.len() > MAX_SEGMENTS {
        return Err(PrepareError::TooManySegments(src.segments.len()));
    }
    release_staging();
    let mut segments = [SegmentDesc::default(); MAX_SEGMENTS];
    for (i, s) in src.segments.iter().enumerate() {
        segments[i] = SegmentDesc {
            offset: s.vaddr - src.link_base,
            mem_size: s.mem_size,
            file_size: s.data.len() as u64,
            flags: s.flags as u64,
        };
    }
    let segments_used = &segments[..src.segments.len()];
    // The overlay source: the image relocated for the kernel base.
    *PREPARED.lock() = Some((src.span, alloc::vec::Vec::new()));
    lay_out_at(OVERLAY_SOURCE.start, KERNEL_IMAGE.start, src)?;
    let (pristine, pristine_count) = keep_pristine(&segments[..src.segments.len()]);
    // The staging window: a second copy, relocated for the staging base, where the new
    // image's bootstrap runs. (Sharing the code frames with the overlay source would
    // save the copy, but measured slower under TCG: docs/BENCHMARKS.md.)
    lay_out_at(STAGING_WINDOW.start, STAGING_WINDOW.start, src)?;
    memory::with_tables(|t| -> Result<(), MapError> {
        for page in 0..src.span / 4096 {
            let offset = page * 4096;
            t.set_flags(
                STAGING_WINDOW.start + offset,
                4096,
                page_flags(segments_used, offset),
            )?;
        }
        Ok(())
    })?;

    // Growth: map the pages the new image needs beyond what is mapped at the base now.
    let mapped = machine::record().image.len;
    if src.span > mapped {
        memory::with_tables(|t| t.map_fresh(KERNEL_IMAGE.start + mapped, src.span - mapped, DATA))?;
        machine::update(|m| m.image.len = src.span);
    }

    let (copy_runs, copy_run_count, pages_to_copy) =
        differing_pages(src.span, &segments[..src.segments.len()]);
    Ok(Prepared {
        copy_runs,
        copy_run_count,
        pages_to_copy,
        identity: ImageRef {
            base: KERNEL_IMAGE.start,
            span: src.span,
            ..src.identity
        },
        span: src.span,
        segments,
        segment_count: src.segments.len(),
        bootstrap_entry: STAGING_WINDOW.start + src.bootstrap,
        resume_entry: KERNEL_IMAGE.start + src.resume,
        ap_entry: KERNEL_IMAGE.start + src.ap_resume,
        pristine,
        pristine_count,
    })
}

/// Copies the new image's writable pages from the overlay source (relocated, never run)
/// into frames of their own; the preparation owns them until a swap hands them over.
fn keep_pristine(segments: &[SegmentDesc]) -> ([PristinePage; MAX_PRISTINE_PAGES], u32) {
    let mut pages = [PristinePage::default(); MAX_PRISTINE_PAGES];
    let mut n = 0usize;
    let mut frames = alloc::vec::Vec::new();
    for s in segments.iter().filter(|s| s.flags & W as u64 != 0) {
        for offset in ((s.offset & !0xfff)..s.offset + s.mem_size).step_by(4096) {
            let copied = (n < MAX_PRISTINE_PAGES)
                .then(|| memory::copy_to_fresh_frame(OVERLAY_SOURCE.start + offset))
                .flatten();
            let Some(phys) = copied else {
                // Too many, or no memory: no revert to this image (the swap says so).
                for phys in frames {
                    memory::free_frame(phys);
                }
                return ([PristinePage::default(); MAX_PRISTINE_PAGES], 0);
            };
            pages[n] = PristinePage {
                page: KERNEL_IMAGE.start + offset,
                copy: memory::phys_offset() + phys,
            };
            frames.push(phys);
            n += 1;
        }
    }
    if let Some((_, kept)) = PREPARED.lock().as_mut() {
        *kept = frames;
    }
    (pages, n as u32)
}

/// The pages the overlay must write: every page of a writable segment (its contents at
/// run time are not the image's), and every read-only page whose prepared bytes differ
/// from what the kernel base holds now. Unchanged code pages are left alone, which
/// keeps an emulator's translations of them valid and writes nothing needlessly.
///
/// The running image's read-only pages change only through hotpatches; the update
/// service recomputes this after any patch applied while an image is loaded.
pub fn differing_pages(
    span: u64,
    segments: &[SegmentDesc],
) -> ([CopyRun; MAX_COPY_RUNS], u32, u64) {
    let mut runs = [CopyRun::default(); MAX_COPY_RUNS];
    let mut count = 0;
    let mut pages = 0;
    let mapped_before = crate::image::span();
    for page in 0..span / 4096 {
        let offset = page * 4096;
        let writable = segments.iter().any(|s| {
            s.flags & W as u64 != 0
                && offset + 4096 > (s.offset & !0xfff)
                && offset < s.offset + s.mem_size
        });
        let differs = writable || offset >= mapped_before || {
            // SAFETY: both pages are mapped: the overlay source by `load`, the base by
            // the running image (offset below its span).
            let (new, old) = unsafe {
                (
                    core::slice::from_raw_parts((OVERLAY_SOURCE.start + offset) as *const u64, 512),
                    core::slice::from_raw_parts((KERNEL_IMAGE.start + offset) as *const u64, 512),
                )
            };
            new != old
        };
        if differs {
            add_page(&mut runs, &mut count, page as u32);
            pages += 1;
        }
    }
    (runs, count, pages)
}
