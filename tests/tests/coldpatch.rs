//! Coldpatch: the patches a VM runs are kept for its next boot, through the seed's
//! double rename (current → backup, new → current) and a checksum the boot checks.
//!
//! Patches are applied and removed with the real `hotkernel patch` command (this
//! package builds it as `hotkernel-cli`), because keeping them for the next boot is the
//! command's job. The crash tests set `HOTKERNEL_COLDPATCH_CRASH_AFTER` so that the
//! command aborts right after one step of the install, then boot the VM again and
//! check what it booted: a whole, checksum-valid image, the old or the new one as the
//! step implies, and the guest running exactly that image's patches.
//!
//! Every VM here is named (only named VMs have a store); names carry the process id,
//! and each test drops its store before and after.

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Output;

use hotkernel::coldpatch::{self, floor, image, BootChoice, Source, Step, Store, CRASH_ENV};
use hotkernel::workspace;
use hotkernel_tests::patches::{self, id};
use hotkernel_tests::{Guest, KernelChoice, VmConfig};
use image_format::TaskKind;
use serde_json::Value;

/// A VM name for this test and process, with its store dropped now and on drop.
struct Named(String);

impl Named {
    fn new(tag: &str) -> Named {
        let name = format!("cold-{tag}-{}", std::process::id());
        coldpatch::forget(&name).expect("dropping a stale store");
        Named(name)
    }

    fn store(&self) -> Store {
        Store::for_vm(&self.0)
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = coldpatch::forget(&self.0);
    }
}

/// Boots `variant` (the test copy of its ELF) as the VM `name` on 2 CPUs.
#[track_caller]
fn boot(name: &Named, variant: &str) -> Guest {
    Guest::boot(
        VmConfig {
            kernel: KernelChoice::Elf(patches::kernel(variant).path.clone()),
            name: Some(name.0.clone()),
            ..VmConfig::default()
        }
        .cpus(2),
    )
}

/// patch-a (v1 → patch-a: counters add 2 per step) in a file named by its id, for the
/// command.
fn patch_a_file() -> (Vec<u8>, PathBuf) {
    let bytes = patches::patch("v1", "patch-a");
    let path = patch_file(&bytes, "");
    (bytes, path)
}

/// `bytes` in a file named by the patch's id and `tag`, for the command. Written every
/// time: the id is the payload's, so a file left by an earlier run for another build of
/// the kernel would have the same name and another header.
fn patch_file(bytes: &[u8], tag: &str) -> PathBuf {
    let dir = workspace::hotkernel_dir().join("test-tmp");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("patch-{:016x}{tag}.hkp", id(bytes)));
    let tmp = workspace::temp_path_for(&path);
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// Runs `hotkernel <args>` with `env` set.
fn hotkernel(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hotkernel-cli"));
    cmd.args(args);
    cmd.env_remove(CRASH_ENV);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running the hotkernel command")
}

/// The command's single JSON line, after checking it exited 0.
#[track_caller]
fn json_of(out: &Output, what: &str) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{what}: {e}: {stdout}"))
}

/// The ids the guest reports applied, bottom first.
fn applied(g: &mut Guest) -> Vec<u64> {
    g.patch_list().patches.iter().map(|p| p.id).collect()
}

/// The increment the counters report (`values[1]`, what `tasks::observe` says they
/// add), checked against what they actually added between two snapshots.
#[track_caller]
fn counter_increment(g: &mut Guest) -> u64 {
    let a = g.snapshot();
    let b = g.wait_all_progress(&a, &[]);
    let mut seen = None;
    for t in a.tasks.iter().filter(|t| t.kind == TaskKind::COUNTER.raw()) {
        let later = b.tasks.iter().find(|l| l.id == t.id).unwrap();
        let per_step = (later.values[0] - t.values[0]) / (later.steps - t.steps);
        assert_eq!(
            later.values[0] - t.values[0],
            per_step * (later.steps - t.steps),
            "counter {} grew unevenly",
            t.id
        );
        assert_eq!(
            later.values[1], per_step,
            "counter {} reports another increment",
            t.id
        );
        assert!(seen.is_none_or(|s| s == per_step), "counters disagree");
        seen = Some(per_step);
    }
    seen.expect("no counter task")
}

