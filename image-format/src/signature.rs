//! The signature trailer: who vouches for a package or a patch.
//!
//! A signed package (format version 3) or patch (format version 2) is its bytes as the
//! format describes them, `[0, total_size)`, followed by one [`TRAILER_LEN`]-byte
//! trailer. The trailer holds an Ed25519 signature over the object's magic and its
//! header digest; the header digest covers every header field (the security version
//! among them) and the payload digest, so the signature binds the whole object. The
//! trailer itself is covered by neither digest: it is checked only by [`Trailer::verify`].
//!
//! | offset | size | field | rule |
//! | --- | --- | --- | --- |
//! | 0 | 8 | magic `HKSIG\0\r\n` | exact |
//! | 8 | 2 | trailer version | 1 |
//! | 10 | 2 | algorithm | 1 = Ed25519 |
//! | 12 | 4 | reserved | zero |
//! | 16 | 32 | the signer's public key | one of the keys the verifier trusts |
//! | 48 | 64 | signature | Ed25519 over `object magic ‖ header digest` (40 bytes) |
//!
//! [`find`] tells an unsigned object (nothing after `total_size`) from a truncated
//! trailer and a malformed one; [`Trailer::verify`] tells a key the verifier does not
//! trust from a signature that does not verify (made over another header, or damaged).
//! Verification is `no_std` (`ed25519-compact` without default features); signing
//! ([`sign`]) is the host's.
#![deny(clippy::indexing_slicing)]

use core::fmt;

use sha2::{Digest as _, Sha256};

use crate::error::Digest;

/// The first eight bytes of a trailer.
pub const TRAILER_MAGIC: [u8; 8] = *b"HKSIG\0\r\n";
/// The trailer version this code reads and writes.
pub const TRAILER_VERSION: u16 = 1;
/// Algorithm code of Ed25519 (the only one).
pub const ED25519: u16 = 1;
/// Size of a trailer, in bytes.
pub const TRAILER_LEN: usize = 112;
/// Size of a public key.
pub const PUBLIC_KEY_LEN: usize = 32;

const KEY_AT: usize = 16;
const SIGNATURE_AT: usize = 48;

/// What is signed: the object's magic comes first in the signed message, so a patch's
/// signature can never pass for a package's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// An update package (`HKPKG\0\r\n`).
    Package,
    /// A hotpatch (`HKPAT\0\r\n`).
    Patch,
}

impl Signed {
    /// The object's magic.
    pub const fn magic(self) -> [u8; 8] {
        match self {
            Self::Package => crate::package::MAGIC,
            Self::Patch => crate::hotpatch::MAGIC,
        }
    }

    /// What a person calls it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Package => "package",
            Self::Patch => "patch",
        }
    }
}

/// The 40-byte message a signature covers: the object's magic, then its header digest.
pub fn message(what: Signed, header_digest: &Digest) -> [u8; 40] {
    let mut m = [0u8; 40];
    let (magic, digest) = m.split_at_mut(8);
    magic.copy_from_slice(&what.magic());
    digest.copy_from_slice(header_digest);
    m
}

/// A key's id: the first 8 bytes of the SHA-256 of the public key, shown as 16 hex
/// digits. Two keys with one id are, for any practical purpose, one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The id of `public_key`.
    pub fn of(public_key: &[u8; PUBLIC_KEY_LEN]) -> Self {
        let d: Digest = Sha256::digest(public_key).into();
        let mut id = [0u8; 8];
        for (dst, src) in id.iter_mut().zip(d.iter()) {
            *dst = *src;
        }
        Self(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Why an object's signature is refused. Each has its own mailbox status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// Nothing follows the object: it carries no signature.
    Unsigned,
    /// Fewer bytes than a trailer follow the object.
    Truncated {
        /// Bytes after the object.
        got: usize,
    },
    /// The trailer breaks a rule (magic, version, algorithm, reserved bytes, length).
    Malformed {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Signed by a key the verifier does not trust.
    Untrusted {
        /// The signer's key id.
        key: KeyId,
    },
    /// The signature does not verify against this object's header digest: it was made
    /// over another header, or it is damaged.
    Mismatch {
        /// The signer's key id.
        key: KeyId,
    },
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsigned => write!(
                f,
                "unsigned: no signature trailer follows it (sign it with `hotkernel pack` or `hotkernel patch make`)"
            ),
            Self::Truncated { got } => write!(
                f,
                "signature truncated: {got} of the trailer's {TRAILER_LEN} bytes follow it"
            ),
            Self::Malformed { field, reason } => {
                write!(f, "signature trailer: {field} {reason}")
            }
            Self::Untrusted { key } => write!(
                f,
                "signed by key {key}, which this kernel does not trust (build the kernel with that key in target/hotkernel/keys, or sign with a trusted one)"
            ),
            Self::Mismatch { key } => write!(
                f,
                "the signature by key {key} does not verify: it was made over another header, or it is damaged"
            ),
        }
    }
}

/// A structurally valid trailer (not yet verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// The signer's public key.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// The Ed25519 signature.
    pub signature: [u8; 64],
}

