//! Test infrastructure for Lightbox: an S3-compatible server (`s3s-fs`) that runs in-process on an
//! ephemeral loopback port with SigV4 authentication, for the S3 BlobStore tests and for
//! multi-process tests (the `lightbox-test-s3` binary runs the same server standalone).
//!
//! A bucket is a directory under the server's root. s3s-fs checks `If-None-Match: *` before it
//! writes, so two concurrent conditional PUTs of one key could both succeed; this server therefore
//! serializes conditional writes per key (see [`serve`]), which makes `PutMode::Create` atomic as
//! it is on AWS S3.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{HttpError, HttpResponse};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, oneshot};
use tokio::task::{JoinHandle, JoinSet};

/// Access key the test server accepts unless told otherwise.
pub const DEFAULT_ACCESS_KEY: &str = "lightbox-test";
/// Secret key the test server accepts unless told otherwise.
pub const DEFAULT_SECRET_KEY: &str = "lightbox-test-secret";
/// Region clients should sign for (s3s accepts any).
pub const DEFAULT_REGION: &str = "us-east-1";

/// An in-process S3 server. Stops when dropped (or on [`TestS3::shutdown`]).
pub struct TestS3 {
    /// Access key id accepted by the server.
    pub access_key: String,
    /// Secret access key accepted by the server.
    pub secret_key: String,
    /// Region to sign requests for.
    pub region: String,
    root: PathBuf,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestS3 {
    /// `http://127.0.0.1:PORT`, for path-style requests.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory holding the buckets.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates bucket `name` (a directory under the root); existing buckets are kept.
    pub fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            !name.is_empty() && !name.contains(['/', '\\']) && name != "." && name != "..",
            "invalid bucket name {name:?}"
        );
        let dir = self.root.join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))
    }

    /// Stops accepting, lets in-flight requests finish (up to 5 s) and waits for the server.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Aborting the server task drops its JoinSet, which aborts every open connection.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts an S3 server over directory `root` (created if missing) on 127.0.0.1:0 with the default
/// credentials. Must be called inside a Tokio runtime.
pub async fn start_s3(root: &Path) -> anyhow::Result<TestS3> {
    start_s3_with(root, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY).await
}

/// Like [`start_s3`], with the given credentials.
pub async fn start_s3_with(
    root: &Path,
    access_key: &str,
    secret_key: &str,
) -> anyhow::Result<TestS3> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let server = serve(listener, root, access_key, secret_key, async move {
        let _ = stopped.await;
    })?;
    let task = tokio::spawn(async move {
        if let Err(e) = server.await {
            eprintln!("test S3 server failed: {e:#}");
        }
    });
    Ok(TestS3 {
        access_key: access_key.to_owned(),
        secret_key: secret_key.to_owned(),
        region: DEFAULT_REGION.to_owned(),
        root: root.to_owned(),
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}

/// The server loop: an s3s-fs service over `root` with SigV4 (`access_key`/`secret_key`) on
/// `listener`, until `shutdown` completes; then in-flight requests get up to 5 s to finish.
///
/// Conditional writes (`PUT`/`POST` with `If-None-Match` or `If-Match`) are serialized per
/// request path, because s3s-fs tests the condition and writes in two steps.
pub fn serve(
    listener: TcpListener,
    root: &Path,
    access_key: &str,
    secret_key: &str,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + Send + 'static> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let fs = s3s_fs::FileSystem::new(root)
        .map_err(|e| anyhow::anyhow!("s3s-fs over {}: {e:?}", root.display()))?;
    let mut builder = S3ServiceBuilder::new(fs);
    builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
    let service = Guarded {
        inner: builder.build(),
        locks: Arc::new((0..64).map(|_| Arc::new(Mutex::new(()))).collect()),
        hasher: RandomState::new(),
    };
    Ok(async move {
        let http = ConnBuilder::new(TokioExecutor::new());
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let socket = tokio::select! {
                r = listener.accept() => match r {
                    Ok((socket, _)) => socket,
                    Err(e) => {
                        eprintln!("test S3 server: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = shutdown.as_mut() => break,
            };
            let _ = socket.set_nodelay(true);
            let conn = http
                .serve_connection(TokioIo::new(socket), service.clone())
                .into_owned();
            let conn = graceful.watch(conn);
            connections.spawn(async move {
                let _ = conn.await;
            });
            // Reap finished connections so the set does not grow without bound.
            while connections.try_join_next().is_some() {}
        }
        drop(listener);
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
        }
        connections.shutdown().await;
        Ok(())
    })
}

/// The s3s service plus per-path locks around conditional writes.
#[derive(Clone)]
struct Guarded {
    inner: S3Service,
    locks: Arc<Vec<Arc<Mutex<()>>>>,
    hasher: RandomState,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for Guarded {
    type Response = HttpResponse;
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send>>;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        let conditional_write = matches!(*req.method(), http::Method::PUT | http::Method::POST)
            && (req.headers().contains_key(http::header::IF_NONE_MATCH)
                || req.headers().contains_key(http::header::IF_MATCH));
        let lock = conditional_write.then(|| {
            let i = self.hasher.hash_one(req.uri().path()) as usize % self.locks.len();
            self.locks[i].clone()
        });
        let inner = self.inner.clone();
        Box::pin(async move {
            let _guard = match lock {
                Some(l) => Some(l.lock_owned().await),
                None => None,
            };
            inner.call(req.map(s3s::Body::from)).await
        })
    }
}
