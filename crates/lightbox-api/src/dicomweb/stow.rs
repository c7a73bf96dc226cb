//! STOW-RS (StoreDICOM `POST /studies`, StoreDICOMStudy `POST /studies/{study}`): routed before
//! the pipeline collects request bodies, so a request of up to 1 GB (configurable) is read part
//! by part. SigV4 is checked first with the `x-amz-content-sha256` header as the payload hash
//! (`UNSIGNED-PAYLOAD`, or the body's SHA-256, checked while reading: a mismatch stores nothing).
//! Each `application/dicom` part is held in memory up to the per-file quota and handed to the
//! service (same validation, transcoding and grouping as import jobs); instances are committed
//! only after the whole body was read and found well-formed.
//!
//! The response is the PS3.18 Store Instances Response Module as DICOM JSON: 200 when every
//! instance was stored, 202 when some were stored with warnings, 409 when any failed; 400 for a
//! malformed request, 413 for a body over the limit.

use std::time::SystemTime;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode};
use lightbox_service::{Service, StowFailure, StowLimits, StowRequest, StowResult, failure_reason};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::multipart::{Limits, MultipartError, MultipartReader, parse_related_content_type};
use super::{DicomwebRequest, DicomwebRoute};
use crate::error::ApiError;
use crate::http::ApiState;

/// Serves one STOW-RS request; `route` is a `DicomwebRoute::Store`.
pub async fn handle(
    state: &ApiState,
    parts: http::request::Parts,
    body: Body,
    route: DicomwebRoute,
) -> Result<Response, ApiError> {
    let headers = with_host(&parts);
    let sig_request = lightbox_sigv4::Request {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query(),
        headers: &headers,
        body: b"",
    };
    let (_, declared_hash) = lightbox_sigv4::verify_declared_payload(
        &sig_request,
        &state.credentials,
        "medical-imaging",
        SystemTime::now(),
    )?;

    let svc = state.service.clone();
    let limits = svc.stow_limits();
    let declared_length = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_length.is_some_and(|n| n > limits.max_body_bytes) {
        return Err(too_large(limits.max_body_bytes));
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::validation("STOW-RS requests need a multipart/related Content-Type")
        })?;
    let related = parse_related_content_type(content_type)
        .map_err(|e| ApiError::validation(format!("The request's {e}")))?;
    if let Some(t) = &related.related_type
        && t != super::multipart::DICOM
    {
        return Err(ApiError::validation(
            "Only multipart/related; type=\"application/dicom\" bodies are accepted",
        ));
    }
    let DicomwebRoute::Store { study, .. } = &route else {
        return Err(super::no_operation());
    };
    if let Some(study) = study {
        super::common::check_uid(study, "StudyInstanceUID")?;
    }
    let ds = super::datastore_id(&route)?;
    let mut stow = svc.begin_stow(&ds, study.as_deref()).await?;

    // Read and process every part; commit only once the whole body is known to be good.
    let mut stream = Hashing {
        inner: idle_timeout(body, state.body_timeout),
        hasher: Sha256::new(),
    };
    let read = read_parts(&svc, &mut stow, content_type, &mut stream, limits).await;
    let (count, mut received) = match read {
        Ok(r) => r,
        Err(e) => {
            svc.abort_stow(stow).await;
            return Err(match e {
                MultipartError::BodyTooLarge { .. } => too_large(limits.max_body_bytes),
                MultipartError::Body(e) if e.is::<BodyIdle>() => idle_error(state.body_timeout),
                other => ApiError::validation(format!("The request body is malformed: {other}")),
            });
        }
    };
    // The epilogue (after the close delimiter) is part of the signed payload too.
    if declared_hash.is_some() {
        while let Some(chunk) = stream.inner.next().await {
            match chunk {
                Ok(b) => {
                    stream.hasher.update(&b);
                    received += b.len() as u64;
                    if received > limits.max_body_bytes {
                        svc.abort_stow(stow).await;
                        return Err(too_large(limits.max_body_bytes));
                    }
                }
                Err(e) => {
                    svc.abort_stow(stow).await;
                    return Err(if e.is::<BodyIdle>() {
                        idle_error(state.body_timeout)
                    } else {
                        ApiError::validation("The request body could not be read completely")
                    });
                }
            }
        }
    }
    if let Some(declared) = declared_hash
        && hex::encode(stream.hasher.finalize()) != declared
    {
        svc.abort_stow(stow).await;
        return Err(lightbox_sigv4::AuthError::ContentSha256Mismatch.into());
    }
    if count == 0 {
        svc.abort_stow(stow).await;
        return Err(ApiError::validation("The request has no parts"));
    }

    let results = svc.finish_stow(stow).await;
    let base = DicomwebRequest::new(parts.uri.query(), &headers).base_url;
    Ok(response(&base, ds.as_str(), study.as_deref(), &results))
}

fn too_large(limit: u64) -> ApiError {
    ApiError::new(
        413,
        "RequestEntityTooLargeException",
        format!("Request body exceeds the maximum of {limit} bytes"),
    )
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// No body bytes arrived for the pipeline's body timeout (a 1 GB upload may take longer than
/// that in total, but must not stall).
#[derive(Debug)]
struct BodyIdle;

impl std::fmt::Display for BodyIdle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no request body data arrived in time")
    }
}

impl std::error::Error for BodyIdle {}

fn idle_error(timeout: std::time::Duration) -> ApiError {
    ApiError::new(
        408,
        "RequestTimeoutException",
        format!(
            "No request body data was received for {} seconds",
            timeout.as_secs()
        ),
    )
}

