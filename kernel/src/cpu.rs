//! The CPUs of this machine: identity ([`CpuId`]), per-CPU state ([`Cpu`]) and the
//! table of all of them.
//!
//! Each CPU's [`Cpu`] is allocated on the heap when the CPU is registered (first boot
//! or resume) and reached through its GS base ([`current`]). Its run queue is the
//! scheduler's (`sched::queue`). The table is rebuilt by each
//! kernel from the machine record; nothing of it crosses a swap except the APIC ids and
//! stack slots, which the machine record carries.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

use crate::arch;

/// Most CPUs the kernel supports.
pub use crate::arch::MAX_CPUS;

/// A CPU's index: 0 is the bootstrap processor, then application processors in
/// firmware order. Always below [`MAX_CPUS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CpuId(u8);

impl CpuId {
    /// The bootstrap processor.
    pub const BSP: CpuId = CpuId(0);

    /// # Panics
    /// If `index >= MAX_CPUS`.
    pub const fn new(index: usize) -> Self {
        assert!(index < MAX_CPUS, "CPU index out of range");
        CpuId(index as u8)
    }

    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl core::fmt::Display for CpuId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "cpu{}", self.0)
    }
}

/// Per-CPU state. `#[repr(C)]` with the self pointer and index first: the GS-relative
/// accessors in `arch::percpu` read them at offsets 0 and 8.
#[repr(C)]
pub struct Cpu {
    self_ptr: *const Cpu,
    index: usize,
    pub id: CpuId,
    pub apic_id: u32,
    /// Task steps this CPU has run since this kernel started.
    pub steps: AtomicU64,
    /// Timer ticks this CPU has taken since this kernel started.
    pub ticks: AtomicU64,
    /// Set when the CPU has entered its scheduler loop.
    pub online: AtomicBool,
    /// TSC at the CPU's first task step under this kernel (0 until then).
    pub first_step_tsc: AtomicU64,
}

// SAFETY: `self_ptr` is only an address used by the GS-base accessor; every other field
// is an atomic or immutable after registration.
unsafe impl Sync for Cpu {}
// SAFETY: as above.
unsafe impl Send for Cpu {}

static CPUS: [AtomicPtr<Cpu>; MAX_CPUS] =
    [const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS];
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Creates the per-CPU state of CPU `id` (APIC id `apic_id`). Registration happens on
/// the BSP, in index order, before the CPU runs.
pub fn register(id: CpuId, apic_id: u32) -> &'static Cpu {
    let cpu = Box::leak(Box::new(Cpu {
        self_ptr: core::ptr::null(),
        index: id.index(),
        id,
        apic_id,
        steps: AtomicU64::new(0),
        ticks: AtomicU64::new(0),
        online: AtomicBool::new(false),
        first_step_tsc: AtomicU64::new(0),
    }));
    cpu.self_ptr = cpu as *const Cpu;
    CPUS[id.index()].store(cpu, Ordering::Release);
    COUNT.fetch_max(id.index() + 1, Ordering::AcqRel);
    cpu
}

/// Makes `cpu` the calling CPU's per-CPU state (GS base).
pub fn install(cpu: &'static Cpu) {
    // SAFETY: `Cpu` is repr(C) with its self pointer and index first, and it is leaked,
    // so it lives as long as this kernel.
    unsafe { arch::percpu::install(cpu as *const Cpu as *const u8) }
}

/// The calling CPU's state.
///
/// # Panics
/// Before the calling CPU installed its state.
pub fn current() -> &'static Cpu {
    try_current().expect("per-CPU state used before it was installed")
}

/// The calling CPU's state, once it installed it (interrupt handlers can run earlier).
pub fn try_current() -> Option<&'static Cpu> {
    let ptr = arch::percpu::current_ptr()?;
    // SAFETY: the GS base points at a leaked `Cpu` (install).
    Some(unsafe { &*(ptr as *const Cpu) })
}

/// The state of CPU `id`, if registered.
pub fn get(id: CpuId) -> Option<&'static Cpu> {
    let ptr = CPUS[id.index()].load(Ordering::Acquire);
    // SAFETY: non-null entries point at leaked `Cpu`s (register).
    (!ptr.is_null()).then(|| unsafe { &*ptr })
}

/// Number of registered CPUs.
pub fn count() -> usize {
    COUNT.load(Ordering::Acquire)
}

/// All registered CPUs, in index order.
pub fn all() -> impl Iterator<Item = &'static Cpu> {
    (0..count()).filter_map(|i| get(CpuId::new(i)))
}

/// Number of CPUs that have entered their scheduler loop.
pub fn online_count() -> usize {
    all().filter(|c| c.online.load(Ordering::Acquire)).count()
}