/// Checks what a boot chose: the source, the patches, and that the booted image is a
/// whole image whose checksum is the one the choice reports.
#[track_caller]
fn assert_booted(g: &Guest, source: Source, patches: &[u64]) -> BootChoice {
    let choice = g.vm.coldpatch().expect("a VM with a store").clone();
    assert_eq!(choice.source, source, "{}", choice.line);
    assert_eq!(choice.patches, patches, "{}", choice.line);
    let path = choice.image.clone().expect("a kept image was booted");
    let kept = image::read(&path).unwrap_or_else(|d| panic!("{}: {d}", path.display()));
    assert_eq!(Some(&kept.checksum), choice.checksum.as_ref());
    assert_eq!(kept.ids, patches);
    let n = patches.len();
    let line = format!("coldpatch: {n} of {n} patches from the boot image applied");
    assert!(
        g.vm.serial_log().contains(&line),
        "the kernel did not say `{line}`:\n{}",
        g.console_tail(30)
    );
    choice
}

#[test]
fn applied_and_removed_patches_are_kept_for_the_next_boot() {
    let name = Named::new("keep");
    let (a, file) = patch_a_file();
    let a_id = id(&a);

    let mut g = boot(&name, "v1");
    assert!(
        g.vm.coldpatch().is_none(),
        "a VM without a store chose an image"
    );
    let out = hotkernel(
        &[
            "patch",
            "apply",
            "--vm",
            &name.0,
            "--json",
            file.to_str().unwrap(),
        ],
        &[],
    );
    let v = json_of(&out, "patch apply");
    assert_eq!(v["coldpatch"]["kept"], true, "{v}");
    assert_eq!(v["coldpatch"]["patches"][0], format!("{a_id:016x}"), "{v}");
    assert_eq!(counter_increment(&mut g), 2);
    drop(g);

    // The next boot re-applies patch-a before the other CPUs start.
    let mut g = boot(&name, "v1");
    assert_booted(&g, Source::Current, &[a_id]);
    assert_eq!(applied(&mut g), [a_id]);
    assert_eq!(counter_increment(&mut g), 2);

    // Removing it (from the coldpatched kernel) is kept too; the image it replaced
    // is the backup.
    let out = hotkernel(&["patch", "remove", "--vm", &name.0, "--json"], &[]);
    let v = json_of(&out, "patch remove");
    assert_eq!(v["coldpatch"]["kept"], true, "{v}");
    assert_eq!(v["coldpatch"]["patches"], Value::Array(vec![]), "{v}");
    let backup = image::read(&name.store().backup()).expect("a valid backup");
    assert_eq!(backup.ids, [a_id]);
    drop(g);

    let mut g = boot(&name, "v1");
    assert_booted(&g, Source::Current, &[]);
    assert!(applied(&mut g).is_empty());
    assert_eq!(counter_increment(&mut g), 1);
}

