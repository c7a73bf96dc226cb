//! Pagination tokens: opaque, tamper-evident `nextToken` values bound to the operation and the
//! filters of the request that produced them.
//!
//! A token is `base64url(payload) "." base64url(HMAC-SHA256(key, payload)[..16])`, where the
//! payload names the listing, a digest of its filters and the storage cursor. The key lives in
//! the catalog so every node accepts every other node's tokens.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use lightbox_storage::{Catalog, Cursor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ServiceError;

const KEY_SETTING: &str = "pagination_token_key";

#[derive(Serialize, Deserialize)]
struct Payload {
    /// Which listing issued the token.
    l: String,
    /// Digest of the listing's filters.
    f: String,
    /// The storage cursor.
    c: String,
}

/// The error for any nextToken this cluster did not issue for the same listing and filters.
pub(crate) fn invalid() -> ServiceError {
    ServiceError::Validation(
        "1 validation error detected: Value at 'nextToken' failed to satisfy constraint: \
         Member must be a nextToken returned by a previous call with the same parameters"
            .into(),
    )
}

pub(crate) struct TokenSealer {
    key: Vec<u8>,
}

fn filter_digest(filters: &str) -> String {
    hex::encode(&Sha256::digest(filters.as_bytes())[..8])
}

impl TokenSealer {
    pub(crate) async fn load(catalog: &dyn Catalog) -> Result<Self, ServiceError> {
        let fresh = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let key = catalog.setting_or_init(KEY_SETTING, &fresh).await?;
        Ok(Self {
            key: key.into_bytes(),
        })
    }

    fn mac(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key size");
        mac.update(payload);
        mac.finalize().into_bytes()[..16].to_vec()
    }

    /// Seals `cursor` for the listing `listing` with filters rendered as `filters`.
    pub(crate) fn seal(&self, listing: &str, filters: &str, cursor: &Cursor) -> String {
        let payload = serde_json::to_vec(&Payload {
            l: listing.into(),
            f: filter_digest(filters),
            c: cursor.0.clone(),
        })
        .expect("payload serializes");
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(self.mac(&payload))
        )
    }

    /// Opens a token; any token not sealed by this cluster for the same listing and filters is
    /// a validation error naming `nextToken`.
    pub(crate) fn open(
        &self,
        listing: &str,
        filters: &str,
        token: &str,
    ) -> Result<Cursor, ServiceError> {
        let (p, m) = token.split_once('.').ok_or_else(invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(p).map_err(|_| invalid())?;
        let mac = URL_SAFE_NO_PAD.decode(m).map_err(|_| invalid())?;
        if !bool::from(self.mac(&payload).ct_eq(&mac)) {
            return Err(invalid());
        }
        let payload: Payload = serde_json::from_slice(&payload).map_err(|_| invalid())?;
        if payload.l != listing || payload.f != filter_digest(filters) {
            return Err(invalid());
        }
        Ok(Cursor(payload.c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealer() -> TokenSealer {
        TokenSealer { key: b"k".to_vec() }
    }

    #[test]
    fn round_trips_and_rejects_tampering() {
        let s = sealer();
        let t = s.seal("ListDatastores", "ACTIVE", &Cursor("12:ab".into()));
        assert_eq!(
            s.open("ListDatastores", "ACTIVE", &t).unwrap(),
            Cursor("12:ab".into())
        );
        assert!(
            s.open("ListDatastores", "DELETED", &t).is_err(),
            "other filters"
        );
        assert!(
            s.open("ListDICOMImportJobs", "ACTIVE", &t).is_err(),
            "other listing"
        );
        let mut forged = t.clone();
        forged.insert(1, 'A');
        assert!(s.open("ListDatastores", "ACTIVE", &forged).is_err());
        assert!(s.open("ListDatastores", "ACTIVE", "garbage").is_err());
        let other = TokenSealer {
            key: b"other".to_vec(),
        };
        assert!(
            other.open("ListDatastores", "ACTIVE", &t).is_err(),
            "other key"
        );
    }
}
