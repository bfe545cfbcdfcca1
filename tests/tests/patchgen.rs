//! The generator (`patchgen`) against the real kernel variants of this tree: the
//! verdicts `docs/HOTPATCH.md` lists under "Verdicts on the kernel variants".
//!
//! Each variant is built by the runner (`patches::kernel`: `build_kernel_cached`, once
//! per test binary and variant) and diffed against v1; no VM is booted. The one test
//! that needs v1 twice builds it a second time itself, with the runner's cargo command
//! and environment but into its own target directory (`target/differ-kernels/second`),
//! so that the two builds are independent. The verdict lists are printed (`cargo test
//! -p hotkernel-tests --test patchgen -- --nocapture`).
//!
//! `HOTKERNEL_SKIP_KERNEL_TESTS=1` skips them: each test then builds nothing and says
//! `<test>: skipped: …` on the terminal.

use std::io::Write as _;
use std::process::{Command, Stdio};

use hotkernel::build::KERNEL_PROFILE;
use hotkernel::toolchain::KERNEL_TARGET;
use hotkernel::workspace;
use hotkernel_tests::patches;
use image_format::hotpatch::{parse, FunctionKind};
use patchgen::{
    make_patch, Cause, DiffError, FunctionVerdict, PatchOptions, PatchOutput, Reason, Verdict,
    Warning,
};

/// Set (to anything) to skip these tests: they build every kernel variant.
const SKIP_ENV: &str = "HOTKERNEL_SKIP_KERNEL_TESTS";

/// Whether `test` is skipped ([`SKIP_ENV`] is set); if so, says so.
fn skipped(test: &str) -> bool {
    if std::env::var_os(SKIP_ENV).is_none() {
        return false;
    }
    // Straight to the terminal: the harness captures `eprintln!`, and a skipped test
    // must not pass for one that ran.
    let _ = writeln!(
        std::io::stderr(),
        "{test}: skipped: {SKIP_ENV} is set, no kernel is built"
    );
    true
}

/// v1 built a second time, independently of the runner's build: the runner's cargo
/// command and environment (`hotkernel::build`), another target directory.
fn v1_second_build() -> Vec<u8> {
    let root = workspace::root();
    let target_dir = root.join("target/differ-kernels/second");
    let out = Command::new("cargo")
        .current_dir(&root)
        .args(["build", "-p", "kernel", "--target", KERNEL_TARGET])
        .args(["--profile", KERNEL_PROFILE])
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running cargo: {e}"));
    assert!(
        out.status.success(),
        "building v1 a second time failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let elf = target_dir
        .join(KERNEL_TARGET)
        .join(KERNEL_PROFILE)
        .join("kernel");
    std::fs::read(&elf).unwrap_or_else(|e| panic!("{}: {e}", elf.display()))
}

/// Makes the patch v1 → `variant`, printing every verdict.
fn diff(variant: &str) -> Result<PatchOutput, DiffError> {
    let result = patches::make("v1", variant);
    println!("== v1 → {variant}");
    let (verdicts, notes) = match &result {
        Ok(out) => (&out.verdicts, &out.notes),
        Err(DiffError::NotHotpatchable { verdicts, notes }) => (verdicts, notes),
        Err(e) => panic!("v1 → {variant}: {e}"),
    };
    for v in verdicts {
        println!("{v}");
    }
    for n in notes {
        println!("note: {n}");
    }
    match &result {
        Ok(PatchOutput { bytes: Some(b), .. }) => println!("patch: {} bytes", b.len()),
        Ok(_) => println!("no patch: nothing changed"),
        Err(e) => println!("{e}"),
    }
    result
}

fn named<'a>(verdicts: &'a [FunctionVerdict], name: &str) -> Option<&'a FunctionVerdict> {
    verdicts.iter().find(|v| v.name == name)
}

fn sites(verdicts: &[FunctionVerdict]) -> Vec<&str> {
    verdicts
        .iter()
        .filter(|v| matches!(v.verdict, Verdict::Changed { .. }))
        .map(|v| v.name.as_str())
        .collect()
}

#[test]
fn kernel_v1_against_a_second_build_changes_nothing() {
    if skipped("kernel_v1_against_a_second_build_changes_nothing") {
        return;
    }
    let first = patches::kernel("v1");
    let second = v1_second_build();
    let out = make_patch(&first.bytes, &second, &PatchOptions::default())
        .unwrap_or_else(|e| panic!("v1 → v1 (second build): {e}"));
    println!("== v1 → v1 (second build): {} verdicts", out.verdicts.len());
    assert!(out.bytes.is_none(), "{:?}", out.verdicts);
    assert!(out.verdicts.is_empty());
}

