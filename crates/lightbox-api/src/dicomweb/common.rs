//! Helpers every DICOMweb handler shares: path UID checks, the parsed `Accept` header, the 406
//! error, `?imageSetId=`, and DICOM JSON response bodies.

use axum::body::Body;
use axum::response::Response;
use http::{HeaderValue, header};
use serde::Serialize;

use super::DicomwebRequest;
use super::accept::{MediaRange, parse_accept};
use crate::error::ApiError;

pub(crate) const DICOM_JSON: &str = "application/dicom+json";

/// A UID in the path: digits and dots, at most 64 characters (400 naming the attribute).
pub(crate) fn check_uid(uid: &str, name: &str) -> Result<(), ApiError> {
    let ok = !uid.is_empty()
        && uid.len() <= 64
        && uid
            .split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(ApiError::validation(format!(
            "The {name} in the path is not a valid UID"
        )))
    }
}

pub(crate) fn not_acceptable(message: impl Into<String>) -> ApiError {
    ApiError::new(406, "NotAcceptableException", message)
}

/// Every `Accept` header of the request, parsed as one list (400 when malformed).
pub(crate) fn accept_header(req: &DicomwebRequest<'_>) -> Result<Vec<MediaRange>, ApiError> {
    let mut joined = String::new();
    for value in req.headers.get_all(header::ACCEPT) {
        let text = value
            .to_str()
            .map_err(|_| ApiError::validation("The Accept header is not valid ASCII"))?;
        if !joined.is_empty() {
            joined.push_str(", ");
        }
        joined.push_str(text);
    }
    parse_accept(&joined)
        .map_err(|e| ApiError::validation(format!("The Accept header is malformed: {e}")))
}

/// The `?imageSetId=` of a retrieve (a non-primary image set), if given.
pub(crate) fn image_set_id(req: &DicomwebRequest<'_>) -> Option<String> {
    req.params()
        .into_iter()
        .find(|(k, _)| k == "imageSetId")
        .map(|(_, v)| v)
}

/// `body` serialized as JSON, answered with `content_type`.
pub(crate) fn json_response(
    body: &impl Serialize,
    content_type: &'static str,
) -> Result<Response, ApiError> {
    let body = serde_json::to_vec(body).map_err(|e| ApiError::internal(e.to_string()))?;
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}
