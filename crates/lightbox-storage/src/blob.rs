//! The BlobStore interface (frames, metadata documents, job outputs) and its implementation over
//! the `object_store` crate, which serves both the local filesystem and S3-compatible stores.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::StorageError;

/// Immutable-object storage addressed by `/`-separated keys.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Writes `data` under `key`, replacing any previous object.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError>;

    /// Writes `data` under `key` only if no object exists there. Returns `false` if one did
    /// (the existing object is left untouched). Atomic across processes.
    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StorageError>;

    /// The whole object, or `None` if absent.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError>;

    /// Bytes `range` of the object, or `None` if absent.
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, StorageError>;

    /// The object as a stream of chunks, or `None` if absent.
    async fn get_stream(
        &self,
        key: &str,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, StorageError>>>, StorageError>;

    /// Size in bytes, or `None` if absent.
    async fn size(&self, key: &str) -> Result<Option<u64>, StorageError>;

    /// Removes the object; removing an absent object is not an error.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// Keys under `prefix` (recursive), sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
}

/// A BlobStore over any `object_store` backend.
#[derive(Clone)]
pub struct ObjectBlobStore {
    store: Arc<dyn ObjectStore>,
    /// What [`ObjectBlobStore::check_reachable`] probes, and how to name it in errors.
    probe: Option<Arc<Probe>>,
}

/// An S3 store built to fail fast (one retry), used only by `check_reachable`.
struct Probe {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    /// Where requests go, for messages: an endpoint URL or "AWS S3 (region)".
    target: String,
}

impl ObjectBlobStore {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, probe: None }
    }

    /// Blobs as files under `dir` (created if missing).
    pub fn local(dir: &std::path::Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::Backend(format!("cannot create blob directory: {e}")))?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)?
            .with_automatic_cleanup(true);
        Ok(Self::new(Arc::new(fs)))
    }
}

/// Where an S3-compatible bucket is and how to sign for it.
///
/// `access_key_id`/`secret_access_key`: both or neither. Neither means the environment's
/// credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), else web
/// identity, ECS task or EC2 instance credentials. `Debug` never shows the secret.
#[derive(Clone)]
pub struct S3Settings {
    pub bucket: String,
    /// Key prefix inside the bucket (`a/b`, no leading or trailing `/`; empty for the root).
    pub prefix: String,
    /// `None` for AWS S3 in `region`; else e.g. `http://127.0.0.1:9000` (MinIO, Ceph, Garage).
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Permit `http://` endpoints.
    pub allow_http: bool,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted
    /// (`bucket.endpoint/key`). Most self-hosted stores need `true`.
    pub force_path_style: bool,
}

impl Default for S3Settings {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".to_owned(),
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            force_path_style: false,
        }
    }
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .field("force_path_style", &self.force_path_style)
            .finish()
    }
}

/// Where blobs live, as named by a `--blob-store` URL (see [`parse_blob_store_url`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobStoreLocation {
    /// A local directory.
    Local(PathBuf),
    /// An S3 bucket and a key prefix inside it (empty for the bucket root).
    S3 { bucket: String, prefix: String },
}

/// Parses `s3://bucket[/prefix]`, `file:///absolute/path` or a plain filesystem path.
///
/// S3 bucket names follow S3's rules (3–63 characters of `a-z 0-9 . -`, starting and ending with
/// a letter or digit); the prefix must be a valid key prefix (no empty, `.` or `..` segments).
/// Credentials, queries and fragments are refused (credentials are configured separately), and
/// error messages never repeat a URL that may contain credentials.
pub fn parse_blob_store_url(url: &str) -> Result<BlobStoreLocation, StorageError> {
    let err = |why: String| StorageError::Backend(format!("invalid blob store URL: {why}"));
    let url = url.trim();
    if url.is_empty() {
        return Err(err(
            "empty (expected s3://bucket/prefix, file:///path or a directory)".into(),
        ));
    }
    if url.contains('\0') {
        return Err(err("contains a NUL byte".into()));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        // A plain path, unless it looks like a URL missing its `//` (`s3:bucket`).
        if let Some((scheme, _)) = url.split_once(':')
            && !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        {
            return Err(err(format!(
                "{url:?} looks like a URL but has no \"//\" after \"{scheme}:\""
            )));
        }
        return Ok(BlobStoreLocation::Local(PathBuf::from(url)));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "s3" => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            if authority.contains('@') {
                return Err(err(
                    "s3:// URLs must not contain credentials; configure the access key and \
                     secret separately"
                        .into(),
                ));
            }
            if rest.contains(['?', '#']) {
                return Err(err(format!(
                    "{url:?}: query strings and fragments are not supported"
                )));
            }
            validate_bucket_name(authority).map_err(|why| err(format!("{url:?}: {why}")))?;
            let prefix = path.trim_matches('/');
            if !prefix.is_empty() {
                Path::parse(prefix)
                    .map_err(|e| err(format!("{url:?}: invalid key prefix: {e}")))?;
            }
            Ok(BlobStoreLocation::S3 {
                bucket: authority.to_owned(),
                prefix: prefix.to_owned(),
            })
        }
        "file" => {
            let path = match rest.strip_prefix("localhost") {
                Some(p) if p.starts_with('/') => p,
                _ => rest,
            };
            if !path.starts_with('/') {
                return Err(err(format!(
                    "{url:?}: file URLs must be absolute (file:///path) and local"
                )));
            }
            if path.contains(['?', '#']) {
                return Err(err(format!(
                    "{url:?}: query strings and fragments are not supported"
                )));
            }
            Ok(BlobStoreLocation::Local(PathBuf::from(path)))
        }
        _ => Err(err(format!(
            "unsupported scheme {:?} (expected s3://bucket/prefix, file:///path or a directory)",
            if scheme.contains('@') { "…" } else { scheme }
        ))),
    }
}

