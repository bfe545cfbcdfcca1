//! Signing keys: the development key every build of this tree trusts, keys kept outside
//! the repository, and signing packages and patches with them.
//!
//! | where | what |
//! | --- | --- |
//! | `target/hotkernel/keys/` | the trusted directory: kernels built from this tree embed every `*.pub` in it (`kernel/build.rs`, through `HOTKERNEL_TRUSTED_KEYS`); `dev.key`/`dev.pub` made on first use |
//! | `$HOTKERNEL_KEYS`, else `$XDG_CONFIG_HOME/hotkernel/keys`, else `~/.config/hotkernel/keys` | keys made by `hotkernel key new` (outside the repository) |
//!
//! A secret key file `NAME.key` is one line `ed25519-secret <64 hex digits>` (the
//! Ed25519 seed; mode 0600); a public key file `NAME.pub` is `ed25519 <64 hex digits>
//! NAME`. Signing appends the trailer of `image_format::signature` (replacing one that
//! was there).
#![deny(unsafe_code)]

use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use image_format::signature::{self, KeyId, SignatureError, Signed, Trailer, TRAILER_LEN};

use crate::error::{Error, Result};
use crate::workspace;

/// The development key's name.
pub const DEV: &str = "dev";

/// A signing key.
#[derive(Clone)]
pub struct Key {
    /// Its file name without extension.
    pub name: String,
    /// The Ed25519 seed.
    seed: [u8; 32],
    /// The public key.
    pub public: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} {})", self.name, self.id())
    }
}

impl Key {
    /// The key id (what `inspect` and the guest show).
    pub fn id(&self) -> KeyId {
        KeyId::of(&self.public)
    }

    /// The `.pub` line.
    pub fn public_line(&self) -> String {
        format!("ed25519 {} {}\n", hex(&self.public), self.name)
    }
}

/// The directory kernels built from this tree trust: `target/hotkernel/keys`.
pub fn trusted_dir() -> PathBuf {
    workspace::hotkernel_dir().join("keys")
}

/// Where `hotkernel key new` keeps keys (outside the repository).
pub fn user_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("HOTKERNEL_KEYS").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from(".config"));
    config.join("hotkernel/keys")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn key_error(path: &Path, why: &str) -> Error {
    Error::Package(format!("key {}: {why}", path.display()))
}

/// Reads the secret key `NAME.key` in `dir`.
fn read_key(dir: &Path, name: &str) -> Result<Key> {
    let path = dir.join(format!("{name}.key"));
    let text =
        fs::read_to_string(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    let mut words = text.split_whitespace();
    if words.next() != Some("ed25519-secret") {
        return Err(key_error(&path, "not `ed25519-secret <64 hex digits>`"));
    }
    let seed = words
        .next()
        .and_then(unhex32)
        .ok_or_else(|| key_error(&path, "the secret is not 64 hex digits"))?;
    Ok(Key {
        name: name.to_owned(),
        seed,
        public: signature::public_key(&seed),
    })
}

/// Makes a new key `NAME` in `dir` (refuses to overwrite one).
pub fn create(dir: &Path, name: &str) -> Result<Key> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !ok {
        return Err(Error::Package(format!(
            "key name `{name}`: use letters, digits, `-` and `_` only"
        )));
    }
    let secret = dir.join(format!("{name}.key"));
    if secret.exists() {
        return Err(key_error(&secret, "exists already; pick another name"));
    }
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let mut seed = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| Error::io("read /dev/urandom for a new key", e))?;
    let key = Key {
        name: name.to_owned(),
        seed,
        public: signature::public_key(&seed),
    };
    write_private(&secret, &format!("ed25519-secret {}\n", hex(&seed)))?;
    let public = dir.join(format!("{name}.pub"));
    fs::write(&public, key.public_line())
        .map_err(|e| Error::io(format!("write {}", public.display()), e))?;
    Ok(key)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// The development key, made under [`trusted_dir`] on first use.
pub fn dev_key() -> Result<Key> {
    let dir = trusted_dir();
    match read_key(&dir, DEV) {
        Ok(k) => Ok(k),
        Err(_) if !dir.join(format!("{DEV}.key")).exists() => match create(&dir, DEV) {
            Ok(k) => Ok(k),
            // Another runner made it meanwhile.
            Err(_) => read_key(&dir, DEV),
        },
        Err(e) => Err(e),
    }
}

