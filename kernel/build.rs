//! Link settings of the kernel that belong to the crate rather than the target, and the
//! public keys this kernel trusts to sign packages and patches.
//!
//! The keys are read at build time from every `*.pub` file in the directory named by
//! `HOTKERNEL_TRUSTED_KEYS` (the runner sets it for every build, variants included), or
//! else `target/hotkernel/keys/` of the workspace this crate sits in. A `.pub` file is
//! one line, `ed25519 <64 hex digits> <name>` (`hotkernel key export` writes it). They
//! become `TRUSTED_KEYS` in `$OUT_DIR/trusted_keys.rs`; without any, the kernel trusts
//! no key and refuses every package and patch, which staging says.
use std::fmt::Write as _;
use std::path::PathBuf;
use std::{env, fs};

fn main() {
    // The update entries are called only by another image (found by symbol name in the
    // package): make them roots of the linker's section garbage collection.
    for entry in ["hk_bootstrap", "hk_resume", "hk_ap_resume"] {
        println!("cargo:rustc-link-arg-bins=--undefined={entry}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=HOTKERNEL_TRUSTED_KEYS");

    let dir = match env::var_os("HOTKERNEL_TRUSTED_KEYS") {
        Some(d) => PathBuf::from(d),
        None => {
            let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
            manifest.join("../target/hotkernel/keys")
        }
    };
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut keys: Vec<(String, [u8; 32])> = Vec::new();
    if let Ok(entries) = fs::read_dir(&dir) {
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pub"))
            .collect();
        paths.sort();
        for path in paths {
            println!("cargo:rerun-if-changed={}", path.display());
            let text = fs::read_to_string(&path).unwrap_or_default();
            match parse(&text) {
                Some(key) => keys.push((path.display().to_string(), key)),
                None => println!(
                    "cargo:warning=skipping {}: not `ed25519 <64 hex digits> <name>`",
                    path.display()
                ),
            }
        }
    }
    let mut out = String::from(
        "/// The public keys this kernel trusts (from the `.pub` files named beside each).\n\
         pub const TRUSTED_KEYS: &[[u8; 32]] = &[\n",
    );
    for (from, key) in &keys {
        let _ = writeln!(out, "    // {from}\n    {key:?},");
    }
    out.push_str("];\n");
    let path = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("trusted_keys.rs");
    if let Err(e) = fs::write(&path, out) {
        panic!("cannot write {}: {e}", path.display());
    }
}

/// `ed25519 <64 hex digits> [name]` → the key.
fn parse(text: &str) -> Option<[u8; 32]> {
    let mut words = text.split_whitespace();
    if words.next()? != "ed25519" {
        return None;
    }
    let hex = words.next()?;
    if hex.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}
