//! WADO-RS retrieve (notes §11.1–11.2): GetDICOMSeriesMetadata and GetDICOMInstanceMetadata
//! (`application/dicom+json` arrays, BulkDataURIs for binary values over 1 MiB),
//! GetDICOMInstanceFrames (multipart/related, the transfer syntax negotiated from `Accept` per
//! PS3.18 8.7: as stored, or Explicit VR Little Endian by decoding) and GetDICOMBulkdata
//! (multipart/related with one `application/octet-stream` part, or that part alone when the
//! client asks for `application/octet-stream`). `?imageSetId=` reads a non-primary image set.
//!
//! Errors are AWS's JSON errors: 404 ResourceNotFoundException, 400 ValidationException (bad
//! UIDs, frame lists, Accept headers), 406 NotAcceptableException.

use std::error::Error as StdError;
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, StatusCode, header};
use lightbox_domain::DatastoreId;
use lightbox_service::{SeriesRef, Service, ServiceError};
use serde_json::{Map, Value};

use super::accept::{MediaRange, Negotiated, Rendition, negotiate_frames};
use super::common::{
    DICOM_JSON, accept_header, check_uid, image_set_id, json_response, not_acceptable,
};
use super::multipart::{OutPart, PartBody, new_boundary, write_multipart};
use super::{DicomwebRequest, DicomwebRoute, datastore_id, no_operation};
use crate::error::ApiError;

type BoxError = Box<dyn StdError + Send + Sync>;

/// Binary values longer than this become BulkDataURIs (HealthImaging: 1 MB).
pub(super) const BULK_DATA_THRESHOLD: usize = 1 << 20;
/// Frames read or transcoded ahead of the one being sent.
const FRAMES_AHEAD: usize = 4;
const OCTET_STREAM: &str = "application/octet-stream";

/// Runs a WADO-RS retrieve route (metadata, frames, bulk data).
pub async fn handle(
    svc: Arc<Service>,
    route: DicomwebRoute,
    req: DicomwebRequest<'_>,
) -> Result<Response, ApiError> {
    let ds = datastore_id(&route)?;
    let image_set_id = image_set_id(&req);
    let series_ref = |study: &str, series: &str| -> Result<SeriesRef, ApiError> {
        check_uid(study, "StudyInstanceUID")?;
        check_uid(series, "SeriesInstanceUID")?;
        Ok(SeriesRef {
            study: study.to_string(),
            series: series.to_string(),
            image_set_id: image_set_id.clone(),
        })
    };
    match &route {
        DicomwebRoute::SeriesMetadata { study, series, .. } => {
            let target = series_ref(study, series)?;
            check_json_accept(&req)?;
            let base = format!(
                "{}/datastore/{ds}/studies/{study}/series/{series}/instances/",
                req.base_url
            );
            let mut items = svc
                .wado_series_metadata(&ds, &target, Some(&base), BULK_DATA_THRESHOLD)
                .await?;
            if let Some(id) = &target.image_set_id {
                for item in &mut items {
                    address_bulk_data(item, id);
                }
            }
            json_response(&items, DICOM_JSON)
        }
        DicomwebRoute::InstanceMetadata {
            study,
            series,
            instance,
            ..
        } => {
            let target = series_ref(study, series)?;
            check_uid(instance, "SOPInstanceUID")?;
            check_json_accept(&req)?;
            let base = format!(
                "{}/datastore/{ds}/studies/{study}/series/{series}/instances/{instance}/bulkdata/",
                req.base_url
            );
            let mut item = svc
                .wado_instance_metadata(&ds, &target, instance, Some(&base), BULK_DATA_THRESHOLD)
                .await?;
            if let Some(id) = &target.image_set_id {
                address_bulk_data(&mut item, id);
            }
            json_response(&[item], DICOM_JSON)
        }
        DicomwebRoute::InstanceFrames {
            study,
            series,
            instance,
            frames,
            ..
        } => {
            let target = series_ref(study, series)?;
            check_uid(instance, "SOPInstanceUID")?;
            let accept = accept_header(&req)?;
            let list = percent_encoding::percent_decode_str(frames).decode_utf8_lossy();
            frames_response(svc, &ds, &target, instance, &list, &accept).await
        }
        DicomwebRoute::Bulkdata {
            study,
            series,
            instance,
            hash,
            ..
        } => {
            let target = series_ref(study, series)?;
            check_uid(instance, "SOPInstanceUID")?;
            let accept = accept_header(&req)?;
            let multipart = bulk_data_multipart(&accept).ok_or_else(|| {
                not_acceptable(
                    "Bulk data is served as multipart/related; type=\"application/octet-stream\" \
                     or application/octet-stream",
                )
            })?;
            let bytes = svc.wado_bulk_data(&ds, &target, instance, hash).await?;
            Ok(bulk_data_response(Bytes::from(bytes), multipart))
        }
        _ => Err(no_operation()),
    }
}

