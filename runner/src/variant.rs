//! Kernel variants as edits: a variant is an edit file `tests/variants/<name>.patch`
//! (a unified diff against this tree, as `git diff` writes it), applied to a scratch
//! copy of the sources a kernel build compiles — the way kpatch keeps its integration
//! tests as `.patch` files against a kernel tree. The kernel's own sources read as one
//! kernel (`v1`); a test or the demo that asks for `v2` builds exactly what a developer
//! who made v2's edit would build.
//!
//! [`prepare`] makes `target/hotkernel/variants/<name>/tree`: a workspace holding the
//! crates in [`CRATES`] as this tree has them with the edit applied, under this tree's
//! own root manifest (its members cut to those crates). The variant builds into a
//! target directory of its own ([`target_dir`]): its packages have the same names,
//! versions and relative paths as this tree's, so cargo gives them the same metadata
//! hashes — the same symbol names, the same order of generic code, and the same panic
//! location strings — and an empty edit would build this tree's kernel byte for byte.
//! A variant therefore differs from `v1` exactly where its edit does. A file is
//! written only when its bytes change, so an unchanged variant rebuilds nothing.
//!
//! The edit is applied with `git apply` in a directory of its own (`…/apply`); an edit
//! that no longer applies is [`Error::VariantEdit`], with the variant's name, git's
//! message and every rejected hunk.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Error, Result};
use crate::workspace;

/// Where the edit files are, from the workspace root.
pub const VARIANTS_DIR: &str = "tests/variants";

/// The workspace crates a kernel build compiles (copied into every variant's tree).
pub const CRATES: &[&str] = &["kernel", "updater", "image-format", "record-derive"];

/// The parts of a crate a build reads.
const CRATE_PARTS: &[&str] = &["Cargo.toml", "build.rs", "src"];

/// The edit file of variant `name`.
pub fn edit_file(root: &Path, name: &str) -> PathBuf {
    root.join(VARIANTS_DIR).join(format!("{name}.patch"))
}

/// The variants this tree has edit files for: the numbered versions first (`v2`, `v3`,
/// …), then the others by name.
pub fn known(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root.join(VARIANTS_DIR))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".patch").map(str::to_owned)
        })
        .collect();
    names.sort_by_key(|n| {
        let version = n.strip_prefix('v').and_then(|d| d.parse::<u32>().ok());
        (version.is_none(), version, n.clone())
    });
    names
}

/// Where variant `name`'s scratch files live.
pub fn dir(name: &str) -> PathBuf {
    workspace::hotkernel_dir().join("variants").join(name)
}

/// Cargo's target directory for variant `name` (one per variant: its packages are
/// this tree's by name and version, so sharing one would mix their artifacts).
pub fn target_dir(name: &str) -> PathBuf {
    dir(name).join("target")
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |e| Error::io(what, e)
}

/// Every file of the crates a kernel build compiles, relative to `root`, with its bytes.
fn sources(root: &Path) -> Result<BTreeMap<PathBuf, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for krate in CRATES {
        for part in CRATE_PARTS {
            let rel = Path::new(krate).join(part);
            let path = root.join(&rel);
            if path.is_file() {
                let bytes = fs::read(&path).map_err(io(format!("read {}", path.display())))?;
                out.insert(rel, bytes);
            } else if path.is_dir() {
                collect(root, &rel, &mut out)?;
            }
        }
    }
    Ok(out)
}

fn collect(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) -> Result<()> {
    let dir = root.join(rel);
    for entry in fs::read_dir(&dir).map_err(io(format!("list {}", dir.display())))? {
        let entry = entry.map_err(io(format!("list {}", dir.display())))?;
        let child = rel.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(io(format!("stat {}", entry.path().display())))?;
        if kind.is_dir() {
            collect(root, &child, out)?;
        } else if kind.is_file() {
            let bytes =
                fs::read(entry.path()).map_err(io(format!("read {}", entry.path().display())))?;
            out.insert(child, bytes);
        }
    }
    Ok(())
}

/// `git apply` as a plain patch tool in `dir`: the scratch directories are inside this
/// repository's `target/`, and git run there would otherwise apply the paths to the
/// enclosing repository's top level and skip them silently.
fn git_apply(dir: &Path, args: &[&str], patch: &Path) -> Result<std::process::Output> {
    Command::new("git")
        .current_dir(dir)
        .env("GIT_CEILING_DIRECTORIES", dir.parent().unwrap_or(dir))
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .arg("apply")
        .args(args)
        .arg(patch)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingTool {
                tool: "git".into(),
                install: "install git (Debian: apt-get install git): variants are applied with `git apply`".into(),
            },
            _ => Error::io(format!("run `git apply` in {}", dir.display()), e),
        })
}

