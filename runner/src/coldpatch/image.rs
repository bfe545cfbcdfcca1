//! The coldpatch image: one file that is both a bootable disk and its own proof of
//! integrity.
//!
//! It is the `bootloader` crate's BIOS disk image of the VM's kernel with the patch set
//! (`image_format::hotpatch::set`) as the bootloader's ramdisk, followed by a copy of
//! the patch set (so the next coldpatch can read the kept patches back without
//! opening the disk's FAT partition), a JSON description, and a footer whose last 32
//! bytes are the SHA-256 of every byte before them. The whole file is a multiple of
//! 512 bytes; the guest sees the part after the disk image as unused sectors.
//!
//! | from the end | size | field |
//! | --- | --- | --- |
//! | −64 | 8 | magic `HKCOLD01` |
//! | −56 | 4 | layout version (2: the description records security versions) |
//! | −52 | 4 | length of the JSON description |
//! | −48 | 8 | length of the disk image (where the patch set copy starts) |
//! | −40 | 8 | length of the patch set copy (the JSON follows it) |
//! | −32 | 32 | SHA-256 of every byte of the file before this field |
//!
//! The description records the image's security version ([`Meta::svn`]): the highest of
//! its kernel's `.hk_svn` and its patches' SVNs, the security version of the code the
//! image runs. The boot compares it with the VM's kept floor ([`super::floor`]).
//!
//! [`make`] writes one in memory; [`verify`] checks one and returns what it keeps
//! ([`Kept`]) or what is wrong with it ([`Damage`]).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use image_format::hotpatch::set::{self, PatchSet};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::diskimage::{self, ImageSpec};
use crate::error::{Error, Result};
use crate::hotpatch::{elf, hex, id_text};

/// Magic of a coldpatch image's footer.
pub const MAGIC: [u8; 8] = *b"HKCOLD01";
/// Layout version of the footer and description.
pub const VERSION: u32 = 2;
const FOOTER: usize = 64;
const SECTOR: usize = 512;
/// Longest JSON description accepted (a description lists at most 64 patches).
const META_MAX: usize = 64 * 1024;

/// What a coldpatch image says about itself (its JSON description).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The VM it was made for.
    pub vm: String,
    /// Build id of the kernel in the image (hex): the image is booted only for this build.
    pub kernel_build_id: String,
    /// SHA-256 of the kernel ELF (hex).
    pub kernel_sha256: String,
    /// The ELF the kernel was taken from.
    pub kernel_from: PathBuf,
    /// The kernel's security version (its `.hk_svn`).
    pub kernel_svn: u32,
    /// The image's security version: the highest of `kernel_svn` and the patches' SVNs.
    /// A patch carries the fixes of the build it was made from (its SVN is that
    /// build's), so the code this image runs is at this security version.
    pub svn: u32,
    /// The patch set, bottom first.
    pub patches: Vec<KeptPatch>,
    /// When the image was made (Unix time, ms).
    pub created_unix_ms: u64,
}

/// One patch of a kept set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptPatch {
    /// The patch id, hex as `hotkernel patch list` prints it.
    pub id: String,
    pub label: String,
    pub version: u32,
    /// The patch's security version (its header's SVN).
    pub svn: u32,
}

/// A checksum-valid coldpatch image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub meta: Meta,
    /// The patch set (the ramdisk's bytes).
    pub set: Vec<u8>,
    /// The patches of the set, bottom first: each package's bytes.
    pub patches: Vec<Vec<u8>>,
    /// The patch ids, bottom first.
    pub ids: Vec<u64>,
    /// The image's checksum (hex SHA-256, the footer's last field).
    pub checksum: String,
}