#[test]
fn kernel_patch_a_patches_the_counter_step() {
    if skipped("kernel_patch_a_patches_the_counter_step") {
        return;
    }
    // The kernel profile keeps functions distinct and `tasks::observe` is not inlined,
    // so the change stays in two functions: the step (its increment) and `observe`
    // (which inlines `counter::observe`, reporting the increment).
    let out = diff("patch-a").expect("patch-a is hotpatchable");
    let mut sites = sites(&out.verdicts);
    sites.sort_unstable();
    assert_eq!(
        sites,
        ["kernel::tasks::counter::step", "kernel::tasks::observe"],
        "{:?}",
        out.verdicts
    );
    // `--explain`: `incq (%rdi)` became `addq $2,(%rdi)`.
    let Verdict::Changed { why, .. } = &named(&out.verdicts, "kernel::tasks::counter::step")
        .unwrap()
        .verdict
    else {
        unreachable!()
    };
    println!("{}", why.lines().join("\n"));
    assert!(
        matches!(&why.cause, Cause::Opcode { old, new } if old.starts_with("inc") && new.starts_with("add")),
        "{why:?}"
    );
    let bytes = out.bytes.expect("a patch");
    let view = parse(&bytes).unwrap();
    let step = view
        .functions()
        .find(|f| f.name == "kernel::tasks::counter::step")
        .expect("counter::step is carried");
    // `add qword [rdi], 2`: the per-step increment is 2.
    assert!(view
        .code(&step)
        .windows(4)
        .any(|w| w == [0x48, 0x83, 0x07, 0x02]));
    // `observe` dispatches on the task kind through a jump table whose entries are its
    // own case labels: the running image's table leads into the old body, so the
    // patch must carry its own (the self-check refuses a patch that does not).
    assert!(
        view.data_blocks().any(|d| d.name.starts_with("jump table")),
        "observe's jump table is carried"
    );
}

#[test]
fn kernel_patch_b_patches_every_caller_of_the_inlined_helper() {
    if skipped("kernel_patch_b_patches_every_caller_of_the_inlined_helper") {
        return;
    }
    let out = diff("patch-b").expect("patch-b is hotpatchable");
    let sites = sites(&out.verdicts);
    assert!(sites.contains(&"kernel::tasks::ticker::step"), "{sites:?}");
    assert!(
        sites.contains(&"kernel::tasks::heartbeat::step"),
        "{sites:?}"
    );
    assert!(sites.len() >= 2);
    let view_bytes = out.bytes.expect("a patch");
    let view = parse(&view_bytes).unwrap();
    assert!(
        view.functions()
            .filter(|f| f.kind == FunctionKind::Replace)
            .count()
            >= 2
    );
}

#[test]
fn kernel_patch_c_is_refused_for_its_state_layout() {
    if skipped("kernel_patch_c_is_refused_for_its_state_layout") {
        return;
    }
    let Err(DiffError::NotHotpatchable { verdicts, .. }) = diff("patch-c") else {
        panic!("patch-c must be refused");
    };
    let layout = verdicts.iter().find(|v| {
        matches!(&v.verdict, Verdict::Refused { reason: Reason::StateLayout { detail }, .. } if detail.contains("ticker"))
    });
    assert!(
        layout.is_some(),
        "no state-layout refusal naming the ticker"
    );
}

#[test]
fn kernel_patch_d_changes_the_scheduler_loop() {
    if skipped("kernel_patch_d_changes_the_scheduler_loop") {
        return;
    }
    // Accepted here (a diverging function may be entered again, e.g. a panic path);
    // the guest refuses it at apply time because every CPU stands in it.
    let out = diff("patch-d").expect("patch-d is accepted by the generator");
    assert_eq!(sites(&out.verdicts), ["kernel::sched::run"]);
    let run = named(&out.verdicts, "kernel::sched::run").unwrap();
    assert!(run.warnings.contains(&Warning::NeverReturns));
    assert!(out.bytes.is_some());
}

#[test]
fn kernel_twin_is_reported_honestly() {
    if skipped("kernel_twin_is_reported_honestly") {
        return;
    }
    // The twin changes only its identity constants; they are compiled into code,
    // including the swap machinery, which refuses the patch.
    match diff("twin") {
        Err(DiffError::NotHotpatchable { verdicts, .. }) => {
            assert!(verdicts.iter().any(|v| v.is_refused()));
            assert!(verdicts
                .iter()
                .any(|v| v.name.contains("kernel::identity::describe")));
        }
        Ok(out) => {
            let text: Vec<String> = out.verdicts.iter().map(|v| format!("{v}")).collect();
            panic!("twin was accepted: {text:?}")
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn kernel_patch_f_patches_only_the_function_whose_string_grew() {
    if skipped("kernel_patch_f_patches_only_the_function_whose_string_grew") {
        return;
    }
    // patch-f lengthens one piece of the heartbeat's progress line: every merged
    // string after it moves, and the padding after some of them changes. Functions that
    // refer to moved but identical strings (hk_ap_resume's `expect` message among
    // them) are unchanged; the heartbeat's step is patched and its new string carried.
    let out = diff("patch-f").expect("patch-f is hotpatchable");
    assert_eq!(
        sites(&out.verdicts),
        ["kernel::tasks::heartbeat::step"],
        "{:?}",
        out.verdicts
    );
    assert!(named(&out.verdicts, "hk_ap_resume").is_none());
    // `--explain`: the instruction that refers to the string, and both contents.
    let step = named(&out.verdicts, "kernel::tasks::heartbeat::step").unwrap();
    let Verdict::Changed { why, .. } = &step.verdict else {
        unreachable!()
    };
    let text = why.lines().join("\n");
    println!("{text}");
    assert!(matches!(why.cause, Cause::Content(_)), "{text}");
    assert!(
        why.new
            .as_ref()
            .and_then(|i| i.text.as_deref())
            .is_some_and(|t| t.contains("(%rip)")),
        "{text}"
    );
    assert!(text.contains("cpus online"), "{text}");
    let bytes = out.bytes.expect("a patch");
    let view = parse(&bytes).unwrap();
    let carried: Vec<_> = view
        .data_blocks()
        .map(|d| {
            let (at, size) = (d.offset as usize, d.size as usize);
            println!("data {} ({size} bytes)", d.name);
            view.payload()[at..at + size].to_vec()
        })
        .collect();
    assert!(
        carried
            .iter()
            .any(|b| b.windows(14).any(|w| w == b" cpus online |")),
        "the new string is carried"
    );
}
