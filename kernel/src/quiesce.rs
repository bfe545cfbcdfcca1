//! Quiesce: stop every other CPU at a safe point and let it go again. The one mechanism
//! behind the swap, the hotpatch and consistent snapshots.
//!
//! The coordinator (the BSP, with interrupts off) raises the park generation in the
//! hand-off region and sends a wake IPI to every other CPU. Each CPU notices at its next
//! checkpoint — between two task steps, or as soon as the IPI ends its halt — records its
//! call stack, and enters the park stub, which acknowledges with a timestamp and halts
//! outside both images until released (see `arch::park`). If not every CPU acknowledges within the bound, the coordinator
//! releases the ones that did and reports which did not: a missing CPU causes a refusal,
//! never a hang. A CPU that parks after that finds the release already given and goes on.
//!
//! A park is not asked while a CPU the last release let go is still in the stub: it
//! reads where to go only when it runs again, and the next park resets that to "back
//! where you parked" — after a swap, the old kernel's stack ([`park_others`] waits).
//! A CPU that finds a park the guard raised for a revert joins the revert instead.
//!
//! The coordinator never waits for an interrupt: it polls the acknowledgement counter.
//! Parked CPUs halt between checks of the release generation, and their own timer ticks
//! bound the wait if a wake IPI is ever lost.

use core::sync::atomic::Ordering;

use crate::arch::{apic, idt, idt::vector, park, tsc};
use crate::cpu::{self, CpuId};
use crate::handoff_region;
use crate::memory::layout::stack_slot;
use crate::time::{self, Duration, Instant};

/// Every CPU but the coordinator is parked. Dropping it without [`release`] would leave
/// them parked, so it must be used.
#[must_use = "parked CPUs stay parked until released"]
#[derive(Debug)]
pub struct Parked {
    generation: u64,
    /// CPUs parked (the coordinator not included).
    pub cpus: usize,
    /// When the first wake IPI was sent.
    pub ipi_at: Instant,
    /// When the last acknowledgement was seen.
    pub all_parked_at: Instant,
}

impl Parked {
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// Why a quiesce failed.
#[derive(Debug, Clone, Copy)]
pub struct QuiesceTimeout {
    /// CPUs that acknowledged, and how many were asked.
    pub acked: usize,
    pub asked: usize,
    /// The first CPU that did not acknowledge.
    pub missing: Option<CpuId>,
    pub waited: Duration,
    /// Nothing was asked: this CPU, released by the last park, had not left the park
    /// stub within the bound.
    pub still_leaving: Option<CpuId>,
}

impl core::fmt::Display for QuiesceTimeout {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if let Some(c) = self.still_leaving {
            return write!(
                f,
                "{c}, released by the last park, had not left the park stub after {} µs: no park was asked",
                self.waited.as_micros()
            );
        }
        write!(
            f,
            "{} of {} CPUs parked within {} µs",
            self.acked,
            self.asked,
            self.waited.as_micros()
        )?;
        if let Some(c) = self.missing {
            write!(f, "; {c} never acknowledged")?;
        }
        Ok(())
    }
}

/// How long after a health window's deadline another CPU fails the window itself when
/// the bootstrap processor has not (it checks at its service's next step): long enough
/// that a vCPU the loaded host did not run for a while is not mistaken for a hung
/// bootstrap processor, which would name the wrong failure.
const BSP_GRACE: Duration = Duration::from_millis(1000);

