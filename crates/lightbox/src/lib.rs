//! Lightbox as a library: configuration, wiring of storage, service and API, and a running
//! server handle. The binary (`main.rs`) and the test suites start servers through `start`.

mod config;

pub use config::{Config, DEFAULT_LISTEN, S3Options, parse_credentials, redact_url};
pub use lightbox_s3::{self, S3Access};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use lightbox_api::ApiState;
use lightbox_service::{OffsetClock, Service, ServiceConfig};
use lightbox_storage::blob::{BlobStoreLocation, S3Settings, parse_blob_store_url};
use lightbox_storage::{ObjectBlobStore, SqlCatalog};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The credentials that work when none are configured, on loopback listeners only.
pub const DEFAULT_CREDENTIALS: (&str, &str) = ("test", "test");

/// A running Lightbox server.
pub struct Server {
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    background: JoinHandle<()>,
    s3_access: Arc<dyn S3Access>,
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://ADDR:PORT`, the endpoint URL clients use.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// What import jobs read inputs from and write outputs to (see [`open_s3`]).
    pub fn s3_access(&self) -> Arc<dyn S3Access> {
        self.s3_access.clone()
    }

    /// Stops accepting requests, lets in-flight requests finish, stops background work.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(true);
        self.http.await.context("HTTP task panicked")??;
        self.background.await.context("background task panicked")?;
        Ok(())
    }
}

/// Opens storage in `config.data_dir`, binds `config.listen` and starts serving.
pub async fn start(config: Config) -> anyhow::Result<Server> {
    let credentials = effective_credentials(&config)?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let s3 = open_s3(&config, &credentials)?;
    let catalog = open_catalog(&config).await?;
    let blobs = open_blob_store(&config).await?;
    let service = Arc::new(
        Service::new(
            Arc::new(catalog),
            Arc::new(blobs),
            ServiceConfig {
                region: config.region.clone(),
                account_id: config.account_id.clone(),
                max_datastores: config.max_datastores,
                transition_delay: config.transition_delay,
                job_lease: config.job_lease,
                job_poll_interval: lightbox_service::default_poll_interval(config.transition_delay),
                import: config.import.clone(),
                max_update_payload_bytes: config.max_update_payload_bytes,
                max_copy_frames: config.max_copy_frames,
                job_retention: config.job_retention,
                ..ServiceConfig::default()
            },
            Arc::new(OffsetClock(config.clock_offset)),
        )
        .await
        .context("cannot start the service")?
        .with_s3_access(s3.s3_access.clone()),
    );
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let app = lightbox_api::router(Arc::new(ApiState {
        service: service.clone(),
        credentials,
        max_request_body: config.max_request_body,
        body_timeout: config.body_timeout,
        s3: s3.endpoint.clone(),
    }));

    let (shutdown, rx) = watch::channel(false);
    let mut http_rx = rx.clone();
    let http = tokio::spawn(async move {
        // No Nagle delay: small responses (S3 GETs, JSON) would otherwise wait ~40 ms for
        // the client's delayed ACK.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_rx.wait_for(|stop| *stop).await;
            })
            .await
    });
    let background = tokio::spawn(service.run_background(rx));
    tracing::info!(%local_addr, "serving");
    Ok(Server {
        local_addr,
        shutdown,
        http,
        background,
        s3_access: s3.s3_access,
    })
}

/// The S3 side of a server.
pub struct S3Wiring {
    /// The built-in S3 endpoint (`data_dir/s3`), when `config.builtin_s3`.
    pub endpoint: Option<Arc<lightbox_s3::S3Endpoint>>,
    /// What import jobs use for `s3://` URIs: the external endpoint of `config.import_s3`, or
    /// else the built-in S3's buckets (sharing the endpoint's store).
    pub s3_access: Arc<dyn S3Access>,
}

/// Opens the built-in S3 endpoint and the import jobs' S3 access as `config` says.
pub fn open_s3(config: &Config, credentials: &HashMap<String, String>) -> anyhow::Result<S3Wiring> {
    let root = config.data_dir.join("s3");
    let endpoint = if config.builtin_s3 {
        Some(Arc::new(
            lightbox_s3::S3Endpoint::new(&root, credentials).with_context(|| {
                format!("cannot open the built-in S3 directory {}", root.display())
            })?,
        ))
    } else {
        None
    };
    let s3_access: Arc<dyn S3Access> = match (&config.import_s3.endpoint, &endpoint) {
        (Some(_), _) => Arc::new(
            lightbox_s3::ExternalS3::new(config.import_s3.clone())
                .context("invalid --import-s3-* settings")?,
        ),
        (None, Some(e)) => Arc::new(e.builtin_access()),
        (None, None) => Arc::new(lightbox_s3::BuiltinS3::open(&root).with_context(|| {
            format!("cannot open the built-in S3 directory {}", root.display())
        })?),
    };
    Ok(S3Wiring {
        endpoint,
        s3_access,
    })
}

