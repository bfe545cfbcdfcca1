//! The boot of a VM that has a coldpatch store: which image it uses.
//!
//! The rename of `current.img` away (to `backup.img`) is the install's commit point.
//! So, under the store's lock:
//!
//! | what is on disk | what boots |
//! | --- | --- |
//! | `current.img` checks | it; a `new.img` beside it is an install that never committed, and is removed |
//! | no good `current.img`, `new.img` checks | the install committed and crashed before its last rename: it is finished (`new.img` → `current.img`) and booted |
//! | neither, `backup.img` checks | the backup |
//! | none checks | the kernel's plain boot image |
//!
//! An image whose kernel is another build than the one being booted (the developer
//! rebuilt the kernel since) is not used: its patches were made for that other build.
//! The choice comes back as a [`BootChoice`] with one line for the console.

use std::fs;
use std::path::{Path, PathBuf};

use super::image::{self, short, Damage, Kept};
use super::store::Store;
use crate::hotpatch::id_text;

/// Where the boot image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `current.img`.
    Current,
    /// `new.img` of an install that crashed after committing, now `current.img`.
    Finished,
    /// `backup.img`: the current image was missing or damaged.
    Backup,
    /// No kept image could be used: the kernel's own boot image.
    Plain,
}

/// What a VM with a coldpatch store boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootChoice {
    pub source: Source,
    /// The image to boot; `None` for the kernel's plain boot image.
    pub image: Option<PathBuf>,
    /// The patches the boot re-applies, bottom first.
    pub patches: Vec<u64>,
    /// The booted image's checksum (hex SHA-256), checked just now.
    pub checksum: Option<String>,
    /// One line for the console: what boots and why.
    pub line: String,
}

/// Chooses the boot image of VM `vm` booting `kernel_elf`; `None` when the VM has no
/// coldpatch store, or one without any image in it.
pub fn choose(vm: &str, kernel_elf: &Path) -> Option<BootChoice> {
    let store = Store::for_vm(vm);
    if !store.exists() {
        return None;
    }
    let mut notes = Vec::new();
    let picked = match store.lock() {
        Ok(_lock) => pick(&store, &mut notes),
        Err(e) => {
            notes.push(format!("the store cannot be locked ({e})"));
            None
        }
    };
    let Some((source, path, kept)) = picked else {
        // A store whose first install failed holds no image: nothing to say.
        if notes.is_empty() {
            return None;
        }
        return Some(plain(notes, "no kept image checks"));
    };
    let booting = image::build_id_of(kernel_elf);
    if booting.as_deref() != Some(kept.meta.kernel_build_id.as_str()) {
        let why = format!(
            "the kept image ({} patch(es)) is for kernel build {}, this boot's kernel is build {} \
             (`hotkernel patch forget --vm {vm}` drops the kept patches)",
            kept.ids.len(),
            short(&kept.meta.kernel_build_id),
            booting.as_deref().map_or("unknown", short)
        );
        return Some(plain(notes, &why));
    }
    let ids: Vec<String> = kept.ids.iter().map(|id| id_text(*id)).collect();
    let mut line = format!(
        "coldpatch: booting {} — {} kept patch(es){}, sha256 {} checked",
        path.display(),
        kept.ids.len(),
        if ids.is_empty() {
            String::new()
        } else {
            format!(" [{}]", ids.join(", "))
        },
        short(&kept.checksum)
    );
    if !notes.is_empty() {
        line.push_str(&format!(" ({})", notes.join("; ")));
    }
    Some(BootChoice {
        source,
        image: Some(path),
        patches: kept.ids,
        checksum: Some(kept.checksum),
        line,
    })
}

fn plain(notes: Vec<String>, why: &str) -> BootChoice {
    let mut reasons = notes;
    reasons.push(why.to_owned());
    BootChoice {
        source: Source::Plain,
        image: None,
        patches: Vec::new(),
        checksum: None,
        line: format!(
            "coldpatch: booting the kernel without kept patches: {}",
            reasons.join("; ")
        ),
    }
}

/// The image to boot, following the table in the module docs (the caller holds the lock).
fn pick(store: &Store, notes: &mut Vec<String>) -> Option<(Source, PathBuf, Kept)> {
    let (current, new) = (store.current(), store.new_image());
    match image::read(&current) {
        Ok(kept) => {
            if new.exists() {
                let _ = fs::remove_file(&new);
                notes.push("an install that never committed was abandoned: new.img removed".into());
            }
            return Some((Source::Current, current, kept));
        }
        Err(Damage::Missing) => {}
        Err(damage) => notes.push(format!("current.img: {damage}")),
    }
    match image::read(&new) {
        Ok(kept) => {
            let finished = (|| {
                if current.exists() {
                    store.rename(&current, &store.damaged())?;
                }
                store.rename(&new, &current)
            })();
            match finished {
                Ok(()) => {
                    notes.push("finished an interrupted install: new.img → current.img".into());
                    return Some((Source::Finished, current, kept));
                }
                // Boot it where it is; the next install or boot finishes the job.
                Err(e) => {
                    notes.push(format!("could not finish an interrupted install ({e})"));
                    return Some((Source::Finished, new, kept));
                }
            }
        }
        Err(Damage::Missing) => {}
        Err(damage) => {
            let _ = fs::remove_file(&new);
            notes.push(format!("new.img (an unfinished install) {damage}: removed"));
        }
    }
    match image::read(&store.backup()) {
        Ok(kept) => Some((Source::Backup, store.backup(), kept)),
        Err(Damage::Missing) => None,
        Err(damage) => {
            notes.push(format!("backup.img: {damage}"));
            None
        }
    }
}
