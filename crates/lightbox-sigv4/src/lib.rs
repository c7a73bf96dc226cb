//! Server-side verification of AWS Signature Version 4 (header and presigned-URL forms).
//!
//! [`verify`] rebuilds the canonical request the way AWS SDKs build it for non-S3
//! services (normalised, double-encoded path; decoded-and-re-encoded sorted query;
//! exactly the signed headers; SHA-256 of the body), derives the signing key from the
//! secret returned by [`Credentials`], and compares signatures in constant time.
//!
//! | condition | [`AuthError`] | code | status |
//! |---|---|---|---|
//! | no `Authorization`, no `X-Amz-Algorithm` | `MissingAuthenticationToken` | `MissingAuthenticationTokenException` | 403 |
//! | malformed header/query, bad scope shape, `host` unsigned, bad or missing date | `IncompleteSignature` | `IncompleteSignatureException` | 400 |
//! | unknown access key id | `UnrecognizedClient` | `UnrecognizedClientException` | 403 |
//! | wrong signature | `SignatureDoesNotMatch` | `InvalidSignatureException` | 403 |
//! | too old / presigned URL expired | `SignatureExpired` | `InvalidSignatureException` | 403 |
//! | more than 15 min in the future | `SignatureNotYetCurrent` | `InvalidSignatureException` | 403 |
//! | scope names another service | `WrongService` | `InvalidSignatureException` | 403 |
//! | scope date ≠ request date | `ScopeDateMismatch` | `InvalidSignatureException` | 403 |
//! | `x-amz-content-sha256` ≠ SHA-256(body) | `ContentSha256Mismatch` | `InvalidSignatureException` | 403 |
//!
//! ```
//! use lightbox_sigv4::{verify, Credentials, Request};
//! struct One;
//! impl Credentials for One {
//!     fn secret_for(&self, id: &str) -> Option<String> {
//!         (id == "AKIDEXAMPLE").then(|| "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into())
//!     }
//! }
//! let mut headers = http::HeaderMap::new();
//! headers.insert("host", "example.amazonaws.com".parse().unwrap());
//! headers.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
//! headers.insert("authorization", "AWS4-HMAC-SHA256 \
//!     Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
//!     SignedHeaders=host;x-amz-date, \
//!     Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31".parse().unwrap());
//! let req = Request { method: "GET", raw_path: "/", raw_query: None, headers: &headers, body: b"" };
//! let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
//! let ok = verify(&req, &One, "service", now).unwrap();
//! assert_eq!(ok.region, "us-east-1");
//! ```

mod canonical;
mod error;
mod key;
mod parse;
mod timestamp;

pub use error::AuthError;

use std::time::SystemTime;
use subtle::ConstantTimeEq;

/// Allowed clock skew between client and server, in seconds.
pub const MAX_SKEW_SECONDS: i64 = 15 * 60;

/// The payload-hash placeholder clients use when they do not sign the body.
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// The parts of an HTTP request that SigV4 covers, exactly as received.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path exactly as received, still percent-encoded (`/tags/arn%3Aaws%3A...`).
    pub raw_path: &'a str,
    /// The query string exactly as received, without the `?`.
    pub raw_query: Option<&'a str>,
    /// All request headers; `host` must be the Host header as received.
    pub headers: &'a http::HeaderMap,
    /// The full body (hashed here, since SDKs send no `x-amz-content-sha256`).
    pub body: &'a [u8],
}

/// Looks up secret access keys.
pub trait Credentials {
    /// The secret access key for `access_key_id`, or `None` if the key is unknown.
    fn secret_for(&self, access_key_id: &str) -> Option<String>;
}

/// Any `Fn(&str) -> Option<String>` is a credential store.
impl<F: Fn(&str) -> Option<String>> Credentials for F {
    fn secret_for(&self, access_key_id: &str) -> Option<String> {
        self(access_key_id)
    }
}

/// A map from access key id to secret access key.
impl<S: std::hash::BuildHasher> Credentials for std::collections::HashMap<String, String, S> {
    fn secret_for(&self, access_key_id: &str) -> Option<String> {
        self.get(access_key_id).cloned()
    }
}

/// The identity and scope of a request whose signature checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id that signed the request.
    pub access_key_id: String,
    /// The region from the credential scope (any syntactically valid region).
    pub region: String,
    /// The service from the credential scope (always the `service` passed to [`verify`]).
    pub service: String,
}

