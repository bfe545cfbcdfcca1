//! The builds `hotkernel watch` keeps for a VM, and which build each patch it applied
//! came from, under `target/hotkernel/watch/<vm>/`:
//!
//! | path | what |
//! | --- | --- |
//! | `builds/<build id>.elf` | every kernel `watch` built and sent (a patch's source, a swap's target) |
//! | `patches.json` | `{ "<patch id>": "<build id>" }`: the build each patch was made from |
//!
//! A swap's target must stay findable by its build id (the next change is compared
//! with it), and a rebuild overwrites cargo's output: hence the copies. Patch ids are
//! content hashes, so an entry left from an earlier VM of that name is harmless.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::AppliedPatch;
use crate::error::{Error, Result};
use crate::hotpatch::{self, elf};
use crate::workspace;

/// `target/hotkernel/watch/<vm>`.
pub fn dir(vm: &str) -> PathBuf {
    workspace::hotkernel_dir().join("watch").join(vm)
}

fn elf_path(vm: &str, build_id: &[u8]) -> PathBuf {
    dir(vm)
        .join("builds")
        .join(format!("{}.elf", hotpatch::hex(build_id)))
}

fn patches_file(vm: &str) -> PathBuf {
    dir(vm).join("patches.json")
}

/// Keeps a copy of the kernel ELF `built` for VM `vm`, named by its build id; returns
/// the copy's path (written through a rename: readers never see half of it).
pub fn keep(vm: &str, built: &Path) -> Result<PathBuf> {
    let bytes = fs::read(built).map_err(|e| Error::io(format!("read {}", built.display()), e))?;
    let id = elf::build_id(&bytes).ok_or_else(|| {
        Error::Patch(format!(
            "{} has no build id: the kernel is linked with --build-id, is this a kernel ELF?",
            built.display()
        ))
    })?;
    let path = elf_path(vm, &id);
    if fs::read(&path).is_ok_and(|old| old == bytes) {
        return Ok(path);
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
    }
    let tmp = workspace::temp_path_for(&path);
    fs::write(&tmp, &bytes).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    fs::rename(&tmp, &path)
        .map_err(|e| Error::io(format!("rename {} to {}", tmp.display(), path.display()), e))?;
    Ok(path)
}

/// The kept build with `build_id`, if there is one (as a list, to search first).
pub fn candidates(vm: &str, build_id: &[u8]) -> Vec<PathBuf> {
    let path = elf_path(vm, build_id);
    if path.is_file() {
        vec![path]
    } else {
        Vec::new()
    }
}

fn read_patches(vm: &str) -> BTreeMap<String, String> {
    fs::read(patches_file(vm))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Records that patch `patch_id` was made from the build with `build_id`.
pub fn record_patch(vm: &str, patch_id: u64, build_id: &[u8]) -> Result<()> {
    let mut map = read_patches(vm);
    map.insert(hotpatch::id_text(patch_id), hotpatch::hex(build_id));
    let path = patches_file(vm);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("create {}", parent.display()), e))?;
    }
    let text = serde_json::to_string_pretty(&map)
        .map_err(|e| Error::io("encode patches.json", std::io::Error::other(e)))?;
    let tmp = workspace::temp_path_for(&path);
    fs::write(&tmp, text).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    fs::rename(&tmp, &path)
        .map_err(|e| Error::io(format!("rename {} to {}", tmp.display(), path.display()), e))
}

/// The build the applied `patches` came from: known when `watch` made every one of them
/// (each patch replaces every function changed since the base, so the newest one's
/// build is the code that runs) and that build is still kept.
pub fn patched_from(vm: &str, patches: &[AppliedPatch]) -> Option<PathBuf> {
    let map = read_patches(vm);
    if patches.is_empty()
        || !patches
            .iter()
            .all(|p| map.contains_key(&hotpatch::id_text(p.id)))
    {
        return None;
    }
    let newest = patches.last()?;
    let build = map.get(&hotpatch::id_text(newest.id))?;
    let path = dir(vm).join("builds").join(format!("{build}.elf"));
    path.is_file().then_some(path)
}