/// Called by every CPU between task steps: parks it if a park was requested.
pub fn checkpoint() {
    let control = handoff_region::park_control();
    let me = cpu::current();
    follow_window(me);
    let slot = &control.slots[me.id.index()];
    let requested = control.request.load(Ordering::Acquire);
    if requested <= slot.parked_gen.load(Ordering::Relaxed) {
        return;
    }
    // The guard raised this request for a revert (it marks the revert before it raises
    // the generation, so a CPU that sees the request sees the mark): park through the
    // guard, where the bootstrap processor does the revert, not here — the guard's NMI
    // to it would find the park stub's IDT and be dropped.
    if handoff_region::undo().reverting.load(Ordering::Acquire) != 0 {
        handoff_region::join_revert();
    }
    if control.ignore_cpu.load(Ordering::Relaxed) == me.id.index() as u32 {
        // Fault injection: behave like a CPU that never answers this request.
        slot.parked_gen.store(requested, Ordering::Relaxed);
        return;
    }
    x86_64::instructions::interrupts::disable();
    let range = stack_slot(me.id.index());
    let mut stack = [0u64; updater::handoff::STACK_DEPTH];
    let n = park::return_addresses(range.start, range.end(), &mut stack);
    for (i, a) in slot.return_addresses.iter().enumerate() {
        a.store(if i < n { stack[i] } else { 0 }, Ordering::Relaxed);
    }
    // If the release sends this CPU into a new kernel, this stack is abandoned.
    // SAFETY: interrupts are off; the entry, slot and control are the installed stub and
    // this CPU's structures in the hand-off region.
    unsafe { park::park(handoff_region::park_entry(), slot, control, requested) };
    // Released into this kernel: a hotpatch may have opened a health window meanwhile.
    follow_window(me);
    x86_64::instructions::interrupts::enable();
}

/// Keeps the calling CPU's IDT in step with the health window: the guard IDT while one
/// is open (a hotpatch's opens with this kernel running on: its CPUs switch here, at the
/// checkpoint where they were released), this kernel's own once it closed. As a
/// backstop for a bootstrap processor that never gets to its health check, the window
/// fails a while after its deadline ([`BSP_GRACE`]).
fn follow_window(me: &cpu::Cpu) {
    let undo = handoff_region::undo();
    let armed = undo.armed.load(Ordering::Acquire) != 0;
    let i = me.id.index();
    match (idt::guarded(i), armed) {
        (true, false) => idt::load(i),
        // SAFETY: the guard IDT is the hand-off region's; its device gates are rewritten
        // with the same values by every CPU that loads it.
        (false, true) => unsafe { idt::load_guarded(i, handoff_region::guard_idt()) },
        (true, true) => {
            if me.id != CpuId::BSP
                && tsc::read()
                    > undo
                        .deadline_tsc
                        .saturating_add(time::duration_to_ticks(BSP_GRACE))
            {
                handoff_region::fail_window(
                    updater::handoff::cause::DEADLINE,
                    "the health check's deadline passed and the bootstrap processor did not answer",
                );
            }
        }
        (false, false) => {}
    }
}

/// Whether this CPU has a park request it has not answered (an idle CPU must not halt).
pub fn park_requested() -> bool {
    let control = handoff_region::park_control();
    let me = arch_index();
    control.request.load(Ordering::Acquire) > control.slots[me].parked_gen.load(Ordering::Relaxed)
}

fn arch_index() -> usize {
    crate::arch::cpu_index()
}

