//! Data stores: the top-level container of image sets, and their lifecycle.

use crate::{DatastoreId, Millis};

/// Lifecycle of a data store: CREATING -> ACTIVE (or CREATE_FAILED); ACTIVE -> DELETING -> DELETED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DatastoreStatus {
    Creating,
    CreateFailed,
    Active,
    Deleting,
    Deleted,
}

impl DatastoreStatus {
    pub const ALL: [DatastoreStatus; 5] = [
        Self::Creating,
        Self::CreateFailed,
        Self::Active,
        Self::Deleting,
        Self::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "CREATING",
            Self::CreateFailed => "CREATE_FAILED",
            Self::Active => "ACTIVE",
            Self::Deleting => "DELETING",
            Self::Deleted => "DELETED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Counts against the per-account data store quota.
    pub fn counts_against_quota(self) -> bool {
        !matches!(self, Self::Deleted)
    }
}

/// How lossless frames are stored (`losslessStorageFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LosslessStorageFormat {
    #[default]
    Htj2k,
    Jpeg2000Lossless,
}

impl LosslessStorageFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Htj2k => "HTJ2K",
            Self::Jpeg2000Lossless => "JPEG_2000_LOSSLESS",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Htj2k, Self::Jpeg2000Lossless]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A data store as the catalog keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Datastore {
    pub id: DatastoreId,
    pub name: String,
    pub status: DatastoreStatus,
    pub kms_key_arn: Option<String>,
    pub lambda_authorizer_arn: Option<String>,
    pub lossless_storage_format: LosslessStorageFormat,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// The idempotency token of the CreateDatastore call that made it.
    pub client_token: String,
    /// A digest of the CreateDatastore input, to tell a retry from a conflicting reuse of a token.
    pub request_fingerprint: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for s in DatastoreStatus::ALL {
            assert_eq!(DatastoreStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(DatastoreStatus::parse("active"), None);
        assert!(!DatastoreStatus::Deleted.counts_against_quota());
        assert!(DatastoreStatus::Deleting.counts_against_quota());
    }
}
