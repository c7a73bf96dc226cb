//! The HTTP pipeline: body limits, request ids, SigV4, routing, decoding, dispatch, rendering
//! and one structured log line per request (request id, operation, status, latency; never
//! paths, bodies or anything else that could carry patient data).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use lightbox_service::Service;

use crate::error::ApiError;
use crate::input::Input;
use crate::ops::{self, Output};
use crate::router::{self, NoRoute};

/// What the HTTP layer needs.
pub struct ApiState {
    pub service: Arc<Service>,
    /// Access key id → secret access key.
    pub credentials: HashMap<String, String>,
    /// Largest accepted request body in bytes.
    pub max_request_body: usize,
    /// Longest time a client may take to send its request body.
    pub body_timeout: std::time::Duration,
    /// The built-in S3 endpoint, if enabled: requests signed for service `s3` go there (before
    /// the HealthImaging body limit and SigV4 check; it streams bodies and verifies SigV4 itself).
    pub s3: Option<Arc<lightbox_s3::S3Endpoint>>,
}

/// The axum router serving every path through the pipeline.
pub fn router(state: Arc<ApiState>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(state)
}

async fn handle(State(state): State<Arc<ApiState>>, req: Request<Body>) -> Response {
    let started = Instant::now();
    let request_id = uuid::Uuid::new_v4().to_string();
    let method = req.method().clone();
    if let Some(s3) = &state.s3
        && lightbox_s3::is_s3_request(req.headers(), req.uri().query())
    {
        let mut response = s3.handle(req).await;
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-amz-request-id", v);
        }
        tracing::info!(
            request_id,
            method = %method,
            operation = "s3",
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
        return response;
    }
    if method == http::Method::OPTIONS {
        let response = preflight(req.headers());
        tracing::info!(
            request_id,
            method = %method,
            operation = "preflight",
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request"
        );
        return response;
    }
    let (operation, result) = process(&state, req).await;
    let mut response = match result {
        Ok(r) => r,
        Err(e) => {
            if let Some(cause) = &e.internal_cause {
                tracing::error!(request_id, operation, cause, "internal error");
            }
            e.into_response_with_id(&request_id)
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-RequestId", v);
    }
    allow_cross_origin(response.headers_mut());
    let status = response.status().as_u16();
    let error_type = response
        .headers()
        .get("x-amzn-ErrorType")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info!(
        request_id,
        method = %method,
        operation,
        status,
        error_type,
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    response
}

/// Response headers a browser on another origin may read (the request id and error type SDKs
/// parse, and the body's encoding).
const EXPOSED_HEADERS: &str = "x-amzn-RequestId, x-amzn-ErrorType, x-amz-request-id, \
     Content-Encoding, Content-Length, Content-Type";

/// Lets web viewers on any origin call the API: requests are authenticated by their SigV4
/// signature, never by cookies, so no origin needs to be singled out.
fn allow_cross_origin(h: &mut http::HeaderMap) {
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "access-control-expose-headers",
        HeaderValue::from_static(EXPOSED_HEADERS),
    );
}

/// The answer to a CORS preflight (`OPTIONS`), given before authentication (browsers send no
/// credentials with it). The requested headers are echoed: a `*` would not cover
/// `Authorization`.
fn preflight(request: &http::HeaderMap) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    allow_cross_origin(h);
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("GET, HEAD, POST, PUT, DELETE, OPTIONS"),
    );
    if let Some(v) = request.get("access-control-request-headers") {
        h.insert("access-control-allow-headers", v.clone());
    }
    h.insert("access-control-max-age", HeaderValue::from_static("86400"));
    resp
}