/// Parks every CPU but the caller. Call with interrupts disabled, from the coordinator.
/// `ignore` makes one CPU ignore the request (fault injection for tests).
pub fn park_others(bound: Duration, ignore: Option<CpuId>) -> Result<Parked, QuiesceTimeout> {
    let control = handoff_region::park_control();
    let me = cpu::current();
    wait_until_out(control, me.id, bound).map_err(|(c, waited)| QuiesceTimeout {
        acked: 0,
        asked: cpu::count() - 1,
        missing: None,
        waited,
        still_leaving: Some(c),
    })?;
    let generation = control.request.load(Ordering::Relaxed) + 1;
    control.ignore_cpu.store(
        ignore.map_or(u32::MAX, |c| c.index() as u32),
        Ordering::Relaxed,
    );
    control.acks.store(0, Ordering::Relaxed);
    control.resume_entry.store(0, Ordering::Relaxed);
    // The coordinator never parks itself for this generation.
    control.slots[me.id.index()]
        .parked_gen
        .store(generation, Ordering::Relaxed);
    let ipi_at = time::now();
    control.request.store(generation, Ordering::Release);
    // The CPUs to wait for are counted once the request is visible (the fence pairs with
    // the one in `sched::run`): a CPU that starts scheduling after this finds the request
    // at its first checkpoint and parks before it runs a task; one that started before
    // is counted and acknowledges.
    core::sync::atomic::fence(Ordering::SeqCst);
    let others: usize = cpu::all()
        .filter(|c| c.id != me.id && c.online.load(Ordering::Acquire))
        .count();
    if others > 0 {
        apic::send_ipi_to_others(vector::WAKE);
    }
    let deadline = ipi_at + bound;
    loop {
        let acked = control.acks.load(Ordering::Acquire) as usize;
        if acked >= others {
            return Ok(Parked {
                generation,
                cpus: others,
                ipi_at,
                all_parked_at: time::now(),
            });
        }
        let now = time::now();
        if now > deadline {
            let missing = cpu::all()
                .filter(|c| c.id != me.id)
                .find(|c| {
                    control.slots[c.id.index()].ack_tsc.load(Ordering::Relaxed) < ipi_at.ticks()
                })
                .map(|c| c.id);
            // Let the parked ones go; late ones will find the release given.
            control.release.store(generation, Ordering::Release);
            control.ignore_cpu.store(u32::MAX, Ordering::Relaxed);
            return Err(QuiesceTimeout {
                acked,
                asked: others,
                missing,
                waited: now.saturating_duration_since(ipi_at),
                still_leaving: None,
            });
        }
        core::hint::spin_loop();
    }
}

/// Waits (up to `bound`) until no CPU but `me` is still in the park stub after the
/// last release. A released CPU reads where to go — back into the kernel it parked
/// from, or a new kernel's entry — only when it runs again, and a vCPU the host has not
/// run for a while may not have yet: the next park must not change the entry under it
/// (after a swap, it would return into the old kernel's stack, whose heap is gone). The
/// stub stamps `release_tsc` after reading the entry; a CPU whose acknowledgement is
/// newer than its release stamp is still inside. CPUs parked and not released (none,
/// outside a revert the guard is doing) are not waited for.
fn wait_until_out(
    control: &updater::handoff::ParkControl,
    me: CpuId,
    bound: Duration,
) -> Result<(), (CpuId, Duration)> {
    let start = time::now();
    loop {
        let released = control.release.load(Ordering::Acquire);
        let inside = cpu::all().filter(|c| c.id != me).find(|c| {
            let slot = &control.slots[c.id.index()];
            slot.parked_gen.load(Ordering::Acquire) <= released
                && slot.ack_tsc.load(Ordering::Acquire) > slot.release_tsc.load(Ordering::Acquire)
        });
        let Some(c) = inside else {
            return Ok(());
        };
        let waited = time::now().saturating_duration_since(start);
        if waited > bound {
            return Err((c.id, waited));
        }
        core::hint::spin_loop();
    }
}

/// What a release reports.
#[derive(Debug, Clone, Copy)]
pub struct Released {
    /// From the first park IPI to the release.
    pub pause: Duration,
    /// From the first park IPI to the last acknowledgement.
    pub park: Duration,
}

/// Releases parked CPUs back into this kernel.
pub fn release(parked: Parked) -> Released {
    let control = handoff_region::park_control();
    control.resume_entry.store(0, Ordering::Relaxed);
    control.ignore_cpu.store(u32::MAX, Ordering::Relaxed);
    control.release.store(parked.generation, Ordering::Release);
    let pause = time::now().saturating_duration_since(parked.ipi_at);
    let park = parked
        .all_parked_at
        .saturating_duration_since(parked.ipi_at);
    // Every other CPU: one that parked at its first checkpoint was not counted.
    wake_parked(cpu::count() - 1);
    Released { pause, park }
}

/// Ends the halt of parked CPUs after a release (their timer would, one tick later).
pub fn wake_parked(cpus: usize) {
    if cpus > 0 {
        apic::send_ipi_to_others(vector::WAKE);
    }
}
