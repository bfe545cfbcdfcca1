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
//! An image that checks but whose security version (its description's `svn`) is below
//! the VM's kept floor ([`super::floor`]) is refused as if it did not check, and the
//! console line names it and both numbers, e.g. `current.img refused: security version
//! 1 is below 2, the highest this VM has run; booting …/backup.img — …`. When every
//! image is refused and the kernel's own `.hk_svn` is below the floor as well, the
//! launch is refused with an error naming both numbers and the way out (a kernel at or
//! above the floor, or `hotkernel patch forget`): a plain boot would be the rollback.
//!
//! An image whose kernel is another build than the one being booted (the developer
//! rebuilt the kernel since) is not used: its patches were made for that other build.
//! The choice comes back as a [`BootChoice`] with one line for the console.

use std::fs;
use std::path::{Path, PathBuf};

use super::floor;
use super::image::{self, short, Damage, Kept};
use super::store::Store;
use crate::error::Result;
use crate::hotpatch::id_text;

/// Where the boot image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `current.img`.
    Current,
    /// `new.img` of an install that crashed after committing, now `current.img`.
    Finished,
    /// `backup.img`: the current image was missing, damaged or below the floor.
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
    /// The VM's kept security floor the choice went by (0: none kept).
    pub floor: u32,
    /// One line for the console: what boots and why.
    pub line: String,
}

/// What the choice has to say besides what boots: refusals below the floor come first
/// in the console line, other notes (damage, repairs) after it.
#[derive(Debug, Default)]
struct Notes {
    refused: Vec<String>,
    other: Vec<String>,
}

/// Chooses the boot image of VM `vm` booting `kernel_elf`; `Ok(None)` when the VM has
/// no coldpatch store, or one without anything in it.
///
/// A kept image whose security version is below the VM's kept floor ([`floor`]) is not
/// booted: the choice falls to the next candidate. When it falls all the way to the
/// plain boot image and `kernel_elf`'s own security version is below the floor too,
/// the launch is refused (an error saying both numbers and the way out): booting it
/// would be exactly the rollback the floor is there to prevent.
pub fn choose(vm: &str, kernel_elf: &Path) -> Result<Option<BootChoice>> {
    let store = Store::for_vm(vm);
    if !store.exists() {
        return Ok(None);
    }
    let mut notes = Notes::default();
    let (picked, floor) = match store.lock() {
        Ok(_lock) => {
            let floor = kept_floor(&store, &mut notes.other);
            (pick(&store, floor, &mut notes), floor)
        }
        Err(e) => {
            notes
                .other
                .push(format!("the store cannot be locked ({e})"));
            (None, 0)
        }
    };
    let Some((source, path, kept)) = picked else {
        // A store whose first install failed holds no image: nothing to say.
        if notes.refused.is_empty() && notes.other.is_empty() && floor == 0 {
            return Ok(None);
        }
        let why = if notes.refused.is_empty() {
            "no kept image checks"
        } else {
            "no other kept image checks"
        };
        return plain(&store, kernel_elf, floor, notes, why).map(Some);
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
        return plain(&store, kernel_elf, floor, notes, &why).map(Some);
    }
    let ids: Vec<String> = kept.ids.iter().map(|id| id_text(*id)).collect();
    let mut line = String::from("coldpatch: ");
    for r in &notes.refused {
        line.push_str(&format!("{r}; "));
    }
    line.push_str(&format!(
        "booting {} — {} kept patch(es){}, security version {}, sha256 {} checked",
        path.display(),
        kept.ids.len(),
        if ids.is_empty() {
            String::new()
        } else {
            format!(" [{}]", ids.join(", "))
        },
        kept.meta.svn,
        short(&kept.checksum)
    ));
    if !notes.other.is_empty() {
        line.push_str(&format!(" ({})", notes.other.join("; ")));
    }
    Ok(Some(BootChoice {
        source,
        image: Some(path),
        patches: kept.ids,
        checksum: Some(kept.checksum),
        floor,
        line,
    }))
}