/// Opens the catalog `config` names: `--catalog`, or SQLite in the data dir (migrated).
pub async fn open_catalog(config: &Config) -> anyhow::Result<SqlCatalog> {
    match &config.catalog {
        None => SqlCatalog::open_sqlite_file(&config.data_dir.join("catalog.db"))
            .await
            .context("cannot open the embedded catalog"),
        Some(url) => SqlCatalog::connect(url)
            .await
            .with_context(|| format!("cannot use the catalog database {}", redact_url(url))),
    }
}

/// Opens the blob store `config` names (`--blob-store`, or `blobs/` in the data dir) and
/// checks it is usable.
pub async fn open_blob_store(config: &Config) -> anyhow::Result<ObjectBlobStore> {
    let location = match &config.blob_store {
        None => BlobStoreLocation::Local(config.data_dir.join("blobs")),
        Some(url) => parse_blob_store_url(url).context("invalid --blob-store")?,
    };
    let store = match &location {
        BlobStoreLocation::Local(dir) => ObjectBlobStore::local(dir)
            .with_context(|| format!("cannot open the blob directory {}", dir.display()))?,
        BlobStoreLocation::S3 { bucket, prefix } => {
            let s3 = &config.s3;
            ObjectBlobStore::s3(&S3Settings {
                bucket: bucket.clone(),
                prefix: prefix.clone(),
                endpoint: s3.endpoint.clone(),
                region: s3.region.clone().unwrap_or_else(|| "us-east-1".into()),
                access_key_id: s3.access_key_id.clone(),
                secret_access_key: s3.secret_access_key.clone(),
                allow_http: s3
                    .endpoint
                    .as_deref()
                    .is_some_and(|e| e.starts_with("http://")),
                force_path_style: !s3.virtual_hosted_style,
            })
            .context("invalid S3 blob store settings")?
        }
    };
    store
        .check_reachable()
        .await
        .context("the blob store is not usable")?;
    Ok(store)
}

/// The configured credentials, or the development default on a loopback listener.
fn effective_credentials(config: &Config) -> anyhow::Result<HashMap<String, String>> {
    if !config.credentials.is_empty() {
        return Ok(config.credentials.iter().cloned().collect());
    }
    if !config.listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {} with the default development credentials: they only work \
             on a loopback address. Configure access keys with --credentials AKID:SECRET \
             (or LIGHTBOX_CREDENTIALS), or listen on 127.0.0.1.",
            config.listen
        );
    }
    let (k, s) = DEFAULT_CREDENTIALS;
    Ok(HashMap::from([(k.to_owned(), s.to_owned())]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_default_credentials_off_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path());
        config.listen = "0.0.0.0:0".parse().unwrap();
        let err = start(config).await.err().expect("must refuse");
        assert!(err.to_string().contains("loopback"), "{err}");
    }

    #[tokio::test]
    async fn unreachable_or_misconfigured_storage_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path());
        config.catalog = Some("postgres://lightbox:pw@127.0.0.1:1/none".into());
        let err = format!("{:#}", start(config).await.err().expect("must fail"));
        assert!(
            err.contains("cannot connect to the catalog database"),
            "{err}"
        );
        assert!(err.contains("Connection refused"), "{err}");
        assert!(!err.contains("pw@"), "no password in messages: {err}");

        let mut config = Config::new(dir.path());
        config.catalog = Some("mysql://somewhere/db".into());
        let err = format!("{:#}", start(config).await.err().expect("must fail"));
        assert!(err.contains("sqlite: or postgres://"), "{err}");

        let mut config = Config::new(dir.path());
        config.blob_store = Some("ftp://bucket/prefix".into());
        let err = format!("{:#}", start(config).await.err().expect("must fail"));
        assert!(err.contains("invalid --blob-store"), "{err}");

        let mut config = Config::new(dir.path());
        config.blob_store = Some("s3://lightbox-missing-bucket/x".into());
        config.s3.endpoint = Some("http://127.0.0.1:1".into());
        config.s3.access_key_id = Some("k".into());
        config.s3.secret_access_key = Some("s".into());
        let err = format!("{:#}", start(config).await.err().expect("must fail"));
        assert!(err.contains("blob store is not usable"), "{err}");
    }

    #[tokio::test]
    async fn configured_credentials_allow_any_address() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new(dir.path());
        config.listen = "0.0.0.0:0".parse().unwrap();
        config.credentials = vec![("AKIDPROD".into(), "s3cret".into())];
        let server = start(config).await.unwrap();
        server.shutdown().await.unwrap();
    }
}
