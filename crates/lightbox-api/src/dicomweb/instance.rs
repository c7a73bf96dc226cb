//! GetDICOMInstance (notes §11.1–11.2): `GET …/studies/{s}/series/{se}/instances/{i}` answers a
//! DICOM PS3.10 file. `Accept` is negotiated per PS3.18 8.7 (`negotiate_instance`): Explicit VR
//! Little Endian by default (decoded from the stored frames), the stored transfer syntax for
//! `transfer-syntax=*` or its UID, 406 NotAcceptableException otherwise. `application/dicom`
//! (or `*/*`, or no `Accept`) gets a single-part body; `multipart/related;
//! type="application/dicom"` one part. `?imageSetId=` reads a non-primary image set. The body
//! is streamed (a single part announces its Content-Length); a failure while streaming cuts it
//! short and is logged without identifiers.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use futures::{StreamExt, TryStreamExt};
use http::{HeaderValue, header};
use lightbox_service::{InstanceEncoding, SeriesRef, Service, ServiceError};

use super::accept::{Rendition, negotiate_instance};
use super::common::{accept_header, check_uid, image_set_id, not_acceptable};
use super::multipart::{OutPart, PartBody, new_boundary, write_multipart};
use super::wado::multipart_content_type;
use super::{DicomwebRequest, DicomwebRoute, datastore_id, no_operation};
use crate::error::ApiError;

const DICOM: &str = "application/dicom";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs GetDICOMInstance.
pub async fn handle(
    svc: Arc<Service>,
    route: DicomwebRoute,
    req: DicomwebRequest<'_>,
) -> Result<Response, ApiError> {
    let DicomwebRoute::Instance {
        study,
        series,
        instance,
        ..
    } = &route
    else {
        return Err(no_operation());
    };
    let ds = datastore_id(&route)?;
    check_uid(study, "StudyInstanceUID")?;
    check_uid(series, "SeriesInstanceUID")?;
    check_uid(instance, "SOPInstanceUID")?;
    let target = SeriesRef {
        study: study.clone(),
        series: series.clone(),
        image_set_id: image_set_id(&req),
    };
    let accept = accept_header(&req)?;
    let source = svc.wado_instance_source(&ds, &target, instance).await?;
    let stored = source.stored_transfer_syntax.clone();
    let Some(negotiated) = negotiate_instance(&accept, &stored, source.can_transcode()) else {
        return Err(not_acceptable(format!(
            "None of the accepted media types is available for this instance (stored as \
             {stored}); retry with transfer-syntax=* to receive it as stored"
        )));
    };
    let encoding = match negotiated.rendition {
        Rendition::Transcode { .. } => InstanceEncoding::ExplicitVrLittleEndian,
        Rendition::StoredBytes => InstanceEncoding::Stored,
    };
    let file = svc.clone().wado_instance_file(source, encoding).await?;
    let ts = file.transfer_syntax.clone();
    let part_type = format!("{DICOM}; transfer-syntax={ts}");
    let body = file.body.map_err(stream_error);
    if !negotiated.multipart {
        let mut resp = Response::new(Body::from_stream(body));
        let value =
            HeaderValue::from_str(&part_type).map_err(|e| ApiError::internal(e.to_string()))?;
        resp.headers_mut().insert(header::CONTENT_TYPE, value);
        resp.headers_mut().insert(
            header::CONTENT_LENGTH,
            HeaderValue::from(file.content_length),
        );
        return Ok(resp);
    }
    let boundary = new_boundary();
    let part = OutPart::<BoxError>::new(&part_type, None, PartBody::Stream(body.boxed()))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let body = write_multipart(&boundary, futures::stream::iter([Ok(part)]));
    let mut resp = Response::new(Body::from_stream(body));
    let content_type = multipart_content_type(DICOM, Some(&ts), &boundary);
    let value =
        HeaderValue::from_str(&content_type).map_err(|e| ApiError::internal(e.to_string()))?;
    resp.headers_mut().insert(header::CONTENT_TYPE, value);
    Ok(resp)
}

/// An error while the body streams: ends the response; internal causes are logged.
fn stream_error(e: ServiceError) -> BoxError {
    if let ServiceError::Internal(cause) = &e {
        tracing::warn!(cause = %cause, "GetDICOMInstance body could not be sent");
    }
    Box::new(e)
}