/// Why a file is not a bootable coldpatch image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    Missing,
    Unreadable(String),
    /// No footer magic: not a coldpatch image, or cut short.
    NoFooter,
    UnknownVersion(u32),
    /// The footer's lengths do not fit the file.
    BadLengths,
    /// The checksum does not match the bytes (a torn or corrupted file).
    Checksum {
        recorded: String,
        computed: String,
    },
    /// The checksum holds but the parts disagree (a bug in the maker, not a torn write).
    Inconsistent(String),
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::Missing => write!(f, "missing"),
            Damage::Unreadable(e) => write!(f, "unreadable ({e})"),
            Damage::NoFooter => write!(
                f,
                "no coldpatch footer (cut short, or not a coldpatch image)"
            ),
            Damage::UnknownVersion(v) => write!(
                f,
                "footer layout version {v}; this hotkernel reads version {VERSION}"
            ),
            Damage::BadLengths => write!(f, "the footer's lengths do not fit the file"),
            Damage::Checksum { recorded, computed } => write!(
                f,
                "checksum mismatch (recorded sha256 {}, the bytes hash to {}): torn or corrupted",
                short(recorded),
                short(computed)
            ),
            Damage::Inconsistent(why) => write!(f, "inconsistent: {why}"),
        }
    }
}

/// The first 16 hex digits of a digest, as messages print it.
pub fn short(hex: &str) -> &str {
    &hex[..hex.len().min(16)]
}

/// The build id of the kernel ELF at `path` (hex), if it can be read and has one.
pub fn build_id_of(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    elf::build_id(&bytes).map(|id| hex(&id))
}

