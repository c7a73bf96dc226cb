//! Service errors: the domain-level failure classes every front end maps to its wire format.
//!
//! Messages are shown to clients: they may name resource ids, never patient data.

use lightbox_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input breaks a rule (beyond the model's own constraints).
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    NotFound(String),
    /// The resource's state does not allow the request, or a concurrent change won.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    QuotaExceeded(String),
    /// Anything unexpected; the cause is logged, never returned to clients.
    #[error("internal error")]
    Internal(String),
}

impl From<StorageError> for ServiceError {
    fn from(e: StorageError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}
