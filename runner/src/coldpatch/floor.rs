//! The VM's kept security floor: the highest security version (SVN) the runner has seen
//! run in the VM, kept in its store as `svn-floor.json`.
//!
//! The guest keeps its own floor in its update history, but a cold boot starts that
//! history again; this file is the host's memory of it across boots. It is raised
//! whenever the runner keeps a boot image for what the VM runs (after `patch apply` or
//! `patch remove`, [`super::keep`]) to that image's security version — the highest of
//! the running kernel's `.hk_svn` and the SVNs of its patches — and never lowered. The
//! boot ([`super::boot`]) refuses a kept image below it.
//!
//! `hotkernel patch forget --vm <name>` removes the store, and this file with it: the
//! way to start a VM's kept history again.

use std::fs::{self, File};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::image;
use super::store::{Store, StoreLock};
use crate::error::{Error, Result};
use crate::workspace;

/// The file's name in the store.
pub const FILE: &str = "svn-floor.json";

/// The VM's kept floor and what set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Floor {
    /// The highest security version seen run in the VM.
    pub svn: u32,
    /// What raised it to `svn`, for people reading the file.
    pub raised_by: String,
    /// When (Unix time, ms).
    pub unix_ms: u64,
}

/// The store's floor; `Ok(None)` when it has none (nothing kept yet, or a store made
/// before floors were kept), `Err` with what is wrong when the file cannot be read.
pub fn read(store: &Store) -> std::result::Result<Option<Floor>, String> {
    let path = store.dir.join(FILE);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{FILE} is not readable ({e})")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{FILE} is not readable ({e})")),
    }
}

/// The highest security version of the store's images that check (0 if none does): the
/// floor to go by when the file is lost, since each of them ran in the VM.
pub fn of_images(store: &Store) -> u32 {
    [store.current(), store.new_image(), store.backup()]
        .iter()
        .filter_map(|p| image::read(p).ok())
        .map(|k| k.meta.svn)
        .max()
        .unwrap_or(0)
}

/// Raises the store's floor to `svn` (the caller holds the lock); a floor already at or
/// above it stays. Written to a temporary file and renamed over the old one, so the
/// file is always whole. Returns the floor now kept.
pub fn raise(store: &Store, svn: u32, raised_by: &str, _lock: &StoreLock) -> Result<Floor> {
    let svn = match read(store) {
        Ok(Some(kept)) if kept.svn >= svn => return Ok(kept),
        Ok(_) => svn,
        // What the file said is lost; the kept images ran, so their SVNs are a floor.
        Err(_) => svn.max(of_images(store)),
    };
    let floor = Floor {
        svn,
        raised_by: raised_by.to_owned(),
        unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    let path = store.dir.join(FILE);
    let tmp = workspace::temp_path_for(&path);
    let json = serde_json::to_vec_pretty(&floor)
        .map_err(|e| store.error(format!("describe the floor: {e}")))?;
    File::create(&tmp)
        .and_then(|mut f| f.write_all(&json).and_then(|()| f.sync_all()))
        .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    store.rename(&tmp, &path)?;
    Ok(floor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_only_rises_and_a_lost_file_falls_back_to_the_images() {
        let dir = std::env::temp_dir().join(format!("hk-floor-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let store = Store {
            vm: "f".into(),
            dir: dir.clone(),
        };
        let lock = store.lock().unwrap();
        assert_eq!(read(&store), Ok(None));
        assert_eq!(raise(&store, 2, "a", &lock).unwrap().svn, 2);
        assert_eq!(raise(&store, 1, "b", &lock).unwrap().raised_by, "a");
        assert_eq!(read(&store).unwrap().unwrap().svn, 2);
        assert_eq!(raise(&store, 3, "c", &lock).unwrap().svn, 3);

        fs::write(store.backup(), image::fake_image_with_svn(5, vec![])).unwrap();
        fs::write(dir.join(FILE), b"{").unwrap();
        assert!(read(&store).unwrap_err().contains(FILE));
        assert_eq!(of_images(&store), 5);
        assert_eq!(raise(&store, 1, "d", &lock).unwrap().svn, 5);
        drop(lock);
        fs::remove_dir_all(&dir).unwrap();
    }
}
