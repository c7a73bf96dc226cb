//! `S3Endpoint`: the built-in S3 endpoint (s3s protocol and SigV4 over the s3s-fs `Store`),
//! handed S3 requests by the HTTP layer; request and response bodies stream through.

use std::collections::HashMap;
use std::path::Path;

use axum::body::Body;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};

use crate::builtin::BuiltinS3;
use crate::store::Store;

/// The built-in S3 endpoint: buckets are directories under a root, path-style addressing,
/// requests must be SigV4-signed with one of the configured credentials.
pub struct S3Endpoint {
    service: S3Service,
    store: Store,
}

impl std::fmt::Debug for S3Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Endpoint").finish_non_exhaustive()
    }
}

impl S3Endpoint {
    /// Serves the buckets under `root` (created if missing) to requests signed with one of
    /// `credentials` (access key id → secret access key). Anonymous requests are refused.
    pub fn new(root: &Path, credentials: &HashMap<String, String>) -> std::io::Result<Self> {
        let store = Store::open(root)?;
        let mut auth = SimpleAuth::new();
        for (k, s) in credentials {
            auth.register(k.clone(), s.clone().into());
        }
        let mut builder = S3ServiceBuilder::new(store.clone());
        builder.set_auth(auth);
        Ok(Self {
            service: builder.build(),
            store,
        })
    }

    /// The [`S3Access`](crate::S3Access) over this endpoint's buckets (sharing its store).
    pub fn builtin_access(&self) -> BuiltinS3 {
        BuiltinS3::from_store(self.store.clone())
    }

    /// Answers one S3 request. Bodies are streamed both ways; errors are S3 XML errors.
    pub async fn handle(&self, req: http::Request<Body>) -> http::Response<Body> {
        let expects_continue = req
            .headers()
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let empty_body = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
        let req = req.map(s3s::Body::http_body_unsync);
        match self.service.call(req).await {
            Ok(resp) => {
                let mut resp = resp.map(Body::new);
                // A final answer to `Expect: 100-continue` without a `100 Continue` first (an
                // empty body is never read, so hyper sends none; errors answer before the body)
                // leaves botocore's connection in a state where its next request on it hangs.
                // AWS S3 does not reuse such a connection either.
                if expects_continue && (empty_body || !resp.status().is_success()) {
                    resp.headers_mut().insert(
                        http::header::CONNECTION,
                        http::HeaderValue::from_static("close"),
                    );
                }
                resp
            }
            Err(_) => {
                let mut resp = http::Response::new(Body::from(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InternalError</Code>\
                     <Message>We encountered an internal error. Please try again.</Message></Error>",
                ));
                *resp.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/xml"),
                );
                resp
            }
        }
    }
}