/// Verifies the SigV4 signature of `req` for `service` (e.g. `"medical-imaging"`) at time `now`.
///
/// Accepts the `Authorization: AWS4-HMAC-SHA256 ...` header form and the presigned
/// query form (`X-Amz-Algorithm=AWS4-HMAC-SHA256&...&X-Amz-Signature=...`). Header
/// requests must be within ±15 minutes of `now`; presigned requests are valid from
/// 15 minutes before `X-Amz-Date` until `X-Amz-Date + X-Amz-Expires`.
///
/// Never panics, whatever the request contains.
pub fn verify(
    req: &Request<'_>,
    creds: &dyn Credentials,
    service: &str,
    now: SystemTime,
) -> Result<Verified, AuthError> {
    verify_with(req, creds, service, now, false)
}

/// Like [`verify`] for a body that has not been read yet (streamed uploads): the payload hash
/// is the request's `x-amz-content-sha256` header, which must be present and be
/// `UNSIGNED-PAYLOAD` or 64 hex digits (returned, lowercased, in `Ok`). `req.body` is ignored;
/// the caller must compare the SHA-256 of the body it reads with the returned hash and reject
/// the request (keeping nothing) if they differ. Without the header the request fails with
/// `IncompleteSignature`.
pub fn verify_declared_payload(
    req: &Request<'_>,
    creds: &dyn Credentials,
    service: &str,
    now: SystemTime,
) -> Result<(Verified, Option<String>), AuthError> {
    let verified = verify_with(req, creds, service, now, true)?;
    let declared = req
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .filter(|v| *v != UNSIGNED_PAYLOAD)
        .map(str::to_ascii_lowercase);
    Ok((verified, declared))
}

fn verify_with(
    req: &Request<'_>,
    creds: &dyn Credentials,
    service: &str,
    now: SystemTime,
    declared: bool,
) -> Result<Verified, AuthError> {
    let mut authorization = req.headers.get_all(http::header::AUTHORIZATION).iter();
    let header = authorization.next();
    if header.is_some() && authorization.next().is_some() {
        return Err(AuthError::IncompleteSignature(
            "Request contains more than one Authorization header.".into(),
        ));
    }
    let presigned = req.raw_query.is_some_and(has_algorithm_param);
    let params = match (header, presigned) {
        (None, false) => return Err(AuthError::MissingAuthenticationToken),
        (Some(_), true) => {
            return Err(AuthError::IncompleteSignature(
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter \
                 or the Authorization header should be specified."
                    .into(),
            ));
        }
        (Some(value), false) => parse::from_authorization(value.as_bytes(), req.headers)?,
        (None, true) => parse::from_query(req.raw_query.unwrap_or(""))?,
    };

    if params.service != service {
        return Err(AuthError::WrongService {
            expected: service.to_owned(),
        });
    }
    if !params.amz_date.starts_with(params.scope_date.as_str()) {
        return Err(AuthError::ScopeDateMismatch(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
             '{}' != '{}', from '{}'.",
            params.scope_date,
            params.amz_date.get(..8).unwrap_or(""),
            params.amz_date
        )));
    }
    check_time(&params, timestamp::unix_seconds(now))?;

    let secret =
        creds
            .secret_for(&params.access_key_id)
            .ok_or_else(|| AuthError::UnrecognizedClient {
                access_key_id: params.access_key_id.clone(),
            })?;

    let payload_hashes = if declared {
        declared_payload_hash(req)?
    } else {
        payload_hashes(req, params.expires.is_some())?
    };
    let query =
        canonical::canonical_query(req.raw_query, params.expires.map(|_| "X-Amz-Signature"));
    let signing_key =
        key::signing_key(&secret, &params.scope_date, &params.region, &params.service);
    let scope = format!(
        "{}/{}/{}/aws4_request",
        params.scope_date, params.region, params.service
    );

    let mut matched = subtle::Choice::from(0u8);
    for uri in canonical::canonical_uris(req.raw_path) {
        for payload in &payload_hashes {
            let mut creq = Vec::with_capacity(512);
            creq.extend_from_slice(req.method.as_bytes());
            creq.push(b'\n');
            creq.extend_from_slice(uri.as_bytes());
            creq.push(b'\n');
            creq.extend_from_slice(query.as_bytes());
            creq.push(b'\n');
            canonical::write_canonical_headers(&mut creq, req.headers, &params.signed_headers);
            creq.push(b'\n');
            creq.extend_from_slice(params.signed_headers_line.as_bytes());
            creq.push(b'\n');
            creq.extend_from_slice(payload.as_bytes());

            let string_to_sign = format!(
                "{}\n{}\n{}\n{}",
                parse::ALGORITHM,
                params.amz_date,
                scope,
                hex::encode(key::sha256(&creq))
            );
            let expected = hex::encode(key::hmac_sha256(&signing_key, string_to_sign.as_bytes()));
            matched |= expected.as_bytes().ct_eq(params.signature.as_bytes());
        }
    }
    if bool::from(matched) {
        Ok(Verified {
            access_key_id: params.access_key_id,
            region: params.region,
            service: params.service,
        })
    } else {
        Err(AuthError::SignatureDoesNotMatch)
    }
}