/// Reads the trailer from `after`, the bytes that follow an object's `total_size`.
pub fn find(after: &[u8]) -> Result<Trailer, SignatureError> {
    let bad = |field, reason| Err(SignatureError::Malformed { field, reason });
    match after.len() {
        0 => return Err(SignatureError::Unsigned),
        n if n < TRAILER_LEN => return Err(SignatureError::Truncated { got: n }),
        TRAILER_LEN => {}
        _ => {
            return bad(
                "length",
                "is longer than 112 bytes: bytes follow the trailer",
            )
        }
    }
    let field = |at: usize, n: usize| after.get(at..at.saturating_add(n)).unwrap_or(&[]);
    let le16 = |at| {
        let b = field(at, 2);
        u16::from_le_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ])
    };
    if field(0, 8) != TRAILER_MAGIC {
        return bad("magic", "is not HKSIG\\0\\r\\n");
    }
    if le16(8) != TRAILER_VERSION {
        return bad("version", "is not 1 (the only trailer version)");
    }
    if le16(10) != ED25519 {
        return bad("algorithm", "is not 1 (Ed25519, the only algorithm)");
    }
    if field(12, 4).iter().any(|&b| b != 0) {
        return bad("reserved bytes", "are not zero");
    }
    let mut t = Trailer {
        public_key: [0; PUBLIC_KEY_LEN],
        signature: [0; 64],
    };
    t.public_key.copy_from_slice(field(KEY_AT, PUBLIC_KEY_LEN));
    t.signature.copy_from_slice(field(SIGNATURE_AT, 64));
    Ok(t)
}

impl Trailer {
    /// The signer's key id.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(&self.public_key)
    }

    /// Whether the signer is one of `trusted` (public keys).
    pub fn is_trusted_by(&self, trusted: &[[u8; PUBLIC_KEY_LEN]]) -> bool {
        trusted.contains(&self.public_key)
    }

    /// Verifies the signature over `what`'s `header_digest` with the signer's key, which
    /// must be one of `trusted`. Returns the signer's id.
    pub fn verify(
        &self,
        what: Signed,
        header_digest: &Digest,
        trusted: &[[u8; PUBLIC_KEY_LEN]],
    ) -> Result<KeyId, SignatureError> {
        let key = self.key_id();
        if !self.is_trusted_by(trusted) {
            return Err(SignatureError::Untrusted { key });
        }
        self.check(what, header_digest)
    }

    /// Verifies the signature with the signer's own key, trusted or not (for `inspect`).
    pub fn check(&self, what: Signed, header_digest: &Digest) -> Result<KeyId, SignatureError> {
        let key = self.key_id();
        let pk = ed25519_compact::PublicKey::new(self.public_key);
        let sig = ed25519_compact::Signature::new(self.signature);
        pk.verify(message(what, header_digest), &sig)
            .map(|()| key)
            .map_err(|_| SignatureError::Mismatch { key })
    }
}

/// The public key of the signing key with secret `seed`.
pub fn public_key(seed: &[u8; 32]) -> [u8; PUBLIC_KEY_LEN] {
    let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*seed));
    *kp.pk
}

/// The trailer that signs `what` with header digest `header_digest` with the key whose
/// secret is `seed` (deterministic Ed25519).
pub fn sign(what: Signed, header_digest: &Digest, seed: &[u8; 32]) -> [u8; TRAILER_LEN] {
    let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*seed));
    let sig = kp.sk.sign(message(what, header_digest), None);
    let mut t = [0u8; TRAILER_LEN];
    let (head, rest) = t.split_at_mut(KEY_AT);
    let (key, signature) = rest.split_at_mut(SIGNATURE_AT - KEY_AT);
    let (magic, tail) = head.split_at_mut(8);
    magic.copy_from_slice(&TRAILER_MAGIC);
    let (version, tail) = tail.split_at_mut(2);
    version.copy_from_slice(&TRAILER_VERSION.to_le_bytes());
    let (algorithm, _reserved) = tail.split_at_mut(2);
    algorithm.copy_from_slice(&ED25519.to_le_bytes());
    key.copy_from_slice(&*kp.pk);
    signature.copy_from_slice(&*sig);
    t
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    const SEED: [u8; 32] = [7; 32];

    #[test]
    fn signs_and_verifies() {
        let digest = [3u8; 32];
        let t = sign(Signed::Package, &digest, &SEED);
        let trailer = find(&t).unwrap();
        let pk = public_key(&SEED);
        assert_eq!(trailer.public_key, pk);
        assert_eq!(
            trailer.verify(Signed::Package, &digest, &[pk]),
            Ok(KeyId::of(&pk))
        );
        // Another header, another kind of object, another key.
        assert!(matches!(
            trailer.verify(Signed::Package, &[4; 32], &[pk]),
            Err(SignatureError::Mismatch { .. })
        ));
        assert!(matches!(
            trailer.verify(Signed::Patch, &digest, &[pk]),
            Err(SignatureError::Mismatch { .. })
        ));
        assert!(matches!(
            trailer.verify(Signed::Package, &digest, &[public_key(&[8; 32])]),
            Err(SignatureError::Untrusted { .. })
        ));
    }

    #[test]
    fn tells_unsigned_truncated_and_malformed_apart() {
        let t = sign(Signed::Patch, &[1; 32], &SEED);
        assert_eq!(find(&[]), Err(SignatureError::Unsigned));
        assert_eq!(find(&t[..50]), Err(SignatureError::Truncated { got: 50 }));
        let mut long = t.to_vec();
        long.push(0);
        assert!(matches!(
            find(&long),
            Err(SignatureError::Malformed {
                field: "length",
                ..
            })
        ));
        for (at, field) in [
            (0, "magic"),
            (8, "version"),
            (10, "algorithm"),
            (12, "reserved bytes"),
        ] {
            let mut bad = t;
            bad[at] ^= 0x40;
            assert!(
                matches!(find(&bad), Err(SignatureError::Malformed { field: f, .. }) if f == field),
                "{field}"
            );
        }
    }
}
