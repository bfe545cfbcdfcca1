//! `hotkernel watch`: the edit–save–see loop. Watches the kernel's sources, and on every
//! save rebuilds the kernel, plans the change against the image the VM runs now (its
//! patches included, [`crate::plan`]) and applies it the cheapest safe way — a hotpatch,
//! a swap, the removal of patches — or nothing, with the reason. One line per change
//! (prefixed `[watch]`, so it stands out among console lines), the full plan and report
//! with `verbose`.
//!
//! - **Sources**: the crates a kernel build compiles ([`crate::variant::CRATES`]) in the
//!   tree (this checkout, or a scratch copy made by [`crate::variant::copy_tree`]);
//!   `.rs` and `.toml` files only, debounced ([`Options::debounce`]): a save that writes
//!   several files is one change.
//! - **Build**: `cargo build -p kernel` in the tree ([`crate::build::build_tree`]), cargo's
//!   output captured and shown when it fails; each build kept by its build id
//!   ([`crate::plan::builds`]) so the running image stays findable after a swap.
//! - **Stacking**: every patch is made from the running base to the new build, so it
//!   replaces everything changed since the base; the guest stacks it on the earlier
//!   ones. A swap drops them (the line says how many).
//! - **Failure leaves the VM as it was**: a compile error, a refusal by the generator and
//!   the host's check together, or the guest's refusal at staging changes nothing; a
//!   swap that fails after the CPUs parked rolls back (the guest's guarantee).
//!
//! What it does not guarantee: a change saved while a build runs is built next (one
//! build at a time); a file edited outside the crates (the root `Cargo.toml`) is not
//! watched.

pub mod deliver;
pub mod summary;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::build::{self, CargoOutput};
use crate::error::{Error, Result};
use crate::mailbox::Mailbox;
use crate::plan::{self, builds, Route};
use crate::vm::VmState;
use crate::workspace;

/// The prefix of every line `watch` prints.
pub const PREFIX: &str = "[watch]";

/// What to watch and where to send it.
#[derive(Debug, Clone)]
pub struct Options {
    /// The VM to update.
    pub vm: String,
    /// The workspace whose kernel crates are watched and built.
    pub tree: PathBuf,
    /// Cargo's target directory for its builds.
    pub target_dir: PathBuf,
    /// Print the plan and the report in full.
    pub verbose: bool,
    /// Quiet time that ends a change (several files saved together are one).
    pub debounce: Duration,
}

impl Options {
    /// Watching `tree` for VM `vm`: this checkout builds into `target/kernel` (shared with
    /// `hotkernel run` and `swap`), any other tree into its own `target/`.
    pub fn new(vm: &str, tree: &Path) -> Options {
        // Absolute: the file events name absolute paths.
        let tree = &tree.canonicalize().unwrap_or_else(|_| tree.to_path_buf());
        let root = workspace::root();
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        let target_dir = if same(tree, &root) {
            root.join("target/kernel")
        } else {
            tree.join("target")
        };
        Options {
            vm: vm.to_owned(),
            tree: tree.to_path_buf(),
            target_dir,
            verbose: false,
            debounce: Duration::from_millis(200),
        }
    }
}

/// Prints one `[watch]` line per call (several lines of text: each prefixed).
pub fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for line in text.lines() {
        // A closed terminal must not end the loop with a panic.
        let _ = writeln!(out, "{PREFIX} {line}");
    }
    let _ = out.flush();
}

/// The source watcher: file events under the tree's kernel crates.
pub struct Sources {
    events: Receiver<notify::Result<notify::Event>>,
    _watcher: notify::RecommendedWatcher,
    tree: PathBuf,
}

/// Whether a changed path (relative to the tree) is a source a kernel build reads.
fn is_source(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if name.starts_with('.') || name.ends_with('~') {
        return false;
    }
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("rs" | "toml")
    ) && !path.components().any(|c| c.as_os_str() == "target")
}

impl Sources {
    /// Starts watching `tree`'s kernel crates.
    pub fn watch(tree: &Path) -> Result<Sources> {
        let (tx, events) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(move |e| {
            let _ = tx.send(e);
        })
        .map_err(|e| Error::io("start watching files", std::io::Error::other(e)))?;
        let mut watched = 0;
        for krate in crate::variant::CRATES {
            let dir = tree.join(krate);
            if dir.is_dir() {
                watcher.watch(&dir, RecursiveMode::Recursive).map_err(|e| {
                    Error::io(format!("watch {}", dir.display()), std::io::Error::other(e))
                })?;
                watched += 1;
            }
        }
        if watched == 0 {
            return Err(Error::io(
                format!("watch {}", tree.display()),
                std::io::Error::other(format!(
                    "it has none of the kernel crates ({}): give a workspace with --tree",
                    crate::variant::CRATES.join(", ")
                )),
            ));
        }
        Ok(Sources {
            events,
            _watcher: watcher,
            tree: tree.to_path_buf(),
        })
    }

