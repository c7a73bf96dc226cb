//! Test harness for the real-client tests: an in-process Lightbox server in a temporary data
//! directory, `aws-sdk-medicalimaging` clients pointed at it, and a raw HTTP/1.1 client that
//! signs arbitrary requests with `aws-sigv4` (chosen time, keys, service, host) or sends them
//! unsigned.
//!
//! Run: `cargo test -p lightbox-sdk-tests` (not a default workspace member: the SDK build is
//! kept out of everyday builds). The Python suites beside it: `cargo build -p lightbox &&
//! .venv/bin/python -m pytest tests/python` (binary from `$LIGHTBOX_BIN`, default
//! `target/debug/lightbox`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use aws_sdk_medicalimaging::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_medicalimaging::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_medicalimaging::types::DatastoreStatus;
use aws_sdk_medicalimaging::{Client, error::BoxError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use aws_sdk_medicalimaging;
pub use aws_sdk_s3;
pub use aws_sigv4;

/// Default region and account of `lightbox::Config::new`.
pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "000000000000";
/// The signing name of the service.
pub const SERVICE: &str = "medical-imaging";

type Tweak = Arc<dyn Fn(&mut lightbox::Config) + Send + Sync>;

/// Which storage the test servers use, from `LIGHTBOX_TEST_BACKEND`:
/// `embedded` (default: SQLite + files in the data directory) or `postgres-s3` (a fresh
/// database on `LIGHTBOX_TEST_POSTGRES_URL` + an in-process S3 server, per test server).
pub fn backend() -> String {
    std::env::var("LIGHTBOX_TEST_BACKEND").unwrap_or_else(|_| "embedded".into())
}

/// Scale-out storage for one test server: its database URL and S3 server.
pub struct SharedStorage {
    pub catalog_url: String,
    pub s3: lightbox_testkit::TestS3,
    pub bucket: String,
}

impl SharedStorage {
    /// A fresh PostgreSQL database and a fresh S3 bucket.
    pub async fn create(root: &Path) -> Result<SharedStorage> {
        let admin = std::env::var("LIGHTBOX_TEST_POSTGRES_URL").context(
            "LIGHTBOX_TEST_BACKEND=postgres-s3 needs LIGHTBOX_TEST_POSTGRES_URL (scripts/test sets it)",
        )?;
        let catalog_url = lightbox_storage::testsuite::fresh_postgres_database(&admin).await;
        let s3 = lightbox_testkit::start_s3(root).await?;
        let bucket = "lightbox-test".to_string();
        s3.create_bucket(&bucket)?;
        Ok(SharedStorage {
            catalog_url,
            s3,
            bucket,
        })
    }

    /// Points `config` at this storage.
    pub fn apply(&self, config: &mut lightbox::Config) {
        config.catalog = Some(self.catalog_url.clone());
        config.blob_store = Some(format!("s3://{}/blobs", self.bucket));
        config.s3 = lightbox::S3Options {
            endpoint: Some(self.s3.endpoint_url()),
            region: Some(self.s3.region.clone()),
            access_key_id: Some(self.s3.access_key.clone()),
            secret_access_key: Some(self.s3.secret_key.clone()),
            virtual_hosted_style: false,
        };
    }
}

/// A Lightbox server running inside the test process, with its own data directory (and, with
/// the `postgres-s3` backend, its own database and bucket).
pub struct TestServer {
    server: Option<lightbox::Server>,
    dir: tempfile::TempDir,
    tweak: Tweak,
    addr: SocketAddr,
    endpoint: String,
    shared: Option<Arc<SharedStorage>>,
}

impl TestServer {
    /// Starts a server with the defaults of `Config::new`, except a 200 ms transition delay.
    pub async fn start() -> Result<TestServer> {
        Self::start_with(|_| {}).await
    }

    /// Starts a server; `tweak` adjusts the configuration after the test defaults are applied.
    /// The same tweak is applied again on [`TestServer::restart`].
    pub async fn start_with(
        tweak: impl Fn(&mut lightbox::Config) + Send + Sync + 'static,
    ) -> Result<TestServer> {
        let dir = tempfile::tempdir().context("temp data dir")?;
        let tweak: Tweak = Arc::new(tweak);
        let shared = match backend().as_str() {
            "embedded" => None,
            "postgres-s3" => Some(Arc::new(
                SharedStorage::create(&dir.path().join("s3")).await?,
            )),
            other => bail!("unknown LIGHTBOX_TEST_BACKEND {other}"),
        };
        let server = Self::boot(dir.path(), &tweak, shared.as_deref()).await?;
        let addr = server.local_addr();
        let endpoint = server.endpoint_url();
        Ok(TestServer {
            server: Some(server),
            dir,
            tweak,
            addr,
            endpoint,
            shared,
        })
    }

    async fn boot(
        dir: &Path,
        tweak: &Tweak,
        shared: Option<&SharedStorage>,
    ) -> Result<lightbox::Server> {
        let mut config = lightbox::Config::new(dir.to_path_buf());
        config.transition_delay = Duration::from_millis(200);
        if let Some(shared) = shared {
            shared.apply(&mut config);
        }
        tweak(&mut config);
        lightbox::start(config).await.context("lightbox::start")
    }

    /// Stops the server and starts it again on the same data directory (the port may change).
    pub async fn restart(&mut self) -> Result<()> {
        if let Some(server) = self.server.take() {
            server.shutdown().await.context("shutdown")?;
        }
        let server = Self::boot(self.dir.path(), &self.tweak, self.shared.as_deref()).await?;
        self.addr = server.local_addr();
        self.endpoint = server.endpoint_url();
        self.server = Some(server);
        Ok(())
    }

    /// Stops the server for good.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(server) = self.server.take() {
            server.shutdown().await?;
        }
        Ok(())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL the server reports (`http://127.0.0.1:PORT`).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `http://127.0.0.1:PORT` built from the bound address (independent of `endpoint_url`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// SDK client with test/test that strips the `runtime-` host prefix before signing.
    pub fn client(&self) -> Client {
        sdk_client(&self.url(), "test", "test", HostMode::StripPrefix)
    }

    /// SDK client with test/test that keeps `Host: runtime-127.0.0.1:PORT` (signed as such) and
    /// only connects to 127.0.0.1: proves the server accepts and verifies the runtime host.
    pub fn runtime_host_client(&self) -> Client {
        sdk_client(&self.url(), "test", "test", HostMode::KeepRuntimeHost)
    }

    /// SDK client with the given credentials.
    pub fn client_with_keys(&self, access_key: &str, secret: &str) -> Client {
        sdk_client(&self.url(), access_key, secret, HostMode::StripPrefix)
    }

    /// A raw request builder aimed at this server.
    pub fn raw(&self, method: &str, path_and_query: &str) -> RawRequest {
        RawRequest::new(self.addr, method, path_and_query)
    }

    /// ARN of a data store on this server (default region/account).
    pub fn datastore_arn(&self, id: &str) -> String {
        format!("arn:aws:medical-imaging:{REGION}:{ACCOUNT}:datastore/{id}")
    }
}

/// How an SDK client deals with the `runtime-` host prefix of the image-set operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostMode {
    /// Rewrite `runtime-HOST` to `HOST` before signing (what a user would do).
    StripPrefix,
    /// Sign and send `Host: runtime-HOST`, but connect to `HOST`.
    KeepRuntimeHost,
}

