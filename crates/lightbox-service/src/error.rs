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
    /// The operation exists in the API but this version of Lightbox does not implement it yet.
    #[error("{0} is not implemented by this version of Lightbox yet")]
    NotImplemented(&'static str),
    /// Anything unexpected; the cause is logged, never returned to clients.
    #[error("internal error")]
    Internal(String),
}

impl From<StorageError> for ServiceError {
    fn from(e: StorageError) -> Self {
        ServiceError::Internal(e.to_string())
    }
}