fn validate_bucket_name(b: &str) -> Result<(), String> {
    if b.is_empty() {
        return Err("missing bucket name".into());
    }
    if !(3..=63).contains(&b.len()) {
        return Err(format!("bucket name {b:?} must be 3 to 63 characters long"));
    }
    if !b
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
    {
        return Err(format!(
            "bucket name {b:?} may contain only lowercase letters, digits, '.' and '-'"
        ));
    }
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !edge(b.as_bytes()[0]) || !edge(b.as_bytes()[b.len() - 1]) || b.contains("..") {
        return Err(format!(
            "bucket name {b:?} must start and end with a letter or digit"
        ));
    }
    Ok(())
}

impl ObjectBlobStore {
    /// Blobs in an S3-compatible bucket, under `settings.prefix`. `put_if_absent` uses
    /// conditional PUT (`If-None-Match: *`), which AWS S3, MinIO, Ceph RGW, Garage and R2
    /// support. Builds the client only; call [`ObjectBlobStore::check_reachable`] to contact it.
    pub fn s3(settings: &S3Settings) -> Result<Self, StorageError> {
        use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
        use object_store::{ClientOptions, RetryConfig};

        let err = |why: String| StorageError::Backend(format!("S3 blob store: {why}"));
        validate_bucket_name(&settings.bucket).map_err(err)?;
        let prefix = settings.prefix.trim_matches('/');
        let prefix = if prefix.is_empty() {
            None
        } else {
            Some(Path::parse(prefix).map_err(|e| err(format!("invalid key prefix: {e}")))?)
        };
        if settings.region.trim().is_empty() {
            return Err(err("region is empty".into()));
        }

        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region)
            .with_allow_http(settings.allow_http)
            .with_conditional_put(S3ConditionalPut::ETagMatch);
        let target = match &settings.endpoint {
            Some(endpoint) => {
                let endpoint = endpoint.trim_end_matches('/');
                let Some((scheme, host)) = endpoint.split_once("://") else {
                    return Err(err(format!(
                        "endpoint {endpoint:?} is not a URL (expected e.g. https://host:port)"
                    )));
                };
                if host.contains('@') {
                    return Err(err("the endpoint URL must not contain credentials".into()));
                }
                match scheme {
                    "https" => {}
                    "http" if settings.allow_http => {}
                    "http" => {
                        return Err(err(format!(
                            "endpoint {endpoint:?} uses http:// but plain HTTP is not allowed \
                             (enable allow_http)"
                        )));
                    }
                    _ => {
                        return Err(err(format!(
                            "endpoint {endpoint:?}: scheme must be http or https"
                        )));
                    }
                }
                if settings.force_path_style {
                    b = b
                        .with_endpoint(endpoint)
                        .with_virtual_hosted_style_request(false);
                } else {
                    // object_store expects a virtual-hosted endpoint to name the bucket.
                    b = b
                        .with_endpoint(format!("{scheme}://{}.{host}", settings.bucket))
                        .with_virtual_hosted_style_request(true);
                }
                endpoint.to_owned()
            }
            None => {
                b = b.with_virtual_hosted_style_request(!settings.force_path_style);
                format!("AWS S3 ({})", settings.region)
            }
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (key, secret, token) = match (&settings.access_key_id, &settings.secret_access_key) {
            (Some(k), Some(s)) => (Some(k.clone()), Some(s.clone()), None),
            (None, None) => (
                env("AWS_ACCESS_KEY_ID"),
                env("AWS_SECRET_ACCESS_KEY"),
                env("AWS_SESSION_TOKEN"),
            ),
            (Some(_), None) => {
                return Err(err(
                    "an access key id is set but no secret access key".into()
                ));
            }
            (None, Some(_)) => {
                return Err(err("a secret access key is set but no access key id".into()));
            }
        };
        if let (Some(k), Some(s)) = (key, secret) {
            b = b.with_access_key_id(k).with_secret_access_key(s);
            if let Some(t) = token {
                b = b.with_token(t);
            }
        }

        let wrap = |s: object_store::aws::AmazonS3| -> Arc<dyn ObjectStore> {
            match &prefix {
                Some(p) => Arc::new(object_store::prefix::PrefixStore::new(s, p.clone())),
                None => Arc::new(s),
            }
        };
        let store = wrap(
            b.clone()
                .build()
                .map_err(|e| err(format!("invalid configuration: {e}")))?,
        );
        let probe = wrap(
            b.with_retry(RetryConfig {
                max_retries: 1,
                retry_timeout: std::time::Duration::from_secs(10),
                ..Default::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(settings.allow_http)
                    .with_connect_timeout(std::time::Duration::from_secs(5))
                    .with_timeout(std::time::Duration::from_secs(15)),
            )
            .build()
            .map_err(|e| err(format!("invalid configuration: {e}")))?,
        );
        Ok(Self {
            store,
            probe: Some(Arc::new(Probe {
                store: probe,
                bucket: settings.bucket.clone(),
                target,
            })),
        })
    }

    /// Contacts the store once (a listing under the prefix) and explains a failure: bucket
    /// missing, endpoint unreachable, or access denied (wrong key id or secret, or no
    /// permission). Never includes credentials in the message.
    pub async fn check_reachable(&self) -> Result<(), StorageError> {
        let Some(probe) = &self.probe else {
            return self
                .store
                .list_with_delimiter(None)
                .await
                .map(|_| ())
                .map_err(|e| StorageError::Backend(format!("blob store is not usable: {e}")));
        };
        let e = match probe.store.list_with_delimiter(None).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let (bucket, target) = (&probe.bucket, &probe.target);
        Err(StorageError::Backend(match classify(&e) {
            Failure::Unreachable(why) => {
                format!("S3 endpoint {target} is unreachable: {why}")
            }
            Failure::NoSuchBucket => {
                format!("S3 bucket {bucket:?} does not exist at {target}")
            }
            Failure::BadSecret => format!(
                "access to S3 bucket {bucket:?} at {target} denied: the signature does not \
                 match (wrong secret access key?)"
            ),
            Failure::UnknownKey => format!(
                "access to S3 bucket {bucket:?} at {target} denied: the access key id is not \
                 known to the server"
            ),
            Failure::Denied => format!(
                "access to S3 bucket {bucket:?} at {target} denied: check the credentials and \
                 the bucket policy"
            ),
            Failure::Other => format!("S3 bucket {bucket:?} at {target} is not usable: {e}"),
        }))
    }
}

enum Failure {
    Unreachable(String),
    NoSuchBucket,
    BadSecret,
    UnknownKey,
    Denied,
    Other,
}

/// Sorts an S3 failure by its HTTP-level cause and the S3 error code in the response body.
fn classify(e: &object_store::Error) -> Failure {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut text = e.to_string();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<HttpError>()
            && matches!(
                h.kind(),
                HttpErrorKind::Connect | HttpErrorKind::Timeout | HttpErrorKind::Request
            )
        {
            // The chain repeats itself ("error sending request: error sending request: …").
            let mut why = h.to_string();
            let mut inner = std::error::Error::source(h);
            while let Some(i) = inner {
                let part = i.to_string();
                if !why.ends_with(&part) {
                    why = format!("{why}: {part}");
                }
                inner = i.source();
            }
            return Failure::Unreachable(why);
        }
        text.push('\n');
        text.push_str(&s.to_string());
        source = s.source();
    }
    let has = |code: &str| text.contains(&format!("<Code>{code}</Code>"));
    if has("NoSuchBucket") {
        Failure::NoSuchBucket
    } else if has("SignatureDoesNotMatch") {
        Failure::BadSecret
    } else if has("InvalidAccessKeyId") || has("NotSignedUp") {
        Failure::UnknownKey
    } else if has("AccessDenied")
        || matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        )
        || text.contains("403 Forbidden")
    {
        Failure::Denied
    } else if matches!(e, object_store::Error::NotFound { .. }) || text.contains("404 Not Found") {
        Failure::NoSuchBucket
    } else {
        Failure::Other
    }
}

