//! Self-test mode (`mode=selftest`): in-kernel tests run on the BSP once every CPU is
//! up, each printing `selftest: <name> ... ok`, `... skipped (<why>)` when the machine
//! cannot run it (one CPU has no AP to keep silent), or `... FAILED: <reason>`; then
//! QEMU exits with the success or failure code. The integration tests boot this mode.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::arch::{self, ExitCode};
use crate::cpu::{self, CpuId};
use crate::memory::{self, layout, DATA};
use crate::time::{self, Duration};
use crate::update::prepare::{self, Prepared};
use crate::update::swap;
use crate::{continuity, handoff_region, println, quiesce, sched};
use updater::handoff::{inject, text};
use updater::recordset::RecordSet;

/// A test ran and passed, or could not run here (and says why).
enum Ran {
    Passed,
    Skipped(&'static str),
}

type TestResult = Result<Ran, String>;

const PASSED: TestResult = Ok(Ran::Passed);

/// Tallies of a self-test run.
#[derive(Default)]
struct Tally {
    failed: usize,
    skipped: usize,
    total: usize,
}

impl Tally {
    fn report(&mut self, name: &str, r: TestResult) {
        self.total += 1;
        match r {
            Ok(Ran::Passed) => println!("selftest: {name} ... ok"),
            Ok(Ran::Skipped(why)) => {
                self.skipped += 1;
                println!("selftest: {name} ... skipped ({why})");
            }
            Err(reason) => {
                self.failed += 1;
                println!("selftest: {name} ... FAILED: {reason}");
            }
        }
    }