/// Metadata is `application/dicom+json`; `application/json` and wildcards accept it too.
fn check_json_accept(req: &DicomwebRequest<'_>) -> Result<(), ApiError> {
    let accept = accept_header(req)?;
    let ok = accept.is_empty()
        || accept.iter().any(|r| {
            r.q > 0.0
                && matches!(
                    r.media_type.as_str(),
                    DICOM_JSON | "application/json" | "application/*" | "*/*"
                )
        });
    if ok {
        Ok(())
    } else {
        Err(not_acceptable(
            "Metadata is served as application/dicom+json only",
        ))
    }
}

/// Appends `?imageSetId=` to every BulkDataURI, so they address the same image set.
fn address_bulk_data(value: &mut Map<String, Value>, image_set_id: &str) {
    for (key, v) in value.iter_mut() {
        match v {
            Value::String(uri) if key == "BulkDataURI" => {
                uri.push_str("?imageSetId=");
                uri.push_str(image_set_id);
            }
            Value::Object(m) => address_bulk_data(m, image_set_id),
            Value::Array(items) => {
                for item in items {
                    if let Value::Object(m) = item {
                        address_bulk_data(m, image_set_id);
                    }
                }
            }
            _ => {}
        }
    }
}

/// A frame stream error: ends the response; internal causes are logged.
fn stream_error(e: ServiceError) -> BoxError {
    if let ServiceError::Internal(cause) = &e {
        tracing::warn!(cause = %cause, "WADO-RS frame could not be sent");
    }
    Box::new(e)
}

/// The multipart response's `Content-Type` (PS3.18 8.7.3.5.1):
/// `multipart/related; type="…"; transfer-syntax=…; boundary=…`.
pub(crate) fn multipart_content_type(
    related_type: &str,
    transfer_syntax: Option<&str>,
    boundary: &str,
) -> String {
    match transfer_syntax {
        Some(ts) => format!(
            "multipart/related; type=\"{related_type}\"; transfer-syntax={ts}; boundary={boundary}"
        ),
        None => format!("multipart/related; type=\"{related_type}\"; boundary={boundary}"),
    }
}

async fn frames_response(
    svc: Arc<Service>,
    ds: &DatastoreId,
    target: &SeriesRef,
    instance: &str,
    list: &str,
    accept: &[MediaRange],
) -> Result<Response, ApiError> {
    let frames = svc.wado_frames(ds, target, instance, list).await?;
    let stored = frames.stored_transfer_syntax.clone();
    let Some(negotiated) = negotiate_frames(accept, &stored, frames.can_transcode()) else {
        return Err(not_acceptable(format!(
            "None of the accepted media types is available for these frames (stored as \
             {stored}); retry with transfer-syntax=* to receive them as stored"
        )));
    };
    let Negotiated {
        media_type,
        transfer_syntax,
        rendition,
        ..
    } = negotiated.clone();
    let part_type = negotiated.part_content_type();
    let boundary = new_boundary();
    let content_type = multipart_content_type(&media_type, Some(&transfer_syntax), &boundary);
    let frames = Arc::new(frames);
    let count = frames.frames.len();
    let parts = futures::stream::iter(0..count)
        .map(move |i| {
            let svc = svc.clone();
            let frames = frames.clone();
            let part_type = part_type.clone();
            async move {
                let record = &frames.frames[i].1;
                let body: PartBody<BoxError> = match rendition {
                    Rendition::StoredBytes => {
                        let stream = svc
                            .wado_stored_frame(record)
                            .await
                            .map_err(stream_error)?
                            .map(|r| r.map_err(|e| stream_error(e.into())));
                        PartBody::Stream(stream.boxed())
                    }
                    Rendition::Transcode { .. } => PartBody::Full(
                        svc.wado_native_frame(&frames, record)
                            .await
                            .map_err(stream_error)?,
                    ),
                };
                OutPart::new(&part_type, None, body).map_err(|e| Box::new(e) as BoxError)
            }
        })
        .buffered(FRAMES_AHEAD);
    let body = write_multipart(&boundary, parts);
    let mut resp = Response::new(Body::from_stream(body));
    let value =
        HeaderValue::from_str(&content_type).map_err(|e| ApiError::internal(e.to_string()))?;
    resp.headers_mut().insert(header::CONTENT_TYPE, value);
    Ok(resp)
}