/// The body's chunks; a wait longer than `idle` for the next one ends it with [`BodyIdle`].
fn idle_timeout(
    body: Body,
    idle: std::time::Duration,
) -> futures::stream::BoxStream<'static, Result<Bytes, BoxError>> {
    futures::stream::unfold(Some(body.into_data_stream()), move |state| async move {
        let mut s = state?;
        match tokio::time::timeout(idle, s.next()).await {
            Ok(Some(Ok(b))) => Some((Ok(b), Some(s))),
            Ok(Some(Err(e))) => Some((Err(BoxError::from(e)), None)),
            Ok(None) => None,
            Err(_) => Some((Err(BoxError::from(BodyIdle)), None)),
        }
    })
    .boxed()
}

/// The request body, hashed as it is read.
struct Hashing<S> {
    inner: S,
    hasher: Sha256,
}

impl<S, E> futures::Stream for Hashing<S>
where
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        let polled = this.inner.poll_next_unpin(cx);
        if let std::task::Poll::Ready(Some(Ok(b))) = &polled {
            this.hasher.update(b);
        }
        polled
    }
}

/// Reads every part, handing each to the service; returns the number of parts and the bytes
/// read up to the close delimiter. An error means the request must be aborted.
async fn read_parts<S, E>(
    svc: &Service,
    stow: &mut StowRequest,
    content_type: &str,
    stream: &mut Hashing<S>,
    limits: StowLimits,
) -> Result<(usize, u64), MultipartError>
where
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin + Send,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let reader_limits = Limits {
        max_part_size: limits.max_body_bytes,
        max_total_size: limits.max_body_bytes,
        ..Limits::default()
    };
    let mut reader = MultipartReader::new(content_type, stream, reader_limits)?;
    let mut count = 0;
    while let Some(mut part) = reader.next_part().await? {
        count += 1;
        if part.check_dicom().is_err() {
            svc.stow_reject_part(
                stow,
                StowFailure::new(
                    failure_reason::CANNOT_UNDERSTAND,
                    "The part is not application/dicom",
                ),
            );
            continue;
        }
        let mut buf = BytesMut::new();
        let mut oversized = false;
        while let Some(chunk) = part.chunk().await? {
            if oversized {
                continue;
            }
            if (buf.len() + chunk.len()) as u64 > limits.max_part_bytes {
                oversized = true;
                buf = BytesMut::new();
            } else {
                buf.extend_from_slice(&chunk);
            }
        }
        drop(part);
        if oversized {
            svc.stow_reject_part(
                stow,
                StowFailure::new(
                    failure_reason::OUT_OF_RESOURCES,
                    format!(
                        "The instance is larger than {} bytes, the limit per DICOM P10 file",
                        limits.max_part_bytes
                    ),
                ),
            );
        } else {
            svc.stow_part(stow, buf.freeze()).await;
        }
    }
    Ok((count, reader.bytes_read()))
}

/// The headers with `host` set from the URI's authority when the request has none (HTTP/2).
fn with_host(parts: &http::request::Parts) -> HeaderMap {
    let mut h = parts.headers.clone();
    if let Some(authority) = parts.uri.authority()
        && !h.contains_key(http::header::HOST)
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        h.insert(http::header::HOST, v);
    }
    h
}

fn attr(vr: &str, value: Value) -> Value {
    json!({"vr": vr, "Value": [value]})
}

/// The Store Instances Response Module (PS3.18 10.5.3) and its status.
fn response(base: &str, ds: &str, study: Option<&str>, results: &[StowResult]) -> Response {
    let root = format!("{base}/datastore/{ds}");
    let mut referenced = Vec::new();
    let mut failed = Vec::new();
    let mut warned = false;
    let mut studies: Vec<&str> = Vec::new();
    for r in results {
        match r {
            StowResult::Stored(s) => {
                let mut url = format!(
                    "{root}/studies/{}/series/{}/instances/{}",
                    s.study_instance_uid, s.series_instance_uid, s.sop_instance_uid
                );
                if !s.is_primary {
                    url.push_str(&format!("?imageSetId={}", s.image_set_id));
                }
                let mut item = Map::new();
                item.insert("00081150".into(), attr("UI", json!(s.sop_class_uid)));
                item.insert("00081155".into(), attr("UI", json!(s.sop_instance_uid)));
                item.insert("00081190".into(), attr("UR", json!(url)));
                if let Some(w) = s.warning_reason {
                    warned = true;
                    item.insert("00081196".into(), attr("US", json!(w)));
                }
                referenced.push(Value::Object(item));
                if !studies.contains(&s.study_instance_uid.as_str()) {
                    studies.push(&s.study_instance_uid);
                }
            }
            StowResult::Failed(f) => {
                let mut item = Map::new();
                if let Some(c) = &f.sop_class_uid {
                    item.insert("00081150".into(), attr("UI", json!(c)));
                }
                if let Some(i) = &f.sop_instance_uid {
                    item.insert("00081155".into(), attr("UI", json!(i)));
                }
                item.insert("00081197".into(), attr("US", json!(f.reason)));
                failed.push(Value::Object(item));
            }
        }
    }
    let mut body = Map::new();
    let study_url = match (study, studies.as_slice()) {
        (Some(s), _) => Some(s),
        (None, [one]) => Some(*one),
        _ => None,
    };
    if let Some(s) = study_url {
        body.insert(
            "00081190".into(),
            attr("UR", json!(format!("{root}/studies/{s}"))),
        );
    }
    if !failed.is_empty() {
        body.insert("00081198".into(), json!({"vr": "SQ", "Value": failed}));
    }
    if !referenced.is_empty() {
        body.insert("00081199".into(), json!({"vr": "SQ", "Value": referenced}));
    }
    let status = if !failed.is_empty() {
        StatusCode::CONFLICT
    } else if warned {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    let mut resp = (status, Value::Object(body).to_string()).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/dicom+json"),
    );
    resp
}