    fn verdict(&self) -> ! {
        if self.failed != 0 {
            println!("selftest: {} of {} FAILED", self.failed, self.total);
            arch::exit_qemu(ExitCode::Failure)
        }
        if self.skipped == 0 {
            println!("selftest: all {} passed", self.total);
        } else {
            println!(
                "selftest: all {} that could run passed, {} of {} skipped",
                self.total - self.skipped,
                self.skipped,
                self.total
            );
        }
        arch::exit_qemu(ExitCode::Success)
    }
}

fn passed_if(ok: bool, why: impl FnOnce() -> String) -> TestResult {
    if ok {
        PASSED
    } else {
        Err(why())
    }
}

/// A test: its name and what runs it.
type Test = (&'static str, fn() -> TestResult);
/// A test of a swap: its name and what runs it, on a prepared image of this kernel.
type SwapTest = (&'static str, fn(&Prepared) -> TestResult);

const TESTS: &[Test] = &[
    (
        "frame allocator returns distinct frames and takes them back",
        frames,
    ),
    ("heap allocates and frees", heap),
    ("page tables map, translate and unmap", paging),
    ("TSC is calibrated and monotonic", tsc),
    ("every CPU takes timer ticks", timer_ticks),
    ("every CPU is online and runs tasks", all_cpus_run_tasks),
    (
        "quiesce parks and releases every other CPU, 200 times",
        quiesce_round_trips,
    ),
    (
        "a CPU that never acknowledges makes quiesce fail, not hang",
        quiesce_timeout,
    ),
];

/// Request sequence number that marks the self-test's swap into itself: the resumed
/// kernel sees it in the descriptor and finishes the self-test.
pub const SELF_SWAP_SEQ: u64 = u64::MAX;

/// Tests that need a prepared image of this kernel (rollbacks), run before the swap.
const SWAP_TESTS: &[SwapTest] = &[
    (
        "an injected reconciliation failure rolls back with every task intact",
        rollback_on_injected_failure,
    ),
    (
        "an AP that never acknowledges the park makes the swap roll back, not hang",
        rollback_on_silent_ap,
    ),
];

/// Tests that cannot run on one CPU (they need an AP to keep silent).
const NEED_TWO_CPUS: usize = 2;

/// Why a test that needs an AP cannot run, if there is only one CPU.
fn needs_an_ap() -> Option<Ran> {
    (cpu::count() < 2).then_some(Ran::Skipped("one CPU: no AP to keep silent"))
}

/// Runs every test and exits QEMU with the verdict (after a swap into itself, the
/// resumed kernel finishes in [`after_self_swap`]).
pub fn run() -> ! {
    let mut tally = Tally::default();
    for (name, test) in TESTS {
        tally.report(name, test());
    }
    let own = crate::update::selfswap::own_image();
    let prepared = match own.as_ref().map(|o| prepare::prepare(&o.source())) {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            tally.report("preparing this kernel's own image", Err(format!("{e}")));
            None
        }
        None => {
            tally.report(
                "preparing this kernel's own image",
                Err("ELF file not available".into()),
            );
            None
        }
    };
    if let Some(prepared) = prepared.as_ref() {
        for (name, test) in SWAP_TESTS {
            tally.report(name, test(prepared));
        }
    }
    if tally.failed != 0 {
        tally.total += 1; // the swap into this image, not run
        tally.verdict();
    }
    // Last: swap into this same image. The resumed kernel finishes the self-test.
    let prepared = prepared.expect("prepared when nothing failed");
    // The new kernel adopts the exported records and runs on them: keep a copy for
    // its continuity check (it lands in the half the new kernel exports to).
    let refusal = swap::apply(&prepared, SELF_SWAP_SEQ, inject::KEEP_EXPORT_COPY, None);
    tally.report("swap into this image", Err(format!("{refusal}")));
    tally.verdict()
}

fn exported_set(guard: &mut handoff_region::DescriptorGuard) -> Result<RecordSet<'_>, String> {
    let (d, areas) = guard.areas();
    RecordSet::parse(areas.records, d.exported.at as usize)
        .map_err(|e| format!("exported set unreadable: {e}"))
}

/// Continuity of every task against the last exported set.
fn continued() -> Result<continuity::Continuity, String> {
    let mut guard = handoff_region::descriptor();
    let set = exported_set(&mut guard)?;
    continuity::check(&set)
}

fn rollback_on_injected_failure(prepared: &Prepared) -> TestResult {
    match swap::apply(prepared, 1, inject::RECONCILE_FAIL, None) {
        swap::SwapRefusal::Bootstrap(_) => {}
        other => return Err(format!("expected the bootstrap to refuse, got: {other}")),
    }
    let reason = String::from(text(&handoff_region::descriptor().failure));
    if !reason.contains("injected") {
        return Err(format!(
            "refusal reason does not name the injected fault: {reason:?}"
        ));
    }
    let c = continued()?;
    println!(
        "selftest: rolled back ({reason}); {} tasks continued, {} steps since",
        c.tasks, c.steps_since
    );
    PASSED
}

fn rollback_on_silent_ap(prepared: &Prepared) -> TestResult {
    if let Some(skip) = needs_an_ap() {
        return Ok(skip);
    }
    match swap::apply(prepared, 2, inject::AP_NO_ACK, None) {
        swap::SwapRefusal::Quiesce(e) if e.missing == Some(CpuId::new(cpu::count() - 1)) => {
            println!("selftest: refused: {e}");
            PASSED
        }
        other => Err(format!(
            "expected a quiesce refusal naming the last CPU, got: {other}"
        )),
    }
}

/// The resumed kernel's end of the self-test: continuity, addresses, phase times. The
/// tests before the swap passed or were skipped (a failure ends the run before it).
pub fn after_self_swap() -> ! {
    let mut tally = Tally {
        total: TESTS.len() + SWAP_TESTS.len(),
        skipped: if needs_an_ap().is_some() {
            NEED_TWO_CPUS
        } else {
            0
        },
        failed: 0,
    };
    tally.report(
        "swap into this image: every task continues from its exported state",
        (|| {
            let c = continued()?;
            println!(
                "selftest: {} tasks continued, {} steps since the export",
                c.tasks, c.steps_since
            );
            PASSED
        })(),
    );
    let here = after_self_swap as fn() -> ! as usize as u64;
    tally.report(
        "the running code is at the kernel base, not in the staging window",
        passed_if(layout::KERNEL_IMAGE.contains(here), || {
            format!("code runs at {here:#x}")
        }),
    );
    let t = |v: &core::sync::atomic::AtomicU64| v.load(Ordering::Relaxed);
    let resumed = cpu::all()
        .map(|c| {
            handoff_region::park_control().slots[c.id.index()]
                .resumed_tsc
                .load(Ordering::Relaxed)
        })
        .max()
        .unwrap_or(0);
    let us = |a: u64, b: u64| time::ticks_to_nanos(b.saturating_sub(a)) / 1000;
    let d = handoff_region::descriptor();
    let c = &d.clock;
    println!(
        "selftest: downtime {} µs: quiesce {} export {} reconcile {} overlay {} reinit {} release {} (µs, {} CPUs parked)",
        us(t(&c.park_ipi), resumed),
        us(t(&c.park_ipi), t(&c.all_parked)),
        us(t(&c.all_parked), t(&c.exported)),
        us(t(&c.exported), t(&c.reconciled)),
        us(t(&c.reconciled), t(&c.overlaid)),
        us(t(&c.overlaid), t(&c.reinitialised)),
        us(t(&c.reinitialised), resumed),
        d.cpus_parked
    );
    drop(d);
    tally.verdict()
}

fn frames() -> TestResult {
    let before = memory::free_frames();
    let mut taken = Vec::new();
    {
        let mut f = memory::FRAMES.lock();
        let f = f.as_mut().ok_or("no frame allocator")?;
        for _ in 0..8 {
            taken.push(f.allocate().ok_or("out of frames")?);
        }
    }
    let mut sorted = taken.clone();
    sorted.sort();
    sorted.dedup();
    if sorted.len() != taken.len() {
        return Err(format!("duplicate frames handed out: {taken:?}"));
    }
    if memory::free_frames() != before - 8 {
        return Err(format!(
            "free count {} after taking 8 of {before}",
            memory::free_frames()
        ));
    }
    let mut f = memory::FRAMES.lock();
    let f = f.as_mut().ok_or("no frame allocator")?;
    for frame in taken {
        f.deallocate(frame);
    }
    let after = f.free_frames();
    passed_if(after == before, || {
        format!("free frames {after} after giving back, {before} before")
    })
}

fn heap() -> TestResult {
    let (used_before, _) = memory::heap::usage();
    {
        let big: Vec<u64> = (0..128 * 1024).collect();
        let sum: u64 = big.iter().sum();
        if sum != (128 * 1024 - 1) * 128 * 1024 / 2 {
            return Err(format!("wrong sum {sum}"));
        }
    }
    let (used_after, _) = memory::heap::usage();
    passed_if(used_after == used_before, || {
        format!("{used_before} bytes used before, {used_after} after")
    })
}

fn paging() -> TestResult {
    // A page in the patch area, which nothing uses yet.
    let virt = layout::PATCH_AREA.end() - 4096;
    memory::with_tables(|t| t.map_fresh(virt, 4096, DATA)).map_err(|e| format!("map: {e}"))?;
    let (phys, _) =
        memory::with_tables(|t| t.translate(virt)).ok_or("mapped page does not translate")?;
    // SAFETY: the page was just mapped writable for this test only.
    unsafe { core::ptr::write_volatile(virt as *mut u64, 0x1234_5678) };
    // SAFETY: physical memory is mapped at phys_offset; `phys` is that page.
    let through_phys =
        unsafe { core::ptr::read_volatile(memory::phys_to_virt(phys) as *const u64) };
    memory::with_tables(|t| t.unmap(virt, 4096, true)).map_err(|e| format!("unmap: {e}"))?;
    if memory::with_tables(|t| t.translate(virt)).is_some() {
        return Err("page still translates after unmap".into());
    }
    passed_if(through_phys == 0x1234_5678, || {
        format!("read {through_phys:#x} through the physical mapping")
    })
}

fn tsc() -> TestResult {
    if time::tsc_hz() < 10_000_000 {
        return Err(format!("TSC calibrated at {} Hz", time::tsc_hz()));
    }
    let a = time::now();
    time::spin_for(Duration::from_micros(100));
    let b = time::now();
    passed_if(b > a, || "TSC did not advance".into())
}

fn timer_ticks() -> TestResult {
    let before: Vec<u64> = cpu::all()
        .map(|c| c.ticks.load(Ordering::Relaxed))
        .collect();
    let deadline = time::now() + Duration::from_secs(5);
    loop {
        let stalled: Vec<usize> = cpu::all()
            .zip(&before)
            .filter(|(c, b)| c.ticks.load(Ordering::Relaxed) <= **b)
            .map(|(c, _)| c.id.index())
            .collect();
        if stalled.is_empty() {
            return PASSED;
        }
        if time::now() > deadline {
            return Err(format!("no tick in 5 s on CPUs {stalled:?}"));
        }
        x86_64::instructions::hlt();
    }
}

fn all_cpus_run_tasks() -> TestResult {
    let deadline = time::now() + Duration::from_secs(10);
    let me = cpu::get(CpuId::BSP).ok_or("no BSP")?;
    loop {
        sched::run_one(me);
        let idle: Vec<usize> = cpu::all()
            .filter(|c| c.steps.load(Ordering::Relaxed) == 0)
            .map(|c| c.id.index())
            .collect();
        let offline: Vec<usize> = cpu::all()
            .filter(|c| c.id != CpuId::BSP && !c.online.load(Ordering::Acquire))
            .map(|c| c.id.index())
            .collect();
        if idle.is_empty() && offline.is_empty() {
            println!(
                "selftest: {} CPUs ran {} task steps",
                cpu::count(),
                cpu::all()
                    .map(|c| c.steps.load(Ordering::Relaxed))
                    .sum::<u64>()
            );
            return PASSED;
        }
        if time::now() > deadline {
            return Err(format!(
                "after 10 s, CPUs {offline:?} offline and {idle:?} without a task step"
            ));
        }
    }
}

fn quiesce_round_trips() -> TestResult {
    let steps_before: u64 = cpu::all().map(|c| c.steps.load(Ordering::Relaxed)).sum();
    let mut worst = Duration::ZERO;
    let mut total = Duration::ZERO;
    const ROUNDS: u32 = 200;
    for round in 0..ROUNDS {
        let parked = x86_64::instructions::interrupts::without_interrupts(|| {
            let parked = quiesce::park_others(Duration::from_millis(500), None)
                .map_err(|e| format!("round {round}: {e}"))?;
            let took = parked
                .all_parked_at
                .saturating_duration_since(parked.ipi_at);
            let n = parked.cpus;
            quiesce::release(parked);
            Ok::<_, String>((took, n))
        })?;
        if parked.1 != cpu::count() - 1 {
            return Err(format!(
                "round {round}: {} CPUs parked, expected {}",
                parked.1,
                cpu::count() - 1
            ));
        }
        worst = worst.max(parked.0);
        total += parked.0;
        sched::run_one(cpu::get(CpuId::BSP).ok_or("no BSP")?);
    }
    println!(
        "selftest: quiesce of {} CPUs: mean {} µs, worst {} µs",
        cpu::count() - 1,
        total.as_micros() / ROUNDS as u128,
        worst.as_micros()
    );
    // The other CPUs must still be running tasks after all that.
    let deadline = time::now() + Duration::from_secs(5);
    loop {
        let steps: u64 = cpu::all().map(|c| c.steps.load(Ordering::Relaxed)).sum();
        if steps > steps_before + 10 * cpu::count() as u64 {
            return PASSED;
        }
        if time::now() > deadline {
            return Err(format!(
                "task steps stalled at {steps} after quiesce (was {steps_before})"
            ));
        }
        sched::run_one(cpu::get(CpuId::BSP).ok_or("no BSP")?);
    }
}

fn quiesce_timeout() -> TestResult {
    if let Some(skip) = needs_an_ap() {
        return Ok(skip);
    }
    let victim = CpuId::new(cpu::count() - 1);
    let result = x86_64::instructions::interrupts::without_interrupts(|| {
        quiesce::park_others(Duration::from_millis(50), Some(victim))
    });
    match result {
        Ok(parked) => {
            quiesce::release(parked);
            Err(format!("quiesce succeeded although {victim} ignored it"))
        }
        Err(e) if e.missing == Some(victim) => {
            // A later quiesce must work again.
            let again = x86_64::instructions::interrupts::without_interrupts(|| {
                quiesce::park_others(Duration::from_millis(500), None)
            })
            .map_err(|e| format!("quiesce after the timeout failed: {e}"))?;
            quiesce::release(again);
            PASSED
        }
        Err(e) => Err(format!("timed out but blamed the wrong CPU: {e}")),
    }
}