/// The key `name` (from [`user_dir`], then [`trusted_dir`]); `None`: the dev key.
pub fn load(name: Option<&str>) -> Result<Key> {
    match name {
        None | Some(DEV) => dev_key(),
        Some(name) => read_key(&user_dir(), name).or_else(|first| {
            read_key(&trusted_dir(), name).map_err(|_| {
                Error::Package(format!(
                    "{first} (make one with `hotkernel key new {name}`)"
                ))
            })
        }),
    }
}

/// Every key: (name, id, where, trusted by this tree's kernels).
pub fn list() -> Vec<(String, KeyId, PathBuf, bool)> {
    let trusted = trusted_keys();
    let mut out = Vec::new();
    for dir in [trusted_dir(), user_dir()] {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let p = e.path();
                (p.extension()? == "key").then(|| p.file_stem()?.to_str().map(str::to_owned))?
            })
            .collect();
        names.sort();
        for name in names {
            if let Ok(k) = read_key(&dir, &name) {
                let t = trusted.contains(&k.public);
                out.push((name, k.id(), dir.clone(), t));
            }
        }
    }
    out
}

/// The public keys in [`trusted_dir`]'s `.pub` files (what the next kernel build embeds).
pub fn trusted_keys() -> Vec<[u8; 32]> {
    let Ok(entries) = fs::read_dir(trusted_dir()) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pub"))
        .filter_map(|e| {
            let text = fs::read_to_string(e.path()).ok()?;
            let mut w = text.split_whitespace();
            (w.next()? == "ed25519").then_some(())?;
            unhex32(w.next()?)
        })
        .collect()
}

/// Which object `bytes` is, by magic, and its signed length (`total_size`) and header
/// digest.
fn signed_parts(bytes: &[u8]) -> Result<(Signed, usize, [u8; 32])> {
    if bytes.starts_with(&image_format::package::MAGIC) {
        let h = image_format::package::parse_header(bytes)
            .map_err(|e| Error::Package(format!("cannot sign: {e}")))?;
        Ok((Signed::Package, h.total_size() as usize, h.header_digest()))
    } else if bytes.starts_with(&image_format::hotpatch::MAGIC) {
        let v = image_format::hotpatch::parse(bytes)
            .map_err(|e| Error::Package(format!("cannot sign: {e}")))?;
        Ok((Signed::Patch, v.bytes().len(), v.header_digest()))
    } else {
        Err(Error::Package(
            "cannot sign: neither a package nor a patch (bad magic)".into(),
        ))
    }
}

/// `bytes` (a package or a patch, signed or not) signed by `key`.
pub fn sign(bytes: &[u8], key: &Key) -> Result<Vec<u8>> {
    let (what, total, digest) = signed_parts(bytes)?;
    let mut out = bytes.get(..total).unwrap_or(bytes).to_vec();
    out.extend_from_slice(&signature::sign(what, &digest, &key.seed));
    Ok(out)
}

/// `bytes` without its signature trailer.
pub fn unsigned(bytes: &[u8]) -> Result<Vec<u8>> {
    let (_, total, _) = signed_parts(bytes)?;
    Ok(bytes.get(..total).unwrap_or(bytes).to_vec())
}

/// Who signed `bytes`, for `inspect`: one line.
pub fn signer_line(bytes: &[u8]) -> String {
    let Ok((what, total, digest)) = signed_parts(bytes) else {
        return "signature: unreadable object".into();
    };
    let after = bytes.get(total..).unwrap_or(&[]);
    let trailer: std::result::Result<Trailer, SignatureError> = signature::find(after);
    match trailer {
        Err(e) => format!("signature: {} {e}", what.name()),
        Ok(t) => {
            let valid = match t.check(what, &digest) {
                Ok(_) => "valid",
                Err(_) => "INVALID (made over another header, or damaged)",
            };
            let trust = if t.is_trusted_by(&trusted_keys()) {
                "trusted by kernels built from this tree"
            } else {
                "NOT trusted by kernels built from this tree"
            };
            let name = list()
                .into_iter()
                .find(|(_, id, _, _)| *id == t.key_id())
                .map(|(n, ..)| format!(" ({n})"))
                .unwrap_or_default();
            format!(
                "signature: Ed25519 by key {}{name}, {valid}, {trust}; fingerprint {}",
                t.key_id(),
                hex(&t.public_key)
            )
        }
    }
}

/// Bytes a trailer adds.
pub const fn trailer_len() -> usize {
    TRAILER_LEN
}