/// Whether the query carries an `X-Amz-Algorithm` parameter (the presigned form).
fn has_algorithm_param(raw_query: &str) -> bool {
    raw_query.split('&').any(|pair| {
        let name = pair.split_once('=').map_or(pair, |(n, _)| n);
        percent_encoding::percent_decode_str(name).eq(*b"X-Amz-Algorithm")
    })
}

fn check_time(params: &parse::SignatureParams, now: i64) -> Result<(), AuthError> {
    let t = params.request_time;
    let fmt = timestamp::format_amz_date;
    if now < t.saturating_sub(MAX_SKEW_SECONDS) {
        let latest = now.saturating_add(MAX_SKEW_SECONDS);
        return Err(AuthError::SignatureNotYetCurrent(format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            params.amz_date,
            fmt(latest),
            fmt(now)
        )));
    }
    match params.expires {
        None if t < now.saturating_sub(MAX_SKEW_SECONDS) => {
            Err(AuthError::SignatureExpired(format!(
                "Signature expired: {} is now earlier than {} ({} - 15 min.)",
                params.amz_date,
                fmt(now.saturating_sub(MAX_SKEW_SECONDS)),
                fmt(now)
            )))
        }
        Some(expires) if t.saturating_add(expires as i64) < now => {
            Err(AuthError::SignatureExpired(format!(
                "Signature expired: {} is now earlier than {} ({} - {} sec. X-Amz-Expires)",
                params.amz_date,
                fmt(now.saturating_sub(expires as i64)),
                fmt(now),
                expires
            )))
        }
        _ => Ok(()),
    }
}

/// The payload hash of a request whose body is checked later: the `x-amz-content-sha256`
/// value as sent (`UNSIGNED-PAYLOAD` or 64 hex digits).
fn declared_payload_hash(req: &Request<'_>) -> Result<Vec<String>, AuthError> {
    let Some(v) = req.headers.get("x-amz-content-sha256") else {
        return Err(AuthError::IncompleteSignature(
            "This request's body is streamed: it must carry an x-amz-content-sha256 header \
             (the body's SHA-256 or UNSIGNED-PAYLOAD)."
                .into(),
        ));
    };
    let claimed = v.to_str().map_err(|_| AuthError::ContentSha256Mismatch)?;
    let hex = claimed.len() == 64 && claimed.bytes().all(|b| b.is_ascii_hexdigit());
    if claimed == UNSIGNED_PAYLOAD || hex {
        Ok(vec![claimed.to_owned()])
    } else {
        Err(AuthError::ContentSha256Mismatch)
    }
}

/// The payload hash(es) to try.
///
/// With `x-amz-content-sha256` it is that value, which must be `UNSIGNED-PAYLOAD` or the
/// SHA-256 of the body. Otherwise it is the SHA-256 of the body; presigned URLs may
/// also have been signed with `UNSIGNED-PAYLOAD` (S3 style), so that is tried too.
fn payload_hashes(req: &Request<'_>, presigned: bool) -> Result<Vec<String>, AuthError> {
    let body_hash = || hex::encode(key::sha256(req.body));
    if let Some(v) = req.headers.get("x-amz-content-sha256") {
        let claimed = v.to_str().map_err(|_| AuthError::ContentSha256Mismatch)?;
        if claimed == UNSIGNED_PAYLOAD {
            return Ok(vec![claimed.to_owned()]);
        }
        if claimed.eq_ignore_ascii_case(&body_hash()) {
            return Ok(vec![claimed.to_owned()]);
        }
        return Err(AuthError::ContentSha256Mismatch);
    }
    let mut out = vec![body_hash()];
    if presigned {
        out.push(UNSIGNED_PAYLOAD.to_owned());
    }
    Ok(out)
}
