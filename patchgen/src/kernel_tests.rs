//! The generator against the real kernel variants of this tree.
//!
//! Each variant is built once per test run with the kernel profile into
//! `<workspace>/target/differ-kernels` (v1's second, independent build into
//! `target/differ-kernels/second`); cargo keeps one artifact per feature set there, so
//! a later run with unchanged sources rebuilds nothing. Builds are serialized. The
//! verdict lists are printed (`cargo test -p patchgen -- --nocapture kernel_`).
//! `HOTKERNEL_SKIP_KERNEL_TESTS=1` skips them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::string::{String, ToString};
use std::sync::{Mutex, OnceLock};
use std::vec::Vec;
use std::{eprintln, format, println};

use super::{
    make_patch, DiffError, FunctionVerdict, PatchOptions, PatchOutput, Reason, Verdict, Warning,
};
use image_format::hotpatch::{parse, FunctionKind};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn skip() -> bool {
    let skip = std::env::var_os("HOTKERNEL_SKIP_KERNEL_TESTS").is_some();
    if skip {
        eprintln!("HOTKERNEL_SKIP_KERNEL_TESTS is set: not building kernels");
    }
    skip
}

/// The kernel ELF of `feature` ("" for v1), built into `target_dir` (once per run).
fn kernel_in(feature: &str, target_dir: &Path) -> Vec<u8> {
    type Built = HashMap<(String, PathBuf), Vec<u8>>;
    static CACHE: OnceLock<Mutex<Built>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    let key = (feature.to_string(), target_dir.to_path_buf());
    if let Some(elf) = cache.get(&key) {
        return elf.clone();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace())
        .args([
            "build",
            "-p",
            "kernel",
            "--target",
            "x86_64-unknown-none",
            "--profile",
            "kernel",
        ])
        .arg("--target-dir")
        .arg(target_dir);
    if !feature.is_empty() {
        cmd.args(["--features", feature]);
    }
    let out = cmd.output().expect("cargo runs");
    assert!(
        out.status.success(),
        "building the kernel with features {feature:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = target_dir.join("x86_64-unknown-none/kernel/kernel");
    let elf = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    cache.insert(key, elf.clone());
    elf
}

fn kernel(feature: &str) -> Vec<u8> {
    kernel_in(feature, &workspace().join("target/differ-kernels"))
}

/// Makes the patch v1 → `feature`, printing every verdict.
fn diff(feature: &str) -> Result<PatchOutput, DiffError> {
    let old = kernel("");
    let new = kernel(feature);
    let result = make_patch(&old, &new, &PatchOptions::default());
    println!("== v1 → {feature}");
    let (verdicts, notes) = match &result {
        Ok(out) => (&out.verdicts, &out.notes),
        Err(DiffError::NotHotpatchable { verdicts, notes }) => (verdicts, notes),
        Err(e) => panic!("v1 → {feature}: {e}"),
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
    if skip() {
        return;
    }
    let first = kernel("");
    let second = kernel_in("", &workspace().join("target/differ-kernels/second"));
    let out = make_patch(&first, &second, &PatchOptions::default()).unwrap();
    println!("== v1 → v1 (second build): {} verdicts", out.verdicts.len());
    assert!(out.bytes.is_none(), "{:?}", out.verdicts);
    assert!(out.verdicts.is_empty());
}

#[test]
fn kernel_patch_a_patches_the_counter_step() {
    if skip() {
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
    if skip() {
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
    if skip() {
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
    if skip() {
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
    if skip() {
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