/// The VM's kept floor (the caller holds the lock); 0 when none is kept. When the file
/// cannot be read, the highest SVN of the kept images stands in for it, and a note says so.
fn kept_floor(store: &Store, notes: &mut Vec<String>) -> u32 {
    match floor::read(store) {
        Ok(Some(f)) => f.svn,
        Ok(None) => 0,
        Err(why) => {
            let svn = floor::of_images(store);
            notes.push(format!(
                "{why}: going by the highest security version of the kept images, {svn}"
            ));
            svn
        }
    }
}

/// The line a refused image leaves.
fn refused_line(name: &str, svn: u32, floor: u32) -> String {
    format!("{name} refused: security version {svn} is below {floor}, the highest this VM has run")
}

/// The kernel's plain boot image, if its own security version is not below `floor`.
fn plain(
    store: &Store,
    kernel_elf: &Path,
    floor: u32,
    notes: Notes,
    why: &str,
) -> Result<BootChoice> {
    let mut reasons = notes.refused;
    reasons.extend(notes.other);
    reasons.push(why.to_owned());
    if floor > 0 {
        let svn = fs::read(kernel_elf)
            .map_err(|e| e.to_string())
            .and_then(|b| image_format::package::elf_svn(&b).map_err(|e| e.to_string()));
        let refusal = match svn {
            Ok(svn) if svn >= floor => None,
            Ok(svn) => Some(format!(
                "the kernel {} has security version {svn}, below {floor}, the highest this VM has run",
                kernel_elf.display()
            )),
            Err(e) => Some(format!(
                "the security version of the kernel {} cannot be read ({e}) and this VM has run {floor}",
                kernel_elf.display()
            )),
        };
        if let Some(refusal) = refusal {
            return Err(store.error(format!(
                "VM `{}` is not launched: no kept image can boot ({}), and {refusal}. Launch it \
                 with a kernel whose `.hk_svn` is at least {floor}, or drop the VM's kept images \
                 and its kept floor with `hotkernel patch forget --vm {}`",
                store.vm,
                reasons.join("; "),
                store.vm
            )));
        }
    }
    Ok(BootChoice {
        source: Source::Plain,
        image: None,
        patches: Vec::new(),
        checksum: None,
        floor,
        line: format!(
            "coldpatch: booting the kernel without kept patches: {}",
            reasons.join("; ")
        ),
    })
}

