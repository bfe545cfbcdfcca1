//! The signature trailer: `signature::find` on arbitrary bytes, then the verifier over
//! an arbitrary header digest, against one trusted key.
//!
//! Input: one byte choosing what is signed (package or patch), 32 bytes of header
//! digest, then the bytes that follow the object (the trailer, or anything). The seeds
//! are real trailers by the trusted key. Asserted: `find` accepts exactly 112 bytes;
//! a trailer that verifies is byte for byte the one the trusted key makes for that very
//! object kind and digest (Ed25519 signing is deterministic: any other accepted
//! signature would be a forgery or a malleable one); a key that is not trusted never
//! verifies; `check` (the signer's own key, for `inspect`) agrees with `verify`.
#![no_main]

use image_format::signature::{self, SignatureError, Signed, TRAILER_LEN};
use libfuzzer_sys::fuzz_target;

/// The trusted key's secret (the seed corpus is signed with it).
pub const SEED: [u8; 32] = [7; 32];

fuzz_target!(|data: &[u8]| {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    let Some((digest, after)) = rest.split_first_chunk::<32>() else {
        return;
    };
    let what = if kind & 1 == 0 {
        Signed::Package
    } else {
        Signed::Patch
    };
    let trusted = [signature::public_key(&SEED)];
    let Ok(trailer) = signature::find(after) else {
        return;
    };
    assert_eq!(after.len(), TRAILER_LEN);
    let verified = trailer.verify(what, digest, &trusted);
    let checked = trailer.check(what, digest);
    if trailer.public_key == trusted[0] {
        assert_eq!(verified, checked);
    } else {
        assert!(matches!(verified, Err(SignatureError::Untrusted { .. })));
    }
    if verified.is_ok() {
        assert_eq!(after, signature::sign(what, digest, &SEED).as_slice());
    }
    if let Ok(key) = checked {
        assert_eq!(key, trailer.key_id());
    }
});
