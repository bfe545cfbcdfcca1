//! Self-test mode (`mode=selftest`): in-kernel tests run on the BSP once every CPU is
//! up, each printing `selftest: <name> ... ok` or `... FAILED: <reason>`, then QEMU exits
//! with the success or failure code. The integration tests boot this mode.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use crate::arch::{self, ExitCode};
use crate::cpu::{self, CpuId};
use crate::memory::{self, layout, DATA};
use crate::time::{self, Duration};
use crate::{println, quiesce, sched};

type TestResult = Result<(), String>;

const TESTS: &[(&str, fn() -> TestResult)] = &[
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

/// Runs every test and exits QEMU with the verdict.
pub fn run() -> ! {
    let mut failed = 0;
    for (name, test) in TESTS {
        match test() {
            Ok(()) => println!("selftest: {name} ... ok"),
            Err(reason) => {
                failed += 1;
                println!("selftest: {name} ... FAILED: {reason}");
            }
        }
    }
    if failed == 0 {
        println!("selftest: all {} passed", TESTS.len());
        arch::exit_qemu(ExitCode::Success)
    } else {
        println!("selftest: {failed} of {} FAILED", TESTS.len());
        arch::exit_qemu(ExitCode::Failure)
    }
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
    (after == before).then_some(()).ok_or(format!(
        "free frames {after} after giving back, {before} before"
    ))
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
    (used_after == used_before).then_some(()).ok_or(format!(
        "{used_before} bytes used before, {used_after} after"
    ))
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
    (through_phys == 0x1234_5678).then_some(()).ok_or(format!(
        "read {through_phys:#x} through the physical mapping"
    ))
}

fn tsc() -> TestResult {
    if time::tsc_hz() < 10_000_000 {
        return Err(format!("TSC calibrated at {} Hz", time::tsc_hz()));
    }
    let a = time::now();
    time::spin_for(Duration::from_micros(100));
    let b = time::now();
    (b > a).then_some(()).ok_or("TSC did not advance".into())
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
            return Ok(());
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
            return Ok(());
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
            return Ok(());
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
    if cpu::count() < 2 {
        println!("selftest: (one CPU: nothing to time out)");
        return Ok(());
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
            Ok(())
        }
        Err(e) => Err(format!("timed out but blamed the wrong CPU: {e}")),
    }
}