#[derive(Debug)]
struct RuntimeHostInterceptor(HostMode);

const RUNTIME_PREFIX: &str = "://runtime-";

impl Intercept for RuntimeHostInterceptor {
    fn name(&self) -> &'static str {
        "RuntimeHostInterceptor"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.0 == HostMode::StripPrefix {
            let request = context.request_mut();
            let uri = request.uri().to_string();
            if uri.contains(RUNTIME_PREFIX) {
                request.set_uri(uri.replacen(RUNTIME_PREFIX, "://", 1))?;
            }
        }
        Ok(())
    }

    fn modify_before_transmit(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.0 == HostMode::KeepRuntimeHost {
            let request = context.request_mut();
            let uri = request.uri().to_string();
            if let Some(start) = uri.find(RUNTIME_PREFIX) {
                let rest = &uri[start + 3..];
                let authority = rest.split('/').next().unwrap_or(rest).to_string();
                request.headers_mut().insert("host", authority);
                request.set_uri(uri.replacen(RUNTIME_PREFIX, "://", 1))?;
                RUNTIME_HOST_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        Ok(())
    }
}

/// How many requests a [`HostMode::KeepRuntimeHost`] client sent with a `runtime-` Host header.
pub static RUNTIME_HOST_REQUESTS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// Builds an SDK client for `endpoint` (plain HTTP, no retries, us-east-1).
pub fn sdk_client(endpoint: &str, access_key: &str, secret: &str, mode: HostMode) -> Client {
    let http_client = aws_smithy_http_client::Builder::new().build_http();
    let conf = aws_sdk_medicalimaging::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            access_key,
            secret,
            None,
            None,
            "lightbox-tests",
        ))
        .http_client(http_client)
        .retry_config(aws_sdk_medicalimaging::config::retry::RetryConfig::disabled())
        .interceptor(RuntimeHostInterceptor(mode))
        .build();
    Client::from_conf(conf)
}