/// How bulk data is sent: `Some(true)` multipart/related, `Some(false)` a single
/// `application/octet-stream` body, `None` not acceptable. Entries in q order, then list order.
fn bulk_data_multipart(accept: &[MediaRange]) -> Option<bool> {
    if accept.is_empty() {
        return Some(true);
    }
    let mut ranges: Vec<&MediaRange> = accept.iter().filter(|r| r.q > 0.0).collect();
    ranges.sort_by(|a, b| b.q.total_cmp(&a.q));
    ranges.into_iter().find_map(|r| {
        let plain_ts = matches!(r.transfer_syntax.as_deref(), None | Some("*"));
        match r.media_type.as_str() {
            "*/*" | "multipart/*" => Some(true),
            "multipart/related" => matches!(
                r.related_type.as_deref(),
                None | Some("*/*" | OCTET_STREAM | "application/*")
            )
            .then_some(true),
            OCTET_STREAM | "application/*" if plain_ts => Some(false),
            _ => None,
        }
    })
}

fn bulk_data_response(bytes: Bytes, multipart: bool) -> Response {
    if !multipart {
        let mut resp = Response::new(Body::from(bytes));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(OCTET_STREAM));
        return resp;
    }
    let boundary = new_boundary();
    let part = OutPart::<BoxError>::new(OCTET_STREAM, None, PartBody::Full(bytes));
    let parts = futures::stream::iter([part.map_err(|e| Box::new(e) as BoxError)]);
    let mut resp = Response::new(Body::from_stream(write_multipart(&boundary, parts)));
    let content_type = multipart_content_type(OCTET_STREAM, None, &boundary);
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    } else {
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::super::accept::parse_accept;
    use super::*;

    #[test]
    fn uids() {
        assert!(check_uid("1.2.840.10008", "x").is_ok());
        for bad in ["", "1..2", ".1", "1.", "1.2a", &"1".repeat(65)] {
            assert!(check_uid(bad, "x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bulk_data_negotiation() {
        let n = |h: &str| bulk_data_multipart(&parse_accept(h).unwrap());
        assert_eq!(n(""), Some(true));
        assert_eq!(n("*/*"), Some(true));
        assert_eq!(
            n("multipart/related; type=\"application/octet-stream\""),
            Some(true)
        );
        assert_eq!(n("application/octet-stream"), Some(false));
        assert_eq!(
            n("application/octet-stream; q=0.5, multipart/related"),
            Some(true)
        );
        assert_eq!(n("multipart/related; type=image/jpeg"), None);
        assert_eq!(n("application/dicom+json"), None);
    }

    #[test]
    fn bulk_data_uris_keep_the_image_set() {
        let mut m: Map<String, Value> = serde_json::from_str(
            r#"{"00420011": {"vr": "OB", "BulkDataURI": "http://h/b/1"},
                "00400275": {"vr": "SQ", "Value": [{"00091010": {"vr": "UN", "BulkDataURI": "http://h/b/2"}}]},
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": "BulkDataURI"}]}}"#,
        )
        .unwrap();
        address_bulk_data(&mut m, "abc");
        assert_eq!(m["00420011"]["BulkDataURI"], "http://h/b/1?imageSetId=abc");
        assert_eq!(
            m["00400275"]["Value"][0]["00091010"]["BulkDataURI"],
            "http://h/b/2?imageSetId=abc"
        );
        assert_eq!(m["00100010"]["Value"][0]["Alphabetic"], "BulkDataURI");
    }

    #[test]
    fn content_types() {
        assert_eq!(
            multipart_content_type(OCTET_STREAM, Some("1.2.840.10008.1.2.1"), "b"),
            "multipart/related; type=\"application/octet-stream\"; \
             transfer-syntax=1.2.840.10008.1.2.1; boundary=b"
        );
        assert_eq!(
            multipart_content_type(OCTET_STREAM, None, "b"),
            "multipart/related; type=\"application/octet-stream\"; boundary=b"
        );
    }
}
