//! Storage-level errors: what went wrong in a backend, with the cause kept for logs only.

/// A failure inside a storage backend. Domain outcomes (not found, conflicts, quotas) are not
/// errors here: they are the `…Outcome` values of each catalog method.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The backend could not be reached or refused the operation.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// Stored data could not be read back into the domain model.
    #[error("corrupt catalog row: {0}")]
    Corrupt(String),
    /// A cursor was not one this backend issued.
    #[error("invalid cursor")]
    InvalidCursor,
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        StorageError::Backend(e.to_string())
    }
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        StorageError::Backend(e.to_string())
    }
}
