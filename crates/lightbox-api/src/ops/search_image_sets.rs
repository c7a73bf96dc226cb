//! SearchImageSets: `POST /datastore/{datastoreId}/searchImageSets?maxResults=&nextToken=` with a
//! `SearchCriteria` body (`{}` or none lists everything): the filter rules the model cannot
//! express, the summaries with their `DICOMTags`, and the echoed sort.

use std::sync::Arc;

use lightbox_domain::{Millis, study_date_time_key};
use lightbox_service::{
    ImageSetFilter, ImageSetSearch, ImageSetSortField, ImageSetSummary, ImageSetTextField, Service,
};
use serde_json::{Map, Value, json};

use super::{Output, shapes};
use crate::error::ApiError;
use crate::input::Input;

pub async fn handle(svc: Arc<Service>, input: Input) -> Result<Output, ApiError> {
    let criteria = input.0.get("searchCriteria");
    let search = parse_criteria(criteria)?;
    let page = svc
        .search_image_sets(
            &shapes::datastore_id(&input)?,
            &search,
            input.str("nextToken"),
            shapes::max_results(&input),
        )
        .await?;
    let summaries: Vec<Value> = page
        .items
        .iter()
        .map(|(s, tier)| {
            let mut v = summary(s);
            v["storageTier"] = tier.as_str().into();
            v
        })
        .collect();
    let mut body = json!({
        "imageSetsMetadataSummaries": summaries,
        "sort": {
            "sortOrder": if search.descending { "DESC" } else { "ASC" },
            "sortField": match search.sort {
                ImageSetSortField::UpdatedAt => "updatedAt",
                ImageSetSortField::CreatedAt => "createdAt",
                ImageSetSortField::StudyDateTime => "DICOMStudyDateAndTime",
            },
        },
    });
    if let Some(t) = page.next_token {
        body["nextToken"] = t.into();
    }
    Ok(Output::Json(body))
}

/// `ImageSetsMetadataSummary` (without `storageTier`, which depends on the clock).
fn summary(s: &ImageSetSummary) -> Value {
    let i = &s.image_set;
    let t = &s.tags;
    let mut tags = Map::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            tags.insert(k.into(), v.as_str().into());
        }
    };
    put("DICOMPatientId", &t.patient_id);
    put("DICOMPatientName", &t.patient_name);
    put("DICOMPatientBirthDate", &t.patient_birth_date);
    put("DICOMPatientSex", &t.patient_sex);
    put("DICOMStudyInstanceUID", &t.study_instance_uid);
    put("DICOMStudyId", &t.study_id);
    put("DICOMStudyDescription", &t.study_description);
    put("DICOMAccessionNumber", &t.accession_number);
    put("DICOMSeriesInstanceUID", &t.series_instance_uid);
    put("DICOMSeriesModality", &t.series_modality);
    put("DICOMSeriesBodyPart", &t.series_body_part);
    put("DICOMStudyDate", &t.study_date);
    put("DICOMStudyTime", &t.study_time);
    if let Some(n) = t.series_number {
        tags.insert("DICOMSeriesNumber".into(), n.into());
    }
    tags.insert(
        "DICOMNumberOfStudyRelatedSeries".into(),
        s.study_series.into(),
    );
    tags.insert(
        "DICOMNumberOfStudyRelatedInstances".into(),
        s.study_instances.into(),
    );
    json!({
        "imageSetId": i.id.as_str(),
        "version": i.version,
        "createdAt": i.created_at.as_epoch_seconds(),
        "updatedAt": i.updated_at.as_epoch_seconds(),
        "lastAccessedAt": i.last_accessed_at.as_epoch_seconds(),
        "isPrimary": i.is_primary,
        "DICOMTags": tags,
    })
}

fn invalid(message: String) -> ApiError {
    ApiError::validation(message)
}