/// The paths the edit touches (`git apply --numstat`).
fn touched(name: &str, scratch: &Path, patch: &Path) -> Result<Vec<PathBuf>> {
    let out = git_apply(scratch, &["--numstat"], patch)?;
    if !out.status.success() {
        return Err(Error::VariantEdit {
            variant: name.into(),
            edit: patch.display().to_string(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            rejected: String::new(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut paths = Vec::new();
    for line in text.lines() {
        let Some(path) = line.splitn(3, '\t').nth(2) else {
            continue;
        };
        if path.contains(" => ") {
            return Err(Error::VariantEdit {
                variant: name.into(),
                edit: patch.display().to_string(),
                message: format!("it renames {path}; an edit file may change, add or delete files, not rename them"),
                rejected: String::new(),
            });
        }
        let path = PathBuf::from(path);
        if !CRATES.iter().any(|c| path.starts_with(c)) {
            return Err(Error::VariantEdit {
                variant: name.into(),
                edit: patch.display().to_string(),
                message: format!(
                    "it edits {}, outside the crates a kernel build compiles ({})",
                    path.display(),
                    CRATES.join(", ")
                ),
                rejected: String::new(),
            });
        }
        paths.push(path);
    }
    Ok(paths)
}

/// Applies the edit to copies of the files it touches; returns each touched file's
/// new bytes (`None`: the edit deletes it).
fn apply(
    name: &str,
    patch: &Path,
    sources: &BTreeMap<PathBuf, Vec<u8>>,
) -> Result<BTreeMap<PathBuf, Option<Vec<u8>>>> {
    let scratch = dir(name).join("apply");
    let fresh = |what: &str| -> Result<()> {
        if scratch.exists() {
            fs::remove_dir_all(&scratch).map_err(io(format!("clear {}", scratch.display())))?;
        }
        fs::create_dir_all(&scratch).map_err(io(format!("create {what} {}", scratch.display())))
    };
    fresh("scratch directory")?;
    let paths = touched(name, &scratch, patch)?;
    let place = |paths: &[PathBuf]| -> Result<()> {
        for rel in paths {
            if let Some(bytes) = sources.get(rel) {
                let to = scratch.join(rel);
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent)
                        .map_err(io(format!("create {}", parent.display())))?;
                }
                fs::write(&to, bytes).map_err(io(format!("write {}", to.display())))?;
            }
        }
        Ok(())
    };
    place(&paths)?;
    let out = git_apply(&scratch, &["--whitespace=nowarn"], patch)?;
    if !out.status.success() {
        let message = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        // Again with --reject, for the hunks themselves.
        fresh("scratch directory")?;
        place(&paths)?;
        let _ = git_apply(&scratch, &["--reject", "--whitespace=nowarn"], patch)?;
        let mut rejected = String::new();
        for rel in &paths {
            let mut rej = scratch.join(rel).into_os_string();
            rej.push(".rej");
            if let Ok(text) = fs::read_to_string(&rej) {
                rejected.push_str(&text);
                if !rejected.ends_with('\n') {
                    rejected.push('\n');
                }
            }
        }
        return Err(Error::VariantEdit {
            variant: name.into(),
            edit: patch.display().to_string(),
            message,
            rejected,
        });
    }
    let mut edited = BTreeMap::new();
    for rel in paths {
        let path = scratch.join(&rel);
        let bytes = match fs::read(&path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        };
        edited.insert(rel, bytes);
    }
    Ok(edited)
}

/// The tree's root manifest: this workspace's, with only [`CRATES`] as members.
fn manifest(root: &Path, name: &str) -> Result<Vec<u8>> {
    let path = root.join("Cargo.toml");
    let text = fs::read_to_string(&path).map_err(io(format!("read {}", path.display())))?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| Error::VariantEdit {
        variant: name.into(),
        edit: path.display().to_string(),
        message: format!("the workspace manifest does not parse: {e}"),
        rejected: String::new(),
    })?;
    let members: toml_edit::Array = CRATES.iter().copied().collect();
    doc["workspace"]["members"] = toml_edit::value(members.clone());
    doc["workspace"]["default-members"] = toml_edit::value(members);
    // The host crates' dev settings name packages the tree does not have (cargo would
    // warn about each on every build).
    if let Some(dev) = doc
        .get_mut("profile")
        .and_then(|p| p.get_mut("dev"))
        .and_then(|d| d.as_table_like_mut())
    {
        dev.remove("package");
    }
    Ok(doc.to_string().into_bytes())
}

/// Writes `bytes` to `path` unless it already holds them (keeps its modification time).
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io(format!("create {}", parent.display())))?;
    }
    fs::write(path, bytes).map_err(io(format!("write {}", path.display())))
}

/// Removes files under the tree's crates that the variant does not have.
fn remove_stale(tree: &Path, keep: &BTreeSet<PathBuf>) -> Result<()> {
    let mut present = BTreeMap::new();
    for krate in CRATES {
        if tree.join(krate).is_dir() {
            collect(tree, Path::new(krate), &mut present)?;
        }
    }
    for rel in present.keys().filter(|rel| !keep.contains(*rel)) {
        let path = tree.join(rel);
        fs::remove_file(&path).map_err(io(format!("remove {}", path.display())))?;
    }
    Ok(())
}

