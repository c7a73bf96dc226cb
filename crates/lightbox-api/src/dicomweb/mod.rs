//! DICOMweb (PS3.18) as HealthImaging serves it under `/datastore/{datastoreId}` on the same
//! listener and SigV4 as the rest-json API: the route table (`routes`), content negotiation
//! (`accept`), multipart/related bodies (`multipart`), and the handlers.

pub mod accept;
mod common;
pub mod instance;
pub mod multipart;
pub mod qido;
pub mod routes;
pub mod stow;
pub mod wado;

use std::sync::Arc;

use axum::response::Response;
use http::HeaderMap;
use lightbox_domain::DatastoreId;
use lightbox_service::Service;

use crate::error::ApiError;
pub use routes::{DicomwebRoute, match_route};

/// What DICOMweb handlers read from the request besides the route.
pub struct DicomwebRequest<'a> {
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// `scheme://host` the client used (BulkDataURIs and retrieve URLs are built on it).
    pub base_url: String,
}

impl<'a> DicomwebRequest<'a> {
    pub fn new(query: Option<&'a str>, headers: &'a HeaderMap) -> Self {
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        let scheme = headers
            .get("x-forwarded-proto")
            .and_then(|h| h.to_str().ok())
            .filter(|p| *p == "https" || *p == "http")
            .unwrap_or("http");
        DicomwebRequest {
            query,
            headers,
            base_url: format!("{scheme}://{host}"),
        }
    }

    /// The decoded query parameters in order (repeated names kept).
    pub fn params(&self) -> Vec<(String, String)> {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        self.query
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect()
    }
}

/// The data store id of a DICOMweb path.
pub fn datastore_id(route: &DicomwebRoute) -> Result<DatastoreId, ApiError> {
    DatastoreId::parse(route.datastore_id())
        .map_err(|_| ApiError::validation("invalid datastoreId"))
}

/// The STOW-RS route of a request, if it is one: `stow::handle` serves it before the pipeline
/// collects the body (it streams up to 1 GB and checks SigV4 itself).
pub fn store_route(method: &str, path: &str) -> Option<DicomwebRoute> {
    match match_route(method, path) {
        Some(Ok(route @ DicomwebRoute::Store { .. })) => Some(route),
        _ => None,
    }
}

/// The answer for a path no served DICOMweb action matches.
pub fn no_operation() -> ApiError {
    ApiError::new(
        404,
        "UnknownOperationException",
        "No HealthImaging operation matches this method and path",
    )
}

/// Runs one DICOMweb request.
pub async fn handle(
    svc: Arc<Service>,
    route: DicomwebRoute,
    req: DicomwebRequest<'_>,
) -> Result<Response, ApiError> {
    match route {
        DicomwebRoute::SearchStudies { .. }
        | DicomwebRoute::SearchSeries { .. }
        | DicomwebRoute::SearchInstances { .. } => qido::handle(svc, route, req).await,
        DicomwebRoute::SeriesMetadata { .. }
        | DicomwebRoute::InstanceMetadata { .. }
        | DicomwebRoute::InstanceFrames { .. }
        | DicomwebRoute::Bulkdata { .. } => wado::handle(svc, route, req).await,
        DicomwebRoute::Instance { .. } => instance::handle(svc, route, req).await,
        _ => {
            let _ = (&svc, &req);
            Err(no_operation())
        }
    }
}
