//! Lightbox's S3 side: the built-in S3 endpoint served on the HealthImaging listener
//! ([`S3Endpoint`], [`is_s3_request`]) and the S3 access layer import jobs read inputs and write
//! outputs through ([`S3Access`], implemented by [`BuiltinS3`] and [`ExternalS3`]).
//!
//! The built-in endpoint is s3s (protocol, SigV4) over s3s-fs (buckets are directories under a
//! root, keys with `/` nest as directories), wrapped by [`store::Store`] to fix what s3s-fs leaves
//! out (bucket and key checks, AWS error codes, opaque continuation tokens, `encoding-type=url`).

mod access;
mod builtin;
mod dispatch;
mod endpoint;
mod external;
mod store;

pub use access::{ListPage, S3Access, S3AccessError, S3Object};
pub use builtin::BuiltinS3;
pub use dispatch::is_s3_request;
pub use endpoint::S3Endpoint;
pub use external::{ExternalS3, ExternalS3Config};

/// Largest number of objects one [`S3Access::list`] page holds.
pub const LIST_PAGE_SIZE: usize = 1000;