/// Makes the coldpatch image of `kernel` with `patches` (packages, bottom first) for
/// VM `vm`, in memory. `scratch` is a directory for the bootloader's intermediate
/// files (removed again).
pub fn make(vm: &str, kernel: &Path, patches: &[&[u8]], scratch: &Path) -> Result<Vec<u8>> {
    let fail = |message: String| Error::Coldpatch {
        store: scratch.to_path_buf(),
        message,
    };
    let elf_bytes =
        fs::read(kernel).map_err(|e| Error::io(format!("read {}", kernel.display()), e))?;
    let build_id = elf::build_id(&elf_bytes).ok_or_else(|| {
        fail(format!(
            "{} has no build id: a coldpatch image must name the build it is for",
            kernel.display()
        ))
    })?;
    let kernel_svn = image_format::package::elf_svn(&elf_bytes).map_err(|e| {
        fail(format!(
            "{}: {e}: a coldpatch image must know its security version",
            kernel.display()
        ))
    })?;
    let mut kept = Vec::with_capacity(patches.len());
    for (i, p) in patches.iter().enumerate() {
        let view = image_format::hotpatch::parse(p)
            .map_err(|e| fail(format!("patch {} of the set is not readable: {e}", i + 1)))?;
        if view.target().build_id.as_bytes() != build_id.as_slice() {
            return Err(fail(format!(
                "patch {} ({}) applies to build {}, not to the kernel {} (build {})",
                id_text(view.id().0),
                view.label().as_str(),
                view.target().build_id,
                kernel.display(),
                hex(&build_id)
            )));
        }
        kept.push(KeptPatch {
            id: id_text(view.id().0),
            label: view.label().as_str().to_owned(),
            version: view.version(),
            svn: view.svn(),
        });
    }
    let set = set::build(patches).map_err(|e| fail(format!("cannot make the patch set: {e}")))?;

    fs::create_dir_all(scratch)
        .map_err(|e| Error::io(format!("create {}", scratch.display()), e))?;
    let ramdisk = crate::workspace::temp_path_for(&scratch.join("patchset.bin"));
    let disk = crate::workspace::temp_path_for(&scratch.join("disk.img"));
    let built = fs::write(&ramdisk, &set)
        .map_err(|e| Error::io(format!("write {}", ramdisk.display()), e))
        .and_then(|()| {
            let spec = ImageSpec {
                kernel: kernel.to_path_buf(),
                ramdisk: Some(ramdisk.clone()),
            };
            diskimage::create(&spec, &disk)
        })
        .and_then(|()| {
            fs::read(&disk).map_err(|e| Error::io(format!("read {}", disk.display()), e))
        });
    let _ = fs::remove_file(&ramdisk);
    let _ = fs::remove_file(&disk);
    let mut image = built?;

    let meta = Meta {
        vm: vm.to_owned(),
        kernel_build_id: hex(&build_id),
        kernel_sha256: hex(&Sha256::digest(&elf_bytes)),
        kernel_from: kernel.to_path_buf(),
        kernel_svn,
        svn: image_svn(kernel_svn, &kept),
        patches: kept,
        created_unix_ms: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    let json = serde_json::to_vec(&meta).map_err(|e| fail(format!("describe the image: {e}")))?;
    seal(&mut image, &set, &json);
    Ok(image)
}

/// The security version of an image of a kernel with `kernel_svn` running `patches`.
pub fn image_svn(kernel_svn: u32, patches: &[KeptPatch]) -> u32 {
    patches.iter().map(|p| p.svn).fold(kernel_svn, u32::max)
}

/// Appends the patch set copy, the description and the footer to `disk`.
fn seal(disk: &mut Vec<u8>, set: &[u8], json: &[u8]) {
    disk.resize(disk.len().next_multiple_of(SECTOR), 0);
    let disk_len = disk.len();
    disk.extend_from_slice(set);
    disk.extend_from_slice(json);
    disk.resize((disk.len() + FOOTER).next_multiple_of(SECTOR) - FOOTER, 0);
    disk.extend_from_slice(&MAGIC);
    disk.extend_from_slice(&VERSION.to_le_bytes());
    disk.extend_from_slice(&(json.len() as u32).to_le_bytes());
    disk.extend_from_slice(&(disk_len as u64).to_le_bytes());
    disk.extend_from_slice(&(set.len() as u64).to_le_bytes());
    let digest = Sha256::digest(&*disk);
    disk.extend_from_slice(&digest);
}

/// Reads and checks the coldpatch image at `path`.
pub fn read(path: &Path) -> std::result::Result<Kept, Damage> {
    match fs::read(path) {
        Ok(bytes) => verify(&bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Damage::Missing),
        Err(e) => Err(Damage::Unreadable(e.to_string())),
    }
}

/// Checks a coldpatch image: footer, checksum, and that the patch set and the
/// description agree.
pub fn verify(bytes: &[u8]) -> std::result::Result<Kept, Damage> {
    let n = bytes.len();
    if n < FOOTER || bytes[n - FOOTER..n - FOOTER + 8] != MAGIC {
        return Err(Damage::NoFooter);
    }
    let footer = &bytes[n - FOOTER..];
    let u32_at = |at: usize| u32::from_le_bytes(footer[at..at + 4].try_into().unwrap_or([0; 4]));
    let u64_at = |at: usize| u64::from_le_bytes(footer[at..at + 8].try_into().unwrap_or([0; 8]));
    let version = u32_at(8);
    if version != VERSION {
        return Err(Damage::UnknownVersion(version));
    }
    let recorded = hex(&footer[32..]);
    let computed = hex(&Sha256::digest(&bytes[..n - 32]));
    if recorded != computed {
        return Err(Damage::Checksum { recorded, computed });
    }
    let meta_len = u32_at(12) as usize;
    let (disk_len, set_len) = (u64_at(16), u64_at(24));
    let body = n - FOOTER;
    let set_start = usize::try_from(disk_len).map_err(|_| Damage::BadLengths)?;
    let set_end = usize::try_from(set_len)
        .ok()
        .and_then(|l| set_start.checked_add(l))
        .ok_or(Damage::BadLengths)?;
    let meta_end = set_end.checked_add(meta_len).ok_or(Damage::BadLengths)?;
    if meta_len > META_MAX || meta_end > body {
        return Err(Damage::BadLengths);
    }
    let set = &bytes[set_start..set_end];
    let meta: Meta = serde_json::from_slice(&bytes[set_end..meta_end])
        .map_err(|e| Damage::Inconsistent(format!("the description is not readable: {e}")))?;
    let parsed = PatchSet::parse(set)
        .map_err(|e| Damage::Inconsistent(format!("the patch set is not readable: {e}")))?;
    let mut patches = Vec::with_capacity(parsed.len());
    let mut ids = Vec::with_capacity(parsed.len());
    let mut svns = Vec::with_capacity(parsed.len());
    for p in parsed.iter() {
        let p = p.map_err(|e| Damage::Inconsistent(format!("a patch of the set: {e}")))?;
        let view = image_format::hotpatch::parse(p)
            .map_err(|e| Damage::Inconsistent(format!("a patch of the set: {e}")))?;
        ids.push(view.id().0);
        svns.push(view.svn());
        patches.push(p.to_vec());
    }
    let described: Vec<&str> = meta.patches.iter().map(|p| p.id.as_str()).collect();
    let held: Vec<String> = ids.iter().map(|id| id_text(*id)).collect();
    if described != held {
        return Err(Damage::Inconsistent(format!(
            "the description lists patches [{}] but the set holds [{}]",
            described.join(", "),
            held.join(", ")
        )));
    }
    let described_svns: Vec<u32> = meta.patches.iter().map(|p| p.svn).collect();
    if svns != described_svns || meta.svn != image_svn(meta.kernel_svn, &meta.patches) {
        return Err(Damage::Inconsistent(format!(
            "the description's security versions (image {}, kernel {}, patches {described_svns:?}) \
             do not match the set's patches {svns:?}",
            meta.svn, meta.kernel_svn
        )));
    }
    Ok(Kept {
        meta,
        set: set.to_vec(),
        patches,
        ids,
        checksum: recorded,
    })
}

/// A footer-valid image with an empty patch set around an arbitrary "disk" (no
/// bootloader needed), describing `meta_patches` and a kernel with `kernel_svn`.
#[cfg(test)]
pub(super) fn fake_image_with_svn(kernel_svn: u32, meta_patches: Vec<KeptPatch>) -> Vec<u8> {
    let meta = Meta {
        vm: "t".into(),
        kernel_build_id: "ab".into(),
        kernel_sha256: "cd".into(),
        kernel_from: "/k".into(),
        kernel_svn,
        svn: image_svn(kernel_svn, &meta_patches),
        patches: meta_patches,
        created_unix_ms: 0,
    };
    let mut image = vec![0xeb; 1000];
    seal(
        &mut image,
        &set::build(&[]).unwrap(),
        &serde_json::to_vec(&meta).unwrap(),
    );
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_image(meta_patches: Vec<KeptPatch>) -> Vec<u8> {
        fake_image_with_svn(1, meta_patches)
    }

    #[test]
    fn the_image_svn_is_the_highest_of_the_kernel_and_the_patches() {
        let p = |svn| KeptPatch {
            id: "1".into(),
            label: "p".into(),
            version: 1,
            svn,
        };
        assert_eq!(image_svn(2, &[]), 2);
        assert_eq!(image_svn(1, &[p(3), p(0)]), 3);
        assert_eq!(image_svn(4, &[p(3)]), 4);
    }

    #[test]
    fn a_description_whose_svn_is_not_its_parts_highest_is_refused() {
        let mut image = fake_image_with_svn(2, vec![]);
        let json_start = image.windows(8).position(|w| w == b"\"svn\":2,").unwrap();
        image[json_start + 6] = b'1';
        let n = image.len();
        let digest = Sha256::digest(&image[..n - 32]);
        image[n - 32..].copy_from_slice(&digest);
        assert!(matches!(verify(&image), Err(Damage::Inconsistent(_))));
    }

    #[test]
    fn a_whole_image_verifies_and_is_sector_sized() {
        let image = fake_image(vec![]);
        assert_eq!(image.len() % SECTOR, 0);
        let kept = verify(&image).unwrap();
        assert!(kept.ids.is_empty());
        assert_eq!(kept.meta.kernel_build_id, "ab");
    }

    #[test]
    fn any_flipped_byte_or_cut_is_caught() {
        let image = fake_image(vec![]);
        for at in [0, 700, image.len() - 70, image.len() - 1] {
            let mut bad = image.clone();
            bad[at] ^= 0x40;
            assert!(verify(&bad).is_err(), "flip at {at} not caught");
        }
        assert_eq!(verify(&image[..image.len() / 2]), Err(Damage::NoFooter));
        assert!(matches!(
            verify(&image[..image.len() - 1]),
            Err(Damage::NoFooter)
        ));
    }

    #[test]
    fn a_description_that_disagrees_with_the_set_is_refused() {
        let image = fake_image(vec![KeptPatch {
            id: "0000000000000001".into(),
            label: "x".into(),
            version: 1,
            svn: 1,
        }]);
        assert!(matches!(verify(&image), Err(Damage::Inconsistent(_))));
    }
}