/// Keeps an empty patch set for `name` (the old image), boots it, applies patch-a with
/// the command crashing after `step`, and boots what is left.
fn crash_after(step: Step, expect_new: bool) {
    let name = Named::new(step.name());
    let (a, file) = patch_a_file();
    let a_id = id(&a);
    let v1 = patches::kernel("v1");
    coldpatch::keep(&name.0, &v1.path, &[], None).expect("keeping the old image");

    let mut g = boot(&name, "v1");
    assert_booted(&g, Source::Current, &[]);
    let out = hotkernel(
        &["patch", "apply", "--vm", &name.0, file.to_str().unwrap()],
        &[(CRASH_ENV, step.name())],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.signal(),
        Some(SIGABRT),
        "the command did not crash after `{step}`: {}\n{stderr}",
        out.status
    );
    assert!(
        stderr.contains(&format!("crashing after step `{step}`")),
        "{stderr}"
    );
    // The live apply happened before the install started.
    assert_eq!(applied(&mut g), [a_id]);
    drop(g);

    // What the crash left on disk, before the boot looks at it.
    let store = name.store();
    match step {
        Step::Partial => assert!(image::read(&store.new_image()).is_err(), "new.img whole"),
        Step::Write => assert!(image::read(&store.new_image()).is_ok(), "new.img torn"),
        Step::Backup => assert!(!store.current().exists(), "current.img still there"),
        Step::Current => assert!(!store.new_image().exists(), "new.img still there"),
    }

    let mut g = boot(&name, "v1");
    let (source, kept, increment) = match (step, expect_new) {
        (Step::Backup, true) => (Source::Finished, vec![a_id], 2),
        (_, true) => (Source::Current, vec![a_id], 2),
        (_, false) => (Source::Current, vec![], 1),
    };
    let choice = assert_booted(&g, source, &kept);
    assert_eq!(applied(&mut g), kept, "{}", choice.line);
    assert_eq!(counter_increment(&mut g), increment);
    // The boot left a store that is whole: a checked current image, no new one.
    assert_eq!(image::read(&store.current()).map(|k| k.ids), Ok(kept));
    assert!(!store.new_image().exists());
}

/// The signal `std::process::abort` ends a process with.
const SIGABRT: i32 = 6;

#[test]
fn a_crash_while_writing_the_new_image_boots_the_old_one() {
    crash_after(Step::Partial, false);
}

#[test]
fn a_crash_before_the_first_rename_boots_the_old_image() {
    crash_after(Step::Write, false);
}

#[test]
fn a_crash_between_the_renames_boots_the_new_image() {
    crash_after(Step::Backup, true);
}

#[test]
fn a_crash_after_the_second_rename_boots_the_new_image() {
    crash_after(Step::Current, true);
}

#[test]
fn a_damaged_current_image_boots_the_backup_and_a_damaged_backup_boots_plain() {
    let name = Named::new("damaged");
    let a = patches::patch("v1", "patch-a");
    let a_id = id(&a);
    let v1 = patches::kernel("v1");
    coldpatch::keep(&name.0, &v1.path, &[], None).expect("keeping the old image");
    coldpatch::keep(&name.0, &v1.path, &[a_id], Some(&a)).expect("keeping patch-a");
    let store = name.store();
    flip_byte(&store.current());

    let mut g = boot(&name, "v1");
    let choice = assert_booted(&g, Source::Backup, &[]);
    assert!(
        choice.line.contains("current.img: checksum mismatch"),
        "{}",
        choice.line
    );
    assert!(applied(&mut g).is_empty());
    assert_eq!(counter_increment(&mut g), 1);
    drop(g);

    flip_byte(&store.backup());
    let mut g = boot(&name, "v1");
    let choice = g.vm.coldpatch().expect("a store").clone();
    assert_eq!(choice.source, Source::Plain, "{}", choice.line);
    assert!(
        choice.line.contains("backup.img: checksum mismatch"),
        "{}",
        choice.line
    );
    assert!(applied(&mut g).is_empty());
}

fn flip_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn patches_kept_for_one_build_are_not_applied_to_another() {
    let name = Named::new("build");
    let a = patches::patch("v1", "patch-a");
    let v1 = patches::kernel("v1");
    coldpatch::keep(&name.0, &v1.path, &[id(&a)], Some(&a)).expect("keeping patch-a");

    let mut g = boot(&name, "twin");
    let choice = g.vm.coldpatch().expect("a store").clone();
    assert_eq!(choice.source, Source::Plain, "{}", choice.line);
    assert!(
        choice.line.contains("is for kernel build"),
        "{}",
        choice.line
    );
    assert!(applied(&mut g).is_empty());
    assert!(!g.vm.serial_log().contains("coldpatch: re-applied"));
}

