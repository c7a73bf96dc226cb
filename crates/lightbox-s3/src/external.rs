//! `ExternalS3`: `S3Access` over an external S3-compatible endpoint (AWS S3, MinIO, Ceph…)
//! through `object_store`, one client per bucket, created on first use and cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::access::{ListPage, S3Access, S3AccessError, S3Object};

/// How to reach the external S3.
#[derive(Clone, Default)]
pub struct ExternalS3Config {
    /// Endpoint URL (`http://minio:9000`); `None` is AWS S3.
    pub endpoint: Option<String>,
    /// Region to sign for (default `us-east-1`).
    pub region: Option<String>,
    /// Access key id; `None` uses the AWS environment (`AWS_ACCESS_KEY_ID`, …).
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// `bucket.host` addressing instead of path style.
    pub virtual_hosted_style: bool,
}

impl std::fmt::Debug for ExternalS3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalS3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish()
    }
}

/// An external S3-compatible endpoint.
pub struct ExternalS3 {
    config: ExternalS3Config,
    stores: Mutex<HashMap<String, Arc<AmazonS3>>>,
}

impl std::fmt::Debug for ExternalS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalS3")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ExternalS3 {
    /// Checks the settings (endpoint URL) without connecting.
    pub fn new(config: ExternalS3Config) -> Result<Self, S3AccessError> {
        let s3 = Self {
            config,
            stores: Mutex::new(HashMap::new()),
        };
        // Build one client to surface configuration errors now rather than in a job.
        s3.build("lightbox-config-check")?;
        Ok(s3)
    }

    fn build(&self, bucket: &str) -> Result<AmazonS3, S3AccessError> {
        let c = &self.config;
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(c.region.clone().unwrap_or_else(|| "us-east-1".into()))
            .with_virtual_hosted_style_request(c.virtual_hosted_style);
        if let Some(endpoint) = &c.endpoint {
            let endpoint = endpoint.trim_end_matches('/');
            let usable = endpoint.split_once("://").is_some_and(|(scheme, host)| {
                matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains('@')
            });
            if !usable {
                return Err(S3AccessError::Other(
                    "invalid external S3 settings: the endpoint must be an http:// or https:// URL \
                     without credentials"
                        .into(),
                ));
            }
            b = b.with_allow_http(endpoint.starts_with("http://"));
            // object_store expects the bucket inside a virtual-hosted-style endpoint.
            b = match (c.virtual_hosted_style, endpoint.split_once("://")) {
                (true, Some((scheme, host))) => {
                    b.with_endpoint(format!("{scheme}://{bucket}.{host}"))
                }
                _ => b.with_endpoint(endpoint),
            };
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        match (&c.access_key_id, &c.secret_access_key) {
            (Some(k), Some(s)) => b = b.with_access_key_id(k).with_secret_access_key(s),
            (None, None) => {
                if let (Some(k), Some(s)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
                {
                    b = b.with_access_key_id(k).with_secret_access_key(s);
                    if let Some(t) = env("AWS_SESSION_TOKEN") {
                        b = b.with_token(t);
                    }
                }
            }
            _ => {
                return Err(S3AccessError::Other(
                    "invalid external S3 settings: set both the access key id and the secret"
                        .into(),
                ));
            }
        }
        b.build().map_err(|e| {
            S3AccessError::Other(format!(
                "invalid external S3 settings: {}",
                config_problem(&e)
            ))
        })
    }

    fn store(&self, bucket: &str) -> Result<Arc<AmazonS3>, S3AccessError> {
        if !s3s::path::check_bucket_name(bucket) {
            return Err(S3AccessError::NoSuchBucket);
        }
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = stores.get(bucket) {
            return Ok(s.clone());
        }
        let s = Arc::new(self.build(bucket)?);
        stores.insert(bucket.to_owned(), s.clone());
        Ok(s)
    }
}

/// A configuration error without the values (the endpoint may name a bucket).
fn config_problem(e: &object_store::Error) -> &'static str {
    match e {
        object_store::Error::UnknownConfigurationKey { .. } => "unknown configuration key",
        _ => "the endpoint URL or region is not usable",
    }
}