/// Polls GetDatastore until the data store has `want` (or fails after `timeout`).
pub async fn wait_status(
    client: &Client,
    id: &str,
    want: DatastoreStatus,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let out = client.get_datastore().datastore_id(id).send().await;
        match out {
            Ok(out) => {
                let status = out
                    .datastore_properties()
                    .map(|p| p.datastore_status().clone());
                if status.as_ref() == Some(&want) {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    bail!("data store {id} still {status:?} after {timeout:?}, want {want:?}");
                }
            }
            Err(e) => bail!(
                "GetDatastore {id} failed while waiting for {want:?}: {}",
                aws_sdk_medicalimaging::error::DisplayErrorContext(&e)
            ),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until ACTIVE (5 s).
pub async fn wait_active(client: &Client, id: &str) -> Result<()> {
    wait_status(client, id, DatastoreStatus::Active, Duration::from_secs(5)).await
}

/// Waits until DELETED (5 s).
pub async fn wait_deleted(client: &Client, id: &str) -> Result<()> {
    wait_status(client, id, DatastoreStatus::Deleted, Duration::from_secs(5)).await
}

/// Creates a data store named `name` and waits until it is ACTIVE; returns its id.
pub async fn create_active(client: &Client, name: &str) -> Result<String> {
    let out = client
        .create_datastore()
        .datastore_name(name)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "CreateDatastore: {}",
                aws_sdk_medicalimaging::error::DisplayErrorContext(&e)
            )
        })?;
    let id = out.datastore_id().to_string();
    wait_active(client, &id).await?;
    Ok(id)
}

/// A fresh 32-character lower-case hex id that no server has issued.
pub fn random_id() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut out = String::new();
    while out.len() < 32 {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out.truncate(32);
    out
}

/// Whether `s` looks like a UUID (8-4-4-4-12 hex).
pub fn is_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Signing parameters for a raw request.
#[derive(Debug, Clone)]
pub struct Signer {
    pub access_key: String,
    pub secret: String,
    pub region: String,
    pub service: String,
    pub time: SystemTime,
    /// `Some(expiry)`: presign (query string) instead of an Authorization header.
    pub presign: Option<Duration>,
}

impl Default for Signer {
    fn default() -> Self {
        Signer {
            access_key: "test".into(),
            secret: "test".into(),
            region: REGION.into(),
            service: SERVICE.into(),
            time: SystemTime::now(),
            presign: None,
        }
    }
}