async fn process(
    state: &ApiState,
    req: Request<Body>,
) -> (&'static str, Result<Response, ApiError>) {
    let (parts, body) = req.into_parts();
    if let Some(route) = crate::dicomweb::store_route(parts.method.as_str(), parts.uri.path()) {
        let action = route.action();
        return (
            action,
            crate::dicomweb::stow::handle(state, parts, body, route).await,
        );
    }
    let collected = tokio::time::timeout(
        state.body_timeout,
        Limited::new(body, state.max_request_body).collect(),
    )
    .await;
    let Ok(collected) = collected else {
        return (
            "-",
            Err(ApiError::new(
                408,
                "RequestTimeoutException",
                format!(
                    "The request body was not received within {} seconds",
                    state.body_timeout.as_secs()
                ),
            )),
        );
    };
    let body = match collected {
        Ok(b) => b.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return (
                "-",
                Err(ApiError::new(
                    413,
                    "RequestEntityTooLargeException",
                    format!(
                        "Request body exceeds the maximum of {} bytes",
                        state.max_request_body
                    ),
                )),
            );
        }
        Err(_) => {
            return (
                "-",
                Err(ApiError::serialization(
                    "The request body could not be read completely".into(),
                )),
            );
        }
    };

    // HTTP/2 carries the host as `:authority`; SigV4 signs it as `host`. Copy the headers only
    // in that case, not on every request.
    let with_host;
    let headers = match parts.uri.authority() {
        Some(authority) if !parts.headers.contains_key(http::header::HOST) => {
            let mut h = parts.headers.clone();
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                h.insert(http::header::HOST, v);
            }
            with_host = h;
            &with_host
        }
        _ => &parts.headers,
    };
    let sig_request = lightbox_sigv4::Request {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query(),
        headers,
        body: &body,
    };
    if let Err(e) = lightbox_sigv4::verify(
        &sig_request,
        &state.credentials,
        "medical-imaging",
        SystemTime::now(),
    ) {
        return ("-", Err(e.into()));
    }

    if let Some(found) = crate::dicomweb::match_route(parts.method.as_str(), parts.uri.path()) {
        let Ok(route) = found else {
            return (
                "-",
                Err(ApiError::new(
                    405,
                    "UnknownOperationException",
                    format!("Method {} is not allowed on this resource", parts.method),
                )),
            );
        };
        let action = route.action();
        let req = crate::dicomweb::DicomwebRequest::new(parts.uri.query(), headers);
        return (
            action,
            crate::dicomweb::handle(state.service.clone(), route, req).await,
        );
    }
    let matched = match router::route(parts.method.as_str(), parts.uri.path()) {
        Ok(m) => m,
        Err(NoRoute::MethodNotAllowed) => {
            return (
                "-",
                Err(ApiError::new(
                    405,
                    "UnknownOperationException",
                    format!("Method {} is not allowed on this resource", parts.method),
                )),
            );
        }
        Err(NoRoute::NotFound) => {
            return (
                "-",
                Err(ApiError::new(
                    404,
                    "UnknownOperationException",
                    "No HealthImaging operation matches this method and path",
                )),
            );
        }
    };
    let operation = matched.operation;
    let input = match crate::decode::decode(operation, &matched.labels, parts.uri.query(), &body) {
        Ok(i) => i,
        Err(e) => return (operation, Err(e)),
    };
    let handler = ops::handler(operation);
    let result = handler(state.service.clone(), Input(input))
        .await
        .and_then(|out| render(operation, out));
    (operation, result)
}

fn render(operation: &str, output: Output) -> Result<Response, ApiError> {
    match output {
        Output::Json(v) => {
            if cfg!(debug_assertions) {
                let errors = crate::decode::validate_output(operation, &v);
                if !errors.is_empty() {
                    return Err(ApiError::internal(format!(
                        "{operation} response breaks the model: {}",
                        errors.join("; ")
                    )));
                }
            }
            let mut resp = (StatusCode::OK, v.to_string()).into_response();
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        }
        Output::Stream {
            content_type,
            content_encoding,
            content_length,
            body,
        } => {
            let mut resp = Response::new(Body::from_stream(body));
            let h = resp.headers_mut();
            h.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(content_type),
            );
            if let Some(e) = content_encoding {
                h.insert(http::header::CONTENT_ENCODING, HeaderValue::from_static(e));
            }
            if let Some(n) = content_length {
                h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
            }
            Ok(resp)
        }
    }
}