/// The model-valid `SearchCriteria` as a catalog query, or a ValidationException naming the
/// filter and the rule it breaks (values are sensitive: never echoed).
pub fn parse_criteria(criteria: Option<&Value>) -> Result<ImageSetSearch, ApiError> {
    let mut search = ImageSetSearch {
        filters: Vec::new(),
        sort: ImageSetSortField::UpdatedAt,
        descending: true,
    };
    let Some(criteria) = criteria else {
        return Ok(search);
    };
    if let Some(sort) = criteria.get("sort") {
        search.sort = match sort.get("sortField").and_then(Value::as_str) {
            Some("createdAt") => ImageSetSortField::CreatedAt,
            Some("DICOMStudyDateAndTime") => ImageSetSortField::StudyDateTime,
            _ => ImageSetSortField::UpdatedAt,
        };
        search.descending = sort.get("sortOrder").and_then(Value::as_str) != Some("ASC");
    }
    let filters = criteria
        .get("filters")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (n, f) in filters.iter().enumerate() {
        search.filters.push(parse_filter(n, f)?);
    }
    Ok(search)
}

fn parse_filter(n: usize, f: &Value) -> Result<ImageSetFilter, ApiError> {
    let at = format!("searchCriteria.filters.{}", n + 1);
    let between = f.get("operator").and_then(Value::as_str) == Some("BETWEEN");
    let values: Vec<(&String, &Value)> = f
        .get("values")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_object().and_then(|o| o.iter().next()))
        .collect();
    let Some(&(attribute, _)) = values.first() else {
        return Err(invalid(format!("{at}.values must hold a value")));
    };
    if values.iter().any(|(a, _)| *a != attribute) {
        return Err(invalid(format!(
            "{at}.values must all be of the same attribute"
        )));
    }
    match (between, values.len()) {
        (false, 1) | (true, 2) => {}
        (false, _) => {
            return Err(invalid(format!(
                "{at}: the EQUAL operator takes exactly one value"
            )));
        }
        (true, _) => {
            return Err(invalid(format!(
                "{at}: the BETWEEN operator takes exactly two values (lower bound, upper bound)"
            )));
        }
    }
    let range_only = matches!(
        attribute.as_str(),
        "createdAt" | "updatedAt" | "DICOMStudyDateAndTime"
    );
    if between && !range_only {
        return Err(invalid(format!(
            "{at}: the BETWEEN operator applies to createdAt, updatedAt and \
             DICOMStudyDateAndTime only, not {attribute}"
        )));
    }
    let text = |field| -> Result<ImageSetFilter, ApiError> {
        let v = values[0].1.as_str().unwrap_or_default();
        Ok(ImageSetFilter::Text(field, v.to_string()))
    };
    let millis = |v: &Value| -> Result<Millis, ApiError> {
        v.as_f64()
            .filter(|s| s.is_finite())
            .map(|s| Millis((s * 1000.0).round() as i64))
            .ok_or_else(|| invalid(format!("{at}.{attribute} must be a timestamp")))
    };
    let ordered = |ok: bool| -> Result<(), ApiError> {
        if ok {
            Ok(())
        } else {
            Err(invalid(format!(
                "{at}: the lower bound of BETWEEN is after its upper bound"
            )))
        }
    };
    match attribute.as_str() {
        "DICOMPatientId" => text(ImageSetTextField::PatientId),
        "DICOMAccessionNumber" => text(ImageSetTextField::AccessionNumber),
        "DICOMStudyId" => text(ImageSetTextField::StudyId),
        "DICOMStudyInstanceUID" => text(ImageSetTextField::StudyInstanceUid),
        "DICOMSeriesInstanceUID" => text(ImageSetTextField::SeriesInstanceUid),
        "isPrimary" => Ok(ImageSetFilter::IsPrimary(
            values[0].1.as_bool().unwrap_or_default(),
        )),
        "createdAt" | "updatedAt" => {
            let lo = millis(values[0].1)?;
            let hi = if between { millis(values[1].1)? } else { lo };
            ordered(lo <= hi)?;
            Ok(if attribute == "createdAt" {
                ImageSetFilter::CreatedAt(lo, hi)
            } else {
                ImageSetFilter::UpdatedAt(lo, hi)
            })
        }
        "DICOMStudyDateAndTime" => {
            let key = |v: &Value, end_of_day: bool| -> Result<String, ApiError> {
                let date = v
                    .get("DICOMStudyDate")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let time = v.get("DICOMStudyTime").and_then(Value::as_str);
                let key = study_date_time_key(date, time).ok_or_else(|| {
                    invalid(format!(
                        "{at}.DICOMStudyDateAndTime must be a DICOMStudyDate YYYYMMDD and an \
                         optional DICOMStudyTime HHMMSS.FFFFFF"
                    ))
                })?;
                // EQUAL on a date alone is that whole day.
                Ok(if end_of_day && time.is_none_or(|t| t.trim().is_empty()) {
                    format!("{}235959999999", &key[..8])
                } else {
                    key
                })
            };
            let lo = key(values[0].1, false)?;
            let hi = if between {
                key(values[1].1, false)?
            } else {
                key(values[0].1, true)?
            };
            ordered(lo <= hi)?;
            Ok(ImageSetFilter::StudyDateTime(lo, hi))
        }
        other => Err(invalid(format!("{at}: unknown attribute {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(v: Value) -> Result<ImageSetFilter, ApiError> {
        parse_filter(0, &v)
    }

    #[test]
    fn equal_and_between_follow_their_value_counts() {
        assert!(filter(json!({"operator": "EQUAL", "values": [{"DICOMPatientId": "a"}]})).is_ok());
        assert!(
            filter(json!({"operator": "EQUAL", "values": [{"DICOMPatientId": "a"}, {"DICOMPatientId": "b"}]}))
                .is_err()
        );
        assert!(filter(json!({"operator": "BETWEEN", "values": [{"updatedAt": 1}]})).is_err());
        assert!(
            filter(json!({"operator": "BETWEEN", "values": [{"DICOMPatientId": "a"}, {"DICOMPatientId": "b"}]}))
                .is_err()
        );
        assert!(
            filter(json!({"operator": "BETWEEN", "values": [{"updatedAt": 1}, {"createdAt": 2}]}))
                .is_err()
        );
        assert!(
            filter(json!({"operator": "BETWEEN", "values": [{"updatedAt": 2}, {"updatedAt": 1}]}))
                .is_err()
        );
        assert_eq!(
            filter(
                json!({"operator": "BETWEEN", "values": [{"updatedAt": 1.5}, {"updatedAt": 2}]})
            )
            .unwrap(),
            ImageSetFilter::UpdatedAt(Millis(1500), Millis(2000))
        );
    }

    #[test]
    fn study_dates_are_days_or_instants() {
        let day = json!({"DICOMStudyDateAndTime": {"DICOMStudyDate": "19991122"}});
        assert_eq!(
            filter(json!({"operator": "EQUAL", "values": [day]})).unwrap(),
            ImageSetFilter::StudyDateTime(
                "19991122000000000000".into(),
                "19991122235959999999".into()
            )
        );
        let at = json!({"DICOMStudyDateAndTime": {"DICOMStudyDate": "19991122", "DICOMStudyTime": "140728"}});
        assert_eq!(
            filter(json!({"operator": "EQUAL", "values": [at]})).unwrap(),
            ImageSetFilter::StudyDateTime(
                "19991122140728000000".into(),
                "19991122140728000000".into()
            )
        );
        let bad = json!({"DICOMStudyDateAndTime": {"DICOMStudyDate": "991122"}});
        assert!(filter(json!({"operator": "EQUAL", "values": [bad]})).is_err());
    }

    #[test]
    fn missing_criteria_list_everything_newest_first() {
        let s = parse_criteria(None).unwrap();
        assert!(s.filters.is_empty() && s.descending && s.sort == ImageSetSortField::UpdatedAt);
        let s = parse_criteria(Some(&json!({}))).unwrap();
        assert!(s.filters.is_empty());
    }
}