/// Maps an object_store error to an `S3AccessError` whose message names no key or bucket.
fn map_error(e: object_store::Error, missing: S3AccessError) -> S3AccessError {
    let text = e.to_string();
    if text.contains("NoSuchBucket") {
        return S3AccessError::NoSuchBucket;
    }
    match e {
        object_store::Error::NotFound { .. } => missing,
        object_store::Error::PermissionDenied { .. } => {
            S3AccessError::AccessDenied("the external S3 endpoint refused the request".into())
        }
        object_store::Error::Unauthenticated { .. } => S3AccessError::AccessDenied(
            "the external S3 endpoint did not accept the credentials".into(),
        ),
        object_store::Error::InvalidPath { .. } => {
            S3AccessError::Other("the key is not usable with the external S3 endpoint".into())
        }
        _ if [
            "AccessDenied",
            "SignatureDoesNotMatch",
            "InvalidAccessKeyId",
        ]
        .iter()
        .any(|c| text.contains(c)) =>
        {
            S3AccessError::AccessDenied("the external S3 endpoint refused the request".into())
        }
        _ => S3AccessError::Other("the external S3 request failed".into()),
    }
}

/// The object_store path of an S3 key, kept byte for byte.
fn key_path(key: &str) -> Result<Path, S3AccessError> {
    Path::parse(key).map_err(|_| {
        S3AccessError::Other("the key is not usable with the external S3 endpoint".into())
    })
}

#[async_trait::async_trait]
impl S3Access for ExternalS3 {
    async fn list(
        &self,
        bucket: &str,
        prefix: &str,
        continuation: Option<String>,
    ) -> Result<ListPage, S3AccessError> {
        let store = self.store(bucket)?;
        // object_store lists whole path segments: list the folder holding the prefix and keep
        // the keys that start with the raw prefix.
        let folder = match prefix.rfind('/') {
            Some(i) => Some(key_path(&prefix[..i])?),
            None => None,
        };
        let mut stream = match &continuation {
            Some(after) => store.list_with_offset(folder.as_ref(), &key_path(after)?),
            None => store.list(folder.as_ref()),
        };
        let limit = crate::LIST_PAGE_SIZE;
        let mut objects = Vec::new();
        let mut more = false;
        while let Some(item) = stream.next().await {
            let meta = item.map_err(|e| map_error(e, S3AccessError::NoSuchBucket))?;
            let key = meta.location.as_ref();
            if !key.starts_with(prefix) {
                continue;
            }
            if objects.len() == limit {
                more = true;
                break;
            }
            objects.push(S3Object {
                key: key.to_owned(),
                size: meta.size,
            });
        }
        let next = if more {
            objects.last().map(|o| o.key.clone())
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }

    async fn get(&self, bucket: &str, key: &str, max_bytes: u64) -> Result<Bytes, S3AccessError> {
        let store = self.store(bucket)?;
        let path = key_path(key)?;
        let meta = store
            .head(&path)
            .await
            .map_err(|e| map_error(e, S3AccessError::NoSuchKey))?;
        if meta.size > max_bytes {
            return Err(S3AccessError::TooLarge {
                size: meta.size,
                max: max_bytes,
            });
        }
        let bytes = store
            .get(&path)
            .await
            .map_err(|e| map_error(e, S3AccessError::NoSuchKey))?
            .bytes()
            .await
            .map_err(|e| map_error(e, S3AccessError::NoSuchKey))?;
        if bytes.len() as u64 > max_bytes {
            return Err(S3AccessError::TooLarge {
                size: bytes.len() as u64,
                max: max_bytes,
            });
        }
        Ok(bytes)
    }

    async fn put(&self, bucket: &str, key: &str, body: Bytes) -> Result<(), S3AccessError> {
        let store = self.store(bucket)?;
        let path = key_path(key)?;
        store
            .put(&path, body.into())
            .await
            .map_err(|e| map_error(e, S3AccessError::NoSuchBucket))?;
        Ok(())
    }
}