fn path(key: &str) -> Result<Path, StorageError> {
    Path::parse(key).map_err(|e| StorageError::Backend(format!("invalid blob key: {e}")))
}

fn absent<T>(r: Result<T, object_store::Error>) -> Result<Option<T>, StorageError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        self.store.put(&path(key)?, PutPayload::from(data)).await?;
        Ok(())
    }

    async fn put_if_absent(&self, key: &str, data: Bytes) -> Result<bool, StorageError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path(key)?, PutPayload::from(data), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        let Some(r) = absent(self.store.get(&path(key)?).await)? else {
            return Ok(None);
        };
        Ok(Some(r.bytes().await?))
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Option<Bytes>, StorageError> {
        absent(self.store.get_range(&path(key)?, range).await)
    }

    async fn get_stream(
        &self,
        key: &str,
    ) -> Result<Option<BoxStream<'static, Result<Bytes, StorageError>>>, StorageError> {
        let Some(r) = absent(self.store.get(&path(key)?).await)? else {
            return Ok(None);
        };
        Ok(Some(r.into_stream().map_err(StorageError::from).boxed()))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        Ok(absent(self.store.head(&path(key)?).await)?.map(|m| m.size))
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let prefix = path(prefix)?;
        let mut keys: Vec<String> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await?;
        keys.sort();
        Ok(keys)
    }
}
