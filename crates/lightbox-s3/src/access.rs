//! The `S3Access` interface import jobs use to list and read their inputs and write their outputs,
//! whichever S3 (built-in or external) holds them.

/// Reads and writes objects in S3 buckets.
#[async_trait::async_trait]
pub trait S3Access: Send + Sync + 'static {
    /// Up to 1000 objects under `prefix` (recursive, lexicographic key order), after `continuation`.
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListPage, S3AccessError>;
    /// The whole object; refuse (S3AccessError::TooLarge) without reading it if it exceeds `max_bytes`.
    async fn get(
        &self,
        bucket: &str,
        key: &str,
        max_bytes: u64,
    ) -> Result<bytes::Bytes, S3AccessError>;
    async fn put(&self, bucket: &str, key: &str, body: bytes::Bytes) -> Result<(), S3AccessError>;
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<S3Object>,
    /// Pass to the next [`S3Access::list`] call; `None` on the last page.
    pub next: Option<String>,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    pub key: String,
    pub size: u64,
}

/// Why an S3 access failed. Messages never name keys or buckets (they can carry patient data).
#[derive(Debug, thiserror::Error)]
pub enum S3AccessError {
    #[error("the bucket does not exist")]
    NoSuchBucket,
    #[error("the object does not exist")]
    NoSuchKey,
    #[error("the object is {size} bytes, more than the limit of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("access denied: {0}")]
    AccessDenied(String),
    #[error("{0}")]
    Other(String),
}