/// Makes (or brings up to date) variant `name`'s tree; returns its root.
pub fn prepare(root: &Path, name: &str) -> Result<PathBuf> {
    let patch = edit_file(root, name);
    if !patch.is_file() {
        let mut known = vec![crate::build::Variant::DEFAULT.to_owned()];
        known.extend(self::known(root));
        return Err(Error::UnknownVariant {
            name: name.into(),
            known: known.join(", "),
        });
    }
    let mut files = sources(root)?;
    for (rel, bytes) in apply(name, &patch, &files)? {
        match bytes {
            Some(b) => files.insert(rel, b),
            None => files.remove(&rel),
        };
    }
    let tree = dir(name).join("tree");
    write_tree(root, name, &files, &tree)?;
    Ok(tree)
}

/// Writes `files` (the crates' sources), the cut manifest and the lock file into `tree`,
/// each only when its bytes change, and removes the files the crates no longer have.
fn write_tree(
    root: &Path,
    name: &str,
    files: &BTreeMap<PathBuf, Vec<u8>>,
    tree: &Path,
) -> Result<()> {
    for (rel, bytes) in files {
        write_if_changed(&tree.join(rel), bytes)?;
    }
    remove_stale(tree, &files.keys().cloned().collect())?;
    write_if_changed(&tree.join("Cargo.toml"), &manifest(root, name)?)?;
    if let Ok(bytes) = fs::read(root.join("Cargo.lock")) {
        write_if_changed(&tree.join("Cargo.lock"), &bytes)?;
    }
    Ok(())
}

/// Makes (or brings up to date) `tree` as a copy of this tree's kernel crates without
/// any edit, laid out as a variant's tree: it builds `v1` byte for byte (same package
/// names, versions and relative paths), so edits written into it afterwards can be
/// compared with a VM that runs `v1`. Scratch trees for `hotkernel watch --tree`.
pub fn copy_tree(root: &Path, tree: &Path) -> Result<()> {
    write_tree(root, "copy", &sources(root)?, tree)?;
    // The kernel target's flags, for a copy outside this checkout (cargo finds a
    // `.cargo/config.toml` in the tree or above it).
    let config = Path::new(".cargo/config.toml");
    match fs::read(root.join(config)) {
        Ok(bytes) => write_if_changed(&tree.join(config), &bytes),
        Err(e) => Err(Error::io(
            format!("read {}", root.join(config).display()),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("hotkernel-variant-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn every_edit_file_of_this_tree_applies() {
        let root = workspace::root();
        let files = sources(&root).unwrap();
        let names = known(&root);
        assert!(names.iter().any(|n| n == "v2"), "{names:?}");
        for name in names {
            let edited =
                apply(&name, &edit_file(&root, &name), &files).unwrap_or_else(|e| panic!("{e}"));
            assert!(!edited.is_empty(), "{name} edits nothing");
        }
    }

    #[test]
    fn an_edit_that_no_longer_applies_names_the_variant_and_the_hunk() {
        let dir = temp("stale");
        let patch = dir.join("stale.patch");
        fs::write(
            &patch,
            "--- a/kernel/src/main.rs\n+++ b/kernel/src/main.rs\n@@ -1,1 +1,1 @@\n-this line is not in main.rs\n+nor is this one\n",
        )
        .unwrap();
        let files = sources(&workspace::root()).unwrap();
        let e = apply("stale-test", &patch, &files).unwrap_err().to_string();
        assert!(e.contains("variant `stale-test`"), "{e}");
        assert!(
            e.contains("-this line is not in main.rs"),
            "the rejected hunk: {e}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_edit_outside_the_kernel_crates_is_refused() {
        let dir = temp("outside");
        let patch = dir.join("outside.patch");
        fs::write(
            &patch,
            "--- a/runner/src/main.rs\n+++ b/runner/src/main.rs\n@@ -1,1 +1,1 @@\n-a\n+b\n",
        )
        .unwrap();
        let files = sources(&workspace::root()).unwrap();
        let e = apply("outside-test", &patch, &files)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("outside the crates a kernel build compiles"),
            "{e}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_manifest_keeps_the_kernel_crates_and_their_version() {
        let text = String::from_utf8(manifest(&workspace::root(), "patch_a").unwrap()).unwrap();
        let doc: toml_edit::DocumentMut = text.parse().unwrap();
        let members: Vec<&str> = doc["workspace"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(members, CRATES);
        let ours: toml_edit::DocumentMut =
            std::fs::read_to_string(workspace::root().join("Cargo.toml"))
                .unwrap()
                .parse()
                .unwrap();
        assert_eq!(
            doc["workspace"]["package"]["version"].as_str(),
            ours["workspace"]["package"]["version"].as_str()
        );
        assert!(text.contains("[profile.kernel]"));
    }
}
