//! `hotkernel watch` driven as a user would: a VM runs v1, `watch` watches a scratch copy
//! of this tree (`target/hotkernel/watch-tests/tree`, made by `variant::copy_tree`), and
//! the test saves files into it:
//!
//! 1. the counter's increment (`patch-a`'s edit) → a `hotpatch` line; the counters then
//!    step by 2 and the guest lists one patch;
//! 2. a layout change (`fields`'s edit: the counter state gains a field) → a `swap`
//!    line that drops the patch; the VM runs `fields`, every task kept;
//! 3. code that does not compile → cargo's error on `[watch]` lines and a `build
//!    failed` line; the VM still answers and runs `fields`.
//!
//! Then Ctrl-C (SIGINT) stops `watch` and the VM runs on. A second test saves an edit
//! whose new code panics (`patch-panic`'s): its hotpatch is reverted by the patch's
//! health window and the line says why; a good edit after it is hotpatched. Every wait
//! is for a line or a state the guest reports, bounded by the hang guard; the printed
//! lines carry the time split.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

use hotkernel::{variant, workspace};
use hotkernel_tests::{assert_continuous, patches, Check, Guest, StepRules, HANG_GUARD};
use image_format::TaskKind;

/// A running `hotkernel watch` and the lines it printed.
struct Watch {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Watch {
    fn spawn(args: &[&str]) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hotkernel-cli"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting hotkernel watch");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("{line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; panics (with every line so far) on one
    /// containing any of `bad`, or when the hang guard passes or watch ends.
    #[track_caller]
    fn expect(&mut self, needle: &str, bad: &[&str]) -> String {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(b) = bad.iter().find(|b| line.contains(*b)) {
                        panic!(
                            "`{b}` while waiting for `{needle}`:\n{}",
                            self.seen.join("\n")
                        );
                    }
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no `{needle}` line ({e}); watch printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Ctrl-C: SIGINT, then the exit status.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -INT {pid}");
        self.expect("stopped watching", &[]);
        self.child.wait().expect("waiting for watch to exit")
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Saves `file` (relative to a tree) from `from` into `to`.
fn save_from(from: &Path, to: &Path, files: &[&str]) {
    for file in files {
        let bytes = std::fs::read(from.join(file)).expect("reading a variant's file");
        std::fs::write(to.join(file), bytes).expect("saving a file into the scratch tree");
    }
}

/// The counters' per-step increment, as two snapshots show it.
fn counter_step(g: &mut Guest) -> u64 {
    let a = g.snapshot();
    let b = g.wait_all_progress(&a, &[]);
    let t = a
        .tasks
        .iter()
        .find(|t| t.kind == TaskKind::COUNTER.raw())
        .expect("a counter");
    let later = b
        .tasks
        .iter()
        .find(|l| l.id == t.id)
        .expect("the counter later");
    (later.values[0] - t.values[0]) / (later.steps - t.steps)
}

#[test]
fn watch_turns_saves_into_a_hotpatch_a_swap_and_a_shown_compile_error() {
    let root = workspace::root();
    let tree: PathBuf = workspace::hotkernel_dir().join("watch-tests/tree");
    variant::copy_tree(&root, &tree).check("copying the tree");
    let patch_a = variant::prepare(&root, "patch-a").check("the patch-a tree");
    let fields = variant::prepare(&root, "fields").check("the fields tree");

    let mut g = patches::boot("v1", 2);
    let before = g.snapshot();
    let vm = g.vm.name().to_owned();
    let mut w = Watch::spawn(&["watch", "--vm", &vm, "--tree", tree.to_str().unwrap()]);
    w.expect("watching", &[]);
    let failures = ["failed", "refused", "nothing to apply"];

    save_from(&patch_a, &tree, &["kernel/src/tasks/counter.rs"]);
    let line = w.expect("#1 hotpatch", &failures);
    assert!(line.contains("kernel::tasks::counter::step"), "{line}");
    assert!(line.contains("build") && line.contains("apply"), "{line}");
    assert_eq!(g.status().patches, 1, "{line}");
    assert_eq!(counter_step(&mut g), 2, "the counters run the patched code");

    save_from(
        &fields,
        &tree,
        &["kernel/src/tasks/counter.rs", "kernel/src/identity.rs"],
    );
    let line = w.expect("#2 swap", &failures);
    assert!(line.contains("records counter-state v1→v2"), "{line}");
    assert!(line.contains("1 patch(es) dropped"), "{line}");
    assert!(line.contains("staging"), "{line}");
    let status = g.status();
    assert_eq!(status.image.label.as_str(), "fields");
    assert_eq!((status.boot_seq, status.patches), (2, 0));
    assert_eq!(status.tasks as usize, before.tasks.len(), "every task kept");

    let counter = tree.join("kernel/src/tasks/counter.rs");
    let mut broken = std::fs::read_to_string(&counter).unwrap();
    broken.push_str("\nfn not_rust( {\n");
    std::fs::write(&counter, broken).unwrap();
    w.expect("error", &["#3 hotpatch", "#3 swap"]);
    let line = w.expect("#3 build failed", &["#3 hotpatch", "#3 swap"]);
    assert!(line.contains("keeps running"), "{line}");
    g.ping();
    assert_eq!(g.status().image.label.as_str(), "fields");

    let status = w.interrupt();
    assert!(status.success(), "watch exits 0 on Ctrl-C: {status}");
    let after = g.snapshot();
    assert!(!g.vm.has_exited(), "Ctrl-C stops watching, not the VM");
    g.wait_all_progress(&after, &[]);
    // The next run starts from v1's sources again (copy_tree rewrites what differs).
    variant::copy_tree(&root, &tree).check("restoring the scratch tree");
}

/// A saved edit whose new code panics: `watch` hotpatches it, the patch's health window
/// takes it back, and the line says so and why; the VM runs v1 with every task, no
/// patch applied, the counters as before. A good edit after it is hotpatched as usual.
#[test]
fn watch_says_a_hotpatch_whose_code_panics_was_reverted_and_why() {
    let root = workspace::root();
    let tree: PathBuf = workspace::hotkernel_dir().join("watch-tests/revert-tree");
    variant::copy_tree(&root, &tree).check("copying the tree");
    let panicking = variant::prepare(&root, "patch-panic").check("the patch-panic tree");
    let patch_a = variant::prepare(&root, "patch-a").check("the patch-a tree");

    let mut g = patches::boot("v1", 2);
    let before = g.snapshot();
    let vm = g.vm.name().to_owned();
    let mut w = Watch::spawn(&["watch", "--vm", &vm, "--tree", tree.to_str().unwrap()]);
    w.expect("watching", &[]);

    save_from(&panicking, &tree, &["kernel/src/tasks/counter.rs"]);
    let line = w.expect(
        "#1 hotpatch",
        &["#1 swap", "failed to build", "build failed"],
    );
    assert!(
        line.contains("reverted"),
        "the line says it was taken back: {line}"
    );
    assert!(
        line.contains("panic at kernel/src/tasks/counter.rs:") && line.contains("first call"),
        "the line says why (the panic and where): {line}"
    );
    let status = g.status();
    assert_eq!(status.image.label.as_str(), "v1", "{line}");
    assert_eq!((status.boot_seq, status.patches), (1, 0), "{line}");
    assert_eq!(status.tasks as usize, before.tasks.len(), "every task kept");
    let after = g.snapshot();
    assert_continuous(
        "the reverted hotpatch",
        &before,
        &after,
        StepRules::default(),
        &[],
    );
    assert_eq!(counter_step(&mut g), 1, "the counters run v1's code");

    save_from(&patch_a, &tree, &["kernel/src/tasks/counter.rs"]);
    let line = w.expect("#2 hotpatch", &["#2 swap", "reverted", "refused"]);
    assert!(line.contains("kernel::tasks::counter::step"), "{line}");
    assert_eq!(g.status().patches, 1, "{line}");
    assert_eq!(counter_step(&mut g), 2, "the counters run the patched code");

    let status = w.interrupt();
    assert!(status.success(), "watch exits 0 on Ctrl-C: {status}");
    variant::copy_tree(&root, &tree).check("restoring the scratch tree");
}