/// The image to boot, following the table in the module docs, skipping images below
/// `floor` (the caller holds the lock).
fn pick(store: &Store, floor: u32, notes: &mut Notes) -> Option<(Source, PathBuf, Kept)> {
    let (current, new) = (store.current(), store.new_image());
    // Whether a checked image may boot; a refusal is noted.
    let mut admit = |name: &str, kept: &Kept| {
        let ok = kept.meta.svn >= floor;
        if !ok {
            notes.refused.push(refused_line(name, kept.meta.svn, floor));
        }
        ok
    };
    let mut other = Vec::new();
    let mut found = None;
    match image::read(&current) {
        Ok(kept) => {
            if new.exists() {
                let _ = fs::remove_file(&new);
                other.push("an install that never committed was abandoned: new.img removed".into());
            }
            if admit("current.img", &kept) {
                found = Some((Source::Current, current.clone(), kept));
            }
        }
        Err(Damage::Missing) => {}
        Err(damage) => other.push(format!("current.img: {damage}")),
    }
    if found.is_none() && new.exists() {
        match image::read(&new) {
            Ok(kept) => {
                let finished = (|| {
                    if current.exists() {
                        store.rename(&current, &store.damaged())?;
                    }
                    store.rename(&new, &current)
                })();
                let at = match finished {
                    Ok(()) => {
                        other.push("finished an interrupted install: new.img → current.img".into());
                        current.clone()
                    }
                    // Boot it where it is; the next install or boot finishes the job.
                    Err(e) => {
                        other.push(format!("could not finish an interrupted install ({e})"));
                        new.clone()
                    }
                };
                if admit("current.img (a finished install)", &kept) {
                    found = Some((Source::Finished, at, kept));
                }
            }
            Err(Damage::Missing) => {}
            Err(damage) => {
                let _ = fs::remove_file(&new);
                other.push(format!("new.img (an unfinished install) {damage}: removed"));
            }
        }
    }
    if found.is_none() {
        match image::read(&store.backup()) {
            Ok(kept) => {
                if admit("backup.img", &kept) {
                    found = Some((Source::Backup, store.backup(), kept));
                }
            }
            Err(Damage::Missing) => {}
            Err(damage) => other.push(format!("backup.img: {damage}")),
        }
    }
    notes.other.extend(other);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in a fresh directory with `current.img` and `backup.img` of the given
    /// security versions (`None`: no such image).
    fn store_with(tag: &str, current: Option<u32>, backup: Option<u32>) -> Store {
        let dir = std::env::temp_dir().join(format!("hk-boot-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let store = Store {
            vm: tag.into(),
            dir,
        };
        for (path, svn) in [(store.current(), current), (store.backup(), backup)] {
            if let Some(svn) = svn {
                fs::write(path, image::fake_image_with_svn(svn, vec![])).unwrap();
            }
        }
        store
    }

    #[test]
    fn an_image_below_the_floor_falls_to_the_backup_and_says_both_numbers() {
        let store = store_with("below", Some(1), Some(2));
        let mut notes = Notes::default();
        let (source, path, kept) = pick(&store, 2, &mut notes).expect("the backup");
        assert_eq!((source, path), (Source::Backup, store.backup()));
        assert_eq!(kept.meta.svn, 2);
        assert_eq!(
            notes.refused,
            ["current.img refused: security version 1 is below 2, the highest this VM has run"]
        );
        // At or below the image's SVN the current image boots.
        for floor in [0, 1] {
            let mut notes = Notes::default();
            let (source, ..) = pick(&store, floor, &mut notes).unwrap();
            assert_eq!(source, Source::Current);
            assert!(notes.refused.is_empty());
        }
        fs::remove_dir_all(&store.dir).unwrap();
    }

    #[test]
    fn when_every_image_is_below_the_floor_none_is_picked() {
        let store = store_with("all", Some(1), Some(2));
        let mut notes = Notes::default();
        assert!(pick(&store, 3, &mut notes).is_none());
        assert_eq!(notes.refused.len(), 2, "{:?}", notes.refused);
        assert!(notes.refused[1].starts_with("backup.img refused: security version 2 is below 3"));
        fs::remove_dir_all(&store.dir).unwrap();
    }

    #[test]
    fn a_plain_boot_below_the_floor_is_refused_with_the_way_out() {
        let store = store_with("plain", None, None);
        let notes = Notes {
            refused: vec![refused_line("current.img", 1, 2)],
            other: vec![],
        };
        // No readable kernel: its SVN is unknown, so it cannot be shown to be at the floor.
        let e = plain(&store, &store.dir.join("no-kernel"), 2, notes, "none left").unwrap_err();
        let e = e.to_string();
        assert!(e.contains("is not launched"), "{e}");
        assert!(
            e.contains("current.img refused: security version 1 is below 2"),
            "{e}"
        );
        assert!(e.contains("hotkernel patch forget --vm plain"), "{e}");
        // Without a floor there is nothing to compare: the plain image boots.
        let c = plain(
            &store,
            &store.dir.join("no-kernel"),
            0,
            Notes::default(),
            "x",
        )
        .unwrap();
        assert_eq!(c.source, Source::Plain);
        fs::remove_dir_all(&store.dir).unwrap();
    }
}