/// A raw HTTP/1.1 request, sent over a fresh TCP connection with `Connection: close`.
#[derive(Debug, Clone)]
pub struct RawRequest {
    pub addr: SocketAddr,
    pub method: String,
    /// Already percent-encoded path and query, as it goes on the request line.
    pub path_and_query: String,
    /// Value of the Host header (and of the host that is signed).
    pub host: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawRequest {
    pub fn new(addr: SocketAddr, method: &str, path_and_query: &str) -> RawRequest {
        RawRequest {
            addr,
            method: method.into(),
            path_and_query: path_and_query.into(),
            host: addr.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn host(mut self, host: &str) -> Self {
        self.host = host.into();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets a JSON body and `Content-Type: application/json`.
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = serde_json::to_vec(body).unwrap();
        self.headers
            .push(("content-type".into(), "application/json".into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Signs with test/test now, service medical-imaging.
    pub fn signed(self) -> Self {
        self.sign(&Signer::default())
    }

    /// Signs the request as it is now (method, host, path, query, headers, body).
    pub fn sign(self, signer: &Signer) -> Self {
        self.sign_with(signer, |_| {})
    }

    /// Like [`RawRequest::sign`], with a hook to adjust the `aws-sigv4` signing settings.
    pub fn sign_with(
        mut self,
        signer: &Signer,
        adjust: impl FnOnce(&mut aws_sigv4::http_request::SigningSettings),
    ) -> Self {
        use aws_sigv4::http_request::{
            SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
        };
        let identity = Credentials::new(
            signer.access_key.clone(),
            signer.secret.clone(),
            None,
            None,
            "raw",
        )
        .into();
        let mut settings = SigningSettings::default();
        if let Some(expiry) = signer.presign {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(expiry);
        }
        adjust(&mut settings);
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&signer.region)
            .name(&signer.service)
            .time(signer.time)
            .settings(settings)
            .build()
            .expect("signing params")
            .into();
        let url = format!("http://{}{}", self.host, self.path_and_query);
        let signable = SignableRequest::new(
            &self.method,
            url.clone(),
            self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(&self.body),
        )
        .expect("signable request");
        let (instructions, _signature) = sign(signable, &params).expect("sign").into_parts();
        let mut req = http::Request::builder()
            .method(self.method.as_str())
            .uri(&url)
            .body(())
            .expect("http request");
        instructions.apply_to_request_http1x(&mut req);
        for (name, value) in req.headers() {
            let name = name.as_str();
            if !self
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case(name))
            {
                self.headers
                    .push((name.to_string(), value.to_str().unwrap().to_string()));
            }
        }
        self.path_and_query = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        self
    }

    /// Replaces (or adds) a header after signing.
    pub fn set_header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Serialises the request head (with Host, Content-Length unless given, Connection: close).
    pub fn head_bytes(&self) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path_and_query);
        let has = |n: &str| self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        if !has("host") {
            head.push_str(&format!("Host: {}\r\n", self.host));
        }
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !has("content-length") && !has("transfer-encoding") {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        if !has("connection") {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    /// Sends the request and reads the whole response (10 s timeout).
    pub async fn send(&self) -> Result<RawResponse> {
        let mut bytes = self.head_bytes();
        bytes.extend_from_slice(&self.body);
        send_bytes(self.addr, &bytes, false).await
    }
}

/// Writes `bytes` on a fresh connection (optionally half-closing it) and reads the response.
pub async fn send_bytes(addr: SocketAddr, bytes: &[u8], half_close: bool) -> Result<RawResponse> {
    let fut = async {
        let mut stream = TcpStream::connect(addr).await?;
        // The server may answer (e.g. 413) and close before reading everything: ignore write
        // errors and read what it sent.
        let _ = stream.write_all(bytes).await;
        if half_close {
            let _ = stream.shutdown().await;
        }
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(resp) = RawResponse::parse_complete(&buf) {
                        return Ok(resp);
                    }
                }
                Err(e) if !buf.is_empty() => {
                    let _ = e;
                    break;
                }
                Err(e) => return Err(anyhow::Error::from(e)),
            }
        }
        RawResponse::parse(&buf)
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| anyhow!("no complete response within 10 s"))?
}

/// Header name/value pairs in received order.
pub type Headers = Vec<(String, String)>;

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    fn split_head(buf: &[u8]) -> Option<(usize, u16, Headers)> {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&buf[..end]);
        let mut lines = head.split("\r\n");
        let status_line = lines.next()?;
        let status = status_line.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_string(), v.trim().to_string()))
            })
            .collect();
        Some((end + 4, status, headers))
    }

    fn parse_complete(buf: &[u8]) -> Option<RawResponse> {
        let (start, status, headers) = Self::split_head(buf)?;
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.clone())
        };
        if let Some(len) = get("content-length") {
            let len: usize = len.parse().ok()?;
            if buf.len() >= start + len {
                return Some(RawResponse {
                    status,
                    headers,
                    body: buf[start..start + len].to_vec(),
                });
            }
            return None;
        }
        if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            return dechunk(&buf[start..]).map(|body| RawResponse {
                status,
                headers,
                body,
            });
        }
        None
    }

    fn parse(buf: &[u8]) -> Result<RawResponse> {
        if let Some(r) = Self::parse_complete(buf) {
            return Ok(r);
        }
        let (start, status, headers) =
            Self::split_head(buf).ok_or_else(|| anyhow!("no HTTP response: {buf:?}"))?;
        Ok(RawResponse {
            status,
            headers,
            body: buf[start..].to_vec(),
        })
    }

    /// First value of a header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| {
            format!(
                "response body is not JSON: {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `message` of an error body.
    pub fn message(&self) -> String {
        self.json()
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str().map(String::from)))
            .unwrap_or_default()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the AWS rest-json error shape: status, `x-amzn-ErrorType`, a UUID
    /// `x-amzn-RequestId`, and a JSON body with a non-empty `message`. Returns the message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, error_type: &str) -> String {
        assert_eq!(
            (self.status, self.header("x-amzn-ErrorType")),
            (status, Some(error_type)),
            "unexpected status/error type; headers {:?}, body {}",
            self.headers,
            self.text()
        );
        let rid = self.header("x-amzn-RequestId").unwrap_or_default();
        assert!(is_uuid(rid), "x-amzn-RequestId {rid:?} is not a UUID");
        let body = self.json().expect("error body must be JSON");
        let message = body
            .get("message")
            .and_then(|m| m.as_str())
            .unwrap_or_else(|| panic!("error body has no string `message`: {body}"));
        assert!(!message.is_empty(), "empty error message");
        message.to_string()
    }

    #[track_caller]
    pub fn assert_ok(&self) -> serde_json::Value {
        assert_eq!(
            self.status,
            200,
            "expected 200; headers {:?}, body {}",
            self.headers,
            self.text()
        );
        if self.body.is_empty() {
            serde_json::Value::Null
        } else {
            self.json().unwrap()
        }
    }
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_str = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_str.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        if data.len() < size + 2 {
            return None;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Percent-encodes a path label the way the SDKs do (unreserved characters only).
pub fn encode_label(s: &str) -> String {
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
    const SET: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(s, SET).to_string()
}

impl TestServer {
    /// A second handle on the server's catalog (the same SQLite file or PostgreSQL database),
    /// for tests that seed records no API can create yet.
    pub async fn catalog(&self) -> Result<lightbox_storage::SqlCatalog> {
        Ok(match &self.shared {
            Some(s) => lightbox_storage::SqlCatalog::connect(&s.catalog_url).await?,
            None => {
                lightbox_storage::SqlCatalog::open_sqlite_file(&self.data_dir().join("catalog.db"))
                    .await?
            }
        })
    }
}

impl TestServer {
    /// An aws-sdk-s3 client (test/test, path-style) for the server's built-in S3 endpoint.
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        s3_client_at(&self.url())
    }
}

