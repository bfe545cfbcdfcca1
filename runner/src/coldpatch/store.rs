//! A VM's coldpatch store, `target/hotkernel/disks/<vm>/`, and the install of a new
//! boot image into it with the atomic double rename.
//!
//! | file | what |
//! | --- | --- |
//! | `current.img` | the image the VM's next boot uses |
//! | `backup.img` | the image `current.img` replaced (the boot falls back to it) |
//! | `new.img` | an image being installed: present only between [`Step::Write`] and [`Step::Current`] |
//! | `damaged.img` | a `current.img` that failed its checksum, moved aside so it does not replace a good backup |
//! | `store.lock` | held while the store changes or a boot chooses its image |
//!
//! [`Store::install`] writes `new.img` and syncs it, reads it back and checks it, renames
//! `current.img` to `backup.img`, then `new.img` to `current.img`, and syncs the
//! directory after each rename. Each rename replaces its target atomically, so at any
//! moment `current.img` is a whole image or absent, never torn; the boot
//! ([`super::boot`]) knows what each in-between state means.
//!
//! For the tests and for anyone checking the claim, `HOTKERNEL_COLDPATCH_CRASH_AFTER`
//! set to a [`Step`] (`partial`, `write`, `backup`, `current`) aborts the process right
//! after that step, as a crash there would.

use std::fmt;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::image;
use crate::error::{Error, Result};
use crate::term::errln;
use crate::workspace;

/// Environment variable naming the step after which the install aborts.
pub const CRASH_ENV: &str = "HOTKERNEL_COLDPATCH_CRASH_AFTER";

/// The steps of an install, in order; a crash can be injected after each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Half of `new.img` written (a torn new image).
    Partial,
    /// `new.img` written and synced.
    Write,
    /// `current.img` renamed to `backup.img`: for a moment there is no current image.
    Backup,
    /// `new.img` renamed to `current.img`.
    Current,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 4] = [Step::Partial, Step::Write, Step::Backup, Step::Current];

    /// The step's name in [`CRASH_ENV`].
    pub fn name(self) -> &'static str {
        match self {
            Step::Partial => "partial",
            Step::Write => "write",
            Step::Backup => "backup",
            Step::Current => "current",
        }
    }

    /// The step called `name`.
    pub fn parse(name: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A VM's coldpatch store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub vm: String,
    pub dir: PathBuf,
}

impl Store {
    /// The store of VM `vm` (which may not exist yet).
    pub fn for_vm(vm: &str) -> Store {
        Store {
            vm: vm.to_owned(),
            dir: workspace::hotkernel_dir().join("disks").join(vm),
        }
    }

    /// True once anything was kept for the VM.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    pub fn current(&self) -> PathBuf {
        self.dir.join("current.img")
    }

    pub fn backup(&self) -> PathBuf {
        self.dir.join("backup.img")
    }

    pub fn new_image(&self) -> PathBuf {
        self.dir.join("new.img")
    }

    pub fn damaged(&self) -> PathBuf {
        self.dir.join("damaged.img")
    }

    pub(super) fn error(&self, message: impl Into<String>) -> Error {
        Error::Coldpatch {
            store: self.dir.clone(),
            message: message.into(),
        }
    }

    /// Takes the store's lock (creating the store), waiting for another holder.
    pub fn lock(&self) -> Result<StoreLock> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("create {}", self.dir.display()), e))?;
        let path = self.dir.join("store.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        file.lock()
            .map_err(|e| Error::io(format!("lock {}", path.display()), e))?;
        Ok(StoreLock { _file: file })
    }

    /// Installs `image` as the VM's current boot image (the caller holds the lock).
    /// Returns the checksum of the installed image.
    pub fn install(&self, image: &[u8], _lock: &StoreLock) -> Result<image::Kept> {
        let crash_after = crash_point().map_err(|m| self.error(m))?;
        let crash = |step: Step| {
            if crash_after == Some(step) {
                errln!("hotkernel: coldpatch: crashing after step `{step}` ({CRASH_ENV})");
                std::process::abort();
            }
        };
        let new = self.new_image();

        // 1. The new image, whole and on disk, before any rename.
        let mut file =
            File::create(&new).map_err(|e| Error::io(format!("create {}", new.display()), e))?;
        let write = |file: &mut File, bytes: &[u8]| {
            file.write_all(bytes)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io(format!("write {}", new.display()), e))
        };
        if crash_after == Some(Step::Partial) {
            write(&mut file, &image[..image.len() / 2])?;
            crash(Step::Partial);
        }
        write(&mut file, image)?;
        drop(file);
        crash(Step::Write);

        // Read back what the disk holds: only a checked image goes in.
        let kept = image::read(&new).map_err(|damage| {
            let _ = fs::remove_file(&new);
            self.error(format!(
                "the image written to {} does not check ({damage}); nothing was replaced",
                new.display()
            ))
        })?;

        // 2. current → backup. A current image that fails its checksum is moved aside
        // instead, so it never replaces a good backup.
        let current = self.current();
        if current.exists() {
            let to = match image::read(&current) {
                Ok(_) => self.backup(),
                Err(_) => self.damaged(),
            };
            self.rename(&current, &to)?;
        }
        crash(Step::Backup);

        // 3. new → current.
        self.rename(&new, &current)?;
        crash(Step::Current);
        Ok(kept)
    }

    /// Renames `from` to `to` (replacing it) and syncs the directory.
    pub(super) fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        fs::rename(from, to)
            .map_err(|e| Error::io(format!("rename {} to {}", from.display(), to.display()), e))?;
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(format!("sync the directory {}", self.dir.display()), e))
    }

    /// Removes the store (the VM's next boot is a plain one).
    pub fn remove(&self) -> Result<bool> {
        if !self.exists() {
            return Ok(false);
        }
        let _lock = self.lock()?;
        fs::remove_dir_all(&self.dir)
            .map_err(|e| Error::io(format!("remove {}", self.dir.display()), e))?;
        Ok(true)
    }
}

/// The store's lock, held while it lives.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// The step named by [`CRASH_ENV`], if set.
fn crash_point() -> std::result::Result<Option<Step>, String> {
    match std::env::var(CRASH_ENV) {
        Err(_) => Ok(None),
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => Step::parse(&v).map(Some).ok_or_else(|| {
            format!(
                "{CRASH_ENV}={v} names no step; the steps are {}",
                Step::ALL.map(Step::name).join(", ")
            )
        }),
    }
}
