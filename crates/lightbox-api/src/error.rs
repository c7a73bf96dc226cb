//! API errors in the AWS rest-json wire format: status code, `x-amzn-ErrorType`,
//! `x-amzn-RequestId` and a `{"message": …}` body. Anything not mapped on purpose becomes an
//! InternalServerException with a fixed message; the cause goes to the log only.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use lightbox_service::ServiceError;

/// An error response ready to render.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Logged, never sent.
    pub internal_cause: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            internal_cause: None,
        }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationException", message)
    }

    /// AWS's aggregate message: "N validation error(s) detected: a; b".
    pub fn validation_errors(errors: &[String]) -> Self {
        let n = errors.len();
        let plural = if n == 1 { "error" } else { "errors" };
        Self::validation(format!(
            "{n} validation {plural} detected: {}",
            errors.join("; ")
        ))
    }

    pub fn serialization(message: String) -> Self {
        Self::new(400, "SerializationException", message)
    }

    pub fn internal(cause: impl Into<String>) -> Self {
        Self {
            internal_cause: Some(cause.into()),
            ..Self::new(
                500,
                "InternalServerException",
                "An internal error occurred. Try again later.",
            )
        }
    }

    /// Renders the error with the request id.
    pub fn into_response_with_id(self, request_id: &str) -> Response {
        let body = serde_json::json!({ "message": self.message }).to_string();
        let mut resp = (
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
        )
            .into_response();
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert("x-amzn-ErrorType", HeaderValue::from_static(self.code));
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert("x-amzn-RequestId", v);
        }
        resp
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Validation(m) => ApiError::validation(m),
            ServiceError::NotFound(m) => ApiError::new(404, "ResourceNotFoundException", m),
            ServiceError::Conflict(m) => ApiError::new(409, "ConflictException", m),
            ServiceError::QuotaExceeded(m) => {
                ApiError::new(402, "ServiceQuotaExceededException", m)
            }
            ServiceError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl From<lightbox_sigv4::AuthError> for ApiError {
    fn from(e: lightbox_sigv4::AuthError) -> Self {
        ApiError::new(e.status(), e.code(), e.message())
    }
}