#[test]
fn a_stack_the_store_cannot_rebuild_is_not_kept() {
    let name = Named::new("unknown");
    let a = patches::patch("v1", "patch-a");
    let v1 = patches::kernel("v1");
    let kept = coldpatch::keep(&name.0, &v1.path, &[id(&a)], Some(&a)).expect("keeping patch-a");
    // The VM reports a patch below patch-a that the store never saw.
    let err = coldpatch::keep(&name.0, &v1.path, &[0x1234, id(&a)], None).unwrap_err();
    assert!(
        err.to_string()
            .contains("0000000000001234 but it was never kept"),
        "{err}"
    );
    let still = image::read(&name.store().current()).expect("current still checks");
    assert_eq!(still.checksum, kept.checksum);
    // A patch for another build than the kernel's is refused before anything is written.
    let twin = patches::kernel("twin");
    let err = coldpatch::keep(&name.0, &twin.path, &[id(&a)], Some(&a)).unwrap_err();
    assert!(err.to_string().contains("applies to build"), "{err}");
    assert_eq!(
        image::read(&name.store().current()).unwrap().checksum,
        kept.checksum
    );
}

#[test]
fn an_image_below_the_vms_floor_is_refused_and_the_backup_boots() {
    let name = Named::new("svn");
    // patch-a made from a build with security version 2 (v1 runs with SVN 1).
    let a2 = patches::with_svn(&patches::patch("v1", "patch-a"), 2);
    let a_id = id(&a2);
    let file = patch_file(&a2, "-svn2");

    let mut g = boot(&name, "v1");
    let apply = ["patch", "apply", "--vm", &name.0, "--json"];
    let v = json_of(
        &hotkernel(&[&apply[..], &[file.to_str().unwrap()]].concat(), &[]),
        "patch apply",
    );
    assert_eq!(v["coldpatch"]["kept"], true, "{v}");
    assert_eq!(v["coldpatch"]["svn"], 2, "{v}");
    assert_eq!(v["coldpatch"]["svn_floor"], 2, "{v}");
    assert_eq!(counter_increment(&mut g), 2);

    // Removing it keeps an image of SVN 1 (the plain v1) while the VM has run SVN 2:
    // kept, and the command says the next boot refuses it.
    let out = hotkernel(&["patch", "remove", "--vm", &name.0], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("its security version 1 is below 2, the highest this VM has run"),
        "{text}"
    );
    assert_eq!(floor::read(&name.store()).unwrap().map(|f| f.svn), Some(2));
    assert_eq!(image::read(&name.store().current()).unwrap().meta.svn, 1);
    drop(g);

    // The next boot refuses current.img and boots backup.img, which re-applies patch-a.
    let mut g = boot(&name, "v1");
    let choice = assert_booted(&g, Source::Backup, &[a_id]);
    let said = format!(
        "coldpatch: current.img refused: security version 1 is below 2, the highest this VM \
         has run; booting {}",
        name.store().backup().display()
    );
    assert!(choice.line.starts_with(&said), "{}", choice.line);
    assert_eq!(choice.floor, 2);
    assert_eq!(applied(&mut g), [a_id]);
    assert_eq!(counter_increment(&mut g), 2);
    drop(g);

    // With the floor above every kept image and above v1's own SVN, the launch is
    // refused rather than booting plain v1 (the floor raised the way `keep` raises it).
    let store = name.store();
    let lock = store.lock().unwrap();
    floor::raise(&store, 3, "the test: a VM that ran SVN 3", &lock).unwrap();
    drop(lock);
    let err = hotkernel::Vm::launch(
        VmConfig {
            kernel: KernelChoice::Elf(patches::kernel("v1").path.clone()),
            name: Some(name.0.clone()),
            ..VmConfig::default()
        }
        .cpus(2),
    )
    .map(|_| ())
    .expect_err("a launch below the floor");
    let e = err.to_string();
    for part in [
        "current.img refused: security version 1 is below 3",
        "backup.img refused: security version 2 is below 3",
        "has security version 1, below 3, the highest this VM has run",
        "hotkernel patch forget --vm",
    ] {
        assert!(e.contains(part), "`{part}` not in: {e}");
    }
    println!("{e}");
}