    /// The sources changed by the next save (relative to the tree), once `quiet` has
    /// passed without another event; `None` when `stop` is set or the watcher ended.
    pub fn next_change(&self, quiet: Duration, stop: &dyn Fn() -> bool) -> Option<Vec<PathBuf>> {
        let mut changed = BTreeSet::new();
        loop {
            if stop() {
                return None;
            }
            let wait = if changed.is_empty() {
                Duration::from_millis(100)
            } else {
                quiet
            };
            match self.events.recv_timeout(wait) {
                Ok(Ok(event)) => {
                    if matches!(event.kind, EventKind::Access(_)) {
                        continue;
                    }
                    for path in &event.paths {
                        let rel = path.strip_prefix(&self.tree).unwrap_or(path);
                        if is_source(rel) {
                            changed.insert(rel.to_path_buf());
                        }
                    }
                }
                Ok(Err(e)) => say(&format!("file watcher: {e}")),
                Err(RecvTimeoutError::Timeout) if !changed.is_empty() => {
                    return Some(changed.into_iter().collect())
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Drops events already queued (those a build caused, or saves made during it are
    /// kept: only call this before waiting for the first change).
    pub fn drain(&self) {
        while self.events.try_recv().is_ok() {}
    }
}

/// Runs the loop until `stop` returns true (Ctrl-C, or the VM `watch --run` started
/// ended). Errors of one change are printed and the loop goes on; only a watcher that
/// cannot start is an error.
pub fn run(opts: &Options, stop: &dyn Fn() -> bool) -> Result<()> {
    let sources = Sources::watch(&opts.tree)?;
    sources.drain();
    say(&format!(
        "watching {} ({}) for VM `{}`; save a file to update it, Ctrl-C stops watching",
        opts.tree.display(),
        crate::variant::CRATES.join(", "),
        opts.vm
    ));
    let mut n = 0;
    while let Some(changed) = sources.next_change(opts.debounce, stop) {
        n += 1;
        let names: Vec<String> = changed.iter().map(|p| p.display().to_string()).collect();
        say(&format!("#{n} {} changed: building", names.join(", ")));
        match change(opts, n) {
            Ok(line) => say(&line),
            Err(e) => say(&format!("#{n} failed: {e}; the VM runs on as it was")),
        }
    }
    say("stopped watching");
    Ok(())
}

/// One change: build, plan, apply; the summary line.
fn change(opts: &Options, n: u32) -> Result<String> {
    let started = Instant::now();
    let built = build::build_tree(
        &opts.tree,
        &opts.target_dir,
        &format!("watch #{n}"),
        CargoOutput::Capture,
    );
    let build_time = started.elapsed();
    let built = match built {
        Ok(elf) => elf,
        Err(Error::KernelBuild { output, status, .. }) => {
            say(output.trim_start_matches(":\n").trim_end());
            return Ok(format!(
                "#{n} build failed ({status}) after {:.1} s: cargo's output above; the VM keeps running the previous code until the next save",
                build_time.as_secs_f64()
            ));
        }
        Err(e) => return Err(e),
    };
    let elf = builds::keep(&opts.vm, &built)?;
    let state = VmState::load(&opts.vm)?;
    let mut mb = Mailbox::open(&state.paths)?;
    let running = plan::running(&state, &mut mb)?;
    let label = format!("watch-{n}");
    let plan = plan::compute(&running, &elf, &label)?;
    if opts.verbose {
        say(&plan::render::text(&plan, true));
    }
    let times = summary::Times {
        build: build_time,
        generate: plan.times.generate,
        pack: plan.times.pack,
        ..summary::Times::default()
    };
    let line = match plan.route {
        Route::Nothing | Route::Refused => summary::not_applied(n, &plan, &times),
        Route::Hotpatch => summary::hotpatch(n, &state, &mut mb, &running, &plan, times, opts)?,
        Route::Swap => summary::swap(n, &mut mb, &plan, times, opts)?,
        Route::Unpatch => summary::unpatch(n, &state, &mut mb, &running, &plan, times)?,
    };
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sources_count() {
        assert!(is_source(Path::new("/t/kernel/src/tasks/counter.rs")));
        assert!(is_source(Path::new("/t/kernel/Cargo.toml")));
        assert!(!is_source(Path::new("/t/kernel/src/.counter.rs.swp")));
        assert!(!is_source(Path::new("/t/kernel/src/counter.rs~")));
        assert!(!is_source(Path::new("/t/kernel/src/notes.md")));
        assert!(!is_source(Path::new("kernel/target/debug/x.rs")));
    }

    #[test]
    fn this_checkout_builds_where_run_builds() {
        let root = workspace::root();
        assert_eq!(
            Options::new("default", &root).target_dir,
            root.join("target/kernel")
        );
        let other = Path::new("/tmp/scratch/tree");
        assert_eq!(
            Options::new("default", other).target_dir,
            other.join("target")
        );
    }

    #[test]
    fn a_save_of_several_files_is_one_change() {
        let dir = std::env::temp_dir().join(format!("hotkernel-watch-{}", std::process::id()));
        let src = dir.join("kernel/src");
        std::fs::create_dir_all(&src).unwrap();
        let sources = Sources::watch(&dir).unwrap();
        std::fs::write(src.join("a.rs"), "a").unwrap();
        std::fs::write(src.join("b.rs"), "b").unwrap();
        std::fs::write(src.join("notes.md"), "c").unwrap();
        let changed = sources
            .next_change(Duration::from_millis(200), &|| false)
            .unwrap();
        assert_eq!(
            changed,
            [
                PathBuf::from("kernel/src/a.rs"),
                PathBuf::from("kernel/src/b.rs")
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
