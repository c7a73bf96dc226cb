//! HMAC-SHA256 helpers and the bounded cache of derived SigV4 signing keys.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// Most derived keys kept; the cache is emptied when it fills (keys change once a day).
const CACHE_CAPACITY: usize = 256;

static CACHE: LazyLock<Mutex<HashMap<[u8; 32], [u8; 32]>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

pub(crate) fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request").
pub(crate) fn derive_signing_key(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
) -> [u8; 32] {
    let mut k_secret = Vec::with_capacity(secret.len() + 4);
    k_secret.extend_from_slice(b"AWS4");
    k_secret.extend_from_slice(secret.as_bytes());
    let k_date = hmac_sha256(&k_secret, date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

/// [`derive_signing_key`] through the process-wide cache. The cache is keyed by a hash
/// of (secret, date, region, service), so a rotated secret never hits a stale entry and
/// secrets are not kept as map keys.
pub(crate) fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> [u8; 32] {
    let mut id = Sha256::new();
    for part in [secret, date, region, service] {
        id.update((part.len() as u64).to_be_bytes());
        id.update(part.as_bytes());
    }
    let id: [u8; 32] = id.finalize().into();
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(key) = cache.get(&id) {
        return *key;
    }
    let key = derive_signing_key(secret, date, region, service);
    if cache.len() >= CACHE_CAPACITY {
        cache.clear();
    }
    cache.insert(id, key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_matches_aws_documentation() {
        // The derived key from AWS's "Derive a signing key" example
        // (secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20150830/us-east-1/iam).
        assert_eq!(
            hex::encode(derive_signing_key(
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                "20150830",
                "us-east-1",
                "iam"
            )),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    #[test]
    fn cache_returns_the_derived_key_and_stays_bounded() {
        for i in 0..(CACHE_CAPACITY * 2) {
            let date = format!("2026{:04}", i);
            assert_eq!(
                signing_key("s", &date, "r", "svc"),
                derive_signing_key("s", &date, "r", "svc")
            );
        }
        assert!(CACHE.lock().unwrap().len() <= CACHE_CAPACITY);
        // A different secret must not hit the entry of another one.
        assert_ne!(
            signing_key("s1", "20260101", "r", "svc"),
            signing_key("s2", "20260101", "r", "svc")
        );
    }
}
