//! Key secrets: how they are made, how they look, and the hash that is all
//! the database ever holds of them.
//!
//! A secret is `fmk_` followed by 64 hex digits: 256 random bits from the
//! operating system's generator. It is shown once, when the key is created;
//! the database stores its SHA-256, and a presented key is found by hashing
//! it and comparing hashes in constant time.

use rand::{TryRngCore, rngs::OsRng};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every FlagMeter key starts with, so that a leaked one is easy to
/// recognise (secret scanners, logs).
const MARK: &str = "fmk_";
/// Characters of a secret kept in the database to tell keys apart in a list.
const PREFIX_LEN: usize = MARK.len() + 8;

/// The SHA-256 of a secret.
pub type KeyHash = [u8; 32];

/// A new random secret.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random generator works");
    let mut secret = String::with_capacity(MARK.len() + 64);
    secret.push_str(MARK);
    for byte in bytes {
        secret.push_str(&format!("{byte:02x}"));
    }
    secret
}

pub fn hash(secret: &str) -> KeyHash {
    Sha256::digest(secret.as_bytes()).into()
}

/// Whether `presented` looks like a secret this module made (`fmk_` and 64
/// hex digits), so that anything else is refused without a lookup.
pub fn well_formed(presented: &str) -> bool {
    presented.len() == MARK.len() + 64
        && presented.starts_with(MARK)
        && presented[MARK.len()..]
            .bytes()
            .all(|c| c.is_ascii_hexdigit())
}

/// Whether two hashes are equal, in time that does not depend on where they
/// differ.
pub fn same(a: &KeyHash, b: &[u8]) -> bool {
    a.as_slice().ct_eq(b).into()
}

/// The part of a secret shown in key listings.
pub fn prefix(secret: &str) -> String {
    secret.chars().take(PREFIX_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_marked_and_hash_to_32_bytes() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with(MARK) && a.len() == MARK.len() + 64);
        assert!(well_formed(&a) && !well_formed(&a[1..]) && !well_formed("fmk_x"));
        assert_eq!(prefix(&a).len(), PREFIX_LEN);
        assert!(same(&hash(&a), &hash(&a)));
        assert!(!same(&hash(&a), &hash(&b)));
        assert!(!same(&hash(&a), &hash(&a)[..31]));
    }
}