/// An aws-sdk-s3 client (test/test, path-style) for the built-in S3 endpoint at `url`.
pub fn s3_client_at(url: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .force_path_style(true)
        .credentials_provider(aws_credential_types::Credentials::new(
            "test",
            "test",
            None,
            None,
            "lightbox-sdk-tests",
        ))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// The import role the tests name (the built-in S3 does not check it).
pub const IMPORT_ROLE: &str = "arn:aws:iam::000000000000:role/ImportRole";

/// One line of an import job's `success.ndjson`.
#[derive(Debug, Clone)]
pub struct Imported {
    pub input: String,
    pub image_set_id: String,
    pub is_primary: bool,
}

/// An object of the built-in S3 at `url`, if it exists.
pub async fn s3_get_at(url: &str, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let out = s3_client_at(url)
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    Some(out.body.collect().await.ok()?.into_bytes().to_vec())
}

/// Uploads `files` under `s3://{bucket}/{prefix}/in/` of the built-in S3 at `url` (creating the
/// bucket if needed) and runs one import job to completion; returns the lines of its
/// `success.ndjson`, asserting the job COMPLETED without failures.
pub async fn import_files(
    url: &str,
    client: &Client,
    ds: &str,
    bucket: &str,
    prefix: &str,
    files: &[(String, Vec<u8>)],
) -> Vec<Imported> {
    use aws_sdk_medicalimaging::types::JobStatus;
    let s3 = s3_client_at(url);
    let _ = s3.create_bucket().bucket(bucket).send().await;
    for (key, body) in files {
        s3.put_object()
            .bucket(bucket)
            .key(format!("{prefix}/in/{key}"))
            .body(aws_sdk_s3::primitives::ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    }
    let job = client
        .start_dicom_import_job()
        .datastore_id(ds)
        .job_name(prefix)
        .data_access_role_arn(IMPORT_ROLE)
        .input_s3_uri(format!("s3://{bucket}/{prefix}/in/"))
        .output_s3_uri(format!("s3://{bucket}/{prefix}/out/"))
        .send()
        .await
        .expect("StartDICOMImportJob")
        .job_id()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    let props = loop {
        let props = client
            .get_dicom_import_job()
            .datastore_id(ds)
            .job_id(&job)
            .send()
            .await
            .expect("GetDICOMImportJob")
            .job_properties
            .unwrap();
        if matches!(props.job_status(), JobStatus::Completed | JobStatus::Failed) {
            break props;
        }
        assert!(Instant::now() < deadline, "import {prefix} still running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(props.job_status(), &JobStatus::Completed, "{props:?}");
    let out = props
        .output_s3_uri()
        .strip_prefix(&format!("s3://{bucket}/"))
        .unwrap()
        .to_owned();
    if let Some(failures) = s3_get_at(url, bucket, &format!("{out}FAILURE/failure.ndjson")).await {
        assert_eq!(
            ndjson(&failures),
            Vec::<serde_json::Value>::new(),
            "import {prefix}"
        );
    }
    let success = s3_get_at(url, bucket, &format!("{out}SUCCESS/success.ndjson"))
        .await
        .expect("success.ndjson");
    let lines: Vec<Imported> = ndjson(&success)
        .iter()
        .map(|l| Imported {
            input: l["inputFile"].as_str().unwrap().to_owned(),
            image_set_id: l["importResponse"]["imageSetId"]
                .as_str()
                .unwrap()
                .to_owned(),
            is_primary: l["importResponse"]["isPrimary"].as_bool().unwrap(),
        })
        .collect();
    assert_eq!(lines.len(), files.len(), "import {prefix}: {lines:?}");
    lines
}

/// Files of the real DICOM corpus (`dicom_corpus()`), by name, with their bytes.
pub fn corpus_files(names: &[&str]) -> Vec<(String, Vec<u8>)> {
    let dir = dicom_corpus().expect("DICOM corpus");
    names
        .iter()
        .map(|n| (n.to_string(), std::fs::read(dir.join(n)).unwrap()))
        .collect()
}

/// `bytes` with every occurrence of `from` replaced by `to` (same length; at least one).
pub fn patch_bytes(mut bytes: Vec<u8>, from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut n = 0;
    let mut i = 0;
    while i + from.len() <= bytes.len() {
        if &bytes[i..i + from.len()] == from {
            bytes[i..i + from.len()].copy_from_slice(to);
            n += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(n > 0, "nothing to patch");
    bytes
}

/// Waits (up to `within`) for the ready line a spawned `lightbox serve` prints on its piped
/// stdout and returns the URL it names; stdout is drained afterwards, so the server never
/// blocks on a full pipe.
pub async fn ready_url(child: &mut tokio::process::Child, within: Duration) -> Result<String> {
    use tokio::io::AsyncBufReadExt;
    let stdout = child.stdout.take().context("stdout is not piped")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(within, lines.next_line())
        .await
        .context("lightbox serve did not report ready in time")??
        .context("lightbox serve exited before it was ready")?;
    let start = line.find("http://").context("no URL in the ready line")?;
    let url = line[start..]
        .split_whitespace()
        .next()
        .context("no URL in the ready line")?
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(url)
}

/// The JSON values of an ndjson document (blank lines skipped).
pub fn ndjson(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8(bytes.to_vec())
        .expect("ndjson is UTF-8")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("ndjson line is JSON"))
        .collect()
}

/// The real DICOM test files (pydicom / pydicom-data wheels), collected once per test process by
/// `scripts/dicom-corpus.py` with the project's virtualenv (made by scripts/setup-test-env.sh)
/// into `target/dicom-corpus`, the cache the DICOM crate's tests share (collecting is
/// idempotent and safe to run concurrently).
pub fn dicom_corpus() -> Result<PathBuf> {
    static DIR: std::sync::OnceLock<std::result::Result<PathBuf, String>> =
        std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python = repo.join(".venv/bin/python");
        let out = repo.join("target/dicom-corpus");
        let status = std::process::Command::new(&python)
            .arg(repo.join("scripts/dicom-corpus.py"))
            .arg("collect")
            .arg(&out)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| {
                format!(
                    "cannot run {} (run scripts/setup-test-env.sh): {e}",
                    python.display()
                )
            })?;
        if !status.success() {
            return Err(format!("scripts/dicom-corpus.py failed: {status}"));
        }
        Ok(out)
    })
    .clone()
    .map_err(|e| anyhow::anyhow!(e))
}
