//! Server configuration: defaults, and parsing of the credential list.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The listener when none is given: loopback only, port 8899.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8899";

/// Everything a server needs to start. Build it with `Config::new` and adjust fields.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Region named in ARNs (clients may sign for any region).
    pub region: String,
    /// Account id named in ARNs.
    pub account_id: String,
    /// (access key id, secret access key) pairs; empty means the development default
    /// `test`/`test`, which is only accepted on a loopback listener.
    pub credentials: Vec<(String, String)>,
    /// Maximum number of data stores that are not DELETED.
    pub max_datastores: u32,
    /// How long a data store stays CREATING / DELETING.
    pub transition_delay: Duration,
    /// Largest accepted request body, in bytes.
    pub max_request_body: usize,
    /// Longest time a client may take to send a request body (408 beyond).
    pub body_timeout: Duration,
    /// How long background work stays leased to this node without a heartbeat; after a crash,
    /// other nodes take the work over once it expires.
    pub job_lease: Duration,
    /// Catalog database URL (`postgres://…` or `sqlite://…`); `None` is the embedded SQLite
    /// file `catalog.db` in `data_dir`.
    pub catalog: Option<String>,
    /// Blob store URL (`s3://bucket/prefix`, `file:///dir` or a path); `None` is `data_dir/blobs`.
    pub blob_store: Option<String>,
    /// Connection settings used when `blob_store` is an `s3://` URL.
    pub s3: S3Options,
    /// Serve the built-in S3 endpoint (buckets under `data_dir/s3`) on the same listener, for
    /// requests signed for service `s3`.
    pub builtin_s3: bool,
    /// Where import jobs read and write `s3://` URIs: `endpoint: None` is the built-in S3
    /// (`data_dir/s3`), otherwise that external S3-compatible endpoint.
    pub import_s3: S3Options,
    /// DICOM import limits and parallelism (HealthImaging's quotas by default).
    pub import: lightbox_service::ImportConfig,
    /// UpdateImageSetMetadata: largest total size of the decoded update documents.
    pub max_update_payload_bytes: u64,
    /// CopyImageSet: most image frames one copy may select.
    pub max_copy_frames: usize,
    /// How long finished background jobs are kept.
    pub job_retention: Duration,
    /// Added to the wall clock for everything the service times (creation and access times,
    /// storage tiers); 0 in production. Tests move time with it across restarts.
    pub clock_offset: Duration,
}

/// How to reach an S3-compatible store (the blob store's or the import jobs'): endpoint, region,
/// keys (redacted in `Debug`), addressing style.
pub use lightbox_s3::ExternalS3Config as S3Options;

/// A database URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{}:***@{}", &url[..scheme_end], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

impl Config {
    /// Defaults for tests and embedding: an ephemeral loopback port.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: "127.0.0.1:0".parse().expect("valid address"),
            data_dir: data_dir.into(),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            credentials: Vec::new(),
            max_datastores: 100,
            transition_delay: Duration::from_millis(500),
            max_request_body: 16 * 1024 * 1024,
            body_timeout: Duration::from_secs(60),
            job_lease: Duration::from_secs(30),
            catalog: None,
            blob_store: None,
            s3: S3Options::default(),
            builtin_s3: true,
            import_s3: S3Options::default(),
            import: lightbox_service::ImportConfig::default(),
            max_update_payload_bytes: lightbox_service::ServiceConfig::default()
                .max_update_payload_bytes,
            max_copy_frames: lightbox_service::ServiceConfig::default().max_copy_frames,
            job_retention: lightbox_service::ServiceConfig::default().job_retention,
            clock_offset: Duration::ZERO,
        }
    }
}

/// Parses `AKID:SECRET[,AKID2:SECRET2…]`.
pub fn parse_credentials(text: &str) -> Result<Vec<(String, String)>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, s) = pair.split_once(':').ok_or_else(|| {
                "credentials must be AKID:SECRET pairs separated by commas".to_string()
            })?;
            if k.is_empty() || s.is_empty() {
                return Err("access key id and secret must both be non-empty".into());
            }
            Ok((k.to_owned(), s.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_credential_lists() {
        assert_eq!(
            parse_credentials("a:b, c:d:e").unwrap(),
            vec![("a".into(), "b".into()), ("c".into(), "d:e".into())]
        );
        assert!(parse_credentials("nocolon").is_err());
        assert!(parse_credentials(":secret").is_err());
        assert!(parse_credentials("").unwrap().is_empty());
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/lightbox"),
            "postgres://app:***@db:5432/lightbox"
        );
        assert_eq!(
            redact_url("postgres://db/lightbox"),
            "postgres://db/lightbox"
        );
    }
}
